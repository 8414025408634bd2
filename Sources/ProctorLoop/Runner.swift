import Foundation
import ProctorAgents
import ProctorConfig
import ProctorGit
import ProctorSandbox

/// Options of `proctor run`.
public struct RunOptions: Sendable {
    /// Iterations to run after the baseline; nil runs until interrupted.
    public var iterations: Int?
    public var resume: Bool
    /// Wait for the experiment lock instead of failing at once.
    public var wait: Bool
    /// `--parallel`: candidates measured at once (nil: `[experiment] parallel`).
    public var parallel: Int?
    /// `--executor`: overrides `[executor] kind` (issue 14); nil keeps it.
    public var executor: ExecutorSettings.Kind? = nil
    /// `--resume --cancel-running`: a Slurm job left in flight is cancelled, not waited for.
    public var cancelRunning = false

    public init(iterations: Int?, resume: Bool, wait: Bool) {
        self.iterations = iterations
        self.resume = resume
        self.wait = wait
    }
}

/// What a finished (or interrupted) run did.
public struct RunSummary: Sendable {
    public var run: String
    public var branch: String
    public var counts: [IterationStatus: Int]
    public var baseline: Double
    public var best: Double
    public var bestCommit: String
    public var ledger: String
    public var interrupted: Bool
    /// `proctor session`: why its agent failed (exited non-zero, was killed, did not start); nil
    /// when it exited 0, ran out of its `[agent] timeout`, or the run stopped it.
    public var agentFailure: String?
}

/// The research loop: start or resume a run, then one `Iteration` after another (propose → validate →
/// measure → gate → keep or revert → record, each a named stage under `Iteration/`).
public final class Runner {
    let env: SandboxEnvironment
    let config: WorkspaceConfig
    let repo: Repository
    var agent: Agent!
    let agentName: String
    let options: RunOptions
    let progress: Progress
    let audit: AuditLog
    /// Opened (and, the first time, created with its header) only once the run has passed its start
    /// checks: a run refused at the start leaves no ledger behind.
    var ledger: Ledger!
    let root: String
    /// What a revert leaves in place: proctor's state and the hidden files (outputs are removed).
    let kept: [String]
    /// What each phase's command runs, resolved once at the start (a refusal stops the start, 125).
    let interpreters: [String: ResolvedInterpreter]
    var state: RunState!
    var pinned: PinnedCopy!
    /// `[executor] kind = "slurm"`: measurements run as Slurm jobs (Executor/SlurmMeasure.swift).
    var slurm: SlurmExecutor?
    var locks: [ExperimentLock] = []
    var counts: [IterationStatus: Int] = [:]
    /// Iterations whose logs stay on disk: each launch may write up to the preset's `stdio_limit`,
    /// so a night of iterations must not keep them all (the baseline's are always kept).
    static let keptLogIterations = 50
    /// Agent failures in a row; a broken agent must not burn the night producing crash rows.
    var agentFailures = 0
    /// The last agent failure's reason, for the message that stops the run.
    var lastAgentFailure = ""
    /// The last `historyLength` iterations as a prompt shows them (`Iteration/AgentView.swift`).
    var history: [HistoryEntry] = []
    /// Every iteration of this run, with each seed's score (the `search` agent's model input).
    var measuredThisRun: [MeasuredIteration] = []
    /// The editable files of the run's base commit, read at the first proposal after the run starts
    /// or resumes (`Iteration/AgentView.swift`): the commit does not change during a run.
    var baselineFiles: [String: String]?
    /// `--parallel`: the candidates being measured in slots while the next one is proposed, with
    /// their changes (for the duplicate check of the next proposal).
    var inFlight: [(number: Int, description: String, patch: String?)] = []
    /// What the agent's answers cost during the current proposal, rejected ones included.
    let meter = UsageMeter()
    static let maxAgentFailures = 5
    /// The research memory around the loop (`Iteration/Remember.swift`, `Memory/`).
    var memory: ResearchMemory?
    var memoryStore: MemoryStore?
    var researchLog: ResearchLog?
    /// The lines of `[memory] do_not_retry`, read once from the pinned copy.
    var userDoNotRetry: [String] = []
    /// The steering this process has handed to proposals (`Steering.Handed`).
    var steeringHanded = Steering.Handed()
    /// `[memory] synthesize = "agent"`: the model's latest learnings.md.
    var synthesizedLearnings: String?

    /// `agentKind` overrides `[agent].kind` (the `--agent` option).
    /// Session mode: the agent command that drives the loop with `proctor experiment`.
    public var sessionCommand: [String]?
    /// The agent its records name: `session` for a session's experiments (they were recorded under
    /// `[agent] kind`, and a later mutate or search run read them as its own).
    var recordedAgent: String { sessionCommand == nil ? agentName : "session" }
    var agentEnded = false
    /// Signalled when the session agent's sandbox is gone and its home removed.
    var sessionDone: DispatchSemaphore?
    /// The session agent's sandbox while it runs: frozen for each of its experiments.
    var sessionSandbox: FreezableSandbox?
    let sessionOutcome = SessionOutcome()
    /// This run's stop: its sandboxes stop, and the loop ends, when it is requested or at SIGINT/SIGTERM.
    public let stop: StopSwitch

