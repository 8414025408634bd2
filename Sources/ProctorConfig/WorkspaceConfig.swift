import Foundation

/// The typed contents of a workspace's `proctor.toml`, validated before anything runs.
public struct WorkspaceConfig: Sendable, Equatable {
    /// `[files]`: workspace-relative globs.
    public struct Files: Sendable, Equatable {
        public var editable: [String] = []
        public var notes: [String] = []
        public var locked: [String] = []
        public var hidden: [String] = []
        /// The sealed test set: like `hidden`, but seen only by `[evaluator] sealed_command`, which
        /// runs on kept commits alone; no agent ever learns its scores.
        public var sealed: [String] = []
        /// Directories, workspace-relative, without a trailing slash.
        public var outputs: [String] = ["outputs"]
        /// The lines of `editable`, `notes` and `outputs`, for `linkedAgentFile` and `outputOverTheTree`.
        public var lines: [String: Int] = [:]
    }

    /// `[experiment]`: the budgeted run of the agent-edited script.
    public struct Experiment: Sendable, Equatable {
        public var command: [String] = []
        public var timeoutMs: Int64 = 5 * 60_000
        public var cpuTimeMs: Int64? = nil
        public var memoryBytes: Int64? = 4 << 30
        public var pids: Int? = 256
        public var maxFileSize: Int64? = 256 << 20
        public var maxOutputBytes: Int64? = 1 << 30
        /// `none` keeps the experiment on its own loopback.
        public var network = NetworkAccess()
        public var env: [String] = ["PATH", "LANG"]
        public var seeds: [UInt64] = [42]
        /// `parallel`: candidates measured at once, each in its own slot (`proctor run --parallel`);
        /// `parallelLine` locates the key for a message about it.
        public var parallel = 1
        public var parallelLine: Int? = nil
        /// `gpus`: the NVIDIA GPUs the experiment gets; `gpusLine` locates the key for an error
        /// about this host (more asked than present).
        public var gpus = GPURequest.none
        public var gpusLine: Int? = nil
        /// `devices`: other character devices passed through, as written (checked by `DevicePath`).
        public var devices: [String] = []
        public var devicesLine: Int? = nil
        /// `gpu_memory`: the most GPU memory the experiment's processes may hold (NVML); nil: no cap.
        public var gpuMemoryBytes: Int64? = nil
    }

    /// `[evaluator]`: the locked scorer, run from the pinned copy.
    public struct Evaluator: Sendable, Equatable {
        public var command: [String] = []
        public var timeoutMs: Int64 = 2 * 60_000
        public var memoryBytes: Int64? = 4 << 30
        public var metric: String = "score"
        /// The sealed evaluator (a locked script over the `sealed` files); empty when there is none.
        public var sealedCommand: [String] = []
        public var maximize: Bool = true
        /// `gpus`: as the experiment's; the evaluator gets none unless it asks.
        public var gpus = GPURequest.none
        public var gpusLine: Int? = nil
    }

    /// `[limits]`: caps on the evaluator's measurements and on the diff.
    public struct Limits: Sendable, Equatable {
        public var features: Int? = nil
        public var trees: Int? = nil
        public var diffLines: Int = 400
        /// Largest changed file the diff validator accepts.
        public var maxFileBytes: Int64 = 1 << 20
    }

    /// `[gates]`: what counts as a real improvement.
    public struct Gates: Sendable, Equatable {
        public var minImprovement: Double = 0
        public var confirmSeeds: [UInt64] = []
        /// `fresh_seeds` (default true): each candidate is confirmed on seeds drawn for it alone, as
        /// many as `confirmSeeds` lists, which stay the baseline's; false: on `confirmSeeds` themselves.
        public var freshSeeds = true
    }

    /// `[agent]`: who proposes changes. Kind-specific settings are kept raw for the agent layer.
    public struct Agent: Sendable, Equatable {
        public var kind: String = "mutate"
        /// `kind = "search"`: the optimizer (`tpe`, `cmaes` or `random`).
        public var strategy: String = "tpe"
        /// `seed`: the `mutate` and `search` agents draw from it instead of from the run id, so two
        /// runs of the same workspace that measure the same scores propose the same configurations.
        public var seed: Int? = nil
        public var command: [String] = []
        /// Command and session agents' network (the http agent's requests are proctor's own).
        public var network = NetworkAccess()
        public var timeoutMs: Int64 = 10 * 60_000
        public var memoryBytes: Int64? = 4 << 30
        /// What a command or session agent may add to its writable places (editable and notes
        /// directories, its home) in one launch, all together.
        public var maxOutputBytes: Int64? = 1 << 30
        /// Environment variables passed to a command agent (names), e.g. its API key.
        public var env: [String] = ["PATH", "LANG", "TERM"]
        /// Read-only paths a command agent may additionally see (its own installation).
        public var readOnly: [String] = []
        public var readOnlyLine: Int? = nil
        /// Files copied into the agent's private home (e.g. a CLI's config), host path → home-relative path.
        public var homeFiles: [String: String] = [:]
        /// The line of each `[agent.home_files]` key, for `missingHomeFile`.
        public var homeFileLines: [String: Int] = [:]
        // http
        public var httpProtocol: String = "openai"
        public var baseURL: String = ""
        public var model: String = ""
        public var apiKeyEnv: String? = nil
        public var maxTokens: Int = 4096
        public var temperature: Double? = nil
        public var retries: Int = 4
        public var pricePerMTokIn: Double? = nil
        public var pricePerMTokOut: Double? = nil
    }

