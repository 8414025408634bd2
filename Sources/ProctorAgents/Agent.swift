/// What an agent is shown when asked for the next change.
public struct AgentContext: Sendable {
    /// Absolute path of the workspace root (the git working tree).
    public var workspace: String
    /// The text of `program.md` (empty when the workspace has none).
    public var program: String
    /// Workspace-relative paths the agent may change, with their current contents.
    public var editableFiles: [String: String]
    /// Workspace-relative paths of notes files the agent may also write.
    public var notesFiles: [String]
    /// The metric's name and whether larger is better.
    public var metric: String
    public var maximize: Bool
    /// Best kept score so far (the baseline before anything was kept).
    public var bestScore: Double?
    /// Earlier iterations of this run, oldest first.
    public var history: [HistoryEntry]
    /// 1-based iteration number.
    public var iteration: Int
    /// Seed for agents that randomise (the built-in `mutate` agent), from the run and the iteration.
    public var seed: UInt64
    /// The same for every iteration of the run (from its id): the `search` agent's initial design.
    public var runSeed: UInt64 = 0
    /// Cap on changed lines in editable files (`[limits].diff_lines`).
    public var maxDiffLines: Int
    /// What the runtime remembers around the loop (learnings, near-misses, the phase, nudges, ...).
    public var memory: AgentMemory
    /// Where the agent's transcript goes (`.proctor/logs/<run>/<i>-agent.log`), nil for none.
    public var transcript: String?
    /// Every iteration of this run so far (the baseline first), with each seed's score: what the
    /// `search` agent models. Unlike `history`, never cut short.
    public var measured: [MeasuredIteration] = []
    /// The editable files as the run's baseline measured them (its base commit), by path: where the
    /// `search` agent's history starts, after the files moved on to a kept proposal.
    public var baselineFiles: [String: String] = [:]
    /// `proctor run --parallel`: the other candidates proposed and still being measured, as
    /// "iteration N: description" (an agent proposes something else; the prompt lists them).
    public var inFlight: [String] = []

    public init(
        workspace: String, program: String, editableFiles: [String: String], notesFiles: [String],
        metric: String, maximize: Bool, bestScore: Double?, history: [HistoryEntry], iteration: Int,
        seed: UInt64, maxDiffLines: Int, memory: AgentMemory = AgentMemory(), transcript: String? = nil
    ) {
        self.memory = memory
        self.transcript = transcript
        self.workspace = workspace
        self.program = program
        self.editableFiles = editableFiles
        self.notesFiles = notesFiles
        self.metric = metric
        self.maximize = maximize
        self.bestScore = bestScore
        self.history = history
        self.iteration = iteration
        self.seed = seed
        self.maxDiffLines = maxDiffLines
    }
}

/// What the runtime remembers around the loop, as the next proposal is shown it: kept by proctor
/// (never the agent's own files), built from the ledger and the diffs. It never holds what the
/// evaluator said nor a sealed score.
public struct AgentMemory: Sendable {
    /// `learnings.md`: categories of change with trials, keeps, effects and a verdict.
    public var learnings: String
    /// `do_not_retry.md`: exhausted categories and the user's own list.
    public var doNotRetry: String
    /// The discarded candidates closest to the best, with their diffs.
    public var nearMisses: [NearMiss]
    /// Iterations in a row without a keep, and whether that reached `[memory] plateau_after`.
    public var iterationsWithoutKeep: Int
    public var plateau: Bool
    /// The runtime's plateau hint (nil: the prompt's own wording).
    public var plateauHint: String?
    /// The current `[[phases]]` entry.
    public var phase: PhaseNote?
    /// `proctor nudge` texts not yet delivered, oldest first.
    public var nudges: [String]
    /// Summaries of analysis runs made since the last proposal.
    public var analyses: [String]
    /// For the mutate agent: per `# mutate:` parameter, the values already tried and not kept.
    public var triedValues: [String: Set<String>]
    /// For the mutate agent: parameters whose category is exhausted (do not retry).
    public var exhausted: Set<String>
    /// Where a command or session agent finds the memory files, read-only, in its sandbox.
    public var directory: String?

    public init(learnings: String = "", doNotRetry: String = "", nearMisses: [NearMiss] = [],
                iterationsWithoutKeep: Int = 0, plateau: Bool = false, phase: PhaseNote? = nil,
                nudges: [String] = [], analyses: [String] = [], triedValues: [String: Set<String>] = [:],
                exhausted: Set<String> = [], directory: String? = nil) {
        self.learnings = learnings
        self.doNotRetry = doNotRetry
        self.nearMisses = nearMisses
        self.iterationsWithoutKeep = iterationsWithoutKeep
        self.plateau = plateau
        self.plateauHint = nil
        self.phase = phase
        self.nudges = nudges
        self.analyses = analyses
        self.triedValues = triedValues
        self.exhausted = exhausted
        self.directory = directory
    }