    public init(env: SandboxEnvironment, agentKind: String? = nil, options: RunOptions, progress: Progress) throws {
        stop = try StopSwitch()
        var env = env
        env.stop = stop
        self.env = env
        self.config = env.config
        self.root = env.config.root
        self.agentName = agentKind ?? env.config.agent.kind
        self.options = options
        self.progress = progress
        repo = try Repository.workspace(root)
        // `--agent` overrides [agent].kind, whose own requirements proctor.toml's parse could not check.
        if agentKind == "command" && env.config.agent.command.isEmpty {
            throw ConfigError(file: env.config.file, line: nil, key: "agent.command",
                              message: "--agent command needs [agent] command = [...] in this file, e.g. [\"claude\", \"-p\", \"{prompt}\"]")
        }
        if agentKind == "http" && (env.config.agent.baseURL.isEmpty || env.config.agent.model.isEmpty) {
            throw ConfigError(file: env.config.file, line: nil, key: env.config.agent.baseURL.isEmpty ? "agent.base_url" : "agent.model",
                              message: "--agent http needs [agent] base_url and model in this file")
        }
        // It only acts on Slurm jobs; accepted locally, it promised a cancel nothing would do.
        if options.cancelRunning && (options.executor ?? env.config.executor.kind) != .slurm {
            throw LoopError(.refused, "--cancel-running cancels Slurm jobs a killed run left; this run measures locally (--executor slurm or [executor] kind = \"slurm\" uses Slurm)")
        }
        // Before anything runs: a command that would run another Python than the host's is refused.
        interpreters = try env.interpreters()
        audit = try AuditLog(path: root + "/.proctor/audit.jsonl")
        kept = [".proctor/"] + env.config.hiddenPrefixes
    }

    /// Seconds a keep's index entries may stay unwritten (see `Repository.defersIndexWrites`).
    static let indexWriteInterval = 5.0

    /// Runs the loop until the iteration count is reached or SIGINT/SIGTERM arrives.
    public func run() throws -> RunSummary {
        StopSignal.install()
        try ensureIgnored()
        try refuseRewritingAttributes()
        let runID = try options.resume ? RunState.loadForResume(root).run : RunID.make()
        if sessionCommand == nil {
            agent = try AgentFactory.make(kind: agentName, env: env, audit: audit, run: runID, meter: meter)
            try checkAgent()
        }
        // Sessions stay serial: one agent drives the loop through `proctor experiment`, one at a time.
        var parallel = options.parallel ?? config.experiment.parallel
        let parallelNamed = Slot.named(parallel, flag: options.parallel, config: config)
        if parallel > 1 && sessionCommand != nil {
            progress.line("warning: a session runs one experiment at a time; \(parallelNamed) is ignored")
            parallel = 1
        }
        try ExperimentLock.checkHostSettings()
        let machineSlots = Slot.machineSlots(parallel: parallel, executor: executorKind)
        if let shortfall = Slot.machineShortfall(parallel: parallel, named: parallelNamed, executor: executorKind) {
            throw LoopError(.refused, shortfall)
        }
        // The user's ignored data the slots bind, read once (`Slot.userData`).
        let slotData = parallel > 1 ? try Slot.userData(root: root, config: config, repo: repo) : nil
        try checkPlans(slotData: slotData)
        locks = try env.takeLocks(run: runID, iteration: nil, wait: options.wait, audit: audit, phase: .experiment, slots: machineSlots)
        defer { locks.removeAll() }
        // Under the workspace lock no other proctor writes the index, HEAD or a run's branch: a lock
        // file is a killed run's.
        for name in try repo.removeStaleLocks() {
            progress.line("removed .git/\(name), left by a proctor killed while it wrote it")
        }
        // Analyses a killed run had taken from the queue and not answered: this run runs them.
        AnalysisQueue(root: root).requeueOrphans()
        sweepWhatKilledRunsLeft(parallel: parallel)
        try startExecutor()
        if options.resume {
            try resume()
        } else {
            try start(runID)
        }
        // A keep's index entries reach `.git/index` every few seconds and at the end, not each time
        // (the 9 MB index of a 100,000-file workspace costs ~35 ms a write); a SIGKILL leaves the file
        // behind the branch until the next run or `--resume` rewrites it.
        repo.defersIndexWrites = true
        defer { try? repo.writeIndex() }
        // What agents may read of the runtime's memory; bound read-only into their sandboxes.
        try FileManager.default.createDirectory(atPath: root + "/.proctor/memory", withIntermediateDirectories: true)
        if let command = sessionCommand { try startSession(command) }
        // On every way out (an interrupt or an error in an iteration included), not only the end.
        defer { (agent as? SessionAgent)?.server.removeSocket() }
        // `[i/N]`: N is the last iteration this invocation runs to (a resumed run goes on from its own).
        progress.total = options.iterations.map { state.lastIteration + $0 }
        let interrupted = parallel > 1 ? try runParallel(parallel, userData: slotData ?? []) : try runSerial()
        stopSession()
        if sessionCommand != nil {
            // The session agent is gone: what it left unsubmitted (an edit it never asked to have
            // measured, one a Ctrl-C cut short) goes, as after `proctor run`'s Ctrl-C; the tree is
            // the last kept commit's (it was left half-written, and the next run refused it).
            try repo.loopRestore(to: try repo.resolve(state.bestCommit), config: config, kept: kept)
        }
        try repo.writeIndex()
        return RunSummary(run: state.run, branch: state.branch, counts: counts, baseline: state.baselineScore,
                          best: state.bestScore, bestCommit: state.bestCommit, ledger: ledger.resultsPath,
                          interrupted: interrupted, agentFailure: sessionOutcome.failure)
    }

    /// One iteration after another until the count is reached, Ctrl-C, or the agent ends (a session
    /// agent exits, a search space is exhausted);
    /// returns whether it was interrupted.
    private func runSerial() throws -> Bool {
        var done = 0
        while options.iterations.map({ done < $0 }) ?? true {
            if stop.requested { return true }
            let iteration = state.nextIteration
            let finished = try runIteration(iteration)
            try repo.writeIndex(unlessWrittenWithin: Runner.indexWriteInterval)
            if !finished { return !agentEnded || stop.requested }
            done += 1
        }
        return false
    }

    // MARK: - Start and resume

