import Foundation
import ProctorAgents
import ProctorConfig
import ProctorGit
import ProctorSandbox

/// `proctor run --parallel N` (issue 13): while up to N candidates are measured, each in its own
/// `Slot` on a thread of its own, the agent proposes the next one in the working tree. Proposals,
/// validation and keep decisions stay on this thread, one at a time, in completion order:
///
/// **propose → validate** in the working tree (as serially) → the change is copied into a free
/// slot and the tree reverted → **measure** in the slot (first seed, then the confirmation seeds
/// when the first beat the best it was proposed against) → back here: a candidate whose best moved
/// meanwhile is **re-applied** on the new best (a three-way merge per file) and measured again, or
/// recorded `stale` when both changed the same lines; otherwise **gate → keep** (its files written
/// into the tree and committed, as serially) **→ record**. One candidate is proposed ahead while
/// every slot is busy.
///
/// `state.inFlight` lists the iterations being measured: a supervisor killed with N in flight
/// leaves N numbers that `--resume` records as crashes; nothing kept is lost.
extension Runner {
    /// A candidate copied out of the working tree, on its way through a slot.
    final class Candidate {
        let iteration: Iteration
        var files: [String: CandidateFile?]
        var reapplied = 0
        /// Slurm jobs of its measurements on an older best (its record lists every job it took).
        var earlierJobs: [String] = []
        init(iteration: Iteration, files: [String: CandidateFile?]) {
            self.iteration = iteration
            self.files = files
        }
    }

    /// What a slot's thread hands back: the first seed, and the confirmation seeds when it ran them.
    struct SlotResult: @unchecked Sendable {
        var slot: Int
        var first: Result<Measurement, Error>
        var confirm: Measurement?
    }

    /// Measurements finished by slot threads, taken in the order they finished.
    final class Finished: @unchecked Sendable {
        private let condition = NSCondition()
        private var results: [SlotResult] = []

        func post(_ result: SlotResult) {
            condition.lock()
            results.append(result)
            condition.signal()
            condition.unlock()
        }

        func next() -> SlotResult {
            condition.lock()
            defer { condition.unlock() }
            while results.isEmpty { condition.wait() }
            return results.removeFirst()
        }
    }

    /// A candidate measured on a best that moved is re-applied at most this often, then `stale`.
    static let maxReapplies = 3

