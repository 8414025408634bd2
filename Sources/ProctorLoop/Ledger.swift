import Foundation
import ProctorConfig
import ProctorSandbox

/// How an iteration ended (the ledger's `status` column).
public enum IterationStatus: String, Codable, Sendable, CaseIterable {
    case keep, discard, crash, timeout, rejected
}

/// One row of `.proctor/results.tsv`.
public struct LedgerRow: Sendable, Equatable {
    public var iteration: Int
    public var commit: String
    public var score: Double?
    /// The sealed test set's score: kept rows only, and only with `[evaluator] sealed_command`.
    public var sealed: Double?
    public var status: IterationStatus
    public var seconds: Double
    public var peakMemMB: Int?
    /// The experiment's peak GPU memory over its seeds (NVML); empty without GPUs.
    public var peakGPUMemMB: Int?
    public var features: Int?
    public var trees: Int?
    public var description: String

    public static let header = ["iteration", "commit", "score", "sealed", "status", "seconds", "peak_mem_mb", "peak_gpu_mem_mb",
                                "features", "trees", "description"]
    /// The headers of ledgers written before the `sealed` and `peak_gpu_mem_mb` columns; `Ledger`
    /// migrates them on open.
    static let olderHeaders = [header.filter { $0 != "sealed" && $0 != "peak_gpu_mem_mb" }, header.filter { $0 != "peak_gpu_mem_mb" }]

    /// A row written under `old` (one of `olderHeaders`) in today's columns, the new ones empty.
    static func fields(_ fields: [String], writtenUnder old: [String]) -> [String] {
        let named = Dictionary(uniqueKeysWithValues: zip(old, fields))
        return header.map { named[$0] ?? "" }
    }

    public var fields: [String] {
        [String(iteration), commit, score.map(LedgerRow.scoreField) ?? "", sealed.map(LedgerRow.scoreField) ?? "",
         status.rawValue, String(format: "%.1f", seconds), peakMemMB.map(String.init) ?? "", peakGPUMemMB.map(String.init) ?? "",
         features.map(String.init) ?? "", trees.map(String.init) ?? "", Ledger.cell(description)]
    }

    /// Six decimals; `-inf` and `inf` (a score at an end of the scale, issue 8) and `nan` spelled out, as
    /// `Double(_:)` reads them back, whatever the C library's printf writes for them.
    static func scoreField(_ score: Double) -> String {
        if score.isNaN { return "nan" }
        if score.isInfinite { return score < 0 ? "-inf" : "inf" }
        return String(format: "%.6f", score)
    }

    init?(fields: [String]) {
        guard fields.count == LedgerRow.header.count, let iteration = Int(fields[0]),
            let status = IterationStatus(rawValue: fields[4])
        else { return nil }
        self.iteration = iteration
        commit = fields[1]
        score = Double(fields[2])
        sealed = Double(fields[3])
        self.status = status
        seconds = Double(fields[5]) ?? 0
        peakMemMB = Int(fields[6])
        peakGPUMemMB = Int(fields[7])
        features = Int(fields[8])
        trees = Int(fields[9])
        description = fields[10]
    }

    public init(iteration: Int, commit: String, score: Double?, sealed: Double? = nil, status: IterationStatus, seconds: Double,
                peakMemMB: Int?, peakGPUMemMB: Int? = nil, features: Int?, trees: Int?, description: String) {
        self.iteration = iteration
        self.commit = commit
        self.score = score
        self.sealed = sealed
        self.status = status
        self.seconds = seconds
        self.peakMemMB = peakMemMB
        self.peakGPUMemMB = peakGPUMemMB
        self.features = features
        self.trees = trees
        self.description = description
    }
}

/// The full record of one iteration in `.proctor/runs.jsonl`.
public struct RunRecord: Codable, Sendable {
    public struct SeedScore: Codable, Sendable {
        public var seed: UInt64
        public var score: Double?
        public var seconds: Double
        public var status: String
    }

