import Foundation
import ProctorConfig

#if canImport(Glibc)
    import Glibc
#endif

/// How one sandboxed command ended, as the launcher reported it.
public struct SandboxResult: Sendable, Equatable {
    /// The status `proctor exec` exits with (the command's, 124, 125, 126, 127 or 128+N).
    public var status: Int32
    public var exitCode: Int32?
    public var signal: Int32?
    public var timedOut = false
    public var wallMs: Int64 = 0
    public var cpuMs: Int64 = 0
    public var peakMemoryBytes: Int64 = 0
    /// The most GPU memory the command's processes held at once (NVML, polled); nil when the
    /// phase has no GPU or this host no NVML.
    public var peakGPUMemoryBytes: Int64?
    /// GPU-seconds of full SM use (NVML's per-process utilization); nil without it.
    public var gpuSeconds: Double?
    /// Budgets that were hit: `timeout`, `memory`, `pids`, `output`, `stdio`, `cpu`.
    public var limitsHit: [String] = []
    /// Details of the limits hit, by kind.
    public var limitDetails: [String: String] = [:]
    /// How each limit was enforced (`memory` → `cgroup-v1 4294967296`).
    public var enforcement: [String: String] = [:]
    /// Limits that could not be enforced as asked.
    public var warnings: [String] = []
    public var deniedWrites = 0
    /// The distinct paths of the denied writes, in order, at most as many as the audit records
    /// (hints read from the child's memory).
    public var deniedPaths: [String] = []
    public var droppedRecords = 0
    /// `network = "allowlist"`: where the command talked through the proxy, by host as it asked.
    public var network: [String: NetworkUse] = [:]
    /// Connections the proxy refused (each audited, up to the proxy's cap).
    public var refusedConnections = 0
    /// Why the workload manager ended the command before it finished (a Slurm job's state and
    /// reason: `NODE_FAIL`, `TIMEOUT`, `PREEMPTED`, `CANCELLED`); nil for a local launch.
    public var endedBy: String?

    /// A one-line reason for a non-zero status, for the ledger.
    public var reason: String {
        if let endedBy { return endedBy }
        if timedOut { return "wall-clock limit reached" }
        if let kind = limitsHit.first { return "\(kind) limit: \(limitDetails[kind] ?? "exceeded")" }
        if let signal { return "killed by signal \(signal)" }
        return "exit status \(status)"
    }
}

/// What went through the allowlist proxy to one host: connections made (or tried) and bytes relayed.
public struct NetworkUse: Codable, Sendable, Equatable {
    public var connections = 0
    /// Towards the host.
    public var bytesUp: Int64 = 0
    /// From the host.
    public var bytesDown: Int64 = 0

    public init(connections: Int = 0, bytesUp: Int64 = 0, bytesDown: Int64 = 0) {
        self.connections = connections
        self.bytesUp = bytesUp
        self.bytesDown = bytesDown
    }

    enum CodingKeys: String, CodingKey {
        case connections
        case bytesUp = "bytes_up"
        case bytesDown = "bytes_down"
    }

    /// The sum of two.
    public static func + (a: NetworkUse, b: NetworkUse) -> NetworkUse {
        NetworkUse(connections: a.connections + b.connections, bytesUp: a.bytesUp + b.bytesUp, bytesDown: a.bytesDown + b.bytesDown)
    }
}

/// Who is running, for the audit lines the launcher writes.
public struct AuditContext: Sendable {
    public var run: String
    public var iteration: Int?
    public var config: WorkspaceConfig

    public init(run: String, iteration: Int?, config: WorkspaceConfig) {
        self.run = run
        self.iteration = iteration
        self.config = config
    }

    /// Names the rule that made a path read-only, for the audit.
    public func rule(for path: String) -> String {
        let root = config.root
        guard path == root || path.hasPrefix(root + "/") else {
            if path == "/tmp" || path.hasPrefix("/tmp/") { return "tmp" }
            return "read-only-system"
        }
        let rel = path == root ? "" : String(path.dropFirst(root.count + 1))
        let first = rel.split(separator: "/").first.map(String.init) ?? ""
        if first == ".git" { return "git" }
        if first == ".proctor" { return "proctor-state" }
        if rel == "proctor.toml" { return "config" }
        let files = config.files
        if files.outputs.contains(where: { rel == $0 || rel.hasPrefix($0 + "/") }) { return "outputs" }
        if files.locked.contains(where: { Glob($0).matches(rel) }) { return "locked" }
        if files.hidden.contains(where: { Glob($0).matches(rel) }) { return "hidden" }
        if files.editable.contains(where: { Glob($0).matches(rel) }) { return "editable" }
        if files.notes.contains(where: { Glob($0).matches(rel) }) { return "notes" }
        return "frozen"
    }
}

