import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// SIGINT, SIGTERM, SIGQUIT, SIGHUP and SIGPIPE: the process's only global state. The handler does two async-signal-safe
/// things, an atomic store and a one-byte `write` to a pipe that nobody drains, so the pipe stays
/// readable from the first signal on and every launch polling it sees the stop, however many
/// wait. The sandboxes themselves belong to their runs (`StopSwitch`), which stop them.
public enum StopSignal {
    private static let flag = Atomic<Bool>(false)
    /// Close-on-exec; the write end non-blocking, so that a burst of signals never blocks the handler.
    static let pipe: (read: Int32, write: Int32) = {
        var fds: [Int32] = [-1, -1]
        precondition(Glibc.pipe(&fds) == 0, "pipe: \(String(cString: strerror(errno)))")
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        return (fds[0], fds[1])
    }()

    /// Whether one of those signals arrived since `install`.
    public static var received: Bool { flag.load(ordering: .acquiring) }

    /// Installs the handler: finish or abort cleanly instead of dying mid-write, at SIGINT, SIGTERM,
    /// SIGQUIT (Ctrl-\, which Swift's runtime took for a crash: a backtrace dump, and the run went
    /// on), SIGHUP (the terminal went away: an ssh session that dropped) and SIGPIPE (the reader of the
    /// output went away: `proctor run | head`; the supervisor's own sockets send with MSG_NOSIGNAL,
    /// so no other pipe raises it). SIGHUP ignored when proctor started stays ignored: `nohup
    /// proctor run` keeps running when the terminal closes, as nohup means. SIGINT is caught even
    /// when ignored: a shell without job control starts `proctor run &` so, and `kill -INT` must
    /// still stop it. A handled signal is back to its default in every child after exec.
    public static func install() {
        // Initialised here, not lazily inside the handler (swift_once is not async-signal-safe).
        _ = pipe
        _ = received
        let handler: @convention(c) (Int32) -> Void = { _ in StopSignal.raise() }
        for sig in [SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE] {
            var current = sigaction()
            if sig == SIGHUP, sigaction(sig, nil, &current) == 0,
               unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
            { continue }
            signal(sig, handler)
        }
    }

    /// What the handler does; tests call it to stand in for a signal.
    static func raise() {
        flag.store(true, ordering: .releasing)
        var byte: UInt8 = 1
        _ = write(pipe.write, &byte, 1)
    }
}

/// One owner's stop (a run, its session agent): requested by the owner or by SIGINT/SIGTERM, and
/// by its parent's. A launch given the switch is stopped as soon as it is requested: SIGTERM to its
/// launcher, which stops everything in the sandbox (SIGKILL after the grace period), as on a timeout.
public final class StopSwitch: Sendable {
    private let flag = Atomic<Bool>(false)
    /// Written once by `request`, never drained (a level, like `StopSignal.pipe`).
    private let wake: PipePair
    private let parent: StopSwitch?

    public init(parent: StopSwitch? = nil) throws {
        wake = try PipePair()
        self.parent = parent
    }

    /// Whether this owner, an owner above it or a signal asked to stop.
    public var requested: Bool {
        flag.load(ordering: .acquiring) || parent?.requested == true || StopSignal.received
    }

    /// Stops this owner's running launches (and its children's); later ones are stopped at once.
    public func request() {
        guard !flag.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(wake.write.raw, &byte, 1)
    }

    /// Descriptors that are readable once a stop is requested.
    var descriptors: [Int32] {
        [wake.read.raw] + (parent?.descriptors ?? [StopSignal.pipe.read])
    }

    /// Starts watching the launcher `pid` until `done` is readable (or closed): SIGTERM to it once
    /// `stop` (or, without one, a signal) asks, or once `deadlineMs` passed (the launcher enforces
    /// the phase's timeout itself; this is for a launcher that cannot). SIGCONT with it, and SIGKILL
    /// if it is still there `graceMs` later: a launcher someone stopped (SIGSTOP) made proctor
    /// impossible to stop, and the run wait past every timeout. Wait on the semaphore before
    /// reaping the launcher, so that no kill reaches a pid reused after it.
    static func watch(_ pid: pid_t, stop: StopSwitch?, done: Int32, deadlineMs: Int64, graceMs: Int64) -> DispatchSemaphore {
        let finished = DispatchSemaphore(value: 0)
        let stops = stop?.descriptors ?? [StopSignal.pipe.read]
        let thread = Thread {
            defer { finished.signal() }
            func wait(_ ms: Int64) -> [pollfd] {
                var fds = (stops + [done]).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                let end = DispatchTime.now().uptimeNanoseconds + UInt64(max(ms, 0)) * 1_000_000
                while true {
                    let left = Int64(end) - Int64(DispatchTime.now().uptimeNanoseconds)
                    let rc = poll(&fds, nfds_t(fds.count), Int32(clamping: max(left / 1_000_000, 0)))
                    if rc >= 0 || errno != EINTR { return fds }
                }
            }
            let fds = wait(deadlineMs)
            guard fds.last!.revents == 0 else { return }  // done
            kill(pid, SIGTERM)
            kill(pid, SIGCONT)
            var doneOnly = [pollfd(fd: done, events: Int16(POLLIN), revents: 0)]
            while poll(&doneOnly, 1, Int32(clamping: graceMs + 2_000)) < 0 && errno == EINTR {}
            if doneOnly[0].revents == 0 { kill(pid, SIGKILL) }
        }
        thread.start()
        return finished
    }
}