    /// `[sandbox]`: which preset from `policies/` to start from.
    public struct Sandbox: Sendable, Equatable {
        public var policy: String = "default"
        /// The line of `policy` in proctor.toml, for an error about a preset that does not exist.
        public var policyLine: Int? = nil
        /// Extra read-only host paths (e.g. a toolchain outside /usr).
        public var readOnly: [String] = []
        public var readOnlyLine: Int? = nil
        /// Host paths no sandbox phase sees: absolute, or `{site-packages}/REL` for REL in every
        /// Python package directory (a dataset a package ships that would give the holdout away).
        public var hide: [String] = []
        public var hideLine: Int? = nil
        /// `user`: the host user whose uid and gid every sandboxed command runs as when proctor runs
        /// as root (nil: `proctor-sandbox`, created on first use). Checked when read: it exists and
        /// is neither root nor in root's group.
        public var user: String? = nil
    }

    /// Absolute path of the workspace root.
    /// `[memory]`: what the runtime remembers around the loop (`.proctor/memory/`).
    public struct Memory: Sendable, Equatable {
        /// How many discarded candidates closest to the best `near_misses.md` keeps.
        public var nearMisses: Int = 3
        /// Iterations without a keep after which the next prompt carries the plateau hint.
        public var plateauAfter: Int = 15
        /// A user-maintained, locked file whose lines join `do_not_retry.md`.
        public var doNotRetry: String? = nil
        public var doNotRetryLine: Int? = nil
        /// `rules` (deterministic, from the ledger and the diffs) or `agent` (an http agent rewrites
        /// `learnings.md` with a second model call).
        public var synthesize: String = "rules"

        public init() {}
    }

    /// One `[[phases]]` table: a research strategy for the iterations up to `until`.
    public struct ResearchPhase: Sendable, Equatable {
        /// The last iteration of the phase (nil: until the run ends).
        public var until: Int?
        public var strategy: String
        public var name: String
    }

    public var root: String
    /// Absolute path of the `proctor.toml` this was read from.
    public var file: String
    public var files = Files()
    public var experiment = Experiment()
    public var evaluator = Evaluator()
    public var limits = Limits()
    public var gates = Gates()
    public var agent = Agent()
    public var sandbox = Sandbox()
    public var memory = Memory()
    /// `[executor]`: local launches or Slurm jobs (issue 14).
    public var executor = ExecutorSettings()
    public var phases: [ResearchPhase] = []
    /// Settings that work but carry a risk the user should hear of, located (`proctor.toml:12:
    /// agent.network: ...`); said once per command that launches sandboxes.
    public var warnings: [String] = []
    /// The line of each key found wrong only after loading (`"[experiment] command"`: a program the
    /// sandbox would not find; `"[experiment] network"`: a setting the executor cannot honour).
    public var keyLines: [String: Int] = [:]

    public init(root: String, file: String) {
        self.root = root
        self.file = file
    }
}

