import Foundation
import ProctorConfig

/// A workspace ready to launch sandboxed commands: its configuration, its policy preset and the launcher.
public struct SandboxEnvironment: Sendable {
    public var config: WorkspaceConfig
    public var preset: PolicyPreset
    public var launcher: Launcher
    /// Whose launches these are: they stop when it is requested (nil: at SIGINT/SIGTERM).
    public var stop: StopSwitch?
    /// Where the launches' traffic through the allowlist proxy is counted.
    public let network = NetworkMeter()
    /// GPU memory is read through it in phases with GPUs (`NVML.shared`: none on a host without the
    /// driver). Asked only then: NVML's initialisation costs a GPU host tens of milliseconds.
    public var nvml: @Sendable () -> NVML? = { NVML.shared }
    /// The host's GPUs as `gpus` sees them (tests present stand-in nodes).
    public var gpus: @Sendable () -> GPUHost = { GPUHost.live() }
    /// `proctor run --parallel`: this environment's experiments and evaluators measure a slot's
    /// candidate (`SlotView`); its outputs helpers work on the slot's outputs.
    public var slot: SlotView?
    /// GPUs before this environment's own (`gpus = N` in slot K of a run skips K x N of them).
    public var gpuOffset = 0
    /// The slot these launches measure in (0 in a serial run): a Slurm job's name and record.
    public var slotIndex = 0

    /// Where this environment's `[files].outputs` directories are on the host.
    public var outputsBase: String { slot?.outputs ?? config.root }

    public init(config: WorkspaceConfig, preset: PolicyPreset, launcher: Launcher) {
        self.config = config
        self.preset = preset
        self.launcher = launcher
    }

    /// Reads `proctor.toml` and its preset and finds the launcher; every failure names its cause.
    /// The configuration's warnings (`network = true`) go to stderr here, once per command that launches.
    public static func load(workspace: String) throws -> SandboxEnvironment {
        let config = try WorkspaceConfig.load(workspace: workspace)
        sayWarnings(config)
        let preset = try preset(of: config)
        try checkDevices(config, preset: preset)
        if let missing = config.missingHomeFile() { throw missing }
        return SandboxEnvironment(config: config, preset: preset, launcher: try Launcher.locate())
    }

    /// The GPU memory poller of a phase with GPUs, capped by `[experiment] gpu_memory`; nil without NVML.
    private func gpuWatch(_ phase: Phase) throws -> GPUMemoryWatch? {
        let (wanted, cap) = phase == .experiment ? (config.experiment.gpus.wanted, config.experiment.gpuMemoryBytes)
                                                 : (phase == .evaluator && config.evaluator.gpus.wanted, nil)
        guard wanted, let nvml = nvml() else { return nil }
        return try GPUMemoryWatch(nvml: nvml, cap: cap, owner: stop)
    }

    /// `gpus` and `devices` against this host, before anything runs: more GPUs than there are, a
    /// block device, a missing node is the configuration's error (file, line, key; exit 125).
    static func checkDevices(_ config: WorkspaceConfig, preset: PolicyPreset) throws {
        let host = HostFacts.live(workspace: config.root)
        for phase in [Phase.experiment, .evaluator] { _ = try PhaseDevices.of(config, phase: phase, preset: preset, host: host) }
    }

    /// The configuration's warnings on stderr (`proctor check` says them too).
    public static func sayWarnings(_ config: WorkspaceConfig) {
        for warning in config.warnings + config.missingReadOnlyPaths() {
            Console.err("proctor: warning: \(warning)\n")
        }
    }

    /// `proctor.toml` with its policy preset checked too, for the commands that launch nothing
    /// (`check`, `status`): a bad preset is the same error, file, line and key, as for `run`.
    public static func checkedConfig(workspace: String) throws -> WorkspaceConfig {
        let config = try WorkspaceConfig.load(workspace: workspace)
        try checkDevices(config, preset: try preset(of: config))
        return config
    }

    static func preset(of config: WorkspaceConfig) throws -> PolicyPreset {
        guard let policies = BundledData.policies else {
            throw SandboxError(.notInstalled, "cannot find proctor's policies/ folder (set PROCTOR_HOME to the directory holding it)")
        }
        return try PolicyPreset.load(name: config.sandbox.policy, from: policies,
                                     reference: (config.file, config.sandbox.policyLine))
    }

