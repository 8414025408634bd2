import Foundation
import ProctorSandbox

/// A failure of the research loop's layer (issue 9): for I/O on proctor's own files (the ledger, the
/// run state, the pinned copy, the memory, logs, analyses) with the failing call's `errno`.
public typealias LoopError = LayerError<LoopErrorCode>

public enum LoopErrorCode: LayerErrorCode {
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

extension LayerError where Code == LoopErrorCode {
    /// A run that broke on the way (`.failed`), no system call involved.
    public init(_ description: String) { self.init(.failed, description) }
}
