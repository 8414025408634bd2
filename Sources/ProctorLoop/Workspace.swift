import Foundation
import ProctorConfig
import ProctorGit
import ProctorSandbox

/// `proctor init` and `proctor check`: making a workspace and checking its working tree.
public enum WorkspaceSteps {
    /// Copies the template into `dir`, makes it a git repository with one commit, and pins the locked files.
    /// Refuses a directory that already holds a `proctor.toml` unless `repin` is set (then only re-pins).
    public static func initialize(dir: String, template: String?, repin: Bool) throws -> [String] {
        let root = URL(fileURLWithPath: dir).standardizedFileURL.path
        let fm = FileManager.default
        var notes: [String] = []
        // Set while an init copies, commits and pins into a directory that already existed; left by
        // a SIGKILL there, it lets the next `proctor init` finish what it began.
        let pending = root + "/.proctor/init.pending"
        let unfinished = fm.fileExists(atPath: pending)
        if repin {
            try refuseUnfinishedInit(root)
            let config = try WorkspaceConfig.load(workspace: root)
            let repo = try Repository.workspace(root)
            guard let head = try repo.head() else { throw LoopError(.refused, "\(root) has no commit to pin") }
            // Not under a run (it went ahead beside one): the workspace lock, or 125 naming its holder.
            let lock: ExperimentLock
            do {
                lock = try ExperimentLock(path: ExperimentLock.workspacePath(root),
                                          holder: LockHolder(pid: getpid(), run: "repin", iteration: nil, since: Date(), workspace: root))
            } catch let error as SandboxError {
                // init has no --wait: the lock error's hint would name a flag it does not take.
                guard case .lockBusy(_, let holder) = error.code else { throw error }
                throw LoopError(.refused, "the workspace is held by \(holder?.summary ?? "an unknown holder"); re-pin when it is free")
            }
            try withExtendedLifetime(lock) { try Pins.save(try lockedHashes(config, repo: repo, commit: head), root: root) }
            return ["re-pinned the locked files of \(head.short)"]
        }
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: root, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw LoopError(.refused, "\(root) is a file, not a directory to make the workspace in")
        }
        if fm.fileExists(atPath: root + "/proctor.toml") && !unfinished {
            throw LoopError(.refused, "\(root) already holds a proctor.toml; use `proctor init --repin` to re-pin its locked files")
        }
        let source = try templatePath(template)
        // A bad template is refused before anything is made (its own proctor.toml is the file to fix).
        _ = try WorkspaceConfig.load(workspace: source)
        // A new directory is made under a temporary name and renamed into place once committed and
        // pinned: a failure or a SIGKILL half-way leaves no half-made workspace at `dir` (whose
        // proctor.toml would then make every later `proctor init` refuse it).
        if !fm.fileExists(atPath: root) {
            let parent = (root as NSString).deletingLastPathComponent
            try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
            let prefix = "." + (root as NSString).lastPathComponent + ".proctor-init"
            // Those of inits killed half-way (their process gone) first: nothing else removes them.
            ScratchDirectory.sweep(in: parent, prefix: prefix)
            let staging = parent + "/" + prefix + "-\(getpid())"
            _ = try? fm.removeItem(atPath: staging)
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: false)
            do {
                let notes = try initialize(dir: staging, template: source, repin: false)
                guard rename(staging, root) == 0 else {
                    throw LoopError.io(errno, "rename \(staging) to \(root)")
                }
                return notes.map { $0.replacingOccurrences(of: staging, with: root) }
            } catch {
                _ = try? fm.removeItem(atPath: staging)
                throw error
            }
        }
        try fm.createDirectory(atPath: root + "/.proctor", withIntermediateDirectories: true)
        if !unfinished { try AtomicFile.write(Data("copying\n".utf8), to: pending) }
        try copyTree(from: source, to: root)
        // A repository this init began making (the marker says so) that a kill left unopenable is
        // made again; one that was there before the init is the user's and only opened.
        let marker = (try? String(contentsOfFile: pending, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        let madeHere = marker.contains("made-git")
        var opened: Repository?
        if fm.fileExists(atPath: root + "/.git") {
            do {
                opened = try Repository.open(at: root)
            } catch where madeHere {
                opened = nil
            } catch let error as GitError where error.isNotFound {
                throw LoopError(.refused, "\(root)/.git is there but git cannot open it as a repository; repair it or move it away, then run `proctor init` again")
            }
        }
        let repo: Repository
        if let opened {
            repo = opened
        } else {
            try AtomicFile.write(Data("copying\nmade-git\n".utf8), to: pending)
            _ = try? fm.removeItem(atPath: root + "/.git")
            repo = try Repository.create(at: root)
        }
        let config = try WorkspaceConfig.load(workspace: root)
        var exclude = (try? String(contentsOfFile: root + "/.git/info/exclude", encoding: .utf8)) ?? ""
        for entry in ["/.proctor/"] + config.files.outputs.map({ "/" + $0 + "/" }) where !exclude.contains(entry + "\n") {
            exclude += (exclude.isEmpty || exclude.endsWithLineFeed ? "" : "\n") + entry + "\n"
        }
        try fm.createDirectory(atPath: root + "/.git/info", withIntermediateDirectories: true)
        try AtomicFile.write(Data(exclude.utf8), to: root + "/.git/info/exclude")
        // Only what the template brought: files of the user's that were already there are theirs to commit.
        let entries = try fm.contentsOfDirectory(atPath: source).filter {
            ![".git", ".proctor", "__pycache__", ".pytest_cache"].contains($0) && !config.files.outputs.contains($0)
        }.sorted()
        // The marker says where HEAD was before the init's commit: an init killed after its commit
        // is finished with that commit, not a second one (nor the user's own earlier commit).
        let before = marker.first { $0.hasPrefix("head ") }.map { String($0.dropFirst(5)) }
        let current = try repo.head()
        let head: ObjectID
        if unfinished, let before, let current, current.hex != before {
            head = current
            // Killed after the commit, maybe before its index entries were written: write them.
            try repo.stageCommitted(entries, of: head)
        } else {
            try AtomicFile.write(Data("head \(current?.hex ?? "none")\n".utf8), to: pending)
            head = try repo.commit(message: "proctor init: workspace from \(URL(fileURLWithPath: source).lastPathComponent)", paths: entries)
        }
        try Pins.save(try lockedHashes(config, repo: repo, commit: head), root: root)
        try fm.removeItem(atPath: pending)
        notes.append("workspace ready at \(root) (commit \(head.short)); locked files pinned")
        notes.append("next: proctor run --workspace \(root) --iterations 20")
        return notes
    }

    /// Every command on a workspace whose init was stopped half-way (its repository may be missing,
    /// half-made or uncommitted) says how to finish it, before anything else about it.
    static func refuseUnfinishedInit(_ root: String) throws {
        if FileManager.default.fileExists(atPath: root + "/.proctor/init.pending") {
            throw LoopError(.refused, "\(root) holds an unfinished `proctor init` (it was stopped): run `proctor init \(root)` again to finish it")
        }
    }

    static func templatePath(_ name: String?) throws -> String {
        if let name, name.contains("/") || name == "." || name == ".." {
            guard FileManager.default.fileExists(atPath: name + "/proctor.toml") else {
                throw LoopError(.refused, "template \(name) has no proctor.toml")
            }
            return name
        }
        guard let bundled = BundledData.workspaceTemplate else {
            throw LoopError(.failed, "cannot find proctor's bundled workspace/ (set PROCTOR_HOME to the checkout)")
        }
        guard name == nil || name == "default" || name == "tabular" else {
            // A bare name is a bundled template's; a directory here of that name is said, not guessed at.
            let here = FileManager.default.fileExists(atPath: name! + "/proctor.toml") ? " (for the directory here, give ./\(name!))" : ""
            throw LoopError(.refused, "unknown template \"\(name!)\"; bundled: default (or give a directory path)\(here)")
        }
        return bundled
    }

    /// Copies regular files and directories; skips outputs, caches, proctor state and links.
    private static func copyTree(from source: String, to target: String) throws {
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: source) else { throw LoopError(.failed, "cannot read \(source)") }
        while let rel = walker.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if [".git", ".proctor", "outputs", "__pycache__", ".pytest_cache"].contains(name) {
                walker.skipDescendants()
                continue
            }
            var st = stat()
            guard lstat(source + "/" + rel, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: try fm.createDirectory(atPath: target + "/" + rel, withIntermediateDirectories: true)
            case S_IFREG:
                let path = target + "/" + rel
                guard !fm.fileExists(atPath: path) else { continue }
                // Copied under a fixed side name and renamed: a kill mid-copy leaves no truncated file
                // that the next init (which keeps files already there) would take for whole and commit.
                let part = path + ".proctor-init-part"
                _ = try? fm.removeItem(atPath: part)
                try fm.copyItem(atPath: source + "/" + rel, toPath: part)
                guard rename(part, path) == 0 else { throw LoopError.io(errno, "rename \(part) to \(path)") }
            default: continue
            }
        }
    }

    /// Locked files as they exist in the working tree (regular files, links not followed).
    /// `[files] locked` naming other files than those pinned at `proctor init` (`pinned`): a
    /// located error that says which, for `run` to refuse and `check` to report.
    static func lockedListChange(_ config: WorkspaceConfig, pinned: Set<String>, locked: Set<String>) -> ConfigError? {
        let unlocked = pinned.subtracting(locked).sorted(), added = locked.subtracting(pinned).sorted()
        guard !unlocked.isEmpty || !added.isEmpty else { return nil }
        func list(_ paths: [String]) -> String { paths.prefix(10).joined(separator: ", ") + (paths.count > 10 ? " and \(paths.count - 10) more" : "") }
        let what = [unlocked.isEmpty ? nil : "no longer locked: \(list(unlocked))", added.isEmpty ? nil : "newly locked: \(list(added))"]
        return ConfigError(file: config.file, line: config.files.lines["locked"], key: "files.locked",
                           message: "expected the locked files pinned at `proctor init`, but the committed files this list matches differ (\(what.compactMap { $0 }.joined(separator: "; "))). If the list or those files changed on purpose, run `proctor init --repin`")
    }

    static func lockedPaths(_ config: WorkspaceConfig) -> [String] {
        let globs = config.files.locked.map(Glob.init)
        return FileTree.regularFiles(under: config.root, reaching: globs) { rel in globs.contains { $0.matches(rel) } }
    }

    /// SHA-256 of each locked file as committed in `commit`. Every locked file of the working tree
    /// must be committed there.
    static func lockedHashes(_ config: WorkspaceConfig, repo: Repository, commit: ObjectID) throws -> [String: String] {
        var pins: [String: String] = [:]
        for path in lockedPaths(config) {
            guard let bytes = try? repo.blob(at: path, in: commit) else {
                throw LoopError(.failed, "locked file \(path) is not committed in \(commit.short); commit it first")
            }
            pins[path] = Pins.sha256(bytes)
        }
        return pins
    }

    /// `proctor check`: the working tree's changes against the last kept commit, validated like an
    /// agent's proposal, plus the locked files against their pins. Returns the problems (empty: ok).
    /// `parallel`: the slots `proctor run --parallel` would measure in (nil: `[experiment] parallel`).
    public static func check(workspace: String, parallel: Int? = nil) throws -> [String] {
        let config = try SandboxEnvironment.checkedConfig(workspace: workspace)
        SandboxEnvironment.sayWarnings(config)
        if let missing = config.missingHomeFile() { throw missing }
        // What `proctor run` refuses before submitting to Slurm, as the bad input it is (125).
        if config.executor.kind == .slurm { try SlurmExecutor.checkSettings(config) }
        let root = config.root
        let repo = try Repository.workspace(root)
        // The refusals `proctor run` would stop at, as violations (issue 11), with as many slots.
        var problems: [String] = []
        let slots = parallel ?? config.experiment.parallel
        try ExperimentLock.checkHostSettings()
        if let shortfall = Slot.machineShortfall(parallel: slots, named: Slot.named(slots, flag: parallel, config: config),
                                                 executor: config.executor.kind) {
            problems.append(shortfall)
        }
        do {
            _ = try SandboxEnvironment.interpreters(of: config)
            // A slot's sandbox binds each of the user's ignored entries on its own: more mounts.
            let slot = slots > 1 ? SlotView(tree: root, outputs: Slot.root(root) + "/0/outputs",
                                            userData: try Slot.userData(root: root, config: config, repo: repo)) : nil
            try SandboxEnvironment.checkPlans(of: config, slot: slot)
        } catch let error as SandboxError where error.code == .interpreter || error.code == .mountLimit {
            problems.append(error.description)
        }
        // The settings `proctor run` refuses to start under (status would trust what an agent can put back).
        problems += try repo.untrustworthySettings().map { "git configuration: \($0.setting): proctor run refuses it (git -C \(root) config \($0.safe) overrides it here)" }
        let base: ObjectID
        if let state = RunState.load(root), let best = try? repo.resolve(state.bestCommit),
            try repo.currentBranch() == state.branch {
            base = best
        } else if let head = try repo.head() {
            base = head
        } else {
            throw LoopError(.refused, "\(root) has no commit; run `proctor init`")
        }
        if let head = try repo.head(), let output = try outputOverTheTree(config, repo: repo, head: head) { problems.append(output.description) }
        if let missing = config.missingLockedFile(pinned: Set(lockedPaths(config))) { problems.append(missing.description) }
        let changes = try repo.loopStatus(against: base, config: config)
        problems += try repo.violations(changes, of: base, policy: config.diffPolicy).map(\.description)
        let state = RunState.load(root)
        let pins = state?.pins ?? Pins.load(root) ?? [:]
        if state == nil, !pins.isEmpty, let changed = lockedListChange(config, pinned: Set(pins.keys), locked: Set(lockedPaths(config))) {
            problems.append(changed.description)
        }
        for (path, hash) in pins.sorted(by: { $0.key < $1.key }) {
            let data = FileManager.default.contents(atPath: root + "/" + path).map { [UInt8]($0) }
            if data.map(Pins.sha256) != hash { problems.append("\(path): differs from its pin [tamper]") }
        }
        return problems
    }
}

