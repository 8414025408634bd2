import Foundation
import ProctorConfig
import ProctorSandbox

/// `proctor status`, `proctor audit` and `proctor report`: reading what runs left under `.proctor/`.
public enum Reports {
    /// Lock holders, the current iteration and the best score, as lines.
    public static func status(workspace: String) throws -> [String] {
        let config = try SandboxEnvironment.checkedConfig(workspace: workspace)
        let root = config.root
        var lines: [String] = []
        switch ExperimentLock.state(at: ExperimentLock.workspacePath(root)) {
        case .held(let holder?): lines.append("lock: held by \(holder.summary)")
        case .held(nil): lines.append("lock: held (holder unknown: not written by a proctor run)")
        case .free: lines.append("lock: free")
        }
        // Every slot lock file there is (a run split the machine with a PROCTOR_MACHINE_SLOTS this
        // shell may not have): two runs of other workspaces may hold some each.
        let machine = ExperimentLock.machinePath
        let directory = (machine as NSString).deletingLastPathComponent, name = (machine as NSString).lastPathComponent
        let slots = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap { entry -> Int? in
            guard entry != name else { return 0 }
            guard entry.hasPrefix(name + "."), let slot = Int(entry.dropFirst(name.count + 1)), slot > 0,
                entry == name + ".\(slot)" else { return nil }  // `.05`, `.+5` are not slot 5
            return slot
        }.sorted()
        for slot in slots {
            guard case .held(let holder) = ExperimentLock.state(at: ExperimentLock.machineSlotPath(slot)), holder?.workspace != root else { continue }
            lines.append("machine lock\(slots.count > 1 ? " (slot \(slot))" : ""): held by \(holder?.summary ?? "an unknown holder (not written by a proctor run)")")
        }
        guard let state = RunState.load(root) else {
            // A state file that is there but does not decode is not "no run yet": say which it is.
            if FileManager.default.fileExists(atPath: RunState.path(root)) {
                lines.append("run: \(RunState.path(root)) is not a run state proctor can read (start a new run without --resume)")
            } else {
                lines.append("run: none yet (proctor run --workspace \(root))")
            }
            return lines
        }
        // The ledger holds every run of the workspace; count this run's iterations (from its records).
        var latest: [Int: IterationStatus] = [:]
        for record in Ledger.records(in: root + "/.proctor") where record.run == state.run && record.iteration > 0 {
            latest[record.iteration] = record.status
        }
        let counts = Dictionary(grouping: latest.values, by: { $0 }).mapValues(\.count)
        lines.append("run: \(state.run) on \(state.branch)")
        let running = ([state.inProgress].compactMap { $0 } + (state.inFlight ?? [])).reduce(into: [Int]()) { if !$0.contains($1) { $0.append($1) } }.sorted()
        lines.append("iteration: " + (running.isEmpty ? "\(state.lastIteration) finished" : running.map(String.init).joined(separator: ", ") + " in progress"))
        lines.append("best \(config.evaluator.metric): \(format(state.bestScore)) at \(String(state.bestCommit.prefix(12))) (baseline \(format(state.baselineScore)))")
        lines.append("iterations: " + IterationStatus.allCases.map { "\($0.rawValue) \(counts[$0] ?? 0)" }.joined(separator: ", "))
        lines.append("ledger: \(root)/.proctor/results.tsv")
        lines += slurmJobs(root: root, run: state.run)
        return lines
    }

    /// Audit records, optionally of one run.
    public static func auditRecords(workspace: String, run: String?) throws -> [AuditRecord] {
        let config = try WorkspaceConfig.load(workspace: workspace)
        let records = JSONLines.read(AuditRecord.self, from: config.root + "/.proctor/audit.jsonl")
        guard let run else { return records }
        let mine = records.filter { $0.run == run }
        // A run nothing was blocked in has no records, but it is in the ledger; a typo is neither.
        let runs = Ledger.records(in: config.root + "/.proctor").map(\.run)
        if mine.isEmpty && !runs.contains(run) && RunState.load(config.root)?.run != run {
            var known: [String] = []
            for id in runs + records.map(\.run) where !known.contains(id) { known.append(id) }
            let listed = known.suffix(5).joined(separator: ", ")
            throw LoopError(.refused, "--run \(run): no such run in \(config.root) (\(known.isEmpty ? "no runs yet" : "the last: " + listed))")
        }
        return mine
    }

    /// What was blocked, grouped: one summary line per (kind, decision, rule) with counts and example paths.
    public struct AuditSummary: Codable, Sendable {
        public struct Group: Codable, Sendable {
            public var kind: String
            public var decision: String
            public var rule: String?
            public var count: Int
            public var paths: [String]
            public var syscalls: [String]
        }

        public var records: Int
        public var runs: [String]
        public var groups: [Group]
        public var unenforced: [String]
        /// What went through the allowlist proxy (runs.jsonl), by host: where the sandboxes talked.
        public var network: [String: NetworkUse] = [:]
    }

