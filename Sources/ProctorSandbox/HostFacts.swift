import Foundation

/// What plan compilation needs to know about the host, gathered in one place so that the
/// compilation itself stays a pure function that tests can feed with fixed facts.
public struct HostFacts: Sendable {
    /// Host environment (only allowlisted names are ever passed on).
    public var environment: [String: String]
    /// Paths that exist on the host (checked with lstat: a symlink counts as existing).
    public var exists: @Sendable (String) -> Bool
    /// Workspace-relative paths of every file and directory in the workspace (not under `.git`).
    public var workspaceEntries: @Sendable () -> [String]
    /// For a command name, the interpreter installation outside the system mounts it needs:
    /// (prefix to mount read-only, bin directory to put first on PATH), or nil.
    public var interpreterPrefix: @Sendable (_ command: String, _ path: String) -> (prefix: String, bin: String)?

    public init(
        environment: [String: String], exists: @escaping @Sendable (String) -> Bool,
        workspaceEntries: @escaping @Sendable () -> [String],
        interpreterPrefix: @escaping @Sendable (String, String) -> (prefix: String, bin: String)?
    ) {
        self.environment = environment
        self.exists = exists
        self.workspaceEntries = workspaceEntries
        self.interpreterPrefix = interpreterPrefix
    }

    /// Facts read from this machine, for a workspace at `root`.
    public static func live(workspace root: String, systemDirs: [String]) -> HostFacts {
        HostFacts(
            environment: ProcessInfo.processInfo.environment,
            exists: { path in var st = stat(); return lstat(path, &st) == 0 },
            workspaceEntries: { listWorkspace(root) },
            interpreterPrefix: { command, path in InterpreterProbe.prefix(for: command, path: path, systemDirs: systemDirs) })
    }

    private static func listWorkspace(_ root: String) -> [String] {
        var result: [String] = []
        guard let walker = FileManager.default.enumerator(atPath: root) else { return result }
        while let entry = walker.nextObject() as? String {
            if entry == ".git" || entry == ".proctor" { walker.skipDescendants() }
            result.append(entry)
        }
        return result
    }
}

/// Finds where an interpreter such as a pyenv or conda python lives, so that its prefix can be
/// mounted read-only without mounting the home directory it sits in.
enum InterpreterProbe {
    nonisolated(unsafe) private static var cache: [String: (prefix: String, bin: String)?] = [:]
    private static let lock = NSLock()

    static func prefix(for command: String, path: String, systemDirs: [String]) -> (prefix: String, bin: String)? {
        lock.lock()
        defer { lock.unlock() }
        let key = command + "\0" + path
        if let hit = cache[key] { return hit }
        let found = compute(command, path: path, systemDirs: systemDirs)
        cache[key] = found
        return found
    }

    private static func compute(_ command: String, path: String, systemDirs: [String]) -> (prefix: String, bin: String)? {
        guard var resolved = locate(command, path: path) else { return nil }
        resolved = URL(fileURLWithPath: resolved).resolvingSymlinksInPath().path
        if isScript(resolved) {
            // A shim (pyenv, asdf) is a script that needs the whole home-based tool; ask the
            // interpreter itself where it lives instead, isolated (-I) and from "/" so that no
            // workspace file is imported on the host.
            guard URL(fileURLWithPath: command).lastPathComponent.hasPrefix("python"),
                let real = run([resolved, "-I", "-c", "import sys; print(sys.executable)"], path: path)
            else { return nil }
            resolved = URL(fileURLWithPath: real).resolvingSymlinksInPath().path
        }
        if systemDirs.contains(where: { resolved == $0 || resolved.hasPrefix($0 + "/") }) { return nil }
        let bin = URL(fileURLWithPath: resolved).deletingLastPathComponent()
        let prefix = bin.deletingLastPathComponent().path
        guard prefix != "/" && !prefix.isEmpty else { return nil }
        return (prefix, bin.path)
    }

    private static func locate(_ command: String, path: String) -> String? {
        if command.contains("/") { return command.hasPrefix("/") ? command : nil }
        for dir in path.split(separator: ":") where dir.hasPrefix("/") {
            let candidate = "\(dir)/\(command)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    private static func isScript(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 2)) == Data("#!".utf8)
    }

    private static func run(_ argv: [String], path: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        var env = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PYENV") || $0.key == "HOME" }
        env["PATH"] = path
        process.environment = env
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
