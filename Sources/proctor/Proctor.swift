import ArgumentParser

/// `proctor`: supervise an untrusted research agent. Argument parsing only; the work is in the libraries.
@main
struct Proctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an untrusted AI research agent safely: sandboxed steps, a locked evaluator, git keep/revert.",
        subcommands: [Exec.self])
}

/// Options every workspace command shares.
struct WorkspaceOptions: ParsableArguments {
    @Option(name: .long, help: "The workspace directory (holding proctor.toml).")
    var workspace: String = "."
}
