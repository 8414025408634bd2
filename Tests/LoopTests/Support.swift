import Foundation
import ProctorTestSupport
import XCTest

// Helpers for the loop tests: each test makes a real workspace with `proctor init --template`, drives the
// built `proctor` binary and inspects what it left on disk, in git and under `.proctor/`.

/// One row of `.proctor/results.tsv`, as strings.
struct Row {
    var fields: [String]
    var iteration: Int { Int(fields[0]) ?? -1 }
    var commit: String { fields[1] }
    var score: Double? { Double(fields[2]) }
    var sealed: Double? { Double(fields[3]) }
    var status: String { fields[4] }
    var seconds: Double? { Double(fields[5]) }
    var peakGPUMemMB: String { fields[7] }
    var trees: String { fields[9] }
    var description: String { fields[10] }
}

/// The settings a synthetic workspace differs in.
struct WorkspaceSpec {
    /// `[files]`.
    var files = """
        [files]
        editable = ["train.py"]
        notes    = ["LOG.md"]
        locked   = ["prepare.py"]
        hidden   = ["holdout/**"]
        outputs  = ["outputs/"]
        """
    var experimentTimeout = "20s"
    var seeds = "[42]"
    var confirmSeeds = "[17, 73]"
    var minImprovement = "0.001"
    var limits = """
        [limits]
        trees      = 100
        features   = 10
        diff_lines = 20
        """
    /// A shell script for `[agent] kind = "command"` (run as `sh -c SCRIPT sh PROMPT_FILE`, in the
    /// workspace, in the agent sandbox), or nil for the mutate agent. `{TAG}` becomes the workspace's tag.
    var agentScript: String?
    var train = WorkspaceSpec.defaultTrain
    var prepare = WorkspaceSpec.defaultPrepare
    var target = "0.7"
    /// More `[evaluator]` keys (`sealed_command = [...]`).
    var evaluatorExtra = ""
    /// More tables at the end of proctor.toml (`[memory]`, `[[phases]]`).
    var extraSections = ""

    /// Writes `outputs/pred.txt`: X, TREES, the seed. `# mutate:` markers for the mutate agent.
    /// `BONUS` (edited by the scripted agents) moves the prediction: 1 = exact on seed 42 only and far
    /// off on every other seed, 2 = exact on every seed, 3 = exact on the seeds the workspace lists
    /// (42, 17, 73) and unchanged on any other (code tuned to the seeds it knows), 4 = exact on every
    /// seed with every seed but 42 swapped for 5 (one it found lucky). `GREEDY` multiplies the trees by 10 on the
    /// seeds other than 42. `SLEEP` delays the experiment; `outputs/started` marks that it is running;
    /// `WAIT_FOR` makes it wait until prepare.py (as the experiment sees it) contains that text.
    static let defaultTrain = """
        import os, sys, time
        X = 0.2  # mutate: float 0.0..1.0 linear
        TREES = 50  # mutate: int 10..200 linear
        FEATURES = 5
        BONUS = 0
        SLEEP = 0
        MODE = "ok"
        out = os.environ["PROCTOR_OUTPUTS"]
        seed = int(os.environ["PROCTOR_SEED"])
        open(os.path.join(out, "started"), "w").write(str(os.getpid()))
        GREEDY = 0
        WAIT_FOR = ""
        if SLEEP:
            open(os.path.join(out, "sleeping"), "w").write(str(os.getpid()))
            time.sleep(SLEEP)
        if WAIT_FOR:
            open(os.path.join(out, "waiting"), "w").write("1")
            deadline = time.time() + 20
            while WAIT_FOR not in open("prepare.py").read() and time.time() < deadline:
                time.sleep(0.05)
        x = X
        target = 0.7
        if BONUS == 1:
            x = target if seed == 42 else -0.5
        elif BONUS == 2:
            x = target
        elif BONUS == 3 and seed in (42, 17, 73):
            x = target
        elif BONUS == 4:
            x = target
            seed = seed if seed == 42 else 5
        trees = TREES * 10 if GREEDY and seed != 42 else TREES
        with open(os.path.join(out, "pred.txt"), "w") as f:
            f.write(f"{x} {trees} {FEATURES} {seed} {MODE}\\n")
        print("trained")

        """

