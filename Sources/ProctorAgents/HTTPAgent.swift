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

/// Which wire protocol an `http` agent speaks.
public enum HTTPAgentProtocol: String, Sendable, CaseIterable {
    /// `POST {base_url}/chat/completions`, `Authorization: Bearer KEY`: OpenAI and every
    /// compatible server (Ollama, vLLM, llama.cpp's server, LM Studio), which need no key.
    case openai
    /// `POST {base_url}/v1/messages`, `x-api-key: KEY`, `anthropic-version: 2023-06-01`.
    case anthropic
}

/// The `[agent]` settings of `kind = "http"`. Plain values: the TOML layer fills them.
public struct HTTPAgentConfig: Sendable, Equatable {
    /// `protocol`: "openai" or "anthropic".
    public var wireProtocol: HTTPAgentProtocol
    /// `base_url`, e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1`, `https://api.anthropic.com`.
    public var baseURL: String
    /// `model`, sent as is.
    public var model: String
    /// `api_key_env`: the NAME of the environment variable that holds the key, read at each call and
    /// never stored, logged or written. Nil or empty: no key is sent (local servers).
    public var apiKeyEnv: String?
    /// `max_tokens`: the answer's token budget.
    public var maxTokens: Int
    /// `temperature`; nil leaves the server's default (some reasoning models refuse any value).
    public var temperature: Double?
    /// `timeout`: wall-clock budget of one proposal, every retry and back-off wait included.
    public var timeoutSeconds: Double
    /// `connect_timeout`: time allowed to open each connection.
    public var connectTimeoutSeconds: Double
    /// `max_retries`: further attempts after a 429, a 5xx or a failed connection.
    public var maxRetries: Int
    /// First back-off delay; attempt n waits about `retryBaseDelaySeconds * 2^n`, with jitter.
    public var retryBaseDelaySeconds: Double
    /// Longest single wait, also the cap on a server's `Retry-After`.
    public var maxRetryDelaySeconds: Double
    /// `price_per_mtok_in` / `price_per_mtok_out`: USD per million prompt / completion tokens,
    /// for the ledger's cost; nil when unknown.
    public var pricePerMTokIn: Double?
    public var pricePerMTokOut: Double?
    /// Largest response body accepted.
    public var maxResponseBytes: Int

    /// Settings with the defaults a user gets when the TOML omits a key.
    public init(
        wireProtocol: HTTPAgentProtocol, baseURL: String, model: String, apiKeyEnv: String? = nil,
        maxTokens: Int = 8192, temperature: Double? = nil, timeoutSeconds: Double = 300,
        connectTimeoutSeconds: Double = 10, maxRetries: Int = 4, retryBaseDelaySeconds: Double = 2,
        maxRetryDelaySeconds: Double = 60, pricePerMTokIn: Double? = nil, pricePerMTokOut: Double? = nil,
        maxResponseBytes: Int = 8 << 20
    ) {
        self.wireProtocol = wireProtocol
        self.baseURL = baseURL
        self.model = model
        self.apiKeyEnv = apiKeyEnv
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.timeoutSeconds = timeoutSeconds
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.maxRetries = maxRetries
        self.retryBaseDelaySeconds = retryBaseDelaySeconds
        self.maxRetryDelaySeconds = maxRetryDelaySeconds
        self.pricePerMTokIn = pricePerMTokIn
        self.pricePerMTokOut = pricePerMTokOut
        self.maxResponseBytes = maxResponseBytes
    }

