import Foundation
import XCTest

/// Issue 3, step 5: the score is the metric key of the JSON object on the locked evaluator's last stdout
/// line; anything else is `crash`, and what the experiment prints is never a score.
final class ScoringTests: XCTestCase {
    /// A locked dataset of more files than the launcher takes mount options (256): the evaluator
    /// gets every one of them from the pinned copy (bound by directory, not file by file) and scores.
    func testLockedDatasetOfManyFilesIsScored() throws {
        var spec = WorkspaceSpec()
        spec.files = spec.files.replacingOccurrences(of: "locked   = [\"prepare.py\"]",
                                                     with: "locked   = [\"prepare.py\", \"data/**\"]")
        spec.prepare = "import os, sys\nif len(os.listdir('data/shards')) != 300: sys.exit('data/shards incomplete')\n"
            + WorkspaceSpec.defaultPrepare
        var files: [String: String] = [:]
        for i in 0..<300 { files["data/shards/s\(i).txt"] = "\(i)\n" }
        let ws = try LoopWorkspace(spec, files: files)
        let result = try ws.run(["--iterations", "1"])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertNotNil(ws.rows.first?.score, "the baseline was scored: \(ws.ledgerLines) \(result.text)")
    }

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
        XCTAssertFalse(ws.rows.contains { $0.score == 999 }, "no row scored 999")

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
    /// The experiment cannot read the hidden labels, but it can leave a link in its outputs that points at
    /// them; the evaluator would then read the labels as the predictions and score them perfectly. A link
    /// out of the outputs is rejected before the evaluator runs; a link within them is fine.
    func testOutputsLinkToTheHiddenLabelsIsRejected() throws {
        var spec = WorkspaceSpec()
        // The labels file happens to parse as predictions: exactly what a cheating link exploits.
        spec.target = "0.7 50 5 42 ok"
        spec.prepare = spec.prepare.replacingOccurrences(of: "target = float(open(\"holdout/target.txt\").read())",
                                                         with: "target = float(open(\"holdout/target.txt\").read().split()[0])")
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) cat >> train.py <<'EOF'
            os.remove(os.path.join(out, "pred.txt"))
            os.symlink(os.path.abspath("holdout/target.txt"), os.path.join(out, "pred.txt"))
            EOF
               echo "SUMMARY: absolute link to the labels" ;;
            2) cat >> train.py <<'EOF'
            os.remove(os.path.join(out, "pred.txt"))
            os.makedirs(os.path.join(out, "d"))
            os.symlink("../../holdout/target.txt", os.path.join(out, "d", "labels"))
            os.symlink("d/labels", os.path.join(out, "pred.txt"))
            EOF
               echo "SUMMARY: relative link chain to the labels" ;;
            3) set_var X 0.5
            cat >> train.py <<'EOF'
            os.symlink("pred.txt", os.path.join(out, "latest"))
            EOF
               echo "SUMMARY: a link within the outputs" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        XCTAssertEqual(try ws.proctor(["exec", "--workspace", ws.root, "--", "cat", "holdout/target.txt"]).status, 1,
                       "the experiment phase cannot read the labels itself")
        let result = try ws.run(["--iterations", "3"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3])
        for iteration in [1, 2] {
            let row = try XCTUnwrap(ws.row(iteration))
            XCTAssertEqual(row.status, "rejected", "iteration \(iteration): \(row.fields)")
            XCTAssertNil(row.score, "iteration \(iteration) was scored: \(row.fields)")
            let audit = ws.audit.filter { $0["iteration"] as? Int == iteration && $0["kind"] as? String == "tamper" && $0["rule"] as? String == "outputs" }
            XCTAssertEqual(audit.first?["decision"] as? String, "rejected", "iteration \(iteration): \(ws.audit.filter { $0["kind"] as? String != "sandbox" })")
            XCTAssertTrue((audit.first?["path"] as? String ?? "").hasPrefix(ws.path("outputs/")), "\(audit)")
        }
        XCTAssertFalse(ws.rows.contains { $0.score.map { $0 > 0.999 } ?? false }, "the labels were scored: \(ws.ledgerLines)")
        // Any link is refused, even one that stays inside the outputs: the evaluator reads regular files only.
        XCTAssertEqual(ws.row(3)?.status, "rejected", "\(ws.row(3)?.fields ?? [])")
        XCTAssertEqual(try ws.gitStatus(), "")
    }
    /// Writing the ledger, the state or the branch from the experiment does nothing: `.proctor/` and `.git`
    /// are out of every sandbox's reach, and what the loop records is only what it measured. (A command
    /// agent that tries the same is rejected outright: CommandAgentLoopTests.)
    func testExperimentAndAgentCannotWriteTheLedgerStateOrBranch() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            cat >> train.py <<'EOF'
            for f in [".proctor/results.tsv", ".proctor/runs.jsonl", ".proctor/state.json", ".git/HEAD", ".proctor/lock", "proctor.toml"]:
                try:
                    open(f, "a").write("1\\tdeadbeef\\t999\\tkeep\\t0\\t\\t\\t\\tforged\\n")
                    print("experiment wrote", f)
                except OSError as e:
                    print("denied", f, e)
            EOF
            echo "SUMMARY: forge the ledger"
            """
        let ws = try LoopWorkspace(spec)
        let head = try ws.git(["rev-parse", "HEAD"])
        let toml = ws.read("proctor.toml")
        let result = try ws.run(["--iterations", "1"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1])
        XCTAssertFalse(ws.read(".proctor/results.tsv")!.contains("forged"))
        XCTAssertFalse(ws.read(".proctor/runs.jsonl")!.contains("forged"))
        XCTAssertFalse(ws.read(".proctor/state.json")!.contains("forged"))
        XCTAssertEqual(ws.read("proctor.toml"), toml)
        XCTAssertEqual(try ws.git(["rev-parse", "HEAD"]), head)
        let log = ws.read(".proctor/logs/\(ws.runID!)/1-42-experiment.log") ?? ""
        XCTAssertFalse(log.contains("experiment wrote"), log)
        XCTAssertEqual(ws.row(1)?.status, "discard", "\(ws.row(1)?.fields ?? [])")
        XCTAssertEqual(try XCTUnwrap(ws.row(1)?.score), 0.5, accuracy: 0.001)
        let diff = ws.record(1)?["diff"] as? [String: Any]
        XCTAssertEqual(diff?["files"] as? [String], ["train.py"], "the agent could not write anything it reported in LOG.md")
    }
}
