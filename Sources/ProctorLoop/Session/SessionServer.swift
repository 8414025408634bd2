import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

/// The supervisor's end: receives requests on a reader thread, refuses those that arrive while an
/// experiment runs, and hands the others to the loop one at a time.
final class SessionServer: @unchecked Sendable {
    /// The end the agent inherits (as fd 3).
    let agentEnd: Int32
    private let serverEnd: Int32
    private let lock = NSCondition()
    private var pending: (request: SessionProtocol.Request, reply: Int32)?
    private var busy = false
    private var closed = false
    /// The listening socket's host path (in a 0700 directory of its own), mounted read-only at
    /// `SessionProtocol.socketPath` in the agent sandbox only.
    let socketPath: String
    private let listener: Int32

    init() throws {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw RunError("socketpair: \(String(cString: strerror(errno)))")
        }
        serverEnd = pair[0]
        agentEnd = pair[1]
        let base = ProcessInfo.processInfo.environment["PROCTOR_AGENT_HOME_BASE"] ?? "/var/tmp"
        var template = Array((base + "/proctor-session-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw RunError("mkdtemp in \(base): \(String(cString: strerror(errno)))") }
        socketPath = String(cString: made) + "/session.sock"
        listener = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0, var address = SessionProtocol.address(socketPath) else {
            throw RunError("session socket: \(String(cString: strerror(errno)))")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(socketPath, 0o600) == 0, listen(listener, 16) == 0 else {
            throw RunError("session socket \(socketPath): \(String(cString: strerror(errno)))")
        }
        let thread = Thread { [self] in self.readLoop() }
        thread.start()
        let acceptor = Thread { [self] in self.acceptLoop() }
        acceptor.start()
    }

    /// Removes the listening socket and its directory (the session is over).
    func removeSocket() {
        unlink(socketPath)
        rmdir((socketPath as NSString).deletingLastPathComponent)
    }

    /// Waits for the next accepted request; nil when the agent has gone (its end closed). The loop
    /// answers it with `finish` (an experiment after its iteration, an analysis once run).
    /// `idle` runs on the waiting thread about every `interval` seconds while no request came (the
    /// loop's own work between experiments: analyses queued from another terminal).
    func next(idle: (() -> Void)? = nil, interval: TimeInterval = 1) -> (request: SessionProtocol.Request, reply: Int32)? {
        lock.lock()
        defer { lock.unlock() }
        while pending == nil && !closed {
            guard let idle else {
                lock.wait()
                continue
            }
            if !lock.wait(until: Date().addingTimeInterval(interval)) && pending == nil && !closed {
                lock.unlock()
                idle()
                lock.lock()
            }
        }
        guard let request = pending else { return nil }
        pending = nil
        return request
    }

    /// Answers the request being served and accepts new ones again.
    func finish(_ reply: Int32, _ answer: SessionProtocol.Reply) {
        SessionServer.send(reply, answer)
        close(reply)
        lock.lock()
        busy = false
        lock.unlock()
    }

    /// The agent's side is gone: wake the loop.
    func shutdown() {
        lock.lock()
        closed = true
        lock.broadcast()
        lock.unlock()
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let space = (MemoryLayout<cmsghdr>.size + MemoryLayout<Int32>.size + 7) & ~7
        var control = [UInt8](repeating: 0, count: space * 4)
        while true {
            var received = -1
            var passed: Int32 = -1
            buffer.withUnsafeMutableBytes { bodyBytes in
                control.withUnsafeMutableBytes { controlBytes in
                    var iov = iovec(iov_base: bodyBytes.baseAddress, iov_len: bodyBytes.count)
                    withUnsafeMutablePointer(to: &iov) { iovPointer in
                        var message = msghdr()
                        message.msg_iov = iovPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        repeat { received = recvmsg(serverEnd, &message, Int32(MSG_CMSG_CLOEXEC)) } while received < 0 && errno == EINTR
                        // Take exactly one descriptor from the first SCM_RIGHTS header; close any others.
                        if received > 0, message.msg_controllen >= MemoryLayout<cmsghdr>.size {
                            let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                            if header.pointee.cmsg_level == SOL_SOCKET && header.pointee.cmsg_type == Int32(SCM_RIGHTS) {
                                let count = (Int(header.pointee.cmsg_len) - MemoryLayout<cmsghdr>.size) / MemoryLayout<Int32>.size
                                for k in 0..<max(count, 0) {
                                    let fd = controlBytes.baseAddress!.advanced(by: MemoryLayout<cmsghdr>.size + k * 4)
                                        .load(as: Int32.self)
                                    if k == 0 { passed = fd } else { close(fd) }
                                }
                            }
                        }
                    }
                }
            }
            if received <= 0 { break }
            let text = String(decoding: buffer[0..<received], as: UTF8.self)
            guard passed >= 0 else { continue }  // no reply channel: nothing to answer on
            handle(text, reply: passed)
        }
        shutdown()
    }

    /// Connections to the mounted socket: one request each, answered on the connection itself.
    private func acceptLoop() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE { continue }
                break
            }
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)  // proctor never execs, but the launcher is spawned
            // A client that connects and says nothing must not hold this thread.
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var n: Int
            repeat { n = recv(connection, &buffer, buffer.count, 0) } while n < 0 && errno == EINTR
            guard n > 0 else {
                close(connection)
                continue
            }
            handle(String(decoding: buffer[0..<n], as: UTF8.self), reply: connection)
        }
    }

    /// One request: refused while another experiment or analysis runs, else handed to the loop.
    private func handle(_ text: String, reply: Int32) {
        guard let request = SessionProtocol.Request(text) else {
            SessionServer.send(reply, .init(accepted: false, message: "unknown request"))
            close(reply)
            return
        }
        lock.lock()
        if busy || pending != nil || closed {
            let message = closed ? "refused: the session is over" : "refused: another experiment is running; one at a time"
            lock.unlock()
            SessionServer.send(reply, .init(accepted: false, message: message))
            close(reply)
            return
        }
        busy = true
        pending = (request, reply)
        lock.broadcast()
        lock.unlock()
    }

    /// Never blocks: the reply descriptor is the agent's, and one whose buffer it filled (a stream
    /// socket nobody reads) would otherwise hang the loop, or the reader thread, until the agent's
    /// timeout, past `--iterations` and Ctrl-C. A reply that does not fit at once is dropped.
    static func send(_ fd: Int32, _ reply: SessionProtocol.Reply) {
        // JSONLines' encoder: a best score of -inf (issue 8) is "-inf", where a plain encoder throws and
        // the agent would get no reply at all.
        guard let data = try? JSONLines.encoder().encode(reply) else { return }
        _ = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    func closeAgentEnd() {
        close(agentEnd)
    }
}