    /// What each of the workspace's commands runs (issue 11), keyed `experiment`, `evaluator` and
    /// `sealed`, resolved as their launches will resolve them; throws the refusal (`.interpreter`,
    /// exit 125) of the first that would run another interpreter than it names on the host, or one
    /// its sandbox cannot see.
    public func interpreters(host: HostFacts? = nil) throws -> [String: ResolvedInterpreter] {
        try Self.interpreters(config: config, preset: preset, host: host)
    }

    /// `interpreters(host:)` for a configuration read without a launcher (`proctor check`).
    public static func interpreters(of config: WorkspaceConfig) throws -> [String: ResolvedInterpreter] {
        try interpreters(config: config, preset: preset(of: config), host: nil)
    }

    static func interpreters(config: WorkspaceConfig, preset: PolicyPreset, host: HostFacts?) throws -> [String: ResolvedInterpreter] {
        let host = host ?? .live(workspace: config.root)
        var roles: [(String, Phase, WorkspaceConfig)] = [("experiment", .experiment, config), ("evaluator", .evaluator, config)]
        if !config.evaluator.sealedCommand.isEmpty { roles.append(("sealed", .evaluator, config.sealedEvaluatorView)) }
        var found: [String: ResolvedInterpreter] = [:]
        for (role, phase, view) in roles {
            let command = phase == .experiment ? view.experiment.command : view.evaluator.command
            let request = LaunchRequest(config: view, preset: preset, phase: phase, command: command)
            if let resolved = try LaunchPlan.resolveInterpreter(request, host: host) {
                found[role] = resolved
                try checkNotHidden(resolved.executable, role: role, config: view, packageRoots: resolved.packageRoots, host: host)
            } else {
                try checkProgram(request, host: host)
                if let name = command.first, name.hasPrefix("/") { try checkNotHidden(name, role: role, config: view, packageRoots: [], host: host) }
            }
        }
        return found
    }

    /// Refuses a `[sandbox] hide` entry that covers the program a phase runs, or the dynamic loader
    /// and C library every program needs: with `hide = ["/root/.pyenv"]` the experiment ran the
    /// system's python3 instead, without a word, and failed on a missing package after the run had
    /// begun (exit 1); `hide = ["/usr"]` failed every launch the same way.
    static func checkNotHidden(_ program: String, role: String, config: WorkspaceConfig, packageRoots: [String], host: HostFacts) throws {
        let hides = LaunchPlan.hostHides(config.sandbox.hide, packageRoots: packageRoots, host: host)
        let system = ["/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
        let needed = [(program, "\(program), the program the \(role == "sealed" ? "sealed evaluator" : role) runs")]
            + (system + system.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }).filter(host.exists).map { ($0, "\($0), which every program needs") }
        for (path, what) in needed {
            if let hide = hides.first(where: { path == $0 || path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }) {
                let place = "\(config.file)\(config.sandbox.hideLine.map { ":\($0)" } ?? "")"
                throw SandboxError(.interpreter, "\(place): sandbox.hide: \"\(hide)\" hides \(what); hide something inside it instead")
            }
        }
    }

    /// Each phase's sandbox compiled as its launches will compile it, nothing run: throws the first
    /// plan that cannot be made (`.mountLimit`: `[files]` globs matching hundreds of single files,
    /// exit 125). `agentCommand`: a command or session agent's, whose sandbox is compiled too. The
    /// experiment's is the slot's where the caller set `slot` (`--parallel`).
    public func checkPlans(agentCommand: [String]?) throws {
        let pinned = config.root + "/.proctor/pinned"
        _ = try compilePlan(phase: .experiment, command: config.experiment.command, seed: nil)
        _ = try compilePlan(phase: .evaluator, command: config.evaluator.command, seed: nil, pinnedDirectory: pinned)
        if !config.evaluator.sealedCommand.isEmpty {
            let view = config.sealedEvaluatorView
            _ = try compilePlan(phase: .evaluator, command: view.evaluator.command, seed: nil, pinnedDirectory: pinned) { $0.config = view }
        }
        if let agentCommand {
            _ = try compilePlan(phase: .agent, command: agentCommand, seed: nil, agentHome: config.root + "/.proctor/agent-home")
            try Self.checkProgram(LaunchRequest(config: config, preset: preset, phase: .agent, command: agentCommand),
                                  host: .live(workspace: config.root))
        }
    }

