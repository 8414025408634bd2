import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

/// One request as the loop gets it, with the socket its answer goes to.
struct SessionRequest: ~Copyable {
    var request: SessionProtocol.Request
    var reply: OwnedDescriptor
    /// Who sent it (host pid), when the kernel said.
    var sender: pid_t?

    /// The socket the answer goes to (`SessionServer.finish`).
    consuming func takeReply() -> OwnedDescriptor { reply }
}

/// The supervisor's end: receives requests on a reader thread, refuses those that arrive while an
/// experiment runs, and hands the others to the loop one at a time.
final class SessionServer: @unchecked Sendable {
    /// The end the agent inherits (as fd 3); ours is closed once its sandbox is gone.
    let agentEnd: Int32
    private var agentEndOwner: OwnedDescriptor?
    private let serverEnd: OwnedDescriptor
    private let lock = NSCondition()
    private var pending: SessionRequest?
    private var busy = false
    private var closed = false
    /// Processes frozen with the running experiment, its sender excepted (`refuseOnce`).
    private var startedTogether: Set<pid_t> = []
    /// The listening socket's host path (in a 0700 directory of its own), mounted read-only at
    /// `SessionProtocol.socketPath` in the agent sandbox only.
    let socketPath: String
    private let listener: OwnedDescriptor

    /// Where refused requests are recorded (`refused`), and the run they belong to.
    private let audit: AuditLog?
    private let run: String
    /// Refusals recorded so far; past `SessionServer.auditedRefusals` they are only counted.
    private var refusals = 0
    static let auditedRefusals = 100

