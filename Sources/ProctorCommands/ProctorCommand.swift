import ArgumentParser
import Foundation
import ProctorSandbox

/// `proctor`: supervise an untrusted research agent. Argument parsing only; the work is in the
/// libraries. The executable (`Sources/proctor/main.swift`) calls `ProctorCommand.main()`; tests
/// import this library instead of linking an executable target.
public struct ProctorCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "proctor",
        abstract: "Run an untrusted AI research agent safely: sandboxed steps, a locked evaluator, git keep/revert.",
        subcommands: [Init.self, Run.self, Session.self, Experiment.self, Exec.self, Check.self, Audit.self, Report.self, Status.self,
                      NudgeCommand.self, AnalyzeCommand.self])

    /// Like `ParsableCommand.main()`, except that bad input exits 125 (the contract's "proctor itself
    /// failed"), not 64, so that scripts can tell it from the command's own status.
    public init() {}

    public static func main() {
        // The hot path (`proctor exec` from scripts and benchmarks) skips ArgumentParser's start-up.
        if let exec = ExecArguments.fastParse(CommandLine.arguments.dropFirst()) {
            Foundation.exit(exec.run())
        }
        if let twice = repeatedOption(CommandLine.arguments.dropFirst()) {
            Console.err("proctor: \(terminalLine(twice)) is given twice; give each option once\n")
            Foundation.exit(ExitStatus.badInput)
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as CommandFailure {
            // The one place a failed command becomes its message and exit status.
            Console.err("proctor: \(terminalLine(failure.message))\n")
            Foundation.exit(failure.status)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                Console.err(fullMessage(for: error) + "\n")
                Foundation.exit(ExitStatus.badInput)
            }
            exit(withError: error)
        }
    }
}

/// The first option given twice before `--`, or nil. ArgumentParser keeps the last one silently: a
/// wrapper that appends its own `--iterations 500` overrode the user's `--iterations 5` unseen.
func repeatedOption(_ arguments: ArraySlice<String>) -> String? {
    var seen = Set<String>()
    for argument in arguments {
        if argument == "--" { break }
        guard argument.hasPrefix("--"), argument.count > 2 else { continue }
        let name = String(argument.prefix { $0 != "=" })
        if !seen.insert(name).inserted { return name }
    }
    return nil
}

/// Options every workspace command shares.
struct WorkspaceOptions: ParsableArguments {
    @Option(name: .long, help: "The workspace directory (holding proctor.toml).")
    var workspace: String = "."

    /// `--workspace "$WS"` with WS unset meant the current directory: a run in whatever workspace
    /// the shell happened to be in.
    func validate() throws {
        if workspace.isEmpty { throw ValidationError("--workspace is empty; name the workspace directory (\".\" for this one)") }
    }
}