    /// Refuses a command whose program its sandbox would not find (exit 127 inside): a typo in an
    /// agent's ran the whole baseline, then failed every proposal (a session's ended at once, exit
    /// 0); in the experiment's or evaluator's, the baseline failed after the run had begun. Looked
    /// up on the host, through the sandbox's PATH, among what it sees.
    static func checkProgram(_ request: LaunchRequest, host: HostFacts) throws {
        guard let name = request.command.first, !(request.phase == .agent && name == "proctor") else { return }
        let query = LaunchPlan.interpreterQuery(request, host: host)
        let workspace = request.config.root
        let sandbox = "the \(request.phase.rawValue) sandbox"
        // A session's command comes from the command line, not from proctor.toml.
        let source = query.key.hasPrefix("[") ? query.located : "the \(request.phase.rawValue)'s command"
        if name.contains("/") && !name.hasPrefix("/") {
            // From the working directory: the workspace (the evaluator's pinned copy of it).
            if PythonEnvironment.locate(name, path: "", workspace: workspace) != nil { return }
            throw SandboxError(.interpreter, "\(source): \"\(name)\" is no executable file in the workspace")
        }
        if let found = PythonEnvironment.locate(name, path: query.sandboxPath, workspace: workspace, within: query.visible),
            PythonEnvironment.within(found, query.visible) { return }
        var why = name.contains("/") ? "is no executable file \(sandbox) sees" : "is on no directory of \(sandbox)'s PATH (\(query.sandboxPath)) that it sees"
        if let outside = PythonEnvironment.locate(name, path: query.environment["PATH"] ?? "", workspace: workspace) {
            let (readOnly, env) = request.phase == .agent ? ("[agent] read_only", "[agent] env") : ("[sandbox] read_only", "[experiment] env")
            why += "; on this host it is \(outside): make its directory visible with \(readOnly)"
            if !name.contains("/") && query.sandboxPath != query.environment["PATH"] { why += " (and pass PATH with \(env), or name it by its path)" }
        }
        throw SandboxError(.interpreter, "\(source): \"\(name)\" \(why)")
    }

    /// `checkPlans` for a configuration read without a launcher (`proctor check`), serially.
    /// `slot`: a `--parallel` slot's view, whose sandboxes bind the user's ignored data one by one.
    public static func checkPlans(of config: WorkspaceConfig, slot: SlotView? = nil) throws {
        var env = SandboxEnvironment(config: config, preset: try preset(of: config), launcher: Launcher(helper: ""))
        env.slot = slot
        try env.checkPlans(agentCommand: config.agent.kind == "command" ? config.agent.command : nil)
    }

    /// Takes the workspace lock, then the machine lock; a busy lock is audited and thrown.
    /// `slots`: the machine slots a `--parallel` run needs (`ExperimentLock.takeMachineSlots`).
    public func takeLocks(run: String, iteration: Int?, wait: Bool, audit: AuditLog?, phase: Phase, slots: Int = 1) throws -> [ExperimentLock] {
        try ExperimentLock.checkHostSettings()
        let holder = LockHolder(pid: getpid(), run: run, iteration: iteration, since: Date(), workspace: config.root)
        do {
            let workspace = try ExperimentLock(path: ExperimentLock.workspacePath(config.root), holder: holder, wait: wait)
            return [workspace] + (try ExperimentLock.takeMachineSlots(slots, holder: holder, wait: wait))
        } catch let busy as SandboxError {
            if case .lockBusy(let path, _) = busy.code {
                audit?.append(AuditRecord(run: run, iteration: iteration, phase: AuditPhase(phase), kind: .lock,
                                          decision: .denied, path: path, detail: busy.description))
            }
            throw busy
        }
    }

    /// Makes the experiment's writable directories, refusing any that is a symlink (planted to
    /// redirect the next run's writable mount).
    public func prepareOutputs(clear: Bool) throws {
        for dir in config.files.outputs {
            // Every level, so that `outputs = ["runs/plots"]` works without a `runs/` (its mkdir
            // failed with ENOENT and no file or key; issue 10's fuzzer), and no level may be a link.
            var path = outputsBase
            for part in dir.split(separator: "/") {
                path += "/" + part
                var st = stat()
                if lstat(path, &st) == 0 {
                    guard (st.st_mode & S_IFMT) == S_IFDIR else {
                        throw SandboxError(.planted, "\(config.file): files.outputs: \(path) is not a plain directory (a symlink or file was planted); refusing to run")
                    }
                    // The experiment may chmod its outputs (0300 kept every later run from listing
                    // them, as a user other than root, and stopped each): back to what proctor made.
                    if st.st_mode & 0o7777 != 0o755, fchmodat(AT_FDCWD, path, 0o755, AT_SYMLINK_NOFOLLOW) != 0 {
                        throw SandboxError.io(errno, "\(config.file): files.outputs: chmod \(path)")
                    }
                } else if mkdir(path, 0o755) != 0 {
                    throw SandboxError.io(errno, "\(config.file): files.outputs: mkdir \(path)")
                }
            }
            if clear { try FileTree.removeContents(of: path) }
        }
    }

