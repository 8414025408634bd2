import Foundation
import ProctorConfig
import ProctorSandbox

/// Everything `proctor report` shows, read once from `WORKSPACE/.proctor/` (read-only) and the config.
/// The page is a pure function of this value (`ReportPage.html`).
struct ReportData {
    /// A ledger row with its `runs.jsonl` record (nil for rows whose record is missing).
    struct Entry {
        var row: LedgerRow
        var record: RunRecord?
    }

    /// A contiguous stretch of charted iterations that ran in one `[[phases]]` entry.
    struct PhaseBand: Equatable {
        var name: String
        var first: Int
        var last: Int
        /// The config's strategy text for `name`, if the config still has that phase.
        var strategy: String?
    }

    /// The memory files the runtime writes under `.proctor/memory/` (nil: not written yet).
    struct Memory {
        var learnings: String?
        var nearMisses: String?
        var doNotRetry: String?
    }

    var config: WorkspaceConfig
    var state: RunState?
    /// Every row of `results.tsv` (every run of the workspace), for the ledger table and the sealed gap.
    var rows: [LedgerRow]
    /// The run the chart shows: the state's, or else the last one in the ledger (nil: no records at all).
    var run: String?
    /// The rows of `run` with their records, in ledger order (every row when there are no records).
    var entries: [Entry]
    var memory: Memory
    /// The audit records of `run` (all of them when no run is known), grouped.
    var audit: Reports.AuditSummary

    static func load(workspace: String) throws -> ReportData {
        let config = try WorkspaceConfig.load(workspace: workspace)
        let directory = config.root + "/.proctor"
        let rows = Ledger.rows(in: directory)
        let records = Ledger.records(in: directory)
        let state = RunState.load(config.root)
        let run = state.map(\.run).flatMap { id in records.contains { $0.run == id } ? id : nil } ?? records.last?.run
        let entries = pair(rows, records).filter { entry in run == nil || entry.record?.run == run }
        let audit = JSONLines.read(AuditRecord.self, from: directory + "/audit.jsonl")
        let memoryDirectory = directory + "/memory"
        return ReportData(
            config: config, state: state, rows: rows, run: run, entries: entries,
            memory: Memory(learnings: readText(memoryDirectory + "/learnings.md"),
                           nearMisses: readText(memoryDirectory + "/near_misses.md"),
                           doNotRetry: readText(memoryDirectory + "/do_not_retry.md")),
            audit: Reports.summarize(run.map { id in audit.filter { $0.run == id } } ?? audit))
    }

    /// Rows and records are appended in pairs (the record first, `Ledger.append`), so the tails line up;
    /// a row whose record is missing (a ledger older than runs.jsonl) or does not match gets none.
    static func pair(_ rows: [LedgerRow], _ records: [RunRecord]) -> [Entry] {
        let offset = rows.count - records.count
        return rows.enumerated().map { index, row in
            let recordIndex = index - offset
            guard records.indices.contains(recordIndex), records[recordIndex].iteration == row.iteration else {
                return Entry(row: row, record: nil)
            }
            return Entry(row: row, record: records[recordIndex])
        }
    }

    /// Consecutive entries with the same `phase` (from the records: they say what actually ran).
    var phaseBands: [PhaseBand] {
        var bands: [PhaseBand] = []
        for entry in entries {
            guard let name = entry.record?.phase else { continue }
            if var band = bands.last, band.name == name, band.last < entry.row.iteration {
                band.last = entry.row.iteration
                bands[bands.count - 1] = band
            } else {
                let strategy = config.phases.first { $0.name == name }?.strategy
                bands.append(PhaseBand(name: name, first: entry.row.iteration, last: entry.row.iteration, strategy: strategy))
            }
        }
        return bands
    }

    /// The nudges delivered with each iteration, in order.
    var nudges: [(iteration: Int, texts: [String])] {
        entries.compactMap { entry in
            guard let texts = entry.record?.nudges, !texts.isEmpty else { return nil }
            return (entry.row.iteration, texts)
        }
    }

    /// A memory file as text: at most 256 KiB, control characters other than tab and newline dropped.
    /// A symlink is not followed (the report reads what the runtime wrote, nothing it points at).
    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let limit = 256 * 1024
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var total = 0
        while total < bytes.count {
            let n = bytes[total...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            total += n
        }
        var text = String(decoding: bytes[..<min(total, limit)], as: UTF8.self).displayEscaped()
        if total > limit { text += "\n\n(truncated at 256 KiB)\n" }
        return text
    }
}
