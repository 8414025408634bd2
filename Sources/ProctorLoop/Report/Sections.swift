import Foundation

/// The report page, section by section. Each section is a small function of `ReportData` returning
/// HTML; everything that comes from the workspace or an agent goes through `Reports.escape`.
enum ReportPage {
    static func html(_ data: ReportData) -> String {
        // The policy is a second wall behind the escaping: should agent text ever get through as markup,
        // the browser still runs no script and loads nothing (the page needs only its inline style).
        var html = "<!doctype html><html><head><meta charset='utf-8'>"
        html += "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        html += "<title>proctor report</title><style>\(style)</style></head><body>"
        html += header(data)
        html += ReportChart.svg(data)
        html += legend(data)
        html += progressCost(data)
        html += phases(data)
        html += nudges(data)
        html += memory("Learnings", "learnings", data.memory.learnings)
        html += memory("Near misses", "near-misses", data.memory.nearMisses)
        html += memory("Do not retry", "do-not-retry", data.memory.doNotRetry)
        html += audit(data.audit, run: data.run)
        html += ledger(data.rows)
        return html + "</body></html>\n"
    }

    static let style = """
        body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#1f2328}\
        table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
        th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}\
        .keep{color:#1a7f37}.crash,.timeout{color:#cf222e}.rejected{color:#8250df}\
        svg.chart{max-width:100%;height:auto;display:block}\
        .legend{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:13px;margin:.4em 0 1em 90px}\
        .legend span{display:inline-flex;align-items:center;gap:5px}\
        .none{color:#57606a;font-style:italic}\
        pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px}\
        section.memory{border-left:3px solid #d0d7de;padding-left:12px}
        """

    /// The title, the run, the sealed gap and the counts of the charted run.
    static func header(_ data: ReportData) -> String {
        let config = data.config
        var html = "<h1>proctor report: \(Reports.escape(URL(fileURLWithPath: config.root).lastPathComponent))</h1>"
        if let state = data.state {
            html += "<p>run <b>\(Reports.escape(state.run))</b> on branch <code>\(Reports.escape(state.branch))</code>: baseline \(Reports.escape(format(state.baselineScore))), best <b>\(Reports.escape(format(state.bestScore)))</b> (\(Reports.escape(config.evaluator.metric)), \(config.evaluator.maximize ? "higher" : "lower") is better)</p>"
        }
        if let run = data.run, run != data.state?.run {
            html += "<p>charted: run <b>\(Reports.escape(run))</b> (the last in the ledger)</p>"
        }
        if let gap = Reports.sealedGap(data.rows, maximize: config.evaluator.maximize) {
            html += "<p class='sealed-gap'>\(Reports.escape(gap))</p>"
        }
        let counts = Dictionary(grouping: data.entries.map(\.row).filter { $0.iteration > 0 }, by: \.status).mapValues(\.count)
        html += "<p>" + IterationStatus.allCases.map { "<span class='\($0.rawValue)'>\($0.rawValue) \(counts[$0] ?? 0)</span>" }.joined(separator: " · ") + "</p>"
        return html
    }

    /// What the chart's marks mean; only the marks that are on this chart.
    static func legend(_ data: ReportData) -> String {
        func swatch(_ shape: String) -> String { "<svg width='22' height='12' aria-hidden='true'>\(shape)</svg>" }
        let rows = data.entries.map(\.row)
        var items: [String] = []
        // A status is shown as a filled circle only where a row of it has a finite score.
        for status in IterationStatus.allCases where rows.contains(where: { $0.status == status && $0.score?.isFinite == true }) {
            let color = ReportChart.colors[status] ?? "#000"
            items.append(swatch("<circle cx='11' cy='6' r='4' fill='\(color)'/>") + status.rawValue)
        }
        if rows.contains(where: { $0.score == nil || $0.score?.isNaN == true }) {
            items.append(swatch("<path d='M7,2 L15,10 M7,10 L15,2' stroke='#57606a' stroke-width='2.5'/>") + "no score (on the axis)")
        }
        if rows.contains(where: { $0.score?.isInfinite == true }) {
            items.append(swatch("<circle cx='11' cy='6' r='4' fill='white' stroke='#8c959f' stroke-width='2'/>") + "±inf (at the edge)")
        }
        items.append(swatch("<line x1='0' y1='6' x2='22' y2='6' stroke='#1a7f37' stroke-width='2'/>") + "best so far")
        if rows.contains(where: { $0.status == .keep && $0.sealed != nil }) {
            items.append(swatch("<line x1='0' y1='6' x2='22' y2='6' stroke='\(ReportChart.sealedColor)' stroke-width='2' stroke-dasharray='6 3'/>") + "sealed test set")
        }
        if !data.phaseBands.isEmpty {
            items.append(swatch("<rect width='22' height='12' fill='\(ReportChart.bandFills[0])' stroke='#d0d7de'/>") + "phase")
        }
        if !data.nudges.isEmpty {
            items.append(swatch("<line x1='11' y1='0' x2='11' y2='12' stroke='\(ReportChart.nudgeColor)' stroke-width='1.5' stroke-dasharray='3 2'/>") + "nudge")
        }
        return "<div class='legend'>" + items.map { "<span>\($0)</span>" }.joined() + "</div>"
    }