extension Repository {
    /// The working tree's changes as the loop judges them: nothing under `.proctor/` or the outputs,
    /// and no untracked files under the hidden prefixes (held-out labels may live outside git);
    /// a tracked hidden file that changed or disappeared is still reported.
    ///
    /// `scoped`: only where an iteration can change anything (`agentWritableRoots`), so that its cost
    /// follows the editable files, not the size of the workspace; start, resume and `proctor check`
    /// look at everything.
    func loopStatus(against commit: ObjectID, config: WorkspaceConfig, scoped: Bool = false,
                    policy given: DiffPolicy? = nil) throws -> [Change] {
        let hidden = config.hiddenPrefixes
        // Notes' lines count against no limit: they are not diffed (a notes file of 500,000 lines
        // took 7.5 s of the supervisor's, each iteration, for nothing). `given`: the policy the
        // caller validates with, so each path is judged once.
        let policy = given ?? config.diffPolicy
        return try status(against: commit, excluding: config.untrackedByLoop, keepingIgnored: config.isUsersIgnoredPath,
                          within: scoped ? config.agentWritableRoots : nil, untrackable: scoped,
                          lineEndings: scoped ? config.agentsFilesScope : nil,
                          countingLines: { !policy.isNotes($0) }).filter { change in
            // A prefix ends at a `/`: `holdout` hides holdout/, never holdout_tools/ (whose new files
            // went unvalidated, any size, into a keep).
            !(change.kind == .added && hidden.contains { change.path == $0 || change.path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") })
        }
    }
}

extension Repository {
    /// Makes the working tree the kept commit `commit`, as the loop does after a discard, a Ctrl-C or a
    /// crash: `kept` (proctor's state, hidden data outside git) and the user's ignored paths stay.
    /// Costs what changed where an iteration can change anything (`agentWritableRoots`); `everything`
    /// (a resume, which may have moved the branch and the index) looks at the whole tree.
    func loopRestore(to commit: ObjectID, config: WorkspaceConfig, kept: [String], everything: Bool = false) throws {
        try restore(to: commit, excluding: kept, keepingIgnored: config.isUsersIgnoredPath,
                    within: everything ? nil : config.agentWritableRoots, lineEndings: everything ? nil : config.agentsFilesScope)
    }
}

extension WorkspaceConfig {
    /// The agent's tracked files, for `status` and `restore` to read for line endings git's
    /// conversion hides: beneath the literal part of the `editable` and `notes` globs (a locked
    /// data set is not walked), those the globs match, never what is off limits to agents.
    var agentsFilesScope: LineEndingScope {
        let globs = (files.editable + files.notes).map(Glob.init)
        let roots = globs.map(\.literalPrefix)
        let offLimits = OffLimits(self)
        return LineEndingScope(within: roots.contains("") ? nil : roots) { path in
            globs.contains { $0.matches(path) } && !offLimits.contains(path)
        }
    }
}

extension Repository {
    /// The workspace's own repository, with an error that says what to do when there is none.
    static func workspace(_ root: String) throws -> Repository {
        try WorkspaceSteps.refuseUnfinishedInit(root)
        do {
            return try Repository.open(at: root)
        } catch let error as GitError where error.isNotFound {
            throw LoopError(.refused, "\(root) is not a git repository of its own; make a workspace with `proctor init DIR` (it copies a template, commits it and pins the locked files)")
        }
    }
}

extension WorkspaceSteps {
    /// `WorkspaceConfig.outputOverTheTree` for `head` and the working tree.
    static func outputOverTheTree(_ config: WorkspaceConfig, repo: Repository, head: ObjectID) throws -> ConfigError? {
        let tracked = try repo.trackedPaths(of: head)
        return config.outputOverTheTree(tracked: tracked) { output in
            var info = stat()
            return lstat(config.root + "/" + output, &info) == 0 && info.st_mode & S_IFMT != S_IFDIR
        }
    }
}

extension WorkspaceConfig {
    /// What the validation allows: `editable` and `notes` files, each as the sandboxes treat it. A
    /// broad glob (`**`) also matches the config, the locked and the hidden files: never the
    /// agent's. A file both lists name is editable: the experiment sees it (only notes that are not
    /// editable are hidden from it), so its lines count against `diff_lines` (as notes they did
    /// not: 300 lines went through a limit of 60 and were measured).
    var diffPolicy: DiffPolicy {
        let editable = files.editable.map(Glob.init)
        let notes = files.notes.map(Glob.init)
        let offLimits = OffLimits(self)
        // Each path judged once: the validator asks about a path several times, and each answer
        // matches every glob against it (thousands of paths 85 directories deep took seconds each).
        let kinds = PathMemo<(editable: Bool, notes: Bool)> { path in
            if offLimits.contains(path) { return (false, false) }
            let isEditable = editable.contains { $0.matches(path) }
            return (isEditable, !isEditable && notes.contains { $0.matches(path) })
        }
        return DiffPolicy(isEditable: { kinds[$0].editable }, isNotes: { kinds[$0].notes },
                          maxChangedLines: limits.diffLines, maxFileBytes: limits.maxFileBytes)
    }
}

/// A function of a workspace path, computed once per path (for one look at a change).
/// Keyed by the path's bytes: Swift's `String` equality takes `café` written precomposed and
/// decomposed for one name, which the file system and git keep apart.
final class PathMemo<Value>: @unchecked Sendable {
    private let compute: (String) -> Value
    private var known: [[UInt8]: Value] = [:]
    private let lock = NSLock()

    init(_ compute: @escaping (String) -> Value) { self.compute = compute }

    subscript(path: String) -> Value {
        lock.lock()
        defer { lock.unlock() }
        let key = Array(path.utf8)
        if let value = known[key] { return value }
        let value = compute(path)
        known[key] = value
        return value
    }
}
