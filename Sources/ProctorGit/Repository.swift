import CGit2
import Foundation

/// A git repository whose working tree is a Proctor workspace. Not thread-safe: use one instance per thread.
///
/// Every method throws `GitError`. libgit2 runs no hooks, so nothing the agent planted in `.git/hooks` runs here.
public final class Repository {
    let handle: OpaquePointer
    /// Absolute path of the working tree, without a trailing slash.
    public let workdir: String
    /// Whether a commit of a few paths leaves its index entries in memory for `writeIndex`: at
    /// 100,000 tracked files every write of git's index (9 MB, checksummed) costs ~35 ms, what
    /// `git update-index` itself pays, so a loop keeping every iteration writes it at most every
    /// few seconds and at its end (issue 10). Until then `.git/index` lags the branch: after a
    /// SIGKILL, `git status` shows the last keeps as staged undos until the next run or `--resume`.
    public var defersIndexWrites = false
    /// The entries updated in memory and not yet written (applied again to the in-memory index
    /// before each use, in case another git rewrote the file and libgit2 re-read it).
    private var unwrittenIndex: [(path: String, mode: FileMode, id: ObjectID?)] = []
    /// Whether the in-memory index holds what `.git/index` does not (unwritten entries, or `matchIndex`).
    private var indexAheadOfDisk = false
    private var lastIndexWrite = 0.0

    private init(handle: OpaquePointer) throws {
        guard let path = git_repository_workdir(handle) else {
            git_repository_free(handle)
            throw GitError.unsafePath(path: String(cString: git_repository_path(handle)), reason: "bare repository")
        }
        self.handle = handle
        var workdir = String(cString: path)
        while workdir.count > 1, workdir.hasSuffix("/") { workdir.removeLast() }
        self.workdir = workdir
    }

    deinit { git_repository_free(handle) }

    /// Opens the repository whose working tree is exactly `path` (parent directories are not searched, so a
    /// workspace without `.git` never silently uses an enclosing repository).
    public static func open(at path: String) throws -> Repository {
        precondition(libgit2Initialized)
        var repo: OpaquePointer?
        try check(
            git_repository_open_ext(&repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil), "git_repository_open_ext"
        )
        return try Repository(handle: repo!)
    }

    /// Creates a new repository at `path` (directories are created as needed) whose unborn HEAD points to
    /// `initialBranch`. Fails if a repository already exists there.
    public static func create(at path: String, initialBranch: String = "main") throws -> Repository {
        precondition(libgit2Initialized)
        var options = git_repository_init_options()
        try check(
            git_repository_init_options_init(&options, UInt32(GIT_REPOSITORY_INIT_OPTIONS_VERSION)),
            "git_repository_init_options_init")
        options.flags = GIT_REPOSITORY_INIT_MKPATH.rawValue | GIT_REPOSITORY_INIT_NO_REINIT.rawValue
        var repo: OpaquePointer?
        try initialBranch.withCString { head in
            options.initial_head = head
            try check(git_repository_init_ext(&repo, path, &options), "git_repository_init_ext")
        }
        return try Repository(handle: repo!)
    }

    // MARK: - References