extension WorkspaceConfig {
    /// Loads and validates `DIR/proctor.toml`.
    public static func load(workspace: String) throws -> WorkspaceConfig {
        let root = URL(fileURLWithPath: workspace).standardizedFileURL.path
        let file = root + "/proctor.toml"
        // Every sandbox hides proctor.toml; a link there cannot be hidden (the launcher refused it,
        // and only once the baseline ran), and what it points at is not the committed file.
        var link = stat()
        if lstat(file, &link) == 0, (link.st_mode & S_IFMT) == S_IFLNK {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: file)).map { " (to \($0))" } ?? ""
            throw ConfigError(file: file, line: nil, key: nil, message: "is a symbolic link\(target): proctor reads the workspace's own proctor.toml, a regular file committed with it")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            // Missing, or there and unreadable (permissions, a directory): different fixes, so say which.
            var st = stat()
            if stat(file, &st) == 0 || errno != ENOENT {
                let reason = (st.st_mode & S_IFMT) == S_IFDIR ? "it is a directory" : String(cString: strerror(access(file, R_OK) == 0 ? EIO : errno))
                throw ConfigError(file: file, line: nil, key: nil, message: "cannot read the workspace configuration: \(reason)")
            }
            throw ConfigError(file: file, line: nil, key: nil, message: "cannot read the workspace configuration (is \(root) a proctor workspace? `proctor init` makes one)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError.notUTF8(file: file, bytes: [UInt8](data))
        }
        return try parse(text, root: root, file: file)
    }

    /// Parses the text of a `proctor.toml`; `file` is only used in error messages.
    public static func parse(_ text: String, root: String, file: String) throws -> WorkspaceConfig {
        let reader = try TOMLReader(file: file, text: text)
        var top = TableReader(reader, [], reader.root)
        var config = WorkspaceConfig(root: root, file: file)

        var files = try top.table("files")
        config.files.editable = try files.strings("editable").map { try relativeGlobs($0, files, "editable") } ?? []
        config.files.notes = try files.strings("notes").map { try relativeGlobs($0, files, "notes") } ?? []
        for key in ["editable", "notes", "locked", "outputs"] { config.files.lines[key] = reader.line(of: files.path, key: key) }
        config.files.locked = try files.strings("locked").map { try relativeGlobs($0, files, "locked") } ?? []
        config.files.hidden = try files.strings("hidden").map { try relativeGlobs($0, files, "hidden") } ?? []
        config.files.sealed = try files.strings("sealed").map { try relativeGlobs($0, files, "sealed") } ?? []
        if let outputs = try files.strings("outputs") {
            config.files.outputs = try relativeGlobs(outputs, files, "outputs").map { path in
                let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
                guard !trimmed.isEmpty, !trimmed.contains("*"), !trimmed.contains("?"), !trimmed.contains("[") else {
                    throw reader.error(files.path, "outputs", "expected plain directory names such as \"outputs/\", got \"\(path)\"")
                }
                // The outputs are emptied before every experiment and after every revert: a directory
                // that is (or holds, or lies in) the workspace root, git's or proctor's own state, or a
                // file the other [files] lists name would be deleted with them (`outputs = ["."]`
                // wiped the whole workspace, `.git` included, on the first `proctor run`).
                let segments = trimmed.split(separator: "/", omittingEmptySubsequences: false)
                guard !segments.contains("."), !segments.contains(""), ![".git", ".proctor", "proctor.toml"].contains(segments[0]) else {
                    throw reader.error(files.path, "outputs", "expected a directory of its own below the workspace root (not \".\", \".git\", \".proctor\" or \"proctor.toml\"), got \"\(path)\"")
                }
                return trimmed
            }
            // The experiment writes where the evaluator reads: with none, no score could come back.
            guard !config.files.outputs.isEmpty else {
                throw reader.error(files.path, "outputs", "expected at least one directory, e.g. [\"outputs/\"]: the evaluator reads the experiment's results there")
            }
            // Each is emptied and bound on its own: one inside another (or listed twice) was moved
            // aside twice and the baseline failed.
            for (index, output) in config.files.outputs.enumerated() {
                if let other = config.files.outputs[..<index].first(where: { $0 == output || $0.hasPrefix(output + "/") || output.hasPrefix($0 + "/") }) {
                    throw reader.error(files.path, "outputs", other == output
                        ? "\"\(output)\" is listed twice; each directory once"
                        : "expected directories apart from each other, got \"\(output)\" and \"\(other)\", one inside the other")
                }
            }
            for output in config.files.outputs {
                let lists = [("editable", config.files.editable), ("notes", config.files.notes),
                             ("locked", config.files.locked), ("hidden", config.files.hidden),
                             ("sealed", config.files.sealed)]
                for (name, patterns) in lists {
                    for pattern in patterns {
                        let prefix = Glob(pattern).literalPrefix
                        guard !prefix.isEmpty, prefix == output || prefix.hasPrefix(output + "/") || output.hasPrefix(prefix + "/")
                        else { continue }
                        throw reader.error(files.path, "outputs", "expected a directory apart from the other [files] lists, got \"\(output)\", which overlaps \(name) \"\(pattern)\" (the outputs are emptied before every experiment)")
                    }
                }
            }
        }
        try files.finish()

        var exp = try top.table("experiment")
        if let command = try commandLine(&exp, "command") { config.experiment.command = command }
        if let value = try exp.duration("timeout") { config.experiment.timeoutMs = value }
        config.experiment.cpuTimeMs = try exp.duration("cpu_time")
        if exp.has("memory") { config.experiment.memoryBytes = try exp.size("memory", minimum: 8 << 20) }
        if let value = try exp.int("pids", min: 1, max: 1 << 22) { config.experiment.pids = value }
        if let value = try exp.size("max_file_size") { config.experiment.maxFileSize = value }
        if let value = try exp.size("max_output_bytes") { config.experiment.maxOutputBytes = value }
        config.experiment.network = try NetworkAccess.read(&exp, warnings: &config.warnings)
        if let value = try exp.strings("env") { config.experiment.env = try envNames(value, exp, "env") }
        if let value = try exp.ints("seeds") {
            guard !value.isEmpty else { throw reader.error(exp.path, "seeds", "expected at least one seed") }
            if let twice = firstRepeated(value) {
                throw exp.error("seeds", "seed \(twice) is listed twice; each seed once (a seed measured again gives the same score again)")
            }
            config.experiment.seeds = value.map { UInt64($0) }
        }
        if let value = try exp.int("parallel", min: 1, max: 64) {
            config.experiment.parallel = value
            config.experiment.parallelLine = reader.line(of: exp.path, key: "parallel")
        }
        config.experiment.gpus = try GPURequest.read(&exp)
        config.experiment.gpusLine = reader.line(of: exp.path, key: "gpus")
        if let devices = try exp.strings("devices") {
            for device in devices {
                if let why = DevicePath.refusal(device) { throw exp.error("devices", "\"\(device)\": \(why)") }
            }
            // Bound twice, the second bind found the first node there and the launch failed.
            var seen = Set<String>()
            if let twice = devices.first(where: { !seen.insert($0).inserted }) {
                throw exp.error("devices", "\"\(twice)\" is listed twice; each device once")
            }
            config.experiment.devices = devices
            config.experiment.devicesLine = reader.line(of: exp.path, key: "devices")
        }
        if let value = try exp.size("gpu_memory") {
            guard config.experiment.gpus.wanted else { throw exp.error("gpu_memory", "is a cap on the GPUs' memory: set gpus = N or \"all\" too") }
            config.experiment.gpuMemoryBytes = value
        }
        try exp.finish()
        guard !config.experiment.command.isEmpty else {
            throw reader.error(["experiment"], "command", "expected the experiment command, e.g. [\"python3\", \"train.py\"]")
        }

        var ev = try top.table("evaluator")
        if let command = try commandLine(&ev, "command") { config.evaluator.command = command }
        if let value = try ev.duration("timeout") { config.evaluator.timeoutMs = value }
        if ev.has("memory") { config.evaluator.memoryBytes = try ev.size("memory", minimum: 8 << 20) }
        if let value = try ev.string("metric") {
            guard !value.isEmpty else { throw reader.error(ev.path, "metric", "expected a non-empty key name") }
            config.evaluator.metric = value
        }
        if let value = try ev.string("direction", oneOf: ["maximize", "minimize"]) {
            config.evaluator.maximize = value == "maximize"
        }
        if let value = try commandLine(&ev, "sealed_command") { config.evaluator.sealedCommand = value }
        config.evaluator.gpus = try GPURequest.read(&ev)
        config.evaluator.gpusLine = reader.line(of: ev.path, key: "gpus")
        try ev.finish()
        // Each needs the other: a sealed evaluator without its set would score nothing, a set
        // without an evaluator would be hidden for nothing.
        if !config.evaluator.sealedCommand.isEmpty && config.files.sealed.isEmpty {
            throw reader.error(["evaluator"], "sealed_command", "expected [files] sealed = [...] naming the sealed test set it scores")
        }
        if config.evaluator.sealedCommand.isEmpty && !config.files.sealed.isEmpty {
            throw reader.error(["files"], "sealed", "expected [evaluator] sealed_command = [...] to score the sealed set")
        }
        for pattern in config.files.sealed {
            let overlap = (config.files.editable + config.files.notes + config.files.locked + config.files.hidden).first {
                $0 == pattern || Glob($0).matches(pattern) || Glob(pattern).matches($0)
            }
            if let overlap {
                throw reader.error(["files"], "sealed", "expected files apart from the other [files] lists, got \"\(pattern)\", which overlaps \"\(overlap)\"")
            }
        }
        // A file named outright as the agent's that another list keeps from it: locked, it was left
        // out of what the agent edits without a word; hidden, the experiment could not read it.
        for (key, patterns) in [("editable", config.files.editable), ("notes", config.files.notes)] {
            for path in patterns where namesOnePath(path) {
                // Proctor's own: never writable by an agent, whatever a list says (it was left out without a word).
                let own = [".git", ".proctor", "proctor.toml"]
                if let first = path.split(separator: "/").first.map(String.init), own.contains(first) {
                    throw reader.error(["files"], key, "expected files the agent may change, got \"\(path)\", which is proctor's own (\(own.joined(separator: ", ")) never are)")
                }
                func covers(_ pattern: String, hiding: Bool) -> Bool {
                    if Glob(pattern).matches(path) { return true }
                    guard hiding, let base = hiddenPrefix(pattern).map({ $0.hasSuffix("/") ? String($0.dropLast()) : $0 }) else { return false }
                    return path == base || path.hasPrefix(base + "/")
                }
                for (list, globs) in [("locked", config.files.locked), ("hidden", config.files.hidden), ("sealed", config.files.sealed)] {
                    if let pattern = globs.first(where: { covers($0, hiding: list != "locked") }) {
                        throw reader.error(["files"], key, "expected files the agent may change, got \"\(path)\", which is also \(list) (\"\(pattern)\")")
                    }
                }
            }
        }
        // Without one, the run would create its branch and only then fail the baseline with "no command to run".
        guard !config.evaluator.command.isEmpty else {
            throw reader.error(["evaluator"], "command", "expected the evaluator command, e.g. [\"python3\", \"prepare.py\", \"--score\"]")
        }

        var limits = try top.table("limits")
        config.limits.features = try limits.int("features", min: 1)
        config.limits.trees = try limits.int("trees", min: 1)
        if let value = try limits.int("diff_lines", min: 1) { config.limits.diffLines = value }
        if let value = try limits.size("max_file_size") { config.limits.maxFileBytes = value }
        try limits.finish()

        var gates = try top.table("gates")
        if let value = try gates.double("min_improvement", min: 0) { config.gates.minImprovement = value }
        if let value = try gates.ints("confirm_seeds") {
            // The gate confirms on seeds not measured yet: a repeated one adds no evidence.
            let seen = config.experiment.seeds.map(Int.init)
            if let twice = firstRepeated(seen + value) {
                throw gates.error("confirm_seeds", seen.contains(twice)
                    ? "seed \(twice) is also in [experiment] seeds; confirmation needs other seeds"
                    : "seed \(twice) is listed twice; each seed once (a seed measured again gives the same score again)")
            }
            config.gates.confirmSeeds = value.map { UInt64($0) }
        }
        if let value = try gates.bool("fresh_seeds") { config.gates.freshSeeds = value }
        try gates.finish()

        var agent = try top.table("agent")
        if let value = try agent.string("kind", oneOf: ["mutate", "search", "command", "http"]) { config.agent.kind = value }
        if let value = try agent.string("strategy", oneOf: ["tpe", "cmaes", "random"]) { config.agent.strategy = value }
        if let value = try agent.int("seed", min: 0) { config.agent.seed = value }
        if let value = try commandLine(&agent, "command") { config.agent.command = value }
        config.agent.network = try NetworkAccess.read(&agent, warnings: &config.warnings)
        if let value = try agent.duration("timeout") { config.agent.timeoutMs = value }
        if agent.has("memory") { config.agent.memoryBytes = try agent.size("memory", minimum: 8 << 20) }
        if let value = try agent.size("max_output_bytes") { config.agent.maxOutputBytes = value }
        if let value = try agent.strings("env") { config.agent.env = try envNames(value, agent, "env") }
        if let value = try agent.strings("read_only") {
            config.agent.readOnly = try absolutePaths(value, agent, "read_only")
            config.agent.readOnlyLine = reader.line(of: agent.path, key: "read_only")
        }
        if let value = try agent.string("protocol", oneOf: ["openai", "anthropic"]) { config.agent.httpProtocol = value }
        if let value = try agent.string("base_url") {
            // A space, a line break or no host ("http:// ", "http://x\r\nHost: evil") passed here and
            // made every iteration a crash ("URL using bad/illegal format").
            let scheme = value.hasPrefix("https://") ? "https://" : value.hasPrefix("http://") ? "http://" : nil
            let host = scheme.map { value.dropFirst($0.count).prefix { $0 != "/" && $0 != "?" && $0 != "#" } } ?? ""
            guard scheme != nil, !host.isEmpty, !host.hasPrefix(":"), !value.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.rewritesDisplay }),
                  URL(string: value)?.host?.isEmpty == false else {
                throw reader.error(agent.path, "base_url", "expected an http:// or https:// URL with a host and no spaces or control characters, got \(value.debugDescription)")
            }
            config.agent.baseURL = value
        }
        if let value = try agent.string("model") { config.agent.model = value }
        if let value = try agent.string("api_key_env") { config.agent.apiKeyEnv = try envNames([value], agent, "api_key_env")[0] }
        if let value = try agent.int("max_tokens", min: 1) { config.agent.maxTokens = value }
        config.agent.temperature = try agent.double("temperature", min: 0)
        if let value = try agent.int("retries", min: 0, max: 20) { config.agent.retries = value }
        config.agent.pricePerMTokIn = try agent.double("price_per_mtok_in", min: 0)
        config.agent.pricePerMTokOut = try agent.double("price_per_mtok_out", min: 0)
        var home = try agent.table("home_files")
        for key in home.table?.keys ?? [] {
            guard let target = try home.string(key) else { continue }
            guard key.hasPrefix("/") else { throw reader.error(home.path, key, "expected an absolute host path as the key") }
            // A file's place below the home: "" or "." named the home itself, and every iteration
            // then failed to copy the file onto a directory.
            let parts = target.split(separator: "/", omittingEmptySubsequences: false)
            guard !target.hasPrefix("/"), !target.isEmpty, !parts.contains(""), !parts.contains(".."), !parts.contains("."),
                  !target.unicodeScalars.contains(where: \.rewritesDisplay) else {
                throw reader.error(home.path, key, "expected a file path below the agent's home, such as \".claude.json\", got \(target.debugDescription)")
            }
            // A target inside another's (".x" and ".x/y") stopped the run with a raw error.
            if let other = config.agent.homeFiles.first(where: { $0.value == target || $0.value.hasPrefix(target + "/") || target.hasPrefix($0.value + "/") }) {
                throw reader.error(home.path, key, "expected a place of its own in the agent's home, but \(target.debugDescription) collides with \(other.value.debugDescription) (from \(other.key))")
            }
            config.agent.homeFiles[key] = target
            config.agent.homeFileLines[key] = reader.line(of: home.path, key: key)
        }
        try home.finish()
        // `[agent.mutate]` is reserved for the mutate agent's options; markers in the files drive it.
        let mutate = try agent.table("mutate")
        try mutate.finish()
        try agent.finish()
        if config.agent.kind == "command" && config.agent.command.isEmpty {
            throw reader.error(["agent"], "command", "kind = \"command\" needs a command, e.g. [\"claude\", \"-p\", \"{prompt}\"]")
        }
        if config.agent.kind == "http" {
            if config.agent.baseURL.isEmpty { throw reader.error(["agent"], "base_url", "kind = \"http\" needs base_url") }
            if config.agent.model.isEmpty { throw reader.error(["agent"], "model", "kind = \"http\" needs model") }
        }

        var memory = try top.table("memory")
        if let value = try memory.int("near_misses", min: 0, max: 100) { config.memory.nearMisses = value }
        if let value = try memory.int("plateau_after", min: 1) { config.memory.plateauAfter = value }
        if let value = try memory.string("do_not_retry") {
            config.memory.doNotRetry = try relativeGlobs([value], memory, "do_not_retry")[0]
            config.memory.doNotRetryLine = reader.line(of: memory.path, key: "do_not_retry")
            guard !value.contains(where: { "*?[".contains($0) }) else {
                throw memory.error("do_not_retry", "expected one workspace-relative file name, got \"\(value)\"")
            }
        }
        if let value = try memory.string("synthesize", oneOf: ["rules", "agent"]) { config.memory.synthesize = value }
        try memory.finish()
        if config.memory.synthesize == "agent" && config.agent.kind != "http" {
            throw reader.error(["memory"], "synthesize", "\"agent\" needs [agent] kind = \"http\" (the model that rewrites learnings.md); use \"rules\"")
        }
        if let file = config.memory.doNotRetry, !config.files.locked.contains(where: { Glob($0).matches(file) }) {
            throw reader.error(["memory"], "do_not_retry", "expected a locked file (add \"\(file)\" to [files] locked: agents must not edit their own do-not-retry list)")
        }

        for var phase in try top.tables("phases") {
            let index = phase.occurrence ?? 0
            let until = try phase.int("until", min: 1)
            guard let strategy = try phase.string("strategy"), !strategy.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw phase.error("strategy", "expected the phase's strategy text, e.g. \"explore: try very different models\"")
            }
            let name = try phase.string("name") ?? "phase \(index + 1)"
            try phase.finish()
            if let previous = config.phases.last {
                guard let last = previous.until else {
                    throw phase.error("until", "expected no phase after one without `until` (it lasts until the run ends)")
                }
                if let until, until <= last {
                    throw phase.error("until", "expected phases in order: until = \(until) is not after the previous phase's \(last)")
                }
            }
            config.phases.append(ResearchPhase(until: until, strategy: strategy, name: name))
        }

        var sandbox = try top.table("sandbox")
        if let value = try sandbox.string("policy") {
            guard value.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }), !value.isEmpty else {
                throw reader.error(sandbox.path, "policy", "expected a preset name from policies/, got \"\(value)\"")
            }
            config.sandbox.policy = value
            config.sandbox.policyLine = reader.line(of: sandbox.path, key: "policy")
        }
        if let value = try sandbox.strings("read_only") {
            config.sandbox.readOnly = try absolutePaths(value, sandbox, "read_only")
            config.sandbox.readOnlyLine = reader.line(of: sandbox.path, key: "read_only")
        }
        if let value = try sandbox.strings("hide") {
            config.sandbox.hideLine = reader.line(of: sandbox.path, key: "hide")
            config.sandbox.hide = try value.map { path in
                let placeholder = "{site-packages}/"
                let rest = path.hasPrefix(placeholder) ? String(path.dropFirst(placeholder.count)) : path
                let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
                guard path.hasPrefix("/") || (rest != path && !rest.hasPrefix("/")), !rest.isEmpty,
                      !parts.contains(".."), !parts.contains("."), !path.contains("\0") else {
                    throw reader.error(sandbox.path, "hide",
                                       "expected absolute paths or \"{site-packages}/relative/path\" without \"..\", got \"\(path)\"")
                }
                // Hiding the root hides the system the sandbox is built from: the launcher then failed
                // with "remount --dev /dev read-only: ENOENT" and no file or key (issue 10's fuzzer).
                guard parts.contains(where: { !$0.isEmpty }) else {
                    throw reader.error(sandbox.path, "hide", "expected a directory or file below \"/\", got \"\(path)\" (hiding the root hides everything)")
                }
                if rest == path, let own = sandboxOwn(path) {
                    throw reader.error(sandbox.path, "hide", "expected a host path outside \(own), got \"\(path)\" (the sandbox's \(own) is its own private one: nothing of the host's is there to hide)")
                }
                return path
            }
        }
        if let value = try sandbox.string("user") {
            guard let entry = getpwnam(value) else {
                throw reader.error(sandbox.path, "user", "no user \"\(value)\" on this host (leave `user` out and proctor, run as root, creates the system user \"proctor-sandbox\")")
            }
            guard entry.pointee.pw_uid != 0, entry.pointee.pw_gid != 0 else {
                throw reader.error(sandbox.path, "user", "\"\(value)\" is root or in root's group; the sandbox's user must be unprivileged")
            }
            config.sandbox.user = value
        }
        try sandbox.finish()

        var executor = try top.table("executor")
        config.executor = try ExecutorSettings.read(&executor)

        try top.finish()
        for (table, key) in [("experiment", "command"), ("experiment", "env"), ("evaluator", "command"),
                             ("evaluator", "sealed_command"), ("agent", "command"), ("agent", "env"),
                             ("experiment", "network"), ("experiment", "gpu_memory")] {
            config.keyLines["[\(table)] \(key)"] = reader.line(of: [table], key: key)
        }
        return config
    }

    /// The first value that appears a second time, in order.
    private static func firstRepeated(_ values: [Int]) -> Int? {
        var seen = Set<Int>()
        return values.first { !seen.insert($0).inserted }
    }

    /// A command: its program named (`[""]` passed `check`, then every launch failed).
    private static func commandLine(_ table: inout TableReader, _ key: String) throws -> [String]? {
        guard let command = try table.strings(key) else { return nil }
        if let program = command.first, program.isEmpty {
            throw table.error(key, "expected the program first, e.g. [\"python3\", \"train.py\"], got an empty string")
        }
        return command
    }

    private static func relativeGlobs(_ values: [String], _ table: TableReader, _ key: String) throws -> [String] {
        try values.map { value in
            let relative = value.hasPrefix("./") ? String(value.dropFirst(2)) : value
            let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
            guard !value.isEmpty, !value.hasPrefix("/"), !parts.contains(".."), !value.contains("\0") else {
                throw table.reader.error(table.path, key, "expected workspace-relative paths without \"..\", got \"\(value)\"")
            }
            // `notes = ["."]` named the workspace root as a notes file: the agent sandbox then made
            // the whole workspace writable over its read-only binds, and the launcher failed with no
            // file or key (issue 10's fuzzer).
            guard !relative.isEmpty, !parts.contains(".") else {
                throw table.reader.error(table.path, key, "expected paths below the workspace root without \".\" components, got \"\(value)\"")
            }
            // A line break in `outputs = ["o\n*"]` became a second line, `*`, in .git/info/exclude.
            if let scalar = value.unicodeScalars.first(where: \.rewritesDisplay) {
                throw table.reader.error(table.path, key, "expected paths without control characters, got U+\(String(scalar.value, radix: 16, uppercase: true)) in \(value.debugDescription)")
            }
            return relative
        }
    }

    private static func envNames(_ values: [String], _ table: TableReader, _ key: String) throws -> [String] {
        try values.map { name in
            guard let first = name.first, first == "_" || first.isLetter,
                name.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) })
            else { throw table.reader.error(table.path, key, "expected environment variable names, got \"\(name)\"") }
            return name
        }
    }

    private static func absolutePaths(_ values: [String], _ table: TableReader, _ key: String) throws -> [String] {
        try values.map { path in
            guard path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
                throw table.reader.error(table.path, key, "expected absolute paths without \"..\", got \"\(path)\"")
            }
            if let own = sandboxOwn(path) {
                throw table.reader.error(table.path, key, "expected a host path outside \(own), got \"\(path)\" (the sandbox mounts its own private \(own) over it, so it would never be seen; use another directory, such as one under /var/tmp)")
            }
            return path
        }
    }

    /// The private directory of the sandbox (`/tmp`, `/dev`, `/proc`) that `path` is or lies in, nil
    /// for none. Those are built fresh for every phase, after the host paths are mounted: a host
    /// path there is covered (`read_only`) or already invisible (`hide`).
    static func sandboxOwn(_ path: String) -> String? {
        let first = path.split(separator: "/").first.map(String.init)
        return first.flatMap { ["tmp", "dev", "proc"].contains($0) ? "/" + $0 : nil }
    }
}

