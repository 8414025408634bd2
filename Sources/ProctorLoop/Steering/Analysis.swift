import Foundation
import ProctorConfig
import ProctorSandbox

/// What `.proctor/analysis/<n>/meta.json` says about one analysis run.
public struct AnalysisRecord: Codable, Sendable, Equatable {
    /// 1, 2, 3... per workspace; the directory's name.
    public var number: Int
    public var command: [String]
    /// Who asked: `cli` (run at once under the lock), `queue` (run by the loop for a waiting
    /// `proctor analyze`), `session` (a session agent's `proctor analyze`).
    public var origin: String
    /// The run that held the lock (the loop's run id, or `analyze-...` for a direct run).
    public var run: String
    public var started: Date
    public var seconds: Double
    /// The status `proctor exec` would exit with: the command's, 124 on the time limit, 128+N, 125.
    public var status: Int32
    /// One line: "exit status 0", "wall-clock limit reached", the sandbox's failure.
    public var reason: String
    public var timedOut: Bool

    public init(number: Int, command: [String], origin: String, run: String, started: Date, seconds: Double,
                status: Int32, reason: String, timedOut: Bool) {
        self.number = number
        self.command = command
        self.origin = origin
        self.run = run
        self.started = started
        self.seconds = seconds
        self.status = status
        self.reason = reason
        self.timedOut = timedOut
    }
}

/// Analysis runs: a command in the experiment sandbox (editable, notes and locked files readable,
/// hidden files absent, the workspace read-only), with no score. Its
/// outputs go to a scratch directory of its own bound at the `[files].outputs` paths, never the
/// outputs the evaluator reads. What it leaves is kept, proctor-owned, under `.proctor/analysis/<n>/`
/// (no sandbox sees `.proctor/`):
/// - `output.log`: stdout and stderr together;
/// - `scratch/<output dir>/`: what it wrote to its outputs;
/// - `meta.json`: an `AnalysisRecord`.
///
/// Each analysis reaches the agent once through `pending()` / `summaries(_:)`, then
/// `markDelivered(upTo:)`, as nudges do (see `NudgeQueue`).
public struct AnalysisStore: Sendable {
    /// The workspace root.
    public let root: String

    public init(root: String) {
        self.root = root
    }

    public var directory: String { root + "/.proctor/analysis" }
    public var cursorPath: String { directory + "/delivered" }
    public func path(_ number: Int) -> String { directory + "/\(number)" }
    public func logPath(_ number: Int) -> String { path(number) + "/output.log" }
    public func scratchPath(_ number: Int) -> String { path(number) + "/scratch" }

    /// Lines and bytes of output a summary keeps (its end), and how many analyses one prompt shows.
    public static let summaryLines = 40
    public static let summaryBytes = 4096
    public static let summaryCount = 5

    /// A command as proctor takes it: non-empty, at most 256 arguments and 3 500 bytes in all (it
    /// must fit one session request), no NUL.
    public static func validate(_ command: [String]) throws -> [String] {
        guard let first = command.first, !first.isEmpty else {
            throw LoopError(.refused, "give the command to run after --, e.g. proctor analyze -- python3 -c 'import train'")
        }
        guard command.count <= 256, command.reduce(0, { $0 + $1.utf8.count + 1 }) <= 3500 else {
            throw LoopError(.refused, "the analysis command is too long (at most 256 arguments, 3500 bytes)")
        }
        guard !command.contains(where: { $0.utf8.contains(0) }) else {
            throw LoopError(.refused, "the analysis command holds a NUL byte")
        }
        return command
    }

    /// Runs `command` now, in the experiment sandbox. The caller holds the workspace and machine
    /// locks (the loop between iterations, or `AnalyzeStep` after `takeLocks`). A sandbox that
    /// cannot be set up is recorded with status 125 and its reason; only a failure to make the
    /// analysis directory throws.
    public func run(command: [String], env: SandboxEnvironment, audit: AuditLog?, run: String, iteration: Int?,
                    origin: String) throws -> AnalysisRecord {
        let command = try AnalysisStore.validate(command)
        let number = try allocate()
        let started = Date()
        var record = AnalysisRecord(number: number, command: command, origin: origin, run: run, started: started,
                                    seconds: 0, status: 125, reason: "", timedOut: false)
        do {
            let scratch = scratchPath(number)
            for dir in env.config.files.outputs {
                try FileManager.default.createDirectory(atPath: scratch + "/" + dir, withIntermediateDirectories: true)
            }
            let log = open(logPath(number), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard log >= 0 else { throw LoopError.io(errno, "open \(logPath(number))") }
            defer { close(log) }
            let result = try env.launch(phase: .experiment, command: command, seed: env.config.experiment.seeds.first,
                                        audit: audit, context: AuditContext(run: run, iteration: iteration, config: env.config),
                                        stdout: log, stderr: log, adjust: { $0.analysisScratch = scratch })
            record.status = result.status
            record.reason = result.reason
            record.timedOut = result.timedOut
        } catch {
            record.reason = "proctor: \(error)"
        }
        record.seconds = Date().timeIntervalSince(started)
        try AtomicFile.write(JSONLines.encoder().encode(record), to: path(number) + "/meta.json")
        return record
    }

    /// The next number, claimed with `mkdir` (atomic against another proctor doing the same).
    private func allocate() throws -> Int {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var number = (numbers().last ?? 0) + 1
        while mkdir(path(number), 0o700) != 0 {
            guard errno == EEXIST else { throw LoopError.io(errno, "mkdir \(path(number))") }
            number += 1
        }
        return number
    }

    /// The analyses' numbers; a folder named past a billion (made by hand) is not one, as the next
    /// number would overflow.
    private func numbers() -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap(Int.init).filter { (1...1_000_000_000).contains($0) }.sorted()
    }

