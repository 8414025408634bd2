import Foundation
import ProctorAgents
import ProctorSandbox

/// Builds the agent a workspace asks for.
public enum AgentFactory {
    /// `meter` sees the usage of every answer an http agent receives, also of answers then rejected.
    public static func make(kind: String, env: SandboxEnvironment, audit: AuditLog, run: String,
                            meter: UsageMeter? = nil) throws -> Agent {
        let agent = env.config.agent
        switch kind {
        case "mutate":
            return MutateAgent()
        case "search":
            guard let search = SearchAgent(strategy: agent.strategy) else {
                throw LoopError(.failed, "unknown [agent] strategy \"\(agent.strategy)\" (expected \(SearchAgent.strategies.joined(separator: ", ")))")
            }
            return search
        case "http":
            let config = HTTPAgentConfig(
                wireProtocol: try wireProtocol(agent.httpProtocol), baseURL: agent.baseURL,
                model: agent.model, apiKeyEnv: agent.apiKeyEnv, maxTokens: agent.maxTokens, temperature: agent.temperature,
                timeoutSeconds: Double(agent.timeoutMs) / 1000, maxRetries: agent.retries,
                pricePerMTokIn: agent.pricePerMTokIn, pricePerMTokOut: agent.pricePerMTokOut)
            var onUsage: (@Sendable (AgentUsage) -> Void)? = nil
            if let meter { onUsage = { usage in meter.add(usage) } }
            return HTTPAgent(config: config, onUsage: onUsage)
        case "command":
            return CommandAgent(env: env, audit: audit, run: run)
        default:
            throw LoopError(.failed, "unknown agent kind \"\(kind)\" (expected mutate, search, http or command)")
        }
    }

    /// `[agent] protocol` (checked when proctor.toml is read; never silently another one).
    static func wireProtocol(_ name: String) throws -> HTTPAgentProtocol {
        guard let wire = HTTPAgentProtocol(rawValue: name) else {
            throw LoopError(.failed, "unknown [agent] protocol \"\(name)\" (expected openai or anthropic)")
        }
        return wire
    }
}

/// Tokens and cost an agent reported during one proposal, so a rejected or failed iteration is
/// charged what its answers cost.
public final class UsageMeter: @unchecked Sendable {
    private let lock = NSLock()
    private var total: AgentUsage?

    public init() {}

    func add(_ usage: AgentUsage) {
        lock.lock()
        defer { lock.unlock() }
        guard var sum = total else { total = usage; return }
        sum.promptTokens += usage.promptTokens
        sum.completionTokens += usage.completionTokens
        if let cost = usage.costUSD { sum.costUSD = (sum.costUSD ?? 0) + cost }
        total = sum
    }

    /// The usage since the last call, and a fresh start.
    func take() -> AgentUsage? {
        lock.lock()
        defer { lock.unlock() }
        let usage = total
        total = nil
        return usage
    }
}