    /// A discarded candidate close to the best.
    public struct NearMiss: Sendable, Equatable {
        public var iteration: Int
        public var score: Double
        public var description: String
        /// The unified diff against the commit it was measured on (re-appliable).
        public var patch: String

        public init(iteration: Int, score: Double, description: String, patch: String) {
            self.iteration = iteration
            self.score = score
            self.description = description
            self.patch = patch
        }
    }

    /// The research phase the iteration is in.
    public struct PhaseNote: Sendable, Equatable {
        public var name: String
        public var strategy: String
        /// Its last iteration, nil when it lasts until the run ends.
        public var until: Int?

        public init(name: String, strategy: String, until: Int?) {
            self.name = name
            self.strategy = strategy
            self.until = until
        }
    }
}

/// One earlier iteration as the agent sees it.
public struct HistoryEntry: Sendable, Codable {
    public var iteration: Int
    public var status: String
    public var score: Double?
    public var description: String

    public init(iteration: Int, status: String, score: Double?, description: String) {
        self.iteration = iteration
        self.status = status
        self.score = score
        self.description = description
    }
}

/// One iteration of the run as the ledger recorded it, with every seed's score.
public struct MeasuredIteration: Sendable, Equatable {
    public var iteration: Int
    public var status: String
    /// The agent's own description (no reason appended).
    public var description: String
    /// The scores of the seeds that produced one, in the order they ran (empty for a crash).
    public var seedScores: [Double]
    /// The agent kind that proposed it (`search`, `mutate`, ...): a `--resume` may change agents,
    /// and only the `search` agent's own descriptions say what configuration was measured.
    public var agent: String

    /// The status of a `--parallel` candidate proposed and not yet scored.
    public static let running = "running"

    public init(iteration: Int, status: String, description: String, seedScores: [Double], agent: String) {
        self.iteration = iteration
        self.status = status
        self.description = description
        self.seedScores = seedScores
        self.agent = agent
    }
}

/// Tokens and money an agent spent on one proposal.
public struct AgentUsage: Sendable, Codable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var costUSD: Double?

    public init(promptTokens: Int, completionTokens: Int, costUSD: Double? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.costUSD = costUSD
    }
}

/// What an agent did: it has already changed the working tree; this says what and at what cost.
public struct Proposal: Sendable {
    /// One line for the ledger.
    public var description: String
    public var usage: AgentUsage?

    public init(description: String, usage: AgentUsage? = nil) {
        self.description = description
        self.usage = usage
    }
}

/// Why an agent produced no usable change.
public enum AgentError: Error, Sendable, Equatable {
    /// The proposal broke a rule (a patch touching `../` or `.git/`, a malformed answer):
    /// the iteration is `rejected`, the paths go to the audit.
    case rejected(reason: String, paths: [String])
    /// The agent itself failed (HTTP error after retries, crash, timeout): the iteration is `crash`.
    case failed(reason: String)
}

extension AgentError: CustomStringConvertible {
    /// Its reason, as a message says it (not Swift's `failed(reason: "...")`).
    public var description: String {
        switch self {
        case .rejected(let reason, _), .failed(let reason): return reason
        }
    }
}

/// Thrown by an agent with nothing left to propose (the `search` agent once every configuration
/// of its knobs was measured): the loop ends cleanly, without a row for this iteration.
public struct AgentEnded: Error, Sendable {
    public let reason: String
    public init(reason: String) { self.reason = reason }
}

/// An agent proposes one change per iteration by editing the working tree of `context.workspace`.
/// Whatever it changes is validated against the policy before anything runs.
public protocol Agent: Sendable {
    func propose(_ context: AgentContext) throws -> Proposal
    /// What `proctor run` checks before the baseline, on the files it starts from (nothing, unless
    /// the agent says otherwise): a throw refuses the run before anything was measured; what it
    /// returns are warnings, printed before the run goes on.
    func check(_ context: AgentContext) throws -> [String]
    /// The most Unicode scalars of a description the loop keeps: 300 (an agent's words, shown in
    /// every later prompt and row), unless the description is proctor's own record.
    var descriptionLimit: Int { get }
    /// True when each proposal sets the whole configuration its description names (`search`):
    /// under `--parallel`, a candidate whose best moved keeps the files it was measured with instead
    /// of a three-way merge with the best's change, which would be a mix of two configurations
    /// recorded under one's description.
    var proposesWholeConfigurations: Bool { get }
}

extension Agent {
    public func check(_ context: AgentContext) throws -> [String] { [] }
    public var proposesWholeConfigurations: Bool { false }
    public var descriptionLimit: Int { 300 }
}
