import Foundation
import ProctorConfig

/// What plan compilation needs to know about the host, gathered in one place so that the
/// compilation itself stays a pure function that tests can feed with fixed facts.
public struct HostFacts: Sendable {
    /// Host environment (only allowlisted names are ever passed on).
    public var environment: [String: String]
    /// Paths that exist on the host (checked with lstat: a symlink counts as existing).
    public var exists: @Sendable (String) -> Bool
    /// Workspace-relative paths of every file and directory in the workspace (not under `.git`).
    public var workspaceEntries: @Sendable () -> [String]
    /// The workspace entries where one of the globs could match (every match among them, and the
    /// directories on the way); a walk that enters only those directories.
    public var entriesReaching: @Sendable ([Glob]) -> [String]
    /// The same walk under another host directory (a slot's tree), its paths relative to it.
    public var entriesReachingUnder: @Sendable (String, [Glob]) -> [String]
    /// What a phase's `command[0]` runs and what of the host it needs (`PythonEnvironment.resolve`);
    /// nil when nothing is to be mounted for it. Throws to refuse the command.
    public var interpreter: @Sendable (InterpreterQuery) throws -> ResolvedInterpreter?
    /// The text of the symlink at a path, nil when it is not a symlink.
    public var symlinkTarget: @Sendable (String) -> String?
    /// The names in a host directory (empty when it cannot be read).
    public var directoryEntries: @Sendable (String) -> [String]
    /// The NVIDIA GPUs and driver files, asked only when a phase wants GPUs (`GPUHost.live`).
    public var gpus: @Sendable () -> GPUHost
    /// What a path named in `[experiment] devices` is.
    public var deviceKind: @Sendable (String) -> DeviceKind

    public init(
        environment: [String: String], exists: @escaping @Sendable (String) -> Bool,
        workspaceEntries: @escaping @Sendable () -> [String],
        interpreter: @escaping @Sendable (InterpreterQuery) throws -> ResolvedInterpreter?,
        symlinkTarget: @escaping @Sendable (String) -> String? = { _ in nil },
        directoryEntries: @escaping @Sendable (String) -> [String] = { _ in [] },
        entriesReaching: (@Sendable ([Glob]) -> [String])? = nil,
        entriesReachingUnder: @escaping @Sendable (String, [Glob]) -> [String] = { _, _ in [] },
        gpus: @escaping @Sendable () -> GPUHost = { GPUHost() },
        deviceKind: @escaping @Sendable (String) -> DeviceKind = { _ in .missing }
    ) {
        self.gpus = gpus
        self.deviceKind = deviceKind
        self.environment = environment
        self.exists = exists
        self.workspaceEntries = workspaceEntries
        self.entriesReaching = entriesReaching ?? { _ in workspaceEntries() }
        self.entriesReachingUnder = entriesReachingUnder
        self.interpreter = interpreter
        self.symlinkTarget = symlinkTarget
        self.directoryEntries = directoryEntries
    }

    /// Facts read from this machine, for a workspace at `root`.
    public static func live(workspace root: String) -> HostFacts {
        HostFacts(
            environment: ProcessInfo.processInfo.environment,
            exists: { path in var st = stat(); return lstat(path, &st) == 0 },
            workspaceEntries: { FileTree.entries(under: root) },
            interpreter: { query in try PythonEnvironment.resolve(query) },
            symlinkTarget: { path in try? FileManager.default.destinationOfSymbolicLink(atPath: path) },
            directoryEntries: { path in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] },
            entriesReaching: { globs in FileTree.entries(under: root, reaching: globs) },
            entriesReachingUnder: { dir, globs in FileTree.entries(under: dir, reaching: globs) },
            gpus: { GPUHost.live() }, deviceKind: { DeviceKind.of($0) })
    }

}

/// Asks a shim (pyenv, asdf) which interpreter it runs, for `PythonEnvironment`.
enum InterpreterProbe {
    /// The interpreter a shim (pyenv, asdf) runs: a script that needs the whole home-based tool, so
    /// the interpreter itself is asked where it lives, isolated (-I) and from "/" so that no workspace
    /// file is imported on the host. That costs a python start-up behind the shim (~160 ms with
    /// pyenv), so the answer is kept across processes (ProbeCache).
    static func shimTarget(_ command: String, shim: String, path: String, environment: [String: String]?,
                           probeCache: ProbeCache?) -> String? {
        var env = (environment ?? ProcessInfo.processInfo.environment).filter { $0.key.hasPrefix("PYENV") || $0.key == "HOME" }
        env["PATH"] = path
        let key = ProbeCache.key(command: command, shim: shim, environment: env)
        if let cached = probeCache?.lookup(key), isUsableInterpreter(cached) { return cached }
        guard let probed = run([shim, "-I", "-c", "import sys; print(sys.executable)"], environment: env) else { return nil }
        if isUsableInterpreter(probed) { probeCache?.store(key, probed) }
        return probed
    }

