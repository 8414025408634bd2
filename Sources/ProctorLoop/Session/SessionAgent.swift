import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

/// An `Agent` whose proposals are the session agent's `proctor experiment` requests: the working
/// tree as the agent left it is the proposal.
final class SessionAgent: Agent, @unchecked Sendable {
    let server: SessionServer
    /// The agent's sandbox, owned by the run: frozen while its experiment is validated, run and committed.
    let sandbox: FreezableSandbox
    /// Where the running experiment's verdict goes.
    private var current: OwnedDescriptor?
    /// The loop's work while the agent works: the analyses another terminal queued.
    var idle: (() -> Void)?
    /// The agent's output and where iteration `i`'s transcript goes (nil on a terminal).
    var output: SessionTranscript?
    var transcriptFor: ((Int) -> String)?
    /// Runs a session agent's `proctor analyze` between experiments (on the loop's thread, which
    /// holds the run's locks); nil refuses them.
    var analyze: (([String]) -> SessionProtocol.Reply)?

    init(server: SessionServer, sandbox: FreezableSandbox) {
        self.server = server
        self.sandbox = sandbox
    }

    func propose(_ context: AgentContext) throws -> Proposal {
        // Analyses are answered here, one at a time, until the agent asks for an experiment.
        var next = server.next(idle: idle)
        while let request = next.take() {
            guard case .analysis(let command) = request.request else {
                if let proposal = try freeze(for: request, context) { return proposal }
                if sandbox.stop.requested { throw SessionEnded() }
                next = server.next(idle: idle)
                continue
            }
            server.finish(request.reply, analyze?(command) ?? .init(accepted: false, message: "refused: this supervisor runs no analyses"))
            if sandbox.stop.requested { throw SessionEnded() }
            next = server.next(idle: idle)
        }
        throw SessionEnded()
    }

    /// The agent keeps running while its experiment is validated, run and committed: freeze it, or
    /// it could swap in code that was never validated and put the honest bytes back in time.
    /// Nil when the request's client went away before the freeze: nothing is run for it.
    private func freeze(for request: consuming SessionRequest, _ context: AgentContext) throws -> Proposal? {
        guard case .experiment(let requested) = request.request else { preconditionFailure("an experiment") }
        let sender = request.sender
        current = .some(request.reply)
        // A short settle first, while the reader thread refuses every other request: a second
        // `proctor experiment` started together with this one is refused, not frozen mid-start and
        // run afterwards. A window, not an ordering: what no descriptor can tell is whether a
        // process the agent has not forked yet is part of "together". (What changes during the
        // settle is what gets validated and measured.)
        usleep(300_000)
        guard sandbox.freeze() else {
            sandbox.thaw()
            throw AgentError.failed(reason: "the session agent could not be frozen for its experiment")
        }
        // One that was still starting after the settle (a loaded machine) is frozen before it could
        // ask: it is refused when it asks after the thaw, not run as the next experiment.
        server.refuseOnce(sandbox.frozenProcesses.subtracting(sender.map { [$0] } ?? []))
        // Its client killed during the settle, or gone with the agent: nobody waits for this
        // experiment, and it must not run (a red team had 32 of 54 such run, some kept). Frozen
        // now, the agent cannot ask again meanwhile; it is thawed and the loop waits on.
        if let raw = current?.raw, !SocketChannel.peerIsThere(raw) {
            sandbox.thaw()
            server.refuseOnce([])
            if let gone = current.take() { server.finish(gone, .init(accepted: false, message: "refused: its client is gone")) }
            return nil
        }
        // What it prints from now on belongs to its next experiment.
        if let output, let path = transcriptFor?(context.iteration + 1) { output.switchTo(path) }
        let description = requested.trimmingCharacters(in: .whitespacesAndNewlines)
        return Proposal(description: description.isEmpty ? "session experiment" : description)
    }

    /// Called by the loop with the iteration's outcome; the agent reads the reason's `agentText`.
    func finished(iteration: Int, status: IterationStatus, score: Double?, best: Double, reason: FailureReason?,
                  nudges: [String] = []) {
        sandbox.thaw()
        guard let reply = current.take() else { return }
        let reason = reason?.agentText
        // The human's nudges ride on the verdict (and stay in /run/proctor/memory/nudges.md).
        let told = nudges.isEmpty ? "" : "\nfrom the human supervising this run:\n" + nudges.map { "- " + $0 }.joined(separator: "\n")
        let message = "iteration \(iteration): \(status.rawValue)" + (score.map { " score \(format($0))" } ?? "")
            + " (best \(format(best)))" + (reason.map { ": \($0)" } ?? "") + told
        server.finish(reply, .init(accepted: true, message: message, iteration: iteration, status: status.rawValue,
                                   score: score, best: best.isNaN ? nil : best))
    }
}

/// The session's agent exited: the loop ends cleanly.
struct SessionEnded: Error {}