    private func start(_ runID: String) throws {
        guard let head = try repo.head() else { throw LoopError(.refused, "the workspace repository has no commit; run `proctor init` first") }
        let dirty = try repo.loopStatus(against: head, config: config)
        if !dirty.isEmpty {
            // A locked file changed in the working tree is a tamper attempt, whoever made it.
            let locked = config.files.locked.map(Glob.init)
            for path in Set(dirty.flatMap { [$0.path, $0.oldPath] }).sorted() where locked.contains(where: { $0.matches(path) }) {
                audit.append(AuditRecord(run: "start", iteration: nil, phase: .validate, kind: .tamper, decision: .rejected,
                                         path: absolute(path), rule: .locked, detail: "differs from the committed, pinned file"))
            }
            throw LoopError(.refused, "the working tree differs from HEAD (\(dirty.prefix(5).map(\.path).joined(separator: ", "))): commit or remove the changes before `proctor run`")
        }
        if let linked = config.linkedAgentFile(linkTarget: { try? repo.linkTarget(at: $0, in: head) }) {
            throw LoopError(.refused, linked.description)
        }
        if let output = try WorkspaceSteps.outputOverTheTree(config, repo: repo, head: head) { throw LoopError(.refused, output.description) }
        let pins = try pinLockedFiles(at: head)
        // The start checks passed: from here on the run writes.
        try repo.resetIndex(to: head)  // the index may hold what the user staged; keeps update it entry by entry
        // What git keeps nothing of where the agent writes (empty directories, FIFOs: no status shows
        // them, so the check above passed) goes now, as after every discard: an iteration's look
        // reports any such entry as the agent's (`Status.invisibleEntries`).
        try repo.loopRestore(to: head, config: config, kept: kept)
        try env.clearOutputs()
        discardStashedOutputs()
        ledger = try Ledger(directory: root + "/.proctor")
        let branch = "proctor/" + runID
        state = RunState(run: runID, branch: branch, baseCommit: head.hex, bestCommit: head.hex, bestScore: .nan,
                         baselineScore: .nan, seedKey: FreshSeeds.newKey(), pins: pins, lastIteration: 0, inProgress: 0)
        try state.save(root)
        try measureBaseline(at: head)
    }

    /// The command that continues this run: `session` or `run`.
    private var resumeCommand: String { sessionCommand == nil ? "run" : "session" }

    /// Iteration 0: the base commit measured on every seed, then the run's branch, the row and the
    /// memory. Run at start, and again by `--resume` when the supervisor died before the row.
    private func measureBaseline(at head: ObjectID) throws {
        let runID = state.run
        let branch = state.branch
        pinned = try materializePins(head)
        progress.line("run \(runID) on branch \(branch); measuring the baseline")
        let baseline = try measure(iteration: 0, seeds: seeds(0), description: "baseline")
        if stop.requested {
            throw LoopError(.interrupted, "interrupted while measuring the baseline of run \(runID); nothing was recorded: `proctor \(resumeCommand) --resume` measures it again")
        }
        guard case .scored(let mean, let evaluations, let seconds, let peak) = baseline.outcome else {
            throw LoopError(.failed, "the baseline did not produce a score (\(baseline.reason?.ledgerText ?? "")); see \(root)/.proctor/logs/\(runID)")
        }
        // The branch only once the baseline is scored: a baseline that fails (or a SIGKILL during it,
        // which has no chance to clean up) leaves HEAD where the user had it and no dead proctor/ branch.
        // (A resumed baseline may find it made already, by a run killed just after this line.)
        try repo.createBranch(branch, at: head, force: true)
        try repo.setHead(branch: branch)
        state.bestScore = mean
        state.baselineScore = mean
        state.baselineSpread = Gate.spread(evaluations.map(\.score))
        state.bestConfirmation = confirmationMean(baseline)
        let carried = carryAnEarlierMeasurement(head.hex, mean: mean, into: &state)
        state.lastIteration = 0
        state.inProgress = nil
        let sealed = try scoreSealed(iteration: 0)
        if stop.requested {
            throw LoopError(.interrupted, "interrupted while the sealed evaluator scored the baseline of run \(runID); nothing was recorded: `proctor \(resumeCommand) --resume` measures it again")
        }
        let row = LedgerRow(iteration: 0, commit: head.short, score: mean, sealed: sealed.mean, status: .keep, seconds: seconds,
                            peakMemMB: peak, peakGPUMemMB: baseline.peakGPUMB, features: evaluations.last?.count("features"),
                            trees: evaluations.last?.count("trees"), description: "baseline")
        var baselineRecord = runRecord(0, .keep, reason: nil, description: "baseline", commit: head.hex,
                                       parent: head.hex, measured: baseline, bestBefore: nil, diff: nil,
                                       usage: nil, violations: [])
        baselineRecord.sealed = sealed.mean
        baselineRecord.sealedScores = sealing ? sealed.scores : nil
        try ledger.append(row, record: baselineRecord)
        carried?()
        try state.save(root)
        try openMemory(baseline: baselineRecord)
        loadHistory()
        progress.line("baseline \(config.evaluator.metric) = \(format(mean)) over seeds \(seeds(0).map(String.init).joined(separator: ","))")
        warnIfTheGateIsBelowTheNoise(evaluations.map(\.score))
    }