    /// Empties the outputs that exist as real directories (a link or file in their place is left to
    /// `prepareOutputs`, which refuses it).
    public func clearOutputs() throws {
        for dir in config.files.outputs {
            let path = outputsBase + "/" + dir
            var st = stat()
            if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                try FileTree.removeContents(of: path)
                if st.st_mode & 0o7777 != 0o755 { fchmodat(AT_FDCWD, path, 0o755, AT_SYMLINK_NOFOLLOW) }  // as `prepareOutputs` puts it back
            }
        }
    }

    /// Entries beneath the outputs that are neither regular files nor directories (workspace-relative,
    /// at most `limit`). The evaluator reads the outputs while it sees the hidden data: a symlink left
    /// there by the experiment (`outputs/pred.txt -> ../holdout/labels.txt`) would make it score the
    /// labels themselves, or read a host file for it; a FIFO would hang it. Such outputs are refused.
    public func outputsSpecialEntries(limit: Int = 20) throws -> [String] {
        var found: [String] = []
        for dir in config.files.outputs {
            let path = outputsBase + "/" + dir
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            guard (st.st_mode & S_IFMT) == S_IFDIR else { found.append(dir); continue }
            try FileTree.walk(path, removing: false) { entry in
                let type = entry.mode & S_IFMT
                if type != S_IFDIR && type != S_IFREG && found.count < limit { found.append(dir + "/" + entry.path) }
            }
        }
        return found
    }

    /// The plan of one command on this host, as `launch` runs it (a Slurm job runs the same; issue 14).
    public func compilePlan(phase: Phase, command: [String], seed: UInt64?, pinnedDirectory: String? = nil,
                            agentHome: String? = nil, adjust: (inout LaunchRequest) -> Void = { _ in }) throws -> LaunchPlan {
        var request = LaunchRequest(config: config, preset: preset, phase: phase, command: command, seed: seed,
                                    pinnedDirectory: pinnedDirectory, agentHome: agentHome)
        request.user = try SandboxUser.forThisProcess(configured: config.sandbox.user)
        if phase != .agent { request.slot = slot }
        request.gpuOffset = gpuOffset
        adjust(&request)
        var host = HostFacts.live(workspace: config.root)
        host.gpus = gpus
        return try LaunchPlan.compile(request, host: host)
    }

    /// Compiles the plan for one command and runs it, printing unenforced limits on stderr.
    /// `stdin` nil means /dev/null (every step of the loop); `proctor exec` passes its own.
    public func launch(phase: Phase, command: [String], seed: UInt64?, pinnedDirectory: String? = nil,
                       agentHome: String? = nil, audit: AuditLog?, context: AuditContext,
                       stdin: Int32? = nil, stdout: Int32 = 1, stderr: Int32 = 2, started: ((pid_t) -> Void)? = nil,
                       adjust: (inout LaunchRequest) -> Void = { _ in }) throws -> SandboxResult {
        if phase == .evaluator {
            let planted = try outputsSpecialEntries()
            if !planted.isEmpty {
                throw SandboxError(.planted, "the outputs hold links or special files the evaluator must not follow: \(planted.joined(separator: ", "))")
            }
        }
        let plan = try compilePlan(phase: phase, command: command, seed: seed, pinnedDirectory: pinnedDirectory,
                                   agentHome: agentHome, adjust: adjust)
        // After the plan compiled: a plan that is refused leaves no output directories behind
        // (400 outputs made 400 directories, then failed the mount limit; issue 10's fuzzer).
        if phase == .experiment { try prepareOutputs(clear: false) }
        // Unattended steps read nothing: a terminal on stdin would be a channel to the user's session.
        let input = stdin ?? open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { if stdin == nil { close(input) } }
        let watch = try gpuWatch(phase)
        var result = try launcher.run(plan, audit: audit, context: context, stdin: input, stdout: stdout, stderr: stderr,
                                      stop: watch?.stop ?? stop, started: { pid in watch?.start(launcher: pid); started?(pid) })
        if let watch {
            watch.finish()
            result.peakGPUMemoryBytes = watch.peak
            result.gpuSeconds = watch.gpuSeconds
            if let over = watch.exceeded {
                result.limitsHit.insert("gpu_memory", at: 0)
                result.limitDetails["gpu_memory"] = over
                audit?.append(AuditRecord(run: context.run, iteration: context.iteration, phase: phase.rawValue, kind: "limit",
                                          decision: "killed", detail: "gpu_memory: \(over)"))
            }
        }
        network.add(iteration: context.iteration, phase, result.network)
        for warning in result.warnings {
            Console.err("proctor: warning: not enforced as asked: \(warning)\n")
        }
        return result
    }
}