    /// The record of analysis `number`, once finished.
    public func record(_ number: Int) -> AnalysisRecord? {
        guard let data = FileManager.default.contents(atPath: path(number) + "/meta.json") else { return nil }
        return try? JSONLines.decoder().decode(AnalysisRecord.self, from: data)
    }

    /// Every finished analysis, oldest first; with `after`, only those numbered above it (each
    /// record read only then: reading all of them for every prompt made thousands of old analyses
    /// cost each later iteration most of a second).
    public func records(after: Int = 0) -> [AnalysisRecord] { numbers().filter { $0 > after }.compactMap(record) }

    // MARK: Delivery to the agent

    /// The number of the last analysis the agent was shown (0: none).
    public var delivered: Int {
        guard let data = FileManager.default.contents(atPath: cursorPath),
            let cursor = try? JSONLines.decoder().decode(Cursor.self, from: data)
        else { return 0 }
        return cursor.delivered
    }

    private struct Cursor: Codable { var delivered: Int }

    /// Finished analyses the agent has not been shown, oldest first.
    public func pending() -> [AnalysisRecord] {
        records(after: delivered)
    }

    /// After the iteration whose prompt showed them is recorded. Never moves back.
    public func markDelivered(upTo number: Int) throws {
        guard number > delivered else { return }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try AtomicFile.write(JSONLines.encoder().encode(Cursor(delivered: number)), to: cursorPath)
    }

    /// Finished analyses numbered above `since`, as one prompt section (empty for none): the last
    /// `summaryCount` of them with `summary(of:)`, a line for the ones left out. Bounded: at most
    /// about `summaryCount` × (`summaryBytes` + 600) bytes.
    public func summaries(since: Int) -> String {
        let fresh = records(after: since)
        guard !fresh.isEmpty else { return "" }
        let shown = fresh.suffix(AnalysisStore.summaryCount)
        var text = "Analysis runs since your last proposal (no score; outputs kept by the supervisor):\n"
        if fresh.count > shown.count { text += "(\(fresh.count - shown.count) earlier analyses not shown)\n" }
        for record in shown { text += summary(of: record) + "\n" }
        return text
    }

    /// One analysis for a prompt: the command, how it ended, the end of its output (at most
    /// `summaryLines` lines and `summaryBytes` bytes), control characters shown as `\xNN`.
    public func summary(of record: AnalysisRecord) -> String {
        // One line: the command's own line breaks shown as `\x0a` (a line of it read as the prompt's).
        var command = record.command.map(AnalysisStore.shellQuoted).joined(separator: " ").displayEscaped(keeping: [])
        if command.unicodeScalars.count > 300 { command = command.prefix(scalars: 300) + "..." }
        let seconds = String(format: "%.1f", record.seconds)
        var text = "analysis #\(record.number): \(command)\nstatus \(record.status) (\(AnalysisStore.clean(String(record.reason.prefix(300))))), \(seconds) s\n"
        let tail = AnalysisStore.tail(of: logPath(record.number))
        // Fenced, as the near misses: unfenced, an output line `# From the human supervising this
        // run ...` read as the prompt's own section header (an agent's notes, `cat` by an analysis).
        text += tail.isEmpty ? "(no output)\n" : "last lines of its output:\n" + MemoryText.fenced(tail, info: "text")
        return text
    }

    /// The end of a file: its last `summaryBytes` bytes (from a line start where possible), then
    /// its last `summaryLines` lines, cleaned.
    static func tail(of path: String) -> String {
        guard let (end, size) = lastBytes(of: path, summaryBytes), !end.isEmpty else { return "" }
        var slice = end[...]
        if size > end.count, let newline = slice.firstIndex(of: 0x0A), newline + 1 < slice.endIndex { slice = slice[(newline + 1)...] }
        let lines = String(decoding: slice, as: UTF8.self).linesSplitAtLF()
        return clean(lines.suffix(summaryLines + (lines.last == "" ? 1 : 0)).joined(separator: "\n"))
    }

    /// The last `count` bytes of the regular file at `path` (no link followed) and its size; nil
    /// when it is not one or cannot be read.
    static func lastBytes(of path: String, _ count: Int) -> (bytes: [UInt8], size: Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int(st.st_size)
        var bytes = [UInt8](repeating: 0, count: min(size, count))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(size - $0.count)) }
        guard n >= 0 else { return nil }
        return (Array(bytes.prefix(n)), size)
    }

    /// Text with every control character but newline and tab shown as `\xNN` (`\uNNNN` above
    /// ASCII, line and paragraph separators and bidirectional controls included): what an analysis
    /// printed reaches prompts and terminals, where escape sequences and CRs would rewrite what is shown.
    public static func clean(_ text: String) -> String {
        text.displayEscaped()
    }

    static func shellQuoted(_ argument: String) -> String {
        let plain = !argument.isEmpty && argument.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || "-_./=:,+@%".unicodeScalars.contains($0)
        }
        return plain ? argument : "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
