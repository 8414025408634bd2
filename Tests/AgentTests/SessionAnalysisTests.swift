import Foundation
import ProctorTestSupport
import XCTest

/// Issue 8: `proctor analyze` from inside a session goes over the session channel, like
/// `proctor experiment`: the supervisor runs it in the experiment sandbox between experiments and
/// answers with its summary and exit status.
final class SessionAnalysisTests: XCTestCase {
    func testAnalysisFromInsideASession() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let script = """
            proctor analyze -- sh -c 'cat holdout/target.txt; echo ANALYSIS-MARK; echo kept > "$PROCTOR_OUTPUTS/made.txt"; exit 5' > "$HOME/a" 2>&1
            echo "analysis rc=$?"
            echo "reply: $(tr '\\n' ' ' < "$HOME/a")"
            \(SessionTests.setX("0.6"))
            proctor experiment "x=0.6"
            sleep 1000
            """
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c", script],
                                     deadline: 180)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("analysis rc=5"), "the command's status: \(outcome.stdout)")
        XCTAssertTrue(outcome.stdout.contains("ANALYSIS-MARK"), outcome.stdout)
        XCTAssertTrue(outcome.stdout.contains("analysis #1"), outcome.stdout)
        XCTAssertFalse(outcome.stdout.contains(LoopWorkspace.hiddenLabel), "the hidden file is absent in the analysis")
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], "an analysis is not an iteration")
        let meta = try XCTUnwrap(ws.bytes(".proctor/analysis/1/meta.json"))
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: meta) as? [String: Any])
        XCTAssertEqual(record["origin"] as? String, "session")
        XCTAssertEqual(record["status"] as? Int, 5)
        XCTAssertEqual(ws.read(".proctor/analysis/1/scratch/outputs/made.txt"), "kept\n")
        XCTAssertEqual(ws.filesContaining(LoopWorkspace.hiddenLabel, under: ws.root + "/.proctor/analysis"), [])
    }
}