    /// The commit HEAD points to; nil on an unborn branch (a new repository before its first commit).
    public func head() throws -> ObjectID? {
        var reference: OpaquePointer?
        let code = git_repository_head(&reference, handle)
        if code == GIT_EUNBORNBRANCH.rawValue || code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "git_repository_head")
        defer { git_reference_free(reference) }
        var object: OpaquePointer?
        try check(git_reference_peel(&object, reference, GIT_OBJECT_COMMIT), "git_reference_peel")
        defer { git_object_free(object) }
        return ObjectID(git_object_id(object).pointee)
    }

    /// The short name of the branch HEAD points to (`main`, `proctor/run-1`), born or not; nil when detached.
    public func currentBranch() throws -> String? {
        var reference: OpaquePointer?
        try check(git_reference_lookup(&reference, handle, "HEAD"), "git_reference_lookup")
        defer { git_reference_free(reference) }
        guard let target = git_reference_symbolic_target(reference) else { return nil }
        let name = String(cString: target)
        return name.hasPrefix("refs/heads/") ? String(name.dropFirst("refs/heads/".count)) : nil
    }

    /// The commit a revision names: a full or abbreviated id, a branch, `HEAD`, `HEAD~2`, ...
    public func resolve(_ revision: String) throws -> ObjectID {
        var object: OpaquePointer?
        try check(git_revparse_single(&object, handle, revision), "git_revparse_single")
        defer { git_object_free(object) }
        var commit: OpaquePointer?
        try check(git_object_peel(&commit, object, GIT_OBJECT_COMMIT), "git_object_peel")
        defer { git_object_free(commit) }
        return ObjectID(git_object_id(commit).pointee)
    }

    /// The tip of the local branch `name`; nil when there is no such branch.
    public func branchTip(_ name: String) throws -> ObjectID? {
        var oid = git_oid()
        let code = git_reference_name_to_id(&oid, handle, "refs/heads/" + name)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "git_reference_name_to_id")
        return ObjectID(oid)
    }

    /// Creates the local branch `name` (e.g. `proctor/<run>`) at `commit`; with `force`, moves an existing
    /// branch of that name, otherwise an existing branch is an error. HEAD does not move: see `setHead(branch:)`.
    public func createBranch(_ name: String, at commit: ObjectID, force: Bool = false) throws {
        try withCommit(commit) { commit in
            var reference: OpaquePointer?
            if force {
                // git_branch_create refuses to move the branch HEAD points at; a forced reference update does not.
                var oid = git_commit_id(commit).pointee
                try check(
                    git_reference_create(&reference, handle, "refs/heads/" + name, &oid, 1, "proctor: move branch"),
                    "git_reference_create")
            } else {
                try check(git_branch_create(&reference, handle, name, commit, 0), "git_branch_create")
            }
            git_reference_free(reference)
        }
    }

    /// Points HEAD at the local branch `name`. The working tree and index are left alone: call
    /// `restore(to:excluding:)` to make them match the branch.
    public func setHead(branch name: String) throws {
        try check(git_repository_set_head(handle, "refs/heads/" + name), "git_repository_set_head")
    }

    // MARK: - Commits

    /// A commit's message, summary, parents and date.
    public func commitInfo(_ id: ObjectID) throws -> CommitInfo {
        try withCommit(id) { commit in
            let parents = (0..<git_commit_parentcount(commit)).map {
                ObjectID(git_commit_parent_id(commit, $0).pointee)
            }
            return CommitInfo(
                id: id,
                message: git_commit_message(commit).map { String(cString: $0) } ?? "",
                summary: git_commit_summary(commit).map { String(cString: $0) } ?? "",
                parents: parents,
                date: Date(timeIntervalSince1970: TimeInterval(git_commit_time(commit))))
        }
    }

    /// The tree a commit records: two commits with the same tree hold the same files (a squash or a
    /// rebase of a kept commit).
    public func treeID(of id: ObjectID) throws -> ObjectID {
        try withCommit(id) { ObjectID(git_commit_tree_id($0).pointee) }
    }

    /// Commits reachable from the tip of `branch` (HEAD when nil) along first parents, newest first, at most
    /// `limit` of them. Empty for an unborn branch.
    public func log(branch: String? = nil, limit: Int = .max) throws -> [CommitInfo] {
        guard let tip = try branch.map({ try branchTip($0) }) ?? head() else { return [] }
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, handle), "git_revwalk_new")
        defer { git_revwalk_free(walk) }
        try check(git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL.rawValue), "git_revwalk_sorting")
        try check(git_revwalk_simplify_first_parent(walk), "git_revwalk_simplify_first_parent")
        var oid = tip.oid
        try check(git_revwalk_push(walk, &oid), "git_revwalk_push")
        var commits: [CommitInfo] = []
        while commits.count < limit {
            let code = git_revwalk_next(&oid, walk)
            if code == GIT_ITEROVER.rawValue { break }
            try check(code, "git_revwalk_next")
            commits.append(try commitInfo(ObjectID(oid)))
        }
        return commits
    }

    /// Commits the working-tree contents of `paths` (workspace-relative; a missing file is removed from the
    /// commit; a directory stands for the files beneath it, as `git add dir` does: untracked files that
    /// `.gitignore` ignores are left out, files gone from it are removed) on top of
    /// HEAD and advances HEAD's branch. With `paths == nil`, commits every change to a tracked file, like
    /// `git commit -a`. Nothing outside `paths` changes in the commit or on disk, no hook runs, and links in
    /// the working tree are committed as links, never followed. Afterwards the index matches the new commit.
    /// The author and committer are the configured identity, else `proctor <proctor@localhost>`.
    @discardableResult
    public func commit(message: String, paths: [String]? = nil) throws -> ObjectID {
        let parent = try head()
        let selected: [String]
        if let paths {
            selected = paths
        } else if let parent {
            selected = try changes(against: parent, excluding: [], untracked: false).flatMap { [$0.oldPath, $0.path] }
        } else {
            selected = []
        }
        let baseline = try parent.map { try tree(of: $0) } ?? emptyTree()
        defer { git_tree_free(baseline) }
        let root = try FileSystem.Directory.open(workdir)
        var updates: [(path: String, mode: FileMode, id: ObjectID?)] = []
        for path in Set(selected).sorted() {
            if let reason = WorkspacePath.problem(path) { throw GitError.unsafePath(path: path, reason: reason) }
            try collectUpdates(path, root: root, baseline: baseline, explicit: true, into: &updates)
        }
        var treeID = git_oid()
        _ = try withTreeUpdates(updates) { raw in
            try check(
                git_tree_create_updated(&treeID, handle, baseline, raw.count, raw.baseAddress),
                "git_tree_create_updated")
        }
        var newTree: OpaquePointer?
        try check(git_tree_lookup(&newTree, handle, &treeID), "git_tree_lookup")
        defer { git_tree_free(newTree) }
        let signature = try defaultSignature()
        defer { git_signature_free(signature) }
        var commitID = git_oid()
        if let parent {
            try withCommit(parent) { parentCommit in
                var parents: [OpaquePointer?] = [parentCommit]
                try check(
                    git_commit_create(
                        &commitID, handle, "HEAD", signature, signature, nil, message, newTree, 1, &parents),
                    "git_commit_create")
            }
        } else {
            try check(
                git_commit_create(&commitID, handle, "HEAD", signature, signature, nil, message, newTree, 0, nil),
                "git_commit_create")
        }
        try checkWritten(ObjectID(commitID))
        if paths != nil {
            try updateIndex(updates)
        } else {
            try resetIndex(to: newTree)
        }
        return ObjectID(commitID)
    }

    /// A commit on a full disk has been recorded as kept while its object was never written and the
    /// branch never moved (libgit2 1.5 reported success; a red-team helper's 6 MiB tmpfs): before
    /// anything records it, the commit is read back from the object store, and HEAD must name it.
    private func checkWritten(_ commit: ObjectID) throws {
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, handle), "git_repository_odb")
        defer { git_odb_free(odb) }
        var oid = commit.oid
        var object: OpaquePointer?
        guard git_odb_read(&object, odb, &oid) == 0 else {
            throw lastError("the new commit \(commit.short) cannot be read back (disk full?): git_odb_read", -1)
        }
        git_odb_object_free(object)
        guard try head() == commit else {
            throw GitError.libgit2(function: "git_commit_create", code: -1,
                                   message: "HEAD does not name the new commit \(commit.short) (disk full?)")
        }
    }

    // MARK: - Reading commits

    /// The bytes of the file at `path` in `commit`. Fails for a directory, link or submodule.
    public func blob(at path: String, in commit: ObjectID) throws -> [UInt8] {
        if let reason = WorkspacePath.problem(path) { throw GitError.unsafePath(path: path, reason: reason) }
        let root = try tree(of: commit)
        defer { git_tree_free(root) }
        var entry: OpaquePointer?
        try check(git_tree_entry_bypath(&entry, root, path), "git_tree_entry_bypath")
        defer { git_tree_entry_free(entry) }
        let mode = FileMode(rawValue: git_tree_entry_filemode(entry).rawValue)
        guard mode == .regular || mode == .executable else {
            throw GitError.unsafePath(path: path, reason: "mode \(mode) is not a regular file")
        }
        return try blobBytes(git_tree_entry_id(entry).pointee)
    }

    /// The target of `path` in `commit` when it is committed as a symbolic link; nil when it is
    /// anything else or not there.
    public func linkTarget(at path: String, in commit: ObjectID) throws -> String? {
        guard WorkspacePath.problem(path) == nil else { return nil }
        let root = try tree(of: commit)
        defer { git_tree_free(root) }
        var entry: OpaquePointer?
        guard git_tree_entry_bypath(&entry, root, path) == 0 else { return nil }
        defer { git_tree_entry_free(entry) }
        guard FileMode(rawValue: git_tree_entry_filemode(entry).rawValue) == .symlink else { return nil }
        return String(decoding: try blobBytes(git_tree_entry_id(entry).pointee), as: UTF8.self)
    }

    /// Writes `paths` (files or directories) as they are in `commit` into `directory`, creating
    /// subdirectories as needed: files are created new (an existing file is an error) with mode 0444, or
    /// 0555 when executable in git. Refuses `..`, absolute and `.git` paths, links and submodules, and
    /// never follows a link inside `directory`.
    public func materialize(_ paths: [String], from commit: ObjectID, into directory: String) throws {
        for path in paths {
            if let reason = WorkspacePath.problem(path) { throw GitError.unsafePath(path: path, reason: reason) }
        }
        let root = try tree(of: commit)
        defer { git_tree_free(root) }
        // Only the entries asked for: the pins are a few files of a tree that may hold 100,000.
        let entries = try flatten(root, only: paths)
        let destination = try FileSystem.Directory.open(directory)
        for path in paths {
            guard let mode = entries[path]?.mode else {
                throw GitError.libgit2(
                    function: "git_tree_entry_bypath", code: GIT_ENOTFOUND.rawValue,
                    message: "the path '\(path)' does not exist in \(commit.short)")
            }
            let files = mode == .tree ? entries.keys.filter { $0.hasPrefix(path + "/") }.sorted() : [path]
            for file in files {
                guard let (mode, id) = entries[file] else { continue }
                if mode == .tree { continue }
                guard mode == .regular || mode == .executable else {
                    throw GitError.unsafePath(path: file, reason: "mode \(mode) is not a regular file")
                }
                var parent = destination
                let components = file.split(separator: "/").map(String.init)
                for component in components.dropLast() { parent = try parent.subdirectory(component, create: true) }
                let bytes = try blobBytes(id.oid)
                try bytes.withUnsafeBytes {
                    try parent.create(components.last!, bytes: $0, mode: mode == .executable ? 0o555 : 0o444)
                }
            }
        }
    }

    /// The names at the top of `commit`'s tree, with whether each is a directory.
    public func topLevelEntries(of commit: ObjectID) throws -> [(name: String, directory: Bool)] {
        let root = try tree(of: commit)
        defer { git_tree_free(root) }
        return (0..<git_tree_entrycount(root)).map { index in
            let entry = git_tree_entry_byindex(root, index)
            return (String(cString: git_tree_entry_name(entry)), FileMode(rawValue: git_tree_entry_filemode(entry).rawValue) == .tree)
        }
    }

    /// Every path in `commit`'s tree, files and directories, with whether it is a directory.
    public func trackedPaths(of commit: ObjectID) throws -> [String: Bool] {
        let root = try tree(of: commit)
        defer { git_tree_free(root) }
        return try flatten(root).mapValues { $0.mode == .tree }
    }

    /// The path of `commit` that is `path` written in another Unicode form (`café` precomposed
    /// against decomposed: other bytes, one `String` to Swift), or nil. Such twins are two files on
    /// disk and in git but one key in every `Set` and `Dictionary` of the supervisor's.
    public func unicodeTwin(of path: String, in commit: ObjectID) throws -> String? {
        guard !path.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
        var tree = try self.tree(of: commit)
        defer { git_tree_free(tree) }
        var found: [String] = []
        let parts = path.split(separator: "/").map(String.init)
        for (index, part) in parts.enumerated() {
            guard let entry = (0..<git_tree_entrycount(tree)).lazy.map({ git_tree_entry_byindex(tree, $0) })
                .first(where: { String(cString: git_tree_entry_name($0)) == part }) else { return nil }
            found.append(String(cString: git_tree_entry_name(entry)))
            if index == parts.count - 1 { break }
            guard git_tree_entry_filemode(entry).rawValue == FileMode.tree.rawValue else { return nil }
            var subtree: OpaquePointer?
            try check(git_tree_lookup(&subtree, handle, git_tree_entry_id(entry)), "git_tree_lookup")
            git_tree_free(tree)
            tree = subtree!
        }
        let twin = found.joined(separator: "/")
        return Array(twin.utf8) == Array(path.utf8) ? nil : twin
    }

    /// Every rule a change of `commit` is judged by: the diff policy (`DiffValidator`), and the
    /// names the commit already holds in another Unicode form. The one entry point of the run's
    /// validation, a `--parallel` candidate's and `proctor check`'s.
    public func violations(_ changes: [Change], of commit: ObjectID, policy: DiffPolicy) throws -> [Violation] {
        DiffValidator.validate(changes, policy: policy) + (try unicodeTwinViolations(changes, in: commit))
    }

    /// A violation for each new path of `changes` that a path of `commit` has in another Unicode
    /// form (`unicodeTwin`): the new file and the committed one would be one path to the keep.
    func unicodeTwinViolations(_ changes: [Change], in commit: ObjectID) throws -> [Violation] {
        try changes.filter { $0.kind == .added || $0.kind == .renamed }.compactMap { change in
            guard let twin = try unicodeTwin(of: change.path, in: commit) else { return nil }
            let shown = twin.unicodeScalars.map { $0.isASCII ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
            return Violation(path: change.path, rule: .name,
                             message: "the committed \(shown) has this name in another Unicode form: two files on disk and in git that Swift, and most tools, take for one; edit the committed one")
        }
    }

    // MARK: - Internals shared by the extensions

    func withCommit<T>(_ id: ObjectID, _ body: (OpaquePointer) throws -> T) throws -> T {
        var oid = id.oid
        var commit: OpaquePointer?
        try check(git_commit_lookup(&commit, handle, &oid), "git_commit_lookup")
        defer { git_commit_free(commit) }
        return try body(commit!)
    }

    /// The root tree of `commit`; the caller frees it with `git_tree_free`.
    func tree(of commit: ObjectID) throws -> OpaquePointer {
        try withCommit(commit) { commit in
            var tree: OpaquePointer?
            try check(git_commit_tree(&tree, commit), "git_commit_tree")
            return tree!
        }
    }

    private func emptyTree() throws -> OpaquePointer {
        var builder: OpaquePointer?
        try check(git_treebuilder_new(&builder, handle, nil), "git_treebuilder_new")
        defer { git_treebuilder_free(builder) }
        var oid = git_oid()
        try check(git_treebuilder_write(&oid, builder), "git_treebuilder_write")
        var tree: OpaquePointer?
        try check(git_tree_lookup(&tree, handle, &oid), "git_tree_lookup")
        return tree!
    }

    /// Every entry beneath `tree` by full path, directories included (as `.tree`).
    func flatten(_ tree: OpaquePointer, prefix: String = "") throws -> [String: (mode: FileMode, id: ObjectID)] {
        var entries: [String: (mode: FileMode, id: ObjectID)] = [:]
        for index in 0..<git_tree_entrycount(tree) {
            let entry = git_tree_entry_byindex(tree, index)
            let path = prefix + String(cString: git_tree_entry_name(entry))
            let mode = FileMode(rawValue: git_tree_entry_filemode(entry).rawValue)
            entries[path] = (mode, ObjectID(git_tree_entry_id(entry).pointee))
            if mode == .tree {
                var subtree: OpaquePointer?
                try check(git_tree_lookup(&subtree, handle, git_tree_entry_id(entry)), "git_tree_lookup")
                defer { git_tree_free(subtree) }
                entries.merge(try flatten(subtree!, prefix: path + "/")) { $1 }
            }
        }
        return entries
    }

    func blobBytes(_ oid: git_oid) throws -> [UInt8] {
        var oid = oid
        var blob: OpaquePointer?
        try check(git_blob_lookup(&blob, handle, &oid), "git_blob_lookup")
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard size > 0, let content = git_blob_rawcontent(blob) else { return [] }
        return Array(UnsafeRawBufferPointer(start: content, count: size))
    }

    /// The index after a commit (or a restore) of `updates` on a tree the index held: only those entries
    /// change, so a commit of one file costs one entry, not a rewrite of every entry's cache. Their stat
    /// data is left empty: the next status compares their content once and caches it. Written at once
    /// unless `defersIndexWrites`.
    func updateIndex(_ updates: [(path: String, mode: FileMode, id: ObjectID?)]) throws {
        let index = try currentIndex()
        defer { git_index_free(index) }
        try apply(updates, to: index)
        if defersIndexWrites {
            unwrittenIndex += updates
            indexAheadOfDisk = true
        } else {
            try write(index)
        }
    }

    /// Writes the entries `updateIndex` left in memory, unless the last write is under `seconds` old.
    public func writeIndex(unlessWrittenWithin seconds: Double = 0) throws {
        guard indexAheadOfDisk, ProcessInfo.processInfo.systemUptime - lastIndexWrite >= seconds else { return }
        let index = try currentIndex()
        defer { git_index_free(index) }
        try write(index)
    }

    /// The repository's index as libgit2 holds it (re-read if the file changed on disk), with the
    /// unwritten entries applied; the caller frees it. Every user of the index goes through here.
    func currentIndex() throws -> OpaquePointer {
        var index: OpaquePointer?
        try check(git_repository_index(&index, handle), "git_repository_index")
        do {
            try check(git_index_read(index, 0), "git_index_read")
            try apply(unwrittenIndex, to: index)
        } catch {
            git_index_free(index)
            throw error
        }
        return index!
    }

    private func apply(_ updates: [(path: String, mode: FileMode, id: ObjectID?)], to index: OpaquePointer?) throws {
        for update in updates {
            guard let id = update.id else {
                let rc = git_index_remove_bypath(index, update.path)
                if rc != 0 && rc != GIT_ENOTFOUND.rawValue { try check(rc, "git_index_remove_bypath") }
                continue
            }
            try update.path.withCString { path in
                var entry = git_index_entry()
                entry.mode = update.mode.rawValue
                entry.id = id.oid
                entry.path = path
                try check(git_index_add(index, &entry), "git_index_add")
            }
        }
    }

    private func write(_ index: OpaquePointer?) throws {
        try check(git_index_write(index), "git_index_write")
        indexWritten()
    }

    /// The in-memory index is on disk (written here, or by a checkout).
    func indexWritten() {
        unwrittenIndex = []
        indexAheadOfDisk = false
        lastIndexWrite = ProcessInfo.processInfo.systemUptime
    }

    /// Makes the in-memory index hold `tree` (stat data of unchanged entries kept), without writing it.
    func matchIndex(to tree: OpaquePointer?) throws {
        let index = try currentIndex()
        defer { git_index_free(index) }
        try check(git_index_read_tree(index, tree), "git_index_read_tree")
        unwrittenIndex = []
        indexAheadOfDisk = true
    }

    /// Removes the lock files libgit2 leaves when the process writing the index, `HEAD` or a run's
    /// branch (`refs/heads/proctor/*`) is killed: every later write of that file then refuses, and a
    /// workspace whose `HEAD.lock` was left right after its baseline could start no run at all. Only
    /// for a caller that knows no other writer can hold them (proctor, under the workspace lock).
    /// Returns the removed ones, relative to `.git/`.
    public func removeStaleLocks() throws -> [String] {
        let git = String(cString: git_repository_path(handle))
        var names = ["index.lock", "HEAD.lock"]
        let runBranches = (try? FileManager.default.contentsOfDirectory(atPath: git + "refs/heads/proctor")) ?? []
        names += runBranches.filter { $0.hasSuffix(".lock") }.sorted().map { "refs/heads/proctor/" + $0 }
        return try names.filter { name in
            if unlink(git + name) == 0 { return true }
            if errno == ENOENT { return false }
            throw GitError.system(operation: "unlink", path: git + name, errno: errno)
        }
    }

    /// Makes the index hold `commit`'s tree (what the working tree matches), as a run's start needs: a
    /// commit of a few paths then changes only their entries. Cached stat data of unchanged entries stays.
    /// The index entries of `paths` (files, or directories and all beneath them) as `commit` holds
    /// them: what `commit(message:paths:)` writes after making its commit, for a process killed
    /// between the two (`proctor init` finishing the commit of a killed one left an empty index).
    public func stageCommitted(_ paths: [String], of commit: ObjectID) throws {
        let root = try tree(of: commit)
        defer { git_tree_free(root) }
        let entries = try flatten(root, only: paths).filter { $0.value.mode != .tree }
        try updateIndex(entries.sorted { $0.key < $1.key }.map { (path: $0.key, mode: $0.value.mode, id: Optional($0.value.id)) })
    }

    public func resetIndex(to commit: ObjectID) throws {
        let tree = try tree(of: commit)
        defer { git_tree_free(tree) }
        try resetIndex(to: tree)
    }

    func resetIndex(to tree: OpaquePointer?) throws {
        var index: OpaquePointer?
        try check(git_repository_index(&index, handle), "git_repository_index")
        defer { git_index_free(index) }
        try check(git_index_read_tree(index, tree), "git_index_read_tree")
        try write(index)
    }

    private func defaultSignature() throws -> UnsafeMutablePointer<git_signature> {
        var signature: UnsafeMutablePointer<git_signature>?
        if git_signature_default(&signature, handle) == 0, let signature { return signature }
        try check(git_signature_now(&signature, "proctor", "proctor@localhost"), "git_signature_now")
        return signature!
    }

    /// Adds the tree updates that make `path` in the commit equal the working tree.
    private func collectUpdates(
        _ path: String, root: FileSystem.Directory, baseline: OpaquePointer, explicit: Bool,
        into updates: inout [(path: String, mode: FileMode, id: ObjectID?)]
    ) throws {
        let located = try FileSystem.openParent(of: path, in: root)
        guard let (parent, name) = located, let entry = try parent.entry(name) else {
            // Gone from the working tree (or reachable only through a link): remove it if the commit has it.
            var existing: OpaquePointer?
            if git_tree_entry_bypath(&existing, baseline, path) == 0 {
                git_tree_entry_free(existing)
                updates.append((path, .absent, nil))
            }
            return
        }
        var tracked: OpaquePointer?
        let isTracked = git_tree_entry_bypath(&tracked, baseline, path) == 0
        defer { git_tree_entry_free(tracked) }
        if !explicit, !isTracked {
            var ignored: Int32 = 0
            try check(git_ignore_path_is_ignored(&ignored, handle, path), "git_ignore_path_is_ignored")
            if ignored == 1 { return }
        }
        var oid = git_oid()
        switch entry.type {
        case .directory:
            let directory = try parent.subdirectory(name)
            let children = try directory.names().filter { $0.lowercased() != ".git" }
            for child in children.sorted() {
                try collectUpdates(path + "/" + child, root: root, baseline: baseline, explicit: false, into: &updates)
            }
            // Like `git add dir`: committed entries no longer in the directory leave the commit.
            if isTracked, git_tree_entry_type(tracked) == GIT_OBJECT_TREE {
                var subtree: OpaquePointer?
                try check(git_tree_lookup(&subtree, handle, git_tree_entry_id(tracked)), "git_tree_lookup")
                defer { git_tree_free(subtree) }
                for index in 0..<git_tree_entrycount(subtree) {
                    let child = String(cString: git_tree_entry_name(git_tree_entry_byindex(subtree, index)))
                    if !children.contains(child) { updates.append((path + "/" + child, .absent, nil)) }
                }
            }
            return
        case .regular:
            let bytes = try parent.read(name)
            try check(git_blob_create_from_buffer(&oid, handle, bytes, bytes.count), "git_blob_create_from_buffer")
            updates.append((path, entry.permissions & 0o100 != 0 ? .executable : .regular, ObjectID(oid)))
        case .symlink:
            let target = try parent.readLink(name)
            try check(git_blob_create_from_buffer(&oid, handle, target, target.count), "git_blob_create_from_buffer")
            updates.append((path, .symlink, ObjectID(oid)))
        case .other:
            throw GitError.unsafePath(path: path, reason: "not a regular file, directory or symbolic link")
        }
    }

    private func withTreeUpdates<T>(
        _ updates: [(path: String, mode: FileMode, id: ObjectID?)],
        _ body: (UnsafeBufferPointer<git_tree_update>) throws -> T
    ) throws -> T {
        // strdup'd paths stay valid for the whole call; freed afterwards.
        let paths = updates.map { strdup($0.path) }
        defer { paths.forEach { free($0) } }
        let raw = zip(updates, paths).map { update, path in
            git_tree_update(
                action: update.id == nil ? GIT_TREE_UPDATE_REMOVE : GIT_TREE_UPDATE_UPSERT,
                id: update.id?.oid ?? git_oid(),
                filemode: git_filemode_t(rawValue: update.mode.rawValue),
                path: UnsafePointer(path))
        }
        return try raw.withUnsafeBufferPointer(body)
    }
}