    /// A later run's baseline never sets a best below the best that earlier runs measured of the same
    /// commit (kept by them, or their baselines), nor turns the seed check off where one of those
    /// measurements moved with the seed. The code an agent wrote can tell that it is measured as a
    /// later run's baseline (the time since it was written, which it can carry in itself; the
    /// listed seeds only baselines get) and do worse on purpose then, or ignore those seeds, so that
    /// a change doing nothing looks like a gain in the next run. Any margin for "clearly worse" let
    /// a drop below it through (one measured from this baseline's own seeds was the sandbagging
    /// code's to set: two of three seeds worse by d lower the mean by 2d/3, three deviations are
    /// 1.7d), so the better of the two always sets the best; only a drop beyond the earlier
    /// measurement's own noise is warned of and audited. A machine or packages changed since, which
    /// can lower the same commit's score honestly, is what this gets wrong: start from a new commit.
    /// (`--resume` of a run killed after its baseline's row applies it again, and says nothing more.)
    @discardableResult
    private func carryAnEarlierMeasurement(_ commit: String, mean: Double, into state: inout RunState) -> (() -> Void)? {
        let maximize = config.evaluator.maximize
        // The best of every earlier measurement, not the last: a second sandbagged baseline was the
        // last one, and carried nothing. Of the same files, not only the same commit: a kept commit
        // squashed or rebased onto main (the morning's merge) is a new commit with the same tree.
        let tree = try? repo.treeID(of: repo.resolve(commit))
        var sameTree: [String: Bool] = [commit: true]
        func holdsTheSameFiles(_ other: String) -> Bool {
            if let known = sameTree[other] { return known }
            let same = tree != nil && (try? repo.treeID(of: repo.resolve(other))) == tree
            sameTree[other] = same
            return same
        }
        let earlierRecords = Ledger.records(in: root + "/.proctor").filter { [run = state.run] in
            $0.run != run && $0.status == .keep && $0.score?.isFinite == true && $0.commit.map(holdsTheSameFiles) == true
        }
        for record in earlierRecords {
            if let spread = Gate.spread(record.scores.compactMap(\.score)), spread > (state.baselineSpread ?? 0) { state.baselineSpread = spread }
        }
        guard let earlier = earlierRecords.max(by: { maximize ? $0.score! < $1.score! : $0.score! > $1.score! }),
              let score = earlier.score else { return nil }
        let drop = maximize ? score - mean : mean - score
        guard drop > 0 else { return nil }
        state.bestScore = score
        for confirmation in earlierRecords.compactMap(confirmationMean) {
            if let current = state.bestConfirmation, maximize ? confirmation > current : confirmation < current {
                state.bestConfirmation = confirmation
            }
        }
        let margin = max(config.gates.minImprovement, 3 * (Gate.deviation(earlier.scores.compactMap(\.score)) ?? 0))
        // Said once the baseline's row is written: a baseline interrupted before it records nothing.
        return { [self, run = state.run] in
            guard drop > margin else {
                progress.line("the baseline scored \(format(mean)), below the \(format(score)) this commit scored in run \(earlier.run): this run's best starts from \(format(score))")
                return
            }
            let detail = "the baseline scored \(format(mean)), clearly below the \(format(score)) this commit (\(commit.prefix(12))) scored in run \(earlier.run), iteration \(earlier.iteration); this run's best starts from \(format(score))"
            audit.append(AuditRecord(run: run, iteration: 0, phase: .evaluator, kind: .tamper, decision: .rejected,
                                     rule: .baselineDrop, detail: detail))
            progress.line("warning: \(detail): code can tell a later run's baseline from a candidate (the time since it was written, the seeds only baselines get) and do worse on purpose, so that a change doing nothing looks like a gain. If this machine, its packages or its data changed since, start from a new commit instead")
        }
    }

    /// Loud, never silent: a `min_improvement` below the seed-to-seed standard deviation of the
    /// baseline's scores lets a change that does nothing past the gate by chance often (a red-team
    /// agent that only re-rolled its seed got three keeps in 30 iterations on the bundled workspace
    /// at 0.001 against a deviation of 0.004).
    private func warnIfTheGateIsBelowTheNoise(_ scores: [Double]) {
        guard let deviation = Gate.deviation(scores), config.gates.minImprovement < deviation else { return }
        progress.line("warning: [gates] min_improvement \(format(config.gates.minImprovement)) is below the seed-to-seed standard deviation of the baseline's \(config.evaluator.metric) (\(format(deviation)) over its \(scores.count) seeds): changes that do nothing will pass the gate by chance; about \(format(2 * deviation)) keeps such noise out of the ledger")
    }

    /// The supervisor died while measuring the baseline (nothing recorded): the same run measures it
    /// again on its base commit, if HEAD and the tree are still that commit.
    private func resumeBaseline(_ saved: RunState) throws {
        guard let base = try? repo.resolve(saved.baseCommit) else {
            throw LoopError(.refused, "cannot resolve the run's base commit \(saved.baseCommit); start a new run without --resume")
        }
        guard let head = try repo.head(), head == base else {
            throw LoopError(.refused, "HEAD moved since run \(saved.run) died measuring its baseline on \(base.short): check out \(base.short) to resume it, or start a new run without --resume")
        }
        let dirty = try repo.loopStatus(against: base, config: config)
        if !dirty.isEmpty {
            throw LoopError(.refused, "the working tree differs from \(base.short) (\(dirty.prefix(5).map(\.path).joined(separator: ", "))): commit or remove the changes before `proctor run --resume`")
        }
        // The locked files must still be the ones pinned when the run began.
        let pins = try pinLockedFiles(at: base)
        if pins != saved.pins {
            throw LoopError(.refused, "the locked files differ from those pinned when run \(saved.run) began; start a new run without --resume")
        }
        // The start checks passed: from here on the resumed run writes.
        try repo.resetIndex(to: base)
        ledger = try Ledger(directory: root + "/.proctor")
        Ledger.dropRecordWithoutRow(in: root + "/.proctor", run: saved.run, iteration: 0)
        try env.clearOutputs()
        discardStashedOutputs()
        state = saved
        if state.seedKey == nil { state.seedKey = FreshSeeds.newKey() }
        progress.line("resume: run \(saved.run) died measuring its baseline; measuring it again")
        try measureBaseline(at: base)
    }