    /// Wall time and agent cost per kept improvement (keeps after the baseline) of the charted run.
    static func progressCost(_ data: ReportData) -> String {
        let rows = data.entries.map(\.row)
        let keeps = rows.filter { $0.status == .keep && $0.iteration > 0 }.count
        let seconds = rows.map(\.seconds).reduce(0, +)
        let usages = data.entries.compactMap(\.record).flatMap { [$0.usage, $0.synthesisUsage].compactMap { $0 } }
        let costs = usages.compactMap(\.costUSD)
        let cost = costs.isEmpty ? nil : costs.reduce(0, +)
        let tokens = usages.map { $0.promptTokens + $0.completionTokens }.reduce(0, +)
        var cells: [(String, String)] = [
            ("iterations", String(rows.filter { $0.iteration > 0 }.count)),
            ("kept improvements", String(keeps)),
            ("wall time", duration(seconds)),
            ("time per kept improvement", keeps > 0 ? duration(seconds / Double(keeps)) : "n/a"),
            ("agent cost", cost.map(dollars) ?? "n/a"),
            ("cost per kept improvement", cost.flatMap { keeps > 0 ? dollars($0 / Double(keeps)) : nil } ?? "n/a"),
        ]
        if tokens > 0 { cells.append(("agent tokens", String(tokens))) }
        let plateau = data.entries.filter { $0.record?.plateau == true }.map { String($0.row.iteration) }
        if !plateau.isEmpty { cells.append(("plateau hint in iterations", plateau.joined(separator: ", "))) }
        return "<h2>Cost of progress</h2><table class='cost'>"
            + cells.map { "<tr><th>\($0.0)</th><td class='n'>\(Reports.escape($0.1))</td></tr>" }.joined() + "</table>"
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let total = Int(seconds.rounded())
        if total < 3600 { return String(format: "%dm %02ds", total / 60, total % 60) }
        return String(format: "%dh %02dm", total / 3600, total % 3600 / 60)
    }

    static func dollars(_ value: Double) -> String { String(format: value < 1 ? "$%.4f" : "$%.2f", value) }

    /// The phases the charted run went through (from its records), with the config's strategy.
    static func phases(_ data: ReportData) -> String {
        let bands = data.phaseBands
        guard !bands.isEmpty || !data.config.phases.isEmpty else { return "" }
        var html = "<h2>Phases</h2>"
        guard !bands.isEmpty else { return html + "<p class='none'>none reached yet</p>" }
        html += "<table class='phases'><tr><th>phase</th><th>iterations</th><th>kept</th><th>strategy</th></tr>"
        for band in bands {
            let kept = data.entries.filter { (band.first...band.last).contains($0.row.iteration) && $0.row.status == .keep }.count
            let range = band.first == band.last ? "\(band.first)" : "\(band.first)–\(band.last)"
            html += "<tr><td>\(Reports.escape(band.name))</td><td>\(range)</td><td class='n'>\(kept)</td><td>\(Reports.escape(band.strategy ?? ""))</td></tr>"
        }
        return html + "</table>"
    }

    static func nudges(_ data: ReportData) -> String {
        let nudges = data.nudges
        guard !nudges.isEmpty else { return "<h2>Nudges</h2><p class='none'>none</p>" }
        return "<h2>Nudges</h2><ul class='nudges'>" + nudges.flatMap { nudge in
            nudge.texts.map { "<li>before iteration \(nudge.iteration): \(Reports.escape($0))</li>" }
        }.joined() + "</ul>"
    }

    /// A memory file, as safe markdown; "none yet" when the runtime has not written it.
    static func memory(_ title: String, _ id: String, _ text: String?) -> String {
        var html = "<h2>\(title)</h2><section class='memory' id='\(id)'>"
        if let text, !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            html += SafeMarkdown.html(text)
        } else {
            html += "<p class='none'>none yet</p>"
        }
        return html + "</section>"
    }

    /// What was blocked, by kind and rule, with counts; warnings about limits that were not enforced first.
    static func audit(_ summary: Reports.AuditSummary, run: String?) -> String {
        var html = "<h2>Audit</h2><p>\(summary.records) audit records" + (run.map { " of run \(Reports.escape($0))" } ?? "") + "</p>"
        for warning in summary.unenforced {
            html += "<p class='crash'><b>NOT ENFORCED:</b> \(Reports.escape(warning))</p>"
        }
        guard !summary.groups.isEmpty else { return html + "<p class='none'>nothing was blocked</p>" }
        html += "<table class='audit'><tr><th>kind</th><th>rule</th><th>decision</th><th>count</th><th>via</th><th>examples</th></tr>"
        for group in summary.groups {
            html += "<tr><td>\(Reports.escape(group.kind))</td><td>\(Reports.escape(group.rule ?? "-"))</td>"
            html += "<td>\(Reports.escape(group.decision))</td><td class='n'>\(group.count)</td>"
            html += "<td>\(Reports.escape(group.syscalls.joined(separator: ", ")))</td>"
            html += "<td>\(group.paths.map { "<code>\(Reports.escape(Ledger.clean($0)))</code>" }.joined(separator: "<br>"))</td></tr>"
        }
        return html + "</table>"
    }

    /// Every row of results.tsv (every run of the workspace).
    static func ledger(_ rows: [LedgerRow]) -> String {
        var html = "<h2>Ledger</h2><table class='ledger'><tr>" + LedgerRow.header.map { "<th>\($0)</th>" }.joined() + "</tr>"
        for row in rows {
            html += "<tr class='\(row.status.rawValue)'>" + row.fields.map { "<td>\(Reports.escape($0))</td>" }.joined() + "</tr>"
        }
        return html + "</table>"
    }
}
