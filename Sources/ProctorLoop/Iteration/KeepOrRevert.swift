import Foundation
import ProctorGit
import ProctorSandbox

extension Iteration {
    /// 8. Keep: a commit on the run's branch with the description and score (the row and the
    /// state follow in `Runner.record`).
    func keep() throws -> IterationEnd {
        guard let mean = measured?.mean else { preconditionFailure("keep() runs only on a scored candidate") }
        let seeds = runner.seeds(number).map(String.init).joined(separator: ",")
        let message = """
            \(proposal.description)

            proctor-run: \(runner.state.run)
            proctor-iteration: \(number)
            proctor-score: \(runner.config.evaluator.metric)=\(format(mean)) (mean over seeds \(seeds); best before \(format(runner.state.bestScore)))
            """
        // The sealed test set scores the kept candidate's outputs before the commit, so that the
        // commit and its row stay one short step apart.
        let sealed = try runner.scoreSealed(iteration: number, in: slotEnv)
        // Ctrl-C stopped the sealed evaluator: no row (a keep without its sealed score, as a failed
        // sealed run would be, was recorded), the tree back to the best; `--resume` measures again.
        if runner.stop.requested { return .abandoned }
        if let moved = try inputsMoved() { return moved }
        var paths = changes.flatMap { [$0.path, $0.oldPath] }.filter { !$0.isEmpty }
        // The forced log: the entries since the last keep, this one's included, join the commit.
        if let log = runner.researchLog, let file = log.appendToWorkspace(keptEntry: keptLogEntry(mean: mean)), !paths.contains(file) {
            paths.append(file)
        }
        let commit = try runner.repo.commit(message: message, paths: paths)
        runner.researchLog?.committed()
        // Ran between that check and the commit (which reads the working tree): stop before the row;
        // `--resume` drops a commit the ledger does not know.
        if let sandbox = runner.sessionSandbox, sandbox.ranWhileFrozen() {
            sandbox.killEverything()
            throw LoopError(.failed, Runner.ranWhileFrozen + " (during the commit)")
        }
        runner.state.bestCommit = commit.hex
        runner.state.bestScore = mean
        runner.state.bestConfirmation = runner.confirmationMean(measured)
        guard case .verdict(var verdict) = ends(.keep, reason: nil, commit: commit) else { preconditionFailure() }
        verdict.sealed = sealed.mean
        verdict.sealedScores = runner.sealing ? sealed.scores : nil
        return .verdict(verdict)
    }

    /// The kept iteration's log entry, rendered before its record exists (from the same fields).
    private func keptLogEntry(mean: Double) -> String? {
        guard var preview = runner.memory else { return nil }
        var record = runner.runRecord(number, .keep, reason: nil, description: proposal.description, commit: nil,
                                      parent: best.hex, measured: measured, bestBefore: bestBefore, diff: stats,
                                      usage: proposal.usage, violations: [])
        record.score = mean
        preview.add(record, patch: patch)
        return ResearchLog.entry(number, memory: preview, nudges: shown.nudges)
    }

    /// 8. Revert: anything but a keep restores the tree exactly to the last kept commit (untracked
    /// files removed, links never followed; `.proctor/` and the hidden files stay).
    func revertUnlessKept(_ verdict: Verdict) throws {
        guard verdict.commit == nil else { return }
        runner.discardStashedOutputs()
        try runner.repo.loopRestore(to: best, config: runner.config, kept: runner.kept)
    }
}
