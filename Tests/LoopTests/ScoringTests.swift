import Foundation
import XCTest

/// Issue 3, step 5: the score is the metric key of the JSON object on the locked evaluator's last stdout
/// line; anything else is `crash`, and what the experiment prints is never a score.
final class ScoringTests: XCTestCase {
    func testExperimentCannotPrintItsScoreAndBrokenEvaluatorOutputIsACrash() throws {
        var spec = WorkspaceSpec()
        let modes = ["nonjson", "missing", "nan", "string", "trailer", "array", "empty"]
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.0
            cat >> train.py <<'EOF'
            print('{"score": 999}')
            open(os.path.join(out, "score.json"), "w").write('{"score": 999}')
            EOF
               echo "SUMMARY: print a fake score" ;;
            \(modes.enumerated().map { "\($0.offset + 2)) set_var MODE '\"\($0.element)\"'; echo \"SUMMARY: mode \($0.element)\" ;;" }.joined(separator: "\n"))
            esac
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", String(modes.count + 1)])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: Array(0...(modes.count + 1)))

        let baseline = try XCTUnwrap(ws.row(0)?.score)
        XCTAssertEqual(baseline, 0.5, accuracy: 0.001)

        // Iteration 1: the experiment's last line is {"score": 999} and it wrote a score file; its real
        // predictions are worse, and that is what the ledger says.
        let log = ws.read(".proctor/logs/\(ws.runID!)/1-42-experiment.log") ?? ""
        XCTAssertTrue(log.contains("{\"score\": 999}"), "the experiment did print the fake score: \(log)")
        let fake = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(fake.status, "discard", fake.fields.joined(separator: " "))
        XCTAssertEqual(try XCTUnwrap(fake.score), 0.3, accuracy: 0.001)
        for record in ws.records {
            XCTAssertNotEqual(record["score"] as? Double, 999)
            for seed in record["scores"] as? [[String: Any]] ?? [] { XCTAssertNotEqual(seed["score"] as? Double, 999) }
        }
        XCTAssertFalse(ws.read(".proctor/results.tsv")!.contains("999"))

        // Iterations 2...: the evaluator's output is unusable: crash, no score, the reason recorded.
        for (offset, mode) in modes.enumerated() {
            let iteration = offset + 2
            let row = try XCTUnwrap(ws.row(iteration))
            XCTAssertEqual(row.status, "crash", "mode \(mode): \(row.fields)")
            XCTAssertNil(row.score, "mode \(mode)")
            XCTAssertEqual(row.commit, "")
            let record = try XCTUnwrap(ws.record(iteration))
            XCTAssertNil(record["score"] as? Double, "mode \(mode)")
            XCTAssertTrue((record["reason"] as? String ?? "").contains("evaluator"), "mode \(mode): \(record)")
        }
        let nan = "\(ws.record(4)?["reason"] ?? "")"
        XCTAssertTrue(nan.contains("JSON") || nan.contains("finite"), nan)
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "1", "nothing was kept")
        XCTAssertEqual(ws.read("train.py"), spec.train, "the tree is back to the baseline")
    }
}