/// A sandbox its owner freezes, thaws and stops while it runs: the session agent's, owned by its
/// run, which runs experiments alongside it.
public final class FreezableSandbox: @unchecked Sendable {
    /// Stops it (its launch is given this switch).
    public let stop: StopSwitch
    private let lock = NSLock()
    /// The launcher while it runs; 0 before and after.
    private var launcher: pid_t = 0
    /// Every task of the sandbox when it was last frozen (see `ranWhileFrozen`).
    private var frozen: (launcher: pid_t, tasks: [String: ProcessTree.Task])?

    public init(stop: StopSwitch) {
        self.stop = stop
    }

    /// The launch's `started`: the launcher's pid, until `ended`.
    public func started(_ pid: pid_t) {
        lock.withLock { launcher = pid }
    }

    /// Its launch returned.
    public func ended() {
        lock.withLock { launcher = 0 }
    }

    private var current: pid_t { lock.withLock { launcher } }

    /// Stops every process of the sandbox (SIGSTOP through the launcher's init) and waits until
    /// they are all stopped, so that the tree an experiment is validated, run and committed from
    /// cannot change underneath it. Returns false when they did not all stop within `timeout`
    /// (it returns as soon as they have: the timeout only bounds a failure; 2 s failed once on a
    /// loaded CI machine, a crash row for an agent that had done nothing wrong).
    @discardableResult
    public func freeze(timeout: TimeInterval = 10) -> Bool {
        let session = current
        lock.withLock { frozen = nil }
        guard session > 0 else { return true }
        let deadline = Date().addingTimeInterval(timeout)
        kill(session, SIGUSR1)
        while Date() < deadline {
            if ProcessTree.allStopped(below: session) {
                // Once more: a process forked while init walked the list would have been missed.
                kill(session, SIGUSR1)
                usleep(2_000)
                let tasks = ProcessTree.tasks(below: session)
                if tasks.values.allSatisfy(\.stopped) {
                    lock.withLock { frozen = (session, tasks) }
                    return true
                }
            }
            usleep(2_000)
        }
        return false
    }

    /// The processes (host pids) of the sandbox as last frozen; empty when it is not frozen.
    public var frozenProcesses: Set<pid_t> {
        guard let tasks = lock.withLock({ frozen?.tasks }) else { return [] }
        return Set(tasks.keys.compactMap { pid_t($0.prefix { $0 != "/" }) })
    }

    /// Whether any process of the frozen sandbox ran since `freeze` returned true.
    ///
    /// A stopped process resumes at any SIGCONT, and the kernel sends signals for the agent while it
    /// is stopped: a POSIX timer armed with `sigev_signo = SIGCONT`, `F_SETSIG` on a descriptor, a
    /// parent-death signal. No filter can see a timer's signal number (it is behind a pointer), so
    /// the supervisor checks instead: a task that ran has switched out since (its context-switch
    /// counts moved), is not stopped now, is new (it forked), or was stopped and is gone (only a
    /// woken task exits; one that did its work and exited is reaped at once by init when it is
    /// init's child). A zombie left when the agent was frozen may go: init reaps it.
    /// The launcher as frozen, not the current one: that is cleared when the agent ends, and an
    /// agent whose last process ended after its work would otherwise not be looked at.
    public func ranWhileFrozen() -> Bool {
        guard let (launcher, frozen) = lock.withLock({ frozen }) else { return false }
        let now = ProcessTree.tasks(below: launcher)
        for (key, task) in now where !task.stopped || frozen[key] != task {
            return true
        }
        return frozen.contains { key, task in now[key] == nil && task.state != "Z" && task.state != "X" }
    }

