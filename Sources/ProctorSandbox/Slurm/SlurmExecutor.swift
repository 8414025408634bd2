import Foundation
import ProctorConfig

/// `[executor] kind = "slurm"` (issue 14): each measurement (one seed's experiment, then its
/// evaluator) is one Slurm job whose script runs `proctor-sandbox` with the plans a local launch
/// would use (`SlurmJobScript`). The supervisor stays here; the job's files live in the workspace's
/// `.proctor/slurm/`, which the nodes must share (checked at start) and no sandbox sees.
///
/// One job per slot at a time: the job name `proctor-<workspace id>-<slot>` with
/// `--dependency=singleton` makes the cluster itself hold a second one back, from any login node.
/// The job in flight is recorded (`inflight-<slot>.json`) before `sbatch` runs, so that a
/// supervisor killed meanwhile finds it again at its next start and never runs a second copy.
public final class SlurmExecutor: @unchecked Sendable {
    public let settings: ExecutorSettings
    public let cli = SlurmCLI()
    public let root: String
    public let slot: Int
    let launcher: Launcher
    /// Seconds between two looks at a job's state.
    let pollInterval: TimeInterval

    init(env: SandboxEnvironment, slot: Int) {
        settings = env.config.executor
        root = env.config.root
        self.slot = slot
        launcher = env.launcher
        pollInterval = Double(hostEnvironment("PROCTOR_SLURM_POLL_MS").flatMap(Int.init) ?? 1000) / 1000
    }

    private init(_ other: SlurmExecutor, slot: Int) {
        settings = other.settings
        root = other.root
        self.slot = slot
        launcher = other.launcher
        pollInterval = other.pollInterval
    }

    /// The executor of another slot (`--parallel`): its own job name, lock and in-flight record.
    public func forSlot(_ slot: Int) -> SlurmExecutor {
        slot == self.slot ? self : SlurmExecutor(self, slot: slot)
    }

    /// `proctor-<workspace id>-<slot>`: the workspace id is a hash of its absolute path, the same
    /// from every login node that mounts it there.
    public var jobName: String { "proctor-\(Self.workspaceID(root))-\(slot)" }

    public static func workspaceID(_ root: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a 64
        for byte in root.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return String(String(hash, radix: 16).suffix(12))
    }

    public static func stateDirectory(_ root: String) -> String { root + "/.proctor/slurm" }
    var stateDirectory: String { Self.stateDirectory(root) }
    var inFlightPath: String { "\(stateDirectory)/inflight-\(slot).json" }
    public static func jobsLog(_ root: String) -> String { stateDirectory(root) + "/jobs.jsonl" }

    // MARK: - Start

    /// The start checks, each a 125 refusal naming what is missing: settings Slurm cannot honour,
    /// the tools on PATH, a job left in flight by a killed supervisor (waited for, or cancelled
    /// with `cancelRunning`), then a probe job that reads back a file written here and finds
    /// proctor's launcher at the same path on its node.
    public static func start(env: SandboxEnvironment, slot: Int = 0, cancelRunning: Bool, stop: StopSwitch?,
                             say: (String) -> Void) throws -> SlurmExecutor {
        try checkSettings(env.config)
        // Slurm drops a backslash from `--output`'s path (and stops expanding `%j` there): every
        // job failed to launch, or wrote its log into the sibling the name became.
        if env.config.root.contains("\\") {
            throw SandboxError(.slurmRequirement, "the workspace's path \(env.config.root) holds a backslash, which Slurm drops from a job's log path: move the workspace to a path without one")
        }
        let missing = SlurmCLI.missingTools()
        guard missing.isEmpty else {
            throw SandboxError(.slurmRequirement, "[executor] kind = \"slurm\" needs \(missing.joined(separator: ", ")) on PATH (Slurm's client commands); not found")
        }
        let executor = SlurmExecutor(env: env, slot: slot)
        try FileManager.default.createDirectory(atPath: executor.stateDirectory, withIntermediateDirectories: true)
        // Every slot's job left in flight (a killed `--parallel` run may have left several).
        for name in inFlightRecords(root: env.config.root) {
            guard let other = Int(name.dropFirst("inflight-".count).dropLast(".json".count)) else { continue }
            try executor.forSlot(other).settleInFlight(cancel: cancelRunning, stop: stop, say: say)
        }
        do {
            try executor.probe(stop: stop, say: say)
        } catch {
            // A refused start leaves nothing behind: the directory goes while it is empty (an
            // earlier run's jobs log keeps it).
            rmdir(executor.stateDirectory)
            throw error
        }
        return executor
    }

