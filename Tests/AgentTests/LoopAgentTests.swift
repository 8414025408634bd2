import Foundation
import ProctorTestSupport
import XCTest

@testable import ProctorAgents

/// `kind = "http"` agents through the real loop: `proctor run` as a child process against a real
/// HTTP server on 127.0.0.1 speaking each protocol. Judged from outside: the ledger rows, the
/// records in runs.jsonl, the audit lines, the bytes of the files and the git history. Every run
/// is followed by a good answer, so each test also shows the loop surviving the failure.
final class HTTPLoopTests: XCTestCase {
    static let keyVariable = "PROCTOR_LOOP_TEST_API_KEY"
    static let key = "sk-loop-NEVER-WRITTEN-5e0f2a91"

    // MARK: - Helpers

    static func agentBlock(
        _ server: ScriptedHTTPServer, _ wire: HTTPAgentProtocol, timeout: String = "20s", retries: Int = 1
    ) -> String {
        """
        [agent]
        kind        = "http"
        protocol    = "\(wire.rawValue)"
        base_url    = "\(wire == .openai ? server.baseURL + "/v1" : server.baseURL)"
        model       = "test-model"
        api_key_env = "\(keyVariable)"
        timeout     = "\(timeout)"
        retries     = \(retries)
        max_tokens  = 1000
        price_per_mtok_in  = 2
        price_per_mtok_out = 10
        """
    }

    /// A whole-file replacement of train.py setting X.
    static func setX(_ x: String) -> String {
        "I will move X.\n\nSUMMARY: set X to \(x)\nFILE: train.py\n```python\n\(LoopWorkspace.train(x).dropLast())\n```\n"
    }

    static func reply(_ wire: HTTPAgentProtocol, _ content: String) -> ScriptedHTTPServer.Reply {
        HTTPAgentTests.reply(wire, content)
    }

    /// Tokens the scripted replies report (HTTPAgentTests' defaults).
    static func tokens(_ wire: HTTPAgentProtocol) -> (Int, Int) { wire == .openai ? (120, 30) : (200, 40) }

    /// Makes a workspace for `script`, runs `iterations`, and checks what every run must satisfy:
    /// proctor exits 0, the baseline is scored, one row per iteration, and the API key is nowhere.
    func loop(
        _ wire: HTTPAgentProtocol, _ script: [ScriptedHTTPServer.Reply], iterations: Int, timeout: String = "20s",
        retries: Int = 1, line: UInt = #line
    ) throws -> (LoopWorkspace, ScriptedHTTPServer, ChildOutcome) {
        let server = try ScriptedHTTPServer(script, lifetime: 300)
        let ws = try LoopWorkspace(agent: Self.agentBlock(server, wire, timeout: timeout, retries: retries))
        let outcome = try ws.run(iterations: iterations, environment: [Self.keyVariable: Self.key])
        XCTAssertEqual(outcome.status, 0, "\(wire): \(ws.describe(outcome))", line: line)
        let rows = ws.rows(line: line)
        XCTAssertEqual(rows.map { $0["iteration"] }, (0...iterations).map(String.init), "\(wire): \(ws.describe(outcome))", line: line)
        XCTAssertEqual(rows.first?["status"], "keep", line: line)
        XCTAssertEqual(rows.first.flatMap { Double($0["score"] ?? "") }, 0.5, "baseline X = 0.2 against 0.7", line: line)
        assertKeyNowhere(ws, outcome, line: line)
        return (ws, server, outcome)
    }

    func assertKeyNowhere(_ ws: LoopWorkspace, _ outcome: ChildOutcome, line: UInt = #line) {
        XCTAssertEqual(ws.filesContaining(Self.key, under: ws.root + "/.proctor"), [], "API key written under .proctor/", line: line)
        XCTAssertEqual(ws.filesContaining(Self.key, under: ws.root), [], "API key written in the workspace", line: line)
        XCTAssertFalse(outcome.stdout.contains(Self.key), "API key printed", line: line)
        XCTAssertFalse(outcome.stderr.contains(Self.key), "API key printed on stderr", line: line)
    }

    func record(_ ws: LoopWorkspace, _ iteration: Int) -> [String: Any] {
        ws.records().last { $0["iteration"] as? Int == iteration } ?? [:]
    }

