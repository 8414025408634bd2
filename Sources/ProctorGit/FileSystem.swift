import Foundation

/// Directory-descriptor based file operations that never follow a symbolic link below the root they start from:
/// the working tree was written by the agent and may hold links planted to point anywhere.
enum FileSystem {
    static let typeMask: UInt32 = 0o170000
    static let directoryType: UInt32 = 0o040000
    static let regularType: UInt32 = 0o100000
    static let symlinkType: UInt32 = 0o120000

    enum EntryType { case directory, regular, symlink, other }

    struct Entry {
        var type: EntryType
        var permissions: UInt32
        var size: Int64
        /// What a git index caches of a file to decide that it did not change since.
        var stamp = Stamp()
        /// Its number of names (hard links).
        var links: UInt64 = 1
    }

    /// The stat fields a git index entry caches. An agent can put a file's size and mtime back after
    /// changing its content; it cannot put back its ctime or keep its inode across a replacement.
    struct Stamp: Equatable {
        var mtime = (seconds: Int64(0), nanoseconds: Int64(0))
        var ctime = (seconds: Int64(0), nanoseconds: Int64(0))
        var inode: UInt64 = 0
        var size: Int64 = 0

        static func == (a: Stamp, b: Stamp) -> Bool {
            a.mtime == b.mtime && a.ctime == b.ctime && a.inode == b.inode && a.size == b.size
        }
    }

    /// An open directory descriptor, closed in `deinit`.
    final class Directory {
        let fd: Int32
        /// Absolute path, for error messages only.
        let path: String

        init(fd: Int32, path: String) {
            self.fd = fd
            self.path = path
        }

        deinit { close(fd) }

        /// Opens `path` itself (the caller's root; a link there is the caller's choice and is followed).
        static func open(_ path: String) throws -> Directory {
            let fd = Foundation.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw GitError.system(operation: "open", path: path, errno: errno) }
            return Directory(fd: fd, path: path)
        }

        func child(_ name: String) -> String { path.hasSuffix("/") ? path + name : path + "/" + name }