    /// The locked evaluator: score = 1 - |x - target| + seeded noise far below min_improvement.
    /// MODE (from the predictions) selects broken outputs for the crash tests.
    static let defaultPrepare = """
        import json, math, os, random
        out = os.environ.get("PROCTOR_OUTPUTS", "outputs")
        x, trees, features, seed, mode = open(os.path.join(out, "pred.txt")).read().split()
        target = float(open("holdout/target.txt").read())
        rng = random.Random(int(seed))
        score = 1 - abs(float(x) - target) + rng.uniform(-1e-5, 1e-5)
        result = {"score": score, "trees": int(trees), "features": int(features)}
        if mode == "nonjson":
            print("score: %f" % score)
        elif mode == "missing":
            print(json.dumps({"accuracy": score, "trees": int(trees)}))
        elif mode == "nan":
            print(json.dumps({"score": float("nan"), "trees": int(trees)}))
        elif mode == "string":
            print(json.dumps({"score": str(score), "trees": int(trees)}))
        elif mode == "trailer":
            print(json.dumps(result))
            print("evaluation done")
        elif mode == "array":
            print(json.dumps([score]))
        elif mode == "empty":
            pass
        else:
            print("evaluating...")
            print(json.dumps(result))

        """

    func toml(tag: String) -> String {
        var text = files + "\n\n"
        text += """
            [experiment]
            command  = ["python3", "train.py", "\(tag)"]
            timeout  = "\(experimentTimeout)"
            seeds    = \(seeds)

            [evaluator]
            command  = ["python3", "prepare.py"]
            metric   = "score"
            \(evaluatorExtra)

            \(limits)

            [gates]
            min_improvement = \(minImprovement)
            confirm_seeds   = \(confirmSeeds)

            """
        if let agentScript {
            let quoted = agentScript.replacingOccurrences(of: "{TAG}", with: tag).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            text += """

                [agent]
                kind    = "command"
                command = ["sh", "-c", "\(quoted)", "sh", "{prompt_file}"]
                timeout = "30s"

                """
        }
        return text + "\n" + extraSections + "\n"
    }
}

/// Shell prelude for agent scripts: `$i` is the iteration (from the prompt file), `set_var NAME VALUE`
/// rewrites `NAME = ...` in train.py in place (the agent's files are bind mounts: no rename).
let agentPrelude = """
    i=$(sed -n 's/^This is iteration \\([0-9]*\\)\\..*/\\1/p' "$1" | tail -n 1)
    set_var() { sed "s/^$1 = [^ ]*/$1 = $2/" train.py > \"$HOME/t\" && cat \"$HOME/t\" > train.py; }

    """

/// A workspace made by `proctor init --template` from a synthetic template, and its git repository.
/// An agent whose train.py sets X = 0.6 and writes seed 1234 whatever PROCTOR_SEED says: it fixes its
/// own seed, which the gate must catch (the baseline's scores varied from seed to seed).
let fixedSeedAgent = agentPrelude + """
    set_var X 0.6
    cat >> train.py <<'EOF'
    with open(os.path.join(out, "pred.txt"), "w") as f:
        f.write(f"{x} {trees} {FEATURES} 1234 {MODE}\\n")
    EOF
    echo "SUMMARY: x=0.6 with my own seed"
    """

extension XCTestCase {
    /// Points this test process's own `PROCTOR_MACHINE_LOCK` (read by library code a test calls
    /// in-process) at `path` until the test ends, when a teardown block puts the previous value
    /// back. Left set, a later test's in-process lock would re-create a finished test's removed folder.
    func useMachineLockInProcess(_ path: String) {
        let previous = getenv("PROCTOR_MACHINE_LOCK").map { String(cString: $0) }
        setenv("PROCTOR_MACHINE_LOCK", path, 1)
        addTeardownBlock {
            if let previous { setenv("PROCTOR_MACHINE_LOCK", previous, 1) } else { unsetenv("PROCTOR_MACHINE_LOCK") }
        }
    }
}

final class LoopWorkspace {
    let root: String
    let templateDir: String
    let base: String
    /// Unique per workspace: on the experiment's command line, to find its processes.
    let tag: String
    let spec: WorkspaceSpec
    /// `PROCTOR_MACHINE_LOCK`: per workspace unless a test shares one between workspaces.
    var machineLock: String