    /// What is impossible in these settings, one message per problem naming the TOML key
    /// (`[agent].base_url` ...); empty when the settings can be used.
    public var problems: [String] {
        var found: [String] = []
        if !(baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://")) {
            found.append("[agent].base_url must start with http:// or https://: \(baseURL)")
        }
        if model.isEmpty { found.append("[agent].model must not be empty") }
        if let name = apiKeyEnv, !name.isEmpty,
            !name.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }) || name.first!.isNumber
        {
            found.append("[agent].api_key_env must be the NAME of an environment variable, not its value")
        }
        if maxTokens <= 0 { found.append("[agent].max_tokens must be positive") }
        if let temperature, !(temperature >= 0 && temperature <= 2) {
            found.append("[agent].temperature must be between 0 and 2")
        }
        if !(timeoutSeconds > 0) { found.append("[agent].timeout must be positive") }
        if !(connectTimeoutSeconds > 0) { found.append("[agent].connect_timeout must be positive") }
        if maxRetries < 0 { found.append("[agent].max_retries must not be negative") }
        if (pricePerMTokIn ?? 0) < 0 || (pricePerMTokOut ?? 0) < 0 {
            found.append("[agent] prices must not be negative")
        }
        return found
    }

    /// The endpoint a request goes to.
    public var endpointURL: String {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        switch wireProtocol {
        case .openai: return base + "/chat/completions"
        case .anthropic: return base.hasSuffix("/v1") ? base + "/messages" : base + "/v1/messages"
        }
    }
}

/// `kind = "http"`: proctor asks a model over HTTP for a change and applies it itself.
///
/// One `propose` sends the prompt (`AgentPrompt`), retries 429, 5xx and failed connections with
/// exponential back-off and jitter (honouring `Retry-After`) within `timeoutSeconds`, parses the
/// answer (`Answer`), checks every path it names against the editable and notes files before
/// reading or writing anything, applies it in memory, and only then rewrites the files in place.
/// The model never runs code. The API key is read from the environment at each call and scrubbed
/// from every error message.
public struct HTTPAgent: Agent {
    public let config: HTTPAgentConfig
    /// Called with the tokens of every answer received, also when the answer is then rejected,
    /// so the loop can charge a rejected iteration its cost.
    public let onUsage: (@Sendable (AgentUsage) -> Void)?
    /// Looks up environment variables (tests inject one; the default is `getenv`).
    let environment: @Sendable (String) -> String?

    /// An agent with the given settings; `onUsage` sees the usage of every answer received.
    public init(config: HTTPAgentConfig, onUsage: (@Sendable (AgentUsage) -> Void)? = nil) {
        self.init(config: config, onUsage: onUsage, environment: { name in getenv(name).map { String(cString: $0) } })
    }

    init(
        config: HTTPAgentConfig, onUsage: (@Sendable (AgentUsage) -> Void)?,
        environment: @escaping @Sendable (String) -> String?
    ) {
        self.config = config
        self.onUsage = onUsage
        self.environment = environment
    }

    public func propose(_ context: AgentContext) throws -> Proposal {
        var key: String? = nil
        // The transcript: what was asked (sizes, not the prompt, which is rebuilt from the ledger
        // and the files) and the answer text, the key redacted.
        var log = "# http agent: \(config.wireProtocol) \(config.endpointURL) model \(config.model)\n"
        defer { context.transcript.map { AgentTranscript.write(log, to: $0, redacting: key) } }
        do {
            key = try apiKey()
            let system = AgentPrompt.system(context)
            let user = AgentPrompt.user(context)
            log += "# request: system prompt \(system.count) characters, user prompt \(user.count) characters\n"
            var reply = try complete(system: system, user: user, key: key)
            // The server knows the key and may echo it in the answer (a proxy, a compromised
            // endpoint): the summary becomes the ledger row and the commit message, FILE blocks
            // the committed code, so a run pushed anywhere would publish it.
            if let key, key.count >= 4 { reply.text = reply.text.replacing(key, with: "[redacted]") }
            if let usage = reply.usage {
                onUsage?(usage)
                log += "# usage: \(usage.promptTokens) prompt tokens, \(usage.completionTokens) completion tokens\n"
            }
            log += "# answer\n\(reply.text)\n"
            let description = try apply(reply, to: context)
            return Proposal(description: description, usage: reply.usage)
        } catch {
            let scrubbed = scrub(error, key)
            log += "# failed: \(scrubbed)\n"
            throw scrubbed
        }
    }

    // MARK: - Applying an answer

