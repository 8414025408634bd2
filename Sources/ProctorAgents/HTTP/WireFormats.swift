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

/// The two wire formats, OpenAI's chat completions and Anthropic's messages: the request body and
/// the reply's text, usage and truncation.
extension HTTPAgent {
    func requestBody(system: String, user: String) throws(AgentError) -> [UInt8] {
        let encoder = JSONEncoder()
        do {
            switch config.wireProtocol {
            case .openai:
                let request = OpenAIRequest(
                    model: config.model,
                    messages: [.init(role: "system", content: system), .init(role: "user", content: user)],
                    max_tokens: config.maxTokens, temperature: config.temperature, stream: false)
                return Array(try encoder.encode(request))
            case .anthropic:
                let request = AnthropicRequest(
                    model: config.model, max_tokens: config.maxTokens, system: system,
                    messages: [.init(role: "user", content: user)], temperature: config.temperature)
                return Array(try encoder.encode(request))
            }
        } catch {
            throw .failed(reason: "cannot encode the request: \(error)")
        }
    }

    /// Text, usage and whether the model stopped at `max_tokens`, from a 2xx body.
    func parseReply(_ body: [UInt8]) throws(AgentError) -> Reply {
        let decoder = JSONDecoder()
        let data = Data(body)
        switch config.wireProtocol {
        case .openai:
            guard let response = try? decoder.decode(OpenAIResponse.self, from: data) else {
                throw .rejected(reason: "malformed response: not a chat-completions JSON object", paths: [])
            }
            let usage = response.usage.flatMap { Self.usage($0.prompt_tokens, $0.completion_tokens) }.map(cost)
            guard let choice = response.choices?.first, let text = choice.message?.content,
                !text.trimmed().isEmpty
            else {
                if let usage { onUsage?(usage) }
                let detail = response.error?.message.map { ": \($0)" } ?? ""
                throw .rejected(reason: "malformed response: no choices[0].message.content\(detail)", paths: [])
            }
            return Reply(text: text, usage: usage, truncated: choice.finish_reason == "length")
        case .anthropic:
            guard let response = try? decoder.decode(AnthropicResponse.self, from: data) else {
                throw .rejected(reason: "malformed response: not a messages JSON object", paths: [])
            }
            let usage = response.usage.flatMap { Self.usage($0.input_tokens, $0.output_tokens) }.map(cost)
            let text = (response.content ?? []).filter { $0.type == nil || $0.type == "text" }.compactMap(\.text)
                .joined(separator: "\n")
            guard !text.trimmed().isEmpty else {
                if let usage { onUsage?(usage) }
                let detail = response.error?.message.map { ": \($0)" } ?? ""
                throw .rejected(reason: "malformed response: no text in content\(detail)", paths: [])
            }
            return Reply(text: text, usage: usage, truncated: response.stop_reason == "max_tokens")
        }
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
