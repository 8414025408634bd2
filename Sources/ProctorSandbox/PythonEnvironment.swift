import Foundation

/// What a phase's `command[0]` is resolved against: the PATH the sandbox gets, what the sandbox sees
/// anyway, and the host's own environment (the user's PATH, an activated `VIRTUAL_ENV` or
/// `CONDA_PREFIX`). Built by `LaunchPlan` for each launch (its memberwise initializer is internal).
public struct InterpreterQuery: Sendable, Equatable {
    /// `command[0]` as written in proctor.toml.
    public var command: String
    /// The PATH the sandbox's command is given, before any environment's `bin` is put first.
    public var sandboxPath: String
    /// The host's environment, as proctor was started in it.
    public var environment: [String: String]
    /// The workspace root: the sandbox's working directory, where a relative `command[0]` lies.
    public var workspace: String
    /// Host directories the sandbox shows at the same place anyway (system, `read_only`, the workspace
    /// where the phase sees it).
    public var visible: [String]
    /// The proctor.toml key that names this command (`[experiment] command`), for the refusal.
    public var key: String
    /// The proctor.toml key that passes PATH (`[experiment] env`), for the refusal.
    public var envKey: String
    /// The `proctor.toml` file, for the refusal.
    public var file: String
    /// The line of `key` in it, when the command came from there.
    public var line: Int? = nil

    /// `proctor.toml:LINE: [experiment] command`, where an error about the command starts.
    public var located: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(key)" }
}

/// The interpreter a phase's command runs, as resolved on the host, and what of the host it needs.
public struct ResolvedInterpreter: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable {
        /// An interpreter (or program) the sandbox sees anyway (/usr/bin/python3): nothing to mount.
        case system
        /// A `python -m venv`, `uv venv`, `virtualenv` or poetry environment (`pyvenv.cfg` beside `bin/`).
        case venv
        /// A conda, mamba or micromamba environment (`conda-meta/` beside `bin/`).
        case conda
        /// A Python installation outside the system directories (pyenv, uv-managed, /opt builds).
        case installation
        /// Another program outside the system directories (not Python): its `bin/..` prefix.
        case other
    }

    public var kind: Kind
    /// The file `command[0]` names on the host, links not followed (`/home/me/venvs/ml/bin/python`).
    public var executable: String
    /// The environment's or installation's prefix; nil for `system`.
    public var prefix: String?
    /// A venv's base installation: the parent of `pyvenv.cfg`'s `home`.
    public var base: String?
    /// Host directories mounted read-only at the same place: exactly what the interpreter needs.
    public var mounts: [String]
    /// The directory put first on the sandbox's PATH (as an activation does).
    public var bin: String?
    /// Variables set because this environment is the one mounted, as its activation sets them
    /// (`VIRTUAL_ENV`, `CONDA_PREFIX`); the host's values of these names are never passed.
    public var variables: [String: String]

    public init(kind: Kind, executable: String, prefix: String? = nil, base: String? = nil, mounts: [String] = [],
                bin: String? = nil, variables: [String: String] = [:]) {
        self.kind = kind
        self.executable = executable
        self.prefix = prefix
        self.base = base
        self.mounts = mounts
        self.bin = bin
        self.variables = variables
    }

    /// Where `{site-packages}` hides look besides /usr and /usr/local: the environment, then its base.
    public var packageRoots: [String] { [prefix, base].compactMap { $0 } }
}

/// Resolves on the host what a phase's `command[0]` means (issue 11): through the PATH the sandbox
/// gets to a file, then to the environment it belongs to, and refuses when the sandbox would run a
/// different interpreter than the host (an activated venv whose `bin` is not on the sandbox's PATH,
/// a `.venv/` of the project beside a bare `python3`) or one it cannot see.
public enum PythonEnvironment {
    /// The resolution of `query`; nil when `command[0]` is found nowhere (the sandbox reports 127) or
    /// names a program that needs nothing mounted and is not Python. Throws `.interpreter` to refuse.
    public static func resolve(_ query: InterpreterQuery) throws -> ResolvedInterpreter? {
        try resolve(query, probeCache: ProbeCache.standard)
    }

