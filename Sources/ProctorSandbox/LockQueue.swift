import Foundation

/// First come, first served for `--wait`: a blocking `flock` wakes its waiters in no promised order,
/// so four runs started one after another could run in any order, and a run could wait behind
/// later ones indefinitely. Each waiter holds a ticket, a file in `LOCK.queue/` named by the time it
/// asked, locked by its owner for as long as it waits: only the oldest live ticket tries the lock.
/// A waiter that dies loses its kernel lock on the ticket, so it is passed over (and its file
/// removed where permissions allow); nothing a crash leaves behind can block the queue.
struct LockQueue {
    let directory: String
    private let name: String
    private let fd: Int32

    /// Joins the queue of the lock at `lockPath`. `shared`: the machine lock's queue, which every user
    /// of the machine joins (a sticky, world-writable directory, like /tmp).
    init(lockPath: String, shared: Bool) throws {
        directory = lockPath + ".queue"
        if mkdir(directory, shared ? 0o1777 : 0o755) == 0 {
            chmod(directory, shared ? 0o1777 : 0o755)  // past the umask
        } else if errno != EEXIST {
            throw SandboxError.io(errno, "mkdir \(directory)")
        }
        var st = stat()
        guard lstat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw SandboxError.io(ENOTDIR, "lock queue \(directory) is not a directory")
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        // Sorts by the moment of asking; the pid breaks a tie.
        name = String(format: "%020lld-%010d", Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec), getpid())
        // Locked under a private name, then renamed into the queue: nobody sees it unlocked (dead).
        let staging = directory + "/.ticket-" + name
        unlink(staging)
        let fd = open(staging, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SandboxError.io(errno, "create ticket in \(directory)") }
        fchmod(fd, 0o644)  // others must open it to see that it is alive
        guard flock(fd, LOCK_EX) == 0, rename(staging, directory + "/" + name) == 0 else {
            let failure = errno
            close(fd)
            unlink(staging)
            throw SandboxError.io(failure, "ticket in \(directory)")
        }
        self.fd = fd
    }

    /// Whether no live ticket is older than ours. Dead tickets met on the way are removed.
    func isFirst() -> Bool {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for other in names where other < name && Self.isTicket(other) {
            if Self.isAlive(directory + "/" + other) { return false }
        }
        return true
    }

    /// Leaves the queue (the lock was taken, or waiting failed).
    func leave() {
        unlink(directory + "/" + name)
        close(fd)
    }

    private static func isTicket(_ name: String) -> Bool {
        name.utf8.count == 31 && name.utf8.allSatisfy { $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) }
    }

    /// A ticket is alive while its owner holds its lock; a free one belongs to a waiter that died.
    private static func isAlive(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return false }  // gone meanwhile: the lock was taken
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return false }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            unlink(path)  // may be another user's in the sticky machine queue: then it stays, ignored
            return false
        }
        return true
    }
}
