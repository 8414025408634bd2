import Foundation
import ProctorConfig

/// Who holds an experiment lock, as written into the lock file.
public struct LockHolder: Codable, Sendable, Equatable {
    public var pid: Int32
    public var run: String
    public var iteration: Int?
    public var since: Date
    public var workspace: String

    public init(pid: Int32, run: String, iteration: Int?, since: Date, workspace: String) {
        self.pid = pid
        self.run = run
        self.iteration = iteration
        self.since = since
        self.workspace = workspace
    }

    public var summary: String {
        "pid \(pid), run \(run), iteration \(iteration.map(String.init) ?? "-"), since \(UTCTime.iso8601(since)) (\(workspace))"
    }
}

/// An exclusive kernel `flock`: released by the kernel when the process dies, so a crash never
/// leaves a stale lock. The holder's identity is written into the file for `proctor status`.
public final class ExperimentLock: @unchecked Sendable {
    public let path: String
    private let fd: Int32

    /// The per-workspace lock, `.proctor/lock`.
    public static func workspacePath(_ root: String) -> String { root + "/.proctor/lock" }

    /// The per-machine lock: one experiment at a time on this machine, across users.
    public static var machinePath: String {
        hostEnvironment("PROCTOR_MACHINE_LOCK") ?? "/tmp/proctor-machine.lock"
    }

    /// How many experiments this machine runs at once (`PROCTOR_MACHINE_SLOTS`, default 1): slot 0 is
    /// `machinePath`, slot K `machinePath.K`. One by default because a run's budgets are wall-clock
    /// time: two experiments sharing cores or a GPU would slow each other and skew every score
    /// that depends on time. A user who splits the machine says so.
    public static var machineSlots: Int {
        hostEnvironment("PROCTOR_MACHINE_SLOTS").flatMap { Int($0) }.map { max(1, $0) } ?? 1
    }

    public static func machineSlotPath(_ slot: Int) -> String { slot == 0 ? machinePath : machinePath + ".\(slot)" }

    /// The machine's settings from the environment, checked before they are used: read as they
    /// were, `PROCTOR_MACHINE_SLOTS=abc` (or 0, -1) meant one slot without a word, and a
    /// `PROCTOR_MACHINE_LOCK` that is a directory failed the run (exit 1), one in a directory that
    /// does not exist made that directory.
    public static func checkHostSettings() throws {
        if let slots = hostEnvironment("PROCTOR_MACHINE_SLOTS"), Int(slots).map({ $0 < 1 }) ?? true {
            throw SandboxError(.hostSetting, "PROCTOR_MACHINE_SLOTS: expected a whole number of experiments this machine runs at once, 1 or more, got \"\(slots.displayEscaped(keeping: []))\"")
        }
        if let lock = hostEnvironment("PROCTOR_MACHINE_LOCK") {
            let shown = lock.displayEscaped(keeping: [])
            let directory = (lock as NSString).deletingLastPathComponent
            var info = stat()
            guard !lock.isEmpty, !lock.hasSuffix("/") else {
                throw SandboxError(.hostSetting, "PROCTOR_MACHINE_LOCK: expected the path of a lock file, got \"\(shown)\"")
            }
            if stat(directory.isEmpty ? "." : directory, &info) != 0 || info.st_mode & S_IFMT != S_IFDIR {
                throw SandboxError(.hostSetting, "PROCTOR_MACHINE_LOCK: expected a file in an existing directory, got \"\(shown)\"")
            }
            if lstat(lock, &info) == 0 && info.st_mode & S_IFMT != S_IFREG {
                throw SandboxError(.hostSetting, "PROCTOR_MACHINE_LOCK: expected a lock file, but \"\(shown)\" is there as something else (a directory or a link)")
            }
        }
    }

    /// `count` of the machine's slots (`machineSlots`), all or none. Without `wait`, the first busy
    /// answer is `lockBusy`; with it, waiters are served in turn on slot 0's queue (`LockQueue`), the
    /// first one taking free slots as they come until it has `count`.
    public static func takeMachineSlots(_ count: Int, holder: LockHolder, wait: Bool) throws -> [ExperimentLock] {
        let paths = (0..<machineSlots).map(machineSlotPath)
        if count == 1 && paths.count == 1 { return [try ExperimentLock(path: paths[0], holder: holder, wait: wait, shared: true)] }
        var held: [ExperimentLock] = []
        func gather() throws -> Bool {
            for path in paths where held.count < count && !held.contains(where: { $0.path == path }) {
                if let lock = try ExperimentLock(trying: path, holder: holder) { held.append(lock) }
            }
            return held.count == count
        }
        if !wait {
            if try gather() { return held }
            let busy = paths.first { path in !held.contains { $0.path == path } } ?? paths[0]
            let holderText = ExperimentLock.holder(at: busy)?.summary ?? "unknown holder"
            throw SandboxError(.lockBusy(path: busy, holder: ExperimentLock.holder(at: busy)),
                               "another run holds the lock: \(holderText) [\(busy)] (this run needs \(count) of the machine's \(paths.count) slots); "
                                   + "pass --wait to wait for it (`proctor run --wait`, `proctor exec --wait`)")
        }
        let queue = try LockQueue(lockPath: paths[0], shared: true)
        defer { queue.leave() }
        while true {
            if StopSignal.received { throw SandboxError.io(EINTR, "waiting for the lock \(paths[0])") }
            if queue.isFirst(), try gather() { return held }
            usleep(20_000)
        }
    }