    /// An absolute path to an executable that is not itself a script (a cached answer is checked
    /// again before use: the interpreter may have been uninstalled since).
    private static func isUsableInterpreter(_ path: String) -> Bool {
        var st = stat()
        guard path.hasPrefix("/"), stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(path, X_OK) == 0
        else { return false }
        return !isScript(path)
    }

    static func isScript(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)  // a FIFO on PATH must not hang proctor
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var magic: (UInt8, UInt8) = (0, 0)
        let n = withUnsafeMutableBytes(of: &magic) { read(fd, $0.baseAddress, 2) }
        return n == 2 && magic == (0x23, 0x21)  // "#!"
    }

    private static func run(_ argv: [String], environment: [String: String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let text = String(data: data, encoding: .utf8) else { return nil }
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return line.hasPrefix("/") ? line : nil
    }
}

/// The shim-to-interpreter answers of `InterpreterProbe`, kept across processes in
/// `/tmp/proctor-<euid>/interpreters.json`, so that repeated `proctor exec -- python3 ...` do
/// not start the shim's python each time.
///
/// What it decides is mounted read-only into sandboxes, so it is only ever read from a directory
/// that is the current user's, not a symlink and closed to everyone else (mode 0700), and from a
/// regular file that is the user's and writable by no one else; anything else is ignored (and
/// the interpreter probed as if there were no cache). An entry is used only when everything the
/// probe's answer depends on is unchanged: the command, PATH, the shim (path, inode, size,
/// mtime), the probe's environment (HOME and PYENV_*), and the version files pyenv and asdf read
/// (`$PYENV_ROOT/version`, `$PYENV_ROOT/versions`, `/.python-version`, `~/.tool-versions`,
/// `/.tool-versions`); and for at most an hour.
struct ProbeCache: Sendable {
    /// The directory holding `interpreters.json`.
    var directory: String
    /// Entries older than this are probed again.
    var maxAgeSeconds: Double = 3600
    /// Entries kept (the most recent).
    var capacity = 64

    static let fileName = "interpreters.json"

    static var standard: ProbeCache { ProbeCache(directory: "/tmp/proctor-\(geteuid())") }

    /// Everything the probe's answer depends on, as one string.
    static func key(command: String, shim: String, environment: [String: String]) -> String {
        let home = environment["HOME"] ?? ""
        let pyenvRoot = environment["PYENV_ROOT"] ?? (home + "/.pyenv")
        var parts = ["v1", command, shim, fingerprint(shim)]
        parts += environment.sorted { $0.key < $1.key }.map { $0.key + "=" + $0.value }
        for file in [pyenvRoot + "/version", pyenvRoot + "/versions", "/.python-version", home + "/.tool-versions",
                     "/.tool-versions"] {
            parts += [file, fingerprint(file)]
        }
        return parts.joined(separator: "\u{0}")
    }

    /// Identity and version of a file, or "-" when it does not exist.
    private static func fingerprint(_ path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "-" }
        return "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec):\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
    }

    /// The cached interpreter for `key`, if any is fresh.
    func lookup(_ key: String) -> String? {
        guard let dir = openDirectory(create: false) else { return nil }
        defer { close(dir) }
        let now = Date().timeIntervalSince1970
        return readEntries(dir).first { $0.key == key && now - $0.time >= 0 && now - $0.time < maxAgeSeconds }?.executable
    }

    /// Records an answer (best effort: a cache that cannot be written is no error).
    func store(_ key: String, _ executable: String) {
        guard let dir = openDirectory(create: true) else { return }
        defer { close(dir) }
        let now = Date().timeIntervalSince1970
        var entries = readEntries(dir).filter { $0.key != key && now - $0.time >= 0 && now - $0.time < maxAgeSeconds }
        entries.append(Entry(key: key, executable: executable, time: now))
        entries = Array(entries.suffix(capacity))
        let json: [String: Any] = [
            "version": 1,
            "entries": entries.map { ["key": $0.key, "executable": $0.executable, "time": $0.time] as [String: Any] },
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) else { return }
        let temporary = Self.fileName + ".\(getpid()).tmp"
        let fd = openat(dir, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if written != data.count || renameat(dir, temporary, dir, Self.fileName) != 0 {
            unlinkat(dir, temporary, 0)
        }
    }

    struct Entry {
        var key: String
        var executable: String
        var time: Double
    }

    /// The directory, opened without following a symlink, if it is the user's and closed to others.
    private func openDirectory(create: Bool) -> Int32? {
        if create { mkdir(directory, 0o700) }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_uid == geteuid(), (st.st_mode & 0o077) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    private func readEntries(_ dir: Int32) -> [Entry] {
        let fd = openat(dir, Self.fileName, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid(), (st.st_mode & 0o022) == 0,
            st.st_size <= 1 << 20
        else { return [] }
        var data = Data(count: Int(st.st_size))
        let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n == Int(st.st_size),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            json["version"] as? Int == 1, let list = json["entries"] as? [[String: Any]]
        else { return [] }
        return list.compactMap { item in
            guard let key = item["key"] as? String, let executable = item["executable"] as? String,
                let time = item["time"] as? Double
            else { return nil }
            return Entry(key: key, executable: executable, time: time)
        }
    }
}
