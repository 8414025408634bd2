import Foundation
import ProctorTestSupport
import XCTest

@testable import ProctorLoop

/// Issue 8, "A sealed test set": a second locked evaluator over a second hidden set, run on kept
/// commits and the baseline only, never shown to any agent, in no phase but its own.
final class SealedTests: XCTestCase {
    /// The sealed evaluator: the sealed target is a distinctive number, so that any leak of a
    /// sealed score (0.3141...) into what an agent reads is easy to find.
    static let sealedEvaluator = """
        import json, os
        out = os.environ.get("PROCTOR_OUTPUTS", "outputs")
        x = float(open(os.path.join(out, "pred.txt")).read().split()[0])
        target = float(open("sealed/target.txt").read())
        # The validation labels are not the sealed evaluator's to read.
        print(json.dumps({"score": target + x / 1000, "saw_holdout": int(os.path.exists("holdout/target.txt"))}))

        """

    static func spec(agent: String) -> WorkspaceSpec {
        var spec = WorkspaceSpec()
        spec.files = """
            [files]
            editable = ["train.py"]
            notes    = ["LOG.md"]
            locked   = ["prepare.py", "sealed_eval.py"]
            hidden   = ["holdout/**"]
            sealed   = ["sealed/**"]
            outputs  = ["outputs/"]
            """
        spec.evaluatorExtra = #"sealed_command = ["python3", "sealed_eval.py"]"#
        // The validation evaluator reports whether it could see the sealed set.
        spec.prepare = WorkspaceSpec.defaultPrepare.replacingOccurrences(
            of: #"result = {"score": score, "trees": int(trees), "features": int(features)}"#,
            with: #"result = {"score": score, "trees": int(trees), "features": int(features), "saw_sealed": int(os.path.exists("sealed/target.txt")), "saw_memory": int(os.path.exists("/run/proctor/memory"))}"#)
        spec.confirmSeeds = "[17]"
        spec.agentScript = agent
        return spec
    }

    func testSealedScoreOnKeptRowsOnlyAndNeverSeenByAnyPhase() throws {
        // Iteration 1 improves (kept), 2 worsens (discarded), 3 does nothing. Every iteration the
        // agent tries to read the sealed labels and keeps its whole prompt in LOG.md.
        let agent = agentPrelude + """
            { echo "--- prompt $i"; cat "$1"; echo "--- sealed $i"; cat sealed/target.txt 2>&1; ls -a . 2>&1; } >> LOG.md
            case "$i" in
            1) set_var X 0.7; echo "SUMMARY: x to 0.7" ;;
            2) set_var X 0.1; echo "SUMMARY: x to 0.1" ;;
            *) echo "SUMMARY: nothing" ;;
            esac
            """
        var spec = SealedTests.spec(agent: agent)
        // The experiment tries too, and says what it found in its log (kept under .proctor/logs).
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(
            of: "print(\"trained\")",
            with: "print(\"trained\", \"SEALED-VISIBLE\" if os.path.exists(\"sealed/target.txt\") else \"sealed-absent\")")
        let ws = try LoopWorkspace(spec, files: ["sealed/target.txt": "0.3141\n", "sealed_eval.py": SealedTests.sealedEvaluator])
        let result = try ws.run(["--iterations", "3"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3])

        // Kept rows (the baseline and iteration 1) carry the sealed score; the others none.
        XCTAssertEqual(try XCTUnwrap(ws.row(0)?.sealed), 0.3141 + 0.2 / 1000, accuracy: 1e-9)
        XCTAssertEqual(ws.row(1)?.status, "keep")
        XCTAssertEqual(try XCTUnwrap(ws.row(1)?.sealed), 0.3141 + 0.7 / 1000, accuracy: 1e-9)
        XCTAssertEqual(ws.row(2)?.status, "discard")
        XCTAssertNil(ws.row(2)?.sealed)
        XCTAssertNil(ws.row(3)?.sealed)
        let record = try XCTUnwrap(ws.record(1))
        XCTAssertEqual(try XCTUnwrap(record["sealed"] as? Double), 0.3141 + 0.7 / 1000, accuracy: 1e-9)
        XCTAssertEqual((record["sealedScores"] as? [[String: Any]])?.count, 2, "one sealed score per seed")
        XCTAssertNil(ws.record(2)?["sealed"], "a discarded candidate is never sealed-scored")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/logs/\(ws.runID!)/2-42-sealed.out")))

        // No phase but the sealed evaluator saw the sealed set; the sealed evaluator did not see the holdout.
        for i in 0...3 {
            XCTAssertEqual(ws.record(i)?["measurements"].flatMap { ($0 as? [String: Any])?["saw_sealed"] as? Double }, 0,
                           "the validation evaluator saw the sealed set in iteration \(i)")
            XCTAssertEqual(ws.record(i)?["measurements"].flatMap { ($0 as? [String: Any])?["saw_memory"] as? Double }, 0,
                           "the evaluator saw the research memory in iteration \(i)")
        }
        let logs = ws.path(".proctor/logs/" + ws.runID!)
        let experimentLog = try String(contentsOfFile: logs + "/1-42-experiment.log", encoding: .utf8)
        XCTAssertTrue(experimentLog.contains("sealed-absent"), experimentLog)
        let sealedOut = try String(contentsOfFile: logs + "/1-42-sealed.out", encoding: .utf8)
        XCTAssertTrue(sealedOut.contains("\"saw_holdout\": 0"), sealedOut)

        // The agent's notes hold every prompt it got and what it found: no sealed score, no sealed labels.
        let notes = try ws.git(["show", "HEAD:LOG.md"]) + (ws.read("LOG.md") ?? "")
        XCTAssertTrue(notes.contains("--- prompt 1"), notes)
        XCTAssertFalse(notes.contains("3141"), "a sealed number reached the agent:\n\(notes)")
        XCTAssertFalse(notes.contains("sealed_eval") && notes.contains("0.3141"), notes)
        XCTAssertTrue(notes.contains("No such file"), notes)
        XCTAssertEqual(try ws.gitStatus(), "")

        // The report states the gap between the last kept validation and sealed scores.
        let report = try ws.proctor(["report", "--workspace", ws.root, "--out", ws.base + "/report.html"])
        XCTAssertEqual(report.status, 0, report.text)
        let html = try String(contentsOfFile: ws.base + "/report.html", encoding: .utf8)
        XCTAssertTrue(html.contains("sealed"), "the report shows the sealed score")
    }

    /// Ctrl-C while the sealed evaluator scores a keep: the keep was recorded without its sealed
    /// score (a stopped sealed run counted as one that failed), and `--resume` never scored it.
    /// No row now, as for any iteration Ctrl-C stops; `--resume` measures it again, sealed score and all.
    func testCtrlCDuringTheSealedEvaluatorRecordsNoKeepWithoutItsSealedScore() throws {
        let agent = agentPrelude + """
            set_var X 0.7; echo "SUMMARY: x to 0.7"
            """
        let slowSealed = SealedTests.sealedEvaluator.replacingOccurrences(of: "import json, os\n", with: """
            import json, os, time
            if os.path.exists("sealed/slow") and "0.7" in open(os.path.join(os.environ.get("PROCTOR_OUTPUTS", "outputs"), "pred.txt")).read():
                time.sleep(60)

            """)
        let ws = try LoopWorkspace(SealedTests.spec(agent: agent), files: ["sealed/target.txt": "0.3141\n", "sealed_eval.py": slowSealed])
        try ws.write("sealed/slow", "1\n")
        let output = try CapturedOutput()
        let run = try startProcess([proctorBinary, "run", "--workspace", ws.root, "--iterations", "1"],
                                   environment: ws.environment, output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 120, interval: 0.1) { ws.rows.count == 1 && !processes(containing: "sealed_eval.py").isEmpty },
                      output.stdout + output.stderr)
        Thread.sleep(forTimeInterval: 0.5)
        kill(run.processIdentifier, SIGINT)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 130, output.stdout + output.stderr)
        XCTAssertEqual(ws.rows.map(\.iteration), [0], "a row for the interrupted keep: " + ws.ledgerLines.joined(separator: "\n"))
        XCTAssertNil(ws.record(1), "a record for the interrupted keep")
        try FileManager.default.removeItem(atPath: ws.path("sealed/slow"))
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertEqual(ws.row(1)?.status, "keep", resumed.text)
        XCTAssertNotNil(ws.record(1)?["sealed"] as? Double, "\(String(describing: ws.record(1)))")
    }

    func testSealedCommandAndSetNeedEachOther() throws {
        var spec = SealedTests.spec(agent: "true")
        spec.evaluatorExtra = ""
        let ws = try LoopWorkspace(spec, files: ["sealed/target.txt": "0.5\n", "sealed_eval.py": SealedTests.sealedEvaluator],
                                   initialize: false)
        let result = try ws.proctor(["init", ws.root, "--template", ws.templateDir])
        XCTAssertEqual(result.status, 125, result.text)
        XCTAssertTrue(result.stderr.contains("files.sealed") && result.stderr.contains("sealed_command"), result.stderr)
    }
}
