import CLauncherProtocol
import ProctorConfig

/// Everything `proctor-sandbox` needs for one command, compiled from a workspace policy.
/// A pure value: tests snapshot it, the launcher turns it into arguments.
public struct LaunchPlan: Sendable, Equatable {
    /// One step of building the child's filesystem, applied in order.
    public enum Mount: Sendable, Equatable {
        case readOnly(source: String, target: String, optional: Bool)
        case readWrite(source: String, target: String)
        case hide(String)
        case tmpfs(String, size: Int64)
        case dev(String)
        case proc(String)
        /// A symlink at `at` whose text is `target` (a merged-/usr alias such as /bin -> usr/bin).
        case symlink(target: String, at: String)
        /// Every unix socket beneath the directory, as mounted so far, is hidden: a read-only
        /// mount does not stop connect().
        case hideSockets(String)
        /// A host character device bound at `target` in the private /dev (a GPU's; `PhaseDevices`).
        case device(source: String, target: String)
    }

    public enum Network: String, Sendable, Equatable {
        /// A new network namespace with no interface at all.
        case none
        /// A new network namespace with only `lo` up.
        case loopback
        /// Loopback only, and the allowlist proxy outside on `127.0.0.1:NetworkProxy.port` (`proxy`).
        case allowlist
        /// The host's network (`network = "host"`).
        case host
    }

    public var phase: Phase
    public var mounts: [Mount] = []
    public var workingDirectory: String
    /// The complete environment of the command, in order.
    public var environment: [(String, String)] = []
    public var network: Network = .none
    /// With `network == .allowlist`: what the proxy admits.
    public var proxy: NetworkProxy?
    public var timeoutMs: Int64
    public var graceMs: Int64
    public var cpuSeconds: Int64?
    public var memoryBytes: Int64?
    public var pids: Int?
    public var maxFileSize: Int64?
    public var nofile: Int?
    /// Directories whose total size is capped, with the cap.
    public var outputLimits: [(String, Int64)] = []
    /// The caps count what `outputLimits`' directories gain from the launch on, not what they hold.
    public var outputGrowth = false
    /// How many entries they may hold (gain, with `outputGrowth`); nil: the launcher's 100,000.
    public var outputEntries: Int?
    /// No signal the kernel sends the command later may be SIGCONT (`--no-wake-signals`): a
    /// session agent, which is frozen with SIGSTOP while its experiments run.
    public var noWakeSignals = false
    public var stdioLimit: Int64?
    /// Absolute paths where writes are allowed (the audit reports writes anywhere else).
    public var writable: [String] = []
    /// Descriptors of the launcher that the command inherits under the same number.
    public var passDescriptors: [Int32] = []
    /// Where the launcher keeps compiled seccomp filters (inside `.proctor/`, seen by no sandbox).
    public var filterCache: String?
    /// Proctor run as root: the unprivileged user the command runs as (`--user`), and the host paths
    /// whose binds are idmapped so that it can write and read them as their owner (`--map-owner`).
    public var user: SandboxUser?
    public var ownerMapped: [String] = []
    public var command: [String]

    public static func == (a: LaunchPlan, b: LaunchPlan) -> Bool { a.arguments == b.arguments }

    /// The `proctor-sandbox` command line (without the program name): options, `--`, command.
    public var arguments: [String] {
        var args: [String] = []
        for mount in mounts {
            switch mount {
            case .readOnly(let source, let target, let optional): args += [optional ? "--ro-try" : "--ro", source, target]
            case .readWrite(let source, let target): args += ["--rw", source, target]
            case .hide(let target): args += ["--hide", target]
            case .tmpfs(let target, let size): args += ["--tmpfs", target, String(size)]
            case .dev(let target): args += ["--dev", target]
            case .proc(let target): args += ["--proc", target]
            case .symlink(let target, let at): args += ["--symlink", target, at]
            case .hideSockets(let dir): args += ["--hide-sockets", dir]
            case .device(let source, let target): args += ["--dev-node", source, target]
            }
        }
        args += ["--chdir", workingDirectory, "--net", network.rawValue]
        if network == .allowlist, let proxy { args += proxy.arguments }
        for (name, value) in environment { args += ["--setenv", name, value] }
        args += ["--timeout", String(timeoutMs), "--grace", String(graceMs)]
        if let cpuSeconds { args += ["--cpu", String(cpuSeconds)] }
        if let memoryBytes { args += ["--memory", String(memoryBytes)] }
        if let pids { args += ["--pids", String(pids)] }
        if let maxFileSize { args += ["--fsize", String(maxFileSize)] }
        if let nofile { args += ["--nofile", String(nofile)] }
        for (dir, bytes) in outputLimits { args += ["--output-limit", dir, String(bytes)] }
        if outputGrowth && !outputLimits.isEmpty { args.append("--output-growth") }
        if let outputEntries, !outputLimits.isEmpty { args += ["--output-entries", String(outputEntries)] }
        if noWakeSignals { args.append("--no-wake-signals") }
        if let stdioLimit { args += ["--stdio-limit", String(stdioLimit)] }
        for path in writable { args += ["--writable", path] }
        for fd in passDescriptors { args += ["--pass-fd", String(fd)] }
        if let filterCache { args += ["--filter-cache", filterCache] }
        if let user {
            args += ["--user", String(user.uid), String(user.gid)]
            for path in ownerMapped { args += ["--map-owner", path] }
        }
        args += ["--audit-writes", "--"]
        return args + command
    }
}

