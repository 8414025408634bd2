import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

extension Runner {
    /// Starts the session agent in the agent sandbox on a background thread, with the session
    /// channel inherited and `proctor` itself mounted read-only so `proctor experiment` works inside.
    func startSession(_ command: [String]) throws {
        let server = try SessionServer(audit: audit, run: state.run)
        // The agent's sandbox is the run's: stopped with it, or alone when the loop is over.
        let sandbox = FreezableSandbox(stop: try StopSwitch(parent: stop))
        sessionSandbox = sandbox
        let sessionAgent = SessionAgent(server: server, sandbox: sandbox)
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
            throw LoopError(.failed, "session: \(error)")
        }
        var sessionEnv = self.env
        sessionEnv.stop = sandbox.stop
        let env = sessionEnv
        let audit = self.audit
        let outcome = sessionOutcome
        let context = AuditContext(run: state.run, iteration: nil, config: config)
        // `proctor` first, then the PATH the agent would have had (`[agent] env` passes it), so a
        // CLI installed in ~/.local/bin and made visible with `[agent] read_only` is still found.
        let inherited = config.agent.env.contains("PATH") ? ProcessInfo.processInfo.environment["PATH"] : nil
        let path = "/run/proctor/bin:" + (inherited.flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/local/bin:/usr/bin:/bin")
        // What the agent prints between two experiments goes to the next iteration's transcript.
        let output = SessionTranscript()
        let root = self.root
        if let output {
            output.switchTo(root + "/.proctor/" + transcriptPath(state.nextIteration))
            (agent as? SessionAgent)?.output = output
            (agent as? SessionAgent)?.transcriptFor = { [run = state.run] i in root + "/.proctor/logs/\(run)/\(i)-agent.log" }
        } else {
            progress.line("session: the agent writes to your terminal; its output is kept in .proctor/logs only when proctor's output is redirected")
        }
        let done = DispatchSemaphore(value: 0)
        sessionDone = done
        // The terminal's settings as the user left them: the agent may change them (`stty -isig
        // -echo`, as every full-screen agent does), and they were left so after proctor exited.
        var terminal = termios()
        let onTerminal = isatty(0) == 1 && tcgetattr(0, &terminal) == 0
        let saved = terminal
        let thread = Thread {
            defer {
                // Only from the foreground: a background proctor would be stopped by SIGTTOU.
                if onTerminal && tcgetpgrp(0) == getpgrp() { var settings = saved; _ = tcsetattr(0, TCSANOW, &settings) }
                done.signal()
            }
            // The user's terminal is the agent's stdin: a session agent is interactive (Claude Code's
            // prompt). It still has no controlling terminal, and TIOCSTI/TIOCLINUX are denied.
            let result = Result {
                try env.launch(phase: .agent, command: command, seed: nil, agentHome: home, audit: audit,
                               context: context, stdin: 0, stdout: output?.childEnd ?? 1, stderr: output?.childEnd ?? 2,
                               started: sandbox.started) { request in
                    request.extraReadOnly += mounts + [(server.socketPath, SessionProtocol.socketPath)]
                    if let memory = Transcript.memorySource(root) { request.extraReadOnly.append((memory, Transcript.memoryMount)) }
                    request.extraEnvironment += [(SessionProtocol.environmentName, String(server.agentEnd)),
                                                 ("PATH", path)]
                    request.passDescriptors = [server.agentEnd]
                    request.frozenAtTimes = true
                    // Run as root, the agent's user connects to the socket (a 0600 file of root's) as its owner.
                    request.mapOwner.append(server.socketPath)
                }
            }
            // Whether the run had stopped it, read before anything tells the loop the agent is gone:
            // read later, the loop's own stop after an agent killed for its cap made a failure exit 0.
            let stoppedByRun = sandbox.stop.requested
            sandbox.ended()
            output?.finish()
            server.closeAgentEnd()
            server.removeSocket()
            FileTree.removeDirectory(home)
            // Stopped by the run (its iterations done, Ctrl-C) or ended by its own time budget, the
            // night went as configured; an agent that failed (a bad flag, a missing key, a crash, its
            // memory limit) makes the session exit 1, so a script notices.
            let reason: String, failed: Bool
            switch result {
            case .success(let ended):
                reason = ended.reason
                failed = !ended.timedOut && (ended.status != 0 || ended.signal != nil)
            case .failure(let error):
                (reason, failed) = ("could not start: \(error)", true)
            }
            if failed && !stoppedByRun { outcome.failed(reason) }
            // Stopped by the run, it did not fail: said as such, not in a failure's words.
            Console.err(stoppedByRun ? "proctor: the session agent was stopped (the run is over)\n"
                                     : "proctor: the session agent exited (\(reason))\n")
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
        sessionSandbox?.stop.request()
        _ = done.wait(timeout: .now() + .seconds(10))
        sessionDone = nil
    }
}

/// How the session agent ended, set by the thread that ran it: why it failed, nil while it has not
/// (or when it ended because the run stopped it).
final class SessionOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?

    func failed(_ reason: String) { lock.withLock { self.reason = reason } }
    var failure: String? { lock.withLock { reason } }
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