    private func resume() throws {
        var saved = try RunState.loadForResume(root)
        if saved.seedKey == nil { saved.seedKey = FreshSeeds.newKey() }  // a state from before fresh seeds
        let rows = Ledger.rows(in: root + "/.proctor")
        let records = Ledger.records(in: root + "/.proctor")
        if saved.bestConfirmation == nil {
            // A state from before it was kept: the best's record has its confirmation seeds' scores
            // (without them the gate would fall back to a best score that counts the first seed).
            let best = records.last {
                $0.run == saved.run && $0.status == .keep && ($0.commit == saved.bestCommit || $0.iteration == 0 && saved.bestCommit == saved.baseCommit)
            }
            saved.bestConfirmation = best.flatMap(confirmationMean)
        }
        // The ledger holds every run of this workspace, oldest first, so an iteration number alone does
        // not say whose row it is: iteration `lost` has its row only if that is the ledger's last row and
        // the last record (written just before it) is this run's.
        let lastRecord = records.last
        let recorded = { (i: Int) in rows.last?.iteration == i && lastRecord?.run == saved.run && lastRecord?.iteration == i }
        // The branch is made once the baseline is scored, so a run that died in its baseline may have none.
        if saved.inProgress == 0 && !recorded(0) {
            return try resumeBaseline(saved)
        }
        guard let tip = try repo.branchTip(saved.branch) else {
            throw LoopError(.refused, "the run's branch \(saved.branch) is gone (deleted?); start a new run without --resume")
        }
        // Died after a row, before the state that follows it: the row is the truth, a kept commit
        // included. That iteration is the one being decided (`inProgress`) or, under `--parallel`,
        // one still listed in flight (a proposal recorded as rejected, a measured candidate): left
        // in the list, it was taken for unmeasured, its record cut and a crash row added on top.
        let pending = [saved.inProgress].compactMap { $0 } + (saved.inFlight ?? [])
        if let lost = rows.last?.iteration, pending.contains(lost), recorded(lost) {
            saved.lastIteration = max(saved.lastIteration, lost)
            if let record = lastRecord, record.status == .keep, record.commit == tip.hex, let score = record.score {
                saved.bestCommit = tip.hex
                saved.bestScore = score
                saved.bestConfirmation = confirmationMean(record)
                if lost == 0 {
                    saved.baselineScore = score
                    // The spread too, from the record's seeds: without it the resumed run would no
                    // longer reject a candidate that fixed its own seed (the gate's noise check).
                    let seeds = record.scores.compactMap(\.score)
                    saved.baselineSpread = Gate.spread(seeds)
                    carryAnEarlierMeasurement(tip.hex, mean: score, into: &saved)
                }
            }
            if saved.inProgress == lost { saved.inProgress = nil }
            saved.inFlight?.removeAll { $0 == lost }
        }
        // A run without a measured baseline has no best score to continue from.
        if saved.inProgress == 0 || saved.bestScore.isNaN {
            throw LoopError(.refused, "the run died while measuring its baseline; start a new run")
        }
        guard let bestBefore = try? repo.resolve(saved.bestCommit) else {
            throw LoopError(.refused, "cannot resolve the run's last kept commit \(saved.bestCommit); start a new run")
        }
        if tip.hex != saved.bestCommit {
            // Only the keep commit of the interrupted iteration (one commit on the last kept one, with
            // this run's trailers) is proctor's to drop. Anything else is the user's doing (a commit on
            // the branch, a reset): dropping it silently would lose their work, so refuse instead.
            let info = try repo.commitInfo(tip)
            let unrecordedKeep = saved.inProgress.map { lost in
                info.parents.map(\.hex) == [saved.bestCommit]
                    && info.message.contains("\nproctor-run: \(saved.run)\nproctor-iteration: \(lost)\n")
            } ?? false
            guard unrecordedKeep else {
                throw LoopError(.refused, "the run's branch \(saved.branch) moved since the run stopped (tip \(tip.short), last kept \(saved.bestCommit.prefix(12))): `git branch -f \(saved.branch) \(saved.bestCommit.prefix(12))` to continue it, or start a new run")
            }
        }
        if let current = try repo.currentBranch(), current != saved.branch, let head = try repo.head(),
            !(try repo.loopStatus(against: head, config: config)).isEmpty {
            // HEAD elsewhere with changes in the tree: the user's work, which the restore below would wipe.
            throw LoopError(.refused, "the working tree has changes on \(current), not on the run's branch \(saved.branch): commit or stash them before --resume")
        }
        // The locked files the run was pinned on, before anything is written: a state edited by hand
        // (or a base commit whose files changed) is refused, not re-saved and then failed.
        let base = try repo.resolve(saved.baseCommit)
        if try hashLockedFiles(at: base) != saved.pins {
            throw LoopError(.refused, "\(RunState.path(root)): the locked files of \(base.short) no longer match the run's pins; start a new run without --resume")
        }
        // The start checks passed: from here on the resumed run writes. The state first, as reconciled
        // with the ledger above: killed after a crash row below and before its save, the next resume
        // would find that row last, no longer the one recorded before the first death, and record
        // that iteration again (a keep's commit dropped from the branch with it).
        try saved.save(root)
        ledger = try Ledger(directory: root + "/.proctor")  // cuts torn tails first
        if let lost = saved.inProgress, !recorded(lost) {
            Ledger.dropRecordWithoutRow(in: root + "/.proctor", run: saved.run, iteration: lost)
        }
        // `--parallel`: the candidates still being measured when it died (none has a row: a row
        // leaves the list in the same state save, and one whose save was lost is out of it above).
        let unmeasured = (saved.inFlight ?? []).filter { $0 != saved.inProgress }.sorted()
        for lost in unmeasured { Ledger.dropRecordWithoutRow(in: root + "/.proctor", run: saved.run, iteration: lost) }
        if tip.hex != saved.bestCommit {
            // Crash between the keep commit and its ledger row: a commit the ledger does not know
            // is not a kept experiment. Move the branch back to the last recorded keep.
            try repo.createBranch(saved.branch, at: bestBefore, force: true)
            progress.line("resume: dropped unrecorded commit \(tip.short) from \(saved.branch)")
        }
        try repo.setHead(branch: saved.branch)
        let best = try repo.resolve(saved.bestCommit)
        try env.clearOutputs()
        discardStashedOutputs()
        try repo.loopRestore(to: best, config: config, kept: kept, everything: true)
        let lostNow = (saved.inProgress.map { recorded($0) ? [] : [$0] } ?? []) + unmeasured
        for lost in lostNow {
            let row = LedgerRow(iteration: lost, commit: "", score: nil, status: .crash, seconds: 0, peakMemMB: nil,
                                features: nil, trees: nil, description: "interrupted: the supervisor stopped mid-iteration")
            let reason = FailureReason.supervisorStopped
            try ledger.append(row, record: RunRecord(time: Date(), run: saved.run, iteration: lost, status: .crash,
                                                     reason: reason.ledgerText, agentReason: reason.agentText,
                                                     description: row.description,
                                                     commit: nil, parent: saved.bestCommit, score: nil, bestBefore: saved.bestScore,
                                                     scores: [], diff: nil, measurements: [:], limits: [:], durations: [:],
                                                     agent: recordedAgent, usage: nil, violations: []))
            // Each row's iteration leaves the state at once, as in the loop: killed between two of
            // these rows, the next resume finds only the last one ahead of the state (recorded above),
            // not every one it wrote, which it would record again.
            saved.lastIteration = max(saved.lastIteration, lost)
            if saved.inProgress == lost { saved.inProgress = nil }
            saved.inFlight?.removeAll { $0 == lost }
            try saved.save(root)
        }
        saved.inProgress = nil
        saved.inFlight = nil
        state = saved
        try state.save(root)
        pinned = try materializePins(base)
        try openMemory(baseline: nil)
        loadHistory()
        locks.forEach { $0.update(LockHolder(pid: getpid(), run: saved.run, iteration: nil, since: Date(), workspace: root)) }
        progress.line("resuming run \(saved.run) at iteration \(saved.nextIteration); best \(format(saved.bestScore))")
    }

