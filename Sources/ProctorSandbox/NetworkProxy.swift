import Foundation
import ProctorConfig

/// `network = "allowlist"` in a plan: the launcher's proxy (sandbox/proxy.c) listens on
/// `127.0.0.1:port` inside the sandbox's own network namespace, the only way out of it, and admits
/// `allowHosts` only, resolving names itself and refusing private addresses unless `allowPrivate`.
public struct NetworkProxy: Sendable, Equatable {
    /// The proxy's port inside the sandbox (whose loopback is its own: no clash with the host's).
    public static let port = 3128
    /// The host variable naming a test resolver file (`NAME ADDRESS...` per line) that replaces DNS
    /// for the proxy: the tests' way to give names to loopback listeners.
    public static let hostsFileVariable = "PROCTOR_NET_HOSTS_FILE"

    public var allowHosts: [String]
    public var allowPrivate: Bool
    public var hostsFile: String?

    public init(allowHosts: [String], allowPrivate: Bool, hostsFile: String? = nil) {
        self.allowHosts = allowHosts
        self.allowPrivate = allowPrivate
        self.hostsFile = hostsFile
    }

    /// From a phase's `network` settings; nil unless they say `allowlist`.
    static func of(_ access: NetworkAccess, host: HostFacts) -> NetworkProxy? {
        guard access.mode == .allowlist else { return nil }
        return NetworkProxy(allowHosts: access.allowHosts, allowPrivate: access.allowPrivate,
                            hostsFile: host.environment[hostsFileVariable].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The launcher's options after `--net allowlist`.
    var arguments: [String] {
        var args = ["--proxy-port", String(Self.port)]
        for entry in allowHosts { args += ["--allow-host", entry] }
        if allowPrivate { args.append("--allow-private") }
        if let hostsFile { args += ["--proxy-hosts", hostsFile] }
        return args
    }

    /// The variables that point HTTP clients (curl, Python, Node's and Rust's common clients) at the
    /// proxy, both spellings. A client that ignores them reaches nothing: there is no other route.
    static var environment: [(String, String)] {
        let url = "http://127.0.0.1:\(port)"
        return ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"].flatMap { [($0, url), ($0.lowercased(), url)] }
    }
}

/// What the sandboxes launched from one environment sent through the allowlist proxy, by
/// iteration, phase and host: the research loop puts an iteration's into its `runs.jsonl` record.
/// Shared by the copies of a `SandboxEnvironment`.
public final class NetworkMeter: @unchecked Sendable {
    private let lock = NSLock()
    private var use: [Int: [String: [String: NetworkUse]]] = [:]

    public init() {}

    func add(iteration: Int?, _ phase: Phase, _ hosts: [String: NetworkUse]) {
        guard let iteration, !hosts.isEmpty else { return }
        lock.lock()
        defer { lock.unlock() }
        use[iteration, default: [:]][phase.rawValue, default: [:]].merge(hosts, uniquingKeysWith: +)
    }

    /// Phase → host → use of `iteration`, nil when nothing went through. Earlier iterations are
    /// forgotten: their records are written.
    public func use(of iteration: Int) -> [String: [String: NetworkUse]]? {
        lock.lock()
        defer { lock.unlock() }
        use = use.filter { $0.key >= iteration }
        return use[iteration]
    }
}
