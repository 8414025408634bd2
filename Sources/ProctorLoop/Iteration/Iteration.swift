import Foundation
import ProctorAgents
import ProctorGit
import ProctorSandbox

/// One iteration of `proctor run`, as the README's "One iteration" lists it: **propose**
/// (`Propose.swift`) → **validate** (`Validate.swift`) → **measure**: experiment, locked evaluator,
/// limits (`Measure.swift`) → **gate** (`Gate.swift`) → **keep or revert** (`KeepOrRevert.swift`) →
/// **record** (`Record.swift`). Each stage either hands on (`nil`) or ends the iteration; the
/// recorder is the one place an ending becomes audit lines, a ledger row and a record.
final class Iteration {
    unowned let runner: Runner
    /// The iteration's number (the baseline is 0).
    let number: Int
    let started = Date()
    /// The last kept commit: the diff is taken against it, a revert restores it. (A `--parallel`
    /// candidate re-applied on a newer best moves on with it.)
    var best: ObjectID
    /// The best score when the iteration started (the record's `best_before`).
    var bestBefore: Double

    // What the stages found so far.
    /// The memory the agent was shown with its proposal (recorded with the iteration).
    var shown = AgentMemory()
    var proposal = Proposal(description: "")
    var changes: [Change] = []
    var stats: DiffStats?
    /// The change as a unified diff against `best` (for the memory and duplicate checks).
    var patch: String?
    /// The nudges and analyses gathered for the proposal (marked delivered once recorded).
    var steering: Steering?
    /// SHA-256 of each changed path as validated: what is measured and kept must be these bytes.
    var validated: [String: String] = [:]
    var measured: Measurement?
    /// `--parallel`: measured in a slot on a copy proctor wrote, not in the working tree (which the
    /// next proposal uses meanwhile), so there is nothing in the tree to re-validate until the keep.
    var inSlot = false
    /// The slot whose outputs a kept `--parallel` candidate's sealed evaluator scores.
    var slotEnv: SandboxEnvironment?

    init(runner: Runner, number: Int) throws {
        self.runner = runner
        self.number = number
        best = try runner.repo.resolve(runner.state.bestCommit)
        bestBefore = runner.state.bestScore
    }

    /// The stages in order; the first that ends the iteration decides.
    func run() throws -> IterationEnd {
        try propose() ?? validate() ?? measure() ?? gate() ?? keep()
    }

    /// Ends the iteration with a verdict on the proposal as it stands: its description, diff
    /// statistics, cost and what was measured so far, unless given.
    func ends(_ status: IterationStatus, reason: FailureReason?, description: String? = nil, usage: AgentUsage? = nil,
              commit: ObjectID? = nil, violations: [String] = [], audit: [AuditRecord] = []) -> IterationEnd {
        .verdict(Verdict(status: status, reason: reason, description: description ?? proposal.description,
                         measured: measured, commit: commit, diff: stats, usage: usage ?? proposal.usage,
                         violations: Verdict.recorded(violations), audit: audit))
    }

    /// An audit line of this iteration for a rejected candidate (`path` relative to the workspace).
    func rejection(phase: AuditPhase, kind: AuditKind, path: String? = nil, rule: AuditRule, detail: String) -> AuditRecord {
        AuditRecord(run: runner.state.run, iteration: number, phase: phase, kind: kind, decision: .rejected,
                    path: path.map(runner.absolute), rule: rule, detail: detail)
    }
}

/// How an iteration ends.
enum IterationEnd {
    /// Recorded (`Runner.record`): audit lines, a ledger row, a record.
    case verdict(Verdict)
    /// Ctrl-C: no row, the tree back to the last kept commit.
    case abandoned
    /// The agent has nothing more to propose (the session agent exited, the search space is
    /// exhausted): the loop ends cleanly, no row.
    case agentEnded
}

/// What the stages decided about one candidate.
struct Verdict {
    /// The violations a run record lists: the first hundred, then a line that counts the rest (the
    /// audit log has a line for each; as a reason's text, a rejection of thousands of files must not
    /// write megabytes into runs.jsonl).
    static func recorded(_ violations: [String]) -> [String] {
        FailureReason.counted(violations, atMost: 100)
    }

    var status: IterationStatus
    /// Why, for anything but a plain keep or discard (the ledger shows it in brackets; agents see
    /// only its `agentText`).
    var reason: FailureReason?
    var description: String
    var measured: Measurement?
    /// The keep commit; nil for every other status (the tree is reverted).
    var commit: ObjectID?
    var diff: DiffStats?
    var usage: AgentUsage?
    var violations: [String]
    /// Written to `.proctor/audit.jsonl` by the recorder.
    var audit: [AuditRecord]
    /// The sealed evaluator's score of a kept candidate (`Sealed.swift`); never shown to an agent.
    var sealed: Double? = nil
    var sealedScores: [RunRecord.SeedScore]? = nil
}
