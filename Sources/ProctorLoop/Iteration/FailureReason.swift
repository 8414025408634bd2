import Foundation

/// What the locked evaluator wrote when it could not score: its launch status, its stderr tail, a
/// parse error quoting its stdout. These words can quote held-out data (a label, a row of the test
/// set), so they have no rendering an agent can reach: the type is not `CustomStringConvertible`,
/// its text is private to this file, and only `FailureReason.ledgerText` (the ledger, runs.jsonl,
/// the operator's terminal: places no sandbox can read) spells it out. Issue 9.
struct EvaluatorWords: Sendable, Equatable, CustomReflectable {
    fileprivate let text: String

    init(_ text: String) { self.text = text }

    /// No children: `"\(reason)"`, `String(describing:)` and `dump` would otherwise print the text
    /// through reflection (`evaluator(EvaluatorWords(text: "..."))`).
    var customMirror: Mirror { Mirror(self, children: [:]) }
}

/// Why an iteration ended other than by a plain keep or discard, typed by where it comes from.
///
/// Two renderings, and no other way to turn a reason into text: `ledgerText`, what the ledger's row
/// shows in brackets and runs.jsonl's `reason` holds (the operator's view, byte for byte what the
/// stages wrote before the type existed), and `agentText`, what a prompt's history and the session
/// agent's verdict show. Which reasons an agent may read is decided here, by case, not by how the
/// text happens to start: a new reason that quotes the evaluator must carry `EvaluatorWords`, and
/// those never reach `agentText`.
indirect enum FailureReason: Sendable, Equatable {
    /// The agent's answer was refused before anything ran (`AgentError.rejected`): its own words.
    case agentRejected(String)
    /// The agent failed to propose (`AgentError.failed`): a crash, a timeout, a transport error.
    case agentFailed(String)
    /// Locked files (workspace-relative) no longer match their pins.
    case lockedFilesChanged([String])
    /// The diff broke the policy: each violation's description.
    case violations([String])
    /// The proposal changed nothing.
    case noChange
    /// The same change as iteration N of this run.
    case duplicate(of: Int)
    /// A frozen session agent ran anyway during its experiment (`Runner.ranWhileFrozen`).
    case ranWhileFrozen
    /// Validated paths changed while the candidate was measured or kept.
    case inputsMoved([String])
    /// The experiment timed out or exited non-zero: the launcher's reason (and its log's path).
    case experiment(String)
    /// The experiment left links or special files in the outputs.
    case specialOutputs([String])
    /// The locked evaluator could not score: never shown to an agent.
    case evaluator(EvaluatorWords)
    /// A confirmation seed failed for `reason`.
    case confirmation(FailureReason)
    /// A measurement over its limit (`features 12 over the limit 10`).
    case overLimit(String)
    /// The first seed beat the best, the mean over all seeds did not.
    case meanDoesNotBeat
    /// The mean over all seeds beat the best, the mean over the confirmation seeds alone did not
    /// beat the best's.
    case confirmationDoesNotBeat
    /// `--parallel`: the best moved while the candidate was measured and its diff does not apply to
    /// the new best (the commit it was measured on, short).
    case stale(proposedOn: String)
    /// The candidate's score no longer moves with `PROCTOR_SEED` where the baseline's did.
    case ignoresSeed(seeds: [UInt64], baselineSpread: Double)
    /// Ctrl-C during the measurement.
    case interrupted
    /// The supervisor stopped mid-iteration; found by `--resume`.
    case supervisorStopped
    /// Nothing was measured (a `Measurement` that never ran).
    case notRun

    /// The operator's text: the ledger row's brackets, runs.jsonl's `reason`, error messages.
    var ledgerText: String {
        switch self {
        case .agentRejected(let text), .agentFailed(let text): text
        case .evaluator(let words): "evaluator: " + words.text
        case .confirmation(let reason): "confirmation: " + reason.ledgerText
        default: sharedText
        }
    }

    /// What an agent may read: the same as `ledgerText` except that the evaluator's words are
    /// replaced by a fixed sentence (on a confirmation seed too).
    var agentText: String {
        switch self {
        case .agentRejected(let text), .agentFailed(let text): text
        case .evaluator: FailureReason.evaluatorHidden
        case .confirmation(let reason): "confirmation: " + reason.agentText
        default: sharedText
        }
    }

    /// How many paths or violations a reason's text names; the rest are counted. A rejection of
    /// thousands of files would otherwise write megabytes into its ledger row (runs.jsonl, which the
    /// memory reads every iteration); the audit log keeps every one.
    static let listedAtMost = 20

    /// `items` joined, the first `listedAtMost` of them and then how many more.
    static func listed(_ items: [String], _ separator: String) -> String {
        counted(items, atMost: listedAtMost).joined(separator: separator)
    }

    /// The first `most` of `items`, then one item that counts the rest (every one of them is in the
    /// audit log); `items` as they are when there are no more. The reasons' texts and a record's
    /// `violations` (`Verdict.recorded`) both shorten their lists so.
    static func counted(_ items: [String], atMost most: Int) -> [String] {
        // Each at most `itemScalars` long: a hundred violations quoting 3,700-byte paths wrote
        // 0.6 MB into one record (the audit log has each in full).
        let shown = items.prefix(most).map { $0.unicodeScalars.count > itemScalars ? $0.prefix(scalars: itemScalars) + "..." : $0 }
        guard items.count > most else { return shown }
        return shown + ["and \(items.count - most) more (each in the audit log)"]
    }

    static let itemScalars = 500

    /// What an agent reads instead of the evaluator's words.
    static let evaluatorHidden = "the evaluator could not score the outputs (its messages are in the ledger, not shown to agents)"

    /// The text of the reasons that quote nothing of the evaluator, for both renderings.
    private var sharedText: String {
        switch self {
        case .lockedFilesChanged(let paths): "locked file changed: " + FailureReason.listed(paths, ", ")
        case .violations(let violations): FailureReason.listed(violations, "; ")
        case .noChange: "no change"
        case .duplicate(let first): "duplicate of iteration \(first)"
        case .ranWhileFrozen: Runner.ranWhileFrozen
        case .inputsMoved(let paths): "changed while the experiment ran: " + FailureReason.listed(paths, ", ")
        case .experiment(let detail): "experiment: " + detail
        case .specialOutputs(let paths): "the outputs hold links or special files: " + FailureReason.listed(paths, ", ")
        case .overLimit(let text): text
        case .meanDoesNotBeat: "mean over seeds does not beat the best"
        case .confirmationDoesNotBeat: "mean over the confirmation seeds does not beat the best's"
        case .stale(let commit): "stale: proposed on \(commit), the best moved since and the change does not apply to it"
        case .ignoresSeed(let seeds, let spread):
            "the score ignores PROCTOR_SEED (identical over seeds \(seeds.map(String.init).joined(separator: ",")), the baseline's varied by \(format(spread)))"
        case .interrupted: "interrupted"
        case .supervisorStopped: "supervisor stopped"
        case .notRun: "not run"
        case .agentRejected, .agentFailed, .evaluator, .confirmation:
            preconditionFailure("rendered by ledgerText and agentText")
        }
    }
}
