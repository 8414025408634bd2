import Foundation
import ProctorSandbox
import ProctorTestSupport
import XCTest

@testable import ProctorLoop

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
        // Python writes NaN as a bare `NaN`: read, and a crash that says so (issue 8); a string says so too.
        let nan = "\(ws.record(4)?["reason"] ?? "")"
        XCTAssertTrue(nan.contains("\"score\" is NaN"), nan)
        let string = "\(ws.record(5)?["reason"] ?? "")"
        XCTAssertTrue(string.contains("\"score\" is a string"), string)
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
    /// An evaluator that echoes a file of the outputs (a log, a report) before its result: the
    /// experiment made that file end in a good score line exactly at the preset's 64 MiB stdio
    /// limit, so the launcher's cut dropped the real last line and the fake one was scored (a red
    /// team's keep at 0.95 of a 0.3 model). Cut output is a crash that says so, never a score.
    func testAnEvaluatorOutputCutAtTheStdioLimitIsNotScored() throws {
        var spec = WorkspaceSpec()
        spec.prepare = """
            import os, sys
            notes = os.path.join(os.environ.get("PROCTOR_OUTPUTS", "outputs"), "notes.txt")
            if os.path.exists(notes):
                sys.stdout.buffer.write(open(notes, "rb").read())
                sys.stdout.flush()

            """ + WorkspaceSpec.defaultPrepare
        spec.agentScript = agentPrelude + """
            set_var X 0.0
            cat >> train.py <<'EOF'
            fake = b'{"score": 0.99, "trees": 50, "features": 5}\\n'
            with open(os.path.join(out, "notes.txt"), "wb") as f:
                f.write(b"#" * ((64 << 20) - len(fake) - 1) + b"\\n" + fake)
            EOF
            echo "SUMMARY: a worse model with a long report"
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "1"])
        XCTAssertEqual(result.status, 0, result.text)
        let row = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(row.status, "crash", row.fields.joined(separator: " "))
        XCTAssertNil(row.score)
        let reason = "\(ws.record(1)?["reason"] ?? "")"
        XCTAssertTrue(reason.contains("stdio_limit"), reason)
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "1", "nothing was kept")
    }

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

/// Issue 8: scores that are not numbers. Python's `json.dumps` writes `-Infinity`, `Infinity` and `NaN` as
/// bare tokens; the infinities are the ends of the scale, the rest a crash that says what it was.
final class NonFiniteScoreTests: XCTestCase {
    func parse(_ line: String, metric: String = "score") throws -> Evaluation {
        try Evaluation.parse(stdout: "evaluating...\n" + line + "\n", metric: metric)
    }

    func failure(_ line: String) -> Evaluation.Failure? {
        do {
            _ = try parse(line)
            return nil
        } catch {
            return error as? Evaluation.Failure
        }
    }

    func testPythonInfinitiesAreScoresInAnyKeyPosition() throws {
        let minus = try parse(#"{"score": -Infinity, "trees": 3}"#)
        XCTAssertEqual(minus.score, -.infinity)
        XCTAssertEqual(minus.measurements, ["trees": 3])
        XCTAssertEqual(try parse(#"{"trees": 3, "score": Infinity}"#).score, .infinity)
        XCTAssertEqual(try parse(#"{"a":1,"score":-Infinity,"b":2}"#).score, -.infinity)
        XCTAssertEqual(try parse("{\"trees\": 3,\t\"score\":\t-Infinity }").score, -.infinity)
        // Other measurements may be infinite too; a NaN measurement is no measurement; nested tokens are fine.
        let other = try parse(#"{"score": 0.5, "sharpe": -Infinity, "drawdown": Infinity, "vol": NaN, "curve": [NaN, -Infinity, {"x": Infinity}]}"#)
        XCTAssertEqual(other.score, 0.5)
        XCTAssertEqual(other.measurements, ["sharpe": -.infinity, "drawdown": .infinity])
    }

    func testNaNNullAndStringAreCrashesThatSayWhich() {
        XCTAssertEqual(failure(#"{"score": NaN, "trees": 3}"#), .notANumber("score", .nan))
        XCTAssertEqual(failure(#"{"score": null}"#), .notANumber("score", .null))
        XCTAssertEqual(failure(#"{"score": "0.5"}"#), .notANumber("score", .string))
        XCTAssertEqual(failure(#"{"score": "-Infinity"}"#), .notANumber("score", .string), "quoted, it is a string")
        XCTAssertEqual("\(Evaluation.Failure.notANumber("score", .nan))", "the evaluator's \"score\" is NaN, not a score")
        XCTAssertEqual("\(Evaluation.Failure.notANumber("score", .null))", "the evaluator's \"score\" is null, not a score")
        XCTAssertEqual("\(Evaluation.Failure.notANumber("score", .string))", "the evaluator's \"score\" is a string, not a score")
        // Not there, or not a number of any kind: as before.
        XCTAssertEqual(failure(#"{"accuracy": -Infinity}"#), .missingMetric("score"))
        XCTAssertEqual(failure(#"{"score": true}"#), .missingMetric("score"))
        XCTAssertEqual(failure(#"{"score": [1]}"#), .missingMetric("score"))
    }

    func testTheWordsInsideStringsAreLeftAlone() throws {
        let noted = try parse(#"{"note": "-Infinity, Infinity: NaN", "score": 0.25, "why": "x\": -Infinity"}"#)
        XCTAssertEqual(noted.score, 0.25)
        // An escaped backslash ends the string: the token after it is a value.
        XCTAssertEqual(try parse(#"{"path": "C:\\", "score": -Infinity}"#).score, -.infinity)
        XCTAssertEqual(try parse(#"{"Infinity": 1, "score": 2}"#).score, 2)
        XCTAssertEqual(try parse(#"{"score": 2, "-Infinity": Infinity}"#).measurements, ["-Infinity": .infinity])
    }

    /// Only Python's three tokens are let through: the rest of JSON5 stays a broken line.
    func testOnlyPythonsTokensAreAccepted() {
        for line in [#"{score: -Infinity}"#, #"{"score": +Infinity}"#,
                     #"{"score": -Infinityx}"#, #"{"score": -Infinity, "n": 0x10}"#, #"{"score": - Infinity}"#,
                     #"{"score": -Infinity} // gate"#, #"{"score": -Infinity, 'a': 1}"#, #"[-Infinity]"#,
                     #"{"score" -Infinity}"#, "-Infinity"] {
            guard case .notJSON = failure(line) else {
                XCTFail("\(line): \(String(describing: failure(line)))")
                continue
            }
        }
    }

    /// A red team's evaluator lines: each is read as Python's `json.loads` and `tail -n1` read it,
    /// or refused; never a score that another reader of the same log would not see.
    func testTheLineIsStrictJSONReadAsPythonAndTailReadIt() throws {
        // A key twice: refused (a decoder took the first, Python takes the last).
        XCTAssertEqual(failure(#"{"score": 0.2, "score": 0.9}"#), .duplicateKey("score"))
        XCTAssertEqual(failure(#"{"score": 0.25, "\u0073core": Infinity}"#), .duplicateKey("score"), "the same key escaped")
        XCTAssertEqual(try parse(#"{"a": {"x": 1, "x": 2}, "score": 0.5}"#).score, 0.5, "nested keys are not looked at")
        // Not JSON: a trailing comma, a leading zero, an unescaped control character, invalid UTF-8 in a string, nesting past the limit.
        for line in [#"{"score": 0.55,}"#, #"{"score": [1,], "x": 1}"#, #"{"score": 01}"#, "{\"score\": 0.5, \"n\": \"a\u{01}b\"}",
                     #"{"score": 1.}"#, #"{"score": .5}"#, #"{"score": 1e}"#, #"{"score": 0.5}{"#, #"{"score": nul}"#,
                     String(repeating: "[", count: 200) + "{", "{\"a\":" + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + ", \"score\": 1}"] {
            guard case .notJSON = failure(line) else {
                XCTFail("\(line.prefix(60)): \(String(describing: failure(line)))")
                continue
            }
        }
        XCTAssertThrowsError(try Evaluation.parse(stdout: Array("{\"n\": \"".utf8) + [0xFF] + Array("\", \"score\": 1}\n".utf8), metric: "score"))
        // Only LF ends a line: U+2028, VT and CR inside it do not, so a line `tail -n1` shows as junk is junk here.
        XCTAssertEqual(failure("junk\u{2028}{\"score\": 0.3}"), .notJSON("junk\u{2028}{\"score\": 0.3}"))
        XCTAssertEqual(failure("junk\u{0B}{\"score\": 0.3}"), .notJSON("junk\u{0B}{\"score\": 0.3}"))
        XCTAssertEqual(try parse("{\"score\": 0.3}\r").score, 0.3, "CRLF: the CR is blank")
        XCTAssertEqual(try Evaluation.parse(stdout: "{\"score\": 0.1}\r\n\r\n  \n", metric: "score").score, 0.1)
        // Invalid UTF-8 on another line does not hide the last one.
        let bytes = Array("evaluating \u{1}".utf8) + [0xFF, 0xFE] + Array("\n{\"score\": 0.75}\n".utf8)
        XCTAssertEqual(try Evaluation.parse(stdout: bytes, metric: "score").score, 0.75)
        // A number past a double's range is no score (Python would read 1e400 as infinity, the best there is);
        // one that underflows is the zero Python reads.
        XCTAssertEqual(failure(#"{"score": 1e400}"#), .notANumber("score", .outOfRange))
        XCTAssertEqual(failure("{\"score\": 1" + String(repeating: "0", count: 400) + "}"), .notANumber("score", .outOfRange))
        XCTAssertEqual(try parse(#"{"score": 7e-400}"#).score, 0)
        XCTAssertEqual(try parse(#"{"score": -0.0, "k": 1E+2, "e": 2e-3}"#).measurements, ["k": 100, "e": 0.002])
        XCTAssertEqual(try parse(#"{"s\"c": 1, "score": 0.5, "u": "\ud83d\ude00 \ud800"}"#).score, 0.5)
        // Keys are their code points, as Python compares them: canonically equivalent is not the same key.
        // Two spellings Swift takes as one name would merge in the record: refused as a key given twice.
        if case .duplicateKey = failure("{\"caf\u{E9}\": 1, \"cafe\u{301}\": 2, \"score\": 3}") {} else { XCTFail("merged") }
        XCTAssertThrowsError(try Evaluation.parse(stdout: "{\"cafe\u{301}\": 0.9}\n", metric: "caf\u{E9}"),
                             "the metric is not found under an equivalent spelling")
    }

    /// A failed evaluator's reason quotes its stderr's last line, read from the end: 62 MB of stderr
    /// read and split whole cost the supervisor 9 s and 1.1 GB (and held Ctrl-C).
    func testAFailedEvaluatorsLastWordsAreReadFromTheEnd() throws {
        let dir = try TemporaryDirectory("logtail")
        let log = try LogFile(path: dir.path + "/err")
        let filler = [UInt8](String(repeating: "a\n", count: 1 << 20).utf8)
        for _ in 0..<20 { XCTAssertEqual(write(log.fd, filler, filler.count), filler.count) }
        let last = Array("Traceback: the real error\n\n  \n".utf8)
        XCTAssertEqual(write(log.fd, last, last.count), last.count)
        let started = Date()
        XCTAssertEqual(log.tail(), "Traceback: the real error")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        XCTAssertEqual(try LogFile(path: dir.path + "/empty").tail(), "no output")
    }

    /// Reading is linear: a line of megabytes of escaped text (what json.dumps writes of a report
    /// with line breaks) took seconds per MiB, quadratically, at 100% of the supervisor's CPU; an
    /// output of millions of short lines was split whole.
    func testLongLinesAndManyLinesReadInLinearTime() throws {
        let chunk = String(repeating: "text \\n\\u00e9 ", count: 1)
        let long = "{\"report\": \"" + String(repeating: chunk, count: 400_000) + "\", \"score\": 0.25}"
        var started = Date()
        XCTAssertEqual(try parse(long).score, 0.25)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "\(long.utf8.count) bytes")
        let many = Array(String(repeating: "a\n", count: 4_000_000).utf8) + Array("{\"score\": 0.5}\n\n".utf8)
        started = Date()
        XCTAssertEqual(try Evaluation.parse(stdout: many, metric: "score").score, 0.5)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }

    /// A limit on a count the evaluator printed as something else fails closed: the candidate is over it.
    func testALimitOnACountThatIsNoCountIsOver() throws {
        for (line, words) in [(#"{"score": 1, "features": NaN}"#, "features is NaN, not a count"),
                              (#"{"score": 1, "features": -1e400}"#, "features is a number past a double's range, not a count"),
                              (#"{"score": 1, "features": "9"}"#, "features is a string, not a count"),
                              (#"{"score": 1, "features": [99]}"#, "features is not a number, not a count"),
                              (#"{"score": 1, "features": true}"#, "features is not a number, not a count"),
                              (#"{"score": 1, "features": -Infinity}"#, "features -inf is not a count"),
                              (#"{"score": 1, "features": -3}"#, "features -3 is not a count"),
                              (#"{"score": 1, "features": 11}"#, "features 11 over the limit 10")] {
            let over = try parse(line).over("features", cap: 10)
            XCTAssertEqual(over.map { String($0.prefix(words.count)) }, words, line)
        }
        XCTAssertNil(try parse(#"{"score": 1, "features": 10}"#).over("features", cap: 10))
        XCTAssertNil(try parse(#"{"score": 1}"#).over("features", cap: 10), "not measured: nothing to hold")
        XCTAssertNil(try parse(#"{"score": 1, "features": null}"#).over("features", cap: 10), "null: not measured, as absent")
        XCTAssertEqual(failure(#"{"score": true}"#), .missingMetric("score"))
    }

    func testGateWithInfinitiesMaximizing() {
        let gate = Gate(maximize: true, minImprovement: 0.001)
        XCTAssertTrue(gate.beats(-1e9, -.infinity), "any finite score beats a failed hard gate")
        XCTAssertTrue(gate.beats(0.5, -.infinity))
        XCTAssertFalse(gate.beats(-.infinity, -.infinity))
        XCTAssertFalse(gate.beats(-.infinity, 0.5))
        XCTAssertTrue(gate.beats(.infinity, 0.5))
        XCTAssertTrue(gate.beats(.infinity, -.infinity))
        XCTAssertFalse(gate.beats(.infinity, .infinity))
        XCTAssertFalse(gate.beats(1e308, .infinity))
        XCTAssertTrue(gate.beats(-.infinity, nil), "the first score is the best, whatever it is")
        XCTAssertFalse(gate.beats(.nan, -.infinity))
        // Finite scores as before.
        XCTAssertTrue(gate.beats(0.502, 0.5))
        XCTAssertFalse(gate.beats(0.5005, 0.5))
    }

    func testGateWithInfinitiesMinimizing() {
        let gate = Gate(maximize: false, minImprovement: 0.001)
        XCTAssertTrue(gate.beats(1e9, .infinity), "any finite loss beats a diverged one")
        XCTAssertFalse(gate.beats(.infinity, .infinity))
        XCTAssertFalse(gate.beats(.infinity, 0.5))
        XCTAssertTrue(gate.beats(-.infinity, 0.5))
        XCTAssertTrue(gate.beats(-.infinity, .infinity))
        XCTAssertFalse(gate.beats(-.infinity, -.infinity))
        XCTAssertFalse(gate.beats(-1e308, -.infinity))
        XCTAssertTrue(gate.beats(0.498, 0.5))
        XCTAssertFalse(gate.beats(0.4995, 0.5))
    }

    func testMeanAndSpreadWithInfinities() {
        XCTAssertEqual(Gate.mean([0.5, -.infinity, 0.7]), -.infinity)
        XCTAssertEqual(Gate.mean([-.infinity, -.infinity]), -.infinity)
        XCTAssertEqual(Gate.mean([0.5, .infinity]), .infinity)
        // No mean exists for a mix; never NaN: the worst end when maximizing.
        XCTAssertEqual(Gate.mean([.infinity, -.infinity]), -.infinity)
        XCTAssertEqual(Gate.mean([-.infinity, 0.1, .infinity]), -.infinity)
        XCTAssertEqual(Gate.spread([0.25, 0.75, 0.5]), 0.5)
        XCTAssertEqual(Gate.spread([]), 0)
        XCTAssertNil(Gate.spread([-.infinity, -.infinity]), "inf - inf is no spread")
        XCTAssertNil(Gate.spread([0.5, -.infinity]))
    }

    func testCountOfAnInfiniteMeasurementIsNil() throws {
        let evaluation = try parse(#"{"score": 1, "features": Infinity, "trees": 12.0, "huge": 1e300}"#)
        XCTAssertNil(evaluation.count("features"))
        XCTAssertEqual(evaluation.count("trees"), 12)
        XCTAssertNil(evaluation.count("huge"))
        XCTAssertNil(evaluation.count("absent"))
    }

    /// results.tsv writes `-inf`/`inf` and reads them back; runs.jsonl and state.json (JSONLines) too.
    func testLedgerStateAndRecordsRoundTripInfinities() throws {
        let dir = NSTemporaryDirectory() + "/proctor-inf-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ledger = try Ledger(directory: dir + "/.proctor")
        for (i, score) in [(0, -Double.infinity), (1, Double.infinity), (2, 0.125)] {
            let row = LedgerRow(iteration: i, commit: "abc", score: score, status: .keep, seconds: 1, peakMemMB: nil,
                                features: nil, trees: nil, description: "row \(i)")
            let record = RunRecord(time: Date(), run: "r", iteration: i, status: .keep, reason: nil, description: "row \(i)",
                                   commit: nil, parent: "p", score: score, bestBefore: i == 0 ? nil : -.infinity,
                                   scores: [.init(seed: 42, score: score, seconds: 1, status: "ok")], diff: nil,
                                   measurements: ["sharpe": score], limits: [:], durations: [:], agent: "test", usage: nil,
                                   violations: [])
            try ledger.append(row, record: record)
        }
        let text = try String(contentsOfFile: dir + "/.proctor/results.tsv", encoding: .utf8)
        XCTAssertEqual(text.split(separator: "\n").dropFirst().map { $0.split(separator: "\t")[2] }, ["-inf", "inf", "0.125000"])
        XCTAssertEqual(Ledger.rows(in: dir + "/.proctor").map(\.score), [-.infinity, .infinity, 0.125])
        let records = Ledger.records(in: dir + "/.proctor")
        XCTAssertEqual(records.map(\.score), [-.infinity, .infinity, 0.125])
        XCTAssertEqual(records.map(\.bestBefore), [nil, -.infinity, -.infinity])
        XCTAssertEqual(records.map { $0.scores.first?.score }, [-.infinity, .infinity, 0.125])
        XCTAssertEqual(records.map { $0.measurements["sharpe"] }, [-.infinity, .infinity, 0.125])

        let state = RunState(run: "r", branch: "proctor/r", baseCommit: String(repeating: "a", count: 40), bestCommit: String(repeating: "a", count: 40), bestScore: -.infinity,
                             baselineScore: -.infinity, baselineSpread: nil, pins: [:], lastIteration: 0, inProgress: nil)
        try state.save(dir)
        XCTAssertTrue(try String(contentsOfFile: RunState.path(dir), encoding: .utf8).contains("\"bestScore\":\"-inf\""))
        let loaded = try RunState.loadForResume(dir)
        XCTAssertEqual(loaded.bestScore, -.infinity)
        XCTAssertEqual(loaded.baselineScore, -.infinity)
        XCTAssertEqual(LedgerRow.scoreField(.nan), "nan")
    }

    /// A session agent's reply after a -inf baseline: a plain JSONEncoder throws on -inf, and the reply
    /// was silently dropped.
    func testSessionReplyWithAnInfiniteBestIsSent() throws {
        var pair: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair), 0)
        defer { close(pair[0]); close(pair[1]) }
        SessionServer.send(pair[1], .init(accepted: true, message: "iteration 1: discard", iteration: 1, status: "discard",
                                          score: -.infinity, best: -.infinity))
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(pair[0], &buffer, buffer.count, Int32(MSG_DONTWAIT))
        XCTAssertGreaterThan(n, 0, "no reply was sent")
        let reply = try JSONLines.decoder().decode(SessionProtocol.Reply.self, from: Data(buffer[0..<max(n, 0)]))
        XCTAssertEqual(reply.best, -.infinity)
        XCTAssertEqual(reply.score, -.infinity)
    }

    /// End to end: the evaluator prints `{"score": -Infinity}` for the baseline's configuration (a failed
    /// hard gate) and a finite score once train.py changes. The run starts, the first finite score is
    /// kept, a later -inf is a discard (not a crash), and `--resume` reads the -inf baseline back.
    func testMinusInfinityBaselineStartsTheRunAndTheFirstFiniteScoreIsKept() throws {
        var spec = WorkspaceSpec()
        spec.prepare = spec.prepare.replacingOccurrences(
            of: "result = {\"score\": score,",
            with: "if float(x) == 0.2:\n    score = float(\"-inf\")\nresult = {\"note\": \"gate: -Infinity\", \"score\": score,")
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.6; echo "SUMMARY: x=0.6" ;;
            2) set_var X 0.2; echo "SUMMARY: back to the gate" ;;
            3) set_var X 0.65; echo "SUMMARY: x=0.65" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "2"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        let evaluatorOut = ws.read(".proctor/logs/\(ws.runID!)/0-42-evaluator.out") ?? ""
        XCTAssertTrue(evaluatorOut.contains("\"score\": -Infinity"), "Python wrote the bare token: \(evaluatorOut)")

        let baseline = try XCTUnwrap(ws.row(0))
        XCTAssertEqual(baseline.fields[2], "-inf", baseline.fields.description)
        XCTAssertEqual(baseline.status, "keep")
        XCTAssertTrue(result.stdout.contains("baseline score = -inf"), result.stdout)
        XCTAssertNotNil(result.stdout.range(of: "best 0\\.9[0-9]* vs baseline -inf|best 0\\.899[0-9]* vs baseline -inf", options: .regularExpression), result.stdout)
        let first = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(first.status, "keep", first.fields.description)
        XCTAssertEqual(try XCTUnwrap(first.score), 0.9, accuracy: 0.001)
        XCTAssertEqual(ws.record(1)?["bestBefore"] as? String, "-inf")
        let message = try ws.git(["log", "-1", "--format=%B", ws.branch!])
        XCTAssertTrue(message.contains("best before -inf)"), message)
        let again = try XCTUnwrap(ws.row(2))
        XCTAssertEqual(again.status, "discard", again.fields.description)
        XCTAssertEqual(again.fields[2], "-inf")

        var state = try RunState.loadForResume(ws.root)
        XCTAssertEqual(state.baselineScore, -.infinity)
        XCTAssertNil(state.baselineSpread, "no spread of -inf scores")
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(status.stdout.contains("(baseline -inf)"), status.stdout)

        let html = try Reports.html(workspace: ws.root)
        // The axis spans the finite scores, inset from the edges; the -inf points sit on the bottom edge, marked.
        XCTAssertEqual(html.components(separatedBy: "class='point inf ").count - 1, 2, html)
        XCTAssertTrue(html.contains("<title>0: keep -inf baseline</title>"), html)
        XCTAssertFalse(html.contains("nan") || html.contains("='-inf") || html.contains("='inf") || html.contains(",inf")
                       || html.contains(",-inf"), html)

        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3])
        XCTAssertEqual(ws.row(3)?.status, "keep", "\(ws.row(3)?.fields ?? [])")
        state = try RunState.loadForResume(ws.root)
        XCTAssertEqual(state.baselineScore, -.infinity)
        XCTAssertEqual(state.bestScore, 0.95, accuracy: 0.001)
        XCTAssertEqual(try ws.gitStatus(), "")
    }
}
