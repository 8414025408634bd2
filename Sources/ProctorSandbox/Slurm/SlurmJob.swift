import Foundation
import ProctorConfig

/// One measurement's results as its Slurm job left them.
public struct SlurmMeasurement: Sendable {
    public var job: String
    public var experiment: SandboxResult
    /// The evaluator's, or nil when it did not run (the experiment failed or left a link or
    /// special file in the outputs, as the supervisor finds too).
    public var evaluatorResult: SandboxResult?

    /// The evaluator's result, where the loop would have launched it.
    public func evaluator() throws -> SandboxResult {
        guard let evaluatorResult else {
            throw SandboxError(.slurm, "Slurm job \(job) did not run the evaluator (its outputs held a link or special file)")
        }
        return evaluatorResult
    }
}

extension SlurmExecutor {
    /// One seed's experiment and evaluator as one job: the plans compiled here as `launch` would,
    /// the pinned copy put where the node sees it, the job recorded in flight, submitted, waited
    /// for (a stop cancels it), and its launches' reports read back as a local launch's. The
    /// launches append their output to the run's log files `logs` (as `SlurmJobScript.Launch`).
    public func measure(env: SandboxEnvironment, run: String, iteration: Int, seed: UInt64, pinnedDirectory: String,
                        logs: (experiment: String, evaluatorOut: String, evaluatorErr: String),
                        audit: AuditLog?, context: AuditContext, stop: StopSwitch?,
                        say: (String) -> Void) throws -> SlurmMeasurement {
        let config = env.config
        let directory = try Self.scratch(in: stateDirectory, prefix: "job-\(iteration)-\(seed)")
        let pinned = directory + "/pinned"
        try FileManager.default.copyItem(atPath: pinnedDirectory, toPath: pinned)
        let experimentPlan = try env.compilePlan(phase: .experiment, command: config.experiment.command, seed: seed)
        try env.prepareOutputs(clear: false)
        let evaluatorPlan = try env.compilePlan(phase: .evaluator, command: config.evaluator.command, seed: seed,
                                                pinnedDirectory: pinned)
        let script = try SlurmJobScript.text(
            launcher: launcher.helper, directory: directory,
            experiment: .init(plan: experimentPlan, stdout: logs.experiment, stderr: logs.experiment),
            evaluator: .init(plan: evaluatorPlan, stdout: logs.evaluatorOut, stderr: logs.evaluatorErr),
            // Where this launch's outputs are: a slot's own under `--parallel` (the working tree's
            // were checked, so a link a slot's experiment left was followed by its evaluator).
            outputs: config.files.outputs.map { env.outputsBase + "/" + $0 })
        try Data(script.utf8).write(to: URL(fileURLWithPath: directory + "/job.sh"))

        var inFlight = InFlight(run: run, iteration: iteration, seed: seed, token: UUID().uuidString, job: nil, directory: directory)
        try recordInFlight(inFlight)
        let slurmLog = (logs.experiment as NSString).deletingLastPathComponent + "/\(iteration)-\(seed)-slurm-%j.log"
        let id = try cli.submit(script: directory + "/job.sh",
                                options: jobOptions(config, token: inFlight.token, directory: directory, output: slurmLog))
        inFlight.job = id
        try recordInFlight(inFlight)
        appendJobEvent(JobEvent(run: run, iteration: iteration, seed: seed, job: id, event: "submitted"))
        say("slurm: job \(id) (\(jobName)) submitted for iteration \(iteration) seed \(seed)")
        let submitted = Date()
        let end = wait(for: id, stop: stop)
        appendJobEvent(JobEvent(run: run, iteration: iteration, seed: seed, job: id, event: "ended", state: end.description))
        let result = try collect(job: id, end: end, directory: directory, since: submitted,
                                 plans: (experimentPlan, evaluatorPlan), audit: audit, context: context)
        // A job still listed after its cancel stays recorded: the next start waits for it.
        if end.ended {
            try recordInFlight(nil)
            FileTree.removeDirectory(directory)
        }
        return result
    }

    /// The job's `sbatch` options: its name and lock, its budgets, where Slurm's own output goes.
    func jobOptions(_ config: WorkspaceConfig, token: String, directory: String, output: String) -> [String] {
        var options = common()
        options += ["--job-name=" + jobName, "--dependency=singleton", "--comment=" + token,
                    "--chdir=" + directory, "--output=" + Self.outputPattern(output)]
        options.append("--time=" + Self.timeLimit(config))
        if let memory = Self.memoryMiB(config) { options.append("--mem=\(memory)M") }
        options.append("--cpus-per-task=\(settings.cpusPerTask)")
        if let gpus = Self.gpus(config) { options.append("--gres=gpu:\(gpus)") }
        return options
    }

