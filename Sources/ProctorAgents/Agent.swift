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
    /// Seed for agents that randomise (the built-in `mutate` agent).
    public var seed: UInt64
    /// Cap on changed lines in editable files (`[limits].diff_lines`).
    public var maxDiffLines: Int

    public init(
        workspace: String, program: String, editableFiles: [String: String], notesFiles: [String],
        metric: String, maximize: Bool, bestScore: Double?, history: [HistoryEntry], iteration: Int,
        seed: UInt64, maxDiffLines: Int
    ) {
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

/// An agent proposes one change per iteration by editing the working tree of `context.workspace`.
/// Whatever it changes is validated against the policy before anything runs.
public protocol Agent: Sendable {
    func propose(_ context: AgentContext) throws -> Proposal
}
