import Foundation

/// A failure of the sandbox layer (issue 9: one error per layer, as `GitError`): what went wrong as
/// a `Code` the command maps to an exit status, the message `proctor` prints, and the `errno` of the
/// system call that failed, taken at the failure point.
public struct SandboxError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: Sendable, Equatable {
        /// The request cannot become a launch plan: no command, too many mounts, a phase it does not take.
        case badPlan
        /// Part of proctor's installation is missing (the launcher, the bundled policies).
        case notInstalled
        /// Another process holds the experiment lock at `path`; `holder` as written in the lock file.
        case lockBusy(path: String, holder: LockHolder?)
        /// Something planted where proctor expects its own: a link or file in place of an output
        /// directory, links or special files in the outputs, a directory moved while it was walked.
        case planted
        /// A system call failed; `errno` says why.
        case io
    }

    public var code: Code
    public var description: String
    /// The failing call's `errno` (for `.io`), nil when no call failed.
    public var errno: Int32?

    public init(_ code: Code, _ description: String, errno: Int32? = nil) {
        self.code = code
        self.description = description
        self.errno = errno
    }

    /// `<call>: <strerror(errno)>`, e.g. "open lock /tmp/l: Permission denied". `errno` comes first so
    /// that it is read before the message is built.
    public static func io(_ errno: Int32, _ call: String) -> SandboxError {
        SandboxError(.io, "\(call): \(String(cString: strerror(errno)))", errno: errno)
    }
}
