import CGit2
import Foundation

extension Repository {
    /// The unified diff (git's format: `diff --git`, `--- a/x`, `+++ b/x`, hunks) that turns `commit`'s
    /// version of `paths` into the working tree's, untracked files included as new files and binary
    /// files as git binary patches, so that `apply(patch:)` on a tree at `commit` re-creates the change.
    /// `paths` are workspace-relative and matched exactly (no globs); list both sides of a rename. An
    /// empty `paths` gives an empty diff (never "everything": `.proctor/` and the outputs must not leak
    /// into a stored patch). Paths that did not change contribute nothing.
    public func diffText(against commit: ObjectID, paths: [String]) throws -> String {
        guard !paths.isEmpty else { return "" }
        let tree = try tree(of: commit)
        defer { git_tree_free(tree) }
        var options = git_diff_options()
        try check(git_diff_options_init(&options, UInt32(GIT_DIFF_OPTIONS_VERSION)), "git_diff_options_init")
        // Untracked content as added lines: a new file the agent wrote is part of its change. Ignored
        // files too, as `status(against:)` reports them (an ignore rule must not hide a change).
        options.flags =
            GIT_DIFF_INCLUDE_UNTRACKED.rawValue | GIT_DIFF_RECURSE_UNTRACKED_DIRS.rawValue
            | GIT_DIFF_SHOW_UNTRACKED_CONTENT.rawValue | GIT_DIFF_INCLUDE_IGNORED.rawValue
            | GIT_DIFF_RECURSE_IGNORED_DIRS.rawValue | GIT_DIFF_INCLUDE_TYPECHANGE.rawValue
            | GIT_DIFF_SHOW_BINARY.rawValue | GIT_DIFF_DISABLE_PATHSPEC_MATCH.rawValue
        let strings = paths.map { strdup($0) }
        defer { strings.forEach { free($0) } }
        var pointers = strings
        var diff: OpaquePointer?
        try pointers.withUnsafeMutableBufferPointer { buffer in
            options.pathspec = git_strarray(strings: buffer.baseAddress, count: buffer.count)
            try check(
                git_diff_tree_to_workdir_with_index(&diff, handle, tree, &options),
                "git_diff_tree_to_workdir_with_index")
        }
        defer { git_diff_free(diff) }
        var buffer = git_buf()
        defer { git_buf_dispose(&buffer) }
        try check(git_diff_to_buf(&buffer, diff, GIT_DIFF_FORMAT_PATCH), "git_diff_to_buf")
        guard let bytes = buffer.ptr, buffer.size > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: buffer.size), as: UTF8.self)
    }
}