    /// Runs the loop with `count` slots, binding `userData` (`Slot.userData`, read at the run's
    /// start) into each; returns whether it was interrupted.
    func runParallel(_ count: Int, userData: [String]) throws -> Bool {
        FileTree.removeDirectory(Slot.root(root))  // what a killed run left
        let slots = try (0..<count).map { try Slot(index: $0, of: count, runner: self, userData: userData) }
        progress.line("\(count) slots: candidates are measured \(count) at once under \(Slot.root(root))/ (CPUs \(slots.map { $0.cpus.map(String.init).joined(separator: ",") }.joined(separator: " | ")))")
        var free = slots
        var flight: [Int: Candidate] = [:]
        // Candidates ready for a slot: one re-applied on a new best (first), or one proposed ahead
        // while every slot was busy, so that a slot that finishes starts again at once.
        var waiting: [Candidate] = []
        let finished = Finished()
        var proposed = 0
        var interrupted = false
        func mayPropose() -> Bool { !interrupted && !agentEnded && !stop.requested && (options.iterations.map { proposed < $0 } ?? true) }
        /// A new proposal that passed validation (nil: none to make).
        func propose() throws -> Candidate? {
            while mayPropose() {
                proposed += 1
                switch try proposeCandidate() {
                case .measure(let candidate): return candidate
                case .recorded: continue
                case .abandoned: interrupted = true
                case .ended: agentEnded = true  // what is in flight is still measured
                }
            }
            return nil
        }
        /// Free slots get the waiting candidates, then (`proposing`) new ones.
        func fill(proposing: Bool) throws {
            while !interrupted, !stop.requested, !free.isEmpty {
                guard let candidate = waiting.isEmpty ? (proposing ? try propose() : nil) : waiting.removeFirst() else { return }
                // Proposed (or re-applied) before a keep: carried onto the new best first, or stale.
                guard try carryOver(candidate) else { continue }
                let slot = free.removeFirst()
                flight[slot.index] = candidate
                try dispatch(candidate, to: slot, finished: finished)
            }
        }
        defer {
            // Every slot thread has posted by now (the loop drains them); the copies go.
            if flight.isEmpty { FileTree.removeDirectory(Slot.root(root)) }
        }
        while true {
            try fill(proposing: true)
            if free.isEmpty && waiting.isEmpty, let candidate = try propose() { waiting.append(candidate) }
            if flight.isEmpty { break }
            let result = finished.next()
            guard let candidate = flight.removeValue(forKey: result.slot) else { continue }
            free.append(slots[result.slot])
            if stop.requested {
                // Ctrl-C: no row for what was being measured; the others drain the same way.
                interrupted = true
                forget(candidate.iteration.number)
                continue
            }
            // Decided before the freed slot takes the next candidate: were this one kept, a
            // candidate started meanwhile would have been measured on the old best (twice, then).
            if try settle(candidate, result) { waiting.insert(candidate, at: 0) }
            // As serially: a keep's index entries reach `.git/index` within a few seconds.
            try repo.writeIndex(unlessWrittenWithin: Runner.indexWriteInterval)
        }
        for candidate in waiting { forget(candidate.iteration.number) }  // interrupted before they ran
        return interrupted || stop.requested
    }

    /// A candidate proposed on an older best, carried onto the current one before it is measured;
    /// false when it does not apply (recorded `discard`, reason `stale`).
    private func carryOver(_ candidate: Candidate) throws -> Bool {
        let iteration = candidate.iteration
        guard iteration.best.hex != state.bestCommit else { return true }
        if let files = try restated(candidate) ?? reapply(candidate) {
            candidate.files = files
            return true
        }
        leaveFlight(iteration.number)
        guard case .verdict(var verdict) = staleEnd(iteration) else { return false }
        if !candidate.earlierJobs.isEmpty { verdict.measured?.jobs.insert(contentsOf: candidate.earlierJobs, at: 0) }
        try record(verdict, of: iteration)
        return false
    }

    private func staleEnd(_ iteration: Iteration) -> IterationEnd {
        iteration.ends(.discard, reason: .stale(proposedOn: iteration.best.short),
                       description: iteration.proposal.description + " (stale: the best moved and the change does not apply to it)")
    }

    private enum Proposed { case measure(Candidate), recorded, abandoned, ended }

    /// Propose and validate in the working tree; a candidate that passes is copied out and the tree
    /// reverted for the next proposal.
    private func proposeCandidate() throws -> Proposed {
        let i = state.nextIteration
        state.inFlight = (state.inFlight ?? []) + [i]
        state.starting(i)
        try state.save(root)
        let iteration = try Iteration(runner: self, number: i)
        locks.forEach { $0.update(LockHolder(pid: getpid(), run: state.run, iteration: i, since: iteration.started, workspace: root)) }
        if let end = try iteration.propose() ?? iteration.validate() ?? iteration.duplicateInFlight() {
            switch end {
            case .verdict(let verdict):
                try iteration.revertUnlessKept(verdict)
                try record(verdict, of: iteration)
                if agentFailures >= Runner.maxAgentFailures {
                    throw LoopError(.failed, "the agent failed \(agentFailures) times in a row; last: \(lastAgentFailure)")
                }
                return .recorded
            case .abandoned, .agentEnded:
                try repo.loopRestore(to: iteration.best, config: config, kept: kept)
                forget(i)
                if case .agentEnded = end { return .ended }
                return .abandoned
            }
        }
        let files = try copyOut(iteration)
        try repo.loopRestore(to: iteration.best, config: config, kept: kept)
        iteration.inSlot = true
        inFlight.append((i, iteration.proposal.description, iteration.patch))
        return .measure(Candidate(iteration: iteration, files: files))
    }

