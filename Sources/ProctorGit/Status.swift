import CGit2
import Foundation
import ProctorConfig

/// The tracked files a status also reads for changes git's line-ending conversion hides
/// (`Repository.lineEndingChanges`): those beneath `within` (nil: anywhere) that `includes` accepts.
public struct LineEndingScope {
    public var within: [String]?
    public var includes: (String) -> Bool

    public init(within: [String]?, includes: @escaping (String) -> Bool) {
        self.within = within
        self.includes = includes
    }
}

extension Repository {
    /// How the working tree differs from `commit`: every added, modified, deleted, renamed or type-changed
    /// path, untracked and `.gitignore`d files included (an ignore rule must not hide a change), except the
    /// paths under `excluded` prefixes (`[".proctor/", "outputs/"]`: a prefix names a directory with or
    /// without its trailing `/`) and `.git`. Renames are detected, also onto untracked files. A directory
    /// holding its own repository is one change with `isSubmodule` set. Sorted by path.
    ///
    /// An ignored path that `keepingIgnored` accepts (the user's `wandb/`, `data/`, `.venv/`) is neither
    /// reported nor entered: its size costs nothing. Ignored directories it refuses are listed file by file.
    ///
    /// `within`: only these paths (files, or directories and everything beneath them) are looked at.
    /// `untrackable`: also what git keeps nothing of there (`invisibleEntries`), as changes: an
    /// iteration's look, where only the agent could have made them. `lineEndings`: the tracked files
    /// also read for changes git's line-ending conversion hides (`lineEndingChanges`).
    ///
    /// `countingLines`: whether a modified path's lines are counted (a diff of it made); nil for all.
    /// A diff costs what its content does: a notes file of 500,000 lines took the supervisor 7.5 s,
    /// and notes' lines count against no limit.
    public func status(
        against commit: ObjectID, excluding excluded: [String] = [], keepingIgnored: ((String) -> Bool)? = nil,
        within: [String]? = nil, untrackable: Bool = false, lineEndings: LineEndingScope? = nil,
        countingLines: ((String) -> Bool)? = nil
    ) throws -> [Change] {
        // The caller's keep rule, asked once per path by this look and libgit2's below.
        // Paths are keyed by their bytes throughout: `String` equality takes `café` precomposed and
        // decomposed for one, and an agent's two such files were one change (the keep committed one,
        // the experiment had read both, the revert left the other).
        var answers: [[UInt8]: Bool] = [:]
        let keepingIgnored = keepingIgnored.map { keep in
            { (path: String) -> Bool in
                let key = Array(path.utf8)
                if let known = answers[key] { return known }
                let answer = keep(path)
                answers[key] = answer
                return answer
            }
        }
        // What libgit2 cannot look at fails its whole status: reported alone, to be judged and removed
        // first (`restore` then looks again).
        let invisible = try invisibleEntries(in: within ?? [""], excluding: excluded, keepingIgnored: keepingIgnored,
                                             untrackable: untrackable)
        let unreachable = invisible.unreachable
        if !unreachable.isEmpty {
            return unreachable.map { path, why in
                var change = Change(path: path, kind: .added, oldMode: .absent)
                change.unreachable = why
                return change
            }
        }
        var byPath: [[UInt8]: Change] = [:]
        for change in try changes(against: commit, excluding: excluded, untracked: true, keepingIgnored: keepingIgnored,
                                  within: within, countingLines: countingLines) {
            byPath[Array(change.path.utf8)] = change
        }
        for (path, what) in invisible.untrackable where byPath[Array(path.utf8)] == nil {
            var change = Change(path: path, kind: .added, oldMode: .absent, newMode: .absent)
            change.untrackable = what
            byPath[Array(path.utf8)] = change
        }
        if let lineEndings {
            let changed = byPath.values.map(\.path)
            for change in try lineEndingChanges(against: commit, within: lineEndings.within ?? [""], of: lineEndings.includes,
                                                skipping: Set(changed)) where byPath[Array(change.path.utf8)] == nil {
                byPath[Array(change.path.utf8)] = change
            }
        }
        // Whether a directory, or one above it, holds a git repository's files.
        let repositories = AncestorMemo { [self] in holdsGitDirectoryFiles(String($0)) }
        for (key, change) in byPath where change.kind != .deleted && !change.isSubmodule {
            if let slash = change.path.lastIndex(of: "/"), repositories.atOrAbove(change.path[..<slash]) { byPath[key]?.isSubmodule = true }
        }
        return byPath.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map(\.value)
    }

