import Foundation
import ProctorConfig
import ProctorGit
import ProctorSandbox

/// A private, read-only copy of the locked files that the evaluator runs from.
public final class PinnedCopy: @unchecked Sendable {
    public let directory: String

    init(directory: String) {
        self.directory = directory
    }

    deinit {
        FileTree.removeDirectory(directory)
    }

    static func makeDirectory() throws -> String {
        try ScratchDirectory.make(in: NSTemporaryDirectory(), prefix: "proctor-pinned")
    }

    /// The evaluator's copy for `proctor exec --phase evaluator`: the locked files of the current
    /// run's base commit (or HEAD) from git's object store; a workspace without git history gets
    /// a copy of its working tree, with a warning.
    public static func forExec(_ config: WorkspaceConfig) throws -> PinnedCopy {
        guard let repo = try? Repository.open(at: config.root), let head = try? repo.head() else {
            Console.err("proctor: warning: \(config.root) has no git history; the evaluator runs from the working tree's locked files\n")
            return try fromWorkingTree(config)
        }
        let base = RunState.load(config.root).flatMap { try? repo.resolve($0.baseCommit) } ?? head
        let pins = try WorkspaceSteps.lockedHashes(config, repo: repo, commit: base)
        let copy = PinnedCopy(directory: try makeDirectory())
        try repo.materialize(pins.keys.sorted(), from: base, into: copy.directory)
        return copy
    }

    /// Copies the working tree's locked files.
    public static func fromWorkingTree(_ config: WorkspaceConfig) throws -> PinnedCopy {
        let copy = PinnedCopy(directory: try makeDirectory())
        for rel in WorkspaceSteps.lockedPaths(config) {
            let target = copy.directory + "/" + rel
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: config.root + "/" + rel, toPath: target)
        }
        return copy
    }
}

/// Private scratch directories (`mkdtemp`, mode 0700) whose names carry the creating process's pid,
/// so that the ones a killed proctor left behind can be recognised and removed by the next one.
enum ScratchDirectory {
    /// Where agents' private homes and session channels go: outside the workspace and outside /tmp
    /// (each sandbox mounts its own /tmp over it); `PROCTOR_AGENT_HOME_BASE` moves it.
    static var agentBase: String { ProcessInfo.processInfo.environment["PROCTOR_AGENT_HOME_BASE"] ?? "/var/tmp" }

    static func make(in base: String, prefix: String) throws -> String {
        sweep(in: base, prefix: prefix)
        var template = Array((base + "/" + prefix + "-\(getpid())-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw LoopError.io(errno, "mkdtemp in \(base)")
        }
        return String(cString: made)
    }

    /// Removes `PREFIX-PID-*` directories owned by this user whose process is gone (never following links).
    static func sweep(in base: String, prefix: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where name.hasPrefix(prefix + "-") {
            let rest = name.dropFirst(prefix.count + 1)
            guard let pid = Int32(rest.prefix { $0 != "-" }), pid > 0, kill(pid, 0) != 0, errno == ESRCH else { continue }
            let path = base + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid() else { continue }
            FileTree.removeDirectory(path)
        }
    }
}
