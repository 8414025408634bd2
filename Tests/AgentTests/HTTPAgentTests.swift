import Foundation
import XCTest

@testable import ProctorAgents

/// The `http` agent against a real local server speaking each protocol, judged by the bytes on disk.
final class HTTPAgentTests: XCTestCase {
    static let keyVariable = "PROCTOR_TEST_HTTP_AGENT_KEY"
    static let key = "sk-test-DO-NOT-LEAK-8f3a1c"

    override func setUp() {
        setenv(Self.keyVariable, Self.key, 1)
    }

    // MARK: - Helpers

    func config(
        _ server: ScriptedHTTPServer, _ wire: HTTPAgentProtocol = .openai, timeout: Double = 20, retries: Int = 3
    )
        -> HTTPAgentConfig
    {
        HTTPAgentConfig(
            wireProtocol: wire, baseURL: wire == .openai ? server.baseURL + "/v1" : server.baseURL, model: "test-model",
            apiKeyEnv: Self.keyVariable, maxTokens: 1000, temperature: 0.2, timeoutSeconds: timeout,
            connectTimeoutSeconds: 2, maxRetries: retries, retryBaseDelaySeconds: 0.01, maxRetryDelaySeconds: 5,
            pricePerMTokIn: 2, pricePerMTokOut: 10)
    }

