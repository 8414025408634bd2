import Foundation
import XCTest

@testable import ProctorAgents

/// Issue 9: each wire format through the one protocol the agent speaks to: where a request goes,
/// its headers and body, and what a reply holds. (HTTPAgentTests runs both against a real server.)
final class WireFormatTests: XCTestCase {
    let config = HTTPAgentConfig(wireProtocol: .openai, baseURL: "http://x/v1", model: "m-1", maxTokens: 64, temperature: 0.5)

    private func json(_ data: Data) throws -> NSDictionary {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
    }

    private func headerPairs(_ format: any WireFormat, _ key: String?) -> [String] {
        format.headers(key: key).map { "\($0.name): \($0.value)" }
    }

    func testOpenAIChatEncodesAndParsesThroughTheProtocol() throws {
        let format = HTTPAgentProtocol.openai.format
        XCTAssertTrue(format is OpenAIChatFormat)
        XCTAssertEqual(format.endpoint(base: "http://x/v1"), "http://x/v1/chat/completions")
        XCTAssertEqual(headerPairs(format, "k"), ["Authorization: Bearer k"])
        XCTAssertEqual(headerPairs(format, nil), [])
        XCTAssertEqual(try json(format.body(config, system: "S", user: "U")), [
            "model": "m-1", "max_tokens": 64, "temperature": 0.5, "stream": false,
            "messages": [["role": "system", "content": "S"], ["role": "user", "content": "U"]],
        ] as NSDictionary)

        let reply = try format.read(Data("""
            {"choices":[{"message":{"content":"FILE: a"},"finish_reason":"length"}],"usage":{"prompt_tokens":7,"completion_tokens":3}}
            """.utf8))
        XCTAssertEqual(reply, WireReply(text: "FILE: a", usage: AgentUsage(promptTokens: 7, completionTokens: 3), truncated: true,
                                        serverError: nil))
        let empty = try format.read(Data(#"{"choices":[],"error":{"message":"overloaded"}}"#.utf8))
        XCTAssertEqual(empty, WireReply(text: nil, usage: nil, truncated: false, serverError: "overloaded"))
        XCTAssertThrowsError(try format.read(Data("[1]".utf8))) { error in
            XCTAssertEqual(error as? AgentError,
                           .rejected(reason: "malformed response: not a chat-completions JSON object", paths: []))
        }
    }

    func testAnthropicMessagesEncodesAndParsesThroughTheProtocol() throws {
        let format = HTTPAgentProtocol.anthropic.format
        XCTAssertTrue(format is AnthropicMessagesFormat)
        XCTAssertEqual(format.endpoint(base: "https://api.anthropic.com"), "https://api.anthropic.com/v1/messages")
        XCTAssertEqual(format.endpoint(base: "https://proxy/v1"), "https://proxy/v1/messages")
        XCTAssertEqual(headerPairs(format, "k"), ["x-api-key: k", "anthropic-version: 2023-06-01"])
        XCTAssertEqual(headerPairs(format, nil), ["anthropic-version: 2023-06-01"])
        XCTAssertEqual(try json(format.body(config, system: "S", user: "U")), [
            "model": "m-1", "max_tokens": 64, "temperature": 0.5, "system": "S",
            "messages": [["role": "user", "content": "U"]],
        ] as NSDictionary)

        let reply = try format.read(Data("""
            {"content":[{"type":"thinking","text":"hmm"},{"type":"text","text":"one"},{"type":"text","text":"two"}],
             "usage":{"input_tokens":9,"output_tokens":4},"stop_reason":"max_tokens"}
            """.utf8))
        XCTAssertEqual(reply, WireReply(text: "one\ntwo", usage: AgentUsage(promptTokens: 9, completionTokens: 4), truncated: true,
                                        serverError: nil))
        XCTAssertThrowsError(try format.read(Data(#"{"content":"nope"}"#.utf8))) { error in
            XCTAssertEqual(error as? AgentError, .rejected(reason: "malformed response: not a messages JSON object", paths: []))
        }
    }

    /// The agent prices what its format read and rejects a reply without text, naming where it
    /// should have been, its tokens still charged.
    func testAgentRejectsAReplyWithoutTextAndChargesIt() throws {
        final class Seen: @unchecked Sendable { var usage: [AgentUsage] = [] }
        let seen = Seen()
        var priced = config
        priced.pricePerMTokIn = 1_000_000
        priced.wireProtocol = .anthropic
        let agent = HTTPAgent(config: priced, onUsage: { seen.usage.append($0) })
        XCTAssertThrowsError(try agent.parseReply(Array(#"{"content":[],"usage":{"input_tokens":2,"output_tokens":1},"error":{"message":"busy"}}"#.utf8))) { error in
            XCTAssertEqual(error as? AgentError, .rejected(reason: "malformed response: no text in content: busy", paths: []))
        }
        XCTAssertEqual(seen.usage, [AgentUsage(promptTokens: 2, completionTokens: 1, costUSD: 2)])
    }
}