    /// Ends every process of the sandbox at once, before the supervisor touches its writable places
    /// again: one that ran while frozen is hostile, and would race the revert. SIGKILL to the
    /// sandbox's init ends its whole PID namespace; returns once none of its processes is left
    /// (or after `timeout`). The session then ends as an agent killed by a signal does.
    @discardableResult
    public func killEverything(timeout: TimeInterval = 10) -> Bool {
        let session = lock.withLock { frozen?.launcher ?? launcher }
        guard session > 0 else { return true }
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            let inside = ProcessTree.sandboxed(below: session)
            if inside.isEmpty { return true }
            if let initPid = ProcessTree.initProcess(below: session) { kill(initPid, SIGKILL) }
            for pid in inside { kill(pid, SIGKILL) }
            usleep(2_000)
        } while Date() < deadline
        return false
    }

    /// Lets the sandbox run again.
    public func thaw() {
        let session = current
        lock.withLock { frozen = nil }
        if session > 0 { kill(session, SIGUSR2) }
    }
}

/// Reading the process tree under a launcher from /proc.
enum ProcessTree {
    /// Whether every process under the launcher's init (init itself excepted) is stopped or gone.
    static func allStopped(below launcher: pid_t) -> Bool {
        for pid in sandboxed(below: launcher) {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }  // gone
            let state = stat[stat.index(close, offsetBy: 2)]
            if !Task.stops(Task.state(state, task: "/proc/\(pid)")) { return false }
        }
        return true
    }

    /// One thread: its state and how often it was switched out (voluntarily, involuntarily).
    struct Task: Equatable {
        var state: Character
        var switches: String

        var stopped: Bool { Self.stops(state) }

        /// Stopped, gone, or waiting on a vfork child (`V`, below).
        static func stops(_ state: Character) -> Bool { "TtZXV".contains(state) }

        /// The state /proc shows for the task, `V` for a `D` that is the vfork wait (below).
        static func state(_ shown: Character, task: String) -> Character {
            shown == "D" && inVfork(task) ? "V" : shown
        }

        /// Whether the task (`/proc/PID` or `/proc/PID/task/TID`) sleeps in vfork until its child
        /// execs or exits. A shell that runs commands by vfork (dash does) and whose child was
        /// stopped before its exec stays there, in `D`, never `T`: it runs no code of its own until the
        /// child does, and the child is one of the tasks checked. Without this, such a frozen agent
        /// counted as running and its experiment failed ("could not be frozen").
        static func inVfork(_ task: String) -> Bool {
            let wchan = (try? String(contentsOfFile: task + "/wchan", encoding: .utf8)) ?? ""
            // The wait is inlined into the clone path: `kernel_clone` (5.10+), `_do_fork` before.
            return ["kernel_clone", "_do_fork", "do_fork", "wait_for_vfork_done"].contains(wchan)
        }
    }

    /// Every thread under the launcher's init (init excepted), keyed `PID/TID`.
    static func tasks(below launcher: pid_t) -> [String: Task] {
        var result: [String: Task] = [:]
        for pid in sandboxed(below: launcher) {
            for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
                guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8) else { continue }
                var state: Character = "?"
                var switches: [Substring] = []
                for line in status.split(separator: "\n") {
                    if line.hasPrefix("State:") {
                        state = line.dropFirst("State:".count).first { !$0.isWhitespace } ?? "?"
                    } else if line.hasPrefix("voluntary_ctxt_switches:") || line.hasPrefix("nonvoluntary_ctxt_switches:") {
                        switches.append(line)
                    }
                }
                result["\(pid)/\(tid)"] = Task(state: Task.state(state, task: "/proc/\(pid)/task/\(tid)"),
                                                 switches: switches.joined(separator: ","))
            }
        }
        return result
    }

    /// The processes of the launcher's sandbox: its init's descendants (init, which never stops, is
    /// not one). Not the launcher's other children: the network proxy's helper (`network =
    /// "allowlist"`) is the launcher's, outside the sandbox's PID namespace, and is not frozen.
    static func sandboxed(below launcher: pid_t) -> [pid_t] {
        guard let initPid = initProcess(below: launcher) else { return [] }
        return descendants(of: initPid)
    }

    /// The launcher's init: the child that is pid 1 in its own PID namespace (`NSpid: <host pid> 1`).
    static func initProcess(below launcher: pid_t) -> pid_t? {
        descendants(of: launcher, depth: 1).first(where: { pid in
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let nspid = status.split(separator: "\n").first { $0.hasPrefix("NSpid:") }
            return nspid?.split(whereSeparator: { $0 == " " || $0 == "\t" }).last == "1"
        })
    }

    /// Descendants in breadth-first order (children of every thread, from /proc/PID/task/TID/children).
    static func descendants(of root: pid_t, depth: Int = .max) -> [pid_t] {
        var result: [pid_t] = []
        var queue: [(pid: pid_t, depth: Int)] = [(root, 0)]
        while !queue.isEmpty {
            let (pid, level) = queue.removeFirst()
            guard level < depth else { continue }
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            for tid in tasks {
                let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/children", encoding: .utf8)) ?? ""
                for child in text.split(separator: " ").compactMap({ pid_t($0) }) {
                    result.append(child)
                    queue.append((child, level + 1))
                }
            }
        }
        return result
    }
}

