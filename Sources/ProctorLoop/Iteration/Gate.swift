import Foundation

extension Iteration {
    /// 7. Gates: the candidate must beat the best by `min_improvement` on the first seed, then on
    /// the mean over all its seeds (each confirmation seed measured like the first), and on the mean
    /// over its confirmation seeds alone against the best's; one whose score no longer moves with
    /// `PROCTOR_SEED` has fixed its own seed and is rejected.
    func gate() throws -> IterationEnd? {
        guard let first = measured, case .scored(let score, _, _, _) = first.outcome else {
            preconditionFailure("gate() runs only on a scored first seed")
        }
        let state = runner.state!
        let gate = Gate(maximize: runner.config.evaluator.maximize, minImprovement: runner.config.gates.minImprovement)
        guard gate.beats(score, state.bestScore) else { return ends(.discard, reason: nil) }
        let confirmSeeds = runner.confirmSeeds(number)
        guard !confirmSeeds.isEmpty else { return try judge(first: first, confirm: nil) }
        runner.progress.line("[\(number)] \(format(score)) beats \(format(state.bestScore)) on seed \(runner.firstSeed); \(runner.confirming(number))")
        let confirm = try runner.measure(iteration: number, seeds: confirmSeeds, description: proposal.description)
        if runner.stop.requested { return .abandoned }
        return try judge(first: first, confirm: confirm)
    }

    /// The gates after the first seed beat the best: the confirmation seeds' verdict (when there are
    /// any), the mean over every seed, and the seed check. A `--parallel` slot measured the
    /// confirmation seeds already, in the same job as the first (`ParallelLoop.swift`).
    func judge(first: Measurement, confirm: Measurement?) throws -> IterationEnd? {
        let state = runner.state!
        let gate = Gate(maximize: runner.config.evaluator.maximize, minImprovement: runner.config.gates.minImprovement)
        if let confirm {
            measured = first.merged(with: confirm)
            if let moved = try inputsMoved() { return moved }
            guard case .scored = confirm.outcome else {
                return ends(confirm.status, reason: confirm.reason.map(FailureReason.confirmation))
            }
            if let over = runner.overLimits(confirm) {
                return ends(.rejected, reason: .overLimit(over), violations: [over],
                            audit: [rejection(phase: .evaluator, kind: .limit, rule: .limits, detail: over)])
            }
        }
        guard let mean = measured?.mean, gate.beats(mean, state.bestScore) else {
            return ends(.discard, reason: .meanDoesNotBeat)
        }
        // A candidate whose score no longer moves with PROCTOR_SEED, where the baseline's did, has
        // fixed its own seed: re-rolling that seed until noise looks like progress is what the gate
        // is there to stop. The same over its confirmation seeds alone: code that swaps any seed but
        // the first for one it found lucky on the first seed's visible scores (a red-team agent's
        // way past fresh seeds) scores the same on all of them.
        let scores = measured?.evaluations.map(\.score) ?? []
        let seeds = runner.seeds(number)
        for (subset, named) in [(scores, seeds), (Array(scores.dropFirst()), Array(seeds.dropFirst()))]
        where subset.count >= 2 {
            if let candidateSpread = Gate.spread(subset), candidateSpread <= 1e-12 * max(1, abs(mean)),
                let spread = state.baselineSpread, spread > 1e-12 * max(1, abs(state.baselineScore)) {
                let reason = FailureReason.ignoresSeed(seeds: named, baselineSpread: spread)
                return ends(.rejected, reason: reason, violations: [reason.ledgerText],
                            audit: [rejection(phase: .evaluator, kind: .seed, rule: .ignoresSeed, detail: reason.ledgerText)])
            }
        }
        // The first seed is the one every candidate is screened on, and the one whose score the
        // agent sees: it passed because it was lucky, or because the code was tuned to it. Only the
        // confirmation seeds, measured after the choice (and, fresh, unknown to any code), are
        // evidence, against the same evidence for the best.
        if let confirmation = runner.confirmationMean(measured), !gate.beats(confirmation, state.bestConfirmation ?? state.bestScore) {
            return ends(.discard, reason: .confirmationDoesNotBeat)
        }
        return nil
    }
}
