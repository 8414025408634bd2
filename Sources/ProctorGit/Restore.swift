import CGit2
import Foundation

extension Repository {
    /// Makes the working tree and the index exactly `commit`: tracked files get their committed content and
    /// mode (0644 or 0755), everything else is removed (untracked and ignored files, directories, links that
    /// replaced files), except `.git` and the paths under `excluded` prefixes (`[".proctor/", "outputs/"]`),
    /// which are not looked into. Removal never follows a link: a link pointing outside the workspace is
    /// removed as a link and its target is untouched. HEAD does not move. Content decides, not the index's
    /// cached size and mtime (see `cacheWouldHide`). An untracked path that git ignores and
    /// `keepingIgnored` accepts is the user's (`data/`, `.venv/`) and stays, unentered.
    public func restore(
        to commit: ObjectID, excluding excluded: [String] = [], keepingIgnored: ((String) -> Bool)? = nil
    ) throws {
        let tree = try tree(of: commit)
        defer { git_tree_free(tree) }
        let expected = try flatten(tree)
        let prefixes = excluded.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
        // First clear everything checkout must not see: libgit2's own removal of untracked files is not
        // documented to leave links unfollowed, and checkout must never write through a planted link.
        let cached = try indexStamps()
        let keep = try keepingIgnored.map { accepts in
            { (path: String, isDirectory: Bool) throws -> Bool in try accepts(path) && self.isIgnored(path, directory: isDirectory) }
        }
        try prune(FileSystem.Directory.open(workdir), prefix: "", expected: expected, cached: cached, excluded: prefixes,
                  keep: keep)
        var options = git_checkout_options()
        try check(
            git_checkout_options_init(&options, UInt32(GIT_CHECKOUT_OPTIONS_VERSION)), "git_checkout_options_init")
        options.checkout_strategy = GIT_CHECKOUT_FORCE.rawValue | GIT_CHECKOUT_RECREATE_MISSING.rawValue
        try check(git_checkout_tree(handle, tree, &options), "git_checkout_tree")
        try resetIndex(to: tree)
    }

    /// Removes from `directory` whatever `expected` does not hold at that path and type, and resets the
    /// permissions of tracked files and directories.
    private func prune(
        _ directory: FileSystem.Directory, prefix: String, expected: [String: (mode: FileMode, id: ObjectID)],
        cached: [String: FileSystem.Stamp], excluded: [String], keep: ((String, Bool) throws -> Bool)?
    ) throws {
        for name in try directory.names() {
            let path = prefix.isEmpty ? name : prefix + "/" + name
            if prefix.isEmpty, name == ".git" { continue }
            if excluded.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) { continue }
            guard let entry = try directory.entry(name) else { continue }
            let holdsExcluded = excluded.contains { $0.hasPrefix(path + "/") }
            if expected[path] == nil, let keep, try keep(path, entry.type == .directory) { continue }
            switch (expected[path]?.mode, entry.type) {
            case (.tree?, .directory):
                if entry.permissions != 0o755 { try directory.chmod(name, 0o755) }
                try prune(directory.subdirectory(name), prefix: path, expected: expected, cached: cached, excluded: excluded,
                          keep: keep)
            case (nil, .directory) where holdsExcluded:
                // An untracked parent of an excluded directory stays, emptied of everything else.
                try prune(directory.subdirectory(name), prefix: path, expected: expected, cached: cached, excluded: excluded,
                          keep: keep)
            case (.regular?, .regular) where Self.cacheWouldHide(cached[path], entry.stamp),
                 (.executable?, .regular) where Self.cacheWouldHide(cached[path], entry.stamp):
                // Checkout would trust the cached size and mtime and keep this file's content:
                // remove it, and checkout writes it anew from the commit.
                try directory.remove(name)
            case (.regular?, .regular):
                if entry.permissions != 0o644 { try directory.chmod(name, 0o644) }
            case (.executable?, .regular):
                if entry.permissions != 0o755 { try directory.chmod(name, 0o755) }
            case (.symlink?, .symlink), (.submodule?, .directory):
                continue
            default:
                try directory.remove(name)
            }
        }
    }

    /// Whether checkout would take the file for unchanged from the index's cache (size and mtime match,
    /// which is all libgit2's checkout compares) although it was written since the cache was taken (its
    /// ctime or inode differ): a same-size edit whose times were put back. Such a file's content is not
    /// compared by checkout at all. A file that matches the cache entirely was not written since.
    static func cacheWouldHide(_ cached: FileSystem.Stamp?, _ file: FileSystem.Stamp) -> Bool {
        guard let cached else { return false }
        // The index keeps 32 bits of each field, as git does.
        let truncated = { (value: Int64) in value & 0xFFFF_FFFF }
        let seemsUnchanged =
            truncated(cached.size) == truncated(file.size) && cached.mtime.seconds == truncated(file.mtime.seconds)
            && (cached.mtime.nanoseconds == 0 || cached.mtime.nanoseconds == file.mtime.nanoseconds)
        guard seemsUnchanged else { return false }
        return cached.ctime.seconds != truncated(file.ctime.seconds) || cached.ctime.nanoseconds != file.ctime.nanoseconds
            || cached.inode & 0xFFFF_FFFF != file.inode & 0xFFFF_FFFF
    }

    /// Whether git's ignore rules (`.gitignore`, `.git/info/exclude`) ignore `path`.
    public func isIgnored(_ path: String, directory: Bool) throws -> Bool {
        var ignored: Int32 = 0
        try check(git_ignore_path_is_ignored(&ignored, handle, directory ? path + "/" : path), "git_ignore_path_is_ignored")
        return ignored == 1
    }

    /// The index's cached stat fields, by path.
    func indexStamps() throws -> [String: FileSystem.Stamp] {
        var index: OpaquePointer?
        try check(git_repository_index(&index, handle), "git_repository_index")
        defer { git_index_free(index) }
        var stamps: [String: FileSystem.Stamp] = [:]
        for position in 0..<git_index_entrycount(index) {
            guard let entry = git_index_get_byindex(index, position)?.pointee else { continue }
            stamps[String(cString: entry.path)] = FileSystem.Stamp(
                mtime: (Int64(entry.mtime.seconds) & 0xFFFF_FFFF, Int64(entry.mtime.nanoseconds)),
                ctime: (Int64(entry.ctime.seconds) & 0xFFFF_FFFF, Int64(entry.ctime.nanoseconds)),
                inode: UInt64(entry.ino), size: Int64(entry.file_size))
        }
        return stamps
    }
}
