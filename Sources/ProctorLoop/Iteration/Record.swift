import Foundation
import ProctorAgents
import ProctorSandbox

extension Runner {
    /// 9. Record: the one place a verdict becomes audit lines, a ledger row and a record (the
    /// record first, each one fsynced `write`), then the state, and the session agent's reply.
    func record(_ verdict: Verdict, of iteration: Iteration) throws {
        for line in verdict.audit { audit.append(line) }
        let i = iteration.number
        let status = verdict.status
        let seconds = Date().timeIntervalSince(iteration.started)
        let measured = verdict.measured
        let last = measured?.evaluations.last
        let row = LedgerRow(iteration: i, commit: verdict.commit?.short ?? "", score: measured?.mean, sealed: verdict.sealed, status: status,
                            seconds: seconds, peakMemMB: measured?.peakMB, peakGPUMemMB: measured?.peakGPUMB, features: last?.count("features"),
                            trees: last?.count("trees"),
                            description: Runner.rowDescription(verdict.description, reason: verdict.reason?.ledgerText, status: status))
        var record = runRecord(i, status, reason: verdict.reason, description: verdict.description,
                               commit: verdict.commit?.hex, parent: iteration.best.hex, measured: measured,
                               bestBefore: iteration.bestBefore, diff: verdict.diff, usage: verdict.usage,
                               violations: verdict.violations)
        record.sealed = verdict.sealed
        record.sealedScores = verdict.sealedScores
        record.phase = iteration.shown.phase?.name
        record.nudges = iteration.shown.nudges.isEmpty ? nil : iteration.shown.nudges
        record.plateau = iteration.shown.plateau ? true : nil
        if FileManager.default.fileExists(atPath: root + "/.proctor/" + transcriptPath(i)) { record.agentLog = transcriptPath(i) }
        record.analyses = iteration.steering.map { $0.analyses.map(\.number) }.flatMap { $0.isEmpty ? nil : $0 }
        if let patch = iteration.patch, !patch.isEmpty { try? memoryStore?.savePatch(patch, iteration: i) }
        let synthesized = synthesize(&record, patch: iteration.patch)
        try ledger.append(row, record: record)
        appendHistory(record)
        // Completion order under `--parallel`: a later iteration may be recorded first.
        state.lastIteration = max(state.lastIteration, i)
        state.inProgress = nil
        state.inFlight?.removeAll { $0 == i }
        try state.save(root)
        pruneLogs(keepingFrom: i - Runner.keptLogIterations + 1)
        counts[status, default: 0] += 1
        remember(record, patch: iteration.patch, steering: iteration.steering, synthesized: synthesized)
        (agent as? SessionAgent)?.finished(iteration: i, status: status, score: measured?.mean, best: state.bestScore,
                                           reason: verdict.reason, nudges: iteration.shown.nudges)
        progress.finished(i, status: status,
                          score: measured?.mean, best: state.bestScore, seconds: seconds,
                          description: Ledger.clean(row.description))
    }
}
