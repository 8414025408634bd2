#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The files an in-process agent (`http`, `mutate`) may change, and the only way it touches them.
///
/// Every path is checked lexically against the context's editable and notes files before any
/// byte is read or written, then opened one component at a time from the workspace root with
/// `O_NOFOLLOW`, so a symlink anywhere in the path (a planted `train.py -> prepare.py`, or a
/// directory link out of the workspace) is refused rather than followed. Files are changed in
/// place: opened without `O_CREAT`, checked to be regular files with a single link (a hard link
/// to the evaluator would otherwise be written through), then truncated and rewritten. Only
/// missing notes files are created, with `O_CREAT | O_EXCL`.
struct WorkspaceFiles {
    let root: String
    let editable: Set<String>
    let notes: Set<String>

    init(root: String, editable: some Sequence<String>, notes: some Sequence<String>) {
        self.root = root
        self.editable = Set(editable)
        self.notes = Set(notes)
    }

    init(_ context: AgentContext) {
        self.init(root: context.workspace, editable: context.editableFiles.keys, notes: context.notesFiles)
    }

    /// The path as the allow-lists spell it (a single leading `./` dropped).
    func normalized(_ path: String) -> String {
        path.hasPrefix("./") ? String(path.dropFirst(2)) : path
    }

    /// Why the agent may not write `path`, or nil when it may. Purely lexical.
    func violation(_ rawPath: String) -> String? {
        let path = normalized(rawPath)
        if path.isEmpty { return "empty path" }
        if path.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return "control character in path" }
        if path.hasPrefix("/") || path.hasPrefix("~") { return "absolute path" }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        if components.contains("..") { return "path leaves the workspace" }
        if components.contains(where: { $0.lowercased() == ".git" }) { return ".git is never writable" }
        if components.contains(where: { $0.isEmpty || $0 == "." }) { return "path is not normalised" }
        // On the bytes: Swift's string equality takes `cafe\u{301}.md` for `café.md`, and the file
        // opened would be the answer's spelling, another file.
        if !editable.contains(where: { $0.utf8.elementsEqual(path.utf8) }) && !notes.contains(where: { $0.utf8.elementsEqual(path.utf8) }) {
            return "not an editable or notes file"
        }
        return nil
    }

    /// Throws `rejected` with every path in `paths` the agent may not write; its reason names the
    /// first twenty and counts the rest (an answer of 80,000 such paths wrote each one's audit line
    /// with all of them in it: 82 GB of audit log).
    func checkAll(_ paths: [String]) throws(AgentError) {
        var bad: [(String, String)] = []
        var seen = Set<[UInt8]>()  // by bytes: canonically equivalent names are different files
        for path in paths where seen.insert(Array(path.utf8)).inserted {
            if let reason = violation(path) { bad.append((path, reason)) }
        }
        guard bad.isEmpty else {
            var list = bad.prefix(20).map { "\($0.0) (\($0.1))" }.joined(separator: ", ")
            if bad.count > 20 { list += " and \(bad.count - 20) more" }
            throw AgentError.rejected(reason: "the answer touches forbidden paths: \(list)", paths: bad.map(\.0))
        }
    }

    /// The current bytes of `path`, or nil when it does not exist (possible for notes files only).
    func contents(of rawPath: String) throws(AgentError) -> [UInt8]? {
        let path = normalized(rawPath)
        try checkAll([path])
        guard let fd = try openBelowRoot(path, flags: O_RDONLY | O_NONBLOCK) else {
            if notes.contains(path) { return nil }
            throw AgentError.rejected(reason: "\(path) does not exist", paths: [path])
        }
        defer { close(fd) }
        try checkRegular(fd, path)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw AgentError.failed(reason: "read \(absolute(path)): \(errnoName())")
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }

    /// Replaces the contents of `path` with `bytes`, in place.
    func replace(_ rawPath: String, with bytes: [UInt8]) throws(AgentError) {
        let path = normalized(rawPath)
        try checkAll([path])
        // No O_TRUNC here: the file is truncated only after fstat shows a regular, singly linked file.
        var descriptor = try openBelowRoot(path, flags: O_WRONLY | O_NONBLOCK)
        if descriptor == nil {
            guard notes.contains(path) else {
                throw AgentError.rejected(reason: "\(path) does not exist and is not a notes file", paths: [path])
            }
            descriptor = try openBelowRoot(path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        }
        guard let fd = descriptor else {
            // Nil only for ENOENT: a new notes file in a directory that is not there, the answer's
            // doing, not a failure of the agent (five in a row stop the run).
            throw AgentError.rejected(reason: "\(path): its directory does not exist (a new notes file goes in one that does)", paths: [path])
        }
        defer { close(fd) }
        try checkRegular(fd, path)
        while ftruncate(fd, 0) != 0 {
            if errno != EINTR { throw AgentError.failed(reason: "ftruncate \(absolute(path)): \(errnoName())") }
        }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw AgentError.failed(reason: "write \(absolute(path)): \(errnoName())")
            }
            offset += written
        }
    }

    private func absolute(_ path: String) -> String {
        root.hasSuffix("/") ? root + path : root + "/" + path
    }

    /// Opens `path` below the root without following any symlink; nil when the last component
    /// does not exist (ENOENT), throws for anything else.
    private func openBelowRoot(_ path: String, flags: Int32, mode: mode_t = 0) throws(AgentError) -> Int32? {
        var dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw AgentError.failed(reason: "open workspace \(root): \(errnoName())") }
        defer { close(dir) }
        let components = path.split(separator: "/").map(String.init)
        for component in components.dropLast() {
            let next = openat(dir, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 {
                let code = errno
                if code == ELOOP || code == ENOTDIR {
                    throw AgentError.rejected(
                        reason: "\(path): \(component) is not a plain directory (symlink?)", paths: [path])
                }
                if code == ENOENT { return nil }
                throw AgentError.failed(reason: "open \(absolute(path)): \(errnoName(code))")
            }
            close(dir)
            dir = next
        }
        let fd = openat(dir, components.last ?? "", flags | O_NOFOLLOW | O_CLOEXEC, mode)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return nil }
            if code == ELOOP || code == EMLINK {
                throw AgentError.rejected(reason: "\(path) is a symlink", paths: [path])
            }
            if code == EEXIST {
                throw AgentError.rejected(reason: "\(path) appeared while being created", paths: [path])
            }
            throw AgentError.failed(reason: "open \(absolute(path)): \(errnoName(code))")
        }
        return fd
    }

    private func checkRegular(_ fd: Int32, _ path: String) throws(AgentError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw AgentError.failed(reason: "fstat \(absolute(path)): \(errnoName())") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw AgentError.rejected(reason: "\(path) is not a regular file", paths: [path])
        }
        guard info.st_nlink <= 1 else {
            throw AgentError.rejected(reason: "\(path) has \(info.st_nlink) hard links", paths: [path])
        }
    }
}

/// `ENOENT (No such file or directory)` for the current or given errno.
func errnoName(_ code: Int32 = errno) -> String {
    let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EACCES: "EACCES", EEXIST: "EEXIST", ENOTDIR: "ENOTDIR",
        EISDIR: "EISDIR", ELOOP: "ELOOP", ENOSPC: "ENOSPC", EROFS: "EROFS", EINVAL: "EINVAL", EIO: "EIO",
    ]
    let message = String(cString: strerror(code))
    return "\(names[code] ?? "errno \(code)") (\(message))"
}