    public var time: Date
    public var run: String
    public var iteration: Int
    public var status: IterationStatus
    /// Why, as the ledger's row shows it in brackets (the evaluator's words included).
    public var reason: String?
    /// The same reason as agents may read it (`FailureReason.agentText`): what the next prompt's
    /// history shows. Absent in records written before it existed, and where `reason` is.
    public var agentReason: String?
    public var description: String
    public var commit: String?
    public var parent: String
    public var score: Double?
    /// The sealed evaluator's mean over the seeds (kept iterations and the baseline only).
    public var sealed: Double?
    public var sealedScores: [SeedScore]?
    public var bestBefore: Double?
    public var scores: [SeedScore]
    public var diff: DiffStats?
    public var measurements: [String: Double]
    public var limits: [String: String]
    public var durations: [String: Double]
    public var agent: String
    public var usage: AgentUsageRecord?
    public var violations: [String]
    /// The `[[phases]]` entry the iteration ran in (its `name`), if phases are set.
    public var phase: String?
    /// `proctor nudge` texts delivered to the agent with this iteration's proposal, in order.
    public var nudges: [String]?
    /// Numbers of the analysis runs (`.proctor/analysis/<n>/`) summarized into this proposal.
    public var analyses: [Int]?
    /// Whether the proposal's prompt carried the plateau hint.
    public var plateau: Bool?
    /// The agent's transcript, relative to `.proctor/` (`logs/<run>/<i>-agent.log`).
    public var agentLog: String?
    /// A second model call that rewrote `learnings.md` (`[memory] synthesize = "agent"`).
    public var synthesisUsage: AgentUsageRecord?
    /// `network = "allowlist"`: what went through the proxy during the iteration, by phase
    /// (`agent`, `experiment`) and host as the sandbox named it: connections and bytes up and down.
    public var network: [String: [String: NetworkUse]]? = nil
    /// What each phase's command ran (`experiment`, `evaluator`, `sealed`): the interpreter and the
    /// environment it belongs to, as resolved on the host (issue 11).
    public var interpreters: [String: ResolvedInterpreter]?
    /// The most GPU memory the experiment's processes held (NVML), in MiB; absent without GPUs.
    public var peakGpuMemMB: Int? = nil
    /// The experiment's GPU time over its seeds, GPU-seconds of full SM use (NVML); nil without it.
    public var gpuSeconds: Double? = nil
    /// `[executor] kind = "slurm"`: the ids of the jobs that measured the iteration (issue 14).
    public var slurmJobs: [String]? = nil

    enum CodingKeys: String, CodingKey {
        case time, run, iteration, status, reason, agentReason, description, commit, parent, score, sealed, sealedScores, bestBefore, scores, diff, measurements, limits, durations, agent, usage, violations, phase, nudges, analyses, plateau, agentLog, synthesisUsage, network, interpreters
        case peakGpuMemMB = "peak_gpu_mem_mb"
        case gpuSeconds = "gpu_seconds"
        case slurmJobs = "slurm_jobs"
    }
}

public struct DiffStats: Codable, Sendable {
    /// The changed paths, the first `filesListed` of them, each cut at `pathScalars`.
    public var files: [String]
    public var added: Int
    public var removed: Int
    /// How many changed paths `files` leaves out; nil for none.
    public var filesOmitted: Int?

    public init(files: [String], added: Int, removed: Int, filesOmitted: Int? = nil) {
        self.files = files
        self.added = added
        self.removed = removed
        self.filesOmitted = filesOmitted
    }

    static let filesListed = 100
    static let pathScalars = 300
}

public struct AgentUsageRecord: Codable, Sendable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var costUSD: Double?
}

/// `.proctor/results.tsv` and `.proctor/runs.jsonl`, outside git's reach so a revert never loses a row.
/// Each row is one `write(2)` on an `O_APPEND` descriptor; a torn tail left by a crash of the
/// machine is cut off when the ledger is next opened, so readers only ever see whole lines.
public final class Ledger: @unchecked Sendable {
    public let resultsPath: String
    public let runsPath: String
    private let results: Int32
    private let runs: Int32
    private let encoder = JSONLines.encoder()