extension WorkspaceConfig {
    /// The first `[agent.home_files]` source this host lacks, or that is not a file, as the error
    /// that names it. Copied before every agent run, a missing one failed every iteration (a crash
    /// row each), and a directory was copied whole (a `~/.claude` with every past conversation);
    /// checked where something will run (`run`, `exec`, `check`), not where runs are only read.
    public func missingHomeFile() -> ConfigError? {
        for source in agent.homeFiles.keys.sorted() {
            var st = stat()
            let problem = stat(source, &st) != 0 ? "\(source) cannot be read (\(String(cString: strerror(errno))))"
                : st.st_mode & S_IFMT == S_IFDIR ? "\(source) is a directory; name the files in it, one key each"
                : st.st_mode & S_IFMT != S_IFREG ? "\(source) is not a regular file" : nil
            if let problem {
                return ConfigError(file: file, line: agent.homeFileLines[source], key: "agent.home_files.\(source)",
                                   message: "expected an existing host file, but \(problem)")
            }
        }
        return nil
    }

    /// `read_only` paths this host lacks, as warnings naming file, line and key: they are not
    /// mounted (a path may exist only on some machines, a Slurm cluster's nodes), so what needs
    /// them fails inside the sandbox; a typo was silent until then.
    public func missingReadOnlyPaths() -> [String] {
        [("sandbox", sandbox.readOnly, sandbox.readOnlyLine), ("agent", agent.readOnly, agent.readOnlyLine)].flatMap { table, paths, line in
            paths.filter { access($0, F_OK) != 0 }.map { path in
                ConfigError(file: file, line: line, key: "\(table).read_only", message: "\(path) does not exist on this host; it is not mounted").description
            }
        }
    }

