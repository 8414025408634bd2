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
import ProctorSandbox

public struct HTTPAgent: Agent {
    public let config: HTTPAgentConfig
    /// Called with the tokens of every answer received, also when the answer is then rejected,
    /// so the loop can charge a rejected iteration its cost.
    public let onUsage: (@Sendable (AgentUsage) -> Void)?
    /// Looks up environment variables (tests inject one; the default is `getenv`).
    let environment: @Sendable (String) -> String?
    /// The wire format of `config.wireProtocol`, chosen once.
    let wire: any WireFormat

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
        wire = config.wireProtocol.format
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
            reply.text = reply.text.redacting(key)
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

    func apply(_ reply: Reply, to context: AgentContext) throws(AgentError) -> String {
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
        // Each diff section is applied to the whole file as the answer leaves it, so the cost is
        // sections x lines: a hostile answer of 2,000 one-line sections on a 100k-line file held
        // the supervisor for minutes, past Ctrl-C. The lines read are counted and capped far above
        // what a real answer needs, and a stop is seen between sections.
        var linesRead = 0
        for change in answer.changes {
            if StopSignal.received { throw .failed(reason: "stopped while applying the answer") }
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
                linesRead += (current[path]?.utf8.lazy.filter { $0 == 0x0A }.count ?? 0) + 1
                guard linesRead <= Self.maxLinesRead else {
                    throw .rejected(reason: "the answer's diff sections go over its files more than \(Self.maxLinesRead) lines in all: give a file rewritten throughout whole, in a FILE: block", paths: [])
                }
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

    /// The most file lines an answer's diff sections may go over, summed over its sections (an
    /// answer of 50 sections on a 20,000-line file reads a million).
    static let maxLinesRead = 5_000_000

    // MARK: - Talking to the server

    /// The text of a successful answer and what it cost.
    struct Reply {
        var text: String
        var usage: AgentUsage?
        var truncated: Bool
    }

    func apiKeyForSynthesis() throws(AgentError) -> String? { try apiKey() }

    /// At the run's start: a key variable that is not set would make every iteration a `crash`.
    public func check(_ context: AgentContext) throws -> [String] {
        _ = try apiKey()
        return []
    }

    func scrubbed(_ error: AgentError, _ key: String?) -> AgentError { scrub(error, key) }

    func apiKey() throws(AgentError) -> String? {
        guard let name = config.apiKeyEnv, !name.isEmpty else { return nil }
        guard let value = environment(name), !value.isEmpty else {
            throw .failed(reason: "environment variable \(name) (api_key_env) is not set")
        }
        return value
    }

    /// The key never leaves proctor in an error: replace it wherever a server echoed it.
    func scrub(_ error: AgentError, _ key: String?) -> AgentError {
        guard let key, key.count >= 4 else { return error }
        func clean(_ text: String) -> String { text.redacting(key) }
        switch error {
        case .rejected(let reason, let paths): return .rejected(reason: clean(reason), paths: paths.map(clean))
        case .failed(let reason): return .failed(reason: clean(reason))
        }
    }
}
