import Foundation
import ProctorTestSupport
import XCTest

@testable import ProctorAgents

#if canImport(Glibc)
    import Glibc
#endif

/// Red-team round on the agent channels (agents3): what reaches an agent, and what an agent's
/// answer or session request can change. Every test runs `proctor run`/`proctor session` as a
/// child on a real workspace and judges from outside (the model's requests, the files, the ledger).
final class AgentChannelTests: XCTestCase {
    // MARK: - A broad editable glob

    /// `editable = ["**"]` ("everything but what proctor protects") also matches the hidden labels,
    /// the locked evaluator and proctor.toml. The agent-phase sandbox never binds those writable, but
    /// the http agent's prompt listed them (the labels went to the remote model) and the diff
    /// validator let an answer rewrite the hidden labels, which are not pinned: a perfect score.
    func testBroadEditableGlobNeitherShowsNorOpensTheHiddenLabelsOrTheConfig() throws {
        let wire = HTTPAgentProtocol.openai
        let forgeLabels = "SUMMARY: relabel\nFILE: holdout/target.txt\n```\n0.2\n```\n"
        let forgeConfig = "SUMMARY: reconfigure\nFILE: proctor.toml\n```\n[files]\neditable = [\"**\"]\n```\n"
        let server = try ScriptedHTTPServer(
            [HTTPLoopTests.reply(wire, forgeLabels), HTTPLoopTests.reply(wire, forgeConfig),
             HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.6"))], lifetime: 300)
        let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire), editable: "[\"**\"]")
        let labels = ws.read("holdout/target.txt")
        let config = ws.read("proctor.toml")
        let outcome = try ws.run(iterations: 3, environment: [HTTPLoopTests.keyVariable: HTTPLoopTests.key])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(server.requests.count, 3, ws.describe(outcome))
        for request in server.requests {
            let body = String(decoding: request.body, as: UTF8.self)
            XCTAssertFalse(body.contains(LoopWorkspace.hiddenLabel), "the hidden label was sent to the model")
            XCTAssertTrue(body.contains("FILE: train.py"), "train.py is still the model's to edit")
        }
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "rejected", "keep"], ws.describe(outcome))
        XCTAssertEqual(ws.read("holdout/target.txt"), labels, "an answer rewrote the hidden labels")
        XCTAssertEqual(ws.read("proctor.toml"), config, "an answer rewrote the config")
        XCTAssertEqual(ws.rows().last.flatMap { Double($0["score"] ?? "") }, 0.9, ws.describe(outcome))
    }

    // MARK: - The evaluator's words

    /// The locked evaluator of `LoopWorkspace`, made to quote the held-out label in its error when the
    /// prediction is above 0.65 and `PROCTOR_SEED` is one of `seeds` (all seeds when empty).
    static func leakyPrepare(seeds: [Int] = []) -> String {
        let when = seeds.isEmpty ? "" : " and os.environ.get('PROCTOR_SEED') in [\(seeds.map { "'\($0)'" }.joined(separator: ", "))]"
        return LoopWorkspace.prepare.replacingOccurrences(
            of: "print(json.dumps(",
            with: "import sys\nif pred > 0.65\(when):\n    sys.exit('bad prediction; expected ' + open('holdout/target.txt').read().split()[1])\nprint(json.dumps(")
    }

    /// The evaluator's error stays in the ledger "which no sandbox can read"; but the ledger's row
    /// (`description [reason]`) was the history in the next prompt: the held-out label went to the
    /// http agent's model (and to a command agent's PROMPT.md) one iteration later.
    func testEvaluatorErrorsDoNotReachTheNextPrompt() throws {
        let wire = HTTPAgentProtocol.openai
        let server = try ScriptedHTTPServer(
            [HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.9")), HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.6"))],
            lifetime: 300)
        let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire), prepare: Self.leakyPrepare())
        let outcome = try ws.run(iterations: 2, environment: [HTTPLoopTests.keyVariable: HTTPLoopTests.key])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        XCTAssertEqual(server.requests.count, 2)
        let second = String(decoding: server.requests.last?.body ?? Data(), as: UTF8.self)
        XCTAssertTrue(second.contains("iteration 1: crash"), "the history still names the crash: \(second.prefix(2000))")
        XCTAssertTrue(second.contains("could not score"), String(second.prefix(2000)))
        XCTAssertFalse(second.contains(LoopWorkspace.hiddenLabel), "the evaluator's error reached the model")
        // The operator keeps the evaluator's words.
        XCTAssertTrue(ws.read(".proctor/results.tsv")?.contains(LoopWorkspace.hiddenLabel) == true)
    }

    /// The session reply hid a failed evaluator's words only when the reason began with
    /// "evaluator"; one that failed on a confirmation seed is reported as "confirmation: evaluator:
    /// ...", and an agent that scores on the first seed and breaks the others read the label.
    func testEvaluatorErrorsOnAConfirmationSeedDoNotReachTheSessionAgent() throws {
        let ws = try LoopWorkspace(agent: "[gates]\nconfirm_seeds = [17]\n\n" + SessionTests.noAgent,
                                   prepare: Self.leakyPrepare(seeds: [17]))
        // Two experiments: the session stops after the second, which may cut its reply short.
        let script = SessionTests.setX("0.9") + "echo \"agent: $(proctor experiment 'x=0.9' 2>&1)\"\n"
            + SessionTests.setX("0.3") + "proctor experiment 'x=0.3'\nsleep 1000\n"
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "2", "--", "sh", "-c", script],
                                     deadline: 180)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        let reply = outcome.stdout.split(separator: "\n").first { $0.hasPrefix("agent: ") }.map(String.init) ?? ""
        XCTAssertTrue(reply.hasPrefix("agent: iteration 1: crash"), outcome.stdout)
        XCTAssertTrue(reply.contains("could not score"), reply)
        XCTAssertFalse(reply.contains(LoopWorkspace.hiddenLabel), "the agent read the holdout: \(reply)")
    }
}