    /// The validated change's files as they are in the tree (their bytes must be the validated ones).
    private func copyOut(_ iteration: Iteration) throws -> [String: CandidateFile?] {
        var files: [String: CandidateFile?] = [:]
        for path in iteration.changes.flatMap({ [$0.path, $0.oldPath] }) where !path.isEmpty {
            let file = CandidateFile.read(absolute(path))
            let hash = file.map { Pins.sha256([UInt8]($0.bytes)) } ?? "-"
            guard hash == iteration.validated[path] else {
                throw LoopError(.failed, "\(path) changed between its validation and its copy into a slot")
            }
            files[path] = .some(file)
        }
        return files
    }

    /// Starts the candidate's measurement on a thread of the slot's own.
    private func dispatch(_ candidate: Candidate, to slot: Slot, finished: Finished) throws {
        let iteration = candidate.iteration
        try slot.prepare(best: iteration.best, files: candidate.files, repo: repo, config: config)
        iteration.slotEnv = slot.env
        discardStashedOutputs(slot.env, iteration: iteration.number)
        let job = SlotJob(runner: self, slot: slot, number: iteration.number, description: iteration.proposal.description,
                          run: state.run, best: state.bestScore,
                          confirmSeeds: confirmSeeds(iteration.number))
        Thread { job.run(into: finished) }.start()
    }

    /// What a slot's thread needs, read on the loop's thread before it starts.
    private struct SlotJob: @unchecked Sendable {
        let runner: Runner
        let slot: Slot
        let number: Int
        let description: String
        let run: String
        let best: Double
        let confirmSeeds: [UInt64]

        func run(into finished: Finished) {
            slot.pinThread()
            let config = runner.config
            var confirm: Measurement?
            let first = Result {
                try runner.measure(iteration: number, seeds: [runner.firstSeed], description: description, in: slot.env, run: run)
            }
            // The confirmation seeds follow at once when the first beat the best it was proposed against.
            if case .success(let measured) = first, case .scored(let score, _, _, _) = measured.outcome,
                runner.overLimits(measured) == nil, !confirmSeeds.isEmpty, !runner.stop.requested,
                Gate(maximize: config.evaluator.maximize, minImprovement: config.gates.minImprovement).beats(score, best) {
                runner.progress.line("[\(number)] \(format(score)) beats \(format(best)) on seed \(runner.firstSeed); \(runner.confirming(number))")
                confirm = try? runner.measure(iteration: number, seeds: confirmSeeds, description: description,
                                              in: slot.env, run: run)
            }
            finished.post(SlotResult(slot: slot.index, first: first, confirm: confirm))
        }
    }

