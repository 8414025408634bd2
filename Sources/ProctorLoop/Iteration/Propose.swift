import Foundation
import ProctorAgents

extension Iteration {
    /// 2. Propose: the agent edits the working tree (mutate, http, command or session agent).
    func propose() throws -> IterationEnd? {
        runner.progress.phase(number, "agent", budgetMs: runner.config.agent.timeoutMs)
        _ = runner.meter.take()
        do {
            // What the human said and the analyses run since the last proposal (queued ones run now).
            let steering = Steering.beforeProposal(env: runner.env, audit: runner.audit, run: runner.state.run, iteration: nil,
                                                   handed: &runner.steeringHanded)
            self.steering = steering
            shown = runner.agentMemory(number)
            shown.nudges = steering.nudges.map(\.text)
            if !steering.analysisSummaries.isEmpty { shown.analyses = [steering.analysisSummaries] }
            proposal = try runner.agent.propose(runner.agentContext(number, memory: shown))
            // A session agent asks when it is ready, long after the steering above was gathered: the
            // nudges given meanwhile ride on this experiment's verdict and record, not the next one's.
            if runner.agent is SessionAgent, var steering = self.steering {
                steering.nudges = NudgeQueue(root: runner.root).pending()
                self.steering = steering
                shown.nudges = steering.nudges.map(\.text)
            }
        } catch is SessionEnded {
            return .agentEnded
        } catch let ended as AgentEnded {
            runner.progress.line("the agent has nothing left to propose (\(ended.reason)): the run ends")
            return .agentEnded
        } catch let error as AgentError {
            if runner.stop.requested { return .abandoned }
            switch error {
            case .rejected(let reason, let paths):
                // A line per path, up to a thousand; one more counts the rest (the answer is one
                // rejected proposal, not a write each: 80,000 paths must not be 80,000 lines).
                let most = 1000
                var lines = (paths.isEmpty ? [nil] : paths.prefix(most).map { Optional($0) }).map {
                    rejection(phase: .agent, kind: .diff, path: $0, rule: .agentProposal, detail: reason)
                }
                if paths.count > most {
                    lines.append(rejection(phase: .agent, kind: .diff, rule: .agentProposal,
                                           detail: "and \(paths.count - most) more forbidden paths in the same answer"))
                }
                return ends(.rejected, reason: .agentRejected(reason), description: "agent proposal rejected", usage: runner.meter.take(),
                            violations: [reason], audit: lines)
            case .failed(let reason):
                runner.agentFailures += 1
                runner.lastAgentFailure = reason
                return ends(.crash, reason: .agentFailed(reason), description: "agent failed", usage: runner.meter.take())
            }
        }
        runner.agentFailures = 0
        // One line, as the ledger holds it: a session agent's description spanning lines would
        // otherwise put its own trailer paragraph (`proctor-score: ...=0.999999`) in the kept
        // commit's message, a score no evaluator computed, and differ from the ledger's row.
        // Cut at the agent's limit: 300, but the search agent's is its memory, every knob's value
        // (cut at 300, a later knob would read back as its current value: a wrong history).
        proposal.description = Runner.oneLine(proposal.description, limit: runner.agent.descriptionLimit)
        if runner.stop.requested { return .abandoned }
        return nil
    }
}
