import Foundation

/// Slurm's own commands (`sbatch`, `squeue`, `scontrol`, `scancel`), run from PATH with proctor's
/// environment (`SLURM_CONF` and the like reach them), their output captured.
public struct SlurmCLI: Sendable {
    /// The tools the executor needs, checked at start.
    public static let tools = ["sbatch", "squeue", "scontrol", "scancel"]

    public init() {}

    /// The tools missing from PATH.
    public static func missingTools() -> [String] {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return tools.filter { tool in
            !path.split(separator: ":").contains { access("\($0)/\(tool)", X_OK) == 0 }
        }
    }

    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        /// The first line of stderr (or stdout), for an error message.
        public var message: String {
            let text = stderr.isEmpty ? stdout : stderr
            return text.split(whereSeparator: \.isNewline).first.map(String.init) ?? "exit status \(status)"
        }
    }

    /// Runs `tool args...` (arguments as given, no shell), at most `timeout` seconds.
    public func run(_ tool: String, _ args: [String], timeout: TimeInterval = 60) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + args
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw SandboxError(.slurm, "cannot run \(tool): \(error)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        // Read as it comes (a full pipe would stall the tool), then reap.
        let collected = Collected()
        let group = DispatchGroup()
        for (pipe, keyPath) in [(out, \Collected.stdout), (err, \Collected.stderr)] {
            group.enter()
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.set(keyPath, data)
                group.leave()
            }
        }
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            group.wait()
            throw SandboxError(.slurm, "\(tool) \(args.joined(separator: " ")) did not answer within \(Int(timeout)) s")
        }
        process.waitUntilExit()
        group.wait()
        return Output(status: process.terminationStatus, stdout: collected.text(\.stdout), stderr: collected.text(\.stderr))
    }

    /// Submits a batch script; the job's id.
    public func submit(script: String, options: [String]) throws -> String {
        let out = try run("sbatch", ["--parsable"] + options + [script])
        let id = out.stdout.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        guard out.status == 0, SlurmCLI.isJobID(id) else {
            throw SandboxError(.slurm, "sbatch refused the job: \(out.message)")
        }
        return id
    }

    /// The job's state as Slurm knows it now; nil when the controller cannot be reached (ask again).
    /// A job Slurm has forgotten (ended longer ago than `MinJobAge`) is `.gone`.
    public func state(of job: String) -> SlurmJobState? {
        guard let out = try? run("scontrol", ["show", "job", "--oneliner", job], timeout: 30) else { return nil }
        if out.status != 0 {
            return out.stderr.contains("Invalid job id") ? .gone : nil
        }
        func field(_ name: String) -> String? {
            out.stdout.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }
        guard let state = field("JobState") else { return nil }
        return SlurmJobState(name: state, reason: field("Reason") ?? "None", node: field("NodeList"))
    }

    /// Queued or running jobs named `name`, with their comments (`%k`), for finding a job whose
    /// submission was cut off before its id was recorded.
    public func queued(named name: String) -> [(id: String, comment: String)]? {
        // This user's jobs only: another user's job of the same name and a copied token is not ours to wait for.
        guard let out = try? run("squeue", ["--noheader", "--user=\(getuid())", "--name=" + name, "--format=%i %k"], timeout: 30),
            out.status == 0
        else { return nil }
        return out.stdout.split(whereSeparator: \.isNewline).compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 1)
            guard let id = parts.first, SlurmCLI.isJobID(String(id)) else { return nil }
            return (String(id), parts.count > 1 ? String(parts[1]) : "")
        }
    }

    /// A job id as proctor passes it on (to `scontrol`, `scancel`): 1 to 18 ASCII digits. An answer
    /// such as `--user=root` from `squeue` would have made `scancel --full --user=root` cancel every
    /// job of that user.
    static func isJobID(_ text: String) -> Bool {
        (1...18).contains(text.utf8.count) && text.utf8.allSatisfy { (0x30...0x39).contains($0) }
    }

    /// Cancels the job (all its steps, the batch shell included).
    public func cancel(_ job: String) {
        _ = try? run("scancel", ["--full", job], timeout: 30)
    }
}

/// One Slurm job state (`JobState` and `Reason` of `scontrol show job`).
public struct SlurmJobState: Sendable, Equatable {
    public var name: String
    public var reason: String
    public var node: String?

    public static let gone = SlurmJobState(name: "GONE", reason: "no longer known to Slurm", node: nil)

    /// Ended: the job will not run again (states from `squeue --help` / slurm.h).
    public var ended: Bool {
        ["COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE", "GONE"].contains(name)
    }

    /// Ended by Slurm rather than by the script's own end (its results are not to be trusted).
    public var endedBySlurm: Bool { ended && name != "COMPLETED" && name != "GONE" && name != "FAILED" }

    /// Slurm's time limit ended it (a `timeout` row); every other end by Slurm is a `crash` row.
    public var isTimeLimit: Bool { name == "TIMEOUT" || name == "DEADLINE" }

    public var description: String { reason == "None" || reason.isEmpty ? name : "\(name) (\(reason))" }
}

/// Bytes read from a process's two pipes on two threads.
private final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    var stdout = Data()
    var stderr = Data()

    func set(_ keyPath: ReferenceWritableKeyPath<Collected, Data>, _ data: Data) { lock.withLock { self[keyPath: keyPath] = data } }
    func text(_ keyPath: KeyPath<Collected, Data>) -> String { lock.withLock { String(decoding: self[keyPath: keyPath], as: UTF8.self) } }
}
