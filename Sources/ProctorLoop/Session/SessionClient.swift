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
        guard let body = request.body else { throw RunError("the request is not valid (an analysis command of at most 256 arguments, 3500 bytes and 4000 as JSON, no NUL)") }
        let inherited = ProcessInfo.processInfo.environment[SessionProtocol.environmentName].flatMap { Int32($0) }
        guard let channel = inherited, isSessionSocket(channel) else {
            // Tools started by node (Claude Code's Bash tool) or other runtimes that close
            // inherited descriptors: the same supervisor, through the socket mounted read-only.
            if let reply = try requestThroughMountedSocket(body) { return reply }
            throw RunError("not inside a proctor session (no \(SessionProtocol.environmentName)); run experiments with `proctor run` or `proctor session`")
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw RunError("socketpair: \(String(cString: strerror(errno)))")
        }
        defer { close(pair[0]) }
        let sent = sendWithDescriptor(channel, body, pair[1])
        close(pair[1])
        guard sent else { throw RunError("the session channel is closed: \(String(cString: strerror(errno)))") }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var n: Int
        repeat { n = recv(pair[0], &buffer, buffer.count, 0) } while n < 0 && errno == EINTR
        guard n > 0 else { throw RunError("the supervisor closed the session without answering") }
        return try JSONLines.decoder().decode(SessionProtocol.Reply.self, from: Data(buffer[0..<n]))
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
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard var address = SessionProtocol.address(SessionProtocol.socketPath) else { return nil }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { return nil }
        guard body.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == body.count else {
            throw RunError("the session socket is closed: \(String(cString: strerror(errno)))")
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var n: Int
        repeat { n = recv(fd, &buffer, buffer.count, 0) } while n < 0 && errno == EINTR
        guard n > 0 else { throw RunError("the supervisor closed the session without answering") }
        return try JSONLines.decoder().decode(SessionProtocol.Reply.self, from: Data(buffer[0..<n]))
    }

    private static func sendWithDescriptor(_ socket: Int32, _ body: [UInt8], _ fd: Int32) -> Bool {
        let space = MemoryLayout<cmsghdr>.size + MemoryLayout<Int32>.size
        var control = [UInt8](repeating: 0, count: (space + 7) & ~7)
        var body = body
        return body.withUnsafeMutableBytes { bodyBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var iov = iovec(iov_base: bodyBytes.baseAddress, iov_len: bodyBytes.count)
                return withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var message = msghdr()
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                    header.pointee.cmsg_level = SOL_SOCKET
                    header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                    header.pointee.cmsg_len = MemoryLayout<cmsghdr>.size + MemoryLayout<Int32>.size
                    controlBytes.baseAddress!.advanced(by: MemoryLayout<cmsghdr>.size)
                        .storeBytes(of: fd, as: Int32.self)
                    return sendmsg(socket, &message, Int32(MSG_NOSIGNAL)) == bodyBytes.count
                }
            }
        }
    }
}