/// Runs commands through the `proctor-sandbox` executable and turns its report into audit lines.
public struct Launcher: Sendable {
    /// The most host names a launch's network use lists; the rest are counted under `otherHosts`.
    static let networkHostsListed = 100
    static let otherHosts = "(other hosts)"
    public var helper: String

    public init(helper: String) {
        self.helper = helper
    }

    /// `proctor-sandbox` next to the running executable, or `$PROCTOR_SANDBOX`.
    public static func locate() throws -> Launcher {
        if let path = hostEnvironment("PROCTOR_SANDBOX") { return Launcher(helper: path) }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let path = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("proctor-sandbox").path
        guard access(path, X_OK) == 0 else {
            throw SandboxError(.notInstalled, "the launcher \(path) is missing; build with `swift build` (it is the proctor-sandbox product)")
        }
        return Launcher(helper: path)
    }

    /// Runs the plan, blocking until the sandbox is gone. `stdout`/`stderr` default to proctor's own.
    /// Every report line is turned into an audit record as it arrives, so a crash loses nothing already seen.
    /// `started` sees the launcher's pid as soon as it runs. The sandbox is stopped when `stop` is
    /// requested (without one: when SIGINT or SIGTERM arrives, once `StopSignal.install` ran).
    public func run(_ plan: LaunchPlan, audit: AuditLog?, context: AuditContext,
                    stdin: Int32 = 0, stdout: Int32 = 1, stderr: Int32 = 2, stop: StopSwitch? = nil,
                    started: ((pid_t) -> Void)? = nil) throws -> SandboxResult {
        let report = try PipePair()
        let death = try PipePair()
        // Readable (closed) once the report ends: the watcher stops before the launcher is reaped.
        let watching = try PipePair()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        posix_spawn_file_actions_adddup2(&actions, report.write.raw, 3)
        posix_spawn_file_actions_adddup2(&actions, death.read.raw, 4)
        // Passed descriptors keep their number (they are above 4 and not close-on-exec in the helper).
        for fd in plan.passDescriptors { posix_spawn_file_actions_adddup2(&actions, fd, fd) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGQUIT] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = [helper] + ["--report-fd", "3", "--parent-fd", "4"] + plan.arguments
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var cEnv: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, helper, &actions, &attributes, &cArgs, &cEnv)
        guard rc == 0 else { throw SandboxError(.io, "spawn \(helper): \(String(cString: strerror(rc))) (stage: launch)", errno: rc) }
        // The deadline: the phase's timeout, its grace period and some slack for the start.
        let watcher = StopSwitch.watch(pid, stop: stop, done: watching.read.raw,
                                       deadlineMs: plan.timeoutMs > 0 ? plan.timeoutMs + plan.graceMs + 10_000 : Int64(Int32.max),
                                       graceMs: plan.graceMs)
        started?(pid)
        // The helper holds its copies; ours of the write end must go so that EOF comes when it exits.
        report.write.close()
        death.read.close()

