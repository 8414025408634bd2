import Foundation
import ProctorTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A model's answer whose diff edits `../outside.txt`, a file next to the workspace: every path
/// check must refuse it.
let escapingDiffAnswer = """
    SUMMARY: sneaky
    ```diff
    --- a/../outside.txt
    +++ b/../outside.txt
    @@ -1 +1 @@
    -outside the workspace
    +owned
    ```
    """

/// A TOML basic string holding `text` exactly.
func tomlString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += String(format: "\\u%04X", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// A small synthetic research workspace made with `proctor init --template`: an editable `train.py`
/// whose `X` is the whole model, a locked `prepare.py` scoring `1 - |X - target|` against the hidden
/// `holdout/target.txt` (target 0.7, so the baseline X = 0.2 scores 0.5), notes in `LOG.md`.
/// `<parent>/outside.txt` sits next to the workspace so that `../` escapes are observable.
final class LoopWorkspace {
    let parent: String
    let root: String
    let machineLock: String

    /// The hidden label: it must never reach an agent, its output, the ledger or any file it can write.
    static let hiddenLabel = "HOLDOUT-LABEL-c41e9b27"

    static func train(_ x: String, extra: String = "") -> String {
        """
        import os

        X = \(x)  # mutate: float 0.0..1.0 linear
        \(extra)
        with open(os.path.join(os.environ["PROCTOR_OUTPUTS"], "pred.txt"), "w") as f:
            f.write(repr(X) + "\\n")
        print("trained with X =", X)

        """
    }

    static let prepare = """
        # The locked evaluator: 1 - |prediction - target| on the hidden holdout.
        import json
        import os

        outputs = os.environ.get("PROCTOR_OUTPUTS", "outputs")
        with open(os.path.join(outputs, "pred.txt")) as f:
            pred = float(f.read().strip())
        with open("holdout/target.txt") as f:
            target = float(f.readline().strip())
        print(json.dumps({"score": round(1.0 - abs(pred - target), 6)}))

        """

    static func toml(agent: String, experimentTimeout: String = "30s", editable: String = "[\"train.py\"]",
                     notes: String = "[\"LOG.md\"]", locked: String = "[\"prepare.py\"]", hidden: String = "[\"holdout/**\"]",
                     filesExtra: String = "", experimentExtra: String = "",
                     evaluatorExtra: String = "", extra: String = "") -> String {
        """
        [files]
        editable = \(editable)
        notes    = \(notes)
        locked   = \(locked)
        hidden   = \(hidden)
        outputs  = ["outputs/"]
        \(filesExtra)

        [experiment]
        command = ["python3", "train.py"]
        timeout = \(tomlString(experimentTimeout))
        memory  = "512MiB"
        seeds   = [42]
        \(experimentExtra)

        [evaluator]
        command   = ["python3", "prepare.py"]
        timeout   = "30s"
        metric    = "score"
        direction = "maximize"
        \(evaluatorExtra)

        \(agent)

        \(extra)
        """
    }

    /// Writes the template next to the workspace and runs `proctor init ROOT --template TEMPLATE`.
    init(agent: String, experimentTimeout: String = "30s", prepare: String = LoopWorkspace.prepare,
         editable: String = "[\"train.py\"]", notes: String = "[\"LOG.md\"]", locked: String = "[\"prepare.py\"]",
         hidden: String = "[\"holdout/**\"]", filesExtra: String = "",
         experimentExtra: String = "", evaluatorExtra: String = "", extra: String = "", files extraFiles: [String: String] = [:],
         train: String = LoopWorkspace.train("0.2"), file: StaticString = #filePath, line: UInt = #line) throws {
        var template = Array((NSTemporaryDirectory() + "/proctor-loop-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        parent = URL(fileURLWithPath: String(cString: made)).resolvingSymlinksInPath().path
        chmod(parent, 0o755)
        root = parent + "/ws"
        machineLock = parent + "/machine.lock"
        let source = parent + "/template"
        var files = [
            "proctor.toml": Self.toml(agent: agent, experimentTimeout: experimentTimeout, editable: editable, notes: notes, locked: locked, hidden: hidden,
                                      filesExtra: filesExtra, experimentExtra: experimentExtra,
                                      evaluatorExtra: evaluatorExtra, extra: extra),
            "train.py": train,
            "prepare.py": prepare,
            "holdout/target.txt": "0.7\n\(Self.hiddenLabel)\n",
            "LOG.md": "# Notes\n",
            "program.md": "Move X towards the hidden target.\n",
        ]
        files.merge(extraFiles) { _, new in new }
        for (rel, text) in files {
            let url = URL(fileURLWithPath: source + "/" + rel)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        try Data("outside the workspace\n".utf8).write(to: URL(fileURLWithPath: parent + "/outside.txt"))
        let made2 = try proctor(["init", root, "--template", source], deadline: 60)
        guard made2.status == 0 else {
            XCTFail("proctor init failed: \(made2.stderr)", file: file, line: line)
            throw POSIXError(.EIO)
        }
    }

    deinit {
        _ = try? runChild(["/bin/rm", "-rf", parent], environment: [:], deadline: 60)
    }

    /// The environment proctor runs with: the test's own, a private machine lock, plus `extra`.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_MACHINE_LOCK"] = machineLock
        for (name, value) in extra { env[name] = value }
        return env
    }

    func proctor(_ arguments: [String], environment extra: [String: String] = [:], deadline: Double = 240) throws
        -> ChildOutcome
    {
        try runChild([proctorBinary] + arguments, environment: environment(extra), deadline: deadline)
    }

    /// `proctor run --workspace ROOT --iterations N`.
    func run(iterations: Int, environment extra: [String: String] = [:], deadline: Double = 240) throws
        -> ChildOutcome
    {
        try proctor(
            ["run", "--workspace", root, "--iterations", String(iterations)], environment: extra, deadline: deadline)
    }

    func path(_ rel: String) -> String { root + "/" + rel }

    func read(_ rel: String) -> String? {
        FileManager.default.contents(atPath: path(rel)).map { String(decoding: $0, as: UTF8.self) }
    }

    func bytes(_ rel: String) -> Data? { FileManager.default.contents(atPath: path(rel)) }

    /// The ledger rows (`.proctor/results.tsv`) as column → value, header checked.
    func rows(file: StaticString = #filePath, line: UInt = #line) -> [[String: String]] {
        guard let text = read(".proctor/results.tsv") else { return [] }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard let header = lines.first?.components(separatedBy: "\t") else { return [] }
        XCTAssertEqual(
            header, ["iteration", "commit", "score", "sealed", "status", "seconds", "peak_mem_mb", "peak_gpu_mem_mb", "features", "trees", "description"],
            file: file, line: line)
        return lines.dropFirst().map { row in
            let fields = row.components(separatedBy: "\t")
            XCTAssertEqual(fields.count, header.count, "malformed ledger row: \(row)", file: file, line: line)
            return Dictionary(uniqueKeysWithValues: zip(header, fields).map { ($0, $1) })
        }
    }

    /// Status of each ledger row, baseline first.
    func statuses() -> [String] { rows().map { $0["status"] ?? "" } }

    func jsonLines(_ rel: String) -> [[String: Any]] {
        guard let text = read(rel) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// `.proctor/runs.jsonl`, one record per iteration.
    func records() -> [[String: Any]] { jsonLines(".proctor/runs.jsonl") }

    /// `.proctor/audit.jsonl`.
    func audit() -> [[String: Any]] { jsonLines(".proctor/audit.jsonl") }

    func audit(kind: String, decision: String, iteration: Int? = nil) -> [[String: Any]] {
        audit().filter {
            $0["kind"] as? String == kind && $0["decision"] as? String == decision
                && (iteration == nil || $0["iteration"] as? Int == iteration)
        }
    }

    /// Every regular file under `dir` (recursively, not following links) whose bytes contain `needle`.
    func filesContaining(_ needle: String, under dir: String) -> [String] {
        var found: [String] = []
        let needleBytes = Data(needle.utf8)
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return [] }
        while let rel = walker.nextObject() as? String {
            var st = stat()
            guard lstat(dir + "/" + rel, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            if let data = FileManager.default.contents(atPath: dir + "/" + rel), data.range(of: needleBytes) != nil {
                found.append(rel)
            }
        }
        return found
    }

    /// `git log` of the workspace's current branch, one subject per line (via the git CLI if present).
    func gitSubjects() -> [String] {
        guard let git = ["/usr/bin/git", "/bin/git", "/usr/local/bin/git"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
            let out = try? runChild(
                [git, "-C", root, "log", "--format=%s"], environment: ["PATH": "/usr/bin:/bin"], deadline: 30),
            out.status == 0
        else { return [] }
        return out.stdout.split(separator: "\n").map(String.init)
    }

    /// A one-paragraph dump for failure messages.
    func describe(_ outcome: ChildOutcome) -> String {
        "exit \(outcome.status)\(outcome.killed ? " (killed by the test's deadline)" : "")\n--- stdout\n\(outcome.stdout.suffix(3000))\n--- stderr\n\(outcome.stderr.suffix(3000))\n--- results.tsv\n\(read(".proctor/results.tsv") ?? "(none)")"
    }
}

