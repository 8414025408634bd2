import ArgumentParser
import Foundation
import ProctorConfig
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

    @Option(parsing: .unconditional, help: "PROCTOR_SEED for the command (default: the first of [experiment].seeds).")
    var seed: UInt64?

    @Flag(help: "Wait for the experiment lock instead of failing when another run holds it.")
    var wait = false

    @Option(help: "Wall-clock limit overriding the phase's configured one, e.g. 2s or 5m.")
    var timeout: String?

    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command to run after --, e.g. proctor exec -- python3 train.py") }
        if let timeout, Units.budget(timeout) == nil {
            throw ValidationError("--timeout: expected a positive duration up to a year (\"8760h\") such as \"500ms\", \"30s\", \"5m\" or \"1h\", got \"\(timeout)\"")
        }
    }

    var arguments: ExecArguments {
        ExecArguments(workspace: options.workspace, phase: phase, auditLog: auditLog, seed: seed, wait: wait,
                      timeoutMs: timeout.flatMap(Units.milliseconds), command: command)
    }

    func run() throws {
        throw ExitCode(arguments.run())
    }
}

extension Phase: ExpressibleByArgument {}

/// What `proctor exec` was asked to do, however its command line was parsed.
struct ExecArguments: Equatable {
    var workspace = "."
    var phase: Phase = .experiment
    var auditLog: String?
    var seed: UInt64?
    var wait = false
    var timeoutMs: Int64?
    var command: [String] = []

    /// Runs the command; returns the status `proctor exec` exits with.
    func run() -> Int32 {
        statusOrFailure {
            try ExecStep.run(workspace: workspace, phase: phase, command: command, auditLog: auditLog, seed: seed,
                             wait: wait, timeoutMs: timeoutMs)
        }
    }

    /// `proctor exec` in its plain spelling, parsed without ArgumentParser: `exec`, then each of
    /// `--workspace DIR`, `--phase PHASE`, `--audit-log FILE`, `--seed N`, `--timeout D` and `--wait` at most once,
    /// then `--` and a non-empty command. Building ArgumentParser's model of the command tree costs
    /// about 15 M instructions (half of `proctor exec`'s own start-up), mostly Swift runtime
    /// type-metadata and conformance look-ups, for a command line this simple.
    ///
    /// Anything else (help, `--option=value`, a repeated or unknown option, a value that is empty or
    /// starts with `-`, a bad phase or seed, no command) returns nil: ArgumentParser then parses
    /// it, with its own errors. Where this returns a value, ArgumentParser would have produced the
    /// same one (CLITests checks both on the same command lines).
    static func fastParse(_ args: ArraySlice<String>) -> ExecArguments? {
        guard args.first == "exec" else { return nil }
        var result = ExecArguments()
        var seen: Set<String> = []
        var rest = args.dropFirst()
        while let option = rest.first {
            rest = rest.dropFirst()
            if option == "--" {
                guard !rest.isEmpty else { return nil }
                result.command = Array(rest)
                return result
            }
            guard !seen.contains(option) else { return nil }
            seen.insert(option)
            if option == "--wait" {
                result.wait = true
                continue
            }
            guard let value = rest.first, !value.isEmpty, !value.hasPrefix("-") else { return nil }
            rest = rest.dropFirst()
            switch option {
            case "--workspace": result.workspace = value
            case "--audit-log": result.auditLog = value
            case "--phase":
                guard let phase = Phase(rawValue: value) else { return nil }
                result.phase = phase
            case "--seed":
                guard let seed = UInt64(value) else { return nil }
                result.seed = seed
            case "--timeout":
                guard let ms = Units.budget(value) else { return nil }
                result.timeoutMs = ms
            default: return nil
            }
        }
        return nil
    }
}

/// Runs `body`; a thrown error is proctor's own failure: one line on stderr and its status (125).
func statusOrFailure(_ body: () throws -> Int32) -> Int32 {
    do { return try body() } catch {
        Console.err("proctor: \(terminalLine(describe(error)))\n")
        return ExitStatus.of(error, failed: ExitStatus.badInput)
    }
}