    static func json(_ object: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    static func openAI(_ content: String, prompt: Int = 120, completion: Int = 30) -> ScriptedHTTPServer.Reply {
        .respond(
            status: 200, headers: [],
            body: json([
                "id": "chatcmpl-1", "object": "chat.completion",
                "choices": [
                    ["index": 0, "message": ["role": "assistant", "content": content], "finish_reason": "stop"]
                ],
                "usage": [
                    "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                ],
            ]))
    }

    static func anthropic(_ content: String, input: Int = 200, output: Int = 40) -> ScriptedHTTPServer.Reply {
        .respond(
            status: 200, headers: [],
            body: json([
                "id": "msg_1", "type": "message", "role": "assistant", "stop_reason": "end_turn",
                "content": [["type": "text", "text": content]],
                "usage": ["input_tokens": input, "output_tokens": output],
            ]))
    }

    static func reply(_ wire: HTTPAgentProtocol, _ content: String) -> ScriptedHTTPServer.Reply {
        wire == .openai ? openAI(content) : anthropic(content)
    }

    static let newTrain = TestWorkspace.train.replacingOccurrences(
        of: "LEARNING_RATE = 0.1 ", with: "LEARNING_RATE = 0.05 ")

    static let replacementAnswer = """
        I think a smaller step will help.

        SUMMARY: halve the learning rate to reduce overfitting
        FILE: train.py
        ```python
        \(newTrain.dropLast())
        ```
        """

    static let diffAnswer = """
        SUMMARY: use more leaves
        ```diff
        --- a/train.py
        +++ b/train.py
        @@ -3,3 +3,3 @@
         LEARNING_RATE = 0.1  # mutate: float 0.005..0.5 log
        -NUM_LEAVES = 15  # mutate: int 4..128 log
        +NUM_LEAVES = 31  # mutate: int 4..128 log
         FEATURE_FRACTION = 1.0  # mutate: float 0.3..1.0 linear
        ```
        """

    /// Runs one proposal and returns the error it threw, if any.
    func propose(_ agent: HTTPAgent, _ context: AgentContext) -> (Proposal?, AgentError?) {
        do {
            return (try agent.propose(context), nil)
        } catch let error as AgentError {
            return (nil, error)
        } catch {
            XCTFail("unexpected error type: \(error)")
            return (nil, nil)
        }
    }

    func assertNoKey(_ error: AgentError?, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(
            "\(String(describing: error))".contains(Self.key), "API key leaked: \(String(describing: error))",
            file: file, line: line)
    }

    func assertRejected(
        _ error: AgentError?, containing text: String, paths: [String]? = nil, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        guard case .rejected(let reason, let got) = error else {
            return XCTFail("expected rejected, got \(String(describing: error))", file: file, line: line)
        }
        XCTAssertTrue(reason.contains(text), "reason \"\(reason)\" lacks \"\(text)\"", file: file, line: line)
        if let paths { XCTAssertEqual(got, paths, file: file, line: line) }
        assertNoKey(error, file: file, line: line)
    }

    func assertFailed(_ error: AgentError?, containing text: String, file: StaticString = #filePath, line: UInt = #line)
    {
        guard case .failed(let reason) = error else {
            return XCTFail("expected failed, got \(String(describing: error))", file: file, line: line)
        }
        XCTAssertTrue(reason.contains(text), "reason \"\(reason)\" lacks \"\(text)\"", file: file, line: line)
        assertNoKey(error, file: file, line: line)
    }

    /// Every file but `changed` has the bytes it had in `before`.
    func assertOnlyChanged(
        _ changed: Set<String>, _ before: [String: Data], _ ws: TestWorkspace, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let after = ws.snapshot()
        XCTAssertEqual(
            Set(after.keys).subtracting(changed.map { "ws/" + $0 }),
            Set(before.keys).subtracting(changed.map { "ws/" + $0 }), "files appeared or vanished", file: file,
            line: line)
        for (path, data) in before where !changed.contains(String(path.dropFirst(3))) {
            XCTAssertEqual(after[path], data, "\(path) changed", file: file, line: line)
        }
        for path in changed {
            XCTAssertNotEqual(
                after["ws/" + path], before["ws/" + path], "\(path) did not change", file: file, line: line)
        }
    }

    // MARK: - Success

    func testOpenAIWholeFileReplacement() throws {
        let server = try ScriptedHTTPServer([Self.openAI(Self.replacementAnswer, prompt: 120, completion: 30)])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let (proposal, error) = propose(HTTPAgent(config: config(server)), ws.context())
        XCTAssertNil(error)
        XCTAssertEqual(proposal?.description, "halve the learning rate to reduce overfitting")
        XCTAssertEqual(
            proposal?.usage, AgentUsage(promptTokens: 120, completionTokens: 30, costUSD: (120 * 2 + 30 * 10) / 1e6))
        XCTAssertEqual(ws.read("train.py"), Self.newTrain)
        assertOnlyChanged(["train.py"], before, ws)

        let request = try XCTUnwrap(server.requests.first)
        XCTAssertEqual(server.requests.count, 1)
        XCTAssertEqual(request.method, "POST")
        XCTAssertEqual(request.path, "/v1/chat/completions")
        XCTAssertEqual(request.headers["authorization"], "Bearer \(Self.key)")
        XCTAssertEqual(request.headers["content-type"], "application/json")
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: request.body) as? [String: Any])
        XCTAssertEqual(body["model"] as? String, "test-model")
        XCTAssertEqual(body["max_tokens"] as? Int, 1000)
        let messages = try XCTUnwrap(body["messages"] as? [[String: String]])
        XCTAssertEqual(messages.map { $0["role"] }, ["system", "user"])
        XCTAssertTrue(messages[1]["content"]!.contains("Improve the AUC."), "program.md missing from the prompt")
        XCTAssertTrue(messages[1]["content"]!.contains("NUM_LEAVES = 15"), "editable file missing from the prompt")
        XCTAssertFalse(messages[1]["content"]!.contains("locked evaluator"), "the evaluator leaked into the prompt")
        XCTAssertTrue(messages[0]["content"]!.contains("at most 400 lines"))
    }

    func testAnthropicUnifiedDiff() throws {
        let server = try ScriptedHTTPServer([Self.anthropic(Self.diffAnswer, input: 200, output: 40)])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let (proposal, error) = propose(HTTPAgent(config: config(server, .anthropic)), ws.context())
        XCTAssertNil(error)
        XCTAssertEqual(proposal?.description, "use more leaves")
        XCTAssertEqual(proposal?.usage?.promptTokens, 200)
        XCTAssertEqual(proposal?.usage?.completionTokens, 40)
        XCTAssertEqual(
            ws.read("train.py"),
            TestWorkspace.train.replacingOccurrences(of: "NUM_LEAVES = 15 ", with: "NUM_LEAVES = 31 "))
        assertOnlyChanged(["train.py"], before, ws)

        let request = try XCTUnwrap(server.requests.first)
        XCTAssertEqual(request.path, "/v1/messages")
        XCTAssertEqual(request.headers["x-api-key"], Self.key)
        XCTAssertEqual(request.headers["anthropic-version"], "2023-06-01")
        XCTAssertNil(request.headers["authorization"])
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: request.body) as? [String: Any])
        XCTAssertEqual(body["max_tokens"] as? Int, 1000)
        XCTAssertNotNil(body["system"] as? String)
        XCTAssertEqual((body["messages"] as? [[String: String]])?.map { $0["role"] }, ["user"])
    }

    /// A train.py saved with CRLF endings (on Windows): the model's diff, in LF, applies, and the
    /// file keeps its CRLF endings (it was refused as "does not apply": the file read as one line).
    func testDiffToACRLFFileAppliesAndKeepsItsEndings() throws {
        let server = try ScriptedHTTPServer([Self.anthropic(Self.diffAnswer, input: 200, output: 40)])
        let crlfTrain = TestWorkspace.train.replacingOccurrences(of: "\n", with: "\r\n")
        let ws = try TestWorkspace(files: [
            "train.py": crlfTrain, "prepare.py": TestWorkspace.prepare, "program.md": "Improve the AUC.\n",
            "proctor.toml": "[files]\neditable = [\"train.py\"]\n",
        ])
        let (proposal, error) = propose(HTTPAgent(config: config(server, .anthropic)), ws.context())
        XCTAssertNil(error)
        XCTAssertEqual(proposal?.description, "use more leaves")
        XCTAssertEqual(ws.read("train.py"), crlfTrain.replacingOccurrences(of: "NUM_LEAVES = 15 ", with: "NUM_LEAVES = 31 "))
    }

    func testOpenAIDiffAndAnthropicReplacement() throws {
        for (wire, answer) in [(HTTPAgentProtocol.openai, Self.diffAnswer), (.anthropic, Self.replacementAnswer)] {
            let server = try ScriptedHTTPServer([Self.reply(wire, answer)])
            let ws = try TestWorkspace()
            let before = ws.snapshot()
            let (proposal, error) = propose(HTTPAgent(config: config(server, wire)), ws.context())
            XCTAssertNil(error, "\(wire)")
            XCTAssertNotNil(proposal?.usage, "\(wire)")
            assertOnlyChanged(["train.py"], before, ws)
        }
    }

    func testLocalServerWithoutKeyAndNotesFile() throws {
        let answer = Self.replacementAnswer + "\n\nFILE: LOG.md\n```\n- tried a smaller learning rate\n```\n"
        let server = try ScriptedHTTPServer([Self.openAI(answer)])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        var settings = config(server)
        settings.apiKeyEnv = nil
        let (_, error) = propose(HTTPAgent(config: settings), ws.context())
        XCTAssertNil(error)
        XCTAssertNil(server.requests.first?.headers["authorization"])
        XCTAssertEqual(ws.read("LOG.md"), "- tried a smaller learning rate\n")
        XCTAssertEqual(ws.read("train.py"), Self.newTrain)
        XCTAssertEqual(Set(ws.snapshot().keys), Set(before.keys).union(["ws/LOG.md"]))
    }

    // MARK: - Server failures

    func testMalformedJSONIsRejected() throws {
        for wire in HTTPAgentProtocol.allCases {
            let server = try ScriptedHTTPServer([.respond(status: 200, headers: [], body: "{\"choices\": [ oops")])
            let ws = try TestWorkspace()
            let before = ws.snapshot()
            let (_, error) = propose(HTTPAgent(config: config(server, wire)), ws.context())
            assertRejected(error, containing: "malformed response")
            XCTAssertEqual(ws.snapshot(), before)
            XCTAssertEqual(server.requests.count, 1, "a malformed answer is not retried")
        }
    }

    func testAnswerWithoutChangeIsRejectedAndUsageStillReported() throws {
        let server = try ScriptedHTTPServer([
            Self.openAI("SUMMARY: nothing to do\nI would not change anything.", prompt: 9, completion: 3)
        ])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let seen = UsageBox()
        let agent = HTTPAgent(config: config(server), onUsage: { seen.add($0) })
        let (_, error) = propose(agent, ws.context())
        assertRejected(error, containing: "no FILE: block and no diff")
        XCTAssertEqual(seen.all.map(\.promptTokens), [9])
        XCTAssertEqual(ws.snapshot(), before)
    }

    func testRateLimitedThenSuccessHonoursRetryAfter() throws {
        for wire in HTTPAgentProtocol.allCases {
            let server = try ScriptedHTTPServer([
                .respond(status: 429, headers: [("Retry-After", "1")], body: "{\"error\":{\"message\":\"slow down\"}}"),
                Self.reply(wire, Self.replacementAnswer),
            ])
            let ws = try TestWorkspace()
            let (proposal, error) = propose(HTTPAgent(config: config(server, wire)), ws.context())
            XCTAssertNil(error)
            XCTAssertNotNil(proposal)
            let requests = server.requests
            XCTAssertEqual(requests.count, 2, "the 429 was retried once")
            if requests.count == 2 {
                // The base delay is 10 ms: only Retry-After explains a one-second gap.
                XCTAssertGreaterThanOrEqual(requests[1].time - requests[0].time, 0.95)
            }
            XCTAssertEqual(ws.read("train.py"), Self.newTrain)
        }
    }

    func testServerErrorsFailAfterRetries() throws {
        let error500 = ScriptedHTTPServer.Reply.respond(
            status: 500, headers: [], body: "{\"error\":{\"message\":\"boom for key \(Self.key)\"}}")
        let server = try ScriptedHTTPServer([error500, error500, error500, error500])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let (_, error) = propose(HTTPAgent(config: config(server, retries: 2)), ws.context())
        assertFailed(error, containing: "HTTP 500")
        assertFailed(error, containing: "after 3 attempts")
        assertFailed(error, containing: "boom")
        XCTAssertEqual(server.requests.count, 3)
        XCTAssertEqual(ws.snapshot(), before)
    }

    func testServerThatNeverAnswersFailsWithinTheTimeout() throws {
        let server = try ScriptedHTTPServer([.hang, .hang, .hang])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let start = Date()
        let (_, error) = propose(HTTPAgent(config: config(server, timeout: 1.5)), ws.context())
        let elapsed = Date().timeIntervalSince(start)
        assertFailed(error, containing: "no answer")
        XCTAssertGreaterThanOrEqual(elapsed, 1.4)
        XCTAssertLessThan(elapsed, 4, "the timeout covers the whole proposal")
        XCTAssertEqual(ws.snapshot(), before)
    }

    func testUnauthorisedFailsAtOnceNamingTheVariable() throws {
        for wire in HTTPAgentProtocol.allCases {
            let server = try ScriptedHTTPServer([
                .respond(status: 401, headers: [], body: "{\"error\":{\"message\":\"bad key \(Self.key)\"}}"),
                Self.reply(wire, Self.replacementAnswer),
            ])
            let ws = try TestWorkspace()
            let before = ws.snapshot()
            let (_, error) = propose(HTTPAgent(config: config(server, wire)), ws.context())
            assertFailed(error, containing: "authentication failed: check $\(Self.keyVariable)")
            XCTAssertEqual(server.requests.count, 1, "401 is not retried")
            XCTAssertEqual(ws.snapshot(), before)
        }
    }

    func testNotFoundNamesTheURL() throws {
        let server = try ScriptedHTTPServer([
            .respond(status: 404, headers: [], body: "{\"error\":\"model 'x' not found\"}")
        ])
        let ws = try TestWorkspace()
        let (_, error) = propose(HTTPAgent(config: config(server)), ws.context())
        assertFailed(error, containing: "model or endpoint not found: \(server.baseURL)/v1/chat/completions")
        XCTAssertEqual(server.requests.count, 1)
    }

    func testMissingKeyVariableFailsBeforeAnyRequest() throws {
        let server = try ScriptedHTTPServer([Self.openAI(Self.replacementAnswer)])
        let ws = try TestWorkspace()
        var settings = config(server)
        settings.apiKeyEnv = "PROCTOR_TEST_UNSET_VARIABLE"
        unsetenv("PROCTOR_TEST_UNSET_VARIABLE")
        let (_, error) = propose(HTTPAgent(config: settings), ws.context())
        assertFailed(error, containing: "PROCTOR_TEST_UNSET_VARIABLE")
        XCTAssertEqual(server.requests.count, 0)
    }

    func testConnectionRefusedIsRetriedThenFails() throws {
        // A port that was just free: bind, note it, close.
        let server = try ScriptedHTTPServer([])
        let url = server.baseURL
        server.stop()
        let ws = try TestWorkspace()
        var settings = config(server, retries: 2)
        settings.baseURL = url + "/v1"
        let (_, error) = propose(HTTPAgent(config: settings), ws.context())
        assertFailed(error, containing: "after 3 attempts")
    }

    func testRedirectIsNotFollowed() throws {
        let other = try ScriptedHTTPServer([Self.openAI(Self.replacementAnswer)])
        let server = try ScriptedHTTPServer([
            .respond(status: 307, headers: [("Location", other.baseURL + "/v1/chat/completions")], body: "")
        ])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let (_, error) = propose(HTTPAgent(config: config(server)), ws.context())
        assertFailed(error, containing: "not followed")
        XCTAssertEqual(other.requests.count, 0, "the key went to another host")
        XCTAssertEqual(ws.snapshot(), before)
    }

    func testOversizedResponseFails() throws {
        let server = try ScriptedHTTPServer([Self.openAI(String(repeating: "x", count: 50_000))])
        let ws = try TestWorkspace()
        var settings = config(server)
        settings.maxResponseBytes = 10_000
        let (_, error) = propose(HTTPAgent(config: settings), ws.context())
        assertFailed(error, containing: "larger than 10000 bytes")
    }

    func testHardLinkedEditableFileIsRefused() throws {
        let server = try ScriptedHTTPServer([Self.openAI(Self.replacementAnswer)])
        let ws = try TestWorkspace()
        try FileManager.default.removeItem(atPath: ws.root + "/train.py")
        XCTAssertEqual(link(ws.root + "/prepare.py", ws.root + "/train.py"), 0)
        let before = ws.snapshot()
        let (_, error) = propose(HTTPAgent(config: config(server)), ws.context())
        assertRejected(error, containing: "hard links", paths: ["train.py"])
        XCTAssertEqual(ws.snapshot(), before)
        XCTAssertEqual(ws.read("prepare.py"), TestWorkspace.prepare)
    }

    func testNotesOnlyAnswerIsRejected() throws {
        let server = try ScriptedHTTPServer([Self.openAI("SUMMARY: notes\nFILE: LOG.md\n```\nthoughts\n```\n")])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let (_, error) = propose(HTTPAgent(config: config(server)), ws.context())
        assertRejected(error, containing: "only notes files")
        XCTAssertEqual(ws.snapshot(), before)
    }

    /// A FILE block that makes train.py 100,000 lines, then 2,000 one-line diff sections on it:
    /// each section went over the whole file (85 s of supervisor CPU, Ctrl-C waited for it). The
    /// lines the sections go over are capped: refused at once, nothing written.
    func testManyDiffSectionsOnALongFileAreRefusedQuickly() throws {
        let sections = String(repeating: "--- a/train.py\n+++ b/train.py\n@@ -1,0 +2,1 @@\n+#\n", count: 2_000)
        let answer = "SUMMARY: many sections\nFILE: train.py\n```\n" + String(repeating: "x = 1\n", count: 100_000)
            + "```\n```diff\n" + sections + "```\n"
        let server = try ScriptedHTTPServer([Self.openAI(answer)])
        let ws = try TestWorkspace()
        let before = ws.snapshot()
        let started = Date()
        let (_, error) = propose(HTTPAgent(config: config(server)), ws.context())
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
        assertRejected(error, containing: "go over its files more than")
        XCTAssertEqual(ws.snapshot(), before)
    }

    /// A new notes file in a directory that is not there: the answer is `rejected` (it was an agent
    /// crash, and five in a row stop the run).
    func testANotesFileInAMissingDirectoryIsRejectedNotACrash() throws {
        let answer = "SUMMARY: notes too\nFILE: train.py\n```\nprint(2)\n```\nFILE: docs/NOTES.md\n```\nthoughts\n```\n"
        let server = try ScriptedHTTPServer([Self.openAI(answer)])
        let ws = try TestWorkspace()
        let (_, error) = propose(HTTPAgent(config: config(server)), ws.context(notes: ["LOG.md", "docs/NOTES.md"]))
        assertRejected(error, containing: "docs/NOTES.md: its directory does not exist")
    }

    func testConfigProblemsNameTheKey() {
        var settings = HTTPAgentConfig(wireProtocol: .openai, baseURL: "http://127.0.0.1:11434/v1", model: "llama3")
        XCTAssertEqual(settings.problems, [])
        settings.baseURL = "ftp://x"
        settings.apiKeyEnv = "sk-live-123"
        settings.maxTokens = 0
        XCTAssertEqual(settings.problems.count, 3)
        XCTAssertTrue(settings.problems[1].contains("api_key_env"))
        XCTAssertEqual(
            HTTPAgentConfig(wireProtocol: .anthropic, baseURL: "https://api.anthropic.com/", model: "m").endpointURL,
            "https://api.anthropic.com/v1/messages")
    }

    // MARK: - Forbidden answers

    func forbidden(
        _ answer: String, wire: HTTPAgentProtocol = .openai, containing text: String, paths: [String]? = nil,
        line: UInt = #line
    ) throws {
        let server = try ScriptedHTTPServer([Self.reply(wire, answer)])
        let ws = try TestWorkspace()
        try? FileManager.default.createSymbolicLink(atPath: ws.root + "/linked.py", withDestinationPath: "prepare.py")
        let before = ws.snapshot()
        let (_, error) = propose(
            HTTPAgent(config: config(server, wire)), ws.context(editable: ["train.py", "linked.py"]))
        assertRejected(error, containing: text, paths: paths, line: line)
        XCTAssertEqual(ws.snapshot(), before, "a rejected answer changed files", line: line)
    }

    func testDiffEscapingTheWorkspaceIsRejected() throws {
        let answer = escapingDiffAnswer
        try forbidden(answer, containing: "path leaves the workspace", paths: ["../outside.txt"])
        try forbidden(
            answer.replacingOccurrences(of: "outside.txt", with: "prepare.py"), wire: .anthropic,
            containing: "path leaves the workspace", paths: ["../prepare.py"])
    }

    func testDiffTouchingTheEvaluatorIsRejected() throws {
        let answer = """
            SUMMARY: better score
            ```diff
            --- a/train.py
            +++ b/train.py
            @@ -3 +3 @@
            -LEARNING_RATE = 0.1  # mutate: float 0.005..0.5 log
            +LEARNING_RATE = 0.2  # mutate: float 0.005..0.5 log
            --- a/prepare.py
            +++ b/prepare.py
            @@ -3 +3 @@
            -print(json.dumps({"auc": 0.5}))
            +print(json.dumps({"auc": 0.99}))
            ```
            """
        // The allowed train.py hunk is not applied either: the whole answer is refused.
        try forbidden(answer, containing: "not an editable or notes file", paths: ["prepare.py"])
        try forbidden(
            "SUMMARY: x\nFILE: prepare.py\n```\nprint('{\"auc\": 1}')\n```\n", wire: .anthropic,
            containing: "prepare.py (not an editable", paths: ["prepare.py"])
    }

    func testAbsolutePathIsRejected() throws {
        let ws = try TestWorkspace()
        let answer = "SUMMARY: x\nFILE: \(ws.root)/train.py\n```\nprint('hi')\n```\n"
        try forbidden(answer, containing: "absolute path", paths: ["\(ws.root)/train.py"])
        try forbidden(
            "SUMMARY: x\n```diff\n--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-root\n+me\n```\n",
            containing: "absolute path")
    }

    func testGitMetadataAndConfigAreRejected() throws {
        try forbidden(
            "SUMMARY: x\nFILE: .git/hooks/pre-commit\n```\n#!/bin/sh\n```\n", containing: ".git is never writable")
        try forbidden(
            "SUMMARY: x\nFILE: proctor.toml\n```\n[files]\n```\n", containing: "not an editable or notes file")
    }

    func testSymlinkedEditableFileIsRefused() throws {
        // linked.py is listed as editable but is a symlink to the evaluator.
        try forbidden(
            "SUMMARY: x\nFILE: linked.py\n```\nprint('{\"auc\": 1}')\n```\n", containing: "symlink",
            paths: ["linked.py"])
    }

    func testPatchThatDoesNotApplyIsRejected() throws {
        let answer = """
            SUMMARY: x
            ```diff
            --- a/train.py
            +++ b/train.py
            @@ -3 +3 @@
            -LEARNING_RATE = 0.3  # mutate: float 0.005..0.5 log
            +LEARNING_RATE = 0.2  # mutate: float 0.005..0.5 log
            ```
            """
        try forbidden(answer, containing: "patch does not apply", paths: ["train.py"])
    }

    func testUnclosedBlockIsRejected() throws {
        try forbidden("SUMMARY: x\nFILE: train.py\n```python\nimport sys\n", containing: "never closed")
    }
}

final class UsageBox: @unchecked Sendable {
    private let lock = NSLock()
    private var usages: [AgentUsage] = []

    func add(_ usage: AgentUsage) {
        lock.lock()
        usages.append(usage)
        lock.unlock()
    }

    var all: [AgentUsage] {
        lock.lock()
        defer { lock.unlock() }
        return usages
    }
}
