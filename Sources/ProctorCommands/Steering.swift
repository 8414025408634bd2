import ArgumentParser
import Foundation
import ProctorConfig
import ProctorLoop
import ProctorSandbox

struct NudgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nudge",
        abstract: "Steer a running agent: the text reaches it with its next proposal.",
        discussion: """
            Works from another terminal while `proctor run` or `proctor session` goes on, or before \
            `--resume`. Nudges queue in order (.proctor/nudges.jsonl); each reaches the agent once: in its \
            next prompt, or for a session in the answer to its next `proctor experiment`. They are recorded in \
            runs.jsonl, LOG.md and the report. At most 4096 bytes, text, newlines and tabs only. \
            Exit 125 when the workspace has no run.
            """)

    @OptionGroup var options: WorkspaceOptions

    @Argument(help: "What the agent should know, e.g. \"stop tuning the learning rate; try feature selection\".")
    var text: String

    func run() throws {
        let root = URL(fileURLWithPath: options.workspace).standardizedFileURL.path
        do {
            let nudge = try NudgeQueue(root: root).append(text)
            print("nudge #\(nudge.id) queued; the agent gets it with its next proposal")
        } catch {
            throw CommandFailure(error, failed: ExitStatus.badInput)
        }
    }
}

struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Run an analysis command in the experiment sandbox: no score, its output kept and shown to the agent.",
        discussion: """
            The command sees the workspace as an experiment does (read-only, hidden files absent), the notes included, and writes \
            its outputs to a scratch directory of its own, never the outputs the evaluator reads. Kept in \
            .proctor/analysis/N/: output.log, scratch/, meta.json; the agent gets a summary (the command, \
            its status, the end of its output) with its next proposal. When a run holds the workspace, the \
            analysis is queued and that run executes it before its next proposal; this command waits. \
            Inside a session it goes to the session's supervisor. Exit status: the command's (124 on its \
            time limit, 128+N when killed by signal N); 125 when proctor failed.
            """)

    @OptionGroup var options: WorkspaceOptions

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command to run after --, e.g. proctor analyze -- python3 inspect.py") }
        do { _ = try AnalysisStore.validate(command) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        if SessionClient.insideSession {
            let reply: SessionProtocol.Reply
            do { reply = try SessionClient.request(analysis: command) } catch { throw CommandFailure(error, failed: ExitStatus.badInput) }
            guard reply.accepted else { throw CommandFailure(LoopError(.refused, reply.message), failed: ExitStatus.badInput) }
            print(terminalSafe(reply.message), terminator: reply.message.endsWithLineFeed ? "" : "\n")
            throw ExitCode(reply.exitStatus ?? 0)
        }
        AnalyzeStep.installInterruptHandler()
        let outcome: AnalyzeStep.Outcome
        do {
            outcome = try AnalyzeStep.run(workspace: options.workspace, command: command) { line in
                Console.err("proctor: \(terminalSafe(line))\n")
            }
        } catch {
            throw CommandFailure(error, failed: ExitStatus.badInput)
        }
        print("analysis kept in \(outcome.path)")
        print(terminalSafe(outcome.summary), terminator: "")
        throw ExitCode(outcome.record.status)
    }
}
