import ArgumentParser
import Foundation
import ProctorConfig
import ProctorLoop
import ProctorSandbox

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "The research loop: propose, validate, experiment, score with the locked evaluator, keep or revert.",
        discussion: "Ctrl-C abandons the current iteration cleanly; `proctor run --resume` continues later.")

    @OptionGroup var options: WorkspaceOptions

    @OptionGroup var loop: LoopOptions

    @Option(help: "Agent kind, overriding [agent].kind.")
    var agent: AgentKind?

    @Option(parsing: .unconditional, help: "Candidates measured at once, each in its own slot (overrides [experiment] parallel; default 1).")
    var parallel: Int?

    func validate() throws {
        try validateParallel(parallel)
    }

    func run() throws {
        var runOptions = loop.runOptions
        runOptions.parallel = parallel
        let summary = try driveLoop(workspace: options.workspace, options: runOptions, agent: agent?.rawValue, session: nil)
        let c = summary.counts
        print("""

            run \(summary.run)\(summary.interrupted ? " (interrupted; continue with --resume)" : "")
              kept \(c[.keep] ?? 0), discarded \(c[.discard] ?? 0), rejected \(c[.rejected] ?? 0), crashed \(c[.crash] ?? 0), timed out \(c[.timeout] ?? 0)
              best \(formatScore(summary.best)) vs baseline \(formatScore(summary.baseline)) at \(summary.bestCommit.prefix(12)) on branch \(summary.branch)
              ledger: \(summary.ledger)
              memory: \((summary.ledger as NSString).deletingLastPathComponent)/memory/ (learnings.md, near_misses.md, do_not_retry.md, LOG.md)
              audit:  proctor audit --workspace \(options.workspace)    report: proctor report --workspace \(options.workspace)
            """)
        if summary.interrupted { throw ExitCode(ExitStatus.interrupted) }
    }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Scaffold a research workspace from the bundled template, commit it and pin its locked files.")

    @Argument(help: "Directory to create (default: the current directory).")
    var dir: String = "."

    @Option(help: "Template: \"default\" (the bundled tabular workspace) or a directory holding a proctor.toml.")
    var template: String?

    @Flag(help: "Only re-pin the locked files of an existing workspace (after changing the evaluator on purpose).")
    var repin = false

    func run() throws {
        do {
            for line in try WorkspaceSteps.initialize(dir: dir, template: template, repin: repin) { print(line) }
        } catch {
            throw CommandFailure(error, failed: ExitStatus.badInput)
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the working tree against the contract (exit 0 ok, 1 violations).")

    @OptionGroup var options: WorkspaceOptions

    @Option(parsing: .unconditional, help: "Check for this many slots, as `proctor run --parallel N` (default: [experiment] parallel).")
    var parallel: Int?

    func validate() throws {
        try validateParallel(parallel)
    }

    func run() throws {
        let problems: [String]
        do { problems = try WorkspaceSteps.check(workspace: options.workspace, parallel: parallel) } catch { throw CommandFailure(error, failed: ExitStatus.badInput) }
        if problems.isEmpty {
            print("ok: the working tree follows the policy")
            return
        }
        for problem in problems { print("violation: \(terminalLine(problem))") }
        throw ExitCode(1)
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Lock holder, current iteration, best score.")

    @OptionGroup var options: WorkspaceOptions

    func run() throws {
        do { try Reports.status(workspace: options.workspace).forEach { print($0) } } catch { throw CommandFailure(error, failed: ExitStatus.badInput) }
    }
}

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "What was blocked, summarised.")

    @OptionGroup var options: WorkspaceOptions

    @Flag(help: "Print the summary as JSON.")
    var json = false

    @Option(name: .customLong("run"), help: "Only this run's records.")
    var runID: String?

    func run() throws {
        let summary: Reports.AuditSummary
        do {
            var grouped = Reports.summarize(try Reports.auditRecords(workspace: options.workspace, run: runID))
            grouped.network = try Reports.networkUse(workspace: options.workspace, run: runID)
            summary = grouped
        } catch {
            throw CommandFailure(error, failed: ExitStatus.badInput)
        }
        if json {
            let data = (try? JSONLines.encoder().encode(summary)) ?? Data()
            print(jsonDisplaySafe(String(decoding: data, as: UTF8.self)))
        } else {
            Reports.auditText(summary).forEach { print($0) }
        }
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an HTML report: the progress chart, cost per improvement, memory, audit, ledger.")

    @OptionGroup var options: WorkspaceOptions

    @Option(help: "Output file (default: WORKSPACE/.proctor/report.html; - for standard output).")
    var out: String?

    func run() throws {
        do {
            let html = try Reports.html(workspace: options.workspace)
            let gap = try Reports.sealedGap(workspace: options.workspace)
            // `--out -`: the page on stdout (a pipe to a browser or a file elsewhere), the sealed
            // gap's line on stderr so that it stays out of the page.
            if out == "-" {
                Console.out(html)
                if let gap { Console.err("sealed test set: \(gap)\n") }
                return
            }
            // `--out prepare.py` replaced the locked evaluator, `--out proctor.toml` the config (the
            // error came after the write).
            let path = try WorkspaceSteps.writablePath(out ?? options.workspace + "/.proctor/report.html", option: "--out",
                                                       workspace: options.workspace, kind: .report)
            // A link at the path is refused, not followed (nor replaced). The page is written beside
            // it and renamed over it: killed while writing, the report was left empty.
            var info = stat()
            if lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK {
                throw LoopError(.io, "--out: \(path) is a symbolic link; name the file itself")
            }
            do {
                try AtomicFile.write(Data(html.utf8), to: path)
            } catch let error as LoopError {
                // Named by the file asked for, not the temporary one beside it.
                throw LoopError.io(error.errno ?? EIO, "--out: \(error.description.hasPrefix("open ") ? "open" : "write") \(path)")
            }
            print("report: \(path)")
            if let gap { print("sealed test set: \(gap)") }
        } catch {
            throw CommandFailure(error, failed: ExitStatus.badInput)
        }
    }
}

/// What `proctor run` and `proctor session` share.
struct LoopOptions: ParsableArguments {
    // Unconditional: `--iterations -1` is a bad count, not a missing value followed by an option.
    @Option(parsing: .unconditional, help: "Iterations (session: experiments) after the baseline (default: until interrupted or the agent ends).")
    var iterations: Int?

    @Flag(help: "Continue the last run from its ledger and branch.")
    var resume = false

    @Flag(help: "Wait for the experiment lock instead of failing at once.")
    var wait = false

    @Option(help: "Where measurements run: local or slurm (overrides [executor] kind).")
    var executor: ExecutorSettings.Kind?

    @Flag(help: "With Slurm: cancel a job a killed run left queued or running, instead of waiting for it.")
    var cancelRunning = false

    func validate() throws {
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
    }

    var runOptions: RunOptions {
        var options = RunOptions(iterations: iterations, resume: resume, wait: wait)
        options.executor = executor
        options.cancelRunning = cancelRunning
        return options
    }
}

/// `--agent`: the agent kinds `proctor run` can be told to use instead of `[agent].kind`.
enum AgentKind: String, CaseIterable, ExpressibleByArgument {
    case mutate, search, http, command
}

/// `--parallel N` of `proctor run` and `proctor check`.
func validateParallel(_ parallel: Int?) throws {
    if let parallel, !(1...64).contains(parallel) { throw ValidationError("--parallel must be from 1 to 64") }
}

/// Runs the research loop (`proctor run`, or `proctor session` when `session` is the agent's command).
/// Exits 125 when nothing could start (bad configuration, no repository, the lock held, a dirty tree,
/// nothing to resume), 130 when interrupted, 1 when the run failed on the way.
func driveLoop(workspace: String, options: RunOptions, agent: String?, session: [String]?) throws -> RunSummary {
    let runner: Runner
    do {
        let env = try SandboxEnvironment.load(workspace: workspace)
        runner = try Runner(env: env, agentKind: agent, options: options, progress: Progress(total: options.iterations))
    } catch {
        throw CommandFailure(error, failed: ExitStatus.badInput)
    }
    runner.sessionCommand = session
    do {
        return try runner.run()
    } catch {
        throw CommandFailure(error, failed: ExitStatus.runFailed)
    }
}

/// A command that failed: `ProctorCommand.main` prints `proctor: <message>` on stderr and exits
/// with `status`.
struct CommandFailure: Error {
    var message: String
    var status: Int32

    init(_ error: Error, status: Int32) {
        message = describe(error)
        self.status = status
    }

    /// `error` with the status `ExitStatus.of` gives it where a plain failure exits `failed`.
    init(_ error: Error, failed: Int32) {
        self.init(error, status: ExitStatus.of(error, failed: failed))
    }
}

/// An error as proctor prints it: its description, but Foundation's file errors (`Error
/// Domain=NSCocoaErrorDomain Code=4 "..." UserInfo={...}`, several lines of it) as the path and the
/// system's reason.
func describe(_ error: Error) -> String {
    let ns = error as NSError
    guard ns.domain == NSCocoaErrorDomain else { return String(describing: error) }
    let path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    var reason = ns.localizedDescription
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        reason = String(cString: strerror(Int32(underlying.code)))
    }
    return path.map { "\($0): \(reason)" } ?? reason
}

