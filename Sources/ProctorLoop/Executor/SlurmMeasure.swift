import Foundation
import ProctorConfig
import ProctorSandbox

/// The loop's side of `[executor] kind = "slurm"` (issue 14): the start checks once the locks are
/// held, and one job per seed in place of the experiment's and the evaluator's launches.
extension Runner {
    /// The executor this run uses: `--executor`, else `[executor] kind`.
    var executorKind: ExecutorSettings.Kind { options.executor ?? config.executor.kind }

    /// At start (and `--resume`), under the workspace lock: Slurm's checks, a job a killed
    /// supervisor left in flight waited for or cancelled. Nothing for a local run.
    func startExecutor() throws {
        guard executorKind == .slurm else {
            // A job a killed Slurm run left would go on writing into this workspace's outputs beside
            // the local experiment (its score was credited to a local candidate): settled by Slurm first.
            if let record = SlurmExecutor.inFlightRecords(root: root).first {
                throw SandboxError(.slurmRequirement, "a Slurm job a killed run left may still be running (.proctor/slurm/\(record)) and would write into this workspace beside a local experiment: run once with --executor slurm, which waits for it (--cancel-running cancels it), or remove that file if its cluster is gone")
            }
            return
        }
        do {
            slurm = try SlurmExecutor.start(env: env, slot: 0, cancelRunning: options.cancelRunning, stop: stop,
                                            say: { [progress] in progress.line($0) })
        } catch where stop.requested {
            // Ctrl-C during the probe or the wait for a job left in flight: an interrupt (130), not a refusal.
            throw LoopError(.interrupted, "\(error); nothing was recorded")
        }
    }

    /// With Slurm: the seed's experiment and evaluator as one job, whose results stand in for the
    /// two launches `measure` makes (nil: launch them here). Its job id joins the measurement.
    /// `env` is the launches' environment (a `--parallel` slot's has its own view), `slot` names
    /// the job (`proctor-<workspace id>-<slot>`) and its in-flight record.
    func slurmJob(in env: SandboxEnvironment, run: String, slot: Int = 0, iteration: Int, seed: UInt64,
                  context: AuditContext, into result: inout Measurement,
                  logs: (experiment: String, evaluatorOut: String, evaluatorErr: String)) throws -> SlurmMeasurement? {
        guard let slurm = slurm?.forSlot(slot) else { return nil }
        let job = try slurm.measure(env: env, run: run, iteration: iteration, seed: seed,
                                    pinnedDirectory: pinned.directory, logs: logs, audit: audit, context: context,
                                    stop: stop, say: { [progress] in progress.line($0) })
        result.jobs.append(job.job)
        return job
    }
}

extension Reports {
    /// `proctor status`: the run's Slurm jobs and their states, one line each (none for a local run).
    static func slurmJobs(root: String, run: String) -> [String] {
        let jobs = SlurmExecutor.jobs(root: root, run: run)
        guard !jobs.isEmpty else { return [] }
        return ["slurm jobs: \(jobs.count)"] + jobs.map { job, state in
            "  job \(job.job): iteration \(job.iteration) seed \(job.seed): \(state)"
        }
    }
}