    private func apply(_ reply: Reply, to context: AgentContext) throws(AgentError) -> String {
        let truncated = reply.truncated ? " (the answer hit max_tokens and was cut short)" : ""
        var answer: Answer
        do {
            answer = try Answer.parse(reply.text)
        } catch {
            if case .rejected(let reason, let paths) = error {
                throw .rejected(reason: reason + truncated, paths: paths)
            }
            throw error
        }
        guard !answer.changes.isEmpty else {
            throw .rejected(reason: "the answer holds no FILE: block and no diff\(truncated)", paths: [])
        }
        let files = WorkspaceFiles(context)
        // Every path first: nothing is read or written when any one is forbidden.
        try files.checkAll(answer.changes.flatMap(\.paths))

        // The files as the answer leaves them, in memory; nil: the file does not exist.
        var current: [String: String] = [:]
        var order: [String] = []
        for change in answer.changes {
            let path = files.normalized(change.paths.last ?? "")
            if !order.contains(path) {
                if let bytes = try files.contents(of: path) {
                    guard let text = String(validating: bytes, as: UTF8.self) else {
                        throw .rejected(reason: "\(path) is not UTF-8 text", paths: [path])
                    }
                    current[path] = text
                }
                order.append(path)
            }
            switch change {
            case .replace(_, let contents):
                current[path] = contents
            case .patch(let patch):
                current[path] = try patch.apply(to: current[path])
            }
        }

        var changed: [String] = []
        for path in order where try files.contents(of: path) != Array((current[path] ?? "").utf8) {
            changed.append(path)
        }
        guard !changed.isEmpty else { throw .rejected(reason: "the answer changes nothing", paths: []) }
        guard changed.contains(where: { files.editable.contains($0) }) else {
            throw .rejected(reason: "the answer changes only notes files", paths: [])
        }
        for path in changed {
            try files.replace(path, with: Array((current[path] ?? "").utf8))
        }
        let summary = answer.summary.map { AgentPrompt.oneLine($0) } ?? ""
        return summary.isEmpty ? "edit \(changed.joined(separator: ", "))" : summary
    }

    // MARK: - Talking to the server

    /// The text of a successful answer and what it cost.
    struct Reply {
        var text: String
        var usage: AgentUsage?
        var truncated: Bool
    }

    func apiKeyForSynthesis() throws(AgentError) -> String? { try apiKey() }

    func scrubbed(_ error: AgentError, _ key: String?) -> AgentError { scrub(error, key) }

    private func apiKey() throws(AgentError) -> String? {
        guard let name = config.apiKeyEnv, !name.isEmpty else { return nil }
        guard let value = environment(name), !value.isEmpty else {
            throw .failed(reason: "environment variable \(name) (api_key_env) is not set")
        }
        return value
    }