    /// The in-flight records (`inflight-<slot>.json`) a killed Slurm run left in `root`'s workspace.
    public static func inFlightRecords(root: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: stateDirectory(root))) ?? [])
            .filter { $0.hasPrefix("inflight-") && $0.hasSuffix(".json") }.sorted()
    }

    /// What only a local launch can do, refused before anything is submitted (and by `proctor check`).
    public static func checkSettings(_ config: WorkspaceConfig) throws {
        func refuse(_ key: String, _ line: Int?, _ message: String) -> Error {
            ConfigError(file: config.file, line: line, key: key, message: message)
        }
        if config.experiment.gpus == .all || config.evaluator.gpus == .all {
            throw refuse(config.experiment.gpus == .all ? "experiment.gpus" : "evaluator.gpus",
                         config.experiment.gpus == .all ? config.experiment.gpusLine : config.evaluator.gpusLine,
                         "gpus = \"all\" cannot be asked of Slurm ([executor] kind = \"slurm\"): give a number of GPUs (--gres=gpu:N)")
        }
        if config.experiment.gpuMemoryBytes != nil {
            throw refuse("experiment.gpu_memory", config.keyLines["[experiment] gpu_memory"], "gpu_memory is polled by the supervisor through NVML on its own machine and cannot reach a Slurm node: leave it out with [executor] kind = \"slurm\"")
        }
        if config.experiment.network.mode == .allowlist {
            throw refuse("experiment.network", config.keyLines["[experiment] network"], "network = \"allowlist\" runs its proxy beside the supervisor, which a Slurm node cannot reach: use \"none\" or \"host\" with [executor] kind = \"slurm\"")
        }
    }

    /// A job a killed supervisor left queued or running: waited for until it ends (or cancelled),
    /// so that its experiment never runs beside the next one in the same workspace.
    func settleInFlight(cancel: Bool, stop: StopSwitch?, say: (String) -> Void) throws {
        guard let data = FileManager.default.contents(atPath: inFlightPath),
              let inFlight = try? JSONDecoder().decode(InFlight.self, from: data) else {
            try? FileManager.default.removeItem(atPath: inFlightPath)
            return
        }
        // Cut off between the record and sbatch's answer: found by the token in its comment.
        let id = inFlight.job ?? cli.queued(named: jobName)?.first { $0.comment == inFlight.token }?.id
        if let id, let state = cli.state(of: id), !state.ended {
            if cancel {
                say("slurm: cancelling job \(id) (\(state.description)), left by run \(inFlight.run) iteration \(inFlight.iteration)")
                cli.cancel(id)
            } else {
                say("slurm: job \(id) of run \(inFlight.run) iteration \(inFlight.iteration) is still \(state.name); waiting for it to end (--cancel-running cancels it)")
            }
            let end = wait(for: id, stop: stop)
            if stop?.requested == true {
                throw SandboxError(.slurm, "interrupted while waiting for Slurm job \(id); it was cancelled")
            }
            say("slurm: job \(id) ended: \(end.description); its measurement is not used")
            appendJobEvent(JobEvent(run: inFlight.run, iteration: inFlight.iteration, seed: inFlight.seed, job: id,
                                    event: "ended", state: end.description))
        }
        try? FileManager.default.removeItem(atPath: inFlightPath)
        if let directory = inFlight.directory { FileTree.removeDirectory(directory) }
    }

    /// A tiny job that reads back a file written here and looks for the launcher at this path.
    func probe(stop: StopSwitch?, say: (String) -> Void) throws {
        let token = UUID().uuidString
        let directory = try Self.scratch(in: stateDirectory, prefix: "probe")
        defer { FileTree.removeDirectory(directory) }
        let file = directory + "/probe", reply = directory + "/reply"
        try Data(token.utf8).write(to: URL(fileURLWithPath: file))
        let q = SlurmJobScript.quote
        let script = """
        #!/bin/sh
        # proctor's start check (issue 14): is the workspace shared, is the launcher at the same path?
        if [ -x \(q(launcher.helper)) ]; then l=launcher; else l=no-launcher; fi
        printf '%s %s\\n' "$(cat \(q(file)))" "$l" >\(q(reply))

        """
        try Data(script.utf8).write(to: URL(fileURLWithPath: directory + "/probe.sh"))
        var options = common()
        options += ["--job-name=\(jobName)-probe", "--time=1", "--mem=64M", "--cpus-per-task=1",
                    "--output=/dev/null", "--chdir=/"]
        let id: String
        do { id = try cli.submit(script: directory + "/probe.sh", options: options) } catch let error as SandboxError {
            throw SandboxError(.slurmRequirement, "the probe job could not be submitted: \(error.description) (check [executor] partition, account, qos, extra_args)")
        }
        let limit = Double(hostEnvironment("PROCTOR_SLURM_PROBE_TIMEOUT").flatMap(Int.init) ?? 300)
        let end = wait(for: id, stop: stop, limit: limit)
        if stop?.requested == true { throw SandboxError(.slurm, "interrupted during the Slurm probe job \(id); it was cancelled") }
        if !end.ended {
            cli.cancel(id)
            throw SandboxError(.slurmRequirement, "the Slurm probe job \(id) did not end within \(Int(limit)) s (\(end.description)); is the partition up? (PROCTOR_SLURM_PROBE_TIMEOUT sets the wait)")
        }
        // The reply is written on the node: seen here only through a shared filesystem.
        let answer = (try? String(contentsOfFile: reply, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let answer, answer.hasPrefix(token) else {
            throw SandboxError(.slurmRequirement, "the workspace \(root) is not on a filesystem the Slurm nodes share: the probe job \(id) (\(end.description)) did not read back \(file) or its reply did not come back")
        }
        guard answer == token + " launcher" else {
            throw SandboxError(.slurmRequirement, "proctor's launcher \(launcher.helper) is not at the same path on the Slurm nodes (probe job \(id)); install proctor there at the same path")
        }
        say("slurm: probe job \(id) read the workspace and found proctor-sandbox on the node; jobs are named \(jobName)")
    }

    /// `sbatch` options every job of this executor gets.
    func common() -> [String] {
        var options = ["--export=NONE", "--no-requeue"]
        if let partition = settings.partition { options.append("--partition=" + partition) }
        if let account = settings.account { options.append("--account=" + account) }
        if let qos = settings.qos { options.append("--qos=" + qos) }
        return options + settings.extraArgs
    }

    // MARK: - Waiting

    /// Looks at the job until it ended (or `limit` seconds passed): every `pollInterval` at first,
    /// less often as it runs on (10 s at most: a long job must not flood the controller), and a
    /// stop is seen within 0.1 s, cancels the job and waits for its end. A controller that does not
    /// answer is asked again.
    func wait(for job: String, stop: StopSwitch?, limit: TimeInterval? = nil) -> SlurmJobState {
        let start = Date()
        var cancelled: Date?
        var last = SlurmJobState(name: "UNKNOWN", reason: "the controller did not answer", node: nil)
        while true {
            if let state = cli.state(of: job) {
                last = state
                if state.ended { return state }
            }
            if stop?.requested == true, cancelled == nil {
                cli.cancel(job)
                cancelled = Date()
            }
            // Cancelled and still listed after a minute (an unreachable node): the run stops anyway.
            if let cancelled, Date().timeIntervalSince(cancelled) > 60 { return last }
            if cancelled == nil, let limit, Date().timeIntervalSince(start) > limit { return last }
            let pause = Date().addingTimeInterval(min(pollInterval * (1 + Date().timeIntervalSince(start) / 30), 10))
            while Date() < pause && (stop?.requested != true || cancelled != nil) { usleep(100_000) }
        }
    }

    /// A new directory (`mkdtemp`, 0700) in `base`.
    static func scratch(in base: String, prefix: String) throws -> String {
        var template = Array((base + "/" + prefix + "-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw SandboxError.io(errno, "mkdtemp in \(base)") }
        return String(cString: made)
    }

    // MARK: - Records

    /// The job of this slot while it is queued or running.
    struct InFlight: Codable {
        var run: String
        var iteration: Int
        var seed: UInt64
        /// In the job's `--comment`: finds it when the supervisor died before `sbatch` answered.
        var token: String
        var job: String?
        var directory: String?
    }

    func recordInFlight(_ inFlight: InFlight?) throws {
        guard let inFlight else {
            try? FileManager.default.removeItem(atPath: inFlightPath)
            return
        }
        let temporary = inFlightPath + ".tmp"
        let data = try JSONEncoder().encode(inFlight)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw SandboxError.io(errno, "open \(temporary)") }
        defer { close(fd) }
        let failed = WriteAll.bytes(fd, data)
        guard failed == 0 else { throw SandboxError.io(failed, "write \(temporary)") }
        fsync(fd)
        guard rename(temporary, inFlightPath) == 0 else { throw SandboxError.io(errno, "rename \(temporary)") }
    }

    /// One line of `.proctor/slurm/jobs.jsonl`: a job submitted, or how it ended (`proctor status`).
    public struct JobEvent: Codable, Sendable {
        public var time = Date()
        public var run: String
        public var iteration: Int
        public var seed: UInt64
        public var job: String
        /// `submitted` or `ended`.
        public var event: String
        public var state: String?
    }

    func appendJobEvent(_ event: JobEvent) {
        let path = Self.jobsLog(root)
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        try? JSONLines.append(event, to: fd, encoder: JSONLines.encoder())
    }

    /// The jobs of `run` in submission order, each with its last known state (asked of Slurm for
    /// one not recorded as ended).
    public static func jobs(root: String, run: String, cli: SlurmCLI = SlurmCLI()) -> [(event: JobEvent, state: String)] {
        guard let text = try? String(contentsOfFile: jobsLog(root), encoding: .utf8) else { return [] }
        let decoder = JSONLines.decoder()
        var order: [String] = []
        var submitted: [String: JobEvent] = [:]
        var ended: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let event = try? decoder.decode(JobEvent.self, from: Data(line.utf8)), event.run == run else { continue }
            if event.event == "submitted" { order.append(event.job); submitted[event.job] = event }
            if event.event == "ended" { ended[event.job] = event.state ?? "ended" }
        }
        return order.compactMap { id in
            guard let event = submitted[id] else { return nil }
            return (event, ended[id] ?? cli.state(of: id).map { $0.description + ($0.node.map { " on " + $0 } ?? "") } ?? "unknown (the controller did not answer)")
        }
    }
}