    /// A rejected answer still cost its tokens: the record says so.
    func assertCharged(_ ws: LoopWorkspace, _ iteration: Int, _ wire: HTTPAgentProtocol, line: UInt = #line) {
        let usage = record(ws, iteration)["usage"] as? [String: Any]
        let (prompt, completion) = Self.tokens(wire)
        XCTAssertEqual(usage?["promptTokens"] as? Int, prompt, "\(wire): \(record(ws, iteration))", line: line)
        XCTAssertEqual(usage?["completionTokens"] as? Int, completion, "\(wire)", line: line)
    }

    // MARK: - Tests

    /// A good answer is kept (commit, X = 0.6 in HEAD), a worse one discarded and reverted; both
    /// rows carry the tokens the server reported and their cost.
    func testSuccessKeepsThenDiscardsWithUsage() throws {
        for wire in HTTPAgentProtocol.allCases {
            let (ws, server, _) = try loop(
                wire, [Self.reply(wire, Self.setX("0.6")), Self.reply(wire, Self.setX("0.1"))], iterations: 2)
            let rows = ws.rows()
            XCTAssertEqual(rows.map { $0["status"] }, ["keep", "keep", "discard"], "\(wire)")
            XCTAssertEqual(rows.count > 1 ? Double(rows[1]["score"] ?? "") : nil, 0.9, "\(wire)")
            XCTAssertEqual(rows.count > 2 ? Double(rows[2]["score"] ?? "") : nil, 0.4, "\(wire)")
            XCTAssertEqual(rows.count > 1 ? rows[1]["description"] : nil, "set X to 0.6")
            XCTAssertFalse(rows.count > 1 && rows[1]["commit"]?.isEmpty != false, "a kept row names its commit")
            XCTAssertEqual(rows.count > 2 ? rows[2]["commit"] : nil, "", "a discarded row has no commit")
            // The tree is back at the kept commit.
            XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.6"), "\(wire)")
            let subjects = ws.gitSubjects()
            if !subjects.isEmpty { XCTAssertEqual(subjects.first, "set X to 0.6", "\(wire)") }
            let (prompt, completion) = Self.tokens(wire)
            for i in [1, 2] {
                let usage = record(ws, i)["usage"] as? [String: Any]
                XCTAssertEqual(usage?["promptTokens"] as? Int, prompt, "\(wire) iteration \(i): \(String(describing: usage))")
                XCTAssertEqual(usage?["completionTokens"] as? Int, completion, "\(wire) iteration \(i)")
                let cost = usage?["costUSD"] as? Double
                XCTAssertEqual(cost ?? -1, Double(prompt * 2 + completion * 10) / 1e6, accuracy: 1e-12, "\(wire)")
                XCTAssertEqual(record(ws, i)["agent"] as? String, "http")
            }
            XCTAssertEqual(server.requests.count, 2, "\(wire)")
            // The transcript keeps what the model answered (the key redacted: assertKeyNowhere).
            let agentLog = try XCTUnwrap(record(ws, 1)["agentLog"] as? String, "\(wire)")
            let transcript = ws.read(".proctor/" + agentLog) ?? ""
            XCTAssertTrue(transcript.contains("I will move X.") && transcript.contains("SUMMARY: set X to 0.6"), transcript)
            XCTAssertTrue(transcript.contains("model test-model"), transcript)
            let request = server.requests.first
            XCTAssertEqual(request?.path, wire == .openai ? "/v1/chat/completions" : "/v1/messages")
            if wire == .openai {
                XCTAssertEqual(request?.headers["authorization"], "Bearer \(Self.key)")
            } else {
                XCTAssertEqual(request?.headers["x-api-key"], Self.key)
            }
            // The prompt carries the editable file but neither the evaluator nor the hidden label.
            let body = request.map { String(decoding: $0.body, as: UTF8.self) } ?? ""
            XCTAssertTrue(body.contains("X = 0.2"), "\(wire): the editable file is in the prompt")
            XCTAssertFalse(body.contains("holdout/target.txt"), "\(wire): the evaluator leaked into the prompt")
            XCTAssertFalse(body.contains(LoopWorkspace.hiddenLabel), "\(wire): the hidden label leaked into the prompt")
        }
    }