        var result = SandboxResult(status: 125)
        var events = LauncherReport()
        readLines(report.read.raw) { line in
            if let event = events.event(line) { self.handle(event, result: &result, plan: plan, audit: audit, context: context) }
        }
        watching.write.close()
        watcher.wait()
        watching.read.close()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Held until the launcher is gone: its EOF tells the launcher that proctor died.
        death.write.close()
        return try finish(result, events: events, status: (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f),
                          plan: plan, audit: audit, context: context)
    }

    /// The end of a launch, from the events its report carried and its exit status (`128+N` for a
    /// signal): the audit's `sandbox` record written, an unreadable report thrown. Shared by a local
    /// launch and one a Slurm job ran (`SlurmJob`), whose report came back as a file.
    func finish(_ reported: SandboxResult, events: LauncherReport, status: Int32, plan: LaunchPlan, audit: AuditLog?,
                context: AuditContext) throws -> SandboxResult {
        var result = reported
        result.status = status
        if let audit {
            // Which limits were enforced and how; a launch that never got that far says so.
            let decision = result.enforcement.isEmpty || events.error != nil ? "failed"
                : result.warnings.isEmpty ? "enforced" : "unenforced"
            let detail = events.error.map(\.description) ?? (result.warnings.isEmpty ? nil : result.warnings.joined(separator: "; "))
            audit.append(AuditRecord(run: context.run, iteration: context.iteration, phase: plan.phase.rawValue,
                                     kind: "sandbox", decision: decision, detail: detail, limits: result.enforcement))
        }
        // A report proctor cannot read says nothing reliable about how the command ended.
        if let error = events.error { throw error }
        return result
    }

    func handle(_ event: LauncherEvent, result: inout SandboxResult, plan: LaunchPlan, audit: AuditLog?,
                        context: AuditContext) {
        func record(_ kind: String, _ decision: String, detail: String? = nil, pid: Int? = nil, syscall: String? = nil,
                    path: String? = nil, rule: String? = nil, time: Date = Date(), count: Int? = nil) {
            audit?.append(AuditRecord(time: time, run: context.run, iteration: context.iteration,
                                      phase: plan.phase.rawValue, kind: kind, decision: decision, pid: pid,
                                      syscall: syscall, path: path, rule: rule, detail: detail, count: count))
        }
        switch event {
        case .version:
            break  // checked by LauncherReport, which does not pass it on
        case .enforce(let limit, let mechanism, let value):
            result.enforcement[limit] = mechanism + " " + value
        case .warn(let limit, let message):
            result.warnings.append("\(limit): \(message)")
        case .deny(let unixMs, let pid, let syscall, let path):
            result.deniedWrites += 1
            if result.deniedPaths.count < 2000 && !result.deniedPaths.contains(path) { result.deniedPaths.append(path) }
            record("write", "denied", pid: Int(pid), syscall: syscall, path: path, rule: context.rule(for: path),
                   time: Date(timeIntervalSince1970: Double(unixMs) / 1000))
        case .dropped(let count):
            result.droppedRecords = Int(count)
            record("write", "denied", detail: "further denied writes counted, not recorded", count: result.droppedRecords)
        case .limit(let kind, let detail):
            result.limitsHit.append(kind)
            result.limitDetails[kind] = detail
            if kind == "timeout" { result.timedOut = true }
            let auditKind = ["timeout", "memory", "pids"].contains(kind) ? kind : "limit"
            record(auditKind, kind == "stdio" ? "denied" : "killed", detail: kind == auditKind ? detail : "\(kind): \(detail)")
        case .net(let unixMs, let host, let port, let decision, let detail, let up, let down):
            let time = Date(timeIntervalSince1970: Double(unixMs) / 1000)
            switch decision {
            case "allowed":
                // At most `networkHostsListed` names, the rest together: a wildcard entry over a
                // domain that answers every name let each made-up name add one to the record.
                let key = result.network[host] != nil || result.network.count < Self.networkHostsListed ? host : Self.otherHosts
                result.network[key, default: NetworkUse()] = result.network[key, default: NetworkUse()]
                    + NetworkUse(connections: 1, bytesUp: up, bytesDown: down)
            case "dropped":
                // Refusals past the proxy's cap: `up` counts them.
                result.refusedConnections += Int(up)
                record("network", "denied", detail: detail, time: time, count: Int(up))
            default:
                result.refusedConnections += 1
                audit?.append(AuditRecord(time: time, run: context.run, iteration: context.iteration, phase: plan.phase.rawValue,
                                          kind: "network", decision: "denied", detail: detail, host: host.isEmpty ? nil : host,
                                          port: port > 0 ? Int(port) : nil))
            }
        case .result(let exit, let signal, let timedOut, let wallMs, let cpuMs, let peakMemoryBytes):
            result.exitCode = Int32(exactly: exit).flatMap { $0 >= 0 ? $0 : nil }
            result.signal = Int32(exactly: signal).flatMap { $0 > 0 ? $0 : nil }
            result.timedOut = result.timedOut || timedOut
            result.wallMs = wallMs
            result.cpuMs = cpuMs
            result.peakMemoryBytes = peakMemoryBytes
        }
    }

    /// Reads lines until EOF; a line longer than 64 KiB is cut (the child chose the path).
    private func readLines(_ fd: Int32, _ body: (String) -> Void) {
        var pending = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending += buffer[0..<n]
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline].prefix(65536), as: UTF8.self)
                pending.removeSubrange(...newline)
                body(line)
            }
            if pending.count > 65536 { pending.removeAll() }
        }
    }
}