    /// The verdict on a measured candidate, recorded; true when it goes back to its slot instead
    /// (re-applied on a best that moved while it was measured).
    private func settle(_ candidate: Candidate, _ result: SlotResult) throws -> Bool {
        let iteration = candidate.iteration
        let first = try result.first.get()
        iteration.measured = first
        // Being decided: a keep commit without its row is dropped by `--resume`.
        state.inProgress = iteration.number
        try state.save(root)
        var end: IterationEnd
        // The best moved while it was measured: a whole configuration is restated on the new best
        // (the same tree: its measurement stands and is gated against the new best).
        if case .scored = first.outcome, iteration.best.hex != state.bestCommit, let files = try restated(candidate) {
            candidate.files = files
            progress.line("[\(iteration.number)] the best moved to \(iteration.best.short) while it was measured; its configuration restated on it, its measurement stands")
        }
        if case .scored = first.outcome {
            if iteration.best.hex != state.bestCommit {
                if candidate.reapplied < Runner.maxReapplies, let files = try reapply(candidate) {
                    candidate.files = files
                    candidate.reapplied += 1
                    candidate.earlierJobs += first.jobs + (result.confirm?.jobs ?? [])
                    progress.line("[\(iteration.number)] the best moved to \(iteration.best.short) while it was measured; re-applied, measuring again")
                    state.inProgress = nil
                    try state.save(root)
                    return true
                }
                end = staleEnd(iteration)
            } else if let over = overLimits(first) {
                end = iteration.ends(.rejected, reason: .overLimit(over), violations: [over],
                                     audit: [iteration.rejection(phase: .evaluator, kind: .limit, rule: .limits, detail: over)])
            } else if let verdict = try iteration.gateMeasured(first: first, confirm: result.confirm) {
                end = verdict
            } else {
                try write(candidate.files, into: root)
                iteration.inSlot = false
                end = try iteration.keep()
            }
        } else {
            end = iteration.ends(first.status, reason: first.reason)
        }
        discardStashedOutputs(iteration.slotEnv, iteration: iteration.number)
        leaveFlight(iteration.number)
        guard case .verdict(var verdict) = end else {
            // A keep interrupted before its commit: the tree back to the best, no row.
            try repo.loopRestore(to: try repo.resolve(state.bestCommit), config: config, kept: kept)
            forget(iteration.number)
            return false
        }
        if !candidate.earlierJobs.isEmpty { verdict.measured?.jobs.insert(contentsOf: candidate.earlierJobs, at: 0) }
        try record(verdict, of: iteration)
        return false
    }

    /// For an agent that proposes whole configurations (`Agent.proposesWholeConfigurations`): the
    /// candidate's files restated on the new best, every file the best changed since the candidate's
    /// base put back as it was there, so that the tree is the one proposed (and measured, if it was);
    /// validated again and copied out as `reapply` does. Notes files stay as the best has them: no
    /// phase measures them, and the forced log's entries of the keeps since are in them. nil for
    /// other agents, or when the result is no change or breaks the diff policy.
    private func restated(_ candidate: Candidate) throws -> [String: CandidateFile?]? {
        guard agent.proposesWholeConfigurations else { return nil }
        let iteration = candidate.iteration
        let best = try repo.resolve(state.bestCommit)
        defer { try? repo.loopRestore(to: best, config: config, kept: kept) }
        // The candidate's files over the new best; what still differs from its base, beyond its own
        // files, is the best's change since: back to the base's version.
        try write(candidate.files, into: root)
        var files = candidate.files
        let policy = diffPolicy
        for change in try repo.loopStatus(against: iteration.best, config: config, scoped: true) {
            for path in [change.oldPath, change.path]
            where !path.isEmpty && files.index(forKey: path) == nil && !policy.isNotes(path) {
                let base = path == change.oldPath && change.oldMode != .absent ? try? repo.blob(at: path, in: iteration.best) : nil
                files[path] = .some(base.map { CandidateFile(bytes: Data($0), executable: change.oldMode == .executable) })
            }
        }
        return try validateOnBest(files, for: iteration, best: best)
    }

