import Foundation
import ProctorGit
import ProctorSandbox

extension Iteration {
    /// 4-6. Experiment and locked evaluator on the first seed, then the limits on what the
    /// evaluator measured (not on what the agent configured).
    func measure() throws -> IterationEnd? {
        runner.discardStashedOutputs()
        let first = try runner.measure(iteration: number, seeds: [runner.firstSeed], description: proposal.description)
        measured = first
        if runner.stop.requested { return .abandoned }
        if let moved = try inputsMoved() { return moved }
        guard case .scored = first.outcome else { return ends(first.status, reason: first.reason) }
        if let over = runner.overLimits(first) {
            return ends(.rejected, reason: .overLimit(over), violations: [over],
                        audit: [rejection(phase: .evaluator, kind: .limit, rule: .limits, detail: over)])
        }
        return nil
    }
}

extension Runner {

    /// The experiment and the evaluator for each seed, stopping at the first failure. A `--parallel`
    /// slot passes its own environment (`Slot.env`) and the run, read once on the loop's thread.
    func measure(iteration: Int, seeds: [UInt64], description: String, in slotEnv: SandboxEnvironment? = nil,
                 run: String? = nil) throws -> Measurement {
        let env = slotEnv ?? self.env
        let run = run ?? state.run
        var result = Measurement()
        result.maximize = config.evaluator.maximize
        // Once scored, the outputs are emptied (iteratively, links unfollowed): git's status walk
        // stops at 100 nested directories and the restore recurses, so a deep tree left by the
        // experiment would otherwise stop the whole run with an error, on every --resume too.
        defer { try? env.clearOutputs() }
        let logs = root + "/.proctor/logs/" + run
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        for seed in seeds {
            let context = AuditContext(run: run, iteration: iteration, config: config)
            try env.prepareOutputs(clear: true)
            progress.phase(iteration, "experiment seed \(seed)", budgetMs: config.experiment.timeoutMs)
            let log = try LogFile(path: "\(logs)/\(iteration)-\(seed)-experiment.log")
            // The evaluator's logs are opened when it runs (no descriptor held through the
            // experiment); a Slurm job writes them itself, so they are made empty for it first.
            let outPath = "\(logs)/\(iteration)-\(seed)-evaluator.out", errPath = "\(logs)/\(iteration)-\(seed)-evaluator.err"
            if slurm != nil { for path in [outPath, errPath] { try LogFile.empty(path) } }
            // [executor] kind = "slurm": one job runs both launches below (Executor/SlurmMeasure.swift).
            let job: SlurmMeasurement?, experiment: SandboxResult
            do {
                job = try slurmJob(in: env, run: run, slot: env.slotIndex, iteration: iteration, seed: seed, context: context, into: &result,
                                       logs: (log.path, outPath, errPath))
                experiment = try job?.experiment ?? env.launch(phase: .experiment, command: config.experiment.command, seed: seed,
                                                               audit: audit, context: context, stdout: log.fd, stderr: log.fd)
            } catch let error as SandboxError where error.code == .mountLimit {
                // The run's start compiled this plan for the baseline's tree: what grew is the
                // candidate's (notes files it wrote, each hidden from the experiment where their
                // directory holds an editable file). Its doing, not the run's: rejected, the run goes on.
                result.outcome = .failed(.rejected, .violations(["the candidate's files need more sandbox mounts than the \(LaunchPlan.maxMounts) the launcher takes (a notes file beside an editable one is hidden by a mount of its own)"]))
                return result
            }
            result.durations["experiment", default: 0] += Double(experiment.wallMs) / 1000
            result.peakBytes = max(result.peakBytes, experiment.peakMemoryBytes)
            if let gpu = experiment.peakGPUMemoryBytes { result.peakGPUBytes = max(result.peakGPUBytes ?? 0, gpu) }
            if let seconds = experiment.gpuSeconds { result.gpuSeconds = (result.gpuSeconds ?? 0) + seconds }
            result.limits.merge(experiment.enforcement.mapKeys { "experiment." + $0 }) { a, _ in a }
            if stop.requested { result.outcome = .failed(.crash, .interrupted); return result }
            if experiment.timedOut {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "timeout"))
                result.outcome = .failed(.timeout, .experiment(experiment.reason))
                return result
            }
            if experiment.status != 0 {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "crash"))
                result.outcome = .failed(.crash, .experiment("\(experiment.reason); log \(log.path)"))
                return result
            }
            // A link (or FIFO, socket) left in the outputs would be followed by the evaluator, which
            // sees the hidden data: refused before it runs, like a tampered locked file.
            let planted = try env.outputsSpecialEntries()
            if !planted.isEmpty {
                for path in planted {
                    audit.append(AuditRecord(run: run, iteration: iteration, phase: .evaluator, kind: .tamper,
                                             decision: .rejected, path: absolute(path), rule: .outputs,
                                             detail: "a link or special file in the outputs; the evaluator reads regular files only"))
                }
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "rejected"))
                result.outcome = .failed(.rejected, .specialOutputs(planted))
                return result
            }
            // The job's node found what this walk did not: a directory its user could not list (an
            // experiment's chmod 0300; the walk gives the owner's bits back first). The candidate's
            // doing, rejected like a planted link; it stopped the whole run (exit 1) as a Slurm error.
            if let job, job.evaluatorResult == nil {
                let detail = "Slurm job \(job.job)'s node found a link, a special file or a directory it could not list in the outputs, and did not run the evaluator"
                audit.append(AuditRecord(run: run, iteration: iteration, phase: .evaluator, kind: .tamper, decision: .rejected,
                                         rule: .outputs, detail: detail))
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "rejected"))
                result.outcome = .failed(.rejected, .specialOutputs(config.files.outputs.map { "\($0) (as Slurm job \(job.job)'s node found it)" }))
                return result
            }
            progress.phase(iteration, "evaluator seed \(seed)", budgetMs: config.evaluator.timeoutMs)
            let out = try LogFile(path: outPath, truncate: job == nil)
            let err = try LogFile(path: errPath, truncate: job == nil)
            let evaluator = try job?.evaluator() ?? env.launch(phase: .evaluator, command: config.evaluator.command, seed: seed,
                                           pinnedDirectory: pinned.directory, audit: audit, context: context,
                                           stdout: out.fd, stderr: err.fd)
            result.durations["evaluator", default: 0] += Double(evaluator.wallMs) / 1000
            if stop.requested { result.outcome = .failed(.crash, .interrupted); return result }
            guard evaluator.status == 0 else {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "crash"))
                result.outcome = .failed(evaluator.timedOut ? .timeout : .crash, .evaluator(EvaluatorWords("\(evaluator.reason); \(err.tail())")))
                return result
            }
            // Past `stdio_limit` the launcher drops the rest of the evaluator's output: the last line
            // left is not its last line (an experiment that made it print enough chose which line
            // that was), so nothing of it is read.
            if evaluator.limitsHit.contains("stdio") {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "crash"))
                result.outcome = .failed(.crash, .evaluator(EvaluatorWords(Runner.evaluatorOverStdio)))
                return result
            }
            do {
                let evaluation = try Evaluation.parse(stdout: out.bytes(), metric: config.evaluator.metric)
                result.evaluations.append(evaluation)
                result.scores.append(.init(seed: seed, score: evaluation.score, seconds: Double(experiment.wallMs) / 1000, status: "ok"))
                // Kept aside for the sealed evaluator, which runs only if the candidate is kept.
                if sealing { try stashOutputs(seed: seed, env: env, iteration: iteration) }
            } catch {
                result.scores.append(.init(seed: seed, score: nil, seconds: Double(experiment.wallMs) / 1000, status: "crash"))
                result.outcome = .failed(.crash, .evaluator(EvaluatorWords("\(error)")))
                return result
            }
        }
        let scores = result.evaluations.map(\.score)
        result.outcome = .scored(Gate.mean(scores, maximize: config.evaluator.maximize), result.evaluations, result.durations.values.reduce(0, +), result.peakMB)
        return result
    }

    static let evaluatorOverStdio = "the evaluator's output passed the preset's stdio_limit and was cut: its last line is not known"

    func overLimits(_ measured: Measurement) -> String? {
        for evaluation in measured.evaluations {
            if let cap = config.limits.features, let over = evaluation.over("features", cap: cap) { return over }
            if let cap = config.limits.trees, let over = evaluation.over("trees", cap: cap) { return over }
        }
        return nil
    }
}

