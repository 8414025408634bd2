#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One wire format of the `http` agent (issue 9): where a request goes, the headers that carry
/// the key, the request body, and what a 2xx reply holds. `HTTPAgentProtocol.format` picks one from
/// `[agent] protocol`; nothing else tells the formats apart.
protocol WireFormat: Sendable {
    /// Where the answer's text is in a reply, for the rejection of one without it.
    var textLocation: String { get }
    /// The endpoint below `base` (given without a trailing slash).
    func endpoint(base: String) -> String
    /// The headers after `Content-Type` and `Accept`: the key when there is one, a version.
    func headers(key: String?) -> [(name: String, value: String)]
    /// The request body for one proposal.
    func body(_ config: HTTPAgentConfig, system: String, user: String) throws -> Data
    /// What a 2xx body holds; `.rejected` when it is not this format's JSON object at all.
    func read(_ body: Data) throws(AgentError) -> WireReply
}

/// A 2xx body as its format reads it, before the agent prices the tokens or judges the text.
struct WireReply: Equatable {
    /// The answer's text; nil when the reply holds none where the format puts it.
    var text: String?
    /// The tokens the server reported, without a cost.
    var usage: AgentUsage?
    /// Whether the model stopped at `max_tokens`.
    var truncated: Bool
    /// The server's own error message, when the body carries one.
    var serverError: String?
}

extension HTTPAgentProtocol {
    /// The format this protocol speaks.
    var format: any WireFormat {
        switch self {
        case .openai: OpenAIChatFormat()
        case .anthropic: AnthropicMessagesFormat()
        }
    }
}

/// `POST {base_url}/chat/completions`, `Authorization: Bearer KEY`: OpenAI and the servers that copy it.
struct OpenAIChatFormat: WireFormat {
    var textLocation: String { "choices[0].message.content" }

    func endpoint(base: String) -> String { base + "/chat/completions" }

    func headers(key: String?) -> [(name: String, value: String)] {
        key.map { [("Authorization", "Bearer \($0)")] } ?? []
    }

    func body(_ config: HTTPAgentConfig, system: String, user: String) throws -> Data {
        try JSONEncoder().encode(OpenAIRequest(
            model: config.model,
            messages: [.init(role: "system", content: system), .init(role: "user", content: user)],
            max_tokens: config.maxTokens, temperature: config.temperature, stream: false))
    }

    func read(_ body: Data) throws(AgentError) -> WireReply {
        guard let response = try? JSONDecoder().decode(OpenAIResponse.self, from: body) else {
            throw .rejected(reason: "malformed response: not a chat-completions JSON object", paths: [])
        }
        let choice = response.choices?.first
        return WireReply(
            text: choice?.message?.content,
            usage: response.usage.flatMap { HTTPAgent.usage($0.prompt_tokens, $0.completion_tokens) },
            truncated: choice?.finish_reason == "length", serverError: response.error?.message)
    }
}

/// `POST {base_url}/v1/messages`, `x-api-key: KEY`, `anthropic-version: 2023-06-01`.
struct AnthropicMessagesFormat: WireFormat {
    var textLocation: String { "text in content" }

    func endpoint(base: String) -> String { base.hasSuffix("/v1") ? base + "/messages" : base + "/v1/messages" }

    func headers(key: String?) -> [(name: String, value: String)] {
        (key.map { [("x-api-key", $0)] } ?? []) + [("anthropic-version", "2023-06-01")]
    }

    func body(_ config: HTTPAgentConfig, system: String, user: String) throws -> Data {
        try JSONEncoder().encode(AnthropicRequest(
            model: config.model, max_tokens: config.maxTokens, system: system,
            messages: [.init(role: "user", content: user)], temperature: config.temperature))
    }

    func read(_ body: Data) throws(AgentError) -> WireReply {
        guard let response = try? JSONDecoder().decode(AnthropicResponse.self, from: body) else {
            throw .rejected(reason: "malformed response: not a messages JSON object", paths: [])
        }
        // Text blocks only (a `thinking` or `tool_use` block is not the answer), joined.
        let text = (response.content ?? []).filter { $0.type == nil || $0.type == "text" }.compactMap(\.text)
            .joined(separator: "\n")
        return WireReply(
            text: text,
            usage: response.usage.flatMap { HTTPAgent.usage($0.input_tokens, $0.output_tokens) },
            truncated: response.stop_reason == "max_tokens", serverError: response.error?.message)
    }
}

