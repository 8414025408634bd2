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
        if let holder = ExperimentLock.holder(at: ExperimentLock.workspacePath(root)) {
            lines.append("lock: held by \(holder.summary)")
        } else {
            lines.append("lock: free")
        }
        if let holder = ExperimentLock.holder(at: ExperimentLock.machinePath), holder.workspace != root {
            lines.append("machine lock: held by \(holder.summary)")
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
        lines.append("iteration: " + (state.inProgress.map { "\($0) in progress" } ?? "\(state.lastIteration) finished"))
        lines.append("best \(config.evaluator.metric): \(format(state.bestScore)) at \(String(state.bestCommit.prefix(12))) (baseline \(format(state.baselineScore)))")
        lines.append("iterations: " + IterationStatus.allCases.map { "\($0.rawValue) \(counts[$0] ?? 0)" }.joined(separator: ", "))
        lines.append("ledger: \(root)/.proctor/results.tsv")
        return lines
    }

    /// Audit records, optionally of one run.
    public static func auditRecords(workspace: String, run: String?) throws -> [AuditRecord] {
        let config = try WorkspaceConfig.load(workspace: workspace)
        let records = JSONLines.read(AuditRecord.self, from: config.root + "/.proctor/audit.jsonl")
        return run.map { id in records.filter { $0.run == id } } ?? records
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
    }

    public static func summarize(_ records: [AuditRecord]) -> AuditSummary {
        var groups: [String: AuditSummary.Group] = [:]
        var unenforced: [String] = []
        for record in records {
            if record.kind == "sandbox" {
                if record.decision == "unenforced", let detail = record.detail, !unenforced.contains(detail) { unenforced.append(detail) }
                continue
            }
            let key = "\(record.kind)|\(record.decision)|\(record.rule ?? "")"
            var group = groups[key] ?? .init(kind: record.kind, decision: record.decision, rule: record.rule, count: 0, paths: [], syscalls: [])
            group.count += record.count ?? 1
            if let path = record.path, !group.paths.contains(path), group.paths.count < 5 { group.paths.append(path) }
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
            var line = "\(String(group.count).padding(toLength: 6, withPad: " ", startingAt: 0)) \(group.kind) \(group.decision)"
            if let rule = group.rule { line += " [\(rule)]" }
            if !group.syscalls.isEmpty { line += " via \(group.syscalls.joined(separator: ","))" }
            // Paths an agent named (in an answer) may hold escape sequences: shown, never sent to the terminal.
            if !group.paths.isEmpty { line += ": " + group.paths.map(Ledger.clean).joined(separator: ", ") }
            lines.append(line)
        }
        for warning in summary.unenforced { lines.append("NOT ENFORCED: \(warning)") }
        return lines
    }

    /// A self-contained HTML page: the progress chart (every iteration's score, the best so far) and the ledger.
    public static func html(workspace: String) throws -> String {
        let config = try WorkspaceConfig.load(workspace: workspace)
        let rows = Ledger.rows(in: config.root + "/.proctor")
        let audit = summarize(JSONLines.read(AuditRecord.self, from: config.root + "/.proctor/audit.jsonl"))
        let state = RunState.load(config.root)
        let scored = rows.filter { $0.score != nil }
        let width = 900.0, height = 360.0, pad = 50.0, left = 90.0
        // The axis spans the finite scores only: one -inf (a failed hard gate, issue 8) would stretch
        // it to nothing. -inf is drawn on the bottom edge and inf on the top edge, as triangles, and
        // the finite scores then keep clear of the edges. The sealed line shares the axis.
        let scores = (scored.compactMap(\.score) + rows.filter { $0.status == .keep }.compactMap(\.sealed)).filter(\.isFinite)
        let inset = scored.contains { $0.score?.isInfinite == true } ? 16.0 : 0
        let lo = scores.min() ?? 0, hi = scores.max() ?? 1
        let span = hi - lo > 0 ? hi - lo : 1
        let maxIteration = Double(max(rows.map(\.iteration).max() ?? 1, 1))
        func x(_ i: Int) -> Double { left + Double(i) / maxIteration * (width - left - pad) }
        func y(_ s: Double) -> Double {
            if s.isInfinite { return s < 0 ? height - pad : pad }
            return height - pad - inset - (s - lo) / span * (height - 2 * pad - 2 * inset)
        }
        let colors: [IterationStatus: String] = [.keep: "#1a7f37", .discard: "#8c959f", .crash: "#cf222e", .timeout: "#bf8700", .rejected: "#8250df"]
        var svg = "<svg xmlns='http://www.w3.org/2000/svg' width='\(Int(width))' height='\(Int(height))' role='img' aria-label='score per iteration'>"
        svg += "<rect width='100%' height='100%' fill='white'/>"
        svg += "<line x1='\(left)' y1='\(height - pad)' x2='\(width - pad)' y2='\(height - pad)' stroke='#444'/>"
        svg += "<line x1='\(left)' y1='\(pad)' x2='\(left)' y2='\(height - pad)' stroke='#444'/>"
        for k in 0...4 {
            let value = lo + span * Double(k) / 4
            svg += "<text x='\(left - 6)' y='\(y(value) + 4)' font-size='11' text-anchor='end'>\(escape(format(value)))</text>"
        }
        let step = max(1, Int((maxIteration / 10).rounded(.up)))
        for i in stride(from: 0, through: Int(maxIteration), by: step) {
            svg += "<text x='\(x(i))' y='\(height - pad + 16)' font-size='11' text-anchor='middle'>\(i)</text>"
        }
        svg += "<text x='\((left + width - pad) / 2)' y='\(height - 8)' font-size='12' text-anchor='middle'>iteration</text>"
        svg += "<text x='16' y='\(height / 2)' font-size='12' text-anchor='middle' transform='rotate(-90 16 \(height / 2))'>\(escape(config.evaluator.metric))</text>"
        // Best-so-far step line through the kept scores.
        var best: Double?
        var points: [String] = []
        for row in rows where row.status == .keep {
            guard let score = row.score else { continue }
            if let previous = best { points.append("\(x(row.iteration)),\(y(previous))") }
            best = score
            points.append("\(x(row.iteration)),\(y(score))")
        }
        if let best { points.append("\(x(Int(maxIteration))),\(y(best))") }
        svg += "<polyline fill='none' stroke='#1a7f37' stroke-width='2' points='\(points.joined(separator: " "))'/>"
        // The sealed test set's scores of the kept rows: a second line, never seen by the agent.
        let sealedPoints = rows.filter { $0.status == .keep }.compactMap { row in row.sealed.map { "\(x(row.iteration)),\(y($0))" } }
        if !sealedPoints.isEmpty {
            svg += "<polyline class='sealed' fill='none' stroke='#0969da' stroke-width='2' stroke-dasharray='6 3' points='\(sealedPoints.joined(separator: " "))'><title>sealed test set</title></polyline>"
        }
        for row in scored {
            let score = row.score!
            let (cx, cy) = (x(row.iteration), y(score))
            let fill = colors[row.status] ?? "#000"
            let title = "<title>\(row.iteration): \(escape(row.status.rawValue)) \(escape(format(score))) "
                + "\(escape(row.description))</title>"
            if score.isInfinite {
                // Pointing off the chart: down for -inf, up for inf.
                let tip = score < 0 ? cy + 6 : cy - 6, base = score < 0 ? cy - 4 : cy + 4
                let points = "\(cx - 5),\(base) \(cx + 5),\(base) \(cx),\(tip)"
                svg += "<polygon class='\(score < 0 ? "neg-inf" : "pos-inf")' points='\(points)' fill='\(fill)'>\(title)</polygon>"
            } else {
                svg += "<circle cx='\(cx)' cy='\(cy)' r='4' fill='\(fill)'>\(title)</circle>"
            }
        }
        svg += "</svg>"
        var html = "<!doctype html><html><head><meta charset='utf-8'><title>proctor report</title><style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}.keep{color:#1a7f37}.crash,.timeout{color:#cf222e}.rejected{color:#8250df}</style></head><body>"
        html += "<h1>proctor report: \(escape(URL(fileURLWithPath: config.root).lastPathComponent))</h1>"
        if let state {
            html += "<p>run <b>\(escape(state.run))</b> on branch <code>\(escape(state.branch))</code>: baseline \(escape(format(state.baselineScore))), best <b>\(escape(format(state.bestScore)))</b> (\(escape(config.evaluator.metric)), \(config.evaluator.maximize ? "higher" : "lower") is better)</p>"
        }
        if let gap = sealedGap(rows, maximize: config.evaluator.maximize) {
            html += "<p class='sealed-gap'>\(escape(gap))</p>"
        }
        let counts = Dictionary(grouping: rows.filter { $0.iteration > 0 }, by: \.status).mapValues(\.count)
        html += "<p>" + IterationStatus.allCases.map { "<span class='\($0.rawValue)'>\($0.rawValue) \(counts[$0] ?? 0)</span>" }.joined(separator: " · ") + "</p>"
        html += svg
        html += "<h2>Audit</h2><ul>" + auditText(audit).map { "<li>\(escape($0))</li>" }.joined() + "</ul>"
        html += "<h2>Ledger</h2><table><tr>" + LedgerRow.header.map { "<th>\($0)</th>" }.joined() + "</tr>"
        for row in rows {
            html += "<tr class='\(row.status.rawValue)'>" + row.fields.map { "<td>\(escape($0))</td>" }.joined() + "</tr>"
        }
        html += "</table></body></html>\n"
        return html
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
