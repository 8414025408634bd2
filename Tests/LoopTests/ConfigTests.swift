import Foundation
import ProctorTestSupport
import XCTest

/// The contract: an unknown key, a wrong type or an impossible value in `proctor.toml` is an error that
/// names the key, the file and the line, and exits 125 before anything runs.
final class ConfigTests: XCTestCase {
    /// (name, a change to the good proctor.toml, the text of the offending line, the key the error must name)
    static let cases: [(String, @Sendable (String) -> String, String, String)] = [
        ("unknown key", { $0.replacingOccurrences(of: "timeout  = \"20s\"", with: "timeout  = \"20s\"\ntimeuot = \"5s\"") },
         "timeuot = \"5s\"", "timeuot"),
        ("wrong type", { $0.replacingOccurrences(of: "seeds    = [42]", with: "seeds    = \"42\"") },
         "seeds    = \"42\"", "seeds"),
        ("bad duration", { $0.replacingOccurrences(of: "timeout  = \"20s\"", with: "timeout  = \"soon\"") },
         "timeout  = \"soon\"", "timeout"),
        ("impossible value", { $0.replacingOccurrences(of: "diff_lines = 20", with: "diff_lines = -3") },
         "diff_lines = -3", "diff_lines"),
        ("bad direction", { $0.replacingOccurrences(of: "metric   = \"score\"", with: "metric   = \"score\"\ndirection = \"up\"") },
         "direction = \"up\"", "direction"),
        ("unknown agent kind", { $0 + "\n[agent]\nkind = \"oracle\"\n" }, "kind = \"oracle\"", "kind"),
        ("unknown section", { $0 + "\n[experimnt]\nseeds = [1]\n" }, "[experimnt]", "experimnt"),
        // The outputs are emptied before each experiment: the root, .git or a locked file's directory
        // as the outputs used to delete the workspace (its repository included) on the first run.
        ("outputs at the root", { $0.replacingOccurrences(of: "outputs  = [\"outputs/\"]", with: "outputs  = [\".\"]") },
         "outputs  = [\".\"]", "files.outputs"),
        ("outputs in .git", { $0.replacingOccurrences(of: "outputs  = [\"outputs/\"]", with: "outputs  = [\".git/\"]") },
         "outputs  = [\".git/\"]", "files.outputs"),
        ("outputs over the hidden files", { $0.replacingOccurrences(of: "outputs  = [\"outputs/\"]", with: "outputs  = [\"holdout\"]") },
         "outputs  = [\"holdout\"]", "files.outputs"),
        // A preset that does not exist: named where it was written, not only as policies/NAME.toml.
        ("unknown policy preset", { $0 + "\n[sandbox]\npolicy = \"nosuch\"\n" }, "policy = \"nosuch\"", "sandbox.policy"),
        ("no evaluator command", { $0.replacingOccurrences(of: "command  = [\"python3\", \"prepare.py\"]", with: "") },
         "[evaluator]", "evaluator.command"),
    ]