    // MARK: - One iteration

    /// Runs iteration `i` (`Iteration.run`) to a ledger row. Returns false when it was interrupted
    /// or the agent ended (no row, tree restored).
    private func runIteration(_ i: Int) throws -> Bool {
        state.inProgress = i
        state.starting(i)
        try state.save(root)
        let iteration = try Iteration(runner: self, number: i)
        locks.forEach { $0.update(LockHolder(pid: getpid(), run: state.run, iteration: i, since: iteration.started, workspace: root)) }
        switch try iteration.run() {
        case .verdict(let verdict):
            try iteration.revertUnlessKept(verdict)
            try record(verdict, of: iteration)
            // A broken agent must not burn the night producing crash rows.
            if agentFailures >= Runner.maxAgentFailures {
                throw LoopError(.failed, "the agent failed \(agentFailures) times in a row; last: \(lastAgentFailure)")
            }
            return true
        case .abandoned:
            return try abandon(iteration.best)
        case .agentEnded:
            agentEnded = true
            state.abandon(i)
            try state.save(root)
            return false
        }
    }

    static let ranWhileFrozen = "the session agent ran (or ended) while it was frozen for its experiment"

    /// SHA-256 of each changed path as it is now ("-" when missing or not a regular file).
    func fingerprint(_ changes: [Change]) -> [String: String] {
        var result: [String: String] = [:]
        for path in changes.flatMap({ [$0.path, $0.oldPath] }) where !path.isEmpty {
            let fd = open(root + "/" + path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { result[path] = "-"; continue }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            result[path] = Pins.sha256([UInt8]((try? handle.readToEnd()) ?? Data()))
        }
        return result
    }

    /// Paths whose bytes differ from `validated`, or that changed only since it was taken.
    func movedPaths(since validated: [String: String], against best: ObjectID) throws -> [String] {
        let now = fingerprint(try repo.loopStatus(against: best, config: config, scoped: true))
        return Set(now.keys).union(validated.keys).filter { now[$0] != validated[$0] }.sorted()
    }

    /// Removes the log files of iterations before `first` (not the baseline's): `ITERATION-...` names.
    /// Never those of an iteration still measured under `--parallel`, however old: a slow candidate's
    /// evaluator output is read back from its log once it ends (fast ones recorded meanwhile had
    /// deleted it, and a scored candidate was a `crash`, "the evaluator printed nothing").
    func pruneLogs(keepingFrom first: Int) {
        guard first > 1 else { return }
        let dir = root + "/.proctor/logs/" + state.run
        let measuring = Set(state.inFlight ?? [])
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let iteration = Int(name.prefix { $0 != "-" }), iteration > 0, iteration < first,
                  !measuring.contains(iteration) else { continue }
            unlink(dir + "/" + name)
        }
    }

    /// Ctrl-C during an iteration: no row, the tree back to the last kept commit, the state consistent.
    func abandon(_ best: ObjectID) throws -> Bool {
        try repo.loopRestore(to: best, config: config, kept: kept)
        if let i = state.inProgress { state.abandon(i) }
        try state.save(root)
        progress.line("interrupted: iteration abandoned, tree restored to \(best.short)")
        return false
    }

    // MARK: - Pins