/// Scores and costs of one candidate over one or more seeds.
struct Measurement {
    enum Outcome {
        case scored(Double, [Evaluation], Double, Int?)
        case failed(IterationStatus, FailureReason)
    }

    var outcome: Outcome = .failed(.crash, .notRun)
    var evaluations: [Evaluation] = []
    var scores: [RunRecord.SeedScore] = []
    var durations: [String: Double] = [:]
    var limits: [String: String] = [:]
    var peakBytes: Int64 = 0
    /// The Slurm jobs that measured it (`[executor] kind = "slurm"`), in seed order.
    var jobs: [String] = []

    var peakMB: Int? { peakBytes > 0 ? Int(peakBytes >> 20) : nil }
    /// The experiment's peak GPU memory over the seeds (NVML); nil when it had no GPU.
    var peakGPUBytes: Int64?
    var peakGPUMB: Int? { peakGPUBytes.map { Int($0 >> 20) } }
    /// The experiment's GPU time over the seeds (GPU-seconds of full SM use); nil without it.
    var gpuSeconds: Double?
    /// The direction, for the mean of scores at both ends of the scale.
    var maximize = true
    var mean: Double? { evaluations.isEmpty ? nil : Gate.mean(evaluations.map(\.score), maximize: maximize) }

    var status: IterationStatus {
        if case .failed(let status, _) = outcome { return status }
        return .discard
    }

    /// Why it was not scored; nil once scored.
    var reason: FailureReason? {
        if case .failed(_, let reason) = outcome { return reason }
        return nil
    }

    func merged(with other: Measurement) -> Measurement {
        var merged = self
        merged.evaluations += other.evaluations
        merged.scores += other.scores
        merged.jobs += other.jobs
        merged.durations.merge(other.durations, uniquingKeysWith: +)
        merged.peakBytes = max(peakBytes, other.peakBytes)
        if let gpu = other.peakGPUBytes { merged.peakGPUBytes = max(peakGPUBytes ?? 0, gpu) }
        if let seconds = other.gpuSeconds { merged.gpuSeconds = (gpuSeconds ?? 0) + seconds }
        merged.outcome = other.outcome
        if case .scored = other.outcome, let mean = merged.mean {
            merged.outcome = .scored(mean, merged.evaluations, merged.durations.values.reduce(0, +), merged.peakMB)
        }
        return merged
    }
}
