import Foundation
import ProctorConfig
import ProctorSandbox

/// `proctor exec`: one command under the workspace's policy, outside the research loop.
public enum ExecStep {
    /// `--audit-log FILE`: a file (new or not) in a directory that exists; proctor makes no
    /// directories the user did not (a typo would silently create a tree).
    static func checkAuditLog(_ path: String, workspace: String) throws {
        // `--audit-log prepare.py` appended to the locked evaluator.
        _ = try WorkspaceSteps.writablePath(path, option: "--audit-log", workspace: workspace, kind: .auditLog)
        var st = stat()
        let parent = path.contains("/") ? (path as NSString).deletingLastPathComponent : "."
        guard !path.isEmpty, stat(parent.isEmpty ? "/" : parent, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw LoopError(.refused, "--audit-log: expected a file in an existing directory, got \"\(path)\"")
        }
        if stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR {
            throw LoopError(.refused, "--audit-log: expected a file, but \(path) is a directory")
        }
    }

    /// Runs the command and returns the status `proctor exec` exits with. Throws for proctor's own failures (125).
    public static func run(workspace: String, phase: Phase, command: [String], auditLog: String?, seed: UInt64?,
                           wait: Bool, timeoutMs: Int64? = nil) throws -> Int32 {
        var env = try SandboxEnvironment.load(workspace: workspace)
        if let timeoutMs {
            // `--timeout` overrides the phase's own limit, as `timeout(1)`'s duration would.
            env.config.experiment.timeoutMs = timeoutMs
            env.config.evaluator.timeoutMs = timeoutMs
            env.config.agent.timeoutMs = timeoutMs
        }
        let runID = RunID.make(prefix: "exec")
        if let auditLog { try checkAuditLog(auditLog, workspace: env.config.root) }
        let audit = try AuditLog(path: auditLog ?? env.config.root + "/.proctor/audit.jsonl")
        var locks: [ExperimentLock] = []
        if phase == .experiment {
            // One experiment at a time, per workspace and per machine: timings are only honest alone.
            locks = try env.takeLocks(run: runID, iteration: nil, wait: wait, audit: audit, phase: phase)
        }
        defer { locks.removeAll() }
        var pinned: PinnedCopy?
        if phase == .evaluator { pinned = try PinnedCopy.forExec(env.config) }
        let result = try env.launch(phase: phase, command: command, seed: seed ?? env.config.experiment.seeds.first,
                                    pinnedDirectory: pinned?.directory, audit: audit,
                                    context: AuditContext(run: runID, iteration: nil, config: env.config), stdin: 0)
        return result.status
    }
}

/// A file of its own kind that a command writes where it is told, and may write directly in
/// `.proctor/` (next to the ledger, which it must not replace).
public enum OwnFile {
    case report    // `proctor report --out`: any `NAME.html`
    case auditLog  // `proctor exec --audit-log`: `audit.jsonl`

    /// Whether a file called `name` is of this kind.
    func named(_ name: String) -> Bool {
        switch self {
        case .report: return name.hasSuffix(".html") && name != ".html"
        case .auditLog: return name == "audit.jsonl"
        }
    }

    /// Its name in messages.
    var example: String { self == .report ? "NAME.html" : "audit.jsonl" }
}

extension WorkspaceSteps {
    /// Where a file proctor is told to write (`report --out`, `exec --audit-log`) really lands: its
    /// directory with links resolved, its own name as given. Refused inside the workspace, where it
    /// would be written over the workspace's own files (the locked evaluator, proctor.toml), and in
    /// `.proctor/` but as a file of `kind` directly in it: `--out .proctor/results.tsv` made the
    /// ledger a page, `.proctor/state.json` a run that cannot resume, and a file in
    /// `.proctor/memory/` would be read by every agent.
    public static func writablePath(_ given: String, option: String, workspace: String, kind: OwnFile) throws -> String {
        let root = URL(fileURLWithPath: workspace).resolvingSymlinksInPath().path
        let url = URL(fileURLWithPath: given).standardizedFileURL
        let directory = url.deletingLastPathComponent().resolvingSymlinksInPath().path
        let real = directory + "/" + url.lastPathComponent
        if directory == root + "/.proctor" {
            guard kind.named(url.lastPathComponent) else {
                throw LoopError(.refused, "\(option) \(real): in .proctor/, beside proctor's own files, only \(kind.example) may be written; name such a file, or one outside the workspace")
            }
        } else if real.hasPrefix(root + "/") {
            throw LoopError(.refused, "\(option) \(real): inside the workspace, over its own files; write it outside the workspace or as .proctor/\(kind.example)")
        }
        return real
    }
}