    static func resolve(_ query: InterpreterQuery, probeCache: ProbeCache?) throws -> ResolvedInterpreter? {
        let name = query.command
        let bare = !name.contains("/")
        let python = isPythonName(basename(name))
        // What the host finds through the sandbox's PATH, and behind a shim the interpreter itself.
        guard let found = locate(name, path: query.sandboxPath, workspace: query.workspace) else {
            if bare, python, let hostPath = query.environment["PATH"],
                let outside = locate(name, path: hostPath, workspace: query.workspace) {
                throw refusal(query, "\"\(name)\" is \(outside) on this host, but it is on no directory of the sandbox's PATH (\(query.sandboxPath))", fix: outside)
            }
            return nil
        }
        var executable = found
        if python && isScript(found) {
            // A shim (pyenv, asdf): ask the interpreter behind it where it lives (see InterpreterProbe).
            guard let real = InterpreterProbe.shimTarget(name, shim: found, path: query.sandboxPath,
                                                         environment: query.environment, probeCache: probeCache)
            else { throw refusal(query, "\"\(name)\" is the shim \(found) on this host, and it did not say which interpreter it runs", fix: nil) }
            executable = real
        }
        guard let resolved = try classify(executable, query: query, python: python) else { return nil }
        // Another program (a command agent's CLI) keeps its mounts and is not judged as an interpreter.
        guard python || resolved.kind == .venv || resolved.kind == .conda else { return resolved }

        try checkInside(query, found: found, executable: executable, mounts: resolved.mounts)
        if bare && python { try checkOutside(query, found: found, executable: executable, probeCache: probeCache) }
        return resolved
    }

    /// Refuses when the sandbox would not run `found` (the host's answer through the sandbox's PATH):
    /// its own PATH lookup, among the directories it sees, finds another interpreter or none.
    static func checkInside(_ query: InterpreterQuery, found: String, executable: String, mounts: [String]) throws {
        let name = query.command
        let bare = !name.contains("/")
        let seen = query.visible + mounts
        if bare && executable == found {
            let inside = locate(name, path: query.sandboxPath, workspace: query.workspace, within: seen)
            // A link the sandbox does not see to a file it sees (~/bin/python3 -> /usr/bin/python3.11) is the same interpreter.
            if inside != found && inside.map(identity) != identity(found) {
                throw refusal(query, "\"\(name)\" is \(found) on this host, which the sandbox does not see; inside it would run \(inside ?? "nothing (exit 127)")", fix: found)
            }
        } else if !bare && !within(found, seen) {
            // Run by its path, which the sandbox does not have (a shim's directory is not mounted,
            // only the interpreter behind it): name the interpreter itself.
            let shim = executable == found ? "" : ", a shim for \(executable)"
            throw refusal(query, "\"\(name)\" is \(found) on this host\(shim), which the sandbox does not see",
                          fix: executable == found ? nil : executable, orPath: false)
        } else if !within(executable, seen) {
            throw refusal(query, "\"\(name)\" is \(executable) on this host, which the sandbox does not see", fix: nil)
        }
    }

