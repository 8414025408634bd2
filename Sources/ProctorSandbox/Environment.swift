import Foundation
import ProctorConfig

/// A workspace ready to launch sandboxed commands: its configuration, its policy preset and the launcher.
public struct SandboxEnvironment: Sendable {
    public var config: WorkspaceConfig
    public var preset: PolicyPreset
    public var launcher: Launcher

    public init(config: WorkspaceConfig, preset: PolicyPreset, launcher: Launcher) {
        self.config = config
        self.preset = preset
        self.launcher = launcher
    }

    /// Reads `proctor.toml` and its preset and finds the launcher; every failure names its cause.
    public static func load(workspace: String) throws -> SandboxEnvironment {
        let config = try WorkspaceConfig.load(workspace: workspace)
        guard let policies = BundledData.policies else {
            throw PlanError(description: "cannot find proctor's policies/ folder (set PROCTOR_HOME to the directory holding it)")
        }
        let preset = try PolicyPreset.load(name: config.sandbox.policy, from: policies)
        return SandboxEnvironment(config: config, preset: preset, launcher: try Launcher.locate())
    }

    /// Takes the workspace lock, then the machine lock; a busy lock is audited and thrown.
    public func takeLocks(run: String, iteration: Int?, wait: Bool, audit: AuditLog?, phase: Phase) throws -> [ExperimentLock] {
        let holder = LockHolder(pid: getpid(), run: run, iteration: iteration, since: Date(), workspace: config.root)
        do {
            let workspace = try ExperimentLock(path: ExperimentLock.workspacePath(config.root), holder: holder, wait: wait)
            let machine = try ExperimentLock(path: ExperimentLock.machinePath, holder: holder, wait: wait)
            return [workspace, machine]
        } catch let busy as ExperimentLock.Busy {
            audit?.append(AuditRecord(run: run, iteration: iteration, phase: phase.rawValue, kind: "lock",
                                      decision: "denied", path: busy.path, detail: busy.description))
            throw busy
        }
    }

    /// Makes the experiment's writable directories, refusing any that is a symlink (planted to
    /// redirect the next run's writable mount).
    public func prepareOutputs(clear: Bool) throws {
        for dir in config.files.outputs {
            let path = config.root + "/" + dir
            var st = stat()
            if lstat(path, &st) == 0 {
                guard (st.st_mode & S_IFMT) == S_IFDIR else {
                    throw PlanError(description: "\(path) is not a plain directory (a symlink or file was planted); refusing to run")
                }
                if clear { try FileTree.removeContents(of: path) }
            } else {
                guard mkdir(path, 0o755) == 0 else {
                    throw PlanError(description: "mkdir \(path): \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    /// Compiles the plan for one command and runs it, printing unenforced limits on stderr.
    /// `stdin` nil means /dev/null (every step of the loop); `proctor exec` passes its own.
    public func launch(phase: Phase, command: [String], seed: UInt64?, pinnedDirectory: String? = nil,
                       agentHome: String? = nil, audit: AuditLog?, context: AuditContext,
                       stdin: Int32? = nil, stdout: Int32 = 1, stderr: Int32 = 2, adjust: (inout LaunchRequest) -> Void = { _ in }) throws -> SandboxResult {
        if phase == .experiment { try prepareOutputs(clear: false) }
        var request = LaunchRequest(config: config, preset: preset, phase: phase, command: command, seed: seed,
                                    pinnedDirectory: pinnedDirectory, agentHome: agentHome)
        adjust(&request)
        let plan = try LaunchPlan.compile(request, host: .live(workspace: config.root, systemDirs: preset.system))
        // Unattended steps read nothing: a terminal on stdin would be a channel to the user's session.
        let input = stdin ?? open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if stdin == nil { close(input) } }
        let result = try launcher.run(plan, audit: audit, context: context, stdin: input, stdout: stdout, stderr: stderr)
        for warning in result.warnings {
            FileHandle.standardError.write(Data("proctor: warning: not enforced as asked: \(warning)\n".utf8))
        }
        return result
    }
}

/// Run identifiers: sortable, readable, unique per process.
public enum RunID {
    public static func make(prefix: String? = nil) -> String {
        let stamp = UTCTime.compactStamp(Date())
        return (prefix.map { $0 + "-" } ?? "") + stamp + "-" + String(getpid())
    }
}

/// File-tree helpers that never follow symlinks.
public enum FileTree {
    /// Removes everything inside `dir` (not `dir` itself). Symlinks are removed as links.
    public static func removeContents(of dir: String) throws {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw PlanError(description: "open \(dir): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try removeContents(fd: fd, path: dir)
    }

    private static func removeContents(fd: Int32, path: String) throws {
        let dupfd = dup(fd)
        guard let stream = fdopendir(dupfd) else { close(dupfd); return }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            if name != "." && name != ".." { names.append(name) }
        }
        for name in names {
            var st = stat()
            guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 {
                    try removeContents(fd: child, path: path + "/" + name)
                    close(child)
                }
                if unlinkat(fd, name, AT_REMOVEDIR) != 0 {
                    throw PlanError(description: "rmdir \(path)/\(name): \(String(cString: strerror(errno)))")
                }
            } else if unlinkat(fd, name, 0) != 0 {
                throw PlanError(description: "unlink \(path)/\(name): \(String(cString: strerror(errno)))")
            }
        }
    }
}