    /// Traffic through the allowlist proxy summed by host over the iterations of `run` (all runs: nil)
    /// in `.proctor/runs.jsonl`.
    public static func networkUse(workspace: String, run: String?) throws -> [String: NetworkUse] {
        let config = try WorkspaceConfig.load(workspace: workspace)
        var total: [String: NetworkUse] = [:]
        for record in JSONLines.read(RunRecord.self, from: config.root + "/.proctor/runs.jsonl") where run == nil || record.run == run {
            for hosts in (record.network ?? [:]).values { total.merge(hosts, uniquingKeysWith: +) }
        }
        return total
    }

    public static func summarize(_ records: [AuditRecord]) -> AuditSummary {
        var groups: [String: AuditSummary.Group] = [:]
        var unenforced: [String] = []
        for record in records {
            if record.kind == .sandbox {
                if record.decision == .unenforced, let detail = record.detail, !unenforced.contains(detail) { unenforced.append(detail) }
                continue
            }
            let key = "\(record.kind.rawValue)|\(record.decision.rawValue)|\(record.rule?.rawValue ?? "")"
            var group = groups[key] ?? .init(kind: record.kind.rawValue, decision: record.decision.rawValue, rule: record.rule?.rawValue, count: 0, paths: [], syscalls: [])
            group.count += record.count ?? 1
            // A refused connection's destination stands where a write's path does.
            let place = record.path ?? record.host.map { host in record.port.map { "\(host):\($0)" } ?? host }
            if let place, !group.paths.contains(place), group.paths.count < 5 { group.paths.append(place) }
            if let call = record.syscall, !group.syscalls.contains(call) { group.syscalls.append(call) }
            groups[key] = group
        }
        var runs: [String] = []
        for record in records where !runs.contains(record.run) { runs.append(record.run) }
        return AuditSummary(records: records.count, runs: runs,
                            groups: groups.values.sorted { ($0.count, $0.kind) > ($1.count, $1.kind) }, unenforced: unenforced)
    }

    public static func auditText(_ summary: AuditSummary) -> [String] {
        var lines = ["\(summary.records) audit records from \(summary.runs.count) run(s)"]
        if summary.groups.isEmpty { lines.append("nothing was blocked") }
        for group in summary.groups {
            // Padded to six, never cut: `padding(toLength:)` also truncates, and a flood of a million
            // denied writes read as 143823.
            let count = String(group.count)
            var line = "\(count)\(String(repeating: " ", count: max(6 - count.count, 0))) \(group.kind) \(group.decision)"
            if let rule = group.rule { line += " [\(rule)]" }
            if !group.syscalls.isEmpty { line += " via \(group.syscalls.joined(separator: ","))" }
            // Paths an agent named (in an answer) may hold escape sequences: shown, never sent to the terminal.
            if !group.paths.isEmpty { line += ": " + group.paths.map(Ledger.clean).joined(separator: ", ") }
            lines.append(line)
        }
        for warning in summary.unenforced { lines.append("NOT ENFORCED: \(warning)") }
        for (host, use) in summary.network.sorted(by: { ($0.value.bytesUp + $0.value.bytesDown, $1.key) > ($1.value.bytesUp + $1.value.bytesDown, $0.key) }) {
            lines.append("network: \(Ledger.clean(host)): \(use.connections) connection(s), \(use.bytesUp) bytes up, \(use.bytesDown) bytes down")
        }
        return lines
    }

    /// A self-contained HTML page (no script, no external resource): the progress chart of the current
    /// run (phase bands, nudges, the sealed line), the cost of progress, the memory files, the audit
    /// and the ledger. Built in `Report/` from one read of `.proctor/` (`ReportData`).
    public static func html(workspace: String) throws -> String {
        ReportPage.html(try ReportData.load(workspace: workspace))
    }

    /// The sealed gap of the workspace's ledger (`proctor report` prints it).
    public static func sealedGap(workspace: String) throws -> String? {
        let config = try WorkspaceConfig.load(workspace: workspace)
        return sealedGap(Ledger.rows(in: config.root + "/.proctor"), maximize: config.evaluator.maximize)
    }

    /// How much of the last kept validation score holds on the sealed test set, in words.
    public static func sealedGap(_ rows: [LedgerRow], maximize: Bool) -> String? {
        guard let last = rows.last(where: { $0.status == .keep && $0.sealed != nil }), let score = last.score,
            let sealed = last.sealed
        else { return nil }
        let gap = maximize ? score - sealed : sealed - score
        var text = "last kept (iteration \(last.iteration)): validation \(format(score)), sealed \(format(sealed)), gap \(format(gap))"
        if let first = rows.first(where: { $0.status == .keep && $0.sealed != nil }), first.iteration != last.iteration,
            let firstScore = first.score, let firstSealed = first.sealed {
            let validationGain = maximize ? score - firstScore : firstScore - score
            let sealedGain = maximize ? sealed - firstSealed : firstSealed - sealed
            text += "; since iteration \(first.iteration) validation improved by \(format(validationGain)), sealed by \(format(sealedGain))"
        }
        return text
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&#39;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
