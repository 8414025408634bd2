import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

/// Agent-driven sessions, the autoresearch way: the agent runs for the whole session in the agent
/// sandbox and asks for experiments with `proctor experiment "description"`. The request travels
/// over a socket the agent inherits (fd `PROCTOR_SESSION_FD`), never a path it could replace; each
/// request carries its own reply socket, so concurrent callers cannot read each other's answers.
/// The supervisor runs one experiment at a time and refuses the rest.
public enum SessionProtocol {
    /// The descriptor number the agent's processes inherit.
    public static let fd: Int32 = 3
    public static let environmentName = "PROCTOR_SESSION_FD"
    /// Where the session's listening socket is mounted (read-only) inside the agent sandbox, for
    /// processes that did not inherit the descriptor.
    public static let socketPath = "/run/proctor/session.sock"

    static func address(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        return address
    }

    /// The reply to one request, one JSON object.
    public struct Reply: Codable, Sendable {
        public var accepted: Bool
        public var message: String
        public var iteration: Int?
        public var status: String?
        public var score: Double?
        public var best: Double?
        /// An analysis request's: the analysis number and its command's exit status (older
        /// supervisors leave them out; older clients ignore them).
        public var analysis: Int?
        public var exitStatus: Int32?
    }

    /// One request as the loop gets it. On the wire: `EXPERIMENT\t<description>` (as before) or
    /// `ANALYZE\t<JSON array of the arguments>` (an older supervisor answers "unknown request").
    public enum Request: Sendable, Equatable {
        case experiment(description: String)
        case analysis(command: [String])

        /// The request's bytes, or nil for a command that is not valid (`AnalysisStore.validate`).
        var body: [UInt8]? {
            switch self {
            case .experiment(let description): return Array(("EXPERIMENT\t" + String(description.prefix(500))).utf8)
            case .analysis(let command):
                guard (try? AnalysisStore.validate(command)) != nil, let json = try? JSONEncoder().encode(command),
                    json.count <= 4000  // the server reads one 4096-byte packet; escapes can grow the JSON
                else { return nil }
                return Array("ANALYZE\t".utf8) + Array(json)
            }
        }

        /// Parses a received request; nil for anything else (answered "unknown request").
        init?(_ text: String) {
            if text.hasPrefix("EXPERIMENT\t") {
                self = .experiment(description: String(text.dropFirst("EXPERIMENT\t".count)))
            } else if text.hasPrefix("ANALYZE\t"),
                let command = try? JSONDecoder().decode([String].self, from: Data(text.dropFirst("ANALYZE\t".count).utf8)),
                (try? AnalysisStore.validate(command)) != nil {
                self = .analysis(command: command)
            } else {
                return nil
            }
        }
    }
}