    /// The `[files] locked` globs with a wildcard that match none of the locked files: each
    /// locks nothing (a typo in `data/*.csv` leaves the data the agent's), said, not refused.
    public func lockedGlobsMatchingNothing(pinned: Set<String>) -> [String] {
        files.locked.filter { entry in
            !Self.namesOnePath(entry) && !pinned.contains(where: Glob(entry).matches)
        }.map { ConfigError(file: file, line: files.lines["locked"], key: "files.locked",
                            message: "\"\($0)\" matches no committed file: it locks nothing").description }
    }

    /// A `[files] locked` entry that names one path (no wildcard) but none of the locked files
    /// `pinned` holds, or a `[memory] do_not_retry` file that is not among them, as the error that
    /// names it. A typo (`eval_util.py`, or `eval` for the directory `eval/`) left the file it meant
    /// unlocked and out of the evaluator's pinned copy, and a missing do-not-retry list was read
    /// as empty, both without a word.
    public func missingLockedFile(pinned: Set<String>) -> ConfigError? {
        for entry in files.locked where Self.namesOnePath(entry) {
            let glob = Glob(entry)
            guard !pinned.contains(where: glob.matches) else { continue }
            var info = stat()
            let directory = !entry.hasSuffix("/") && stat(root + "/" + entry, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
            return ConfigError(file: file, line: files.lines["locked"], key: "files.locked",
                               message: "expected committed files, but \"\(entry)\" names none" + (directory ? " (a directory is written \"\(entry)/\")" : ""))
        }
        if let list = memory.doNotRetry, !pinned.contains(list) {
            return ConfigError(file: file, line: memory.doNotRetryLine, key: "memory.do_not_retry",
                               message: "expected a committed locked file, but \(list) is not one")
        }
        return nil
    }

    /// An output that is part of the committed tree (`tracked`: every path of it, with whether it
    /// is a directory) or that is something other than a directory (`notADirectory`): the outputs
    /// are emptied before every experiment, tracked files with them, and `outputs = ["program.md"]`
    /// failed the baseline after the run had begun.
    public func outputOverTheTree(tracked: [String: Bool], notADirectory: (String) -> Bool) -> ConfigError? {
        for output in files.outputs {
            let problem: String
            if let isDirectory = tracked[output] {
                problem = isDirectory ? "a directory that holds committed files, which would be deleted with the outputs before every experiment"
                    : "a committed file"
            } else if notADirectory(output) {
                problem = "there as something other than a directory"
            } else {
                continue
            }
            return ConfigError(file: file, line: files.lines["outputs"], key: "files.outputs",
                               message: "expected directories of the experiment's own, but \"\(output)\" is \(problem); name another directory")
        }
        return nil
    }

    /// A file named outright in `editable` or `notes` that is committed as a symbolic link
    /// (`linkTarget` gives a path's target, nil for anything else): no agent may change a link (the
    /// validator rejects it), so the agent was shown nothing to edit and every proposal failed.
    public func linkedAgentFile(linkTarget: (String) -> String?) -> ConfigError? {
        for key in ["editable", "notes"] {
            for path in key == "editable" ? files.editable : files.notes where Self.namesOnePath(path) {
                guard let target = linkTarget(path) else { continue }
                return ConfigError(file: file, line: files.lines[key], key: "files.\(key)",
                                   message: "expected regular files, but \(path) is committed as a symbolic link (to \(target)): an agent changes regular files only; commit the file itself")
            }
        }
        return nil
    }

    /// The phase iteration `i` belongs to, if `[[phases]]` are set.
    public func phase(at iteration: Int) -> (index: Int, phase: ResearchPhase)? {
        for (index, phase) in phases.enumerated() where phase.until.map({ iteration <= $0 }) ?? true {
            return (index, phase)
        }
        return nil
    }

    /// What the sealed evaluator's sandbox is built from: the sealed files in the place of the
    /// hidden ones (the validation labels are not its to read), its own command.
    public var sealedEvaluatorView: WorkspaceConfig {
        var view = self
        view.files.hidden = files.sealed
        view.files.sealed = []
        view.evaluator.command = evaluator.sealedCommand
        return view
    }

    /// Workspace-relative prefixes of the `hidden` files (`holdout/` for `holdout/**`). No sandbox but
    /// the evaluator's sees them, and it only reads them, so the diff validator and the revert leave
    /// them alone: held-out labels may live outside git (ignored) without being reported or deleted.
    public var hiddenPrefixes: [String] {
        (files.hidden + files.sealed).compactMap(Self.hiddenPrefix)
    }

    /// `hiddenPrefixes`' entry for one pattern: `holdout/` for `holdout/**` or `holdout/`, the path
    /// itself for a plain one; nil for a pattern with a wildcard before its end.
    public static func hiddenPrefix(_ pattern: String) -> String? {
        var base = pattern
        if base.hasSuffix("/**") { base.removeLast(3) } else if base.hasSuffix("/") { base.removeLast() }
        guard !base.isEmpty, namesOnePath(base) else { return nil }
        return base == pattern ? base : base + "/"
    }

    /// Whether a `[files]` pattern names one path as written: no wildcard, no escape.
    static func namesOnePath(_ pattern: String) -> Bool {
        !pattern.contains { "*?[\\".contains($0) }
    }

    /// Whether `path` (workspace-relative) is never an agent's to read or change, whatever the
    /// `editable` and `notes` globs say: proctor's state and config, git, the locked and hidden files
    /// and the outputs. The agent-phase sandbox already keeps a broad glob (`**`, `*`, `src/`) from
    /// binding these writable; the in-process agents (`http`, `mutate`) and the diff validator use
    /// this, or `editable = ["**"]` put the hidden labels in the model's prompt and let an answer
    /// rewrite them (hidden files are not pinned) or `proctor.toml`. For many paths, `OffLimits`.
    public func isOffLimitsToAgents(_ path: String) -> Bool {
        OffLimits(self).contains(path)
    }
}

/// `WorkspaceConfig.isOffLimitsToAgents` for many paths: the globs compiled once, and each
/// directory's Python-environment check made once. A diff of 2,000 files an agent made 85
/// directories deep in under a second compiled the globs and checked every ancestor again for each
/// file: 90 s and 600 MB of the supervisor's (an OOM kill in a 400 MiB cgroup), every iteration.
public final class OffLimits: @unchecked Sendable {
    private let config: WorkspaceConfig
    private let protected: [Glob]
    private let prefixes: [String]
    /// Workspace-relative directories that hold an environment, or lie in one.
    private var environments: AncestorMemo!

