import Foundation

/// A named sandbox preset from `policies/NAME.toml`.
public struct PolicyPreset: Sendable, Equatable {
    public var name: String
    /// Host paths mounted read-only at the same place (missing ones skipped).
    public var system: [String]
    /// Host paths never visible, even inside the system mounts.
    public var hide: [String]
    public var tmpSize: Int64
    /// Size of the private `/dev/shm` (POSIX semaphores and shared memory, which Python's
    /// multiprocessing and joblib need); 0 for none.
    public var shmSize: Int64
    public var nofile: Int
    public var stdioLimit: Int64
    public var graceMs: Int64
    /// When false, the experiment phase never gets the host network.
    public var allowNetwork: Bool

    /// Reads `dir/NAME.toml`; unknown keys and bad values are errors naming the file and line.
    /// A preset that does not exist is an error at `reference` (proctor.toml's file and line of
    /// `[sandbox] policy`), where the name was written.
    public static func load(name: String, from dir: String, reference: (file: String, line: Int?)? = nil) throws -> PolicyPreset {
        let file = dir + "/" + name + ".toml"
        guard let data = FileManager.default.contents(atPath: file) else {
            let known = (try? FileManager.default.contentsOfDirectory(atPath: dir))?
                .filter { $0.hasSuffix(".toml") }.map { String($0.dropLast(5)) }.sorted() ?? []
            throw ConfigError(file: reference?.file ?? file, line: reference?.line, key: "sandbox.policy",
                              message: "expected a preset from \(dir), got \"\(name)\" (known: \(known.joined(separator: ", ")))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError.notUTF8(file: file, bytes: [UInt8](data))
        }
        let reader = try TOMLReader(file: file, text: text)
        var top = TableReader(reader, [], reader.root)
        let system = try top.strings("system") ?? ["/usr", "/bin", "/lib", "/lib64", "/etc"]
        let hide = try top.strings("hide") ?? []
        for (key, paths) in [("system", system), ("hide", hide)] {
            for path in paths where !path.hasPrefix("/") || path.split(separator: "/").contains("..") {
                throw reader.error([], key, "expected absolute paths without \"..\", got \"\(path)\"")
            }
            if let path = paths.first(where: { WorkspaceConfig.sandboxOwn($0) != nil }) {
                throw reader.error([], key, "expected a host path outside /tmp, /dev and /proc (the sandbox's own private ones), got \"\(path)\"")
            }
        }
        // The whole host read-only (home directories, keys) is no sandbox, and no list at all runs
        // nothing: both started the run and failed its baseline (a mount of "/" and "/bin" over it,
        // or exit 127).
        if system.isEmpty {
            throw reader.error([], "system", "expected the host directories programs run from, such as [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/etc\"]")
        }
        if let root = system.first(where: { $0.split(separator: "/").isEmpty }) {
            throw reader.error([], "system", "expected directories below \"/\", got \"\(root)\" (the whole host, its home directories and keys included)")
        }
        // Hiding the root hides the system the sandbox is built from (the launcher then failed
        // naming no file or key), as in `[sandbox] hide`.
        if let root = hide.first(where: { $0.split(separator: "/").isEmpty }) {
            throw reader.error([], "hide", "expected a directory or file below \"/\", got \"\(root)\" (hiding the root hides everything)")
        }
        let preset = PolicyPreset(
            name: name, system: system, hide: hide,
            tmpSize: try top.size("tmp_size") ?? 512 << 20,
            shmSize: top.has("shm_size") ? (try top.size("shm_size") ?? 0) : 64 << 20,
            nofile: try top.int("nofile", min: 16, max: 1 << 20) ?? 1024,
            stdioLimit: try top.size("stdio_limit") ?? 64 << 20,
            graceMs: try top.duration("grace") ?? 500,
            allowNetwork: try top.bool("network") ?? true)
        try top.finish()
        return preset
    }
}

/// Where proctor's bundled data (`policies/`, the `workspace/` template) lives.
public enum BundledData {
    /// The first of `$PROCTOR_HOME`, `<exe>/../share/proctor`, or the checkout the binary was
    /// built in (found by walking up from the executable), that has a `policies/` folder.
    public static func root(executable: String = CommandLine.arguments[0]) -> String? {
        var candidates: [String] = []
        if let home = hostEnvironment("PROCTOR_HOME") { candidates.append(URL(fileURLWithPath: home).standardizedFileURL.path) }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? executable
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        candidates.append(dir.appendingPathComponent("../share/proctor").standardizedFileURL.path)
        for _ in 0..<6 {
            candidates.append(dir.path)
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/policies/default.toml") }
    }

    public static var policies: String? { root().map { $0 + "/policies" } }
    public static var workspaceTemplate: String? { root().map { $0 + "/workspace" } }

    /// The bundled example as every sandbox of `workspace` hides it: links resolved (a hide refuses
    /// a path through a link, and every launch failed), nil where it is that workspace, holds it or
    /// lies in it (then the workspace's own lists govern it), or is not there.
    public static func templateToHide(workspace: String) -> String? {
        guard let template = workspaceTemplate.map({ URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }),
              FileManager.default.fileExists(atPath: template) else { return nil }
        let ws = URL(fileURLWithPath: workspace).resolvingSymlinksInPath().path
        return template == ws || ws.hasPrefix(template + "/") || template.hasPrefix(ws + "/") ? nil : template
    }
}