/// What to run and in which phase; compiled with `LaunchPlan.compile`.
public struct LaunchRequest: Sendable {
    public var config: WorkspaceConfig
    public var preset: PolicyPreset
    public var phase: Phase
    public var command: [String]
    /// `PROCTOR_SEED` of this run.
    public var seed: UInt64?
    /// Evaluator phase: a directory holding the locked files as pinned (same relative paths).
    public var pinnedDirectory: String?
    /// Agent phase: the agent's private home directory (writable).
    public var agentHome: String?
    /// Extra read-only mounts (host path, sandbox path), e.g. proctor itself for a session agent.
    public var extraReadOnly: [(String, String)] = []
    /// Extra variables set in the command's environment.
    public var extraEnvironment: [(String, String)] = []
    /// Launcher descriptors the command inherits (see `LaunchPlan.passDescriptors`).
    public var passDescriptors: [Int32] = []
    /// A sandbox its owner freezes (a session agent's): see `LaunchPlan.noWakeSignals`.
    public var frozenAtTimes = false
    /// Proctor run as root: the user the command runs as (see `SandboxUser`); nil otherwise.
    public var user: SandboxUser?
    /// With `user`: host paths besides the workspace, the agent's home and the pinned copy whose
    /// binds the user must reach as their owner (the session socket, which it connects to).
    public var mapOwner: [String] = []
    /// Experiment phase only, for an analysis run (`proctor analyze`, never scored): a host
    /// directory whose `<output>` subdirectories are bound at the workspace's `[files].outputs`
    /// paths instead of the outputs themselves, so it never writes what the evaluator reads (the
    /// command sees the usual paths and `PROCTOR_OUTPUTS`; the output cap applies to the scratch).
    /// The notes are readable too: they are hidden from experiments only because a scored program
    /// could run them unreviewed. Everything else is the experiment's view.
    public var analysisScratch: String?
    /// Experiment and evaluator phases of `proctor run --parallel` (issue 13): the candidate is
    /// measured on its slot's copy of the tree, with the slot's own outputs (`SlotView`).
    public var slot: SlotView?
    /// GPUs to skip before this launch's own: slot K of a `--parallel` run with `gpus = N` gets the
    /// host's GPUs K x N ..< (K + 1) x N.
    public var gpuOffset = 0

    public init(config: WorkspaceConfig, preset: PolicyPreset, phase: Phase, command: [String], seed: UInt64? = nil,
                pinnedDirectory: String? = nil, agentHome: String? = nil) {
        self.config = config
        self.preset = preset
        self.phase = phase
        self.command = command
        self.seed = seed
        self.pinnedDirectory = pinnedDirectory
        self.agentHome = agentHome
    }
}

/// One slot of `proctor run --parallel`: what its experiment sees at the workspace's path instead of
/// the working tree, which goes on changing while it runs (the agent proposes the next candidate
/// there). The slot's tree holds the candidate's tracked files; the workspace's git-ignored
/// entries (data sets, `.venv/`, the hidden labels, at the top or inside tracked directories) are
/// bound from the workspace as they are, read-only, so the command sees the same paths as a serial run; the hidden and sealed ones
/// stay hidden as always. Another slot's tree and outputs lie under `.proctor/`, which no sandbox sees.
public struct SlotView: Sendable, Equatable {
    /// Host directory holding the candidate's tracked files (and empty mount points).
    public var tree: String
    /// Host directory whose `<output>` subdirectories are bound at the workspace's `[files].outputs`.
    public var outputs: String
    /// The workspace's git-ignored entries (paths from its root: `.venv`, `data/train.csv`), bound
    /// read-only from the workspace.
    public var userData: [String]

    public init(tree: String, outputs: String, userData: [String]) {
        self.tree = tree
        self.outputs = outputs
        self.userData = userData
    }
}