    /// A body that is not JSON: `rejected`, audited, the tree untouched, the next answer kept.
    /// `api_key_env` names a variable that is not set: the run used to start, measure its baseline
    /// and make a `crash` row of every iteration (exit 0). Refused at the start now, nothing written.
    func testAnUnsetKeyVariableIsRefusedAtTheStart() throws {
        let server = try ScriptedHTTPServer([], lifetime: 60)
        let ws = try LoopWorkspace(agent: Self.agentBlock(server, .openai))
        XCTAssertNil(ProcessInfo.processInfo.environment[Self.keyVariable])
        let outcome = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "1"])
        XCTAssertEqual(outcome.status, 125, ws.describe(outcome))
        XCTAssertTrue(outcome.stderr.contains("\(Self.keyVariable) (api_key_env) is not set"), outcome.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/results.tsv")), "a run began")
        XCTAssertEqual(server.requests.count, 0)
    }

    func testMalformedJSONIsRejectedAndTheLoopGoesOn() throws {
        for wire in HTTPAgentProtocol.allCases {
            let (ws, server, _) = try loop(
                wire,
                [.respond(status: 200, headers: [], body: "{\"choices\": [ oops"), Self.reply(wire, Self.setX("0.6"))],
                iterations: 2)
            XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], "\(wire)")
            XCTAssertTrue((record(ws, 1)["reason"] as? String ?? "").contains("malformed"), "\(wire): \(record(ws, 1))")
            XCTAssertFalse(ws.audit(kind: "diff", decision: "rejected", iteration: 1).isEmpty, "\(wire): no audit line")
            XCTAssertEqual(server.requests.count, 2, "\(wire): a malformed answer is not retried")
            XCTAssertNil(record(ws, 1)["usage"] as? [String: Any], "\(wire): no usage could be read")
            XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.6"), "\(wire)")
        }
    }

    /// 429 with Retry-After, then a good answer: one iteration, kept, after waiting as told.
    func testRateLimitedThenSuccess() throws {
        for wire in HTTPAgentProtocol.allCases {
            let limited = ScriptedHTTPServer.Reply.respond(
                status: 429, headers: [("Retry-After", "1")], body: "{\"error\":{\"message\":\"slow down\"}}")
            let (ws, server, _) = try loop(wire, [limited, Self.reply(wire, Self.setX("0.6"))], iterations: 1)
            XCTAssertEqual(ws.statuses(), ["keep", "keep"], "\(wire)")
            let requests = server.requests
            XCTAssertEqual(requests.count, 2, "\(wire): the 429 was retried once")
            if requests.count == 2 { XCTAssertGreaterThanOrEqual(requests[1].time - requests[0].time, 0.95) }
            XCTAssertNotNil(record(ws, 1)["usage"] as? [String: Any], "\(wire)")
        }
    }

    /// 500 on every attempt: `crash` after the retries, the key in the server's message scrubbed,
    /// and the next iteration still runs.
    func testServerErrorCrashesAfterRetries() throws {
        for wire in HTTPAgentProtocol.allCases {
            let boom = ScriptedHTTPServer.Reply.respond(
                status: 500, headers: [], body: "{\"error\":{\"message\":\"boom for key \(Self.key)\"}}")
            let (ws, server, _) = try loop(
                wire, [boom, boom, Self.reply(wire, Self.setX("0.6"))], iterations: 2, retries: 1)
            XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], "\(wire)")
            let reason = record(ws, 1)["reason"] as? String ?? ""
            XCTAssertTrue(reason.contains("HTTP 500"), "\(wire): \(reason)")
            XCTAssertTrue(reason.contains("after 2 attempts"), "\(wire): \(reason)")
            XCTAssertEqual(server.requests.count, 3, "\(wire)")
        }
    }

    /// A server that never answers: `crash` within `[agent] timeout`, then the loop goes on.
    func testTimeoutCrashesWithinTheBudget() throws {
        for wire in HTTPAgentProtocol.allCases {
            let (ws, _, outcome) = try loop(
                wire, [.hang, Self.reply(wire, Self.setX("0.6"))], iterations: 2, timeout: "3s")
            XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], "\(wire): \(ws.describe(outcome))")
            let reason = record(ws, 1)["reason"] as? String ?? ""
            XCTAssertTrue(reason.contains("no answer"), "\(wire): \(reason)")
            let seconds = ws.rows().count > 1 ? Double(ws.rows()[1]["seconds"] ?? "") ?? 99 : 99
            XCTAssertGreaterThanOrEqual(seconds, 2.5, "\(wire)")
            XCTAssertLessThan(seconds, 8, "\(wire): the agent timeout bounds the iteration")
        }
    }

    /// SIGTERM (or Ctrl-C, or SIGQUIT) while the model has not answered: the request is abandoned at
    /// once, proctor exits 130 with no row for the iteration. It waited for the answer (minutes
    /// with a real model; with `synthesize = "agent"`, with a kept commit that had no row yet).
    func testAStopDoesNotWaitForTheModel() throws {
        for signal in [SIGTERM, SIGQUIT] {
            let server = try ScriptedHTTPServer([.hang], lifetime: 120)
            let ws = try LoopWorkspace(agent: Self.agentBlock(server, .openai, timeout: "90s", retries: 1))
            let output = try CapturedOutput()
            let run = try startProcess([proctorBinary, "run", "--workspace", ws.root, "--iterations", "1"],
                                       environment: ws.environment([Self.keyVariable: Self.key]), output: output)
            defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
            XCTAssertTrue(waitUntil(timeout: 60) { !server.requests.isEmpty }, output.stderr)
            let sent = Date()
            kill(run.processIdentifier, signal)
            run.waitUntilExit()
            XCTAssertEqual(exitStatus(run), 130, "signal \(signal): \(output.stderr)")
            XCTAssertLessThan(Date().timeIntervalSince(sent), 10, "signal \(signal): it waited for the model")
            XCTAssertEqual(ws.rows().count, 1, "signal \(signal): only the baseline's row")
        }
    }

    /// A diff reaching `../outside.txt`: `rejected`, an audit line naming the path, nothing written.
    func testPatchLeavingTheWorkspaceIsRejected() throws {
        let escape = escapingDiffAnswer
        for wire in HTTPAgentProtocol.allCases {
            let (ws, _, _) = try loop(
                wire, [Self.reply(wire, escape), Self.reply(wire, Self.setX("0.6"))], iterations: 2)
            XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], "\(wire)")
            XCTAssertEqual(
                FileManager.default.contents(atPath: ws.parent + "/outside.txt"), Data("outside the workspace\n".utf8))
            let lines = ws.audit(kind: "diff", decision: "rejected", iteration: 1)
            XCTAssertTrue(
                lines.contains { ($0["path"] as? String ?? "").hasSuffix("../outside.txt") }, "\(wire): \(lines)")
            XCTAssertTrue(lines.allSatisfy { ($0["path"] as? String ?? "/").hasPrefix("/") }, "absolute paths: \(lines)")
            XCTAssertTrue(
                (record(ws, 1)["reason"] as? String ?? "").contains("leaves the workspace"), "\(wire): \(record(ws, 1))")
            assertCharged(ws, 1, wire)
        }
    }

    /// An answer that edits train.py and the evaluator: the whole answer is `rejected`, prepare.py
    /// keeps its bytes, the allowed train.py part is not applied either.
    func testPatchTouchingTheEvaluatorIsRejected() throws {
        let cheat = """
            SUMMARY: better score
            FILE: train.py
            ```python
            \(LoopWorkspace.train("0.65").dropLast())
            ```
            FILE: prepare.py
            ```python
            print('{"score": 1.0}')
            ```
            """
        for wire in HTTPAgentProtocol.allCases {
            let server = try ScriptedHTTPServer(
                [Self.reply(wire, cheat), Self.reply(wire, Self.setX("0.6"))], lifetime: 300)
            let ws = try LoopWorkspace(agent: Self.agentBlock(server, wire))
            let before = ws.bytes("prepare.py")
            let outcome = try ws.run(iterations: 2, environment: [Self.keyVariable: Self.key])
            XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
            XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], "\(wire): \(ws.describe(outcome))")
            XCTAssertEqual(ws.bytes("prepare.py"), before, "\(wire): the evaluator changed")
            XCTAssertEqual(ws.bytes("prepare.py"), Data(LoopWorkspace.prepare.utf8))
            let lines = ws.audit(kind: "diff", decision: "rejected", iteration: 1)
            XCTAssertTrue(lines.contains { $0["path"] as? String == ws.root + "/prepare.py" }, "\(wire): \(lines)")
            XCTAssertFalse(ws.rows().contains { $0["score"] == "0.950000" }, "the train.py half was applied")
            XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.6"))
            assertCharged(ws, 1, wire)
            assertKeyNowhere(ws, outcome)
        }
    }
}