    /// `--output`'s pattern for `path`: every `%` of its directories doubled (a workspace named
    /// `a%j` would get the job id in its name), the file name's `%j` kept for the job id.
    static func outputPattern(_ path: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        return directory.replacingOccurrences(of: "%", with: "%%") + "/"
            + name.replacingOccurrences(of: "%", with: "%%").replacingOccurrences(of: "%%j", with: "%j")
    }

    /// `--time`: both timeouts, both graces and the margin, as `minutes:seconds`.
    static func timeLimit(_ config: WorkspaceConfig) -> String {
        let ms = config.experiment.timeoutMs + config.evaluator.timeoutMs + config.executor.timeMarginMs
        let seconds = (ms + 999) / 1000
        return "\(seconds / 60):" + String(format: "%02d", seconds % 60)
    }

    /// `--mem`: the larger of the two phases' memory budgets and 512 MiB for the launcher and the
    /// shell; nil when a phase has none (the cluster's default then applies).
    static func memoryMiB(_ config: WorkspaceConfig) -> Int64? {
        guard let experiment = config.experiment.memoryBytes, let evaluator = config.evaluator.memoryBytes else { return nil }
        return (max(experiment, evaluator) >> 20) + 512
    }

    /// `--gres=gpu:N`: the larger of the two phases' GPU counts; nil for none.
    static func gpus(_ config: WorkspaceConfig) -> Int? {
        func count(_ request: GPURequest) -> Int { if case .count(let n) = request { return n } else { return 0 } }
        let n = max(count(config.experiment.gpus), count(config.evaluator.gpus))
        return n > 0 ? n : nil
    }

    /// The two launches' results from their reports; a launch the job never finished (Slurm ended
    /// it: a time limit, a node failure, a preemption, a cancel) stands as ended by Slurm, with its
    /// state and reason, a `timeout` for a time limit and a `crash` otherwise.
    func collect(job: String, end: SlurmJobState, directory: String, since submitted: Date,
                 plans: (LaunchPlan, LaunchPlan), audit: AuditLog?, context: AuditContext) throws -> SlurmMeasurement {
        var experiment = try launchResult("experiment", directory: directory, plan: plans.0, audit: audit, context: context)
        var evaluator = try launchResult("evaluator", directory: directory, plan: plans.1, audit: audit, context: context)
        let skipped = FileManager.default.fileExists(atPath: directory + "/evaluator.skipped")
        func ended() -> SandboxResult {
            var result = SandboxResult(status: end.isTimeLimit ? 124 : 137)
            result.timedOut = end.isTimeLimit
            result.wallMs = Int64(Date().timeIntervalSince(submitted) * 1000)
            let node = end.node.map { $0 == "(null)" || $0.isEmpty ? "" : " on \($0)" } ?? ""
            result.endedBy = end.endedBySlurm || end.name == "CANCELLED"
                ? "Slurm ended job \(job)\(node): \(end.description)"
                : "Slurm job \(job) ended (\(end.description)) before its launcher reported; see its log"
            return result
        }
        if experiment == nil {
            experiment = ended()
        } else if experiment?.status == 0 && evaluator == nil && !skipped {
            evaluator = ended()
        }
        return SlurmMeasurement(job: job, experiment: experiment!, evaluatorResult: evaluator)
    }

    /// A launch's result from `<name>.status` and `<name>.report`, as `Launcher.run` builds it
    /// (every report line an audit record); nil when the launch did not end.
    func launchResult(_ name: String, directory: String, plan: LaunchPlan, audit: AuditLog?,
                      context: AuditContext) throws -> SandboxResult? {
        guard let text = try? String(contentsOfFile: "\(directory)/\(name).status", encoding: .utf8),
              let status = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        let report = (try? String(contentsOfFile: "\(directory)/\(name).report", encoding: .utf8)) ?? ""
        var result = SandboxResult(status: 125)
        var events = LauncherReport()
        for line in report.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            if let event = events.event(String(line.prefix(65536))) {
                launcher.handle(event, result: &result, plan: plan, audit: audit, context: context)
            }
        }
        return try launcher.finish(result, events: events, status: status, plan: plan, audit: audit, context: context)
    }
}