    public init(_ config: WorkspaceConfig) {
        self.config = config
        protected = (config.files.hidden + config.files.sealed + config.files.locked).map(Glob.init)
        prefixes = [".git", ".proctor", "proctor.toml"] + config.files.outputs + config.hiddenPrefixes
        environments = AncestorMemo { [unowned self] in self.holds($0) }
    }

    public func contains(_ path: String) -> Bool {
        let path = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        for base in prefixes {
            let base = base.hasSuffix("/") ? String(base.dropLast()) : base
            if !base.isEmpty && (path == base || path.hasPrefix(base + "/")) { return true }
        }
        if path.split(separator: "/").contains(where: { $0.lowercased() == ".git" }) { return true }
        if inPythonEnvironment(path) { return true }
        return protected.contains { $0.matches(path) }
    }

    /// Whether `path` is, or lies in, a Python environment kept in the workspace (a project's
    /// `.venv/`: a directory holding `pyvenv.cfg` or `conda-meta/`), as the disk has it now. Such an
    /// environment is read-only to every phase, whatever the globs say: a `sitecustomize.py`
    /// planted in its packages would run in every later experiment and evaluator.
    public func inPythonEnvironment(_ path: String) -> Bool {
        // By name too: an agent that writes a new `.venv/pyvenv.cfg` makes an environment that a
        // bare `python3` would then be refused beside.
        if path.split(separator: "/").contains(where: { $0 == "pyvenv.cfg" || $0 == "conda-meta" }) { return true }
        let trimmed = path.hasSuffix("/") ? Substring(path.dropLast()) : Substring(path)
        guard !trimmed.isEmpty else { return false }
        if holds(trimmed) { return true }
        guard let slash = trimmed.lastIndex(of: "/") else { return false }
        return environments.atOrAbove(trimmed[..<slash])
    }

