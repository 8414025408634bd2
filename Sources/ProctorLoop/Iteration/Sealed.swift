import Foundation
import ProctorGit
import ProctorSandbox

/// The sealed test set: a second locked evaluator (`[evaluator] sealed_command`) over a second
/// hidden set (`[files] sealed`), run only on kept commits and the baseline. Every iteration's
/// validation score is the agent's feedback, so over hundreds of iterations the loop fits that
/// holdout; the sealed score is never fed back (not in prompts, verdicts, memory or any log a
/// sandbox can read) and tells how much of the progress holds out.
///
/// The sealed evaluator scores the same artifacts as the validation evaluator: each seed's
/// outputs wait in `.proctor/sealed-outputs/<seed>/` (invisible to every sandbox) until the gates
/// decide, then are put back one seed at a time for the sealed evaluator, and removed.
extension Runner {
    var sealing: Bool { !config.evaluator.sealedCommand.isEmpty }

    /// Where a measurement's outputs wait, each seed's at `<seed>/<output>`: `.proctor/sealed-outputs`
    /// in a serial run; under `--parallel`, `.proctor/slots/sealed/<iteration>`, apart from every
    /// slot, so that the slot measures its next candidate while this one is decided.
    private func sealedStash(_ env: SandboxEnvironment, iteration: Int) -> String {
        env.slot == nil ? root + "/.proctor/sealed-outputs" : Slot.root(root) + "/sealed/\(iteration)"
    }

    /// Moves the outputs just scored aside for a possible sealed evaluation (a rename, not a copy).
    func stashOutputs(seed: UInt64, env: SandboxEnvironment, iteration: Int) throws {
        let dir = sealedStash(env, iteration: iteration) + "/\(seed)"
        FileTree.removeDirectory(dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for output in config.files.outputs {
            let path = env.outputsBase + "/" + output
            let stashed = dir + "/" + output
            try FileManager.default.createDirectory(atPath: (stashed as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard rename(path, stashed) == 0 else {
                let failure = errno
                throw LoopError(.io, "sealed test set: cannot move \(path) aside (\(String(cString: strerror(failure)))); the outputs must lie on the workspace's file system", errno: failure)
            }
        }
        try env.prepareOutputs(clear: true)
    }

    /// Drops what `stashOutputs` kept (a candidate that was not kept; a start or resume after a crash).
    func discardStashedOutputs(_ slotEnv: SandboxEnvironment? = nil, iteration: Int = 0) {
        FileTree.removeDirectory(sealedStash(slotEnv ?? env, iteration: iteration))
    }

    /// The sealed evaluator on each stashed seed's outputs; nil when the set is not configured or
    /// it could not score (the reason goes to the progress line and the record, never to an agent).
    /// Serially the outputs are put back in place for it; a `--parallel` candidate's are bound from
    /// the stash itself (`SlotView`), while its slot measures the next one.
    func scoreSealed(iteration: Int, in slotEnv: SandboxEnvironment? = nil) throws -> (mean: Double?, scores: [RunRecord.SeedScore]) {
        guard sealing else { return (nil, []) }
        let measured = slotEnv ?? self.env
        let sealedStash = sealedStash(measured, iteration: iteration)
        defer {
            discardStashedOutputs(measured, iteration: iteration)
            if measured.slot == nil { try? env.clearOutputs() }
        }
        let view = config.sealedEvaluatorView
        let logs = root + "/.proctor/logs/" + state.run
        var scores: [RunRecord.SeedScore] = []
        let seeds = ((try? FileManager.default.contentsOfDirectory(atPath: sealedStash)) ?? []).compactMap(UInt64.init).sorted()
        for seed in seeds {
            var env = self.env
            if measured.slot == nil {
                // The seed's outputs back in place, exactly as its validation evaluator saw them.
                try env.clearOutputs()
                for output in config.files.outputs {
                    let path = root + "/" + output
                    rmdir(path)
                    guard rename(sealedStash + "/\(seed)/" + output, path) == 0 else {
                        throw LoopError.io(errno, "sealed test set: cannot put back \(path)")
                    }
                }
            } else {
                env.slot = SlotView(tree: sealedStash, outputs: sealedStash + "/\(seed)", userData: [])
            }
            progress.phase(iteration, "sealed evaluator seed \(seed)", budgetMs: config.evaluator.timeoutMs)
            let out = try LogFile(path: "\(logs)/\(iteration)-\(seed)-sealed.out")
            let err = try LogFile(path: "\(logs)/\(iteration)-\(seed)-sealed.err")
            let context = AuditContext(run: state.run, iteration: iteration, config: config)
            let result = try env.launch(phase: .evaluator, command: view.evaluator.command, seed: seed,
                                        pinnedDirectory: pinned.directory, audit: audit, context: context,
                                        stdout: out.fd, stderr: err.fd, adjust: { $0.config = view })
            let seconds = Double(result.wallMs) / 1000
            // Cut at stdio_limit, its last line is not known (`Runner.evaluatorOverStdio`).
            guard result.status == 0, !result.limitsHit.contains("stdio"),
                let evaluation = try? Evaluation.parse(stdout: out.bytes(), metric: config.evaluator.metric)
            else {
                scores.append(.init(seed: seed, score: nil, seconds: seconds, status: result.status == 0 ? "crash" : (result.timedOut ? "timeout" : "crash")))
                progress.line("[\(iteration)] the sealed evaluator could not score seed \(seed); see \(err.path)")
                return (nil, scores)
            }
            scores.append(.init(seed: seed, score: evaluation.score, seconds: seconds, status: "ok"))
        }
        let values = scores.compactMap(\.score)
        return (values.isEmpty ? nil : Gate.mean(values, maximize: config.evaluator.maximize), scores)
    }
}
