import Foundation
import ProctorTestSupport
import XCTest

/// A `proctor run` that cannot start (a dirty tree, nothing or nothing readable to resume, a branch that is
/// gone, an `--agent` the configuration cannot serve) is bad input: exit 125, one line naming what to fix,
/// and nothing half-done: no ledger, no branch, no commit, HEAD and the tree untouched, the lock free.
final class StartTests: XCTestCase {
    /// The ledger files a refused start must not create (an empty audit log was left once).
    static func assertNoLedger(_ ws: LoopWorkspace, file: StaticString = #filePath, line: UInt = #line) {
        for name in ["results.tsv", "runs.jsonl", "audit.jsonl"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/" + name)), "\(name) was created",
                           file: file, line: line)
        }
    }

    static func assertRefused(_ result: ChildOutcome, mentioning text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, 125, result.text, file: file, line: line)
        XCTAssertTrue(result.stderr.contains(text), "expected \(text) in \(result.stderr)", file: file, line: line)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result.stderr)", file: file, line: line)
    }

    func testDirtyTreeIsRefusedWith125AndLeavesNothing() throws {
        let ws = try LoopWorkspace()
        let head = try ws.git(["rev-parse", "HEAD"])
        try ws.write("train.py", ws.read("train.py")! + "# my own edit\n")
        let result = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(result, mentioning: "train.py")
        StartTests.assertNoLedger(ws)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/state.json")))
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertEqual(try ws.git(["rev-parse", "HEAD"]), head)
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), "main")
        XCTAssertTrue(ws.read("train.py")!.hasSuffix("# my own edit\n"), "the user's edit is kept")
        XCTAssertTrue(try ws.proctor(["status", "--workspace", ws.root]).stdout.contains("lock: free"))
    }

    /// A corrupt `.proctor/pins.json` was taken for no pins: a committed change to the locked
    /// evaluator then started a run unchecked. Refused (125), nothing written.
    func testACorruptPinsFileIsRefused() throws {
        let ws = try LoopWorkspace()
        try ws.write("prepare.py", ws.read("prepare.py")! + "# changed\n")
        _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "edit the evaluator"])
        try ws.write(".proctor/pins.json", "{\"bad")
        let result = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(result, mentioning: "pins.json: unreadable, or not pins")
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(try ws.proctorBranches(), [])
    }

    /// `proctor report --out` and `proctor exec --audit-log` inside the workspace wrote over its own
    /// files (the locked evaluator, proctor.toml, whose refusal came after the write). Refused (125),
    /// nothing written, but under .proctor/; a link at the report's path is not followed.
    func testReportsAndAuditLogsAreNotWrittenOverTheWorkspacesFiles() throws {
        let ws = try LoopWorkspace()
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        for target in ["prepare.py", "proctor.toml", "notes.html"] {
            let before = ws.read(target)
            let report = try ws.proctor(["report", "--workspace", ws.root, "--out", ws.path(target)])
            XCTAssertEqual(report.status, 125, report.text)
            XCTAssertTrue(report.stderr.contains("inside the workspace"), report.stderr)
            XCTAssertEqual(ws.read(target), before, target)
        }
        let audit = try ws.proctor(["exec", "--workspace", ws.root, "--audit-log", ws.path("prepare.py"), "--", "true"])
        XCTAssertEqual(audit.status, 125, audit.text)
        XCTAssertEqual(try ws.git(["status", "--porcelain"]), "")
        XCTAssertEqual(try ws.proctor(["report", "--workspace", ws.root, "--out", ws.path(".proctor/mine.html")]).status, 0)
        // Proctor's own files in .proctor/: `--out .proctor/results.tsv` made the ledger a page,
        // `.proctor/state.json` a run that cannot resume, `.proctor/memory/x.md` a file agents read.
        for target in [".proctor/results.tsv", ".proctor/state.json", ".proctor/memory/x.md", ".proctor/runs.jsonl"] {
            let before = ws.read(target)
            let report = try ws.proctor(["report", "--workspace", ws.root, "--out", ws.path(target)])
            XCTAssertEqual(report.status, 125, report.text)
            XCTAssertEqual(ws.read(target), before, target)
            let exec = try ws.proctor(["exec", "--workspace", ws.root, "--audit-log", ws.path(target), "--", "true"])
            XCTAssertEqual(exec.status, 125, exec.text)
            XCTAssertEqual(ws.read(target), before, target)
        }
        XCTAssertEqual(try ws.proctor(["exec", "--workspace", ws.root, "--audit-log", ws.path(".proctor/audit.jsonl"), "--", "true"]).status, 0)
        let outside = (ws.root as NSString).deletingLastPathComponent + "/elsewhere-\(getpid()).txt"
        defer { unlink(outside) }
        try Data("mine\n".utf8).write(to: URL(fileURLWithPath: outside))
        unlink(ws.path(".proctor/report.html"))
        XCTAssertEqual(symlink(outside, ws.path(".proctor/report.html")), 0)
        XCTAssertNotEqual(try ws.proctor(["report", "--workspace", ws.root]).status, 0)
        XCTAssertEqual(try String(contentsOfFile: outside, encoding: .utf8), "mine\n", "the report followed a link")
    }

    /// A file named with a newline and a tab (an agent's, left by a session or a killed run) made
    /// the refusal print a line of its own, `proctor: warning: all good`, and `proctor check` a fake
    /// `ok:` line below its violation. Paths in those messages are one line now (`\x0a`).
    func testAFileNameCannotForgeALineOfProctorsOwn() throws {
        let ws = try LoopWorkspace()
        try ws.write("x\nproctor: warning: all good\t", "1\n")
        let result = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(result, mentioning: "x\\x0aproctor: warning: all good\\x09")
        let checked = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertFalse((checked.stdout + checked.stderr).split(separator: "\n").contains { $0.hasPrefix("proctor: warning: all good") },
                       checked.text)
    }

    /// Issue 10: what an ML repository keeps ignored (`wandb/`, `data/`) does not stop a run, is not
    /// removed by a revert, and is read-only to the experiment; an ignored file where the agent can
    /// write (an editable directory) is still the agent's change and still refused.
    func testTheUsersIgnoredDirectoriesStayAndDoNotStopTheRun() throws {
        var spec = WorkspaceSpec()
        spec.train = WorkspaceSpec.defaultTrain + "\nprint(open('data/rows.csv').read().strip())\n"
        let ws = try LoopWorkspace(spec, files: [".gitignore": "wandb/\ndata/\n*.log\n"])
        try ws.write("wandb/run-1/run.log", "loss 0.3\n")
        try ws.write("data/rows.csv", "x,y\n")
        let result = try ws.run(["--iterations", "3"])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertEqual(ws.rows.count, 4, result.text)
        XCTAssertTrue(ws.rows.contains { $0.status == "discard" || $0.status == "keep" }, result.text)
        XCTAssertEqual(ws.read("wandb/run-1/run.log"), "loss 0.3\n", "the user's ignored file survived the reverts")
        XCTAssertEqual(ws.read("data/rows.csv"), "x,y\n")
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.proctor(["check", "--workspace", ws.root]).status, 0)

        // An ignored file inside what the agent may write is a change like any other.
        var editableDir = WorkspaceSpec()
        editableDir.files = editableDir.files.replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"train.py\", \"src/\"]")
        let agentDir = try LoopWorkspace(editableDir, files: [".gitignore": "*.log\n", "src/model.py": "m = 1\n"])
        try agentDir.write("src/debug.log", "planted\n")
        StartTests.assertRefused(try agentDir.run(["--iterations", "1"]), mentioning: "src/debug.log")
    }

    /// A sandbox that needs more mounts than the launcher takes is refused before anything runs or
    /// is written: a hidden glob matching 300 single files (the experiment's and the evaluator's),
    /// a notes glob matching 300 (a command agent's), and under `--parallel` 300 git-ignored files
    /// beside a tracked `data/.gitkeep`, each bound into the slots. Before, the first two stopped the
    /// run when the baseline's launch failed (exit 1, a run begun), the last once the slots started.
    func testASandboxOfTooManyMountsIsRefusedBeforeTheBaseline() throws {
        var hidden = WorkspaceSpec()
        hidden.files = hidden.files.replacingOccurrences(of: "hidden   = [\"holdout/**\"]", with: "hidden   = [\"holdout/**\", \"secret/*\"]")
        var notes = WorkspaceSpec()
        notes.files = notes.files.replacingOccurrences(of: "notes    = [\"LOG.md\"]", with: "notes    = [\"LOG.md\", \"notes/*.md\"]")
        notes.agentScript = "true"
        let cases: [(WorkspaceSpec, [String: String], String, [String], String)] = [
            (hidden, [:], "secret", [], "name their directory instead"),
            (notes, [:], "notes", [], "name their directory instead"),
            (WorkspaceSpec(), [".gitignore": "data/*\n!data/.gitkeep\n", "data/.gitkeep": ""], "data", ["--parallel", "2"],
             "under --parallel, each of the workspace's 300 git-ignored entries (data/f0.csv, data/f1.csv, data/f10.csv, ...) is bound into the slot"),
        ]
        for (spec, files, directory, options, text) in cases {
            var files = files
            if directory != "data" { for i in 0..<300 { files["\(directory)/f\(i).md"] = "\(i)\n" } }
            let ws = try LoopWorkspace(spec, files: files)
            if directory == "data" { for i in 0..<300 { try ws.write("data/f\(i).csv", "\(i)\n") } }
            let head = try ws.git(["rev-parse", "HEAD"])
            let result = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "1"] + options, environment: ["PROCTOR_MACHINE_SLOTS": "2"])
            StartTests.assertRefused(result, mentioning: "more than the 256 it takes")
            XCTAssertTrue(result.stderr.contains(text), result.stderr)
            StartTests.assertNoLedger(ws)
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/state.json")))
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/logs")), "nothing was launched")
            XCTAssertEqual(try ws.proctorBranches(), [])
            XCTAssertEqual(try ws.git(["rev-parse", "HEAD"]), head)
            // `proctor check` says so too, as a violation, with the same `--parallel`; the data case
            // without it is fine (a serial experiment binds the ignored directory's parent whole).
            let checked = try ws.proctor(["check", "--workspace", ws.root] + options, environment: ["PROCTOR_MACHINE_SLOTS": "2"])
            XCTAssertEqual(checked.status, 1, checked.text)
            XCTAssertTrue(checked.stdout.contains("violation: ") && checked.stdout.contains("more than the 256 it takes"), checked.text)
            XCTAssertTrue(checked.stdout.contains(text), checked.text)
            if !options.isEmpty {
                let serial = try ws.proctor(["check", "--workspace", ws.root])
                XCTAssertEqual(serial.status, 0, serial.text)
            }
        }
    }

    /// `proctor check --parallel N` (or `[experiment] parallel`) reports what `proctor run` would
    /// refuse with as many slots: a machine that gives fewer (PROCTOR_MACHINE_SLOTS).
    func testCheckKnowsTheSlotsARunWouldTake() throws {
        let ws = try LoopWorkspace()
        let one = ["PROCTOR_MACHINE_SLOTS": "1"]
        let refused = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "1", "--parallel", "2"], environment: one)
        StartTests.assertRefused(refused, mentioning: "--parallel 2 needs 2 experiment slots, but this machine has 1")
        let checked = try ws.proctor(["check", "--workspace", ws.root, "--parallel", "2"], environment: one)
        XCTAssertEqual(checked.status, 1, checked.text)
        XCTAssertTrue(checked.stdout.contains("violation: --parallel 2 needs 2 experiment slots, but this machine has 1"), checked.text)
        XCTAssertEqual(try ws.proctor(["check", "--workspace", ws.root, "--parallel", "2"], environment: ["PROCTOR_MACHINE_SLOTS": "2"]).status, 0)
        try ws.write("proctor.toml", ws.read("proctor.toml")!.replacingOccurrences(of: "[experiment]\n", with: "[experiment]\nparallel = 3\n"))
        XCTAssertTrue(ws.read("proctor.toml")!.contains("parallel = 3"))
        _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "three slots"])
        let configured = try ws.proctor(["check", "--workspace", ws.root], environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        XCTAssertEqual(configured.status, 1, configured.text)
        // Named as the user wrote it: the config's key and its line, not a flag that was never given.
        let line = ws.read("proctor.toml")!.components(separatedBy: "\n").firstIndex(of: "parallel = 3")! + 1
        XCTAssertTrue(configured.stdout.contains("proctor.toml:\(line): experiment.parallel = 3 needs 3 experiment slots, but this machine has 2"), configured.text)
        let run = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "1"], environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        StartTests.assertRefused(run, mentioning: "proctor.toml:\(line): experiment.parallel = 3 needs 3 experiment slots")
        XCTAssertEqual(try ws.proctor(["check", "--workspace", ws.root, "--parallel", "1"]).status, 0)
        XCTAssertEqual(try ws.proctor(["check", "--workspace", ws.root, "--parallel", "0"]).status, 125)
    }

    /// `proctor check` says the configuration's warnings as `run` and `exec` do (it said "ok" alone).
    func testCheckSaysTheConfigurationsWarnings() throws {
        var spec = WorkspaceSpec()
        spec.extraSections = "[sandbox]\nread_only = [\"/nonexistent-check-ro-7\"]\n"
        let ws = try LoopWorkspace(spec)
        let checked = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(checked.status, 0, checked.text)
        XCTAssertTrue(checked.stderr.contains("warning: ") && checked.stderr.contains("sandbox.read_only: /nonexistent-check-ro-7 does not exist on this host"), checked.text)
    }

    /// A setting only a local launch can honour under `[executor] kind = "slurm"` (the allowlist proxy
    /// runs beside the supervisor): `proctor check` refuses it as `proctor run` does, naming the
    /// line (it said "ok", and run's error had no line).
    func testCheckRefusesWhatSlurmCannotHonourNamingTheLine() throws {
        var spec = WorkspaceSpec()
        spec.extraSections = "[executor]\nkind = \"slurm\"\n"
        let ws = try LoopWorkspace(spec)
        try ws.write("proctor.toml", ws.read("proctor.toml")!.replacingOccurrences(
            of: "[experiment]\n", with: "[experiment]\nnetwork = \"allowlist\"\nallow_hosts = [\"data.test:443\"]\n"))
        _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "allowlist"])
        let line = ws.read("proctor.toml")!.components(separatedBy: "\n").firstIndex(of: "network = \"allowlist\"")! + 1
        let checked = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(checked.status, 125, checked.text)
        XCTAssertTrue(checked.stderr.contains("proctor.toml:\(line): experiment.network: network = \"allowlist\" runs its proxy"), checked.text)
    }

    /// An output that is a committed file (or a directory of committed files: emptied before every
    /// experiment, they would go with it) failed the baseline after the run had begun (exit 1, state
    /// and ledger written). Refused at the start, and by `proctor check`, naming the line.
    func testAnOutputOverCommittedFilesIsRefused() throws {
        for (output, problem) in [("program.md", "is a committed file"), ("docs", "is a directory that holds committed files")] {
            let ws = try LoopWorkspace()
            try ws.write("program.md", "Improve X.\n")
            try ws.write("docs/notes.txt", "mine\n")
            try ws.write("proctor.toml", ws.read("proctor.toml")!.replacingOccurrences(of: #"outputs  = ["outputs/"]"#, with: "outputs  = [\"\(output)\"]"))
            _ = try ws.git(["add", "-f", "program.md", "docs/notes.txt", "proctor.toml"])
            _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "outputs over committed files"])
            let line = try XCTUnwrap(ws.read("proctor.toml")?.components(separatedBy: "\n").firstIndex { $0.hasPrefix("outputs") }) + 1
            let result = try ws.run(["--iterations", "1"])
            StartTests.assertRefused(result, mentioning: "proctor.toml:\(line): files.outputs: expected directories of the experiment's own, but \"\(output)\" \(problem)")
            StartTests.assertNoLedger(ws)
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/state.json")))
            XCTAssertEqual(ws.read("program.md"), "Improve X.\n")
            XCTAssertEqual(ws.read("docs/notes.txt"), "mine\n")
            let checked = try ws.proctor(["check", "--workspace", ws.root])
            XCTAssertEqual(checked.status, 1, checked.text)
            XCTAssertTrue(checked.stdout.contains("violation: ") && checked.stdout.contains(problem), checked.text)
        }
    }

    /// Slurm drops a backslash from a job's `--output` path: every job of a workspace under such a
    /// path failed to launch after the probe passed. Refused at the start (before Slurm is asked).
    func testAWorkspacePathWithABackslashIsRefusedForSlurm() throws {
        let spec = try LoopWorkspace(initialize: false)
        let root = spec.base + "/back\\slash"
        XCTAssertEqual(try spec.proctor(["init", root, "--template", spec.templateDir]).status, 0)
        let result = try spec.proctor(["run", "--workspace", root, "--iterations", "1", "--executor", "slurm"])
        StartTests.assertRefused(result, mentioning: "holds a backslash, which Slurm drops from a job's log path")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/.proctor/results.tsv"))
    }

    /// `--cancel-running` acts on Slurm jobs only: with the local executor it was accepted and did nothing.
    func testCancelRunningWithTheLocalExecutorIsRefused() throws {
        let ws = try LoopWorkspace()
        let result = try ws.run(["--iterations", "1", "--cancel-running"])
        StartTests.assertRefused(result, mentioning: "--cancel-running cancels Slurm jobs a killed run left; this run measures locally")
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(try ws.proctorBranches(), [])
    }

    /// A `[files] locked` name that matches nothing (a typo, or `eval` for the directory `eval/`)
    /// left the file it meant unlocked and out of the evaluator's pinned copy, and a
    /// `[memory] do_not_retry` list that does not exist was read as empty, without a word. Refused
    /// at the start, and by `proctor check`, naming the line.
    func testALockedNameThatMatchesNothingIsRefused() throws {
        let cases = [(#"locked   = ["prepare.py", "eval_util.py"]"#, "", "locked", "files.locked: expected committed files, but \"eval_util.py\" names none"),
                     (#"locked   = ["prepare.py", "eval"]"#, "", "locked", "files.locked: expected committed files, but \"eval\" names none (a directory is written \"eval/\")"),
                     (#"locked   = ["prepare.py", "DONT*"]"#, "[memory]\ndo_not_retry = \"DONT.md\"\n", "do_not_retry",
                      "memory.do_not_retry: expected a committed locked file, but DONT.md is not one")]
        for (locked, extra, key, message) in cases {
            let ws = try LoopWorkspace()
            try ws.write("eval/helper.py", "X = 1\n")
            try ws.write("proctor.toml", ws.read("proctor.toml")!.replacingOccurrences(of: #"locked   = ["prepare.py"]"#, with: locked) + extra)
            _ = try ws.git(["add", "-f", "eval/helper.py", "proctor.toml"])
            _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "a locked name that matches nothing"])
            let line = try XCTUnwrap(ws.read("proctor.toml")?.components(separatedBy: "\n").firstIndex { $0.hasPrefix(key) }) + 1
            let result = try ws.run(["--iterations", "1"])
            StartTests.assertRefused(result, mentioning: "proctor.toml:\(line): \(message)")
            StartTests.assertNoLedger(ws)
            XCTAssertEqual(try ws.proctorBranches(), [])
            let checked = try ws.proctor(["check", "--workspace", ws.root])
            XCTAssertEqual(checked.status, 1, checked.text)
            XCTAssertTrue(checked.stdout.contains("violation: ") && checked.stdout.contains(message), checked.text)
        }
    }

    /// An editable file that is not UTF-8 (a Latin-1 `# café` comment) read as empty: the mutate
    /// agent warned of no markers (it has some) and every proposal crashed. Refused at the start,
    /// naming the file and line.
    func testAnEditableFileThatIsNotUTF8IsRefusedForTheBuiltInAgents() throws {
        let ws = try LoopWorkspace()
        var bytes = Array(ws.read("train.py")!.utf8)
        let second = bytes.firstIndex(of: 0x0A)! + 1
        bytes.insert(contentsOf: Array("# caf".utf8) + [0xE9, 0x0A], at: second)
        FileManager.default.createFile(atPath: ws.path("train.py"), contents: Data(bytes))
        _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "a Latin-1 comment"])
        let result = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(result, mentioning: "the mutate agent cannot start: train.py:2: not UTF-8 text")
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(try ws.proctorBranches(), [])
    }

    /// A `[sandbox] hide` over what every program needs (`/usr`: the C library) or over the
    /// experiment's own interpreter failed every launch after the run had begun (exit 1; a hidden
    /// pyenv ran the system's python3 without a word). Refused at the start, naming the line.
    func testAHideOverTheProgramsItRunsIsRefused() throws {
        var spec = WorkspaceSpec()
        spec.extraSections = "[sandbox]\nhide = [\"/usr\"]\n"
        let ws = try LoopWorkspace(spec)
        let line = try XCTUnwrap(ws.read("proctor.toml")?.components(separatedBy: "\n").firstIndex { $0.hasPrefix("hide") }) + 1
        let result = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(result, mentioning: "proctor.toml:\(line): sandbox.hide: \"/usr\" hides /usr/")
        StartTests.assertNoLedger(ws)
        let checked = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(checked.status, 1, checked.text)
        XCTAssertTrue(checked.stdout.contains("sandbox.hide: \"/usr\""), checked.text)
    }

    /// What a killed proctor left stayed until a later run of the same kind: an agent's home (what
    /// it wrote, the `[agent.home_files]` copied in) until the next agent of that kind started, the
    /// `.tmp-PID` files of whole-file writes for ever, a parallel run's slots until the next
    /// parallel run. Any run's start removes those of processes that are gone, and nothing else.
    func testARunStartRemovesWhatKilledRunsLeft() throws {
        let ws = try LoopWorkspace()
        let base = ws.base + "/homes"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let gone: Int32 = 4_194_303  // above any pid_max the kernel allows: no such process
        let stale = ["\(base)/proctor-agent-\(gone)-AbCdEf", "\(base)/proctor-session-\(gone)-AbCdEf"]
        let live = "\(base)/proctor-agent-\(getpid())-AbCdEf"
        for directory in stale + [live] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data("token\n".utf8).write(to: URL(fileURLWithPath: directory + "/cred.json"))
        }
        for name in [".proctor/state.json.tmp-\(gone)", ".proctor/memory/learnings.md.tmp-\(gone)", ".proctor/slots/0/tree/train.py"] {
            try ws.write(name, "left\n")
        }
        try ws.write(".proctor/mine.tmp-\(getpid())", "a live process's\n")
        let result = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "1"], environment: ["PROCTOR_AGENT_HOME_BASE": base])
        XCTAssertEqual(result.status, 0, result.text)
        for path in stale + [ws.path(".proctor/state.json.tmp-\(gone)"), ws.path(".proctor/memory/learnings.md.tmp-\(gone)"), ws.path(".proctor/slots")] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: path), path)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: live + "/cred.json"), "a live process's home was removed")
        XCTAssertEqual(ws.read(".proctor/mine.tmp-\(getpid())"), "a live process's\n")
    }

    func testResumeWithNothingToResumeIsRefusedWith125() throws {
        let ws = try LoopWorkspace()
        StartTests.assertRefused(try ws.run(["--resume", "--iterations", "1"]), mentioning: "nothing to resume")
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(try ws.proctorBranches(), [])
    }

    /// A state.json that does not parse (another tool's, or truncated by hand) is named as such, not
    /// reported as missing, and nothing is written.
    func testResumeWithACorruptStateNamesTheFile() throws {
        let ws = try LoopWorkspace()
        try ws.write(".proctor/state.json", "{\"run\": \"x\", \"branch\": ")
        StartTests.assertRefused(try ws.run(["--resume", "--iterations", "1"]), mentioning: "state.json: not a run state proctor can resume (not valid JSON)")
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(ws.read(".proctor/state.json"), "{\"run\": \"x\", \"branch\": ", "the state is left for the user")
        // What is wrong, in a clause, not Foundation's dump of the decoding error.
        try ws.write(".proctor/state.json", "{\"run\": 3}")
        StartTests.assertRefused(try ws.run(["--resume", "--iterations", "1"]), mentioning: "(key \"run\": expected a string)")
    }

    /// `.proctor` as a file, and an option given twice (the last one used to win silently): one
    /// line each, exit 125.
    func testAStateFolderThatIsAFileAndARepeatedOptionAreOneLineRefusals() throws {
        let ws = try LoopWorkspace()
        StartTests.assertRefused(try ws.run(["--iterations", "1", "--iterations", "2"]), mentioning: "--iterations is given twice")
        try FileManager.default.removeItem(atPath: ws.path(".proctor"))
        try ws.write(".proctor", "a file\n")
        StartTests.assertRefused(try ws.run(["--iterations", "1"]), mentioning: "/.proctor (proctor keeps its state there; move what is there away): Not a directory")
        XCTAssertEqual(ws.read(".proctor"), "a file\n")
    }

    /// The user deleted the run's branch between runs: resume refuses and writes no row for the lost run.
    func testResumeAfterTheBranchWasDeletedIsRefusedWith125() throws {
        let ws = try LoopWorkspace()
        let first = try ws.run(["--iterations", "1"])
        XCTAssertEqual(first.status, 0, first.text)
        let branch = try XCTUnwrap(ws.branch)
        let ledger = ws.read(".proctor/results.tsv")
        let runs = ws.read(".proctor/runs.jsonl")
        try ws.git(["checkout", "-q", "main"])
        try ws.git(["branch", "-D", branch])
        StartTests.assertRefused(try ws.run(["--resume", "--iterations", "1"]), mentioning: "\(branch) is gone")
        XCTAssertEqual(ws.read(".proctor/results.tsv"), ledger)
        XCTAssertEqual(ws.read(".proctor/runs.jsonl"), runs)
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), "main")
    }

    /// `--agent command` over a proctor.toml without `[agent] command` used to run the baseline and then
    /// record a crash for every iteration ("no command to run"), exiting 0.
    func testAgentOverrideWithoutItsConfigurationIsRefused() throws {
        let ws = try LoopWorkspace()
        for (kind, key) in [("command", "agent.command"), ("http", "agent.base_url")] {
            let result = try ws.run(["--iterations", "1", "--agent", kind])
            StartTests.assertRefused(result, mentioning: key)
            XCTAssertTrue(result.stderr.contains("proctor.toml"), result.stderr)
        }
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertNil(ws.read("outputs/started"), "the baseline never ran")
    }

    /// An agent's program that its sandbox would not find (a typo, a CLI in a directory it does not
    /// see) ran the whole baseline, then crashed every proposal with exit 127 (exit 0); a session
    /// agent's ended at once and the session exited 0. Refused before the baseline, naming it.
    func testAnAgentProgramTheSandboxWouldNotFindIsRefused() throws {
        var spec = WorkspaceSpec()
        spec.extraSections = "[agent]\nkind = \"command\"\ncommand = [\"no-such-agent-cli\", \"{prompt}\"]\n"
        let ws = try LoopWorkspace(spec)
        let missing = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(missing, mentioning: "[agent] command: \"no-such-agent-cli\" is on no directory of the agent sandbox's PATH")
        // A program the host has where no sandbox looks (the workspace's parent here).
        let outside = URL(fileURLWithPath: ws.root).deletingLastPathComponent().path + "/outside-agent.sh"
        try LoopWorkspace.write(outside, "#!/bin/sh\nexit 0\n")
        chmod(outside, 0o755)
        defer { unlink(outside) }
        let session = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", outside])
        StartTests.assertRefused(session, mentioning: "the agent's command: \"\(outside)\" is no executable file the agent sandbox sees")
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertNil(ws.read("outputs/started"), "the baseline never ran")
    }

    /// The experiment's or evaluator's program missing: the baseline failed (exit 1) after the run
    /// had begun. Refused at the start, naming the key.
    func testAnExperimentOrEvaluatorProgramTheSandboxWouldNotFindIsRefused() throws {
        for (from, to, key) in [("command  = [\"python3\", \"train.py\"", "command  = [\"python3-typo\", \"train.py\"", "[experiment] command"),
                                ("command  = [\"python3\", \"prepare.py\"]", "command  = [\"./score.sh\"]", "[evaluator] command")] {
            let ws = try LoopWorkspace()
            let toml = try XCTUnwrap(ws.read("proctor.toml"))
            XCTAssertTrue(toml.contains(from), toml)
            try ws.write("proctor.toml", toml.replacingOccurrences(of: from, with: to))
            _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "a typo"])
            let result = try ws.run(["--iterations", "1"])
            StartTests.assertRefused(result, mentioning: key)
            XCTAssertTrue(result.stderr.contains(to.contains("typo") ? "\"python3-typo\" is on no directory" : "\"./score.sh\" is no executable file in the workspace"),
                          result.stderr)
            StartTests.assertNoLedger(ws)
            XCTAssertNil(ws.read("outputs/started"), "the baseline never ran")
        }
    }

    /// An editable file committed as a symbolic link: the agent was shown nothing to edit and every
    /// proposal crashed, after the baseline. Refused at the start (125), naming the key; `proctor
    /// check` of a tree where the link is the change still reports it as a violation.
    func testAnEditableFileCommittedAsALinkIsRefused() throws {
        let ws = try LoopWorkspace()
        try FileManager.default.moveItem(atPath: ws.path("train.py"), toPath: ws.path("real_train.py"))
        XCTAssertEqual(symlink("real_train.py", ws.path("train.py")), 0)
        _ = try ws.git(["add", "-A"])
        _ = try ws.git(["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "train.py as a link"])
        let result = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(result, mentioning: "files.editable: expected regular files, but train.py is committed as a symbolic link (to real_train.py)")
        StartTests.assertNoLedger(ws)
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertNil(ws.read("outputs/started"), "the baseline never ran")
    }

    /// A baseline that fails leaves HEAD on the user's branch and no dead `proctor/` branch (they used
    /// to pile up, HEAD left on the last one); the next run starts cleanly.
    func testFailedOrKilledBaselineLeavesNoBranch() throws {
        var spec = WorkspaceSpec()
        spec.experimentTimeout = "90s"
        let ws = try LoopWorkspace(spec)
        let head = try ws.git(["rev-parse", "HEAD"])
        let good = try XCTUnwrap(ws.read("train.py"))
        let commit = { (text: String, message: String) in
            try ws.write("train.py", text)
            try ws.git(["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", message])
        }
        try commit("import sys\nsys.exit(3)\n", "crashing baseline")
        let failed = try ws.run(["--iterations", "1"])
        XCTAssertEqual(failed.status, 1, failed.text)
        XCTAssertTrue(failed.stderr.contains("baseline did not produce a score"), failed.stderr)
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), "main")
        XCTAssertEqual(try ws.gitStatus(), "")

        try ws.git(["reset", "-q", "--hard", head])
        let run = try ws.run(["--iterations", "1"])
        XCTAssertEqual(run.status, 0, run.text)
        XCTAssertEqual(try ws.proctorBranches(), [try XCTUnwrap(ws.branch)])
        assertLedgerConsistent(ws, iterations: [0, 1])
        try ResumeTests.assertTreeAndBranchConsistent(ws)
    }

    /// Issue 10: a SIGKILL while the baseline is measured (an overnight run on a slow experiment)
    /// leaves no branch and HEAD where it was; `--resume` measures the baseline again, on the same run
    /// and branch, and goes on. The experiment is slow while `slow/flag` exists (an ignored file).
    func testResumeAfterAKillDuringTheBaselineMeasuresItAgain() throws {
        var spec = WorkspaceSpec()
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(
            of: "SLEEP = 0\n", with: "SLEEP = 60 if os.path.exists('slow/flag') else 0\n")
        spec.experimentTimeout = "90s"
        let ws = try LoopWorkspace(spec, files: [".gitignore": "slow/\n"])
        let head = try ws.git(["rev-parse", "HEAD"])
        try ws.write("slow/flag", "1\n")
        try ResumeTests.killMidExperiment(ws, ["--iterations", "1"])
        let run = try XCTUnwrap(ws.state?["run"] as? String)
        XCTAssertEqual(ws.state?["inProgress"] as? Int, 0)
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), "main")

        // The tree or HEAD changed meanwhile: refused, nothing written.
        try ws.write("train.py", spec.train + "# mine\n")
        StartTests.assertRefused(try ws.run(["--resume", "--iterations", "1"]), mentioning: "train.py")
        try ws.write("train.py", spec.train)
        XCTAssertEqual(ws.rows.count, 0, "no row yet")

        try FileManager.default.removeItem(atPath: ws.path("slow/flag"))
        let resumed = try ws.run(["--resume", "--iterations", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertTrue(resumed.stdout.contains("measuring it again"), resumed.stdout)
        XCTAssertEqual(ws.state?["run"] as? String, run, "the same run")
        XCTAssertEqual(try ws.proctorBranches(), ["proctor/" + run])
        XCTAssertEqual(ws.rows.first?.commit, String(head.prefix(ws.rows.first?.commit.count ?? 0)))
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        try ResumeTests.assertTreeAndBranchConsistent(ws)
    }

    /// The user committed on the run's branch between runs: resume used to move the branch back to the
    /// last kept commit and restore the tree, dropping the user's commit with one progress line. It is
    /// now refused (125), the commit and ledger untouched; moved back by the user, the run continues.
    func testResumeRefusesABranchTheUserMoved() throws {
        let ws = try LoopWorkspace()
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        let branch = try XCTUnwrap(ws.branch)
        let kept = try ws.git(["rev-parse", branch])
        try ws.write("LOG.md", "# notes\nmy own note\n")
        try ws.git(["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "my note"])
        let mine = try ws.git(["rev-parse", branch])
        let ledger = ws.read(".proctor/results.tsv")
        StartTests.assertRefused(try ws.run(["--resume", "--iterations", "1"]), mentioning: "\(branch) moved")
        XCTAssertEqual(try ws.git(["rev-parse", branch]), mine, "the user's commit is still the tip")
        XCTAssertEqual(ws.read("LOG.md"), "# notes\nmy own note\n")
        XCTAssertEqual(ws.read(".proctor/results.tsv"), ledger)

        try ws.git(["reset", "-q", "--hard", kept])
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
    }

    /// HEAD on another branch with uncommitted changes: those are the user's, and the resume's restore
    /// would wipe them; refused.
    func testResumeRefusesUncommittedChangesOnAnotherBranch() throws {
        let ws = try LoopWorkspace()
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        try ws.git(["checkout", "-q", "main"])
        try ws.write("program.md", "my unsaved plan\n")
        StartTests.assertRefused(try ws.run(["--resume", "--iterations", "1"]), mentioning: "changes on main")
        XCTAssertEqual(ws.read("program.md"), "my unsaved plan\n")
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), "main")
    }

    /// `proctor run --iterations 1` whose baseline experiment sleeps a minute, once it sleeps.
    func startedDuringALongBaseline() throws -> (LoopWorkspace, CapturedOutput, Process) {
        var spec = WorkspaceSpec()
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(of: "SLEEP = 0\n", with: "SLEEP = 60\n")
        spec.experimentTimeout = "90s"
        let ws = try LoopWorkspace(spec)
        let output = try CapturedOutput()
        let run = try ws.startRun(["--iterations", "1"], output: output)
        if !waitUntil(timeout: 60, { ws.read("outputs/sleeping") != nil }) {
            kill(run.processIdentifier, SIGKILL)
            XCTFail("the baseline never slept: \(output.stdout)\(output.stderr)")
        }
        return (ws, output, run)
    }

    /// Ctrl-C during the baseline: exit 130 as for any interrupted run (it was 1, "the baseline did not
    /// produce a score (interrupted)"), the experiment gone, no branch, HEAD and the tree untouched.
    func testSIGINTDuringTheBaselineExits130() throws {
        let (ws, output, run) = try startedDuringALongBaseline()
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        kill(run.processIdentifier, SIGINT)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 130, output.stderr)
        XCTAssertTrue(output.stderr.contains("interrupted while measuring the baseline"), output.stderr)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), "main")
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertTrue(try ws.proctor(["status", "--workspace", ws.root]).stdout.contains("lock: free"))
    }

    /// The terminal hung up (an ssh session that dropped): SIGHUP stops the run as Ctrl-C does (exit
    /// 130, nothing left running, the ledger whole, `--resume` goes on); it killed proctor outright.
    /// Started under `nohup` (SIGHUP ignored), the run goes on to its end, as nohup means.
    func testAHungUpTerminalStopsTheRunCleanlyUnlessNohupIgnoresIt() throws {
        var spec = WorkspaceSpec()
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(of: "SLEEP = 0\n", with: "SLEEP = 2\n")
        let ws = try LoopWorkspace(spec)
        let output = try CapturedOutput()
        let run = try ws.startRun(["--iterations", "3"], output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 60) { ws.rows.count >= 1 && ws.read("outputs/sleeping") != nil }, output.stderr)
        // To the process group, as bash sends it to a job when the terminal hangs up (Foundation
        // starts each child in a group of its own).
        XCTAssertEqual(getpgid(run.processIdentifier), run.processIdentifier)
        kill(-run.processIdentifier, SIGHUP)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 130, output.stderr)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
        assertLedgerConsistent(ws, iterations: Array(0..<ws.rows.count))
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)

        let ignoring = try CapturedOutput()
        let command = "trap '' HUP; exec \"$0\" run --workspace \"$1\" --resume --iterations 1"
        let nohup = try startProcess(["/bin/bash", "-c", command, proctorBinary, ws.root], environment: ws.environment, output: ignoring)
        defer { if nohup.isRunning { kill(nohup.processIdentifier, SIGKILL) } }
        let before = ws.rows.count
        XCTAssertTrue(waitUntil(timeout: 60) { ws.read("outputs/sleeping") != nil && (try? String(contentsOfFile: "/proc/\(nohup.processIdentifier)/comm", encoding: .utf8)) == "proctor\n" }, ignoring.stderr)
        // The launchers are in proctor's process group: one stopped its sandbox at the hang-up
        // meant for proctor, and the experiment was lost ("stopped by the supervisor").
        XCTAssertEqual(getpgid(nohup.processIdentifier), nohup.processIdentifier)
        XCTAssertTrue(waitUntil(timeout: 60) { !processes(containing: ws.tag).isEmpty }, ignoring.stderr)
        kill(-nohup.processIdentifier, SIGHUP)
        nohup.waitUntilExit()
        XCTAssertEqual(exitStatus(nohup), 0, ignoring.stderr)
        XCTAssertEqual(ws.rows.count, before + 1)
        XCTAssertFalse(ws.rows.contains { $0.status == "crash" }, ws.ledgerLines.joined(separator: "\n"))
    }

    /// A launcher someone stopped (SIGSTOP) made proctor impossible to stop: it sent the launcher
    /// one SIGTERM, which a stopped process does not act on, and waited for it. Now SIGCONT with
    /// it, and SIGKILL after the grace period: exit 130 in seconds, nothing left running.
    func testAStoppedLauncherDoesNotHoldTheRun() throws {
        let (ws, output, run) = try startedDuringALongBaseline()
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        let children = (try? String(contentsOfFile: "/proc/\(run.processIdentifier)/task/\(run.processIdentifier)/children", encoding: .utf8)) ?? ""
        let launchers = children.split(separator: " ").compactMap { pid_t($0) }.filter {
            ((try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("proctor-sandbo")
        }
        XCTAssertEqual(launchers.count, 1, children)
        for pid in launchers { kill(pid, SIGSTOP) }
        let sent = Date()
        kill(run.processIdentifier, SIGTERM)
        XCTAssertTrue(waitUntil(timeout: 30) { !run.isRunning }, "proctor did not stop: \(output.stderr)")
        XCTAssertEqual(exitStatus(run), 130, output.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(sent), 15)
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: ws.tag).isEmpty }, "\(processes(containing: ws.tag))")
    }

    /// The reader of proctor's output went away (`proctor run | head -1`): the next progress line
    /// raised SIGPIPE, which killed proctor (141); it stops the run as Ctrl-C does.
    func testAReaderThatGoesAwayStopsTheRunCleanly() throws {
        var spec = WorkspaceSpec()
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(of: "SLEEP = 0\n", with: "SLEEP = 1\n")
        let ws = try LoopWorkspace(spec)
        let command = "\"$0\" run --workspace \"$1\" --iterations 20 | head -c 1 >/dev/null; exit ${PIPESTATUS[0]}"
        let result = try runChild(["/bin/bash", "-c", command, proctorBinary, ws.root], environment: ws.environment, deadline: 300)
        XCTAssertEqual(result.status, 130, result.stderr)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
        XCTAssertLessThan(ws.rows.count, 21)
        assertLedgerConsistent(ws, iterations: Array(0..<ws.rows.count))

        // Output that cannot be written (a terminal that hung up gives EIO; /dev/full, ENOSPC) is
        // dropped: Foundation's FileHandle.write trapped on it (exit 132) at the first progress line.
        let full = try runChild(["/bin/bash", "-c", "exec \"$0\" run --workspace \"$1\" --resume --iterations 1 >/dev/full",
                                 proctorBinary, ws.root], environment: ws.environment, deadline: 300)
        XCTAssertEqual(full.status, 0, full.stderr)
    }

    /// `proctor status` over a state.json that does not decode said "run: none yet"; `proctor report
    /// --out` into a missing directory printed Foundation's NSCocoaErrorDomain dump.
    func testStatusAndReportNameTheirBadInput() throws {
        let ws = try LoopWorkspace()
        try ws.write(".proctor/state.json", "{\"run\": 3")
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(status.stdout.contains("state.json is not a run state"), status.stdout)
        let report = try ws.proctor(["report", "--workspace", ws.root, "--out", ws.base + "/missing/report.html"])
        StartTests.assertRefused(report, mentioning: "open \(ws.base)/missing/report.html: No such file or directory")
    }

    /// `proctor status` reads every slot lock file beside the machine lock: a FIFO planted under such
    /// a name (any user may, in /tmp) hung it; it is passed over.
    func testStatusIsNotHeldByAFIFOUnderALockName() throws {
        let ws = try LoopWorkspace()
        XCTAssertEqual(mkfifo(ws.machineLock + ".7", 0o644), 0)
        XCTAssertEqual(mkfifo(ws.machineLock + ".05", 0o644), 0)
        let status = try runChild([proctorBinary, "status", "--workspace", ws.root], environment: ws.environment, deadline: 30)
        XCTAssertFalse(status.killed, "status hung on the FIFO")
        XCTAssertEqual(status.status, 0, status.text)
        XCTAssertFalse(status.stdout.contains("machine lock"), status.stdout)
    }

    /// A proctor.toml that is there but cannot be read is not "is this a proctor workspace?".
    func testUnreadableConfigurationSaysWhy() throws {
        let ws = try LoopWorkspace()
        try FileManager.default.removeItem(atPath: ws.path("proctor.toml"))
        try FileManager.default.createDirectory(atPath: ws.path("proctor.toml"), withIntermediateDirectories: false)
        let result = try ws.run(["--iterations", "1"])
        StartTests.assertRefused(result, mentioning: "proctor.toml: cannot read the workspace configuration: it is a directory")
        StartTests.assertNoLedger(ws)
    }
}
