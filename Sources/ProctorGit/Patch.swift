import CGit2
import Foundation

extension Repository {
    /// The files a unified diff (`git diff` format) touches, read without applying it, so that a caller can
    /// refuse it first (see `PatchEntry.problem`). Throws when the text is not a patch libgit2 can parse.
    public static func patchEntries(_ patch: String) throws -> [PatchEntry] {
        precondition(libgit2Initialized)
        return try withParsedPatch(patch) { diff in
            (0..<git_diff_num_deltas(diff)).map { index in
                let delta = git_diff_get_delta(diff, index)!.pointee
                let newPath = delta.new_file.path.map { String(cString: $0) } ?? ""
                let oldPath = delta.old_file.path.map { String(cString: $0) } ?? newPath
                let kind: ChangeKind =
                    switch delta.status {
                    case GIT_DELTA_ADDED: .added
                    case GIT_DELTA_DELETED: .deleted
                    case GIT_DELTA_RENAMED, GIT_DELTA_COPIED: .renamed
                    case GIT_DELTA_TYPECHANGE: .typeChange
                    default: .modified
                    }
                return PatchEntry(
                    oldPath: oldPath, newPath: newPath.isEmpty ? oldPath : newPath, kind: kind,
                    oldMode: FileMode(rawValue: UInt32(delta.old_file.mode)),
                    newMode: FileMode(rawValue: UInt32(delta.new_file.mode)))
            }
        }
    }

    /// Applies a unified diff to the working tree only (the index and HEAD stay), all files or none.
    /// Refuses, before touching anything, a patch with an unsafe entry (`PatchEntry.problem`: `..`, absolute
    /// or `.git` paths, links, submodules, a path through a link in the working tree) with
    /// `GitError.unsafePath`; throws `GitError.patchDoesNotApply`
    /// when the patch's context does not match the files. Returns the entries applied.
    @discardableResult
    public func apply(patch: String) throws -> [PatchEntry] {
        let entries = try Self.patchEntries(patch)
        if let bad = entries.first(where: { $0.problem != nil }) {
            throw GitError.unsafePath(path: bad.newPath, reason: bad.problem!)
        }
        // libgit2 writes by path: a link already in the working tree on the way would be written through.
        let root = try FileSystem.Directory.open(workdir)
        for path in Set(entries.flatMap { [$0.oldPath, $0.newPath] }) {
            var directory = root
            let components = path.split(separator: "/").map(String.init)
            for (index, component) in components.enumerated() {
                guard let entry = try directory.entry(component) else { break }
                if entry.type == .symlink {
                    throw GitError.unsafePath(
                        path: path, reason: "'\(component)' in the working tree is a symbolic link")
                }
                guard index < components.count - 1, entry.type == .directory else { break }
                directory = try directory.subdirectory(component)
            }
        }
        try Self.withParsedPatch(patch) { diff in
            let code = git_apply(handle, diff, GIT_APPLY_LOCATION_WORKDIR, nil)
            guard code < 0 else { return }
            let error = lastError("git_apply", code)
            switch code {
            case GIT_EAPPLYFAIL.rawValue, GIT_ENOTFOUND.rawValue, GIT_EEXISTS.rawValue, GIT_ECONFLICT.rawValue:
                if case .libgit2(_, _, let message) = error { throw GitError.patchDoesNotApply(message: message) }
                throw error
            default:
                throw error
            }
        }
        return entries
    }

    private static func withParsedPatch<T>(_ patch: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        var diff: OpaquePointer?
        let bytes = Array(patch.utf8)
        _ = try bytes.withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { text in
                try check(git_diff_from_buffer(&diff, text.baseAddress, text.count), "git_diff_from_buffer")
            }
        }
        defer { git_diff_free(diff) }
        return try body(diff!)
    }
}
