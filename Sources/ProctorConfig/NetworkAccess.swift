import Foundation

/// `network`, `allow_hosts` and `allow_private` of `[agent]` or `[experiment]`: what a sandboxed
/// phase may reach beyond its own loopback.
public struct NetworkAccess: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable, CaseIterable {
        /// Nothing outside the sandbox (the agent: no network at all; the experiment: its own loopback).
        case none
        /// A proxy outside the sandbox admits `allowHosts` only, by name and resolved address.
        case allowlist
        /// The host's network: everything the host reaches, its loopback services included.
        case host
    }

    public var mode: Mode = .none
    /// Exact names (`api.anthropic.com`), `*.suffix` wildcards (names below it), or addresses
    /// (`127.0.0.1`, `[::1]`), each optionally with `:port`; without one, ports 443 and 80.
    public var allowHosts: [String] = []
    /// Loopback, link-local, private addresses and the host's own may be reached (a local server).
    public var allowPrivate = false

    public init(mode: Mode = .none, allowHosts: [String] = [], allowPrivate: Bool = false) {
        self.mode = mode
        self.allowHosts = allowHosts
        self.allowPrivate = allowPrivate
    }

    /// Reads the three keys of `table`; `network = true` is read as `host` and adds a warning that
    /// names the risk to `warnings`.
    static func read(_ table: inout TableReader, warnings: inout [String]) throws -> NetworkAccess {
        var access = NetworkAccess()
        let section = table.path.joined(separator: ".")
        if table.has("network") {
            if let flag = try? table.bool("network") {
                access.mode = flag ? .host : .none
                if flag {
                    let at = table.error("network", "")
                    warnings.append("\(at.file):\(at.line.map(String.init) ?? "?"): \(at.key ?? "network"): true means \"host\": the sandbox reaches everything the host does (services on its 127.0.0.1, the cloud metadata address, the LAN, any internet host to send data to); set network = \"allowlist\" with allow_hosts, or \"host\" to keep this without the warning")
                }
            } else {
                let choices = Mode.allCases.map(\.rawValue)
                guard let text = try? table.string("network"), let mode = Mode(rawValue: text) else {
                    throw table.error("network", "expected one of \(choices.map { "\"\($0)\"" }.joined(separator: ", ")) (or true, meaning \"host\")")
                }
                access.mode = mode
            }
        }
        if let hosts = try table.strings("allow_hosts") {
            guard access.mode == .allowlist else {
                throw table.error("allow_hosts", "is used with network = \"allowlist\" only (\(section).network is \"\(access.mode.rawValue)\")")
            }
            access.allowHosts = try hosts.map { entry in
                do { return try Self.checkedEntry(entry) } catch let problem as EntryProblem {
                    throw table.error("allow_hosts", "expected a host name, \"*.domain\" or an address, optionally with \":port\", got \"\(entry)\": \(problem.reason)")
                }
            }
        }
        if let flag = try table.bool("allow_private") {
            guard access.mode == .allowlist else {
                throw table.error("allow_private", "is used with network = \"allowlist\" only (\(section).network is \"\(access.mode.rawValue)\")")
            }
            access.allowPrivate = flag
        }
        if access.mode == .allowlist && access.allowHosts.isEmpty {
            throw table.error("allow_hosts", "expected at least one host with network = \"allowlist\", e.g. allow_hosts = [\"api.anthropic.com\"]")
        }
        if access.mode == .allowlist && !access.allowPrivate,
           let literal = access.allowHosts.first(where: { Self.isPrivateLiteral(Self.hostPart($0)) }) {
            throw table.error("allow_hosts", "\"\(literal)\" is a loopback or private address, refused unless allow_private = true")
        }
        if access.allowHosts.count > Self.maxHosts {
            throw table.error("allow_hosts", "expected at most \(Self.maxHosts) entries, got \(access.allowHosts.count)")
        }
        return access
    }

    /// The most entries the launcher takes (`PSB_MAX_ALLOW_HOSTS`).
    public static let maxHosts = 64

    struct EntryProblem: Error { var reason: String }

    /// The entry as the proxy reads it (lowercased), or why it is not one.
    static func checkedEntry(_ raw: String) throws -> String {
        let entry = raw.lowercased()
        var host = entry
        var port: Substring?
        if entry.hasPrefix("[") {
            guard let close = entry.firstIndex(of: "]") else { throw EntryProblem(reason: "no closing ]") }
            host = String(entry[entry.index(after: entry.startIndex)..<close])
            let rest = entry[entry.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw EntryProblem(reason: "only :port may follow ]") }
                port = rest.dropFirst()
            }
            guard IPAddressText.isIPv6(host) else { throw EntryProblem(reason: "not an IPv6 address in [ ]") }
        } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
            host = String(entry[..<colon])
            port = entry[entry.index(after: colon)...]
        } else if entry.contains(":") {
            throw EntryProblem(reason: "write an IPv6 address in brackets, e.g. \"[::1]:11434\"")
        }
        if let port {
            guard let number = Int(port), (1...65535).contains(number), String(number) == port else {
                throw EntryProblem(reason: "the port must be a number from 1 to 65535")
            }
        }
        if IPAddressText.isIPv6(host) {
            return entry
        }
        let labels = (host.hasPrefix("*.") ? String(host.dropFirst(2)) : host).split(separator: ".", omittingEmptySubsequences: false)
        guard !labels.isEmpty, labels.allSatisfy({ label in
            !label.isEmpty && label.count <= 63 && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }) else {
            throw EntryProblem(reason: host.contains("*") ? "a wildcard is \"*.\" followed by a domain" : "not a host name")
        }
        if host.hasPrefix("*."), labels.count < 2 {
            throw EntryProblem(reason: "a wildcard needs a domain of two labels at least (\"*.example.com\")")
        }
        // A dotted-decimal address in its canonical form only: the proxy compares texts.
        if labels.allSatisfy({ $0.allSatisfy(\.isNumber) }) && !IPAddressText.isCanonicalIPv4(host) {
            throw EntryProblem(reason: "an IPv4 address is four decimal numbers from 0 to 255")
        }
        guard host.count <= 253 else { throw EntryProblem(reason: "longer than 253 characters") }
        return entry
    }

    /// The host of an entry: no port, no brackets.
    static func hostPart(_ entry: String) -> String {
        if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
            return String(entry[entry.index(after: entry.startIndex)..<close])
        }
        if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") { return String(entry[..<colon]) }
        return entry
    }

    /// An address literal the proxy refuses without `allow_private` (its ranges, as the launcher's
    /// `address_class` in sandbox/proxy.c has them, for the literal forms a user writes).
    static func isPrivateLiteral(_ host: String) -> Bool {
        if IPAddressText.isCanonicalIPv4(host) {
            let o = host.split(separator: ".").compactMap { Int($0) }
            return o[0] == 0 || o[0] == 127 || o[0] == 10 || (o[0] == 169 && o[1] == 254) || (o[0] == 172 && (16...31).contains(o[1]))
                || (o[0] == 192 && o[1] == 168) || (o[0] == 100 && (64...127).contains(o[1]))
        }
        if IPAddressText.isIPv6(host) {
            let h = host.lowercased()
            return h == "::1" || h == "::" || h.hasPrefix("fe8") || h.hasPrefix("fe9") || h.hasPrefix("fea") || h.hasPrefix("feb")
                || h.hasPrefix("fc") || h.hasPrefix("fd") || h.hasPrefix("::ffff:")
        }
        return false
    }
}

/// Address texts, checked with the C library's own parser.
enum IPAddressText {
    static func isIPv6(_ text: String) -> Bool {
        var addr = in6_addr()
        return inet_pton(AF_INET6, text, &addr) == 1
    }

    /// Four decimal numbers 0...255 without leading zeros: the form `inet_ntop` writes.
    static func isCanonicalIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            guard let n = Int(part), (0...255).contains(n) else { return false }
            return String(n) == part
        }
    }
}