    /// SHA-256 of every locked file in `commit`, after checking the working tree holds the same bytes.
    private func pinLockedFiles(at commit: ObjectID) throws -> [String: String] {
        let pins = try hashLockedFiles(at: commit)
        for unmatched in config.lockedGlobsMatchingNothing(pinned: Set(pins.keys)) { progress.line("warning: \(unmatched)") }
        if let initial = try Pins.loadForStart(root) {
            // Files no longer locked, or newly locked, are a change of proctor.toml, not of the
            // files: said as such, and not audited as tampering.
            if let changed = WorkspaceSteps.lockedListChange(config, pinned: Set(initial.keys), locked: Set(pins.keys)) { throw changed }
            let changed = Set(initial.keys).union(pins.keys).filter { initial[$0] != pins[$0] }.sorted()
            if !changed.isEmpty {
                for path in changed {
                    audit.append(AuditRecord(run: "start", iteration: nil, phase: .validate, kind: .tamper, decision: .rejected,
                                             path: absolute(path), rule: .locked, detail: "differs from the pin taken at proctor init"))
                }
                let named = changed.prefix(10).joined(separator: ", ") + (changed.count > 10 ? " and \(changed.count - 10) more" : "")
                throw LoopError(.refused, "locked files differ from their pins taken at `proctor init`: \(named). If you changed them on purpose, run `proctor init --repin`.")
            }
        }
        return pins
    }

    /// The pins of a run: as `WorkspaceSteps.lockedHashes`; `[files].locked` must match something,
    /// and each name in it (and the `[memory] do_not_retry` file) a file.
    func hashLockedFiles(at commit: ObjectID) throws -> [String: String] {
        let pins = try WorkspaceSteps.lockedHashes(config, repo: repo, commit: commit)
        if pins.isEmpty && !config.files.locked.isEmpty {
            throw ConfigError(file: config.file, line: config.files.lines["locked"], key: "files.locked",
                              message: "expected committed files the evaluator runs from, but no file matches \(config.files.locked) (a directory is written \"data/\")")
        }
        if let missing = config.missingLockedFile(pinned: Set(pins.keys)) { throw missing }
        return pins
    }

    /// Locked files whose working-tree bytes differ from their pins, or that are missing.
    func tamperedLockedFiles() throws -> [String] {
        var tampered: [String] = []
        for (path, hash) in state.pins.sorted(by: { $0.key < $1.key }) {
            let fd = open(root + "/" + path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { tampered.append(path); continue }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            let data = (try? handle.readToEnd()) ?? Data()
            if Pins.sha256([UInt8](data)) != hash { tampered.append(path) }
        }
        let now = Set(WorkspaceSteps.lockedPaths(config))
        tampered += now.subtracting(state.pins.keys).sorted()  // a new file under a locked glob
        return tampered
    }

    private func materializePins(_ commit: ObjectID) throws -> PinnedCopy {
        let copy = PinnedCopy(directory: try PinnedCopy.makeDirectory())
        try repo.materialize(state.pins.keys.sorted(), from: commit, into: copy.directory)
        return copy
    }

    // MARK: - Helpers

    var firstSeed: UInt64 { config.experiment.seeds.first ?? 42 }

    /// Iteration `number`'s confirmation seeds: `confirm_seeds` for the baseline and, with
    /// `fresh_seeds = false`, for every candidate; otherwise as many drawn for it alone (`FreshSeeds`).
    func confirmSeeds(_ number: Int) -> [UInt64] {
        let listed = config.gates.confirmSeeds
        guard drawsFreshSeeds(number), !listed.isEmpty, let key = state.seedKey else { return listed }
        return FreshSeeds.seeds(key: key, iteration: number, count: listed.count, avoiding: [firstSeed])
    }

    /// Whether iteration `number` is confirmed on fresh seeds: every candidate, unless `fresh_seeds = false`.
    private func drawsFreshSeeds(_ number: Int) -> Bool { number > 0 && config.gates.freshSeeds }

    /// The progress line's account of a confirmation (fresh seeds are not shown before they ran).
    func confirming(_ number: Int) -> String {
        let listed = config.gates.confirmSeeds
        if drawsFreshSeeds(number) { return "confirming on \(listed.count) fresh seed\(listed.count == 1 ? "" : "s")" }
        return "confirming on " + listed.map(String.init).joined(separator: ",")
    }

    /// Every seed iteration `number` is measured on when it gets past the first.
    func seeds(_ number: Int) -> [UInt64] { [firstSeed] + confirmSeeds(number) }

    /// The mean over a measurement's confirmation seeds alone (its evaluations after the first);
    /// nil without any.
    func confirmationMean(_ measured: Measurement?) -> Double? {
        confirmationMean(ofConfirmationScores: (measured?.evaluations ?? []).dropFirst().map(\.score))
    }

    /// The same from a record (the best's, read back by `--resume`): the seeds after the first, so
    /// a first seed without a score never shifts a confirmation seed into its place.
    func confirmationMean(_ record: RunRecord) -> Double? {
        confirmationMean(ofConfirmationScores: record.scores.dropFirst().compactMap(\.score))
    }

    /// The confirmation seeds' scores averaged; nil without any.
    private func confirmationMean(ofConfirmationScores scores: [Double]) -> Double? {
        scores.isEmpty ? nil : Gate.mean(scores, maximize: config.evaluator.maximize)
    }

    var diffPolicy: DiffPolicy { config.diffPolicy }

    /// `text` on one line: line breaks of any kind, control characters and bidirectional controls
    /// become spaces; at most `limit` Unicode scalars (the ledger, LOG.md and every later prompt hold it).
    static func oneLine(_ text: String, limit: Int = 300) -> String {
        var flat = ""
        for scalar in text.unicodeScalars { flat.unicodeScalars.append(scalar.rewritesDisplay ? " " : scalar) }
        let trimmed = flat.trimmingCharacters(in: .whitespaces)
        return (trimmed.isEmpty ? "change" : trimmed).prefix(scalars: limit)
    }

    func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : root + "/" + path
    }

