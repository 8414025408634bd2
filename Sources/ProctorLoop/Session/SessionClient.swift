import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

/// The `proctor experiment` side, inside the agent sandbox.
public enum SessionClient {
    /// Sends the request and waits for the reply. Throws when there is no session channel.
    public static func request(description: String) throws -> SessionProtocol.Reply {
        try request(.experiment(description: description))
    }

    /// `proctor analyze` inside a session: the supervisor runs `command` in the experiment sandbox
    /// and answers with its summary (`Reply.message`) and exit status (`Reply.exitStatus`).
    public static func request(analysis command: [String]) throws -> SessionProtocol.Reply {
        try request(.analysis(command: command))
    }

    /// Whether this process is inside a session (it inherited the channel, or the socket is mounted).
    public static var insideSession: Bool {
        ProcessInfo.processInfo.environment[SessionProtocol.environmentName] != nil
            || FileManager.default.fileExists(atPath: SessionProtocol.socketPath)
    }

    static func request(_ request: SessionProtocol.Request) throws -> SessionProtocol.Reply {
        guard let body = request.body else { throw LoopError(.failed, "the request is not valid (an analysis command of at most 256 arguments, 3500 bytes and 4000 as JSON, no NUL)") }
        let inherited = ProcessInfo.processInfo.environment[SessionProtocol.environmentName].flatMap { Int32($0) }
        guard let channel = inherited, isSessionSocket(channel) else {
            // Tools started by node (Claude Code's Bash tool) or other runtimes that close
            // inherited descriptors: the same supervisor, through the socket mounted read-only.
            if let reply = try requestThroughMountedSocket(body) { return reply }
            throw LoopError(.failed, "not inside a proctor session (no \(SessionProtocol.environmentName)); run experiments with `proctor run` or `proctor session`")
        }
        let pair = try SocketPair()
        let sent = SocketChannel.send(channel, body, passing: pair.remote.raw)
        let error = errno
        // Only the supervisor holds the other end now: its close is our end of file.
        pair.remote.close()
        guard sent else { throw LoopError(.failed, "the session channel is closed: \(String(cString: strerror(error)))") }
        return try reply(from: pair.local.raw)
    }

    /// The supervisor's one-message answer on `socket`.
    private static func reply(from socket: Int32) throws -> SessionProtocol.Reply {
        guard let message = SocketChannel.receive(socket) else { throw LoopError(.failed, "the supervisor closed the session without answering") }
        return try JSONLines.decoder().decode(SessionProtocol.Reply.self, from: Data(message.bytes))
    }

    /// A descriptor that is a Unix SEQPACKET socket: not some unrelated file that took the number.
    static func isSessionSocket(_ fd: Int32) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return false }
        var type: Int32 = 0
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_SEQPACKET.rawValue) else { return false }
        length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && domain == AF_UNIX
    }

    /// One request over a connection to `SessionProtocol.socketPath`; nil when there is none.
    static func requestThroughMountedSocket(_ body: [UInt8]) throws -> SessionProtocol.Reply? {
        let made = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard made >= 0 else { return nil }
        let fd = OwnedDescriptor(made)
        guard var address = SessionProtocol.address(SessionProtocol.socketPath) else { return nil }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { return nil }
        guard SocketChannel.send(fd.raw, body) else {
            throw LoopError(.failed, "the session socket is closed: \(String(cString: strerror(errno)))")
        }
        return try reply(from: fd.raw)
    }
}