/// Run identifiers: sortable, readable, unique per process.
public enum RunID {
    public static func make(prefix: String? = nil) -> String {
        let stamp = UTCTime.compactStamp(Date())
        return (prefix.map { $0 + "-" } ?? "") + stamp + "-" + String(getpid())
    }
}

/// File-tree helpers that never follow symlinks.
public enum FileTree {
    /// Workspace-relative paths of every file and directory under `root`, in walk order. Links are
    /// not followed; `.git`, `.proctor` and the `skipping` top-level entries are listed, not entered.
    /// With `reaching`, only the directories where one of those globs could match something are
    /// entered (`train.py` reads the top level only, `data/**` enters `data`): the cost follows the
    /// globs, not the size of the workspace (a dataset of 100 000 files is not walked for `LOG.md`).
    public static func entries(under root: String, skipping: [String] = [], reaching: [Glob]? = nil) -> [String] {
        var result: [String] = []
        guard let walker = FileManager.default.enumerator(atPath: root) else { return result }
        while let rel = walker.nextObject() as? String {
            // An agent can nest directories thousands deep (a cost that grows with the square of
            // the depth here); git cannot look past 100 levels, and the loop rejects what is there.
            if rel == ".git" || rel == ".proctor" || skipping.contains(rel) || walker.level >= 100 {
                walker.skipDescendants()
            } else if let reaching, !reaching.contains(where: { $0.couldMatchBeneath(rel) }) {
                walker.skipDescendants()  // a no-op for a file
            }
            result.append(rel)
        }
        return result
    }

    /// The regular files among `entries(under:skipping:)` that `include` accepts (never `.git`,
    /// `.proctor` or a skipped entry itself), sorted.
    public static func regularFiles(under root: String, skipping: [String] = [], reaching: [Glob]? = nil,
                                    where include: (String) -> Bool) -> [String] {
        entries(under: root, skipping: skipping, reaching: reaching).filter { rel in
            var st = stat()
            return rel != ".git" && rel != ".proctor" && !skipping.contains(rel) && include(rel)
                && lstat(root + "/" + rel, &st) == 0
                && (st.st_mode & S_IFMT) == S_IFREG
        }.sorted()
    }

    /// Removes `dir` and everything in it, links as links; what cannot be removed stays.
    public static func removeDirectory(_ dir: String) {
        try? removeContents(of: dir)
        rmdir(dir)
    }

    /// Removes everything inside `dir` (not `dir` itself). Symlinks are removed as links.
    public static func removeContents(of dir: String) throws {
        try walk(dir, removing: true) { _ in }
    }

    /// One entry a walk visits: its path relative to the walk's top, its `lstat` mode, and the
    /// directory it was read from, so that a change to it is made there, never through a path
    /// that a link planted since could carry onto a host file.
    public struct Entry {
        public let path: String
        public let mode: mode_t
        let directory: Int32
        let name: [CChar]

        /// `chmod` of the entry itself, never of what a link in its place points at (a writer
        /// racing the walk swaps a directory for a link to a host one: as root, the supervisor
        /// then changed the modes of host files no sandbox could reach).
        @discardableResult
        public func chmod(_ mode: mode_t) -> Bool { fchmodat(directory, name, mode, AT_SYMLINK_NOFOLLOW) == 0 }
    }

