import Foundation

/// A failure of the research loop's layer (issue 9: one error per layer, as `GitError`): a `Code` the
/// command maps to an exit status, the message `proctor` prints, and for I/O on proctor's own files
/// (the ledger, the run state, the pinned copy, the memory, logs, analyses) the failing call's `errno`.
public struct LoopError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: Sendable, Equatable {
        /// Bad input, refused before anything was written: a run's start (a dirty tree, nothing to
        /// resume, a branch that is gone or moved, locked files that differ from their pins), an
        /// analysis command, a nudge.
        case refused
        /// Ctrl-C (SIGINT, SIGTERM) before there was anything to continue from.
        case interrupted
        /// The run broke on the way (a baseline without a score, an agent failing again and again, ...).
        case failed
        /// A file of proctor's own could not be opened or written; `errno` says why.
        case io
    }

    public var code: Code
    public var description: String
    /// The failing call's `errno` (for `.io`), nil when no call failed or a write was short.
    public var errno: Int32?

    public init(_ code: Code, _ description: String, errno: Int32? = nil) {
        self.code = code
        self.description = description
        self.errno = errno
    }

    /// `<call>: <strerror(errno)>`, e.g. "open ledger in /ws/.proctor: Permission denied". `errno`
    /// comes first so that it is read before the message is built.
    public static func io(_ errno: Int32, _ call: String) -> LoopError {
        LoopError(.io, "\(call): \(String(cString: strerror(errno)))", errno: errno)
    }
}

/// `Session/` still spells a run failure `RunError("...")`: the spelling stays until those files next
/// change, so that concurrent work there merges cleanly (issue 9).
public typealias RunError = LoopError

extension LoopError {
    /// A run that broke on the way (`.failed`), no system call involved.
    public init(_ description: String) { self.init(.failed, description) }
}