    /// Whether `directory` (workspace-relative) holds a git repository's own files: a `HEAD` beside
    /// `objects`, `refs`, `commondir`, `gitdir` or `config`. Git takes such a directory, whatever its
    /// name, for a repository (a bare one, or one whose config names a work tree) and runs what its
    /// config says (`core.fsmonitor`) when the user's git, or a git-aware shell prompt, looks there:
    /// a kept change planted one that ran a command as the user, outside every sandbox.
    func holdsGitDirectoryFiles(_ directory: String) -> Bool {
        let base = (workdir.hasSuffix("/") ? workdir : workdir + "/") + directory + "/"
        var st = stat()
        guard lstat(base + "HEAD", &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        return ["objects", "refs", "commondir", "gitdir", "config"].contains { lstat(base + $0, &st) == 0 }
    }

    /// `within`: the paths the diff is limited to (a directory stands for what is beneath it).
    func changes(
        against commit: ObjectID, excluding excluded: [String], untracked: Bool,
        keepingIgnored: ((String) -> Bool)? = nil, within: [String]? = nil, countingLines: ((String) -> Bool)? = nil
    ) throws -> [Change] {
        let tree = try tree(of: commit)
        defer { git_tree_free(tree) }
        // The diff reads the index as a cache of what each file holds, and trusts it for which files
        // the commit has: a full look (start, resume, `proctor check`) first makes it `commit` in memory
        // (unchanged entries keep their stat data), since `.git/index` may lag the branch (a SIGKILL
        // before a deferred write) or hold what the user staged; a scoped look mid-run uses the index
        // proctor keeps equal to the branch, with the entries not yet written.
        if within == nil {
            try matchIndex(to: tree)
        } else {
            git_index_free(try currentIndex())
        }
        var options = git_diff_options()
        try check(git_diff_options_init(&options, UInt32(GIT_DIFF_OPTIONS_VERSION)), "git_diff_options_init")
        var flags = GIT_DIFF_INCLUDE_TYPECHANGE.rawValue | GIT_DIFF_INCLUDE_UNREADABLE.rawValue
        if untracked {
            flags |= GIT_DIFF_INCLUDE_UNTRACKED.rawValue | GIT_DIFF_RECURSE_UNTRACKED_DIRS.rawValue
            flags |= GIT_DIFF_INCLUDE_IGNORED.rawValue
            // With a keep rule, an ignored directory comes as one entry, judged below.
            if keepingIgnored == nil { flags |= GIT_DIFF_RECURSE_IGNORED_DIRS.rawValue }
        }
        // Status never writes the index (`proctor check` and a refused start write nothing): the loop's
        // statuses are scoped to the few places a sandbox can write, so a racily-clean entry elsewhere,
        // which every status would hash again, is not looked at.
        options.flags = flags | GIT_DIFF_DISABLE_PATHSPEC_MATCH.rawValue
        var diff: OpaquePointer?
        var pathspecs: [UnsafeMutablePointer<CChar>?] = (within ?? []).map { strdup($0) }
        defer { pathspecs.forEach { free($0) } }
        try pathspecs.withUnsafeMutableBufferPointer { buffer in
            options.pathspec = git_strarray(strings: buffer.baseAddress, count: buffer.count)
            try check(
                git_diff_tree_to_workdir_with_index(&diff, handle, tree, &options), "git_diff_tree_to_workdir_with_index")
        }
        defer { git_diff_free(diff) }
        if untracked {
            var find = git_diff_find_options()
            try check(
                git_diff_find_options_init(&find, UInt32(GIT_DIFF_FIND_OPTIONS_VERSION)), "git_diff_find_options_init")
            find.flags = GIT_DIFF_FIND_RENAMES.rawValue | GIT_DIFF_FIND_FOR_UNTRACKED.rawValue
            try check(git_diff_find_similar(diff, &find), "git_diff_find_similar")
        }
        let prefixes = excluded.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
        func isExcluded(_ path: String) -> Bool {
            prefixes.contains { path == $0 || path.hasPrefix($0 + "/") }
        }
        let root = try FileSystem.Directory.open(workdir)
        var changes: [Change] = []
        for index in 0..<git_diff_num_deltas(diff) {
            let delta = git_diff_get_delta(diff, index)!.pointee
            var path = String(cString: delta.new_file.path)
            let oldPath = String(cString: delta.old_file.path)
            if delta.status == GIT_DELTA_IGNORED, let keep = keepingIgnored {
                let name = path.hasSuffix("/") ? String(path.dropLast()) : path
                if isExcluded(name) || keep(name) { continue }
                if path.hasSuffix("/"), try isDirectoryWithoutRepository(name) {
                    // Not the user's: every file in it is judged like any new file.
                    changes += try self.changes(against: commit, excluding: excluded, untracked: true, within: [path])
                    continue
                }
            }
            var kind: ChangeKind
            var oldMode = FileMode(rawValue: UInt32(delta.old_file.mode))
            var newMode = FileMode(rawValue: UInt32(delta.new_file.mode))
            switch delta.status {
            case GIT_DELTA_ADDED, GIT_DELTA_UNTRACKED, GIT_DELTA_IGNORED, GIT_DELTA_COPIED: kind = .added
            case GIT_DELTA_DELETED: kind = .deleted
            case GIT_DELTA_RENAMED: kind = .renamed
            case GIT_DELTA_TYPECHANGE: kind = .typeChange
            case GIT_DELTA_MODIFIED, GIT_DELTA_UNREADABLE, GIT_DELTA_CONFLICTED: kind = .modified
            default: continue
            }
            if isExcluded(oldPath), isExcluded(path) { continue }
            if kind == .renamed, isExcluded(path) {
                // Moved into an excluded directory: from the commit's point of view the file is gone.
                (kind, path, newMode) = (.deleted, oldPath, .absent)
            }
            if kind == .added { oldMode = .absent }
            if kind == .deleted { newMode = .absent }
            var change = Change(
                path: path, oldPath: kind == .renamed ? oldPath : path, kind: kind,
                oldMode: oldMode, newMode: newMode)
            if String(validatingCString: delta.new_file.path) == nil || String(validatingCString: delta.old_file.path) == nil {
                // The String repaired the name, so it names no file to read: reported as it is, a violation.
                change.nameIsNotUTF8 = true
                changes.append(change)
                continue
            }
            if kind == .added, delta.status != GIT_DELTA_ADDED {
                // Untracked or ignored: libgit2 does not load their content, read it without following links.
                guard try describeNewFile(&change, root: root) else { continue }
            } else if countingLines?(path) == false {
                if kind != .deleted, let (parent, name) = try FileSystem.openParent(of: path, in: root) {
                    change.newSize = try parent.entry(name)?.size ?? 0
                }
            } else {
                var patch: OpaquePointer?
                try check(git_patch_from_diff(&patch, diff, index), "git_patch_from_diff")
                defer { git_patch_free(patch) }
                var added = 0
                var removed = 0
                try check(git_patch_line_stats(nil, &added, &removed, patch), "git_patch_line_stats")
                let flags = git_patch_get_delta(patch).pointee.flags
                change.isBinary = flags & GIT_DIFF_FLAG_BINARY.rawValue != 0 || delta.status == GIT_DELTA_UNREADABLE
                (change.addedLines, change.removedLines) = change.isBinary ? (0, 0) : (added, removed)
                if !change.isBinary { change.longLineExtra = try Self.longLineExtra(patch) }
                if kind != .deleted, let (parent, name) = try FileSystem.openParent(of: path, in: root) {
                    change.newSize = try parent.entry(name)?.size ?? 0
                }
            }
            if kind != .deleted, !change.isSubmodule {
                change.rewritingAttribute = try rewritingAttribute(path) ?? convertedLineEndings(path, root: root)
            }
            change.isSymlink = oldMode == .symlink || newMode == .symlink
            change.isSubmodule = change.isSubmodule || oldMode == .submodule || newMode == .submodule
            changes.append(change)
        }
        return changes.sorted { $0.path < $1.path }
    }

    /// The git attribute set on `path` that makes git's view of the file differ from its bytes, nil
    /// for none: `ident` (libgit2 rewrites `$Id: anything$` to `$Id$` before hashing and diffing, so
    /// code inside one is in no diff, no line count and no status). `.gitattributes` files, the
    /// repository's `info/attributes` and the user's and system's attribute files all count.
    public func rewritingAttribute(_ path: String) throws -> String? {
        var value: UnsafePointer<CChar>?
        try check(git_attr_get(&value, handle, 0, path, "ident"), "git_attr_get")
        return git_attr_value(value) == GIT_ATTR_VALUE_TRUE ? "ident" : nil
    }

    /// The settings of the repository's effective git configuration (its own, the user's, the
    /// system's) under which status trusts what an agent can put back, or reads a file other than
    /// its bytes: `core.trustctime = false` and `core.checkStat = minimal` (a same-size edit with
    /// its modification time put back was no change), `core.autocrlf` (CRLFs given to a file were
    /// no change). Each as set, with the value that overrides it; empty when there is none.
    public func untrustworthySettings() throws -> [(setting: String, safe: String)] {
        var config: OpaquePointer?
        try check(git_repository_config_snapshot(&config, handle), "git_repository_config_snapshot")
        defer { git_config_free(config) }
        func value(_ name: String) -> String? {
            var text: UnsafePointer<CChar>?
            guard git_config_get_string(&text, config, name) == 0, let text else { return nil }
            return String(cString: text).lowercased()
        }
        let no = ["false", "no", "off", "0", ""]
        var found: [(setting: String, safe: String)] = []
        if let trust = value("core.trustctime"), no.contains(trust) { found.append(("core.trustctime = \(trust)", "core.trustctime true")) }
        if value("core.checkstat") == "minimal" { found.append(("core.checkStat = minimal", "core.checkStat default")) }
        if let crlf = value("core.autocrlf"), !no.contains(crlf) { found.append(("core.autocrlf = \(crlf)", "core.autocrlf false")) }
        return found
    }

    /// "text/eol" when git converts `path`'s line endings (the `text`, `eol` or `crlf` attribute,
    /// `* text=auto` included) and its bytes hold a CRLF: git reads each as LF, so which lines end
    /// in CR is in no diff and no line count. Nil otherwise, as for the many files of a repository
    /// with `* text=auto` that hold no CR.
    func convertedLineEndings(_ path: String, root: FileSystem.Directory) throws -> String? {
        var converts = false
        for attribute in ["text", "eol", "crlf"] where !converts {
            var value: UnsafePointer<CChar>?
            try check(git_attr_get(&value, handle, 0, path, attribute), "git_attr_get")
            converts = [GIT_ATTR_VALUE_TRUE, GIT_ATTR_VALUE_STRING].contains(git_attr_value(value))
        }
        guard converts, let (parent, name) = try FileSystem.openParent(of: path, in: root),
            let entry = try parent.entry(name), entry.type == .regular, entry.size <= Self.largestTextFile
        else { return nil }
        let bytes = try parent.read(name)
        return zip(bytes, bytes.dropFirst()).contains { $0 == 0x0D && $1 == 0x0A } ? "text/eol" : nil
    }

    /// Tracked files under `within` whose bytes differ from their blob only where git's line-ending
    /// conversion hides it (`* text=auto`, `eol`, `crlf`: git turns each CRLF into LF before it
    /// hashes, so a file given CRLFs is unchanged to status and diff, and which lines end in CR was
    /// a channel into the experiment that no commit holds). Each as a modified file with the
    /// attribute, which the validator refuses.
    /// `of`: which tracked paths to read (the agent's files: the locked ones are hashed against
    /// their pins anyway, and a data set is not read every iteration).
    func lineEndingChanges(against commit: ObjectID, within: [String], of checked: (String) -> Bool, skipping: Set<String>) throws -> [Change] {
        let tree = try tree(of: commit)
        defer { git_tree_free(tree) }
        let root = try FileSystem.Directory.open(workdir)
        var found: [Change] = []
        for place in within {
            let trimmed = place.hasSuffix("/") ? String(place.dropLast()) : place
            var entries: [String: (mode: FileMode, id: ObjectID)]
            if trimmed.isEmpty {
                entries = try flatten(tree)
            } else if let entry = try treeEntry(tree, trimmed) {
                if entry.mode == .tree {
                    var subtree: OpaquePointer?
                    var oid = entry.id.oid
                    try check(git_tree_lookup(&subtree, handle, &oid), "git_tree_lookup")
                    defer { git_tree_free(subtree) }
                    entries = try flatten(subtree!, prefix: trimmed + "/")
                } else {
                    entries = [trimmed: entry]
                }
            } else {
                continue
            }
            for (path, entry) in entries where (entry.mode == .regular || entry.mode == .executable) && !skipping.contains(path) && checked(path) {
                guard try convertedLineEndings(path, root: root) != nil,
                    let (parent, name) = try FileSystem.openParent(of: path, in: root),
                    try parent.read(name) != blobBytes(entry.id.oid) else { continue }
                var change = Change(path: path, kind: .modified, oldMode: entry.mode, newMode: entry.mode)
                change.rewritingAttribute = "text/eol"
                change.newSize = try parent.entry(name)?.size ?? 0
                found.append(change)
            }
        }
        return found
    }

    /// Whether `path` is a directory (not a link) without a `.git` of its own.
    private func isDirectoryWithoutRepository(_ path: String) throws -> Bool {
        let root = try FileSystem.Directory.open(workdir)
        guard let (parent, name) = try FileSystem.openParent(of: path, in: root), try parent.entry(name)?.type == .directory
        else { return false }
        return try parent.subdirectory(name).entry(".git") == nil
    }

    static let largestTextFile: Int64 = 512 << 20

    /// Fills in an untracked or ignored file's size, lines and kind; false when there is nothing to report
    /// (an empty directory).
    private func describeNewFile(_ change: inout Change, root: FileSystem.Directory) throws -> Bool {
        if change.path.hasSuffix("/") {
            // libgit2 does not descend into a directory with its own `.git`: a nested repository.
            change.path.removeLast()
            change.oldPath = change.path
            guard let (parent, name) = try FileSystem.openParent(of: change.path, in: root),
                try parent.entry(name)?.type == .directory,
                try parent.subdirectory(name).entry(".git") != nil
            else { return false }
            change.isSubmodule = true
            change.newMode = .submodule
            return true
        }
        guard let (parent, name) = try FileSystem.openParent(of: change.path, in: root),
            let entry = try parent.entry(name)
        else { return false }
        change.newSize = entry.size
        let bytes: [UInt8]
        switch entry.type {
        case .regular where entry.size > Self.largestTextFile, .other:
            // Too large to count lines (git's own `max_size` default), or a FIFO, socket or device.
            change.isBinary = true
            return true
        case .regular: bytes = try parent.read(name)
        case .symlink: bytes = try parent.readLink(name)
        case .directory: return false
        }
        change.isBinary = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { git_blob_data_is_binary($0.baseAddress, $0.count) == 1 }
        }
        if !change.isBinary {
            let newlines = bytes.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            change.addedLines = newlines + (bytes.last.map { $0 == UInt8(ascii: "\n") ? 0 : 1 } ?? 0)
            for line in bytes.split(separator: UInt8(ascii: "\n")) { change.longLineExtra += Self.extra(line.count) }
        }
        return true
    }

    /// Lines a line of `bytes` counts for beyond the first (see `Change.longLineExtra`).
    static func extra(_ bytes: Int) -> Int { max(0, (bytes + Change.lineWidth - 1) / Change.lineWidth - 1) }

    /// The long-line surcharge of a patch's added and removed lines.
    private static func longLineExtra(_ patch: OpaquePointer?) throws -> Int {
        var total = 0
        for hunk in 0..<git_patch_num_hunks(patch) {
            let lines = git_patch_num_lines_in_hunk(patch, hunk)
            guard lines > 0 else { continue }
            for index in 0..<Int(lines) {
                var line: UnsafePointer<git_diff_line>?
                guard git_patch_get_line_in_hunk(&line, patch, hunk, index) == 0, let line else { continue }
                let origin = UInt8(bitPattern: line.pointee.origin)
                guard origin == UInt8(ascii: "+") || origin == UInt8(ascii: "-") else { continue }
                var length = Int(line.pointee.content_len)
                if length > 0, line.pointee.content[length - 1] == 0x0A { length -= 1 }  // the newline
                total += extra(length)
            }
        }
        return total
    }
}
