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

/// An `Agent` whose proposals are the session agent's `proctor experiment` requests: the working
/// tree as the agent left it is the proposal.
final class SessionAgent: Agent, @unchecked Sendable {
    let server: SessionServer
    private var current: Int32 = -1
    /// The loop's work while the agent works: the analyses another terminal queued.
    var idle: (() -> Void)?
    /// The agent's output and where iteration `i`'s transcript goes (nil on a terminal).
    var output: SessionTranscript?
    var transcriptFor: ((Int) -> String)?
    /// Runs a session agent's `proctor analyze` between experiments (on the loop's thread, which
    /// holds the run's locks); nil refuses them.
    var analyze: (([String]) -> SessionProtocol.Reply)?

    init(server: SessionServer) {
        self.server = server
    }

    func propose(_ context: AgentContext) throws -> Proposal {
        var next = server.next(idle: idle)
        // Analyses are answered here, one at a time, until the agent asks for an experiment.
        while case .analysis(let command)? = next?.request, let reply = next?.reply {
            server.finish(reply, analyze?(command) ?? .init(accepted: false, message: "refused: this supervisor runs no analyses"))
            if Interrupt.requested { throw SessionEnded() }
            next = server.next(idle: idle)
        }
        guard let request = next, case .experiment(let requested) = request.request else { throw SessionEnded() }
        current = request.reply
        // The agent keeps running while its experiment is validated, run and committed: freeze it,
        // or it could swap in code that was never validated and put the honest bytes back in time.
        // A short settle first, while the reader thread refuses every other request: a second
        // `proctor experiment` started together with this one is refused, not frozen mid-start and
        // run afterwards. (What changes during the settle is what gets validated and measured.)
        usleep(300_000)
        guard ActiveSandbox.freezeSession() else {
            ActiveSandbox.thawSession()
            throw AgentError.failed(reason: "the session agent could not be frozen for its experiment")
        }
        // What it prints from now on belongs to its next experiment.
        if let output, let path = transcriptFor?(context.iteration + 1) { output.switchTo(path) }
        let description = requested.trimmingCharacters(in: .whitespacesAndNewlines)
        return Proposal(description: description.isEmpty ? "session experiment" : description)
    }

    /// Called by the loop with the iteration's outcome; the agent reads the reason's `agentText`.
    func finished(iteration: Int, status: IterationStatus, score: Double?, best: Double, reason: FailureReason?,
                  nudges: [String] = []) {
        ActiveSandbox.thawSession()
        guard current >= 0 else { return }
        let reason = reason?.agentText
        // The human's nudges ride on the verdict (and stay in /run/proctor/memory/nudges.md).
        let told = nudges.isEmpty ? "" : "\nfrom the human supervising this run:\n" + nudges.map { "- " + $0 }.joined(separator: "\n")
        let message = "iteration \(iteration): \(status.rawValue)" + (score.map { " score \(format($0))" } ?? "")
            + " (best \(format(best)))" + (reason.map { ": \($0)" } ?? "") + told
        server.finish(current, .init(accepted: true, message: message, iteration: iteration, status: status.rawValue,
                                     score: score, best: best.isNaN ? nil : best))
        current = -1
    }
}

/// The session's agent exited: the loop ends cleanly.
struct SessionEnded: Error {}