    /// Refuses when a bare `python3` means another interpreter on the host than in the sandbox: the
    /// one the host's PATH finds, an activated environment's, the project's `.venv/`.
    static func checkOutside(_ query: InterpreterQuery, found: String, executable: String, probeCache: ProbeCache?) throws {
        let name = query.command
        let mine = identity(executable)
        var outside: [(String, String)] = []
        if let hostPath = query.environment["PATH"], hostPath != query.sandboxPath,
            let path = locate(name, path: hostPath, workspace: query.workspace) {
            outside.append((path, "this host's PATH"))
        }
        for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
            if let prefix = query.environment[variable], prefix.hasPrefix("/"), isExecutable(prefix + "/bin/" + name) {
                outside.append((prefix + "/bin/" + name, "the activated environment \(variable)=\(prefix)"))
            }
        }
        let project = query.workspace + "/.venv"
        if exists(project + "/pyvenv.cfg"), isExecutable(project + "/bin/" + name) {
            outside.append((project + "/bin/" + name, "the project's environment .venv/ (uv, poetry)"))
        }
        for (path, why) in outside {
            // A shim on the host's PATH stands for the interpreter it runs there.
            var meant = path
            if isScript(path), let hostPath = query.environment["PATH"],
                let real = InterpreterProbe.shimTarget(name, shim: path, path: hostPath, environment: query.environment,
                                                       probeCache: probeCache) {
                meant = real
            }
            guard identity(meant) != mine else { continue }
            let inside = found + (executable == found ? "" : " (\(executable))")
            let there = path + (meant == path ? "" : " (\(meant))")
            throw refusal(query, "\"\(name)\" would run \(inside) in the sandbox, but \(there) on this host (\(why))", fix: meant)
        }
    }

    /// The environment `executable` belongs to and what of it to mount; nil for a program that is
    /// not Python and needs nothing. Throws when it is Python but nothing proctor can mount.
    static func classify(_ executable: String, query: InterpreterQuery, python: Bool) throws -> ResolvedInterpreter? {
        let bin = dirname(executable)
        let prefix = dirname(bin)
        let real = realpath(executable) ?? executable
        func mountable(_ dir: String, _ what: String) throws -> [String] {
            if within(dir, query.visible) { return [] }
            if let reason = tooBroad(dir, query: query) {
                throw refusal(query, "\(what) \(dir) is \(reason); proctor mounts an environment's own prefix only", fix: nil)
            }
            return [dir]
        }
        if exists(prefix + "/pyvenv.cfg") {
            guard let home = pyvenvHome(prefix + "/pyvenv.cfg"), home.hasPrefix("/") else {
                throw refusal(query, "\(prefix)/pyvenv.cfg names no absolute `home` (the base installation of the venv)", fix: nil)
            }
            guard let homeReal = realpath(home) else {
                throw refusal(query, "\(prefix)/pyvenv.cfg names home = \(home), which does not exist: the venv's base Python was moved or uninstalled (recreate the venv)", fix: nil)
            }
            let base = dirname(homeReal)
            var mounts = try mountable(prefix, "the environment")
            for dir in try mountable(base, "the venv's base installation") where !within(dir, mounts) { mounts.append(dir) }
            guard within(real, query.visible + mounts) else {
                throw refusal(query, "\(executable) links to \(real), outside both the venv and its base installation \(base)", fix: nil)
            }
            return ResolvedInterpreter(kind: .venv, executable: executable, prefix: prefix, base: base, mounts: mounts,
                                       bin: bin, variables: ["VIRTUAL_ENV": prefix])
        }
        if isDirectory(prefix + "/conda-meta") {
            // The env's files are hard links into the `pkgs` cache: they resolve inside the prefix.
            let mounts = try mountable(prefix, "the conda environment")
            guard within(real, query.visible + mounts) else {
                throw refusal(query, "\(executable) links to \(real), outside the conda environment \(prefix)", fix: nil)
            }
            return ResolvedInterpreter(kind: .conda, executable: executable, prefix: prefix, mounts: mounts, bin: bin,
                                       variables: ["CONDA_PREFIX": prefix])
        }
        if within(real, query.visible) {
            return python || within(executable, query.visible) ? ResolvedInterpreter(kind: .system, executable: executable) : nil
        }
        let realBin = dirname(real)
        let realPrefix = dirname(realBin)
        if python {
            guard isPythonInstallation(realPrefix) else {
                throw refusal(query, "\(executable) (\(real)) lies in no Python installation or environment proctor can mount (no pyvenv.cfg, conda-meta/ or lib/python3.*/os.py around it)", fix: nil)
            }
            return ResolvedInterpreter(kind: .installation, executable: executable, prefix: realPrefix,
                                       mounts: try mountable(realPrefix, "the installation"), bin: realBin)
        }
        // Another program (a command agent's CLI): its prefix, unless that would be a home directory.
        guard realPrefix != "/", tooBroad(realPrefix, query: query) == nil else { return nil }
        return ResolvedInterpreter(kind: .other, executable: executable, prefix: realPrefix, mounts: [realPrefix], bin: realBin)
    }

    /// Why `dir` may not be mounted whole, or nil: the root, a home directory or a directory above
    /// one, or a directory holding the workspace (its hidden files and proctor's state).
    static func tooBroad(_ dir: String, query: InterpreterQuery) -> String? {
        if dir == "/" || dir.isEmpty { return "the root directory" }
        // The local users' homes from /etc/passwd itself: enumerating a directory service (getpwent
        // over LDAP) at every launch could take seconds.
        var homes = [query.environment["HOME"]].compactMap { $0 }
        if let entry = getpwuid(getuid()) { homes.append(String(cString: entry.pointee.pw_dir)) }
        let passwd = (try? String(contentsOfFile: "/etc/passwd", encoding: .utf8)) ?? ""
        for line in passwd.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 6 { homes.append(String(fields[5])) }
        }
        for home in homes where home.hasPrefix("/") && home != "/" {
            if dir == home { return "the home directory itself" }
            if home.hasPrefix(dir + "/") { return "a directory above the home directory \(home)" }
        }
        if query.workspace == dir || query.workspace.hasPrefix(dir + "/") { return "a directory holding the workspace" }
        return nil
    }

    /// The refusal: what `command[0]` is on each side and the proctor.toml key that fixes it.
    static func refusal(_ query: InterpreterQuery, _ what: String, fix: String?, orPath: Bool = true) -> SandboxError {
        var text = "\(query.located): \(what). Refusing to run another interpreter than the one the command names."
        let set = query.key.hasPrefix("[") ? " in proctor.toml, \(query.key) =" : ":"
        if var fix {
            // An environment in the workspace by its relative path: the workspace may move.
            if fix.hasPrefix(query.workspace + "/") { fix.removeFirst(query.workspace.count + 1) }
            text += " Name the one you mean\(set) [\"\(fix)\", ...]"
            if orPath && query.sandboxPath != query.environment["PATH"] { text += ", or pass your PATH with \(query.envKey) = [\"PATH\", ...]" }
        } else {
            text += " Point \(query.key) at a Python environment's own interpreter (README: \"Your Python environment\")"
        }
        return SandboxError(.interpreter, text)
    }

    // MARK: - Host lookups

    /// The file a command name runs: with a slash, that path (relative ones from the workspace, the
    /// sandbox's working directory); otherwise the first executable on `path`, only among `within`
    /// when given (the directories the sandbox sees).
    static func locate(_ command: String, path: String, workspace: String, within roots: [String]? = nil) -> String? {
        if command.contains("/") {
            let candidate = command.hasPrefix("/") ? command : workspace + "/" + command
            let normal = URL(fileURLWithPath: candidate).standardizedFileURL.path
            return isExecutable(normal) ? normal : nil
        }
        for dir in path.split(separator: ":") where dir.hasPrefix("/") {
            let candidate = URL(fileURLWithPath: "\(dir)/\(command)").standardizedFileURL.path
            if let roots, !Self.within(candidate, roots) { continue }
            if isExecutable(candidate) { return candidate }
        }
        return nil
    }

    /// What makes two interpreters the same: the environment they belong to, or the file they are.
    static func identity(_ executable: String) -> String {
        let prefix = dirname(dirname(executable))
        if exists(prefix + "/pyvenv.cfg") || isDirectory(prefix + "/conda-meta") { return "env:" + prefix }
        return "file:" + (realpath(executable) ?? executable)
    }

    /// `python`, `python3`, `python3.11`, `pypy3`.
    static func isPythonName(_ name: String) -> Bool {
        for stem in ["python", "pypy"] where name.hasPrefix(stem) {
            return name.dropFirst(stem.count).allSatisfy { $0.isNumber || $0 == "." }
        }
        return false
    }

    /// `home` in a `pyvenv.cfg` (`key = value` lines).
    static func pyvenvHome(_ file: String) -> String? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in text.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == "home" else { continue }
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// A prefix holding a Python standard library (`lib/python3.X/os.py`).
    static func isPythonInstallation(_ prefix: String) -> Bool {
        let lib = prefix + "/lib"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: lib)) ?? []
        return names.contains { $0.hasPrefix("python") && exists(lib + "/" + $0 + "/os.py") }
    }

    static func within(_ path: String, _ roots: [String]) -> Bool {
        roots.contains { root in root == "/" || path == root || path.hasPrefix(root + "/") }
    }

    static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func basename(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    static func realpath(_ path: String) -> String? {
        guard let resolved = Glibc.realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isExecutable(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    static func isScript(_ path: String) -> Bool { InterpreterProbe.isScript(path) }
}
