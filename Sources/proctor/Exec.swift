import ArgumentParser
import Foundation
import ProctorLoop
import ProctorSandbox

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run one command under the workspace's sandbox policy.",
        discussion: """
            Exit status as timeout(1) and docker run: the command's own; 128+N when signal N killed it; \
            124 on the wall-clock limit; 125 when proctor failed (bad policy, sandbox not set up); \
            126 when the command cannot be executed; 127 when it is not found.
            """)

    @OptionGroup var options: WorkspaceOptions

    @Option(help: "Which view of the workspace the command gets: experiment, evaluator or agent.")
    var phase: Phase = .experiment

    @Option(name: .customLong("audit-log"), help: "Where audit lines go (default: WORKSPACE/.proctor/audit.jsonl).")
    var auditLog: String?

    @Option(help: "PROCTOR_SEED for the command (default: the first of [experiment].seeds).")
    var seed: UInt64?

    @Flag(help: "Wait for the experiment lock instead of failing when another run holds it.")
    var wait = false

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command to run after --, e.g. proctor exec -- python3 train.py") }
    }

    func run() throws {
        let status = exitOn125 {
            try ExecStep.run(workspace: options.workspace, phase: phase, command: command, auditLog: auditLog,
                             seed: seed, wait: wait)
        }
        throw ExitCode(status)
    }
}

extension Phase: ExpressibleByArgument {}

/// Runs `body`; a thrown error is proctor's own failure: one line on stderr and status 125.
func exitOn125(_ body: () throws -> Int32) -> Int32 {
    do { return try body() } catch {
        FileHandle.standardError.write(Data("proctor: \(error)\n".utf8))
        return 125
    }
}
