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
    }
}