        /// The entry `name` without following a link; nil when it does not exist.
        func entry(_ name: String) throws -> Entry? {
            var info = stat()
            guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno == ENOENT || errno == ENOTDIR { return nil }
                throw GitError.system(operation: "fstatat", path: child(name), errno: errno)
            }
            let type: EntryType =
                switch UInt32(info.st_mode) & typeMask {
                case directoryType: .directory
                case regularType: .regular
                case symlinkType: .symlink
                default: .other
                }
            let stamp = Stamp(
                mtime: (Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)),
                ctime: (Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec)),
                inode: UInt64(info.st_ino), size: Int64(info.st_size))
            return Entry(type: type, permissions: UInt32(info.st_mode) & 0o7777, size: Int64(info.st_size), stamp: stamp,
                         links: UInt64(info.st_nlink))
        }

        /// Opens the subdirectory `name`, failing on a link (`O_NOFOLLOW`); creates it first when `create`.
        func subdirectory(_ name: String, create: Bool = false) throws -> Directory {
            if create, mkdirat(fd, name, 0o755) != 0, errno != EEXIST {
                throw GitError.system(operation: "mkdirat", path: child(name), errno: errno)
            }
            let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard sub >= 0 else { throw GitError.system(operation: "openat", path: child(name), errno: errno) }
            return Directory(fd: sub, path: child(name))
        }

        /// Names in the directory that are UTF-8, without `.` and `..` (see `namesNotUTF8`).
        func names() throws -> [String] {
            try Self.readNames(fd, path).compactMap { String(validatingCString: $0) }
        }

        private static func readNames(_ fd: Int32, _ path: String) throws -> [[CChar]] {
            try readEntries(fd, path).map(\.name)
        }

        /// Every entry as readdir gives it: its name's bytes (NUL-terminated) and whether it is a
        /// directory (readdir's type, or `fstatat` where the file system gives none; links are not).
        func entries() throws -> [(name: [CChar], isDirectory: Bool)] {
            try Self.readEntries(fd, path).map { entry in
                guard entry.type == UInt8(DT_UNKNOWN) else { return (entry.name, entry.type == UInt8(DT_DIR)) }
                var info = stat()
                let isDirectory = fstatat(fd, entry.name, &info, AT_SYMLINK_NOFOLLOW) == 0 && UInt32(info.st_mode) & typeMask == directoryType
                return (entry.name, isDirectory)
            }
        }

        /// Every entry as readdir gives it, with its type (readdir's, or `fstatat`'s where the file
        /// system gives none; a link is a link).
        func typedEntries() throws -> [(name: [CChar], type: EntryType)] {
            try Self.readEntries(fd, path).map { entry in
                switch Int32(entry.type) {
                case Int32(DT_DIR): return (entry.name, .directory)
                case Int32(DT_REG): return (entry.name, .regular)
                case Int32(DT_LNK): return (entry.name, .symlink)
                case Int32(DT_UNKNOWN):
                    var info = stat()
                    guard fstatat(fd, entry.name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return (entry.name, .other) }
                    switch UInt32(info.st_mode) & typeMask {
                    case directoryType: return (entry.name, .directory)
                    case regularType: return (entry.name, .regular)
                    case symlinkType: return (entry.name, .symlink)
                    default: return (entry.name, .other)
                    }
                default: return (entry.name, .other)
                }
            }
        }

        private static func readEntries(_ fd: Int32, _ path: String) throws -> [(name: [CChar], type: UInt8)] {
            let copy = dup(fd)
            guard copy >= 0, let stream = fdopendir(copy) else {
                if copy >= 0 { close(copy) }
                throw GitError.system(operation: "fdopendir", path: path, errno: errno)
            }
            defer { closedir(stream) }
            // The copy shares the descriptor's position with every earlier listing: from the start.
            rewinddir(stream)
            var names: [(name: [CChar], type: UInt8)] = []
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    let bytes = raw.bindMemory(to: CChar.self)
                    return Array(bytes.prefix(while: { $0 != 0 })) + [0]
                }
                if name != [46, 0], name != [46, 46, 0] { names.append((name, entry.pointee.d_type)) }
            }
            return names
        }

        /// The entries whose names are not UTF-8: each as decoding repairs it (for messages and ignore
        /// rules) and as readdir gave it. A String cannot hold such a name, so no path git reports or
        /// proctor restores reaches it: an agent's file named so outlived every revert, carrying state
        /// from one iteration to the next outside git, until `removeRaw` took it out.
        func namesNotUTF8() throws -> [(shown: String, raw: [CChar], isDirectory: Bool)] {
            try entries().compactMap { entry in
                String(validatingCString: entry.name) == nil ? (String(cString: entry.name), entry.name, entry.isDirectory) : nil
            }
        }

        /// Removes the entry named by `raw` (NUL-terminated bytes, as `namesNotUTF8` gives them) and,
        /// for a real directory, everything beneath it, never following a link. Without recursion and
        /// with two descriptors open at most: an agent can nest directories far deeper than a stack or
        /// the descriptor limit allows. Going back up uses `..`, checked against the directory it left.
        func removeRaw(_ raw: [CChar]) throws {
            func fail(_ operation: String, _ name: [CChar]) -> GitError {
                GitError.system(operation: operation, path: child(String(cString: name)), errno: errno)
            }
            func identity(_ fd: Int32) -> (UInt64, UInt64)? {
                var info = stat()
                return fstat(fd, &info) == 0 ? (UInt64(info.st_dev), UInt64(info.st_ino)) : nil
            }
            /// Opens directory `name` in `parent`, first giving its owner the bits to list and empty it
            /// (an agent may have made it unreadable to keep its contents).
            func enter(_ parent: Int32, _ name: [CChar], mode: mode_t) -> Int32 {
                if mode & 0o700 != 0o700 { fchmodat(parent, name, (mode & 0o7777) | 0o700, 0) }
                return openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            var info = stat()
            guard fstatat(fd, raw, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return }
            guard UInt32(info.st_mode) & typeMask == directoryType else {
                if unlinkat(fd, raw, 0) != 0, errno != ENOENT { throw fail("unlink", raw) }
                return
            }
            var current = enter(fd, raw, mode: info.st_mode)
            guard current >= 0 else { throw fail("openat", raw) }
            defer { close(current) }
            var names: [[CChar]] = [raw]  // from this directory down to `current`
            var parents: [(UInt64, UInt64)] = []  // the identity of each directory above `current`, below this one
            while true {
                var deeper: (name: [CChar], mode: mode_t)?
                for name in try Self.readNames(current, child(String(cString: raw))) {
                    guard fstatat(current, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                    if UInt32(info.st_mode) & typeMask == directoryType {
                        deeper = (name, info.st_mode)
                        break
                    }
                    if unlinkat(current, name, 0) != 0, errno != ENOENT { throw fail("unlink", name) }
                }
                if let deeper {
                    guard let here = identity(current) else { throw fail("fstat", deeper.name) }
                    let next = enter(current, deeper.name, mode: deeper.mode)
                    guard next >= 0 else { throw fail("openat", deeper.name) }
                    close(current)
                    current = next
                    parents.append(here)
                    names.append(deeper.name)
                    continue
                }
                // `current` is empty: up to its parent, and remove it there.
                let name = names.removeLast()
                guard let expected = parents.popLast() else {
                    if unlinkat(fd, name, AT_REMOVEDIR) != 0, errno != ENOENT { throw fail("rmdir", name) }
                    return
                }
                let parent = openat(current, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard parent >= 0 else { throw fail("openat ..", name) }
                close(current)
                current = parent
                guard let found = identity(current), found == expected else {
                    throw GitError.system(operation: "rmdir (a directory moved while it was removed)", path: child(String(cString: raw)), errno: EBUSY)
                }
                if unlinkat(current, name, AT_REMOVEDIR) != 0, errno != ENOENT { throw fail("rmdir", name) }
            }
        }

        /// The entry's own mode, never a link's target's (a session agent racing the revert could
        /// put a link to a host file where the file was).
        func chmod(_ name: String, _ mode: UInt32) throws {
            guard fchmodat(fd, name, mode_t(mode), AT_SYMLINK_NOFOLLOW) == 0 else {
                throw GitError.system(operation: "fchmodat", path: child(name), errno: errno)
            }
        }

        /// Removes `name` and, for a real directory, everything beneath it. A link is removed as a link.
        func remove(_ name: String) throws {
            try removeRaw(Array(name.utf8CString))
        }

        /// The bytes of the regular file `name`, opened without following a link.
        func read(_ name: String) throws -> [UInt8] {
            let file = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard file >= 0 else { throw GitError.system(operation: "openat", path: child(name), errno: errno) }
            defer { close(file) }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = chunk.withUnsafeMutableBytes { Foundation.read(file, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count >= 0 else { throw GitError.system(operation: "read", path: child(name), errno: errno) }
                if count == 0 { return bytes }
                bytes.append(contentsOf: chunk[0..<count])
            }
        }

        /// The target of the link `name`.
        func readLink(_ name: String) throws -> [UInt8] {
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = buffer.withUnsafeMutableBytes { readlinkat(fd, name, $0.baseAddress!, $0.count) }
            guard count >= 0 else { throw GitError.system(operation: "readlinkat", path: child(name), errno: errno) }
            return Array(buffer[0..<count])
        }

        /// Creates the new file `name` (never replacing anything) with `bytes` and exactly `mode`.
        func create(_ name: String, bytes: UnsafeRawBufferPointer, mode: UInt32) throws {
            let file = openat(fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(0o600))
            guard file >= 0 else { throw GitError.system(operation: "openat", path: child(name), errno: errno) }
            defer { close(file) }
            try fill(file, name, bytes: bytes, mode: mode)
        }

        /// Rewrites the existing regular file `name` in place (same inode: a bind mount of it in a running
        /// sandbox stays; unlinking it would detach that mount) with `bytes` and exactly `mode`. Never
        /// follows a link, never opens a FIFO or device.
        func overwrite(_ name: String, bytes: UnsafeRawBufferPointer, mode: UInt32) throws {
            let file = openat(fd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard file >= 0 else { throw GitError.system(operation: "openat", path: child(name), errno: errno) }
            defer { close(file) }
            var info = stat()
            guard fstat(file, &info) == 0, UInt32(info.st_mode) & typeMask == regularType else {
                throw GitError.system(operation: "overwrite (not a regular file)", path: child(name), errno: EINVAL)
            }
            guard ftruncate(file, 0) == 0 else { throw GitError.system(operation: "ftruncate", path: child(name), errno: errno) }
            try fill(file, name, bytes: bytes, mode: mode)
        }

        private func fill(_ file: Int32, _ name: String, bytes: UnsafeRawBufferPointer, mode: UInt32) throws {
            var offset = 0
            while offset < bytes.count {
                let count = write(file, bytes.baseAddress! + offset, bytes.count - offset)
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { throw GitError.system(operation: "write", path: child(name), errno: errno) }
                offset += count
            }
            // fchmod after writing: the umask must not decide the pinned copy's mode, and 0444 cannot be written.
            guard fchmod(file, mode_t(mode)) == 0 else {
                throw GitError.system(operation: "fchmod", path: child(name), errno: errno)
            }
        }
    }

    /// Opens the directory at the workspace-relative `path` below `root`, one component at a time without
    /// following links; nil when a component is missing or is not a real directory.
    static func openParent(of path: String, in root: Directory) throws -> (Directory, String)? {
        var components = path.split(separator: "/").map(String.init)
        guard let name = components.popLast() else { return nil }
        var directory = root
        for component in components {
            guard try directory.entry(component)?.type == .directory else { return nil }
            directory = try directory.subdirectory(component)
        }
        return (directory, name)
    }
}