    public init(directory: String) throws {
        resultsPath = directory + "/results.tsv"
        runsPath = directory + "/runs.jsonl"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        Ledger.repairTail(resultsPath)
        Ledger.repairTail(runsPath)
        try Ledger.addNewColumns(resultsPath)
        results = open(resultsPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        runs = open(runsPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard results >= 0, runs >= 0 else { throw LoopError.io(errno, "open ledger in \(directory)") }
        var st = stat()
        if fstat(results, &st) == 0 && st.st_size == 0 { try writeLine(results, LedgerRow.header.joined(separator: "\t")) }
    }

    deinit {
        close(results)
        close(runs)
    }

    /// Appends the row and the record (the record first: the row is what readers trust). Both or
    /// neither: when a write fails (a full disk) or is short, both files are cut back to where they
    /// were, so a later append never follows a torn line and no record is left without its row.
    /// (One writer: the run holds the workspace lock.)
    public func append(_ row: LedgerRow, record: RunRecord) throws {
        let runsSize = lseek(runs, 0, SEEK_END)
        let resultsSize = lseek(results, 0, SEEK_END)
        do {
            try JSONLines.append(record, to: runs, encoder: encoder)
            try writeLine(results, row.fields.joined(separator: "\t"))
        } catch {
            if runsSize >= 0 { ftruncate(runs, runsSize) }
            if resultsSize >= 0 { ftruncate(results, resultsSize) }
            throw error
        }
        fsync(runs)
        fsync(results)
    }

    /// Cuts the last line of runs.jsonl when it is `run`'s record of `iteration`: the record of an
    /// iteration whose row never made it (a SIGKILL between the two writes), which resume then records
    /// again as interrupted. Without this, runs.jsonl would hold two records for the iteration.
    public static func dropRecordWithoutRow(in directory: String, run: String, iteration: Int) {
        let path = directory + "/runs.jsonl"
        guard let data = FileManager.default.contents(atPath: path), data.last == 0x0A else { return }
        let body = data.dropLast()
        let start = body.lastIndex(of: 0x0A).map { $0 + 1 } ?? body.startIndex
        guard let last = try? JSONLines.decoder().decode(RunRecord.self, from: Data(body[start...])),
            last.run == run, last.iteration == iteration
        else { return }
        truncate(path, off_t(start - data.startIndex))
    }

    /// Every complete row of the ledger at `directory`.
    public static func rows(in directory: String) -> [LedgerRow] {
        guard let text = try? String(contentsOfFile: directory + "/results.tsv", encoding: .utf8) else { return [] }
        var lines = text.components(separatedBy: "\n")
        if !text.hasSuffix("\n") { lines.removeLast() }  // torn tail
        // A ledger no run has opened since a column was added is read by the names of its own header.
        let old = LedgerRow.olderHeaders.first { $0.joined(separator: "\t") == lines.first }
        return lines.dropFirst().compactMap { line in
            let fields = line.components(separatedBy: "\t")
            guard let old, fields.count == old.count else { return LedgerRow(fields: fields) }
            return LedgerRow(fields: LedgerRow.fields(fields, writtenUnder: old))
        }
    }

    public static func records(in directory: String) -> [RunRecord] {
        JSONLines.read(RunRecord.self, from: directory + "/runs.jsonl")
    }

    private func writeLine(_ fd: Int32, _ line: String) throws {
        let data = Array((line + "\n").utf8)
        let n = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == data.count else { throw LoopError.io(n < 0 ? errno : EIO, "write ledger") }
    }

    /// The description as a table cell: cleaned (its description and reason are cut at 300 each,
    /// `rowDescription`), and a text that a spreadsheet would take for a formula (`=`, `+`, `-`,
    /// `@`) or a TSV reader for a quoted field running on through the next rows (`"`) starts with
    /// `'`: descriptions are an agent's words.
    static func cell(_ text: String) -> String {
        let cleaned = clean(text, limit: Ledger.rowDescriptionLimit)
        return cleaned.first.map { "=+-@\"".contains($0) } == true ? "'" + cleaned : cleaned
    }

    /// Tabs and newlines would break the TSV: the description is one line. Other control characters
    /// (ESC above all) are shown as `\xNN` (`\uNNNN` above ASCII): a description or reason quotes what an agent wrote (a path
    /// in its answer), and raw escape sequences would rewrite the operator's terminal when the row
    /// is printed (`[1] rejected` overwritten by a fake `keep 0.999`).
    static func clean(_ text: String) -> String { clean(text, limit: 300) }

    /// A row's description with its reason (`Runner.rowDescription`: 300 scalars of each, the
    /// brackets between), cleaned.
    static let rowDescriptionLimit = 610

    static func clean(_ text: String, limit: Int) -> String {
        let oneLine = String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 }))
        return oneLine.displayEscaped(keeping: []).prefix(scalars: limit)
    }

    /// A ledger written before the `sealed` or the `peak_gpu_mem_mb` column gets them (empty) in
    /// every row, in one atomic replacement: a crash leaves the old file or the new one.
    static func addNewColumns(_ path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let old = LedgerRow.olderHeaders.first(where: { text.prefix(while: { $0 != "\n" }) == $0.joined(separator: "\t") })
        else { return }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().map { line -> String in
            let fields = line.components(separatedBy: "\t")
            guard !line.isEmpty, fields.count == old.count else { return String(line) }
            return LedgerRow.fields(fields, writtenUnder: old).joined(separator: "\t")
        }
        try AtomicFile.write(Data(([LedgerRow.header.joined(separator: "\t")] + lines).joined(separator: "\n").utf8), to: path)
    }

    private static func repairTail(_ path: String) {
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return }
        // Find the last newline; anything after it is a torn write.
        var size = Int64(st.st_size)
        var byte: UInt8 = 0
        while size > 0 {
            guard pread(fd, &byte, 1, off_t(size - 1)) == 1 else { return }
            if byte == 0x0A { break }
            size -= 1
        }
        if size != Int64(st.st_size) { ftruncate(fd, off_t(size)) }
    }
}