    /// The record of iteration `i`: runs.jsonl's `reason` is the reason's `ledgerText`, its
    /// `agentReason` the `agentText` that prompts show.
    func runRecord(_ i: Int, _ status: IterationStatus, reason: FailureReason?, description: String, commit: String?,
                        parent: String, measured: Measurement?, bestBefore: Double?, diff: DiffStats?, usage: AgentUsage?,
                        violations: [String]) -> RunRecord {
        var measurements: [String: Double] = [:]
        for evaluation in measured?.evaluations ?? [] { measurements.merge(evaluation.measurements) { _, new in new } }
        return RunRecord(time: Date(), run: state.run, iteration: i, status: status, reason: reason?.ledgerText,
                         agentReason: reason?.agentText, description: description,
                         commit: commit, parent: parent, score: measured?.mean, bestBefore: bestBefore?.isNaN == true ? nil : bestBefore,
                         scores: measured?.scores ?? [], diff: diff, measurements: measurements,
                         limits: measured?.limits ?? [:], durations: measured?.durations ?? [:], agent: recordedAgent,
                         usage: usage.map { AgentUsageRecord(promptTokens: $0.promptTokens, completionTokens: $0.completionTokens, costUSD: $0.costUSD) },
                         violations: violations, network: env.network.use(of: i),
                         interpreters: interpreters.isEmpty ? nil : interpreters,
                         peakGpuMemMB: measured?.peakGPUMB, gpuSeconds: measured?.gpuSeconds.map { ($0 * 1000).rounded() / 1000 },
                         slurmJobs: measured.flatMap { $0.jobs.isEmpty ? nil : $0.jobs })
    }

    /// A git attribute that rewrites an editable or notes file in git's view (`ident`) would let a
    /// change hide inside it: not in the diff, the line count or even the status. Refused at the
    /// start (the validation also rejects a change to such a file, or to a `.gitattributes`); so is
    /// a git setting that makes status trust what an agent can put back (`untrustworthySettings`).
    private func refuseRewritingAttributes() throws {
        let settings = try repo.untrustworthySettings()
        if !settings.isEmpty {
            let fix = settings.map { "git -C \(root) config \($0.safe)" }
            throw LoopError(.refused, "the git configuration sets \(settings.map(\.setting).joined(separator: ", ")) (yours, the system's or the repository's): git's view of a file would then not be its bytes, or would trust what an agent can put back, where proctor validates changes; for this workspace alone: \(fix.joined(separator: "; "))")
        }
        let globs = (config.files.editable + config.files.notes).map(Glob.init)
        for path in FileTree.regularFiles(under: root, reaching: globs, where: { rel in globs.contains { $0.matches(rel) } }) {
            if let attribute = try repo.rewritingAttribute(path) {
                throw LoopError(.refused, "\(path): the git attribute `\(attribute)` (from .gitattributes or .git/info/attributes) rewrites part of it in git's view, where proctor validates changes; remove it for the editable and notes files")
            }
        }
    }

    /// Each phase's sandbox, as its launches will compile it, before anything runs or is written
    /// (`SandboxEnvironment.checkPlans`; under `--parallel`, a slot's, binding `slotData`): a plan
    /// that cannot be made is the user's to fix, refused with exit 125, where the baseline's launch
    /// found it (exit 1, a run begun).
    private func checkPlans(slotData: [String]?) throws {
        var env = self.env
        if let slotData {
            // The tree the run starts from (a slot's copy of it), not what a stopped run left in the slot.
            let slot = Slot.root(root) + "/0"
            env.slot = SlotView(tree: root, outputs: slot + "/outputs", userData: slotData)
        }
        try env.checkPlans(agentCommand: sessionCommand ?? (agentName == "command" ? config.agent.command : nil))
    }

    /// What a killed proctor left, removed under the workspace lock: agent homes and session
    /// channels of processes that are gone (a home holds what the agent wrote and the
    /// `[agent.home_files]` copied in; it stayed until the next agent of that kind started), the
    /// temporary files of whole-file writes, and a serial run's view of another run's slots.
    private func sweepWhatKilledRunsLeft(parallel: Int) {
        for prefix in ["proctor-agent", "proctor-session"] { ScratchDirectory.sweep(in: ScratchDirectory.agentBase, prefix: prefix) }
        for directory in [root + "/.proctor", root + "/.proctor/memory"] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where AtomicFile.leftByDeadProcess(name) {
                var info = stat()
                if lstat(directory + "/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFREG { unlink(directory + "/" + name) }
            }
        }
        // A parallel run removes them itself when it starts (`runParallel`).
        if parallel <= 1 { FileTree.removeDirectory(Slot.root(root)) }
    }

    /// `.proctor/` and the outputs are proctor's and the experiment's, never the repository's.
    private func ensureIgnored() throws {
        let exclude = root + "/.git/info/exclude"
        let current = (try? String(contentsOfFile: exclude, encoding: .utf8)) ?? ""
        var lines = current.components(separatedBy: "\n")
        var changed = false
        for entry in ["/.proctor/"] + config.files.outputs.map({ "/" + $0 + "/" }) where !lines.contains(entry) {
            lines.append(entry)
            changed = true
        }
        if changed {
            try FileManager.default.createDirectory(atPath: root + "/.git/info", withIntermediateDirectories: true)
            try AtomicFile.write(Data(lines.filter { !$0.isEmpty }.joined(separator: "\n").appending("\n").utf8), to: exclude)
        }
    }
}

extension Dictionary {
    func mapKeys<K: Hashable>(_ transform: (Key) -> K) -> [K: Value] {
        Dictionary<K, Value>(uniqueKeysWithValues: map { (transform($0.key), $0.value) })
    }
}

func format(_ value: Double) -> String {
    value.isNaN ? "-" : String(format: "%.6g", value)
}
