import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A file descriptor with one owner, closed exactly once: when the owner drops it (`deinit`),
/// closes it (`close()`) or hands the number on (`take()`). Non-copyable, as swift-system's and
/// swift-subprocess's are, so that an error path between open and hand-off cannot leak it and no
/// copy can close a number that a later `open` reused.
public struct OwnedDescriptor: ~Copyable, Sendable {
    /// The number, for calls that borrow it; the owner still closes it.
    public let raw: Int32

    /// Takes ownership of `raw` (which must be open).
    public init(_ raw: Int32) {
        precondition(raw >= 0, "OwnedDescriptor of a closed descriptor")
        self.raw = raw
    }

    /// Takes ownership of what a call returned, or throws naming the call with its errno.
    public init(checking raw: Int32, _ call: @autoclosure () -> String) throws {
        guard raw >= 0 else { throw SandboxError.io(errno, call()) }
        self.raw = raw
    }

    /// Gives up ownership: the caller (or the process it hands the number to) closes it.
    public consuming func take() -> Int32 {
        let raw = self.raw
        discard self
        return raw
    }

    /// Closes now (an end that must go before something else can happen, e.g. EOF on a pipe).
    public consuming func close() {}

    deinit {
        // EINTR from close leaves the descriptor closed on Linux: never retry it.
        _ = Glibc.close(raw)
    }
}

/// A pipe whose ends are close-on-exec and numbered at least `minimum`, so that `dup2` onto the
/// low numbers passed to a spawned helper never meets an end already sitting there.
@frozen public struct PipePair: ~Copyable, Sendable {
    public var read: OwnedDescriptor
    public var write: OwnedDescriptor

    public init(minimum: Int32 = 10) throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SandboxError.io(errno, "pipe") }
        // The originals go at the end of this scope; the copies are close-on-exec from the start.
        let first = OwnedDescriptor(fds[0])
        let second = OwnedDescriptor(fds[1])
        let read = try OwnedDescriptor(checking: fcntl(first.raw, F_DUPFD_CLOEXEC, minimum), "fcntl F_DUPFD_CLOEXEC")
        let write = try OwnedDescriptor(checking: fcntl(second.raw, F_DUPFD_CLOEXEC, minimum), "fcntl F_DUPFD_CLOEXEC")
        self.read = read
        self.write = write
    }
}