    init(audit: AuditLog? = nil, run: String = "") throws {
        self.audit = audit
        self.run = run
        let pair = try SocketPair()
        // Every request then carries its sender's pid (`refuseOnce`).
        try SocketChannel.passSenders(pair.local.raw)
        agentEnd = pair.remote.raw
        agentEndOwner = .some(pair.remote)
        serverEnd = pair.local
        // Named with this process's id: a supervisor killed before it could remove its directory
        // leaves it to the next session's start, which sweeps those whose process is gone.
        socketPath = try ScratchDirectory.make(in: ScratchDirectory.agentBase, prefix: "proctor-session") + "/session.sock"
        listener = try OwnedDescriptor(checking: socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0),
                                       "session socket")
        guard var address = SessionProtocol.address(socketPath) else { throw LoopError(.failed, "session socket \(socketPath): path too long") }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(socketPath, 0o600) == 0, listen(listener.raw, 16) == 0 else {
            throw LoopError(.failed, "session socket \(socketPath): \(String(cString: strerror(errno)))")
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
    func next(idle: (() -> Void)? = nil, interval: TimeInterval = 1) -> SessionRequest? {
        lock.lock()
        defer { lock.unlock() }
        while true {
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
            guard let request = pending.take() else { return nil }
            // Asked, then gone (its client timed out or the agent exited while the reader was held):
            // nobody waits for this experiment, and it must not run after the agent has left.
            if closed || !SocketChannel.peerIsThere(request.reply.raw) {
                busy = false
                _ = consume request
                continue
            }
            return request
        }
    }

    /// Answers the request being served and accepts new ones again.
    func finish(_ reply: consuming OwnedDescriptor, _ answer: SessionProtocol.Reply) {
        // Free before the answer: an agent that asks again the moment it has it was refused as busy
        // (192 of 2,442 back-to-back requests).
        lock.lock()
        busy = false
        lock.unlock()
        SessionServer.send(reply.raw, answer)
        reply.close()
    }

    /// The experiment being served froze `processes` (its sender excepted) while they may have been
    /// starting a request of their own: two `proctor experiment` started together. The first request
    /// each of them makes after the thaw is refused, as it would have been had it come a moment
    /// earlier, instead of being run as the next experiment.
    func refuseOnce(_ processes: Set<pid_t>) {
        lock.lock()
        startedTogether = processes
        lock.unlock()
    }

    /// The agent's side is gone: wake the loop (and count the refusals past those recorded).
    func shutdown() {
        lock.lock()
        let unrecorded = closed ? 0 : refusals - SessionServer.auditedRefusals
        closed = true
        lock.broadcast()
        lock.unlock()
        if unrecorded > 0 { record("and \(unrecorded) more malformed requests on the session channel") }
    }

    /// A malformed request, audited (the first hundred; the rest counted when the session ends): a
    /// blocked attempt that leaves no record is half a defence.
    private func refused(_ detail: String) {
        lock.lock()
        refusals += 1
        let recorded = refusals <= SessionServer.auditedRefusals
        lock.unlock()
        if recorded { record(detail) }
    }

    private func record(_ detail: String) {
        audit?.append(AuditRecord(run: run, iteration: nil, phase: .agent, kind: .tamper, decision: .rejected,
                                  rule: .sessionChannel, detail: detail))
    }

    private func readLoop() {
        while true {
            guard var message = SocketChannel.receive(serverEnd.raw, capacity: 4096) else {
                // End of file, an error, or an empty message: only the first two end the session (an
                // agent's empty packet ended it, and the agent was told nothing).
                if SocketChannel.peerIsThere(serverEnd.raw) { continue }
                break
            }
            // No reply channel: nothing to answer on.
            guard let reply = message.descriptor.take() else { continue }
            // `proctor experiment` passes a Unix socket. Anything else the agent passed goes unanswered,
            // closed at once (`receive` made its close abortive: a TCP socket with unsent data and an
            // hour's SO_LINGER held the loop, past --iterations and Ctrl-C).
            guard SessionServer.isUnixSocket(reply.raw) else {
                refused("a request whose reply channel is not a Unix socket")
                continue
            }
            handle(String(decoding: message.bytes, as: UTF8.self), reply: reply, sender: message.senderPID)
        }
        shutdown()
    }

    /// Connections to the mounted socket: one request each, answered on the connection itself.
    private func acceptLoop() {
        while true {
            let accepted = accept(listener.raw, nil, nil)
            if accepted < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE { continue }
                break
            }
            let connection = OwnedDescriptor(accepted)
            _ = fcntl(connection.raw, F_SETFD, FD_CLOEXEC)  // proctor never execs, but the launcher is spawned
            // A client that connects and says nothing must not hold this thread (`proctor experiment`
            // sends its request as it connects; 18 silent ones at 5 s each held a real one 92 s).
            var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
            setsockopt(connection.raw, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let sender = SocketChannel.peer(connection.raw)
            guard let message = SocketChannel.receive(connection.raw, capacity: 4096) else { continue }
            handle(String(decoding: message.bytes, as: UTF8.self), reply: connection, sender: sender)
        }
    }

    /// One request: refused while another experiment or analysis runs, else handed to the loop.
    private func handle(_ text: String, reply: consuming OwnedDescriptor, sender: pid_t?) {
        guard let request = SessionProtocol.Request(text) else {
            refused("unknown request: \(Ledger.clean(text, limit: 200))")
            SessionServer.send(reply.raw, .init(accepted: false, message: "unknown request"))
            return
        }
        lock.lock()
        let together = sender.map { startedTogether.remove($0) != nil } ?? false
        // A request still waiting for the loop whose client has gone (timed out, killed) holds the
        // place of none: dropped here too, or every new one was refused until the loop looked.
        if let waiting = pending.take() {
            if SocketChannel.peerIsThere(waiting.reply.raw) {
                pending = consume waiting
            } else {
                busy = false
                _ = consume waiting
            }
        }
        if busy || pending != nil || closed || together {
            let message = closed ? "refused: the session is over" : "refused: another experiment is running; one at a time"
            lock.unlock()
            SessionServer.send(reply.raw, .init(accepted: false, message: message))
            return
        }
        busy = true
        startedTogether = []
        pending = SessionRequest(request: request, reply: reply, sender: sender)
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
        _ = SocketChannel.send(fd, [UInt8](data), flags: Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
    }

    /// Whether `fd` is a Unix-domain socket (whose close never lingers).
    static func isUnixSocket(_ fd: Int32) -> Bool {
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && domain == AF_UNIX
    }

    /// The agent's sandbox is gone: the reader sees end of file once no copy of its end is left.
    func closeAgentEnd() {
        agentEndOwner = nil
    }
}