extension LaunchPlan {
    /// Compiles a request into a plan. Deny by default: the child sees only the preset's system
    /// directories (minus its secrets), the interpreter's prefix, and the phase's view of the
    /// workspace; it writes only where the phase allows.
    public static func compile(_ request: LaunchRequest, host: HostFacts) throws -> LaunchPlan {
        let config = request.config
        let ws = config.root
        guard !request.command.isEmpty else { throw SandboxError(.badPlan, "no command to run") }
        if request.analysisScratch != nil && request.phase != .experiment {
            throw SandboxError(.badPlan, "an analysis scratch is for the experiment phase only, not \(request.phase.rawValue)")
        }
        if request.slot != nil && request.phase == .agent {
            throw SandboxError(.badPlan, "a slot is for the experiment and evaluator phases only")
        }
        let timeout: Int64
        switch request.phase {
        case .experiment: timeout = config.experiment.timeoutMs
        case .evaluator: timeout = config.evaluator.timeoutMs
        case .agent: timeout = config.agent.timeoutMs
        }
        var plan = LaunchPlan(phase: request.phase, workingDirectory: ws, timeoutMs: timeout,
                              graceMs: request.preset.graceMs, command: request.command)

        // The system, read-only, then its secrets hidden.
        for dir in request.preset.system {
            if let alias = systemAlias(dir, system: request.preset.system, host: host) {
                plan.mounts.append(.symlink(target: alias, at: dir))
            } else {
                plan.mounts.append(.readOnly(source: dir, target: dir, optional: true))
            }
        }
        for path in config.sandbox.readOnly where host.exists(path) {
            plan.mounts.append(.readOnly(source: path, target: path, optional: false))
        }
        // `[agent] read_only`: where a command agent's CLI is installed (e.g. ~/.local). Mounted
        // before the secrets are hidden and before the workspace, so neither can be re-exposed.
        if request.phase == .agent {
            for path in config.agent.readOnly where host.exists(path) {
                plan.mounts.append(.readOnly(source: path, target: path, optional: false))
            }
        }
        // What command[0] runs, resolved on the host (issue 11): its environment's prefix, a venv's
        // base installation. One inside the workspace is seen through the phase's view of it.
        let interpreter = try resolveInterpreter(request, host: host)
        let inWorkspace = { (path: String) in path.hasPrefix(ws + "/") }
        for path in request.preset.hide where host.exists(path) { plan.mounts.append(.hide(path)) }
        let hides = hostHides(config.sandbox.hide, packageRoots: (interpreter?.packageRoots ?? []) + visibleInstallations(request, host: host),
                              host: host)
        let workspaceEnvironment = (interpreter?.prefix).flatMap { inWorkspace($0) ? String($0.dropFirst(ws.count + 1)) : nil }
        // The private /tmp, /dev and /proc come before the workspace: a workspace that lives under
        // /tmp must be mounted on top of the private /tmp, not hidden by it.
        plan.mounts += [.tmpfs("/tmp", size: request.preset.tmpSize), .dev("/dev"), .proc("/proc")]
        // A small private /dev/shm, counted against the memory limit like /tmp (docker gives 64 MiB).
        if request.preset.shmSize > 0 { plan.mounts.append(.tmpfs("/dev/shm", size: request.preset.shmSize)) }
        // The interpreter's environment after the private /tmp (an environment may live under /tmp, as
        // the workspace may), one inside the workspace with the phase's view of it, below.
        for dir in interpreter?.mounts ?? [] where !inWorkspace(dir) {
            plan.mounts.append(.readOnly(source: dir, target: dir, optional: false))
        }
        // `[sandbox] hide`: after the interpreter's mounts, so its packages are covered; those inside
        // the workspace (a project's `.venv/`) after the workspace's own mounts, below.
        for path in hides where !inWorkspace(path) { plan.mounts.append(.hide(path)) }
        // The bundled example `proctor init` copies, held-out and sealed labels included: installed
        // under /usr/local/share/proctor or /opt it lies in every phase's view, and its labels are
        // those of every workspace made from it. (Not when it is the workspace itself, or holds it.)
        if let template = BundledData.templateToHide(workspace: ws) { plan.mounts.append(.hide(template)) }

        // The supervisor's own state is never writable from a sandbox, whatever the configuration
        // says: `outputs = [".proctor"]` handed the experiment the ledger, the pins and the seccomp
        // filter cache, `outputs = [".git"]` the hooks that the user's next `git commit` runs.
        for dir in config.files.outputs {
            let clean = dir.hasPrefix("./") ? String(dir.dropFirst(2)) : dir
            if let state = [".git", ".proctor", "proctor.toml"].first(where: { clean == $0 || clean.hasPrefix($0 + "/") }) {
                throw SandboxError(.badPlan, "files.outputs: \"\(dir)\" is inside proctor's own state (\(state)); choose a directory such as \"outputs/\"")
            }
        }
        let outputs = config.files.outputs.map { ws + "/" + $0 }
        // Where the outputs really are: an analysis run's scratch, a slot's own, or the workspace's.
        let outputSources = (request.analysisScratch ?? request.slot?.outputs).map { base in config.files.outputs.map { base + "/" + $0 } } ?? outputs
        // An environment in the workspace is read-only in every phase: never under an output.
        if let env = workspaceEnvironment, let dir = config.files.outputs.first(where: { $0 == env || env.hasPrefix($0 + "/") || $0.hasPrefix(env + "/") }) {
            throw SandboxError(.badPlan, "\(config.file): files.outputs: \"\(dir)\" overlaps the Python environment \(ws)/\(env) the command runs; an environment is read-only to every phase")
        }
        // The sealed test set is hidden like `hidden` in every phase; only the evaluator binds its
        // hidden files, and the sealed evaluator is launched with the sealed files as its hidden
        // ones (`WorkspaceConfig.sealedEvaluatorView`), so no phase sees both sets.
        let hidden = hiddenPaths(config, host: host, patterns: config.files.hidden + config.files.sealed)
        let evaluatorHidden = hiddenPaths(config, host: host, patterns: config.files.hidden)
        switch request.phase {
        case .experiment:
            if let slot = request.slot {
                plan.mounts.append(.readOnly(source: slot.tree, target: ws, optional: false))
                // (A link among them is in the slot's tree already, as a link: never bound.)
                for name in slot.userData where host.symlinkTarget(ws + "/" + name) == nil {
                    plan.mounts.append(.readOnly(source: ws + "/" + name, target: ws + "/" + name, optional: false))
                }
            } else {
                plan.mounts.append(.readOnly(source: ws, target: ws, optional: false))
            }
            plan.mounts += protectedState(ws, host: host).map(LaunchPlan.Mount.hide)
            plan.mounts += hidden.map { .hide(ws + "/" + $0) }
            // Notes "never affect scoring", and are exempt from the diff-line cap and the binary
            // check: were they visible, one `exec(open("LOG.md").read())` in train.py would run an
            // unbounded, unreviewed program. The experiment sees them empty (editable files stay).
            // In a slot, the notes of the candidate's tree, which the experiment sees (a new notes file is
            // there only: the workspace was reset to the best commit when the candidate left it).
            if request.analysisScratch == nil { plan.mounts += notesPaths(config, host: host, in: request.slot?.tree).map { .hide(ws + "/" + $0) } }
            // The launcher opens every source before it mounts anything (no symlink on the way), so
            // a scratch under `.proctor/`, hidden from the sandbox, is still bound at the outputs.
            let sources = outputSources
            for (source, target) in zip(sources, outputs) { plan.mounts.append(.readWrite(source: source, target: target)) }
            // A preset that forbids the network keeps the experiment on its own loopback.
            if request.preset.allowNetwork { plan.setNetwork(config.experiment.network, host: host) } else { plan.network = .loopback }
            plan.cpuSeconds = config.experiment.cpuTimeMs.map { ($0 + 999) / 1000 }
            plan.memoryBytes = config.experiment.memoryBytes
            plan.pids = config.experiment.pids
            plan.maxFileSize = config.experiment.maxFileSize
            // Polled by the launcher on the host: the directories as they are outside.
            if let cap = config.experiment.maxOutputBytes { plan.outputLimits = sources.map { ($0, cap) } }
            plan.writable = outputs

        case .evaluator:
            // The evaluator sees artifacts only: an empty workspace with the pinned locked files,
            // the hidden data and the outputs, all read-only. Nothing the agent wrote elsewhere in
            // the workspace (a planted numpy.py, sitecustomize.py) is there to be imported.
            guard let pinned = request.pinnedDirectory else {
                throw SandboxError(.badPlan, "the evaluator phase needs the pinned copy of the locked files")
            }
            plan.mounts.append(.tmpfs(ws, size: 16 << 20))
            let lockedGlobs = config.files.locked.map(Glob.init)
            let locked = host.entriesReaching(lockedGlobs).filter { entry in
                lockedGlobs.contains(where: { $0.matches(entry) }) && host.exists(pinned + "/" + entry)
            }
            let elsewhere = hidden + config.files.outputs  // parsed plain: no "./", no trailing "/"
            // (`hidden` holds the sealed files too: a locked directory holding them is bound by its entries.)
            for entry in pinnedBinds(locked, elsewhere: elsewhere) {
                plan.mounts.append(.readOnly(source: pinned + "/" + entry, target: ws + "/" + entry, optional: false))
            }
            for path in evaluatorHidden { plan.mounts.append(.readOnly(source: ws + "/" + path, target: ws + "/" + path, optional: false)) }
            for (source, target) in zip(outputSources, outputs) where host.exists(source) {
                plan.mounts.append(.readOnly(source: source, target: target, optional: false))
            }
            // The evaluator's own environment, when it is the project's (`.venv/`): read-only as elsewhere.
            for dir in interpreter?.mounts ?? [] where inWorkspace(dir) {
                plan.mounts.append(.readOnly(source: dir, target: dir, optional: false))
            }
            plan.network = .none
            plan.memoryBytes = config.evaluator.memoryBytes
            plan.pids = 64
            plan.maxFileSize = 64 << 20
            // Nothing beyond the mounts: the workspace's tmpfs is writable by its mount, and the
            // read-only binds on it (the pinned locked files, the outputs, the hidden data) are not,
            // so a write there is audited like in every other phase.
            plan.writable = []

        case .agent:
            plan.mounts.append(.readOnly(source: ws, target: ws, optional: false))
            plan.mounts += protectedState(ws, host: host).map(LaunchPlan.Mount.hide)
            plan.mounts += hidden.map { .hide(ws + "/" + $0) }
            // Per-file writable binds: the agent edits these files in place. A write-to-temp-then-
            // rename save cannot replace a bind-mounted file (EBUSY/EXDEV): such agents must write
            // in place. Names that do not exist cannot be created.
            let globs = (config.files.editable + config.files.notes).map(Glob.init)
            let lockedGlobs = config.files.locked.map(Glob.init)
            let entries = host.entriesReaching(globs + lockedGlobs)
            // A broad glob (`*`, `**`, `src/`) also matches the supervisor's state, the config,
            // locked and hidden entries: a writable bind of those, mounted after the hides, would
            // re-expose them (`.proctor/cache` holds the seccomp filters the next sandbox loads,
            // `holdout/` the labels). Never bind one, nor a directory that contains one. The outputs
            // are the experiment's: what the agent left there would be scored as its results.
            // Python environments in the workspace too (every one the walk found, and the command's
            // own): read-only in every phase, or a planted sitecustomize.py runs in the next evaluator.
            let environments = entries.filter { $0 == "pyvenv.cfg" || $0.hasSuffix("/pyvenv.cfg") || $0 == "conda-meta" || $0.hasSuffix("/conda-meta") }
                .map { $0.contains("/") ? String($0[..<$0.lastIndex(of: "/")!]) : "." }
            let offLimits = [".git", ".proctor", "proctor.toml"] + hidden + config.files.outputs + environments
                + [workspaceEnvironment].compactMap { $0 }
                + entries.filter { entry in lockedGlobs.contains { $0.matches(entry) } }
            func overlapsOffLimits(_ entry: String) -> Bool {
                offLimits.contains { $0 == "." || entry == $0 || entry.hasPrefix($0 + "/") || $0.hasPrefix(entry + "/") }
            }
            let chosen = entries.filter { entry in globs.contains { $0.matches(entry) } && !overlapsOffLimits(entry) }
            // What lies beneath a writable directory is writable through it: no bind of its own.
            // (Such a bind refuses a symlink, so one the agent left in an editable directory made
            // every later agent phase fail with 125.)
            let chosenSet = Set(chosen)
            func beneathChosen(_ entry: String) -> Bool {
                var parent = Substring(entry)
                while let slash = parent.lastIndex(of: "/") {
                    parent = parent[..<slash]
                    if chosenSet.contains(String(parent)) { return true }
                }
                return false
            }
            var writable: [String] = []
            for entry in chosen where !beneathChosen(entry) {
                writable.append(ws + "/" + entry)
                plan.mounts.append(.readWrite(source: ws + "/" + entry, target: ws + "/" + entry))
            }
            if let home = request.agentHome { plan.mounts.append(.readWrite(source: home, target: home)); writable.append(home) }
            for (source, target) in request.extraReadOnly {
                plan.mounts.append(.readOnly(source: source, target: target, optional: false))
            }
            plan.setNetwork(config.agent.network, host: host)
            plan.memoryBytes = config.agent.memoryBytes
            plan.pids = 512
            plan.maxFileSize = config.limits.maxFileBytes
            // All the agent adds to its writable places together (the launcher skips single files:
            // `max_file_size` bounds each): a disk filled within the agent's timeout ends the night,
            // and every file it makes in the workspace costs the supervisor a look when it validates
            // and reverts (milliseconds each: 20,000 is minutes, 100,000 most of an hour). Counted
            // from what they hold at the launch, which is the user's.
            if let cap = config.agent.maxOutputBytes {
                plan.outputLimits = writable.map { ($0, cap) }
                plan.outputGrowth = true
                plan.outputEntries = LaunchPlan.agentEntries
            }
            plan.writable = writable
        }
        for path in hides where inWorkspace(path) { plan.mounts.append(.hide(path)) }
        let devices = try PhaseDevices.of(config, phase: request.phase, preset: request.preset, host: host, offset: request.gpuOffset)
        plan.mounts += devices.mounts
        // A host process's unix socket in the workspace (an agent's, a dev server's) would be
        // connectable through the read-only bind; the launcher hides the ones it finds.
        plan.mounts.append(.hideSockets(ws))
        plan.nofile = request.preset.nofile
        plan.stdioLimit = request.preset.stdioLimit
        // An extra variable replaces one of the same name: a duplicate in envp is read as the
        // first by some programs (node) and as the last by others (dash).
        // The proxy variables replace any of the host's too: with an allowlist nothing else leads out.
        let proxyEnvironment = plan.network == .allowlist ? NetworkProxy.environment : []
        let extraNames = Set((request.extraEnvironment + proxyEnvironment + devices.environment).map(\.0))
        plan.environment = environment(request, host: host, interpreter: interpreter, outputs: outputs)
            .filter { !extraNames.contains($0.0) } + devices.environment + proxyEnvironment + request.extraEnvironment
        plan.passDescriptors = request.passDescriptors
        plan.noWakeSignals = request.frozenAtTimes
        if host.exists(ws + "/.proctor") { plan.filterCache = ws + "/.proctor/cache" }
        if let user = request.user {
            // Only proctor's and the user's own places: an idmapped system directory would hand its
            // root-only files back to the command.
            plan.user = user
            let places = [ws, request.agentHome, request.pinnedDirectory, request.analysisScratch, request.slot?.tree, request.slot?.outputs].compactMap { $0 }
                + request.mapOwner
            for path in places where !plan.ownerMapped.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) {
                plan.ownerMapped.append(path)
            }
        }
        // The launcher takes at most this many mount options (PSB_MAX_OPS): say
        // which globs to change rather than let it refuse the whole plan.
        if plan.mounts.count > LaunchPlan.maxMounts {
            // Located at the [files] table, as a bad key is (a mutant with 400 outputs named only
            // editable, notes and hidden, and no file: issue 10's fuzzer).
            // A --parallel slot binds each of the workspace's git-ignored entries (`SlotView.userData`).
            let ignored = request.slot?.userData ?? []
            let slotData = ignored.count < 32 ? "" : "; under --parallel, each of the workspace's \(ignored.count) git-ignored entries (\(ignored.prefix(3).joined(separator: ", ")), ...) is bound into the slot one by one: ignore a directory as a whole (\"data/\" in .gitignore, not \"data/*\")"
            throw SandboxError(.mountLimit, "\(request.config.file): files: the \(request.phase.rawValue) sandbox would need \(plan.mounts.count) mounts, more than the \(LaunchPlan.maxMounts) it takes: [files] globs (editable, notes, hidden) match too many single files, or there are too many outputs; name their directory instead (\"src/\", \"holdout/**\")\(slotData)")
        }
        return plan
    }

    /// A phase's `network` setting: `none` (the experiment keeps its loopback), `allowlist` (loopback
    /// and the proxy), `host`.
    mutating func setNetwork(_ access: NetworkAccess, host: HostFacts) {
        switch access.mode {
        case .none: network = phase == .experiment ? .loopback : .none
        case .allowlist: network = .allowlist
        case .host: network = .host
        }
        proxy = NetworkProxy.of(access, host: host)
    }

    /// The most mount options the launcher takes (`PSB_MAX_OPS`, sandbox/protocol/psb_protocol.h).
    public static let maxMounts = Int(PSB_MAX_OPS)
    /// New entries (files, directories, links) an agent phase may make in its writable places.
    public static let agentEntries = 20_000

    /// The link text when `dir` is a symlink into another system directory that is itself a real
    /// directory (merged /usr: /bin -> usr/bin): the sandbox gets the same link, not a bind.
    static func systemAlias(_ dir: String, system: [String], host: HostFacts) -> String? {
        guard let text = host.symlinkTarget(dir), !text.isEmpty else { return nil }
        var parts = text.hasPrefix("/") ? [] : dir.split(separator: "/").dropLast().map(String.init)
        for part in text.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { if parts.popLast() == nil { return nil }; continue }
            parts.append(String(part))
        }
        let resolved = "/" + parts.joined(separator: "/")
        let covered = system.contains { base in
            base != dir && (resolved == base || resolved.hasPrefix(base + "/")) && host.exists(base)
                && host.symlinkTarget(base) == nil
        }
        return covered ? text : nil
    }

    /// `[sandbox] hide` on this host: absolute paths that exist, and `{site-packages}/REL` under every
    /// Python package directory of the resolved environment and its base (`packageRoots`), /usr and
    /// /usr/local (`lib/python3/dist-packages`, `lib/python3.X/site-packages`, `lib/python3.X/dist-packages`).
    static func hostHides(_ entries: [String], packageRoots: [String], host: HostFacts) -> [String] {
        let placeholder = "{site-packages}/"
        var packageDirs: [String] = []
        // Listing /usr/lib and friends is work done at every launch: only when an entry asks for it.
        let roots = entries.contains { $0.hasPrefix(placeholder) } ? packageRoots + ["/usr", "/usr/local"] : []
        for root in roots {
            let lib = (root == "/" ? "" : root) + "/lib"
            var candidates = [lib + "/python3/dist-packages"]
            for name in host.directoryEntries(lib).sorted() where name.hasPrefix("python3.") {
                candidates += [lib + "/" + name + "/site-packages", lib + "/" + name + "/dist-packages"]
            }
            for dir in candidates where host.exists(dir) && !packageDirs.contains(dir) { packageDirs.append(dir) }
        }
        var result: [String] = []
        for entry in entries {
            let paths = entry.hasPrefix(placeholder)
                ? packageDirs.map { $0 + "/" + entry.dropFirst(placeholder.count) } : [entry]
            for path in paths where host.exists(path) && !result.contains(path) { result.append(path) }
        }
        return result
    }

    /// The Python installations this phase's sandbox shows besides its own interpreter's, which a
    /// `{site-packages}` hide must reach too: under the system directories (`/opt/conda`), the
    /// `read_only` paths (a pyenv root, a miniconda) and, for the phases that see the workspace, a
    /// project's `.venv/`. An agent's `sh` or `claude` (or an experiment's `sh -c ...`) has no
    /// interpreter of its own: the labels scikit-learn ships were readable through the workspace's
    /// `.venv/`, and the agent rebuilt the held-out set from them.
    static func visibleInstallations(_ request: LaunchRequest, host: HostFacts) -> [String] {
        let config = request.config
        guard config.sandbox.hide.contains(where: { $0.hasPrefix("{site-packages}/") }) else { return [] }
        var roots = request.preset.system + config.sandbox.readOnly
        if request.phase == .agent { roots += config.agent.readOnly }
        if request.phase != .evaluator { roots.append(config.root) }
        return pythonInstallations(under: roots, host: host)
    }

    /// Directories under `roots` that may be Python installations, found without a deep walk: each
    /// root, the directories in it, and the `envs/*` (conda) and `versions/*` (pyenv) directories
    /// of both. Links are not followed (a sandbox sees what they name only where that is mounted,
    /// and so searched, itself). `hostHides` keeps those with a `lib/python3...` package directory.
    static func pythonInstallations(under roots: [String], host: HostFacts) -> [String] {
        func children(_ path: String) -> [String] {
            host.directoryEntries(path).sorted().map { (path == "/" ? "" : path) + "/" + $0 }.filter { host.symlinkTarget($0) == nil }
        }
        var found: [String] = []
        for root in roots where host.exists(root) && host.symlinkTarget(root) == nil {
            for level in [root] + children(root) {
                for candidate in [level] + children(level + "/envs") + children(level + "/versions") where !found.contains(candidate) {
                    found.append(candidate)
                }
            }
        }
        return found
    }

    /// The supervisor's own files in the workspace: never visible from any sandbox.
    private static func protectedState(_ ws: String, host: HostFacts) -> [String] {
        [".git", ".proctor", "proctor.toml"].map { ws + "/" + $0 }.filter(host.exists)
    }

    /// Workspace-relative paths to hide: a whole directory for `dir/**` or `dir/`, otherwise
    /// every existing entry that matches.
    static func hiddenPaths(_ config: WorkspaceConfig, host: HostFacts, patterns: [String]) -> [String] {
        var result: [String] = []
        var globs: [Glob] = []
        for pattern in patterns {
            if let prefix = WorkspaceConfig.hiddenPrefix(pattern), prefix.hasSuffix("/") {
                let base = String(prefix.dropLast())
                if host.exists(config.root + "/" + base) { result.append(base) }
            } else {
                globs.append(Glob(pattern))
            }
        }
        if !globs.isEmpty {
            // A symlink is skipped: only a sandbox could have made one where a glob reaches (an
            // editable directory, the outputs). Hiding it failed the next run (setup refuses to
            // follow links), and the evaluator's read-only bind of it followed it on the host,
            // mounting whatever it named. Inside a sandbox it resolves in the sandbox's own view.
            for entry in host.entriesReaching(globs) where globs.contains(where: { $0.matches(entry) })
                && host.symlinkTarget(config.root + "/" + entry) == nil {
                // Hiding a directory hides what is beneath it.
                if !result.contains(where: { entry.hasPrefix($0 + "/") }) { result.append(entry) }
            }
        }
        return result
    }

    /// What of the pinned copy the evaluator gets, as few binds as possible: for each locked entry
    /// its shallowest ancestor (or itself) with no other mount (`elsewhere`: hidden paths, outputs)
    /// at, above or beneath it. The pinned copy holds the locked files only, so a whole directory
    /// of it shows nothing else, and `data/**` over a dataset is one bind, not one per file (the
    /// launcher takes at most 256 mount options).
    static func pinnedBinds(_ locked: [String], elsewhere: [String]) -> [String] {
        func overlaps(_ path: String) -> Bool {
            elsewhere.contains { $0 == path || $0.hasPrefix(path + "/") || path.hasPrefix($0 + "/") }
        }
        var chosen: [String] = []
        var seen = Set<String>()
        for entry in locked {
            let parts = entry.split(separator: "/")
            let ancestors = (1...max(parts.count, 1)).lazy.map { parts.prefix($0).joined(separator: "/") }
            let pick = ancestors.first { !overlaps($0) } ?? entry
            if seen.insert(pick).inserted { chosen.append(pick) }
        }
        return chosen
    }

    /// Workspace-relative notes files that exist in `tree` (a slot's tree; nil: the workspace) and
    /// are not also editable (those the experiment needs).
    static func notesPaths(_ config: WorkspaceConfig, host: HostFacts, in tree: String? = nil) -> [String] {
        let root = tree ?? config.root
        let notes = config.files.notes.map(Glob.init)
        guard !notes.isEmpty else { return [] }
        let editable = config.files.editable.map(Glob.init)
        // Plain file names (`LOG.md`, the usual case) need no walk of the whole workspace, which
        // costs every sandbox start ~3 ms per 1 000 entries in a workspace that holds a dataset.
        if notes.allSatisfy({ $0.isLiteral && !$0.pattern.hasSuffix("/") }) {
            // As the walk, which does not descend into a symlinked directory: no component may be a link.
            func throughLink(_ entry: String) -> Bool {
                let parts = entry.split(separator: "/")
                return (1..<max(parts.count, 1)).contains { n in
                    host.symlinkTarget(root + "/" + parts.prefix(n).joined(separator: "/")) != nil
                }
            }
            return notes.map(\.literalPrefix).filter { entry in
                host.exists(root + "/" + entry) && !throughLink(entry) && !editable.contains { $0.matches(entry) }
            }
        }
        let reached = tree.map { host.entriesReachingUnder($0, notes) } ?? host.entriesReaching(notes)
        let matched = reached.filter { entry in notes.contains { $0.matches(entry) } && !editable.contains { $0.matches(entry) } }
        // A notes directory is hidden whole, one mount however many notes the agent writes into it
        // (it may create files there: 300 of them took more mounts than the launcher takes, and
        // stopped the run), unless something beneath it is editable (the experiment needs that:
        // then its notes files are hidden one by one, the directory never).
        func ancestors(_ entry: String) -> [String] {
            var result: [String] = []
            var path = Substring(entry)
            while let slash = path.lastIndex(of: "/") {
                path = path[..<slash]
                result.append(String(path))
            }
            return result
        }
        let aboveEditable = Set(reached.filter { entry in editable.contains { $0.matches(entry) } }.flatMap(ancestors))
        let whole = Set(matched.filter { !aboveEditable.contains($0) })
        return matched.filter { entry in !aboveEditable.contains(entry) && !ancestors(entry).contains(where: whole.contains) }
    }

    /// The variables of the phase's `env` allowlist.
    private static func passedNames(_ request: LaunchRequest) -> [String] {
        switch request.phase {
        case .experiment, .evaluator: return request.config.experiment.env
        case .agent: return request.config.agent.env
        }
    }

    /// The PATH the command gets, before an environment's `bin` is put first: the host's when the
    /// allowlist passes it.
    private static func sandboxPath(_ request: LaunchRequest, host: HostFacts) -> String {
        passedNames(request).contains("PATH") ? host.environment["PATH"] ?? "" : "/usr/local/bin:/usr/bin:/bin"
    }

    /// The command whose `command[0]` the launch resolves on the host: the request's own, but for
    /// an analysis run, which runs with the experiment's interpreter and environment, whatever it
    /// asks to run. Its command may be the session agent's: resolving that on the host would mean
    /// running a "shim" the agent wrote (a host process outside every sandbox) and mounting what a
    /// `pyvenv.cfg` it wrote names; inside, the sandbox looks it up on the experiment's PATH.
    static func resolvedCommand(_ request: LaunchRequest) -> [String] {
        request.analysisScratch == nil ? request.command : request.config.experiment.command
    }

    /// What `command[0]` is resolved against in this phase (see `PythonEnvironment.resolve`).
    static func interpreterQuery(_ request: LaunchRequest, host: HostFacts) -> InterpreterQuery {
        let config = request.config
        let command = resolvedCommand(request)
        var visible = request.preset.system + config.sandbox.readOnly
        var key: String
        switch request.phase {
        case .experiment:
            key = command == config.experiment.command ? "[experiment] command" : ""
        case .evaluator:
            let sealed = !config.evaluator.sealedCommand.isEmpty && command == config.evaluator.sealedCommand
            key = sealed ? "[evaluator] sealed_command" : command == config.evaluator.command ? "[evaluator] command" : ""
        case .agent:
            key = command.first == config.agent.command.first ? "[agent] command" : ""
            visible += config.agent.readOnly
        }
        // A command given on the command line (`proctor exec`), not by a key.
        if key.isEmpty { key = "the \(request.phase.rawValue) command" }
        // The evaluator sees none of the live workspace but what its plan binds.
        if request.phase != .evaluator { visible.append(config.root) }
        return InterpreterQuery(command: command[0], sandboxPath: sandboxPath(request, host: host),
                                environment: host.environment, workspace: config.root, visible: visible, key: key,
                                envKey: request.phase == .agent ? "[agent] env" : "[experiment] env", file: config.file,
                                line: config.keyLines[key])
    }

    /// What `command[0]` of `request` runs, as a launch would resolve it; throws the refusal
    /// (`.interpreter`) a launch would throw. For the start checks of `proctor run` and `proctor check`.
    public static func resolveInterpreter(_ request: LaunchRequest, host: HostFacts) throws -> ResolvedInterpreter? {
        let command = resolvedCommand(request)
        guard !command.isEmpty else { return nil }
        let query = interpreterQuery(request, host: host)
        // `uv run`, `poetry run`, `conda run`: the tool would start inside the sandbox, wanting its
        // cache, its configuration and the network to sync the environment. Name the interpreter.
        let runners = ["uv", "poetry", "pipenv", "pdm", "hatch", "conda", "mamba", "micromamba"]
        if command.count > 1, command[1] == "run",
            let tool = runners.first(where: { $0 == PythonEnvironment.basename(command[0]) }) {
            throw PythonEnvironment.refusal(query, "\"\(tool) run\" would start \(tool) inside the sandbox, without its cache, its configuration or the network", fix: tool == "uv" || tool == "poetry" ? ".venv/bin/python" : nil, orPath: false)
        }
        return try host.interpreter(query)
    }

    private static func environment(_ request: LaunchRequest, host: HostFacts, interpreter: ResolvedInterpreter?,
                                    outputs: [String]) -> [(String, String)] {
        let names = passedNames(request)
        let interpreterBin = interpreter?.bin
        // PYTHONHOME would point any interpreter at another installation's library; an environment's
        // variables are set for the environment mounted, never passed from the host.
        let environmentNames: Set<String> = ["PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX"]
        var env: [(String, String)] = []
        for name in names where !name.hasPrefix("PROCTOR_") && !environmentNames.contains(name) {
            guard var value = host.environment[name] else { continue }
            if name == "PATH", let bin = interpreterBin, !value.hasPrefix(bin + ":") { value = bin + ":" + value }
            // The host's home is never mounted; the agent gets its private one.
            if name == "HOME" { value = request.agentHome ?? "/tmp" }
            env.append((name, value))
        }
        if !names.contains("PATH") {
            env.append(("PATH", (interpreterBin.map { $0 + ":" } ?? "") + sandboxPath(request, host: host)))
        }
        for (name, value) in (interpreter?.variables ?? [:]).sorted(by: { $0.key < $1.key }) { env.append((name, value)) }
        if request.phase == .agent, let home = request.agentHome, !names.contains("HOME") { env.append(("HOME", home)) }
        // Python would try to write __pycache__ into the read-only workspace: real denied writes, but noise.
        if !names.contains("PYTHONDONTWRITEBYTECODE") { env.append(("PYTHONDONTWRITEBYTECODE", "1")) }
        if let seed = request.seed { env.append(("PROCTOR_SEED", String(seed))) }
        env.append(("PROCTOR_PHASE", request.phase.rawValue))
        if let first = outputs.first { env.append(("PROCTOR_OUTPUTS", first)) }
        return env
    }
}
