import Foundation
import ProctorAgents
import ProctorTestSupport
import XCTest

/// Issue 8, "Done when": what the runtime remembers reaches every agent kind (learnings, near-miss
/// diffs, the plateau hint, the phase, a nudge given from another process during the run, an
/// analysis run's summary), read-only, and no sealed score ever does.
final class MemoryLoopTests: XCTestCase {
    static let sealedEvaluator = """
        import json, os
        out = os.environ.get("PROCTOR_OUTPUTS", "outputs")
        x = float(open(os.path.join(out, "pred.txt")).read())
        print(json.dumps({"score": float(open("sealed/target.txt").read()) + x / 1000}))

        """

    /// train.py setting X, slow enough (0.4 s) that a nudge and an analysis arrive mid-run.
    static func train(_ x: String) -> String { LoopWorkspace.train(x, extra: "import time\ntime.sleep(0.4)") }

    static func setX(_ x: String) -> String {
        "Moving X.\n\nSUMMARY: set X to \(x)\nFILE: train.py\n```python\n\(train(x).dropLast())\n```\n"
    }

    func testPromptCarriesMemoryPhaseNudgeAndAnalysisButNeverTheSealedScore() throws {
        let wire = HTTPAgentProtocol.openai
        // 1, 2 worse (near misses; the plateau after 2), 3 and 4 better (kept), 5 and 6 worse.
        let xs = ["0.1", "0.15", "0.6", "0.65", "0.3", "0.35"]
        let server = try ScriptedHTTPServer(xs.map { HTTPLoopTests.reply(wire, Self.setX($0)) }, lifetime: 300)
        let ws = try LoopWorkspace(
            agent: HTTPLoopTests.agentBlock(server, wire), locked: #"["prepare.py", "sealed_eval.py"]"#,
            filesExtra: #"sealed = ["sealed/**"]"#, evaluatorExtra: #"sealed_command = ["python3", "sealed_eval.py"]"#,
            extra: """
                [memory]
                plateau_after = 2

                [[phases]]
                name     = "explore"
                until    = 2
                strategy = "PHASE-ONE explore widely"

                [[phases]]
                name     = "refine"
                strategy = "PHASE-TWO refine the best"
                """,
            files: ["sealed/target.txt": "0.3141\n", "sealed_eval.py": Self.sealedEvaluator], train: Self.train("0.2"))
        let environment = [HTTPLoopTests.keyVariable: HTTPLoopTests.key]
        let output = try CapturedOutput()
        let run = try startProcess([proctorBinary, "run", "--workspace", ws.root, "--iterations", String(xs.count)],
                                   environment: ws.environment(environment), output: output)
        // Once the first proposal was asked for, the human nudges and asks for an analysis, from
        // other processes, while the run goes on.
        XCTAssertTrue(waitUntil(timeout: 120) { !server.requests.isEmpty })
        let nudge = try ws.proctor(["nudge", "--workspace", ws.root, "NUDGE-MARKER try X near 0.6"])
        XCTAssertEqual(nudge.status, 0, nudge.text)
        let analysis = try ws.proctor(["analyze", "--workspace", ws.root, "--", "sh", "-c", "echo ANALYSIS-MARKER; grep -c X train.py"],
                                      deadline: 120)
        XCTAssertEqual(analysis.status, 0, analysis.text)
        XCTAssertTrue(analysis.stdout.contains("ANALYSIS-MARKER"), analysis.text)
        XCTAssertTrue(waitUntil(timeout: 180) { !run.isRunning }, "the run did not finish")
        if run.isRunning { run.terminate() }
        run.waitUntilExit()
        let outcome: ChildOutcome? = ChildOutcome(status: exitStatus(run), stdout: output.stdout, stderr: output.stderr, seconds: 0, killed: false)
        let result = try XCTUnwrap(outcome, "the run did not finish")
        XCTAssertEqual(result.status, 0, ws.describe(result))
        XCTAssertEqual(ws.statuses(), ["keep", "discard", "discard", "keep", "keep", "discard", "discard"], ws.describe(result))

        let prompts = server.requests.map { String(decoding: $0.body, as: UTF8.self) }
        XCTAssertEqual(prompts.count, xs.count)
        // The phase text of the iteration's phase, and only that.
        XCTAssertTrue(prompts[0].contains("PHASE-ONE") && !prompts[0].contains("PHASE-TWO"))
        XCTAssertTrue(prompts[2].contains("PHASE-TWO") && !prompts[2].contains("PHASE-ONE"))
        // Learnings and near-miss diffs from iteration 2 on; the plateau hint after 2 non-keeps only.
        XCTAssertFalse(prompts[0].contains("Learnings so far"))
        XCTAssertTrue(prompts[1].contains("Learnings so far") && prompts[1].contains("X = 0.1"), prompts[1])
        XCTAssertTrue(prompts[2].contains("Near misses") && prompts[2].contains("```diff") && prompts[2].contains("+X = 0.15"), prompts[2])
        XCTAssertFalse(prompts[1].contains("# Plateau"))
        XCTAssertTrue(prompts[2].contains("# Plateau") && prompts[2].contains("fundamentally different"), prompts[2])
        XCTAssertFalse(prompts[3].contains("# Plateau"), "a keep ends the plateau")
        // The nudge reached exactly one proposal, after it was given; so did the analysis summary.
        let nudged = prompts.indices.filter { prompts[$0].contains("NUDGE-MARKER") }
        XCTAssertEqual(nudged.count, 1, "delivered once: \(nudged)")
        XCTAssertNotEqual(nudged.first, 0)
        XCTAssertEqual(prompts.indices.filter { prompts[$0].contains("ANALYSIS-MARKER") }.count, 1)
        // No sealed score, in any prompt.
        for (i, prompt) in prompts.enumerated() { XCTAssertFalse(prompt.contains("3141"), "sealed score in prompt \(i + 1)") }
        XCTAssertNotNil(ws.rows()[4]["sealed"].flatMap(Double.init), "the keep was scored on the sealed set")

        // Recorded: the nudge in its iteration's record and in the log; the phases in the records.
        let records = ws.records()
        let nudgedRecord = try XCTUnwrap(records.first { ($0["nudges"] as? [String])?.isEmpty == false })
        XCTAssertEqual(nudgedRecord["iteration"] as? Int, nudged.first.map { $0 + 1 })
        XCTAssertEqual(records.compactMap { $0["phase"] as? String }, ["explore", "explore", "refine", "refine", "refine", "refine"])
        let log = try XCTUnwrap(ws.read(".proctor/memory/LOG.md"))
        XCTAssertEqual(log.components(separatedBy: "## Iteration ").count - 1, xs.count, log)
        XCTAssertTrue(log.contains("nudge: NUDGE-MARKER"), log)
        for name in ["learnings.md", "near_misses.md", "do_not_retry.md", "nudges.md"] {
            let text = try XCTUnwrap(ws.read(".proctor/memory/" + name), name)
            XCTAssertFalse(text.contains("3141"), "sealed score in \(name)")
        }
        // The transcripts keep the answers.
        XCTAssertTrue(ws.read(".proctor/logs/\(records[1]["run"] as? String ?? "")/1-agent.log")?.contains("SUMMARY: set X to 0.1") == true)
    }