    /// The candidate's change carried onto the new best, file by file with a three-way merge (its
    /// base, the new best, the candidate), validated again in the working tree (which is at the
    /// best between proposals) and copied out; nil when the two changes touch the same lines, or
    /// the result breaks the diff policy, and for an agent that proposes whole configurations (a mix
    /// of two is neither: `restated` or `stale`).
    private func reapply(_ candidate: Candidate) throws -> [String: CandidateFile?]? {
        guard !agent.proposesWholeConfigurations else { return nil }
        let iteration = candidate.iteration
        let best = try repo.resolve(state.bestCommit)
        var merged: [String: CandidateFile?] = [:]
        for (path, file) in candidate.files {
            let base = try? repo.blob(at: path, in: iteration.best)
            let ours = try? repo.blob(at: path, in: best)
            switch (base, ours, file) {
            case (_, _, nil):
                guard ours == base else { return nil }  // removed by the candidate, changed by the best
                merged[path] = .some(nil)
            case (nil, nil, let file?):
                merged[path] = file
            case (nil, let ours?, let file?):
                guard ours == [UInt8](file.bytes) else { return nil }  // both added it, differently
                merged[path] = file
            case (_?, nil, _?):
                return nil  // removed by the best, changed by the candidate
            case (let base?, let ours?, let file?):
                guard let bytes = try Repository.mergeFile(base: base, ours: ours, theirs: [UInt8](file.bytes)) else { return nil }
                merged[path] = CandidateFile(bytes: Data(bytes), executable: file.executable)
            }
        }
        defer { try? repo.loopRestore(to: best, config: config, kept: kept) }
        return try validateOnBest(merged, for: iteration, best: best)
    }

    /// `files` written over `best` in the working tree (at `best`, or at `best` with some of `files`
    /// written already), validated as a change of `best` and copied out: the iteration then counts
    /// as proposed on `best`. nil for no change or one the diff policy refuses. The caller restores
    /// the tree.
    private func validateOnBest(_ files: [String: CandidateFile?], for iteration: Iteration, best: ObjectID) throws -> [String: CandidateFile?]? {
        try write(files, into: root)
        let changes = try repo.loopStatus(against: best, config: config, scoped: true)
        guard !changes.isEmpty, try repo.violations(changes, of: best, policy: diffPolicy).isEmpty else { return nil }
        iteration.best = best
        iteration.bestBefore = state.bestScore
        iteration.changes = changes
        iteration.stats = DiffStats(changes)
        iteration.patch = try iteration.codePatch()
        iteration.validated = fingerprint(changes)
        return try copyOut(iteration)
    }

    /// Writes a candidate's files into the working tree (at the best it was measured on).
    private func write(_ files: [String: CandidateFile?], into root: String) throws {
        for (path, file) in files.sorted(by: { $0.key < $1.key }) {
            unlink(root + "/" + path)
            guard let file else { continue }
            try FileManager.default.createDirectory(atPath: root + "/" + (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try file.write(to: root + "/" + path, mode: file.executable ? 0o755 : 0o644)
        }
    }

    /// An iteration that ends without a row (Ctrl-C): out of the state's and the prompt's lists.
    private func forget(_ number: Int) {
        state.abandon(number)
        leaveFlight(number)
        try? state.save(root)
    }

    /// Out of the prompt's list and the duplicate check: recorded, or forgotten.
    private func leaveFlight(_ number: Int) {
        inFlight.removeAll { $0.number == number }
    }
}

extension Iteration {
    /// `--parallel`: a change identical to one still being measured is not measured twice.
    func duplicateInFlight() -> IterationEnd? {
        guard let patch, let twin = runner.inFlight.first(where: { $0.patch == patch })?.number else { return nil }
        return ends(.discard, reason: .duplicate(of: twin), description: proposal.description + " (duplicate of iteration \(twin))")
    }

    /// The gates on what a slot measured: the first seed must beat the best (the slot ran the
    /// confirmation seeds only then), then `judge` as serially.
    func gateMeasured(first: Measurement, confirm: Measurement?) throws -> IterationEnd? {
        guard case .scored(let score, _, _, _) = first.outcome else { return ends(first.status, reason: first.reason) }
        let gate = Gate(maximize: runner.config.evaluator.maximize, minImprovement: runner.config.gates.minImprovement)
        guard gate.beats(score, runner.state.bestScore) else { return ends(.discard, reason: nil) }
        if !runner.config.gates.confirmSeeds.isEmpty && confirm == nil { return ends(.discard, reason: nil) }
        return try judge(first: first, confirm: confirm)
    }
}
