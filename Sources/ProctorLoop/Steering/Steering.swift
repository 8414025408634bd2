import Foundation
import ProctorSandbox

/// The human's steering and the analysis runs as one iteration takes them. Per iteration:
/// 1. before the proposal, `Steering.beforeProposal(...)`: runs the analyses queued by a waiting
///    `proctor analyze` (`AnalysisQueue.runPending`), then gathers the nudges and the analyses the
///    agent has not seen yet;
/// 2. `prompt` goes into the agent's prompt (empty when there is nothing); `nudges` into the
///    iteration's runs.jsonl record and LOG.md entry (and so the report);
/// 3. once that record is written, `markDelivered()`. A crash before it shows them again in the
///    next iteration (at least once, never lost).
public struct Steering: Sendable {
    /// The workspace root.
    public let root: String
    /// Nudges not yet delivered, in order.
    public var nudges: [Nudge]
    /// Finished analyses not yet shown, oldest first.
    public var analyses: [AnalysisRecord]
    /// `AnalysisStore.summaries` of `analyses` (empty when none).
    public var analysisSummaries: String
    /// The prompt section: `NudgeQueue.render` then `analysisSummaries`; bounded (nudges of
    /// at most 4 KiB each, at most `AnalysisStore.summaryCount` summaries) and free of control
    /// characters other than newline and tab.
    public var prompt: String

    /// The newest nudge and analysis this process has handed to a proposal. Under `--parallel` the
    /// next proposals are made before the first one's record marks anything delivered: without it,
    /// one nudge reached every proposal in flight. Not kept across a crash, which delivers again.
    public struct Handed: Sendable {
        var nudge = 0
        var analysis = 0
        public init() {}
    }

    /// Step 1. The caller holds the run's locks (queued analyses run now, in the experiment sandbox).
    public static func beforeProposal(env: SandboxEnvironment, audit: AuditLog?, run: String, iteration: Int?,
                                      handed: inout Handed) -> Steering {
        let root = env.config.root
        AnalysisQueue(root: root).runPending(env: env, audit: audit, run: run, iteration: iteration)
        let store = AnalysisStore(root: root)
        let nudges = NudgeQueue(root: root).pending().filter { $0.id > handed.nudge }
        let analyses = store.pending().filter { $0.number > handed.analysis }
        let summaries = store.summaries(since: max(store.delivered, handed.analysis))
        handed.nudge = max(handed.nudge, nudges.last?.id ?? 0)
        handed.analysis = max(handed.analysis, analyses.last?.number ?? 0)
        let sections = [NudgeQueue.render(nudges), summaries].filter { !$0.isEmpty }
        return Steering(root: root, nudges: nudges, analyses: analyses, analysisSummaries: summaries,
                        prompt: sections.joined(separator: "\n"))
    }

    /// Step 3: what `beforeProposal` gathered has reached the agent and is recorded.
    public func markDelivered() throws {
        if let last = nudges.last { try NudgeQueue(root: root).markDelivered(upTo: last.id) }
        if let last = analyses.last { try AnalysisStore(root: root).markDelivered(upTo: last.number) }
    }
}