/// The request body, the reply's text, usage and truncation, through the agent's format.
extension HTTPAgent {
    func requestBody(system: String, user: String) throws(AgentError) -> [UInt8] {
        do {
            return Array(try wire.body(config, system: system, user: user))
        } catch {
            throw .failed(reason: "cannot encode the request: \(error)")
        }
    }

    /// Text, usage (priced) and whether the model stopped at `max_tokens`, from a 2xx body. A reply
    /// without text is rejected, its tokens still charged.
    func parseReply(_ body: [UInt8]) throws(AgentError) -> Reply {
        let read = try wire.read(Data(body))
        let usage = read.usage.map(cost)
        guard let text = read.text, !text.trimmed().isEmpty else {
            if let usage { onUsage?(usage) }
            let detail = read.serverError.map { ": \($0)" } ?? ""
            throw .rejected(reason: "malformed response: no \(wire.textLocation)\(detail)", paths: [])
        }
        return Reply(text: text, usage: usage, truncated: read.truncated)
    }

    /// The most tokens one answer may claim: far beyond any model's window, far below where the
    /// sums over a run's answers (the loop's meter, the report) could overflow.
    static let maxReportedTokens = 1 << 40

    /// The usage a server reported, or nil when a count is negative or absurd: like a usage that
    /// is not the schema, it is unknown rather than trusted (an `Int.max` from a broken or hostile
    /// server trapped the report's sum; found by `bench/fuzz.sh`, issue 10).
    static func usage(_ prompt: Int?, _ completion: Int?) -> AgentUsage? {
        let range = 0...maxReportedTokens
        guard range.contains(prompt ?? 0), range.contains(completion ?? 0) else { return nil }
        return AgentUsage(promptTokens: prompt ?? 0, completionTokens: completion ?? 0)
    }

    /// `: <the server's error message>` from an error body, or "" (first 300 characters).
    func serverMessage(_ body: [UInt8]) -> String {
        guard let envelope = try? JSONDecoder().decode(ErrorEnvelope.self, from: Data(body)),
            let message = envelope.error?.message, !message.isEmpty
        else { return "" }
        return ": " + AgentPrompt.oneLine(message, limit: 300)
    }
}

// MARK: - Wire formats

private struct OpenAIRequest: Encodable {
    struct Message: Encodable {
        var role: String
        var content: String
    }
    var model: String
    var messages: [Message]
    var max_tokens: Int
    var temperature: Double?
    var stream: Bool
}

private struct OpenAIResponse: Decodable {
    struct Choice: Decodable {
        struct Message: Decodable { var content: String? }
        var message: Message?
        var finish_reason: String?
    }
    struct Usage: Decodable {
        var prompt_tokens: Int?
        var completion_tokens: Int?
    }
    var choices: [Choice]?
    var usage: Usage?
    var error: ErrorEnvelope.Body?

    enum CodingKeys: String, CodingKey { case choices, usage, error }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        choices = try container.decodeIfPresent([Choice].self, forKey: .choices)
        usage = try? container.decodeIfPresent(Usage.self, forKey: .usage)
        error = try? container.decodeIfPresent(ErrorEnvelope.Body.self, forKey: .error)
    }
}

private struct AnthropicRequest: Encodable {
    struct Message: Encodable {
        var role: String
        var content: String
    }
    var model: String
    var max_tokens: Int
    var system: String
    var messages: [Message]
    var temperature: Double?
}

private struct AnthropicResponse: Decodable {
    struct Block: Decodable {
        var type: String?
        var text: String?
    }
    struct Usage: Decodable {
        var input_tokens: Int?
        var output_tokens: Int?
    }
    var content: [Block]?
    var usage: Usage?
    var stop_reason: String?
    var error: ErrorEnvelope.Body?

    enum CodingKeys: String, CodingKey { case content, usage, stop_reason, error }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        content = try container.decodeIfPresent([Block].self, forKey: .content)
        usage = try? container.decodeIfPresent(Usage.self, forKey: .usage)
        stop_reason = try? container.decodeIfPresent(String.self, forKey: .stop_reason)
        error = try? container.decodeIfPresent(ErrorEnvelope.Body.self, forKey: .error)
    }
}

/// `{"error": {"message": "..."}}` (OpenAI, Anthropic) or `{"error": "..."}` (Ollama).
private struct ErrorEnvelope: Decodable {
    struct Body: Decodable {
        var message: String?

        enum CodingKeys: String, CodingKey { case message }

        init(from decoder: any Decoder) throws {
            if let text = try? decoder.singleValueContainer().decode(String.self) {
                message = text
            } else {
                message = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .message)
            }
        }
    }
    var error: Body?
}