/// `text` with control characters shown as `\xNN` (`\uNNNN` for C1 and the line/paragraph
/// separators), for the operator's terminal. Paths in violations and errors are names an agent
/// chose (a file it created in an editable directory while a session runs): raw, `ESC ] 0 ;`,
/// `ESC [ 2 J` and the like would retitle, clear or rewrite the operator's terminal.
func terminalSafe(_ text: String) -> String {
    text.displayEscaped()
}

/// `text` as one line for a terminal: `terminalSafe` with newlines and tabs escaped too. A message
/// that quotes a path (a violation, an error) is one line: a file named `x\nok: ...` printed a
/// line of proctor's own below it.
func terminalLine(_ text: String) -> String {
    text.displayEscaped(keeping: [])
}

/// JSON text with what `rewritesDisplay` names written as `\uXXXX` escapes (the encoder escapes
/// only C0 controls: a C1 CSI, U+009B, or a bidi override in an audited path would reach a
/// terminal that `proctor audit --json` is printed on raw). Same JSON value.
func jsonDisplaySafe(_ json: String) -> String {
    var out = ""
    for scalar in json.unicodeScalars {
        if scalar.value >= 0x80 && scalar.rewritesDisplay {
            for unit in String(scalar).utf16 { out += String(format: "\\u%04x", unit) }
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

func formatScore(_ value: Double) -> String {
    value.isNaN ? "-" : String(format: "%.6g", value)
}

struct Session: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session",
        abstract: "Start an agent (e.g. Claude Code) that drives the loop itself with `proctor experiment`.",
        discussion: """
            The agent runs in the agent sandbox: it may write only editable and notes files, never sees hidden \
            files, the ledger or the evaluator's data. Inside, `proctor experiment "what I changed"` asks this \
            supervisor to validate, run, score and keep or revert, one experiment at a time. The session ends \
            when the agent exits.
            """)

    @OptionGroup var options: WorkspaceOptions

    @OptionGroup var loop: LoopOptions

    @Argument(parsing: .postTerminator, help: "The agent command, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the agent command after --, e.g. proctor session -- claude") }
    }

    func run() throws {
        let summary = try driveLoop(workspace: options.workspace, options: loop.runOptions, agent: nil, session: command)
        print("session \(summary.run)\(summary.interrupted ? " (interrupted; continue with --resume)" : ""): kept \(summary.counts[.keep] ?? 0) of \(summary.counts.values.reduce(0, +)) experiments; best \(formatScore(summary.best)) vs baseline \(formatScore(summary.baseline)); ledger \(summary.ledger)")
        if summary.interrupted { throw ExitCode(ExitStatus.interrupted) }
        if summary.agentFailure != nil { throw ExitCode(ExitStatus.runFailed) }
    }
}

struct Experiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Inside a session: ask the supervisor to run one experiment on the current working tree.")

    @Argument(help: "One line saying what changed.")
    var description: String

    func run() throws {
        do {
            let reply = try SessionClient.request(description: description)
            print(reply.message)
            if !reply.accepted { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw CommandFailure(error, failed: ExitStatus.noSession)
        }
    }
}
