import CGit2
import Foundation

/// A git object id (SHA-1), held as 40 lowercase hex digits.
public struct ObjectID: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The 40 hex digits.
    public let hex: String

    /// Parses a full 40-digit hex id; nil when `hex` is not one.
    public init?(hex: String) {
        guard hex.utf8.count == 40, hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
        else { return nil }
        self.hex = hex
    }

    init(_ oid: git_oid) {
        var oid = oid
        var buffer = [CChar](repeating: 0, count: 41)
        git_oid_tostr(&buffer, buffer.count, &oid)
        hex = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var oid: git_oid {
        var oid = git_oid()
        _ = git_oid_fromstr(&oid, hex)
        return oid
    }

    /// The first 12 digits, for logs and messages.
    public var short: String { String(hex.prefix(12)) }
    public var description: String { hex }
}

/// A git file mode as stored in trees and the index.
public struct FileMode: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// No file on this side of a change (added or deleted).
    public static let absent = FileMode(rawValue: 0)
    /// A directory.
    public static let tree = FileMode(rawValue: 0o040000)
    /// A regular, non-executable file.
    public static let regular = FileMode(rawValue: 0o100644)
    /// A regular executable file.
    public static let executable = FileMode(rawValue: 0o100755)
    /// A symbolic link; the blob holds the link's target.
    public static let symlink = FileMode(rawValue: 0o120000)
    /// A submodule (gitlink): a commit of another repository.
    public static let submodule = FileMode(rawValue: 0o160000)

    public var description: String { String(rawValue, radix: 8) }
}

/// How a path differs between a commit and the working tree.
public enum ChangeKind: String, Sendable, Hashable, Codable {
    case added, modified, deleted, renamed, typeChange
}

/// One changed path of the working tree relative to a commit (see `Repository.status(against:excluding:)`).
public struct Change: Sendable, Hashable, Codable {
    /// Workspace-relative path on the new side (the old path for deletions).
    public var path: String
    /// The path in the commit; differs from `path` only for renames.
    public var oldPath: String
    public var kind: ChangeKind
    /// `.absent` for added files.
    public var oldMode: FileMode
    /// `.absent` for deleted files.
    public var newMode: FileMode
    /// Either side holds binary content (NUL bytes, as git decides).
    public var isBinary: Bool
    /// Either side is a symbolic link.
    public var isSymlink: Bool
    /// Either side is a submodule, or the new side is a directory holding its own git repository.
    public var isSubmodule: Bool
    /// Lines added and removed (0 for binary content).
    public var addedLines: Int
    public var removedLines: Int
    /// Size in bytes of the new side (0 when deleted).
    public var newSize: Int64
    /// How many lines more the changed lines count for the diff-line cap because they are long: a
    /// line of n bytes counts as ceil(n / `Change.lineWidth`) lines, so that a 900 KB one-line blob
    /// (`exec(b64decode("..."))`) is not "one changed line".
    public var longLineExtra: Int = 0
    /// A git attribute that rewrites the file in git's view of it (`ident`), nil for none: its diff
    /// and line counts are not of its bytes (`Repository.rewritingAttribute`).
    public var rewritingAttribute: String?
    /// The name (either side's) is not UTF-8: `path` is it repaired (U+FFFD for each bad byte), no
    /// file's name, and nothing else about the change was read.
    public var nameIsNotUTF8: Bool?
    /// Why git cannot look at it (nested too deep, too long a path, a directory that cannot be
    /// read: `Repository.invisibleEntries`), nil when it can: nothing else about it, nor about the
    /// rest of the tree, was read.
    public var unreachable: String?
    /// Something git keeps nothing of (an empty directory, a FIFO, socket or device), what it is
    /// (`Repository.invisibleEntries`); nil for a file git sees.
    public var untrackable: String?
    /// The bytes of a changed line that count as one line for the diff-line cap.
    public static let lineWidth = 200

    public init(
        path: String, oldPath: String? = nil, kind: ChangeKind, oldMode: FileMode = .regular,
        newMode: FileMode = .regular, isBinary: Bool = false, isSymlink: Bool = false, isSubmodule: Bool = false,
        addedLines: Int = 0, removedLines: Int = 0, newSize: Int64 = 0
    ) {
        self.path = path
        self.oldPath = oldPath ?? path
        self.kind = kind
        self.oldMode = oldMode
        self.newMode = newMode
        self.isBinary = isBinary
        self.isSymlink = isSymlink
        self.isSubmodule = isSubmodule
        self.addedLines = addedLines
        self.removedLines = removedLines
        self.newSize = newSize
    }
}

/// A commit's id, message and place in history.
public struct CommitInfo: Sendable, Hashable {
    public var id: ObjectID
    /// The full message.
    public var message: String
    /// The first paragraph of the message, on one line.
    public var summary: String
    public var parents: [ObjectID]
    /// Committer time.
    public var date: Date
}

/// One file a unified diff touches, read before applying it (see `Repository.patchEntries(_:)`).
public struct PatchEntry: Sendable, Hashable {
    /// Path before the change (`/dev/null` sides are reported as the other path).
    public var oldPath: String
    /// Path after the change.
    public var newPath: String
    public var kind: ChangeKind
    public var oldMode: FileMode
    public var newMode: FileMode

    /// Why applying this entry would be unsafe (a path outside the workspace or inside `.git`, a symlink or
    /// submodule mode); nil when it is an ordinary file edit.
    public var problem: String? {
        for path in Set([oldPath, newPath]) {
            if let reason = WorkspacePath.problem(path) { return "\(path): \(reason)" }
        }
        for mode in [oldMode, newMode] where mode == .symlink || mode == .submodule || mode == .tree {
            return "\(newPath): mode \(mode) is not a regular file"
        }
        return nil
    }
}

/// Lexical checks of workspace-relative paths that come from untrusted input (patches, configuration).
public enum WorkspacePath {
    /// Why `path` may not name a file inside the workspace: empty, absolute, a `..` or `.git` component,
    /// a backslash or control character. Nil when it is a plain relative path.
    public static func problem(_ path: String) -> String? {
        if path.isEmpty { return "empty path" }
        if path.hasPrefix("/") { return "absolute path" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "\\" || $0.value == 0x7f }) {
            return "control character or backslash in path"
        }
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            if component == ".." { return "'..' component" }
            if component.isEmpty || component == "." { return "empty or '.' component" }
            // Case-insensitive: `.GIT` is `.git` on case-folding file systems.
            if component.lowercased() == ".git" { return "inside .git" }
        }
        return nil
    }
}