    /// Visits every entry beneath `dir` (relative path, `lstat` mode) without following a link, and with
    /// `removing` removes each one (directories after their contents). Iterative and holding at most two
    /// descriptors: an experiment can nest directories 100000 deep in the time between two polls of
    /// the output cap, and a recursive walk would run out of descriptors or stack and stop the run.
    /// Going back up uses `..`, checked against the device and inode it left.
    public static func walk(_ dir: String, removing: Bool, visit: (Entry) -> Void) throws {
        // An experiment may have made a directory unreadable (0300: still passable, not listable) to
        // keep its contents from the check and the clear: its owner's bits back first, here and below
        // (and never through a link: `dir` is the supervisor's choice, a link put in its place is not).
        var top = stat()
        if lstat(dir, &top) == 0, (top.st_mode & S_IFMT) == S_IFDIR, (top.st_mode & 0o700) != 0o700 {
            fchmodat(AT_FDCWD, dir, (top.st_mode & 0o7777) | 0o700, AT_SYMLINK_NOFOLLOW)
        }
        var fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.io(errno, "open \(dir)") }
        defer { close(fd) }
        // Names stay the bytes readdir gave: a name that is not UTF-8 (`\xff`), decoded to a String
        // and encoded back, would name nothing, so its file could be neither checked nor removed
        // (an experiment's way to keep a link past the check, or to stop the run on every clear).
        struct Frame { var name: [CChar]; var path: String; var dev: UInt; var ino: UInt; var subdirs: [[CChar]] }
        func display(_ name: [CChar]) -> String { String(decoding: name.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        func fail(_ op: String, _ path: String) -> SandboxError {
            SandboxError.io(errno, "\(op) \(dir)\(path.isEmpty ? "" : "/" + path)")
        }
        /// Visits (and removes) the non-directories of the open directory; returns its subdirectories.
        func scan(_ fd: Int32, _ path: String) throws -> [[CChar]] {
            let copy = dup(fd)
            guard copy >= 0, let stream = fdopendir(copy) else {
                if copy >= 0 { close(copy) }
                throw fail("opendir", path)
            }
            var names: [[CChar]] = []
            while let entry = readdir(stream) {
                let name: [CChar] = withUnsafePointer(to: entry.pointee.d_name) {
                    let c = UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)
                    return Array(UnsafeBufferPointer(start: c, count: strlen(c) + 1))
                }
                if name != [0x2E, 0] && name != [0x2E, 0x2E, 0] { names.append(name) }
            }
            closedir(stream)
            var subdirs: [[CChar]] = []
            for name in names {
                let rel = path.isEmpty ? display(name) : path + "/" + display(name)
                var st = stat()
                guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                visit(Entry(path: rel, mode: st.st_mode, directory: fd, name: name))
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    if (st.st_mode & 0o700) != 0o700 { fchmodat(fd, name, (st.st_mode & 0o7777) | 0o700, AT_SYMLINK_NOFOLLOW) }
                    subdirs.append(name)
                } else if removing && unlinkat(fd, name, 0) != 0 && errno != ENOENT {
                    throw fail("unlink", rel)
                }
            }
            return subdirs
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("fstat", "") }
        var frames = [Frame(name: [0], path: "", dev: UInt(st.st_dev), ino: UInt(st.st_ino), subdirs: try scan(fd, ""))]
        // The top frame is changed in place, never copied: a copy held across the pop copied the
        // list of its subdirectories once per subdirectory (90,000 siblings: 156 s of CPU).
        while !frames.isEmpty {
            if let next = frames[frames.count - 1].subdirs.popLast() {
                let parentPath = frames[frames.count - 1].path
                let path = parentPath.isEmpty ? display(next) : parentPath + "/" + display(next)
                let child = openat(fd, next, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0, fstat(child, &st) == 0 else { throw fail("open", path) }
                close(fd)
                fd = child
                frames.append(Frame(name: next, path: path, dev: UInt(st.st_dev), ino: UInt(st.st_ino), subdirs: try scan(fd, path)))
                continue
            }
            guard frames.count > 1 else { return }
            let top = frames.removeLast()
            let parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard parent >= 0, fstat(parent, &st) == 0 else { throw fail("open", top.path + "/..") }
            close(fd)
            fd = parent
            guard UInt(st.st_dev) == frames[frames.count - 1].dev, UInt(st.st_ino) == frames[frames.count - 1].ino else {
                throw SandboxError(.planted, "\(dir)/\(top.path) moved while it was being walked")
            }
            if removing && unlinkat(fd, top.name, AT_REMOVEDIR) != 0 && errno != ENOENT { throw fail("rmdir", top.path) }
        }
    }
}