    init(_ spec: WorkspaceSpec = WorkspaceSpec(), files: [String: String] = [:], initialize: Bool = true) throws {
        self.spec = spec
        var template = Array((NSTemporaryDirectory() + "/proctor-looptest-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw NSError(domain: "mkdtemp", code: Int(errno)) }
        base = URL(fileURLWithPath: String(cString: made)).resolvingSymlinksInPath().path
        chmod(base, 0o755)
        templateDir = base + "/template"
        root = base + "/ws"
        tag = "looptest-" + UUID().uuidString.prefix(8).lowercased()
        machineLock = base + "/machine.lock"
        try LoopWorkspace.write(templateDir + "/proctor.toml", spec.toml(tag: tag))
        try LoopWorkspace.write(templateDir + "/train.py", spec.train)
        try LoopWorkspace.write(templateDir + "/prepare.py", spec.prepare)
        try LoopWorkspace.write(templateDir + "/LOG.md", "# notes\n")
        try LoopWorkspace.write(templateDir + "/holdout/target.txt", spec.target + "\n")
        for (path, text) in files { try LoopWorkspace.write(templateDir + "/" + path, text) }
        if initialize {
            let result = try proctor(["init", root, "--template", templateDir])
            guard result.status == 0 else {
                throw NSError(domain: "proctor init", code: Int(result.status), userInfo: [NSLocalizedDescriptionKey: result.text])
            }
        }
    }

    deinit {
        for pid in processes(containing: tag).compactMap({ Int32($0.prefix { $0 != ":" }) }) { kill(pid, SIGKILL) }
        _ = try? runChild(["/bin/rm", "-rf", base])
    }

    static func write(_ path: String, _ text: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    func path(_ rel: String) -> String { root + "/" + rel }
    func write(_ rel: String, _ text: String) throws { try LoopWorkspace.write(path(rel), text) }
    func read(_ rel: String) -> String? {
        FileManager.default.contents(atPath: path(rel)).map { String(decoding: $0, as: UTF8.self) }
    }
    func bytes(_ rel: String) -> Data? { FileManager.default.contents(atPath: path(rel)) }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        // Each workspace has its own machine lock: tests do not serialise on the real one.
        env["PROCTOR_MACHINE_LOCK"] = machineLock
        return env
    }

    /// `proctor ARGS` (the workspace is passed by the caller where the command takes one).
    @discardableResult
    func proctor(_ args: [String]) throws -> ChildOutcome {
        try runChild([proctorBinary] + args, environment: environment)
    }

    /// `proctor ARGS` with more variables (`PROCTOR_MACHINE_SLOTS`).
    @discardableResult
    func proctor(_ args: [String], environment extra: [String: String]) throws -> ChildOutcome {
        try runChild([proctorBinary] + args, environment: environment.merging(extra) { $1 })
    }

    /// `proctor run --workspace ROOT ARGS`.
    @discardableResult
    func run(_ args: [String] = []) throws -> ChildOutcome {
        try proctor(["run", "--workspace", root] + args)
    }

    func startRun(_ args: [String], output: CapturedOutput) throws -> Process {
        try startProcess([proctorBinary, "run", "--workspace", root] + args, environment: environment, output: output)
    }

    /// `git -C ROOT ARGS`, trimmed stdout; fails the test on a non-zero exit.
    @discardableResult
    func git(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let result = try runChild(["/usr/bin/git", "-C", root, "-c", "core.hooksPath=/dev/null"] + args)
        XCTAssertEqual(result.status, 0, "git \(args.joined(separator: " ")): \(result.stderr)", file: file, line: line)
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `git status --porcelain` including untracked files (the ignored `.proctor/` and outputs are not shown).
    func gitStatus() throws -> String {
        try git(["status", "--porcelain", "--untracked-files=all"])
    }

    /// Untracked files that git ignores, other than proctor's state and the outputs.
    func ignoredLeftovers() throws -> [String] {
        try git(["status", "--porcelain", "--ignored", "--untracked-files=all"]).split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix("!! ") }.map { String($0.dropFirst(3)) }
            .filter { !$0.hasPrefix(".proctor/") && !$0.hasPrefix("outputs/") }
    }

    /// The ledger's lines, header included.
    var ledgerLines: [String] {
        guard let text = read(".proctor/results.tsv") else { return [] }
        var lines = text.components(separatedBy: "\n")
        if text.hasSuffix("\n") { lines.removeLast() }
        return lines
    }

    var rows: [Row] { ledgerLines.dropFirst().map { Row(fields: $0.components(separatedBy: "\t")) } }

    /// The latest row of `iteration` (the ledger holds every run of the workspace).
    func row(_ iteration: Int) -> Row? { rows.last { $0.iteration == iteration } }

    /// `.proctor/runs.jsonl` records.
    var records: [[String: Any]] { jsonLines(".proctor/runs.jsonl") }
    func record(_ iteration: Int) -> [String: Any]? { records.last { $0["iteration"] as? Int == iteration } }

    /// `.proctor/audit.jsonl` records.
    var audit: [[String: Any]] { jsonLines(".proctor/audit.jsonl") }

    func jsonLines(_ rel: String) -> [[String: Any]] {
        guard let text = read(rel) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// `.proctor/state.json`.
    var state: [String: Any]? {
        bytes(".proctor/state.json").flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
    }

    var runID: String? { state?["run"] as? String }
    var branch: String? { state?["branch"] as? String }

    /// Every file under the workspace (outside `.git`, `.proctor` and the outputs) with its bytes.
    func snapshot() -> [String: Data] {
        var files: [String: Data] = [:]
        guard let walker = FileManager.default.enumerator(atPath: root) else { return files }
        while let rel = walker.nextObject() as? String {
            if rel == ".git" || rel == ".proctor" || rel == "outputs" { walker.skipDescendants(); continue }
            var st = stat()
            guard lstat(path(rel), &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFREG: files[rel] = bytes(rel) ?? Data()
            case S_IFLNK: files[rel] = Data("link".utf8)
            case S_IFDIR: files[rel + "/"] = Data()
            default: files[rel] = Data("other".utf8)
            }
        }
        return files
    }

    /// Branches named `proctor/...`.
    func proctorBranches() throws -> [String] {
        try git(["for-each-ref", "--format=%(refname:short)", "refs/heads/proctor/"]).split(separator: "\n").map(String.init)
    }
}

/// The agent's own part of a notes file: what comes before proctor's first log entry
/// (`## Iteration N (proctor)`, appended with each keep commit).
func agentNotes(_ text: String?) -> String? {
    text.map { $0.components(separatedBy: "\n## Iteration ").first! }
}

/// Asserts the ledger is whole: the contract's header, eleven fields a row, each iteration once, in order.
func assertLedgerConsistent(_ ws: LoopWorkspace, iterations expected: [Int], file: StaticString = #filePath, line: UInt = #line) {
    let lines = ws.ledgerLines
    XCTAssertEqual(lines.first, "iteration\tcommit\tscore\tsealed\tstatus\tseconds\tpeak_mem_mb\tpeak_gpu_mem_mb\tfeatures\ttrees\tdescription",
                   file: file, line: line)
    let text = ws.read(".proctor/results.tsv") ?? ""
    XCTAssertTrue(text.hasSuffix("\n"), "torn last line in results.tsv", file: file, line: line)
    for row in lines.dropFirst() {
        XCTAssertEqual(row.components(separatedBy: "\t").count, 11, "malformed row: \(row)", file: file, line: line)
    }
    XCTAssertEqual(ws.rows.map(\.iteration), expected, "ledger iterations:\n\(text)", file: file, line: line)
    for row in ws.rows {
        XCTAssertTrue(["keep", "discard", "crash", "timeout", "rejected"].contains(row.status), "status \(row.status)",
                      file: file, line: line)
    }
    let runs = ws.read(".proctor/runs.jsonl") ?? ""
    XCTAssertTrue(runs.hasSuffix("\n"), "torn last line in runs.jsonl", file: file, line: line)
    let recordLines = runs.split(separator: "\n")
    XCTAssertEqual(ws.records.count, recordLines.count, "a runs.jsonl line does not parse", file: file, line: line)
    XCTAssertEqual(ws.records.compactMap { $0["iteration"] as? Int }, expected, file: file, line: line)
}
