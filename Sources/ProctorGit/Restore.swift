import CGit2
import Foundation

extension Repository {
    /// Makes the working tree and the index exactly `commit`: tracked files get their committed content and
    /// mode (0644 or 0755), everything else is removed (untracked and ignored files, directories, links that
    /// replaced files), except `.git` and the paths under `excluded` prefixes (`[".proctor/", "outputs/"]`),
    /// which are not looked into. Removal never follows a link: a link pointing outside the workspace is
    /// removed as a link and its target is untouched. HEAD does not move.
    public func restore(to commit: ObjectID, excluding excluded: [String] = []) throws {
        let tree = try tree(of: commit)
        defer { git_tree_free(tree) }
        let expected = try flatten(tree)
        let prefixes = excluded.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
        // First clear everything checkout must not see: libgit2's own removal of untracked files is not
        // documented to leave links unfollowed, and checkout must never write through a planted link.
        try prune(FileSystem.Directory.open(workdir), prefix: "", expected: expected, excluded: prefixes)
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
        excluded: [String]
    ) throws {
        for name in try directory.names() {
            let path = prefix.isEmpty ? name : prefix + "/" + name
            if prefix.isEmpty, name == ".git" { continue }
            if excluded.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) { continue }
            guard let entry = try directory.entry(name) else { continue }
            let holdsExcluded = excluded.contains { $0.hasPrefix(path + "/") }
            switch (expected[path]?.mode, entry.type) {
            case (.tree?, .directory):
                if entry.permissions != 0o755 { try directory.chmod(name, 0o755) }
                try prune(directory.subdirectory(name), prefix: path, expected: expected, excluded: excluded)
            case (nil, .directory) where holdsExcluded:
                // An untracked parent of an excluded directory stays, emptied of everything else.
                try prune(directory.subdirectory(name), prefix: path, expected: expected, excluded: excluded)
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
}
