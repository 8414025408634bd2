import Crypto
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
}

/// A failure that stops the run (not an iteration's status): proctor prints it and exits non-zero.
public struct RunError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Ctrl-C (SIGINT, SIGTERM) before the run had anything to continue from: `proctor run` exits 130.
public struct RunInterrupted: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The run refused to start (a dirty tree, nothing to resume, a branch that is gone, ...): bad input,
/// found before the run wrote a ledger line, made a branch or moved HEAD. `proctor run` exits 125.
public struct StartRefused: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The research loop: propose → validate the diff → experiment → locked evaluator → gates → keep or revert → record.
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
    var state: RunState!
    var pinned: PinnedCopy!
    var locks: [ExperimentLock] = []
    var counts: [IterationStatus: Int] = [:]
    /// Iterations whose logs stay on disk: each launch may write up to the preset's `stdio_limit`,
    /// so a night of iterations must not keep them all (the baseline's are always kept).
    static let keptLogIterations = 50
    /// Agent failures in a row; a broken agent must not burn the night producing crash rows.
    var agentFailures = 0
    /// What the agent's answers cost during the current proposal, rejected ones included.
    let meter = UsageMeter()
    static let maxAgentFailures = 5

    /// `agentKind` overrides `[agent].kind` (the `--agent` option).
    /// Session mode: the agent command that drives the loop with `proctor experiment`.
    public var sessionCommand: [String]?
    var sessionEnded = false
    /// Signalled when the session agent's sandbox is gone and its home removed.
    var sessionDone: DispatchSemaphore?

    public init(env: SandboxEnvironment, agentKind: String? = nil, options: RunOptions, progress: Progress) throws {
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
        audit = try AuditLog(path: root + "/.proctor/audit.jsonl")
        kept = [".proctor/"] + env.config.hiddenPrefixes
    }

    /// Runs the loop until the iteration count is reached or SIGINT/SIGTERM arrives.
    public func run() throws -> RunSummary {
        Interrupt.install()
        try ensureIgnored()
        let runID = try options.resume ? RunState.loadForResume(root).run : RunID.make()
        if sessionCommand == nil {
            agent = try AgentFactory.make(kind: agentName, env: env, audit: audit, run: runID, meter: meter)
        }
        locks = try env.takeLocks(run: runID, iteration: nil, wait: options.wait, audit: audit, phase: .experiment)
        defer { locks.removeAll() }
        if options.resume {
            try resume()
        } else {
            try start(runID)
        }
        if let command = sessionCommand { try startSession(command) }
        var interrupted = false
        var done = 0
        while options.iterations.map({ done < $0 }) ?? true {
            if Interrupt.requested { interrupted = true; break }
            let iteration = state.lastIteration + 1
            let finished = try runIteration(iteration)
            if !finished {
                interrupted = !sessionEnded || Interrupt.requested
                break
            }
            done += 1
        }
        stopSession()
        (agent as? SessionAgent)?.server.removeSocket()
        return RunSummary(run: state.run, branch: state.branch, counts: counts, baseline: state.baselineScore,
                          best: state.bestScore, bestCommit: state.bestCommit, ledger: ledger.resultsPath,
                          interrupted: interrupted)
    }

    // MARK: - Start and resume

    private func start(_ runID: String) throws {
        guard let head = try repo.head() else { throw StartRefused("the workspace repository has no commit; run `proctor init` first") }
        let dirty = try repo.loopStatus(against: head, config: config)
        if !dirty.isEmpty {
            // A locked file changed in the working tree is a tamper attempt, whoever made it.
            let locked = config.files.locked.map(Glob.init)
            for path in Set(dirty.flatMap { [$0.path, $0.oldPath] }).sorted() where locked.contains(where: { $0.matches(path) }) {
                audit.append(AuditRecord(run: "start", iteration: nil, phase: "validate", kind: "tamper", decision: "rejected",
                                         path: absolute(path), rule: "locked", detail: "differs from the committed, pinned file"))
            }
            throw StartRefused("the working tree differs from HEAD (\(dirty.prefix(5).map(\.path).joined(separator: ", "))): commit or remove the changes before `proctor run`")
        }
        let pins = try pinLockedFiles(at: head)
        // The start checks passed: from here on the run writes.
        try env.clearOutputs()
        ledger = try Ledger(directory: root + "/.proctor")
        let branch = "proctor/" + runID
        state = RunState(run: runID, branch: branch, baseCommit: head.hex, bestCommit: head.hex, bestScore: .nan,
                         baselineScore: .nan, pins: pins, lastIteration: 0, inProgress: 0)
        try state.save(root)
        pinned = try materializePins(head)
        progress.line("run \(runID) on branch \(branch); measuring the baseline")
        let baseline = try measure(iteration: 0, seeds: allSeeds, description: "baseline")
        if Interrupt.requested {
            throw RunInterrupted("interrupted while measuring the baseline of run \(runID); nothing was recorded: start a new run")
        }
        guard case .scored(let mean, let evaluations, let seconds, let peak) = baseline.outcome else {
            throw RunError("the baseline did not produce a score (\(baseline.reason)); see \(root)/.proctor/logs/\(runID)")
        }
        // The branch only once the baseline is scored: a baseline that fails (or a SIGKILL during it,
        // which has no chance to clean up) leaves HEAD where the user had it and no dead proctor/ branch.
        try repo.createBranch(branch, at: head)
        try repo.setHead(branch: branch)
        state.bestScore = mean
        state.baselineScore = mean
        state.baselineSpread = Gate.spread(evaluations.map(\.score))
        state.lastIteration = 0
        state.inProgress = nil
        let row = LedgerRow(iteration: 0, commit: head.short, score: mean, status: .keep, seconds: seconds,
                            peakMemMB: peak, features: evaluations.last?.count("features"),
                            trees: evaluations.last?.count("trees"), description: "baseline")
        try ledger.append(row, record: record(0, .keep, reason: nil, description: "baseline", commit: head.hex,
                                              parent: head.hex, measured: baseline, bestBefore: nil, diff: nil,
                                              usage: nil, violations: []))
        try state.save(root)
        progress.line("baseline \(config.evaluator.metric) = \(format(mean)) over seeds \(allSeeds.map(String.init).joined(separator: ","))")
    }

    private func resume() throws {
        var saved = try RunState.loadForResume(root)
        let rows = Ledger.rows(in: root + "/.proctor")
        // The ledger holds every run of this workspace, oldest first, so an iteration number alone does
        // not say whose row it is: iteration `lost` has its row only if that is the ledger's last row and
        // the last record (written just before it) is this run's.
        let lastRecord = Ledger.records(in: root + "/.proctor").last
        let recorded = { (i: Int) in rows.last?.iteration == i && lastRecord?.run == saved.run && lastRecord?.iteration == i }
        // The branch is made once the baseline is scored, so a run that died in its baseline has none.
        if saved.inProgress == 0 && !recorded(0) {
            throw StartRefused("the run died while measuring its baseline; start a new run")
        }
        guard let tip = try repo.branchTip(saved.branch) else {
            throw StartRefused("the run's branch \(saved.branch) is gone (deleted?); start a new run without --resume")
        }
        if let lost = saved.inProgress, recorded(lost) {
            // Died after the row, before the state: the row is the truth, a kept commit included.
            saved.lastIteration = max(saved.lastIteration, lost)
            if let record = lastRecord, record.status == .keep, record.commit == tip.hex, let score = record.score {
                saved.bestCommit = tip.hex
                saved.bestScore = score
                if lost == 0 {
                    saved.baselineScore = score
                    // The spread too, from the record's seeds: without it the resumed run would no
                    // longer reject a candidate that fixed its own seed (the gate's noise check).
                    let seeds = record.scores.compactMap(\.score)
                    saved.baselineSpread = Gate.spread(seeds)
                }
            }
            saved.inProgress = nil
        }
        // A run without a measured baseline has no best score to continue from.
        if saved.inProgress == 0 || saved.bestScore.isNaN {
            throw StartRefused("the run died while measuring its baseline; start a new run")
        }
        guard let bestBefore = try? repo.resolve(saved.bestCommit) else {
            throw StartRefused("cannot resolve the run's last kept commit \(saved.bestCommit); start a new run")
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
                throw StartRefused("the run's branch \(saved.branch) moved since the run stopped (tip \(tip.short), last kept \(saved.bestCommit.prefix(12))): `git branch -f \(saved.branch) \(saved.bestCommit.prefix(12))` to continue it, or start a new run")
            }
        }
        if let current = try repo.currentBranch(), current != saved.branch, let head = try repo.head(),
            !(try repo.loopStatus(against: head, config: config)).isEmpty {
            // HEAD elsewhere with changes in the tree: the user's work, which the restore below would wipe.
            throw StartRefused("the working tree has changes on \(current), not on the run's branch \(saved.branch): commit or stash them before --resume")
        }
        // The start checks passed: from here on the resumed run writes.
        ledger = try Ledger(directory: root + "/.proctor")  // cuts torn tails first
        if let lost = saved.inProgress, !recorded(lost) {
            Ledger.dropRecordWithoutRow(in: root + "/.proctor", run: saved.run, iteration: lost)
        }
        if tip.hex != saved.bestCommit {
            // Crash between the keep commit and its ledger row: a commit the ledger does not know
            // is not a kept experiment. Move the branch back to the last recorded keep.
            try repo.createBranch(saved.branch, at: bestBefore, force: true)
            progress.line("resume: dropped unrecorded commit \(tip.short) from \(saved.branch)")
        }
        try repo.setHead(branch: saved.branch)
        let best = try repo.resolve(saved.bestCommit)
        try env.clearOutputs()
        try repo.restore(to: best, excluding: kept)
        if let lost = saved.inProgress, !recorded(lost) {
            let row = LedgerRow(iteration: lost, commit: "", score: nil, status: .crash, seconds: 0, peakMemMB: nil,
                                features: nil, trees: nil, description: "interrupted: the supervisor stopped mid-iteration")
            try ledger.append(row, record: RunRecord(time: Date(), run: saved.run, iteration: lost, status: .crash,
                                                     reason: "supervisor stopped", description: row.description,
                                                     commit: nil, parent: saved.bestCommit, score: nil, bestBefore: saved.bestScore,
                                                     scores: [], diff: nil, measurements: [:], limits: [:], durations: [:],
                                                     agent: agentName, usage: nil, violations: []))
            saved.lastIteration = max(saved.lastIteration, lost)
        }
        saved.inProgress = nil
        state = saved
        try state.save(root)
        let base = try repo.resolve(saved.baseCommit)
        let pins = try hashLockedFiles(at: base)
        if pins != saved.pins { throw RunError("the locked files of \(saved.baseCommit) no longer match the run's pins") }
        pinned = try materializePins(base)
        locks.forEach { $0.update(LockHolder(pid: getpid(), run: saved.run, iteration: nil, since: Date(), workspace: root)) }
        progress.line("resuming run \(saved.run) at iteration \(saved.lastIteration + 1); best \(format(saved.bestScore))")
    }

    // MARK: - One iteration

    /// Runs iteration `i` to a ledger row. Returns false when it was interrupted (no row, tree restored).
    private func runIteration(_ i: Int) throws -> Bool {
        let started = Date()
        state.inProgress = i
        try state.save(root)
        locks.forEach { $0.update(LockHolder(pid: getpid(), run: state.run, iteration: i, since: started, workspace: root)) }
        let best = try repo.resolve(state.bestCommit)
        let bestBefore = state.bestScore

        func finish(_ status: IterationStatus, reason: String?, description: String, measured: Measurement? = nil,
                    commit: ObjectID? = nil, diff: DiffStats? = nil, usage: AgentUsage? = nil,
                    violations: [String] = []) throws -> Bool {
            if commit == nil { try repo.restore(to: best, excluding: kept) }
            let seconds = Date().timeIntervalSince(started)
            let last = measured?.evaluations.last
            let row = LedgerRow(iteration: i, commit: commit?.short ?? "", score: measured?.mean, status: status,
                                seconds: seconds, peakMemMB: measured?.peakMB, features: last?.measurements["features"].map { Int($0) },
                                trees: last?.measurements["trees"].map { Int($0) },
                                description: description + (reason.map { status == .keep || status == .discard ? "" : " [\($0)]" } ?? ""))
            try ledger.append(row, record: record(i, status, reason: reason, description: description, commit: commit?.hex,
                                                  parent: best.hex, measured: measured, bestBefore: bestBefore,
                                                  diff: diff, usage: usage, violations: violations))
            state.lastIteration = i
            state.inProgress = nil
            try state.save(root)
            pruneLogs(keepingFrom: i - Runner.keptLogIterations + 1)
            counts[status, default: 0] += 1
            (agent as? SessionAgent)?.finished(iteration: i, status: status, score: measured?.mean, best: state.bestScore,
                                               reason: reason)
            progress.finished(i, total: options.iterations.map { state.lastIteration - i + $0 }, status: status,
                              score: measured?.mean, best: state.bestScore, seconds: seconds,
                              description: Ledger.clean(row.description))
            return true
        }

        // 1. Propose.
        progress.phase(i, "agent", budgetMs: config.agent.timeoutMs)
        var proposal: Proposal
        _ = meter.take()
        do {
            proposal = try agent.propose(agentContext(i))
        } catch is SessionEnded {
            sessionEnded = true
            state.inProgress = nil
            try state.save(root)
            return false
        } catch let error as AgentError {
            if Interrupt.requested { return try abandon(best) }
            switch error {
            case .rejected(let reason, let paths):
                for path in paths.isEmpty ? [""] : paths {
                    audit.append(AuditRecord(run: state.run, iteration: i, phase: "agent", kind: "diff", decision: "rejected",
                                             path: path.isEmpty ? nil : absolute(path), rule: "agent-proposal", detail: reason))
                }
                return try finish(.rejected, reason: reason, description: "agent proposal rejected", usage: meter.take(),
                                  violations: [reason])
            case .failed(let reason):
                agentFailures += 1
                let finished = try finish(.crash, reason: reason, description: "agent failed", usage: meter.take())
                if agentFailures >= Runner.maxAgentFailures {
                    throw RunError("the agent failed \(agentFailures) times in a row; last: \(reason)")
                }
                return finished
            }
        }
        agentFailures = 0
        // One line, as the ledger holds it: a session agent's description spanning lines would
        // otherwise put its own trailer paragraph (`proctor-score: ...=0.999999`) in the kept
        // commit's message, a score no evaluator computed, and differ from the ledger's row.
        proposal.description = Runner.oneLine(proposal.description)
        if Interrupt.requested { return try abandon(best) }

        // 2. Locked files must still match their pins, then the diff must follow the policy.
        let tampered = try tamperedLockedFiles()
        if !tampered.isEmpty {
            for path in tampered {
                audit.append(AuditRecord(run: state.run, iteration: i, phase: "validate", kind: "tamper", decision: "rejected",
                                         path: absolute(path), rule: "locked", detail: "differs from its pin"))
            }
            return try finish(.rejected, reason: "locked file changed: \(tampered.joined(separator: ", "))",
                              description: proposal.description, usage: proposal.usage, violations: tampered.map { "\($0): tamper" })
        }
        let changes = try repo.loopStatus(against: best, config: config)
        let stats = DiffStats(files: changes.map(\.path), added: changes.reduce(0) { $0 + $1.addedLines },
                              removed: changes.reduce(0) { $0 + $1.removedLines })
        let violations = DiffValidator.validate(changes, policy: diffPolicy)
        if !violations.isEmpty {
            for violation in violations {
                audit.append(AuditRecord(run: state.run, iteration: i, phase: "validate", kind: "diff", decision: "rejected",
                                         path: absolute(violation.path), rule: violation.rule.rawValue, detail: violation.message))
            }
            return try finish(.rejected, reason: violations.map(\.description).joined(separator: "; "),
                              description: proposal.description, diff: stats, usage: proposal.usage,
                              violations: violations.map(\.description))
        }
        if changes.isEmpty {
            return try finish(.discard, reason: "no change", description: proposal.description + " (no change)",
                              diff: stats, usage: proposal.usage)
        }

        // 3-4. Experiment and locked evaluator on the first seed. A session agent keeps running
        // meanwhile: whatever it changes after asking must not be kept under this score.
        let validated = fingerprint(changes)
        func movedDuringExperiment(_ measured: Measurement) throws -> Bool? {
            // A frozen session agent that ran anyway (a timer's SIGCONT) may have shown the
            // experiment other bytes and put the validated ones back: the fingerprint cannot tell.
            if ActiveSandbox.sessionRanWhileFrozen() {
                let reason = Runner.ranWhileFrozen
                audit.append(AuditRecord(run: state.run, iteration: i, phase: "validate", kind: "tamper", decision: "rejected",
                                         rule: "session-freeze", detail: reason))
                return try finish(.rejected, reason: reason, description: proposal.description, measured: measured,
                                  diff: stats, usage: proposal.usage, violations: [reason])
            }
            let moved = try movedPaths(since: validated, against: best)
            guard !moved.isEmpty else { return nil }
            for path in moved {
                audit.append(AuditRecord(run: state.run, iteration: i, phase: "validate", kind: "tamper", decision: "rejected",
                                         path: absolute(path), rule: "experiment-input",
                                         detail: "changed while the experiment ran"))
            }
            return try finish(.rejected, reason: "changed while the experiment ran: \(moved.joined(separator: ", "))",
                              description: proposal.description, measured: measured, diff: stats, usage: proposal.usage,
                              violations: moved.map { "\($0): changed while the experiment ran" })
        }
        let first = try measure(iteration: i, seeds: [firstSeed], description: proposal.description)
        if Interrupt.requested { return try abandon(best) }
        if let finished = try movedDuringExperiment(first) { return finished }
        guard case .scored(let score, _, _, _) = first.outcome else {
            return try finish(first.status, reason: first.reason, description: proposal.description, measured: first,
                              diff: stats, usage: proposal.usage)
        }
        // 5. Limits on what the evaluator measured (not on what the agent configured).
        if let over = overLimits(first) {
            audit.append(AuditRecord(run: state.run, iteration: i, phase: "evaluator", kind: "limit", decision: "rejected",
                                     rule: "limits", detail: over))
            return try finish(.rejected, reason: over, description: proposal.description, measured: first,
                              diff: stats, usage: proposal.usage, violations: [over])
        }
        let gate = Gate(maximize: config.evaluator.maximize, minImprovement: config.gates.minImprovement)
        guard gate.beats(score, state.bestScore) else {
            return try finish(.discard, reason: nil, description: proposal.description, measured: first,
                              diff: stats, usage: proposal.usage)
        }
        // 6. Confirm on the other seeds: the mean over all seeds must still win.
        var measured = first
        if !config.gates.confirmSeeds.isEmpty {
            progress.line("[\(i)] \(format(score)) beats \(format(state.bestScore)) on seed \(firstSeed); confirming on \(config.gates.confirmSeeds.map(String.init).joined(separator: ","))")
            let confirm = try measure(iteration: i, seeds: config.gates.confirmSeeds, description: proposal.description)
            if Interrupt.requested { return try abandon(best) }
            measured = first.merged(with: confirm)
            if let finished = try movedDuringExperiment(measured) { return finished }
            guard case .scored = confirm.outcome else {
                return try finish(confirm.status, reason: "confirmation: " + confirm.reason, description: proposal.description,
                                  measured: measured, diff: stats, usage: proposal.usage)
            }
            if let over = overLimits(confirm) {
                audit.append(AuditRecord(run: state.run, iteration: i, phase: "evaluator", kind: "limit", decision: "rejected",
                                         rule: "limits", detail: over))
                return try finish(.rejected, reason: over, description: proposal.description, measured: measured,
                                  diff: stats, usage: proposal.usage, violations: [over])
            }
        }
        guard let mean = measured.mean, gate.beats(mean, state.bestScore) else {
            return try finish(.discard, reason: "mean over seeds does not beat the best", description: proposal.description,
                              measured: measured, diff: stats, usage: proposal.usage)
        }
        // A candidate whose score no longer moves with PROCTOR_SEED, where the baseline's did, has
        // fixed its own seed: re-rolling that seed until noise looks like progress is what the gate
        // is there to stop.
        let scores = measured.evaluations.map(\.score)
        if scores.count >= 2, (scores.max()! - scores.min()!) <= 1e-12 * max(1, abs(mean)),
            let spread = state.baselineSpread, spread > 1e-12 * max(1, abs(state.baselineScore)) {
            let reason = "the score ignores PROCTOR_SEED (identical over seeds \(allSeeds.map(String.init).joined(separator: ",")), the baseline's varied by \(format(spread)))"
            audit.append(AuditRecord(run: state.run, iteration: i, phase: "evaluator", kind: "seed", decision: "rejected",
                                     rule: "ignores-seed", detail: reason))
            return try finish(.rejected, reason: reason, description: proposal.description, measured: measured,
                              diff: stats, usage: proposal.usage, violations: [reason])
        }
        // 7. Keep: a commit on the run's branch, then the row, then the state.
        let seeds = allSeeds.map(String.init).joined(separator: ",")
        let message = """
            \(proposal.description)

            proctor-run: \(state.run)
            proctor-iteration: \(i)
            proctor-score: \(config.evaluator.metric)=\(format(mean)) (mean over seeds \(seeds); best before \(format(state.bestScore)))
            """
        if let finished = try movedDuringExperiment(measured) { return finished }
        let commit = try repo.commit(message: message, paths: changes.flatMap { [$0.path, $0.oldPath] }.filter { !$0.isEmpty })
        // Ran between that check and the commit (which reads the working tree): stop before the row;
        // `--resume` drops a commit the ledger does not know.
        if ActiveSandbox.sessionRanWhileFrozen() { throw RunError(Runner.ranWhileFrozen + " (during the commit)") }
        state.bestCommit = commit.hex
        state.bestScore = mean
        return try finish(.keep, reason: nil, description: proposal.description, measured: measured, commit: commit,
                          diff: stats, usage: proposal.usage)
    }

    static let ranWhileFrozen = "the session agent ran (or ended) while it was frozen for its experiment"

    /// SHA-256 of each changed path as it is now ("-" when missing or not a regular file).
    private func fingerprint(_ changes: [Change]) -> [String: String] {
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
    private func movedPaths(since validated: [String: String], against best: ObjectID) throws -> [String] {
        let now = fingerprint(try repo.loopStatus(against: best, config: config))
        return Set(now.keys).union(validated.keys).filter { now[$0] != validated[$0] }.sorted()
    }

    /// Removes the log files of iterations before `first` (not the baseline's): `ITERATION-...` names.
    private func pruneLogs(keepingFrom first: Int) {
        guard first > 1 else { return }
        let dir = root + "/.proctor/logs/" + state.run
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            guard let iteration = Int(name.prefix { $0 != "-" }), iteration > 0, iteration < first else { continue }
            unlink(dir + "/" + name)
        }
    }

    /// Ctrl-C during an iteration: no row, the tree back to the last kept commit, the state consistent.
    private func abandon(_ best: ObjectID) throws -> Bool {
        try repo.restore(to: best, excluding: kept)
        state.inProgress = nil
        try state.save(root)
        progress.line("interrupted: iteration abandoned, tree restored to \(best.short)")
        return false
    }

    // MARK: - Measuring

    /// The experiment and the evaluator for each seed, stopping at the first failure.
    func measure(iteration: Int, seeds: [UInt64], description: String) throws -> Measurement {
        var result = Measurement()
        // Once scored, the outputs are emptied (iteratively, links unfollowed): git's status walk
        // stops at 100 nested directories and the restore recurses, so a deep tree left by the
        // experiment would otherwise stop the whole run with an error, on every --resume too.
        defer { try? env.clearOutputs() }
        let logs = root + "/.proctor/logs/" + state.run
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        for seed in seeds {
            let context = AuditContext(run: state.run, iteration: iteration, config: config)
            try env.prepareOutputs(clear: true)
            progress.phase(iteration, "experiment seed \(seed)", budgetMs: config.experiment.timeoutMs)
            let log = try LogFile(path: "\(logs)/\(iteration)-\(seed)-experiment.log")
            let experiment = try env.launch(phase: .experiment, command: config.experiment.command, seed: seed,
                                            audit: audit, context: context, stdout: log.fd, stderr: log.fd)
            result.durations["experiment", default: 0] += Double(experiment.wallMs) / 1000
            result.peakBytes = max(result.peakBytes, experiment.peakMemoryBytes)
            result.limits.merge(experiment.enforcement.mapKeys { "experiment." + $0 }) { a, _ in a }
            if Interrupt.requested { result.outcome = .failed(.crash, "interrupted"); return result }
            if experiment.timedOut {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "timeout"))
                result.outcome = .failed(.timeout, "experiment: \(experiment.reason)")
                return result
            }
            if experiment.status != 0 {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "crash"))
                result.outcome = .failed(.crash, "experiment: \(experiment.reason); log \(log.path)")
                return result
            }
            // A link (or FIFO, socket) left in the outputs would be followed by the evaluator, which
            // sees the hidden data: refused before it runs, like a tampered locked file.
            let planted = try env.outputsSpecialEntries()
            if !planted.isEmpty {
                for path in planted {
                    audit.append(AuditRecord(run: state.run, iteration: iteration, phase: "evaluator", kind: "tamper",
                                             decision: "rejected", path: absolute(path), rule: "outputs",
                                             detail: "a link or special file in the outputs; the evaluator reads regular files only"))
                }
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "rejected"))
                result.outcome = .failed(.rejected, "the outputs hold links or special files: \(planted.joined(separator: ", "))")
                return result
            }
            progress.phase(iteration, "evaluator seed \(seed)", budgetMs: config.evaluator.timeoutMs)
            let out = try LogFile(path: "\(logs)/\(iteration)-\(seed)-evaluator.out")
            let err = try LogFile(path: "\(logs)/\(iteration)-\(seed)-evaluator.err")
            let evaluator = try env.launch(phase: .evaluator, command: config.evaluator.command, seed: seed,
                                           pinnedDirectory: pinned.directory, audit: audit, context: context,
                                           stdout: out.fd, stderr: err.fd)
            result.durations["evaluator", default: 0] += Double(evaluator.wallMs) / 1000
            if Interrupt.requested { result.outcome = .failed(.crash, "interrupted"); return result }
            guard evaluator.status == 0 else {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "crash"))
                result.outcome = .failed(evaluator.timedOut ? .timeout : .crash, "evaluator: \(evaluator.reason); \(err.tail())")
                return result
            }
            do {
                let evaluation = try Evaluation.parse(stdout: out.contents(), metric: config.evaluator.metric)
                result.evaluations.append(evaluation)
                result.scores.append(.init(seed: seed, score: evaluation.score, seconds: Double(experiment.wallMs) / 1000, status: "ok"))
            } catch {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "crash"))
                result.outcome = .failed(.crash, "evaluator: \(error)")
                return result
            }
        }
        let scores = result.evaluations.map(\.score)
        result.outcome = .scored(Gate.mean(scores), result.evaluations, result.durations.values.reduce(0, +), result.peakMB)
        return result
    }

    private func overLimits(_ measured: Measurement) -> String? {
        for evaluation in measured.evaluations {
            if let cap = config.limits.features, let value = evaluation.measurements["features"], value > Double(cap) {
                return "features \(Int(value)) over the limit \(cap)"
            }
            if let cap = config.limits.trees, let value = evaluation.measurements["trees"], value > Double(cap) {
                return "trees \(Int(value)) over the limit \(cap)"
            }
        }
        return nil
    }

    // MARK: - Pins

    /// SHA-256 of every locked file in `commit`, after checking the working tree holds the same bytes.
    private func pinLockedFiles(at commit: ObjectID) throws -> [String: String] {
        let pins = try hashLockedFiles(at: commit)
        if let initial = Pins.load(root), !initial.isEmpty {
            let changed = Set(initial.keys).union(pins.keys).filter { initial[$0] != pins[$0] }.sorted()
            if !changed.isEmpty {
                for path in changed {
                    audit.append(AuditRecord(run: "start", iteration: nil, phase: "validate", kind: "tamper", decision: "rejected",
                                             path: absolute(path), rule: "locked", detail: "differs from the pin taken at proctor init"))
                }
                let named = changed.prefix(10).joined(separator: ", ") + (changed.count > 10 ? " and \(changed.count - 10) more" : "")
                throw StartRefused("locked files differ from their pins taken at `proctor init`: \(named). If you changed them on purpose, run `proctor init --repin`.")
            }
        }
        return pins
    }

    /// The pins of a run: as `WorkspaceSteps.lockedHashes`, and `[files].locked` must match something.
    func hashLockedFiles(at commit: ObjectID) throws -> [String: String] {
        let pins = try WorkspaceSteps.lockedHashes(config, repo: repo, commit: commit)
        if pins.isEmpty && !config.files.locked.isEmpty {
            throw StartRefused("no file matches [files].locked \(config.files.locked); the evaluator must be locked")
        }
        return pins
    }

    /// Locked files whose working-tree bytes differ from their pins, or that are missing.
    private func tamperedLockedFiles() throws -> [String] {
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

    private var firstSeed: UInt64 { config.experiment.seeds.first ?? 42 }
    private var allSeeds: [UInt64] { [firstSeed] + config.gates.confirmSeeds }

    private var diffPolicy: DiffPolicy {
        let editable = config.files.editable.map(Glob.init)
        let notes = config.files.notes.map(Glob.init)
        // A broad glob (`**`) also matches the config, the locked and the hidden files: never editable.
        let config = self.config
        return DiffPolicy(isEditable: { path in !config.isOffLimitsToAgents(path) && editable.contains { $0.matches(path) } },
                          isNotes: { path in !config.isOffLimitsToAgents(path) && notes.contains { $0.matches(path) } },
                          maxChangedLines: config.limits.diffLines, maxFileBytes: config.limits.maxFileBytes)
    }

    /// `text` on one line: line breaks of any kind and control characters become spaces, at most 300 characters.
    static func oneLine(_ text: String) -> String {
        let flat = String(text.map { $0.isNewline || $0.unicodeScalars.contains { $0.properties.generalCategory == .control } ? " " : $0 })
        let trimmed = flat.trimmingCharacters(in: .whitespaces)
        return String((trimmed.isEmpty ? "change" : trimmed).prefix(300))
    }

    private func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : root + "/" + path
    }

    private func agentContext(_ iteration: Int) throws -> AgentContext {
        let editable = config.files.editable.map(Glob.init)
        var files: [String: String] = [:]
        var notes: [String] = []
        let noteGlobs = config.files.notes.map(Glob.init)
        // Never the hidden labels, the locked evaluator or the config, however broad the globs: these
        // files are the prompt of an http agent (sent to a remote model) and what it may rewrite.
        let listed = FileTree.regularFiles(under: root, skipping: config.files.outputs) { rel in
            !config.isOffLimitsToAgents(rel) && (editable.contains { $0.matches(rel) } || noteGlobs.contains { $0.matches(rel) })
        }
        for rel in listed {
            if editable.contains(where: { $0.matches(rel) }) {
                files[rel] = (try? String(contentsOfFile: root + "/" + rel, encoding: .utf8)) ?? ""
            }
            if noteGlobs.contains(where: { $0.matches(rel) }) { notes.append(rel) }
        }
        for pattern in config.files.notes where !pattern.contains(where: { "*?[".contains($0) }) && !notes.contains(pattern)
            && !config.isOffLimitsToAgents(pattern) {
            notes.append(pattern)
        }
        let history = Ledger.rows(in: root + "/.proctor").suffix(50).map {
            HistoryEntry(iteration: $0.iteration, status: $0.status.rawValue, score: $0.score,
                         description: SessionAgent.agentVisibleHistory($0.description))
        }
        let program = (try? String(contentsOfFile: root + "/program.md", encoding: .utf8)) ?? ""
        var seed = UInt64(iteration) &* 0x9E37_79B9_7F4A_7C15
        for byte in state.run.utf8 { seed = (seed ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return AgentContext(workspace: root, program: program, editableFiles: files, notesFiles: notes.sorted(),
                            metric: config.evaluator.metric, maximize: config.evaluator.maximize,
                            bestScore: state.bestScore, history: Array(history), iteration: iteration, seed: seed,
                            maxDiffLines: config.limits.diffLines)
    }

    private func record(_ i: Int, _ status: IterationStatus, reason: String?, description: String, commit: String?,
                        parent: String, measured: Measurement?, bestBefore: Double?, diff: DiffStats?, usage: AgentUsage?,
                        violations: [String]) -> RunRecord {
        var measurements: [String: Double] = [:]
        for evaluation in measured?.evaluations ?? [] { measurements.merge(evaluation.measurements) { _, new in new } }
        return RunRecord(time: Date(), run: state.run, iteration: i, status: status, reason: reason, description: description,
                         commit: commit, parent: parent, score: measured?.mean, bestBefore: bestBefore?.isNaN == true ? nil : bestBefore,
                         scores: measured?.scores ?? [], diff: diff, measurements: measurements,
                         limits: measured?.limits ?? [:], durations: measured?.durations ?? [:], agent: agentName,
                         usage: usage.map { AgentUsageRecord(promptTokens: $0.promptTokens, completionTokens: $0.completionTokens, costUSD: $0.costUSD) },
                         violations: violations)
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

/// Scores and costs of one candidate over one or more seeds.
struct Measurement {
    enum Outcome {
        case scored(Double, [Evaluation], Double, Int?)
        case failed(IterationStatus, String)
    }

    var outcome: Outcome = .failed(.crash, "not run")
    var evaluations: [Evaluation] = []
    var scores: [RunRecord.SeedScore] = []
    var durations: [String: Double] = [:]
    var limits: [String: String] = [:]
    var peakBytes: Int64 = 0

    var peakMB: Int? { peakBytes > 0 ? Int(peakBytes >> 20) : nil }
    var mean: Double? { evaluations.isEmpty ? nil : Gate.mean(evaluations.map(\.score)) }

    var status: IterationStatus {
        if case .failed(let status, _) = outcome { return status }
        return .discard
    }

    var reason: String {
        if case .failed(_, let reason) = outcome { return reason }
        return ""
    }

    func merged(with other: Measurement) -> Measurement {
        var merged = self
        merged.evaluations += other.evaluations
        merged.scores += other.scores
        merged.durations.merge(other.durations, uniquingKeysWith: +)
        merged.peakBytes = max(peakBytes, other.peakBytes)
        merged.outcome = other.outcome
        if case .scored = other.outcome, let mean = merged.mean {
            merged.outcome = .scored(mean, merged.evaluations, merged.durations.values.reduce(0, +), merged.peakMB)
        }
        return merged
    }
}

/// `.proctor/pins.json`, written by `proctor init`: the locked files' hashes when the workspace was made.
public enum Pins {
    public static func path(_ root: String) -> String { root + "/.proctor/pins.json" }

    public static func load(_ root: String) -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: path(root)) else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: data)
    }

    public static func save(_ pins: [String: String], root: String) throws {
        try FileManager.default.createDirectory(atPath: root + "/.proctor", withIntermediateDirectories: true)
        try AtomicFile.write(JSONLines.encoder().encode(pins), to: path(root))
    }

    public static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}

/// A log file a sandboxed command writes its output to.
final class LogFile {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw PlanError(description: "open \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    func contents() -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// The last line, for a one-line reason.
    func tail() -> String {
        let lines = contents().split(whereSeparator: \.isNewline)
        return lines.last.map { String($0.prefix(200)) } ?? "no output"
    }
}

/// SIGINT/SIGTERM: finish or abort the current iteration cleanly instead of dying mid-write.
public enum Interrupt {
    nonisolated(unsafe) static var flag: sig_atomic_t = 0

    public static var requested: Bool { flag != 0 }

    static func install() {
        let handler: @convention(c) (Int32) -> Void = { _ in
            Interrupt.flag = 1
            ActiveSandbox.stop()
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
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
