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
        return wireProtocol.format.endpoint(base: base)
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