    /// A command agent reads the memory at /run/proctor/memory and cannot change it; the experiment
    /// does not see it at all. Judged from outside: the files' bytes, the notes the agent kept.
    func testMemoryIsReadOnlyForTheAgentAndAbsentForTheExperiment() throws {
        let script = """
            m=/run/proctor/memory
            { echo "--- seen"; cat $m/learnings.md; } >> LOG.md 2>&1
            echo HACKED > $m/learnings.md 2>/dev/null
            echo HACKED >> $m/LOG.md 2>/dev/null
            touch $m/planted 2>/dev/null
            mv $m/near_misses.md $m/gone 2>/dev/null
            ln -s /etc/passwd $m/link 2>/dev/null
            echo "thinking on stderr" >&2
            sed 's/^X = .*/X = 0.6  # mutate: float 0.0..1.0 linear/' train.py > /tmp/t && cat /tmp/t > train.py
            echo "SUMMARY: set X to 0.6"
            """
        let agent = """
            [agent]
            kind    = "command"
            command = ["sh", "-c", \(tomlString(script)), "agent", "{prompt_file}"]
            timeout = "20s"
            """
        let train = LoopWorkspace.train(
            "0.2", extra: "print('MEMORY-VISIBLE' if os.path.exists('/run/proctor/memory') else 'memory-absent')")
        let ws = try LoopWorkspace(agent: agent, train: train)
        let before = try XCTUnwrap(ws.read(".proctor/memory/learnings.md") ?? "", "no memory yet") // created at the start
        _ = before
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        let memory = ws.path(".proctor/memory")
        let names = try FileManager.default.contentsOfDirectory(atPath: memory).sorted()
        XCTAssertFalse(names.contains("planted") || names.contains("gone") || names.contains("link"), "\(names)")
        XCTAssertTrue(names.contains("near_misses.md"), "\(names)")
        for name in names where name.hasSuffix(".md") {
            XCTAssertFalse(try String(contentsOfFile: memory + "/" + name, encoding: .utf8).contains("HACKED"), name)
        }
        // It read them: its notes (committed with the keep) quote the learnings.
        let notes = try XCTUnwrap(ws.read("LOG.md"))
        XCTAssertTrue(notes.contains("--- seen") && notes.contains("# Learnings"), notes)
        // The experiment never saw the memory.
        let run = try XCTUnwrap(ws.records().last?["run"] as? String)
        let log = try String(contentsOfFile: ws.path(".proctor/logs/\(run)/1-42-experiment.log"), encoding: .utf8)
        XCTAssertTrue(log.contains("memory-absent"), log)
        // The transcript keeps its stderr and stdout.
        let transcript = try XCTUnwrap(ws.read(".proctor/logs/\(run)/1-agent.log"))
        XCTAssertTrue(transcript.contains("thinking on stderr") && transcript.contains("SUMMARY: set X to 0.6"), transcript)
    }