    func testBadConfigurationExits125BeforeAnythingRuns() throws {
        let ws = try LoopWorkspace()
        let good = try XCTUnwrap(ws.read("proctor.toml"))
        let head = try ws.git(["rev-parse", "HEAD"])
        for (name, change, offending, key) in ConfigTests.cases {
            let bad = change(good)
            XCTAssertNotEqual(bad, good, name)
            try ws.write("proctor.toml", bad)
            let line = try XCTUnwrap(bad.components(separatedBy: "\n").firstIndex { $0.hasPrefix(offending) }, name) + 1
            for args in [["run", "--workspace", ws.root, "--iterations", "1"],
                         ["exec", "--workspace", ws.root, "--", "true"],
                         ["check", "--workspace", ws.root],
                         ["status", "--workspace", ws.root]] {
                let result = try ws.proctor(args)
                XCTAssertEqual(result.status, 125, "\(name), proctor \(args[0]): \(result.text)")
                XCTAssertTrue(result.stderr.contains("proctor.toml:\(line)"), "\(name), proctor \(args[0]): expected line \(line) in \(result.stderr)")
                XCTAssertTrue(result.stderr.contains(key), "\(name), proctor \(args[0]): expected key \(key) in \(result.stderr)")
                XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result.stderr)")
            }
        }
        // Nothing ran: no ledger, no state, no logs, no audit, no branch, no commit.
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/results.tsv")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/runs.jsonl")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/state.json")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/logs")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("outputs/started")))
        XCTAssertEqual(ws.audit.count, 0, "\(ws.audit)")
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertEqual(try ws.git(["rev-parse", "HEAD"]), head)
        XCTAssertEqual(processes(containing: ws.tag), [])
        XCTAssertEqual(ws.read("holdout/target.txt"), "0.7\n", "the hidden files are still there")
        XCTAssertNotNil(ws.read("prepare.py"))
    }

    /// `proctor init --template` with a bad proctor.toml: 125 naming file, line and key; no commit.
    func testInitRefusesABadTemplate() throws {
        var spec = WorkspaceSpec()
        spec.limits = "[limits]\ntrees = \"many\"\n"
        let ws = try LoopWorkspace(spec, initialize: false)
        let result = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(result.status, 125, result.text)
        let toml = try XCTUnwrap(String(contentsOfFile: ws.templateDir + "/proctor.toml", encoding: .utf8))
        let line = try XCTUnwrap(toml.components(separatedBy: "\n").firstIndex { $0.hasPrefix("trees = ") }) + 1
        XCTAssertTrue(result.stderr.contains("proctor.toml:\(line)"), result.stderr)
        XCTAssertTrue(result.stderr.contains("trees"), result.stderr)
        let commits = try runChild(["/usr/bin/git", "-C", ws.root, "rev-parse", "--verify", "-q", "HEAD"])
        XCTAssertNotEqual(commits.status, 0, "no commit was made: \(commits.text)")
        // Nothing half-made: a directory holding the copied proctor.toml would make every later
        // `proctor init` of it refuse ("already holds a proctor.toml").
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.root), "init left \(ws.root) behind")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: ws.base).sorted(), ["template"])
        try ws.write("proctor.toml", "") // the user's own directory, with a file in it
        try FileManager.default.removeItem(atPath: ws.path("proctor.toml"))
        let again = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(again.status, 125, again.text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: ws.root), [], "nothing copied into an existing directory")
    }

    /// `proctor init FILE` and `proctor exec --audit-log` with a path that cannot be one: 125 naming
    /// the path (they were raw NSCocoaErrorDomain codes), and no directory made for a typo.
    func testInitOntoAFileAndABadAuditLogAreRefusedByName() throws {
        let ws = try LoopWorkspace()
        let file = ws.base + "/afile"
        try "x\n".write(toFile: file, atomically: true, encoding: .utf8)
        let onFile = try ws.proctor(["init", file, "--template", ws.templateDir])
        XCTAssertEqual(onFile.status, 125, onFile.text)
        XCTAssertTrue(onFile.stderr.contains("is a file, not a directory"), onFile.stderr)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "x\n")
        for (path, message) in [("", "expected a file in an existing directory"), (ws.base, "expected a file, but"),
                                (ws.base + "/no/such/audit.jsonl", "expected a file in an existing directory")] {
            let result = try ws.proctor(["exec", "--workspace", ws.root, "--audit-log", path, "--", "/bin/true"])
            XCTAssertEqual(result.status, 125, result.text)
            XCTAssertTrue(result.stderr.contains("--audit-log: " + message), result.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.base + "/no"), "no directory made for the audit log")
        let good = try ws.proctor(["exec", "--workspace", ws.root, "--audit-log", ws.base + "/audit.jsonl", "--", "/bin/true"])
        XCTAssertEqual(good.status, 0, good.text)
    }

    /// `proctor init` of `ws.root` from its template, SIGKILLed after `delay` seconds.
    private func initKilled(_ ws: LoopWorkspace, after delay: Double) throws {
        let output = try CapturedOutput()
        let child = try startProcess([proctorBinary, "init", ws.root, "--template", ws.templateDir],
                                     environment: ws.environment, output: output)
        usleep(useconds_t(delay * 1_000_000))
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
    }

    /// SIGKILL during `proctor init DIR`: DIR is either absent or a whole workspace, never a half-made one
    /// that every later `proctor init` refuses.
    func testInitKilledHalfwayLeavesNoHalfMadeWorkspace() throws {
        let ws = try LoopWorkspace(initialize: false)
        // A template big enough that copying and committing it takes a while.
        for i in 0..<400 { try LoopWorkspace.write(ws.templateDir + "/data/f\(i).txt", String(repeating: "x\(i)\n", count: 2000)) }
        for delay in [0.02, 0.05, 0.1, 0.2] {
            try initKilled(ws, after: delay)
            if FileManager.default.fileExists(atPath: ws.root) {
                XCTAssertEqual(try ws.git(["status", "--porcelain"]), "", "killed after \(delay)s: a whole workspace")
                XCTAssertNotNil(ws.read(".proctor/pins.json"), "killed after \(delay)s: pinned")
                try FileManager.default.removeItem(atPath: ws.root)
            }
        }
        let result = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertEqual(try ws.git(["status", "--porcelain"]), "")
    }

    /// `proctor init` into a directory that exists (the current one, by default) killed half-way
    /// left a proctor.toml with no repository or no commit, and every command sent to another
    /// (`init`: use --repin; `--repin`: no commit; `run`: run init): only deleting files by hand
    /// got out. The next `proctor init` finishes it now, whenever the kill came. A killed init of a
    /// new directory left its staging copy for good; the next init sweeps those of dead processes.
    func testInitKilledInAnExistingDirectoryIsFinishedByTheNext() throws {
        let ws = try LoopWorkspace(initialize: false)
        for i in 0..<200 { try LoopWorkspace.write(ws.templateDir + "/data/f\(i).txt", String(repeating: "x\(i)\n", count: 2000)) }
        for delay in [0.02, 0.06, 0.15] {
            try? FileManager.default.removeItem(atPath: ws.root)
            try FileManager.default.createDirectory(atPath: ws.root, withIntermediateDirectories: true)
            try initKilled(ws, after: delay)
            if ws.read(".proctor/init.pending") != nil {
                let run = try ws.run(["--iterations", "1"])
                XCTAssertEqual(run.status, 125, run.text)
                // (Before the template's proctor.toml was copied, there is no configuration to read.)
                XCTAssertTrue(run.stderr.contains("unfinished `proctor init`") || ws.read("proctor.toml") == nil, run.stderr)
            }
            let again = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
            if ws.read(".proctor/init.pending") == nil && again.status == 125 {
                XCTAssertTrue(again.stderr.contains("already holds a proctor.toml"), "killed after \(delay)s: \(again.text)")
            } else {
                XCTAssertEqual(again.status, 0, "killed after \(delay)s: \(again.text)")
            }
            XCTAssertEqual(try ws.git(["status", "--porcelain"]), "", "killed after \(delay)s")
            XCTAssertEqual(try ws.git(["log", "--format=%s"]).split(separator: "\n").count, 1, "killed after \(delay)s: one init commit")
            XCTAssertNotNil(ws.read(".proctor/pins.json"), "killed after \(delay)s: pinned")
            XCTAssertNil(ws.read(".proctor/init.pending"))
        }
        // Two states a kill at the wrong moment left, made certain: the next init finishes both.
        // A file cut short mid-copy: the init kept it (files already there are the user's) and
        // committed it cut short. It is copied under a side name now and renamed whole.
        try FileManager.default.removeItem(atPath: ws.root)
        try LoopWorkspace.write(ws.root + "/.proctor/init.pending", "copying\n")
        try LoopWorkspace.write(ws.root + "/data/f7.txt.proctor-init-part", "x7\n")
        // (Killed after the configuration's copy, before the repository: said first, not "no repository".)
        try FileManager.default.copyItem(atPath: ws.templateDir + "/proctor.toml", toPath: ws.root + "/proctor.toml")
        for command in [["run", "--workspace", ws.root, "--iterations", "1"], ["check", "--workspace", ws.root]] {
            let refused = try ws.proctor(command)
            XCTAssertEqual(refused.status, 125, refused.text)
            XCTAssertTrue(refused.stderr.contains("unfinished `proctor init`"), refused.stderr)
        }
        var again = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(again.status, 0, again.text)
        XCTAssertEqual(ws.read("data/f7.txt"), String(repeating: "x7\n", count: 2000))
        XCTAssertEqual(try ws.git(["status", "--porcelain", "--untracked-files=all"]), "", "the cut copy was left")
        // A repository the init had begun to make (a kill inside the repository's creation): it
        // could not be opened, and every later init failed on it. It is made again.
        try FileManager.default.removeItem(atPath: ws.root)
        try LoopWorkspace.write(ws.root + "/.proctor/init.pending", "copying\nmade-git\n")
        try LoopWorkspace.write(ws.root + "/.git/description", "x\n")
        again = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(again.status, 0, again.text)
        XCTAssertEqual(try ws.git(["log", "--format=%s"]).split(separator: "\n").count, 1, again.text)
        // Killed after its commit, before the commit's index entries were written (seen in CI as
        // the unprivileged user): the next init kept the commit and left the index empty, every
        // file "deleted" and untracked. It writes the entries now.
        let committed = try ws.git(["rev-parse", "HEAD"])
        try LoopWorkspace.write(ws.root + "/.proctor/init.pending", "head none\n")
        _ = try ws.git(["rm", "-q", "-r", "--cached", "."])
        XCTAssertNotEqual(try ws.git(["status", "--porcelain"]), "")
        again = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(again.status, 0, again.text)
        XCTAssertEqual(try ws.git(["rev-parse", "HEAD"]), committed, "a second commit was made")
        XCTAssertEqual(try ws.git(["status", "--porcelain", "--untracked-files=all"]), "", "the index was left empty")
        XCTAssertNil(ws.read(".proctor/init.pending"))
        // One the user had before the init is theirs: opened, never made again.
        try FileManager.default.removeItem(atPath: ws.root)
        try LoopWorkspace.write(ws.root + "/.proctor/init.pending", "copying\n")
        try LoopWorkspace.write(ws.root + "/.git/description", "x\n")
        again = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(again.status, 125, again.text)
        XCTAssertTrue(again.stderr.contains("/.git is there but git cannot open it as a repository"), again.stderr)
        XCTAssertEqual(ws.read(".git/description"), "x\n", "the user's .git was replaced")
        // A staging copy of a killed init of a new directory (its pid long gone) is swept.
        try FileManager.default.removeItem(atPath: ws.root)
        let parent = URL(fileURLWithPath: ws.root).deletingLastPathComponent().path
        let stale = parent + "/." + URL(fileURLWithPath: ws.root).lastPathComponent + ".proctor-init-999999999"
        try LoopWorkspace.write(stale + "/proctor.toml", "x")
        let made = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(made.status, 0, made.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "the dead init's staging copy was left")
    }
}
