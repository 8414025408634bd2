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
    ///
    /// `within` (the only places that can differ: the files and directories a sandbox can write) makes the
    /// restore cost what changed, not the size of the tree: what `status` reports there is restored path
    /// by path, and `within` is walked for what status cannot see (empty directories, permissions); the
    /// rest is not looked at. HEAD must then be `commit`, whose tree the index already holds (proctor's
    /// commit and restore leave it so). `lineEndings`: as for `status`.
    public func restore(
        to commit: ObjectID, excluding excluded: [String] = [], keepingIgnored: ((String) -> Bool)? = nil,
        within: [String]? = nil, lineEndings: LineEndingScope? = nil
    ) throws {
        let tree = try tree(of: commit)
        defer { git_tree_free(tree) }
        let prefixes = excluded.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
        let keep = try keepingIgnored.map { accepts in
            { (path: String, isDirectory: Bool) throws -> Bool in try accepts(path) && self.isIgnored(path, directory: isDirectory) }
        }
        if let within, try head() == commit {
            try restoreChanged(tree, commit: commit, excluded: excluded, prefixes: prefixes, keepingIgnored: keepingIgnored,
                               keep: keep, within: within, lineEndings: lineEndings)
            return
        }
        // First clear everything checkout must not see: libgit2's own removal of untracked files is not
        // documented to leave links unfollowed, and checkout must never write through a planted link.
        let expected = try flatten(tree)
        let cached = try indexStamps()
        try prune(FileSystem.Directory.open(workdir), prefix: "", expected: expected, cached: cached, excluded: prefixes,
                  keep: keep)
        try checkout(tree, paths: nil)
        try resetIndex(to: tree)
    }

    /// The restore of what changed: every path `status` reports (the same comparison validation makes) is
    /// removed without following links, parents before children, then checked out again if `commit` has
    /// it; emptied untracked directories go; the `within` places are pruned whole.
    private func restoreChanged(
        _ tree: OpaquePointer, commit: ObjectID, excluded: [String], prefixes: [String], keepingIgnored: ((String) -> Bool)?,
        keep: ((String, Bool) throws -> Bool)?, within: [String], lineEndings: LineEndingScope?
    ) throws {
        // What changed, not by how many lines: no diff is made (`countingLines`).
        var changes = try status(against: commit, excluding: excluded, keepingIgnored: keepingIgnored, within: within,
                                 lineEndings: lineEndings, countingLines: { _ in false })
        let root = try FileSystem.Directory.open(workdir)
        if changes.contains(where: { $0.unreachable != nil }) {
            // Entries git cannot look at (too deep, unreadable): gone first, then git can look at the rest.
            for change in changes {
                if let (parent, name) = try FileSystem.openParent(of: change.path, in: root) { try parent.remove(name) }
            }
            changes = try status(against: commit, excluding: excluded, keepingIgnored: keepingIgnored, within: within,
                                 lineEndings: lineEndings, countingLines: { _ in false })
        }
        func inTree(_ path: String) throws -> Bool { try treeEntry(tree, path) != nil }
        // Parents before children: by depth, counted once per path (a comparison that split both
        // paths cost minutes on thousands of paths 85 directories deep).
        // Distinct by bytes: a `Set<String>` merged `café.py` precomposed with its decomposed twin
        // (one name to Swift, two files on disk), and the twin outlived the revert.
        var seen = Set<[UInt8]>()
        var byDepth: [(depth: Int, bytes: [UInt8], path: String)] = []
        for path in changes.flatMap({ [$0.path, $0.oldPath] }) {
            let bytes = Array(path.utf8)
            guard seen.insert(bytes).inserted else { continue }
            byDepth.append((bytes.filter { $0 == UInt8(ascii: "/") }.count, bytes, path))
        }
        byDepth.sort { $0.depth != $1.depth ? $0.depth < $1.depth : $0.bytes.lexicographicallyPrecedes($1.bytes) }
        let paths = byDepth.map(\.path)
        var restored: [String] = []
        for path in paths {
            // A parent that is gone or a link was itself a change, handled before (or removed with it).
            let located = try FileSystem.openParent(of: path, in: root)
            let expected = try treeEntry(tree, path)
            if let (parent, name) = located, let expected, expected.mode == .regular || expected.mode == .executable,
                try parent.entry(name)?.type == .regular {
                // A file still a file: its content in place (an agent's per-file bind survives).
                try overwrite(parent, name, id: expected.id, mode: expected.mode)
                continue
            }
            if let (parent, name) = located { try parent.remove(name) }
            if expected != nil { restored.append(path) }
        }
        // The index already holds `commit`'s entries for the rewritten files; their stat data is stale,
        // so status compares their content (a few files), and the index is not rewritten.
        // Untracked directories the removals emptied, deepest first; a non-empty one (excluded or kept
        // content beneath) stays.
        // Each path's directories, walked up until one already listed (whose own are listed too):
        // every prefix rebuilt from its components was quadratic in the depth, per path.
        var ancestors = Set<[UInt8]>()
        for path in paths {
            var directory = Array(path.utf8)
            while let slash = directory.lastIndex(of: UInt8(ascii: "/")) {
                directory.removeSubrange(slash...)
                if !ancestors.insert(directory).inserted { break }
            }
        }
        let parents = ancestors.sorted { $0.count > $1.count }.map { String(decoding: $0, as: UTF8.self) }
        for directory in parents where try !inTree(directory) {
            if let (parent, name) = try FileSystem.openParent(of: directory, in: root), try parent.entry(name)?.type == .directory,
                try parent.subdirectory(name).names().isEmpty {
                try parent.remove(name)
            }
        }
        // What status cannot see where a sandbox could write: empty directories, permissions.
        let expected = try flatten(tree, only: within)
        for place in within where !prefixes.contains(where: { place == $0 || place.hasPrefix($0 + "/") }) {
            guard let (parent, name) = try FileSystem.openParent(of: place, in: root), let entry = try parent.entry(name) else { continue }
            switch (expected[place]?.mode, entry.type) {
            case (.tree?, .directory):
                if entry.permissions != 0o755 { try parent.chmod(name, 0o755) }
                try prune(parent.subdirectory(name), prefix: place, expected: expected, cached: [:], excluded: prefixes, keep: keep)
            case (.regular?, .regular):
                if entry.permissions != 0o644 { try parent.chmod(name, 0o644) }
            case (.executable?, .regular):
                if entry.permissions != 0o755 { try parent.chmod(name, 0o755) }
            default:
                break  // anything else at that path was a change, restored above
            }
        }
        if !restored.isEmpty { try checkout(tree, paths: restored) }
    }

    /// The mode and blob of `path` in `tree`, nil when it has none.
    func treeEntry(_ tree: OpaquePointer, _ path: String) throws -> (mode: FileMode, id: ObjectID)? {
        var entry: OpaquePointer?
        guard git_tree_entry_bypath(&entry, tree, path) == 0 else { return nil }
        defer { git_tree_entry_free(entry) }
        return (FileMode(rawValue: git_tree_entry_filemode(entry).rawValue), ObjectID(git_tree_entry_id(entry).pointee))
    }

    /// Writes blob `id` into the existing regular file `name` in place, with the mode git gives `mode`.
    /// Replaced instead: a file with other names (a hard link someone made at the tracked path to a
    /// file elsewhere: written in place, the other file got the committed bytes and mode), and one a
    /// program runs from (ETXTBSY: a frozen session agent that made its editable file a program and
    /// runs it; the revert failed and stopped the run). The program keeps the old file.
    private func overwrite(_ parent: FileSystem.Directory, _ name: String, id: ObjectID, mode: FileMode) throws {
        let bytes = try blobBytes(id.oid)
        let permissions: UInt32 = mode == .executable ? 0o755 : 0o644
        func replace() throws {
            try parent.remove(name)
            try bytes.withUnsafeBytes { try parent.create(name, bytes: $0, mode: permissions) }
        }
        if try parent.entry(name)?.links ?? 1 > 1 { return try replace() }
        do {
            try bytes.withUnsafeBytes { try parent.overwrite(name, bytes: $0, mode: permissions) }
        } catch GitError.system(_, _, let code) where code == ETXTBSY {
            try replace()
        }
    }

    /// `flatten` of the entries at `places` and beneath them.
    func flatten(_ tree: OpaquePointer, only places: [String]) throws -> [String: (mode: FileMode, id: ObjectID)] {
        var entries: [String: (mode: FileMode, id: ObjectID)] = [:]
        for place in places {
            guard let entry = try treeEntry(tree, place) else { continue }
            entries[place] = entry
            guard entry.mode == .tree else { continue }
            var subtree: OpaquePointer?
            var oid = entry.id.oid
            try check(git_tree_lookup(&subtree, handle, &oid), "git_tree_lookup")
            defer { git_tree_free(subtree) }
            entries.merge(try flatten(subtree!, prefix: place + "/")) { $1 }
        }
        return entries
    }

    /// `git checkout --force` of `paths` (literal; nil: everything) from `tree`, missing files recreated.
    private func checkout(_ tree: OpaquePointer, paths: [String]?) throws {
        var options = git_checkout_options()
        try check(
            git_checkout_options_init(&options, UInt32(GIT_CHECKOUT_OPTIONS_VERSION)), "git_checkout_options_init")
        options.checkout_strategy = GIT_CHECKOUT_FORCE.rawValue | GIT_CHECKOUT_RECREATE_MISSING.rawValue
        // Checkout works on the repository's index and writes it: first the entries held in memory.
        git_index_free(try currentIndex())
        guard let paths else {
            try check(git_checkout_tree(handle, tree, &options), "git_checkout_tree")
            indexWritten()
            return
        }
        options.checkout_strategy |= GIT_CHECKOUT_DISABLE_PATHSPEC_MATCH.rawValue
        var strings: [UnsafeMutablePointer<CChar>?] = paths.map { strdup($0) }
        defer { strings.forEach { free($0) } }
        try strings.withUnsafeMutableBufferPointer { buffer in
            options.paths = git_strarray(strings: buffer.baseAddress, count: buffer.count)
            try check(git_checkout_tree(handle, tree, &options), "git_checkout_tree")
        }
        indexWritten()
    }

    /// Removes from `directory` whatever `expected` does not hold at that path and type, and resets the
    /// permissions of tracked files and directories.
    private func prune(
        _ directory: FileSystem.Directory, prefix: String, expected: [String: (mode: FileMode, id: ObjectID)],
        cached: [String: FileSystem.Stamp], excluded: [String], keep: ((String, Bool) throws -> Bool)?
    ) throws {
        // Names that are not UTF-8 are never in the tree: gone, unless the user's (ignored and kept).
        for entry in try directory.namesNotUTF8() {
            let path = prefix.isEmpty ? entry.shown : prefix + "/" + entry.shown
            if excluded.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) { continue }
            if let keep, try keep(path, entry.isDirectory) { continue }
            try directory.removeRaw(entry.raw)
        }
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
                // Checkout would trust the cached size and mtime and keep this file's content: write the
                // committed content in place (checkout then finds it unchanged).
                if let (mode, id) = expected[path] { try overwrite(directory, name, id: id, mode: mode) }
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
        let index = try currentIndex()
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
