import Foundation

/// The progress chart: an inline SVG (no script, no external resource) with one point per charted
/// ledger row, the best-so-far line, the sealed line, phase bands and nudge markers.
///
/// Every point has the class `point` and its status: a `<circle>` for a row with a score, a cross on
/// the bottom axis for one without (a crash, a timeout). Infinite scores (a failed hard gate scores
/// -inf) are hollow circles on the top or bottom edge; the y range is taken from finite values only.
enum ReportChart {
    static let colors: [IterationStatus: String] = [
        .keep: "#1a7f37", .discard: "#8c959f", .crash: "#cf222e", .timeout: "#bf8700", .rejected: "#8250df",
    ]
    static let bandFills = ["#eef4fb", "#f6f1e7"]
    static let nudgeColor = "#d4500a"
    static let sealedColor = "#0969da"

    /// Where things go: iterations to x, scores to y.
    struct Scale {
        let width = 960.0, height = 380.0
        let left = 90.0, right = 30.0, top = 34.0, bottom = 50.0
        /// The gap between the plot's edges and the finite range: wider when infinite scores are drawn
        /// there, so their "inf" labels clear the outermost ticks.
        let edge: Double
        var first: Int, last: Int
        var lo: Double, hi: Double

        init(iterations: [Int], finite: [Double], infinite: Bool) {
            edge = infinite ? 26 : 10
            first = iterations.min() ?? 0
            last = max(iterations.max() ?? 1, first)
            lo = finite.min() ?? 0
            hi = finite.max() ?? 1
            if hi - lo <= 0 {
                let pad = lo == 0 ? 0.5 : abs(lo) * 0.05
                lo -= pad
                hi += pad
            }
        }

        var plotBottom: Double { height - bottom }
        var plotRight: Double { width - right }

        /// Half an iteration of room on each side, so that a band covers its first and last points.
        func x(_ i: Double) -> Double {
            let span = Double(last - first) + 1
            return left + (i - Double(first) + 0.5) / span * (plotRight - left)
        }
        func x(_ i: Int) -> Double { x(Double(i)) }

        func y(_ score: Double) -> Double {
            if score == .infinity { return top + 7 }
            if score == -.infinity { return plotBottom - 7 }
            return plotBottom - edge - (score - lo) / (hi - lo) * (plotBottom - top - 2 * edge)
        }
    }

    static func svg(_ data: ReportData) -> String {
        let entries = data.entries
        let finite = entries.compactMap(\.row.score).filter(\.isFinite)
            + entries.filter { $0.row.status == .keep }.compactMap(\.row.sealed).filter(\.isFinite)
        let infinite = entries.contains { $0.row.score?.isInfinite == true }
        let scale = Scale(iterations: entries.map(\.row.iteration), finite: finite, infinite: infinite)
        var svg = "<svg xmlns='http://www.w3.org/2000/svg' class='chart' viewBox='0 0 \(Int(scale.width)) \(Int(scale.height))'"
        svg += " width='\(Int(scale.width))' height='\(Int(scale.height))' role='img' aria-label='score per iteration'>"
        svg += "<rect width='100%' height='100%' fill='white'/>"
        svg += phaseBands(data.phaseBands, scale)
        svg += axes(scale, metric: data.config.evaluator.metric, infinite: infinite)
        svg += nudgeMarkers(data.nudges, scale)
        svg += bestLine(entries.map(\.row), scale)
        svg += sealedLine(entries.map(\.row), scale)
        svg += entries.map { point($0.row, scale) }.joined()
        if entries.isEmpty {
            svg += "<text x='\((scale.left + scale.plotRight) / 2)' y='\(scale.height / 2)' text-anchor='middle' fill='#57606a'>no iterations yet</text>"
        }
        return svg + "</svg>"
    }

    /// The frame, grid lines and labels: five score ticks over the finite range, at most ~12 iteration ticks.
    static func axes(_ scale: Scale, metric: String, infinite: Bool) -> String {
        var svg = ""
        for k in 0...4 {
            let value = scale.lo + (scale.hi - scale.lo) * Double(k) / 4
            let y = scale.y(value)
            svg += "<line x1='\(scale.left)' y1='\(y)' x2='\(scale.plotRight)' y2='\(y)' stroke='#d0d7de' stroke-width='0.5'/>"
            svg += "<text x='\(scale.left - 6)' y='\(y + 4)' font-size='11' text-anchor='end'>\(Reports.escape(format(value)))</text>"
        }
        if infinite {
            svg += "<text x='\(scale.left - 6)' y='\(scale.y(.infinity) + 4)' font-size='11' text-anchor='end'>inf</text>"
            svg += "<text x='\(scale.left - 6)' y='\(scale.y(-.infinity) + 4)' font-size='11' text-anchor='end'>-inf</text>"
        }
        svg += "<line x1='\(scale.left)' y1='\(scale.plotBottom)' x2='\(scale.plotRight)' y2='\(scale.plotBottom)' stroke='#444'/>"
        svg += "<line x1='\(scale.left)' y1='\(scale.top)' x2='\(scale.left)' y2='\(scale.plotBottom)' stroke='#444'/>"
        let count = scale.last - scale.first + 1
        let step = max(1, Int((Double(count) / 12).rounded(.up)))
        for i in stride(from: scale.first, through: scale.last, by: step) {
            svg += "<text x='\(scale.x(i))' y='\(scale.plotBottom + 16)' font-size='11' text-anchor='middle'>\(i)</text>"
        }
        svg += "<text x='\((scale.left + scale.plotRight) / 2)' y='\(scale.height - 10)' font-size='12' text-anchor='middle'>iteration</text>"
        let middle = (scale.top + scale.plotBottom) / 2
        svg += "<text x='18' y='\(middle)' font-size='12' text-anchor='middle' transform='rotate(-90 18 \(middle))'>\(Reports.escape(metric))</text>"
        return svg
    }