    /// `[memory] synthesize = "agent"`: after each iteration the model rewrites learnings.md from the
    /// last diff and result; its tokens are recorded; the next prompt carries its text.
    func testAgentSynthesisRewritesTheLearnings() throws {
        let wire = HTTPAgentProtocol.anthropic
        let script = [
            HTTPLoopTests.reply(wire, Self.setX("0.6")), HTTPLoopTests.reply(wire, "# Learnings\n\nSYNTH-MARKER-1: X up helps\n"),
            HTTPLoopTests.reply(wire, Self.setX("0.65")), HTTPLoopTests.reply(wire, "```markdown\n# Learnings\n\nSYNTH-MARKER-2\n```"),
        ]
        let server = try ScriptedHTTPServer(script, lifetime: 300)
        let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire), extra: "[memory]\nsynthesize = \"agent\"",
                                   train: Self.train("0.2"))
        let outcome = try ws.run(iterations: 2, environment: [HTTPLoopTests.keyVariable: HTTPLoopTests.key])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep", "keep"])
        let bodies = server.requests.map { String(decoding: $0.body, as: UTF8.self) }
        XCTAssertEqual(bodies.count, 4)
        XCTAssertTrue(bodies[1].contains("learnings.md") && bodies[1].contains("+X = 0.6") && bodies[1].contains("Iteration 1"), bodies[1])
        XCTAssertTrue(bodies[2].contains("SYNTH-MARKER-1"), "the next prompt carries the model's learnings")
        XCTAssertEqual(ws.read(".proctor/memory/learnings.md"), "# Learnings\n\nSYNTH-MARKER-2\n")
        let usage = ws.records().last?["synthesisUsage"] as? [String: Any]
        XCTAssertNotNil(usage?["promptTokens"] as? Int, "\(ws.records().last ?? [:])")
        XCTAssertEqual(ws.filesContaining(HTTPLoopTests.key, under: ws.root), [])
    }
}
