import Foundation

/// A failure of one of proctor's layers (issue 9, as `GitError`): a `Code` the command maps to an
/// exit status, the message `proctor` prints, and the `errno` of the system call that failed, taken
/// at the failure point. `SandboxError` here and ProctorLoop's `LoopError` are its layers.
public struct LayerError<Code: LayerErrorCode>: Error, CustomStringConvertible, Sendable, Equatable {
    public var code: Code
    public var description: String
    /// The failing call's `errno` (for `.io`), nil when no call failed or a write was only short.
    public var errno: Int32?

    public init(_ code: Code, _ description: String, errno: Int32? = nil) {
        self.code = code
        self.description = description
        self.errno = errno
    }

    /// `<call>: <strerror(errno)>`, e.g. "open lock /tmp/l: Permission denied". `errno` comes first so
    /// that it is read before the message is built.
    public static func io(_ errno: Int32, _ call: String) -> Self {
        Self(.io, "\(call): \(String(cString: strerror(errno)))", errno: errno)
    }
}

/// What the codes of every layer have: one for a system call that failed.
public protocol LayerErrorCode: Sendable, Equatable {
    static var io: Self { get }
}

/// A failure of the sandbox layer.
public typealias SandboxError = LayerError<SandboxErrorCode>

public enum SandboxErrorCode: LayerErrorCode {
    /// The request cannot become a launch plan: no command, a phase it does not take.
    case badPlan
    /// The workspace's `[files]` (globs that match hundreds of single files, many outputs, or under
    /// `--parallel` many git-ignored entries) need more mounts than the launcher takes: the user's
    /// to change, refused at start like a bad key.
    case mountLimit
    /// Part of proctor's installation is missing (the launcher, the bundled policies).
    case notInstalled
    /// Another process holds the experiment lock at `path`; `holder` as written in the lock file.
    case lockBusy(path: String, holder: LockHolder?)
    /// Something planted where proctor expects its own: a link or file in place of an output
    /// directory, links or special files in the outputs, a directory moved while it was walked.
    case planted
    /// The command would run another Python than the one it names on the host, or one the sandbox
    /// cannot see (issue 11), or a program its sandbox would not find (`checkProgram`): refused
    /// before anything runs, like a bad key.
    case interpreter
    /// `[executor] kind = "slurm"` cannot work here (a tool missing, the workspace not shared with
    /// the nodes, proctor not at the same path there, a setting Slurm cannot honour): refused at
    /// start, like a bad key (issue 14).
    case slurmRequirement
    /// A `PROCTOR_*` variable of the environment that cannot be what it names (`PROCTOR_MACHINE_SLOTS=abc`,
    /// `PROCTOR_MACHINE_LOCK` a directory): refused before anything runs, like a bad key.
    case hostSetting
    /// A Slurm command failed while the run was under way (`sbatch` refused a job).
    case slurm
    /// A system call failed; `errno` says why.
    case io
}