    private func holds(_ dir: Substring) -> Bool {
        var st = stat()
        let base = config.root + "/" + dir
        return lstat(base + "/pyvenv.cfg", &st) == 0 || lstat(base + "/conda-meta", &st) == 0
    }
}

/// Whether a workspace-relative directory, or one above it, has a property (`holds`), each
/// directory looked at once: a walk up from a path stops at the nearest directory known. Asking
/// every ancestor of each of thousands of paths 85 directories deep was quadratic in the depth.
/// Keyed by bytes: `String` equality merges a precomposed and a decomposed name, two directories.
public final class AncestorMemo: @unchecked Sendable {
    private let holds: (Substring) -> Bool
    private var known: [[UInt8]: Bool] = [:]
    private let lock = NSLock()

    public init(_ holds: @escaping (Substring) -> Bool) { self.holds = holds }

    public func atOrAbove(_ directory: Substring) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        var unknown: [Substring] = []
        var current = directory
        var above = false
        while true {
            if let answer = known[Array(current.utf8)] { above = answer; break }
            unknown.append(current)
            guard let slash = current.lastIndex(of: "/") else { break }
            current = current[..<slash]
        }
        for directory in unknown.reversed() {
            above = above || holds(directory)
            known[Array(directory.utf8)] = above
        }
        return above
    }
}

