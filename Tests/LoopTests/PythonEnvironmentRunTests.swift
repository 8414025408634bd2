import Foundation
import ProctorTestSupport
import XCTest

/// Issue 11 end to end: `proctor run` from an activated venv runs the venv in the experiment and
/// the evaluator and records it in runs.jsonl; a bare `python3` beside a project `.venv/` is refused
/// by `proctor run` (125, before anything runs) and reported by `proctor check`.
final class PythonEnvironmentRunTests: XCTestCase {
    private func venv(_ dir: String) throws {
        let made = try runChild(["/usr/bin/python3", "-m", "venv", "--without-pip", dir], deadline: 60)
        guard made.status == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail(made.text) }
            throw XCTSkip("/usr/bin/python3 cannot make a venv: \(made.stderr)")
        }
    }

    func testRunFromAnActivatedVenvRecordsItsInterpreter() throws {
        let ws = try LoopWorkspace()
        let env = ws.base + "/home/me/venvs/ml"
        try venv(env)
        var activated = ws.environment
        activated["VIRTUAL_ENV"] = env
        activated["PATH"] = env + "/bin:" + (activated["PATH"] ?? "/usr/bin:/bin")
        let result = try runChild([proctorBinary, "run", "--workspace", ws.root, "--iterations", "1"], environment: activated)
        XCTAssertEqual(result.status, 0, result.text)
        let records = try XCTUnwrap(ws.read(".proctor/runs.jsonl")).split(separator: "\n").map { line in
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
        XCTAssertEqual(records.count, 2, "the baseline and one iteration")
        for record in records {
            XCTAssertNotEqual(record["status"] as? String, "crash", "\(record)")
            let interpreters = try XCTUnwrap(record["interpreters"] as? [String: [String: Any]], "\(record)")
            for phase in ["experiment", "evaluator"] {
                let used = try XCTUnwrap(interpreters[phase], phase)
                XCTAssertEqual(used["kind"] as? String, "venv", phase)
                XCTAssertEqual(used["executable"] as? String, env + "/bin/python3", phase)
                XCTAssertEqual(used["prefix"] as? String, env, phase)
                XCTAssertEqual(used["mounts"] as? [String], [env], phase)
            }
        }
    }

    func testBarePythonBesideAProjectVenvIsRefusedByRunAndCheck() throws {
        let ws = try LoopWorkspace()
        try venv(ws.path(".venv"))
        let before = try ws.git(["rev-parse", "HEAD"])
        var plain = ws.environment
        plain["PATH"] = "/usr/bin:/bin"
        let run = try runChild([proctorBinary, "run", "--workspace", ws.root, "--iterations", "1"], environment: plain)
        XCTAssertEqual(run.status, 125, run.text)
        XCTAssertTrue(run.stderr.contains("[experiment] command: \"python3\" would run /usr/bin/python3"), run.stderr)
        XCTAssertTrue(run.stderr.contains("but \(ws.root)/.venv/bin/python3 on this host"), run.stderr)
        XCTAssertTrue(run.stderr.contains("[experiment] command = [\".venv/bin/python3\", ...]"), run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/results.tsv")), "nothing ran")
        XCTAssertEqual(try ws.git(["rev-parse", "HEAD"]), before)

        let check = try runChild([proctorBinary, "check", "--workspace", ws.root], environment: plain)
        XCTAssertEqual(check.status, 1, check.text)
        XCTAssertTrue(check.stdout.contains("violation: \(ws.root)/proctor.toml:9: [experiment] command: \"python3\" would run"), check.stdout)
    }
}