    /// The lock at `path` if it is free now; nil when another holds it.
    private convenience init?(trying path: String, holder: LockHolder) throws {
        do {
            try self.init(path: path, holder: holder, wait: false, shared: true)
        } catch let error as SandboxError {
            if case .lockBusy = error.code { return nil }
            throw error
        }
    }

    /// Takes the lock, failing at once when it is held (or waiting when `wait` is true). The
    /// machine lock is shared by every user of the machine (mode 0666); a workspace's is its
    /// owner's (0644: another user may wait on it, not rewrite its holder).
    public init(path: String, holder: LockHolder, wait: Bool = false, shared: Bool = false) throws {
        self.path = path
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                 withIntermediateDirectories: true)
        // O_NOFOLLOW: the machine lock lives in a shared directory where a symlink could be planted.
        let mode: mode_t = shared ? 0o666 : 0o644
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw SandboxError.io(errno, "open lock \(path)") }
        var st = stat()
        if fstat(fd, &st) == 0 && st.st_uid == geteuid() { fchmod(fd, mode) }
        do {
            if wait {
                try Self.waitInTurn(fd, path: path, shared: shared)
            } else {
                try Self.takeAtOnce(fd, path: path)
            }
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        update(holder)
    }

    /// Without `--wait`: the lock now, or `lockBusy` naming its holder and how to wait.
    private static func takeAtOnce(_ fd: Int32, path: String) throws {
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let failure = errno  // before pread can change it
            if failure == EINTR { continue }
            let holder = ExperimentLock.readHolder(fd)
            if failure == EWOULDBLOCK {
                throw SandboxError(.lockBusy(path: path, holder: holder),
                                   "another run holds the lock: " + (holder?.summary ?? "unknown holder") + " [\(path)]; "
                                       + "pass --wait to wait for it (`proctor run --wait`, `proctor exec --wait`)")
            }
            throw SandboxError.io(failure, "flock \(path)")
        }
    }

    /// `--wait`: first come, first served (`LockQueue`); only the first live waiter tries the lock,
    /// every 20 ms. A stop request (Ctrl-C, SIGTERM) ends the wait.
    private static func waitInTurn(_ fd: Int32, path: String, shared: Bool) throws {
        let queue = try LockQueue(lockPath: path, shared: shared)
        defer { queue.leave() }
        while true {
            if StopSignal.received { throw SandboxError.io(EINTR, "waiting for the lock \(path)") }
            if queue.isFirst() {
                if flock(fd, LOCK_EX | LOCK_NB) == 0 { return }
                if errno != EWOULDBLOCK && errno != EINTR { throw SandboxError.io(errno, "flock \(path)") }
            }
            usleep(20_000)
        }
    }

    /// Rewrites the holder (e.g. the iteration moved on).
    public func update(_ holder: LockHolder) {
        guard let data = try? JSONLines.encoder().encode(holder) else { return }
        ftruncate(fd, 0)
        _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit {
        ftruncate(fd, 0)
        flock(fd, LOCK_UN)
        close(fd)
    }

    /// The current holder of the lock at `path`, or nil when it is free.
    /// Asks the kernel's lock table (`/proc/locks`) instead of taking the lock, even briefly: a
    /// `proctor status` must never make a starting run find the lock busy.
    public static func holder(at path: String) -> LockHolder? {
        if case .held(let holder) = state(at: path) { return holder }
        return nil
    }

    /// Whether the lock at `path` is held, and by whom when the holder wrote itself down (a lock taken
    /// by another tool, or a holder killed before it wrote, is held by an unknown holder: not free).
    public enum State: Equatable { case free, held(LockHolder?) }

    public static func state(at path: String) -> State {
        // Never waits: a FIFO planted under a lock's name (any user may, in /tmp) hung `proctor status`.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return .free }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG,
            isFlocked(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) else { return .free }
        return .held(readHolder(fd))
    }

    /// Whether `/proc/locks` lists a FLOCK on the file (fields: `N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ...`).
    private static func isFlocked(device: UInt64, inode: UInt64) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return false }
        let major = (device >> 8) & 0xfff | (device >> 32) & ~0xfff
        let minor = device & 0xff | (device >> 12) & ~0xff
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] == "FLOCK" else { continue }
            let id = fields[5].split(separator: ":")
            guard id.count == 3, let ino = UInt64(id[2]), ino == inode,
                let maj = UInt64(id[0], radix: 16), let min = UInt64(id[1], radix: 16), maj == major, min == minor
            else { continue }
            return true
        }
        return false
    }

    private static func readHolder(_ fd: Int32) -> LockHolder? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return try? JSONLines.decoder().decode(LockHolder.self, from: Data(buffer[0..<n]))
    }
}