    /// One shaded rect per phase band, its name above the plot (cut to the band's width), the
    /// strategy in the tooltip.
    static func phaseBands(_ bands: [ReportData.PhaseBand], _ scale: Scale) -> String {
        var svg = ""
        for (index, band) in bands.enumerated() {
            let x0 = scale.x(Double(band.first) - 0.5), x1 = scale.x(Double(band.last) + 0.5)
            let range = band.first == band.last ? "iteration \(band.first)" : "iterations \(band.first)–\(band.last)"
            let title = "phase \(band.name), \(range)" + (band.strategy.map { ": \($0)" } ?? "")
            svg += "<g class='phase-band'><title>\(Reports.escape(title))</title>"
            svg += "<rect class='phase' x='\(x0)' y='\(scale.top)' width='\(x1 - x0)' height='\(scale.plotBottom - scale.top)'"
            svg += " fill='\(bandFills[index % bandFills.count])'/>"
            // About 6.5 px a character at 11 px: a label never runs into the next band.
            let fits = max(0, Int((x1 - x0 - 6) / 6.5))
            let label = band.name.count <= fits ? band.name : fits >= 2 ? String(band.name.prefix(fits - 1)) + "…" : ""
            if !label.isEmpty {
                svg += "<text class='phase-label' x='\(x0 + 3)' y='\(scale.top - 6)' font-size='11' fill='#57606a'>\(Reports.escape(label))</text>"
            }
            svg += "</g>"
        }
        return svg
    }

    /// A dashed vertical line at each iteration that was delivered nudges; the texts are its tooltip.
    static func nudgeMarkers(_ nudges: [(iteration: Int, texts: [String])], _ scale: Scale) -> String {
        nudges.map { nudge in
            let x = scale.x(nudge.iteration)
            let title = "nudge before iteration \(nudge.iteration): " + nudge.texts.joined(separator: " | ")
            return "<g class='nudge' data-iteration='\(nudge.iteration)'><title>\(Reports.escape(title))</title>"
                + "<line x1='\(x)' y1='\(scale.top)' x2='\(x)' y2='\(scale.plotBottom)' stroke='\(nudgeColor)' stroke-width='1.5' stroke-dasharray='5 4'/>"
                + "<line x1='\(x)' y1='\(scale.top)' x2='\(x)' y2='\(scale.plotBottom)' stroke='transparent' stroke-width='8'/>"
                + "<path d='M\(x - 5),\(scale.top) L\(x + 5),\(scale.top) L\(x),\(scale.top + 7) Z' fill='\(nudgeColor)'/></g>"
        }.joined()
    }

    /// The best-so-far step line through the kept scores.
    static func bestLine(_ rows: [LedgerRow], _ scale: Scale) -> String {
        var best: Double?
        var points: [String] = []
        for row in rows where row.status == .keep {
            guard let score = row.score, !score.isNaN else { continue }
            if let previous = best { points.append("\(scale.x(row.iteration)),\(scale.y(previous))") }
            best = score
            points.append("\(scale.x(row.iteration)),\(scale.y(score))")
        }
        if let best { points.append("\(scale.x(scale.last)),\(scale.y(best))") }
        return "<polyline class='best' fill='none' stroke='#1a7f37' stroke-width='2' points='\(points.joined(separator: " "))'/>"
    }

    /// The sealed test set's scores of the kept rows: a second line, never seen by the agent.
    static func sealedLine(_ rows: [LedgerRow], _ scale: Scale) -> String {
        let points = rows.filter { $0.status == .keep }.compactMap { row in
            row.sealed.map { "\(scale.x(row.iteration)),\(scale.y($0))" }
        }
        guard !points.isEmpty else { return "" }
        return "<polyline class='sealed' fill='none' stroke='\(sealedColor)' stroke-width='2' stroke-dasharray='6 3' points='\(points.joined(separator: " "))'><title>sealed test set</title></polyline>"
    }

    /// One row's point: a circle (hollow on the edge for an infinite score) or a cross on the axis.
    static func point(_ row: LedgerRow, _ scale: Scale) -> String {
        let color = colors[row.status] ?? "#000"
        let x = scale.x(row.iteration)
        let title = "<title>\(row.iteration): \(Reports.escape(row.status.rawValue)) \(Reports.escape(row.score.map(format) ?? "no score")) \(Reports.escape(row.description))</title>"
        guard let score = row.score, !score.isNaN else {
            let y = scale.plotBottom
            return "<path class='point noscore \(row.status.rawValue)' data-iteration='\(row.iteration)' d='M\(x - 4),\(y - 4) L\(x + 4),\(y + 4) M\(x - 4),\(y + 4) L\(x + 4),\(y - 4)' stroke='\(color)' stroke-width='2.5'>\(title)</path>"
        }
        if score.isInfinite {
            return "<circle class='point inf \(row.status.rawValue)' data-iteration='\(row.iteration)' cx='\(x)' cy='\(scale.y(score))' r='4' fill='white' stroke='\(color)' stroke-width='2'>\(title)</circle>"
        }
        return "<circle class='point \(row.status.rawValue)' data-iteration='\(row.iteration)' cx='\(x)' cy='\(scale.y(score))' r='4' fill='\(color)'>\(title)</circle>"
    }
}