    func complete(system: String, user: String, key: String?) throws(AgentError) -> Reply {
        let url = config.endpointURL
        let body = try requestBody(system: system, user: user)
        var headers: [(name: String, value: String)] = [
            ("Content-Type", "application/json"), ("Accept", "application/json"),
        ]
        switch config.wireProtocol {
        case .openai:
            if let key { headers.append(("Authorization", "Bearer \(key)")) }
        case .anthropic:
            if let key { headers.append(("x-api-key", key)) }
            headers.append(("anthropic-version", "2023-06-01"))
        }

        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int64(max(config.timeoutSeconds, 0.001) * 1000))
        let attempts = max(config.maxRetries, 0) + 1
        var generator = SystemRandomNumberGenerator()
        var lastProblem = ""
        for attempt in 0..<attempts {
            let remaining = seconds(deadline - clock.now)
            guard remaining > 0 else { throw .failed(reason: "no answer from \(url) within \(config.timeoutSeconds)s") }
            let client = HTTPClient(
                timeoutSeconds: remaining, connectTimeoutSeconds: min(config.connectTimeoutSeconds, remaining),
                maxBodyBytes: config.maxResponseBytes)
            let isLast = attempt == attempts - 1
            let wait: Double
            let problem: String
            do {
                let response = try client.post(url: url, headers: headers, body: body)
                switch response.status {
                case 200..<300:
                    return try parseReply(response.body)
                case 401, 403:
                    let variable = config.apiKeyEnv.map { "$\($0)" } ?? "the api_key_env setting"
                    throw AgentError.failed(
                        reason: "authentication failed: check \(variable) (HTTP \(response.status) from \(url))")
                case 404:
                    throw AgentError.failed(reason: "model or endpoint not found: \(url) (model \"\(config.model)\")")
                case 429, 500..<600:
                    problem = "HTTP \(response.status) from \(url)\(serverMessage(response.body))"
                    wait = retryAfter(response.headers["retry-after"]) ?? backoff(attempt, &generator)
                case 300..<400:
                    let location = response.headers["location"].map { " to \($0)" } ?? ""
                    throw AgentError.failed(
                        reason:
                            "HTTP \(response.status) from \(url): redirect\(location) not followed; set base_url to the final address"
                    )
                default:
                    throw AgentError.failed(
                        reason: "HTTP \(response.status) from \(url)\(serverMessage(response.body))")
                }
            } catch let error as HTTPClientError {
                switch error.kind {
                case .timeout:
                    throw AgentError.failed(reason: "no answer from \(url) within \(config.timeoutSeconds)s")
                case .connection:
                    problem = error.message
                    wait = backoff(attempt, &generator)
                default:
                    throw AgentError.failed(reason: error.message)
                }
            } catch let error as AgentError {
                throw error
            } catch {
                throw AgentError.failed(reason: "\(error)")
            }
            lastProblem = problem
            if isLast { break }
            if seconds(deadline - clock.now) <= wait {
                throw .failed(reason: "\(problem); no time left to retry within \(config.timeoutSeconds)s")
            }
            sleep(seconds: wait)
        }
        throw .failed(reason: "\(lastProblem) after \(attempts) attempt\(attempts == 1 ? "" : "s")")
    }

    private func requestBody(system: String, user: String) throws(AgentError) -> [UInt8] {
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
            let usage = response.usage.map {
                cost(AgentUsage(promptTokens: $0.prompt_tokens ?? 0, completionTokens: $0.completion_tokens ?? 0))
            }
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
            let usage = response.usage.map {
                cost(AgentUsage(promptTokens: $0.input_tokens ?? 0, completionTokens: $0.output_tokens ?? 0))
            }
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

    private func cost(_ usage: AgentUsage) -> AgentUsage {
        guard config.pricePerMTokIn != nil || config.pricePerMTokOut != nil else { return usage }
        var priced = usage
        priced.costUSD =
            (Double(usage.promptTokens) * (config.pricePerMTokIn ?? 0)
                + Double(usage.completionTokens) * (config.pricePerMTokOut ?? 0)) / 1_000_000
        return priced
    }

    /// `: <the server's error message>` from an error body, or "" (first 300 characters).
    private func serverMessage(_ body: [UInt8]) -> String {
        guard let envelope = try? JSONDecoder().decode(ErrorEnvelope.self, from: Data(body)),
            let message = envelope.error?.message, !message.isEmpty
        else { return "" }
        return ": " + AgentPrompt.oneLine(message, limit: 300)
    }

    /// `Retry-After` in seconds (an HTTP date is ignored), capped at `maxRetryDelaySeconds`.
    private func retryAfter(_ value: String?) -> Double? {
        guard let value, let seconds = Double(value.trimmed()), seconds.isFinite, seconds >= 0 else { return nil }
        return min(seconds, config.maxRetryDelaySeconds)
    }

    private func backoff(_ attempt: Int, _ generator: inout SystemRandomNumberGenerator) -> Double {
        let exponential = config.retryBaseDelaySeconds * Double(1 << min(attempt, 20))
        // "Equal jitter": half fixed, half random, so clients that failed together spread out.
        let jittered = exponential * (0.5 + 0.5 * Double.random(in: 0..<1, using: &generator))
        return min(jittered, config.maxRetryDelaySeconds)
    }

    private func seconds(_ duration: Duration) -> Double {
        let (whole, attoseconds) = duration.components
        return Double(whole) + Double(attoseconds) / 1e18
    }

    private func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// The key never leaves proctor in an error: replace it wherever a server echoed it.
    private func scrub(_ error: AgentError, _ key: String?) -> AgentError {
        guard let key, key.count >= 4 else { return error }
        func clean(_ text: String) -> String { text.replacing(key, with: "[redacted]") }
        switch error {
        case .rejected(let reason, let paths): return .rejected(reason: clean(reason), paths: paths.map(clean))
        case .failed(let reason): return .failed(reason: clean(reason))
        }
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