extension WorkspaceConfig {
    /// Whether a git-ignored path is the user's to keep (`wandb/`, `data/`, `checkpoints/`, `.venv/`):
    /// no `editable` or `notes` glob matches it, a directory above it, or anything beneath it, so no
    /// sandbox can write there (the agent's writable binds are those globs' matches; the experiment
    /// writes only the outputs). The loop neither reports nor removes such a path. An ignored path an
    /// agent could write is judged like any other new file.
    public func isUsersIgnoredPath(_ path: String) -> Bool {
        let globs = (files.editable + files.notes).map(Glob.init)
        var ancestor = Substring(path)
        while true {
            if globs.contains(where: { $0.matches(String(ancestor)) }) { return false }
            guard let slash = ancestor.lastIndex(of: "/") else { break }
            ancestor = ancestor[..<slash]
        }
        return !globs.contains { $0.couldMatchBeneath(path) }
    }

    /// Where anything can change during an iteration, as workspace paths (files, or directories standing
    /// for what is beneath them): the literal part of each `editable`, `notes` and `locked` glob
    /// (`train.py`, `src` for `src/*.py`). No sandbox writes anywhere else (the outputs are not the
    /// tree's); nil when a glob starts with a wildcard (`**/*.py`), which can match anywhere.
    public var agentWritableRoots: [String]? {
        var roots: [String] = []
        // The locked files too: a change to them (from the host, mid-run) is found by the pins and must be
        // reverted with the rest. Hashed every iteration anyway, they cost no more here.
        for glob in (files.editable + files.notes + files.locked).map(Glob.init) {
            let root = glob.literalPrefix
            if root.isEmpty { return nil }
            roots.append(root)
        }
        let unique = Set(roots)
        // Outermost only: a root beneath another is covered by it.
        return unique.filter { root in !unique.contains { root.hasPrefix($0 + "/") } }.sorted()
    }

    /// What the loop's status never looks into: proctor's state and the outputs.
    public var untrackedByLoop: [String] {
        [".proctor/"] + files.outputs.map { $0 + "/" }
    }
}