extension Runner {
    /// Starts the session agent in the agent sandbox on a background thread, with the session
    /// channel inherited and `proctor` itself mounted read-only so `proctor experiment` works inside.
    func startSession(_ command: [String]) throws {
        let server = try SessionServer()
        let sessionAgent = SessionAgent(server: server)
        let (analysisEnv, analysisAudit, run) = (self.env, self.audit, state.run)
        sessionAgent.analyze = {
            AnalysisStore(root: analysisEnv.config.root).sessionReply($0, env: analysisEnv, audit: analysisAudit, run: run)
        }
        sessionAgent.idle = {
            _ = AnalysisQueue(root: analysisEnv.config.root).runPending(env: analysisEnv, audit: analysisAudit, run: run, iteration: nil)
        }
        agent = sessionAgent
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let mounts: [(String, String)] = [(exe, "/run/proctor/bin/proctor")]
            + SessionRuntime.libraryDirectories().map { ($0, $0) }
        let home = try CommandAgent.makeHome()
        do {
            try CommandAgent.populate(home: home, config: config)
        } catch {
            FileTree.removeDirectory(home)
            throw RunError("session: \(error)")
        }
        let env = self.env
        let audit = self.audit
        let context = AuditContext(run: state.run, iteration: nil, config: config)
        // `proctor` first, then the PATH the agent would have had (`[agent] env` passes it), so a
        // CLI installed in ~/.local/bin and made visible with `[agent] read_only` is still found.
        let inherited = config.agent.env.contains("PATH") ? ProcessInfo.processInfo.environment["PATH"] : nil
        let path = "/run/proctor/bin:" + (inherited.flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/local/bin:/usr/bin:/bin")
        // What the agent prints between two experiments goes to the next iteration's transcript.
        let output = SessionTranscript()
        let root = self.root
        if let output {
            output.switchTo(root + "/.proctor/" + transcriptPath(state.lastIteration + 1))
            (agent as? SessionAgent)?.output = output
            (agent as? SessionAgent)?.transcriptFor = { [run = state.run] i in root + "/.proctor/logs/\(run)/\(i)-agent.log" }
        } else {
            progress.line("session: the agent writes to your terminal; its output is kept in .proctor/logs only when proctor's output is redirected")
        }
        let done = DispatchSemaphore(value: 0)
        sessionDone = done
        let thread = Thread {
            defer { done.signal() }
            // The user's terminal is the agent's stdin: a session agent is interactive (Claude Code's
            // prompt). It still has no controlling terminal, and TIOCSTI/TIOCLINUX are denied.
            let result = try? env.launch(phase: .agent, command: command, seed: nil, agentHome: home, audit: audit,
                                         context: context, stdin: 0, stdout: output?.childEnd ?? 1, stderr: output?.childEnd ?? 2,
                                         started: { ActiveSandbox.sessionPid = $0 }) { request in
                request.extraReadOnly += mounts + [(server.socketPath, SessionProtocol.socketPath)]
                if let memory = Transcript.memorySource(root) { request.extraReadOnly.append((memory, Transcript.memoryMount)) }
                request.extraEnvironment += [(SessionProtocol.environmentName, String(server.agentEnd)),
                                             ("PATH", path)]
                request.passDescriptors = [server.agentEnd]
            }
            ActiveSandbox.sessionPid = 0
            output?.finish()
            server.closeAgentEnd()
            server.removeSocket()
            FileTree.removeDirectory(home)
            FileHandle.standardError.write(Data("proctor: the session agent exited (\(result?.reason ?? "launch failed"))\n".utf8))
            server.shutdown()
        }
        thread.start()
        progress.line("session: agent started; it runs experiments with `proctor experiment \"description\"`")
    }
}

extension Runner {
    /// The loop is over (iterations done, interrupted, or the agent gone): stop the agent and wait
    /// for its sandbox to be torn down, its private home and its socket removed.
    func stopSession() {
        guard let done = sessionDone else { return }
        ActiveSandbox.stopSession()
        _ = done.wait(timeout: .now() + .seconds(10))
        sessionDone = nil
    }
}

/// Where the running proctor's shared libraries live (the Swift runtime outside the system dirs).
enum SessionRuntime {
    static func libraryDirectories() -> [String] {
        guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) else { return [] }
        var dirs: [String] = []
        for line in maps.split(separator: "\n") {
            guard let slash = line.firstIndex(of: "/") else { continue }
            let path = String(line[slash...])
            guard path.hasSuffix(".so") || path.contains(".so.") else { continue }
            let dir = (path as NSString).deletingLastPathComponent
            let system = ["/usr/", "/lib/", "/lib64/", "/lib32/"].contains { dir.hasPrefix($0) || dir + "/" == $0 }
            if !system && !dirs.contains(dir) { dirs.append(dir) }
        }
        return dirs
    }
}
