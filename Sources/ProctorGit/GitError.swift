import CGit2
import Foundation

/// A failure of a git operation: the libgit2 call that failed with its message, or a refusal by this module.
public enum GitError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A libgit2 function returned `code` (a negative `git_error_code`); `message` is `git_error_last()`.
    case libgit2(function: String, code: Int32, message: String)
    /// A patch parsed but does not apply to the working tree (`git_apply` failed).
    case patchDoesNotApply(message: String)
    /// A path that must not be used: absolute, `..`, inside `.git`, a symlink where a file is required, ...
    case unsafePath(path: String, reason: String)
    /// A file-system call failed (`operation` names the call, `path` is absolute).
    case system(operation: String, path: String, errno: Int32)

    /// `GIT_ENOTFOUND` from libgit2: the object, reference or path does not exist.
    public var isNotFound: Bool {
        if case .libgit2(_, let code, _) = self { return code == GIT_ENOTFOUND.rawValue }
        return false
    }

    public var description: String {
        switch self {
        case .libgit2(let function, let code, let message): "\(function): \(message) (code \(code))"
        case .patchDoesNotApply(let message): "patch does not apply: \(message)"
        case .unsafePath(let path, let reason): "refusing path '\(path)': \(reason)"
        case .system(let operation, let path, let errno): "\(operation) \(path): \(String(cString: strerror(errno)))"
        }
    }
}

/// `git_libgit2_init()` exactly once per process, before any other libgit2 call (Swift runs global
/// initialisers once, thread-safely).
let libgit2Initialized: Bool = git_libgit2_init() > 0

/// Throws `GitError.libgit2` naming `function` when `code` is negative; returns non-negative codes unchanged.
@discardableResult
func check(_ code: Int32, _ function: String) throws -> Int32 {
    guard code < 0 else { return code }
    throw lastError(function, code)
}

func lastError(_ function: String, _ code: Int32) -> GitError {
    let message = git_error_last().map { String(cString: $0.pointee.message) } ?? "no libgit2 message"
    return .libgit2(function: function, code: code, message: message)
}
