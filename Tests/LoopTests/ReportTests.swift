import Foundation
import XCTest

@testable import ProctorLoop

/// Issue 8, "the report people want to look at": `proctor report` on a real run, with phases,
/// nudges, costs and memory files added the way the runtime writes them, parsed back from the HTML.
final class ReportTests: XCTestCase {
    static let xss = "<script>alert(1)</script>"

    /// Iteration 1 keeps (with a hostile description), 2 discards, 3 crashes without a score,
    /// 4 is rejected over the trees limit (an audit record), 5 keeps.
    static func spec() -> WorkspaceSpec {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.5; echo "SUMMARY: x to 0.5 \(xss)" ;;
            2) set_var X 0.1; echo "SUMMARY: x to 0.1" ;;
            3) set_var MODE '"nonjson"'; echo "SUMMARY: broken output" ;;
            4) set_var TREES 500; echo "SUMMARY: more trees" ;;
            *) set_var X 0.7; echo "SUMMARY: x to 0.7" ;;
            esac
            """
        spec.extraSections = """
            [[phases]]
            name     = "explore"
            until    = 3
            strategy = "try <em>very</em> different things"

            [[phases]]
            name     = "exploit"
            strategy = "tune the best"
            """
        return spec
    }

    /// `proctor audit` padded each count to six characters with `padding(toLength:)`, which also
    /// cuts: a flood of 1,438,235 denied writes read as 143823.
    func testAuditCountsAreNeverCut() {
        let group = Reports.AuditSummary.Group(kind: "write", decision: "denied", rule: nil, count: 1_438_235, paths: [], syscalls: [])
        let small = Reports.AuditSummary.Group(kind: "write", decision: "denied", rule: "locked", count: 7, paths: [], syscalls: [])
        let lines = Reports.auditText(Reports.AuditSummary(records: 2, runs: ["r"], groups: [group, small], unenforced: []))
        XCTAssertTrue(lines.contains("1438235 write denied"), "\(lines)")
        XCTAssertTrue(lines.contains("7      write denied [locked]"), "\(lines)")
    }

    func testReportChartsEveryRowWithPhasesNudgesCostMemoryAndAuditAllEscaped() throws {
        let ws = try LoopWorkspace(ReportTests.spec())
        let result = try ws.run(["--iterations", "5"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep", "discard", "crash", "rejected", "keep"], ws.ledgerLines.joined(separator: "\n"))

        // What the runtime records for phases, nudges and an http agent's usage, and a trading
        // loop's failed hard gate (-inf) as iteration 6.
        try rewriteRecords(ws) { record in
            let i = record["iteration"] as? Int ?? 0
            if i > 0 { record["phase"] = i <= 3 ? "explore" : "exploit" }
            if i == 2 { record["nudges"] = ["try <b>smaller</b> x", "then stop"] }
            if i > 0 { record["usage"] = ["promptTokens": 100, "completionTokens": 50, "costUSD": 0.5] }
        }
        var gate = try XCTUnwrap(ws.records.last)
        gate["iteration"] = 6
        gate["status"] = "discard"
        gate["score"] = "-inf"
        gate["description"] = "drawdown gate failed"
        gate["usage"] = nil
        try append(ws, ".proctor/runs.jsonl", String(decoding: try JSONSerialization.data(withJSONObject: gate, options: [.sortedKeys]), as: UTF8.self))
        try append(ws, ".proctor/results.tsv", "6\t\t-inf\t\tdiscard\t1.0\t\t\t\t\tdrawdown gate failed")

        try ws.write(".proctor/memory/learnings.md", """
            # Learnings
            - x near **0.7** helps
            - a hostile one: \(ReportTests.xss) <img src=x onerror=alert(2)>

            | change | effect |
            |---|---|
            | x 0.5 | +0.3 |

            ```
            \(ReportTests.xss)
            ```
            """)
        try ws.write(".proctor/memory/near_misses.md", "1. x to 0.1: 0.4 (`best` 0.8)\n")

        let out = ws.base + "/report.html"
        let report = try ws.proctor(["report", "--workspace", ws.root, "--out", out])
        XCTAssertEqual(report.status, 0, report.text)
        let html = try String(contentsOfFile: out, encoding: .utf8)

        // One point per ledger row, a circle for each row with a score (-inf included, on the edge).
        let rows = ws.rows
        XCTAssertEqual(rows.count, 7)
        XCTAssertEqual(count(html, "class='point "), rows.count, "one point per ledger row")
        XCTAssertEqual(count(html, "<circle class='point "), rows.filter { $0.score != nil }.count)
        for row in rows { XCTAssertEqual(count(html, "class='point [a-z ]*' data-iteration='\(row.iteration)'"), 1, "iteration \(row.iteration)") }
        XCTAssertEqual(count(html, "<path class='point noscore crash' data-iteration='3'"), 1)
        XCTAssertEqual(count(html, "<circle class='point inf discard' data-iteration='6'[^>]*><title>6: discard -inf "), 1, "-inf on the edge, titled")

        // Two phase bands, named, the strategy escaped in the tooltip; one nudge marker at iteration 2.
        XCTAssertEqual(count(html, "<rect class='phase'"), 2)
        XCTAssertEqual(count(html, "class='phase-label'[^>]*>explore<"), 1)
        XCTAssertEqual(count(html, "class='phase-label'[^>]*>exploit<"), 1)
        XCTAssertTrue(html.contains("try &lt;em&gt;very&lt;/em&gt; different things"))
        XCTAssertEqual(count(html, "<g class='nudge' data-iteration='2'><title>[^<]*try &lt;b&gt;smaller&lt;/b&gt; x"), 1)
        XCTAssertEqual(count(html, "<g class='nudge'"), 1)
        XCTAssertEqual(count(html, "<li>before iteration 2: "), 2, "both nudges listed")

        // Cost of progress: two keeps after the baseline, $0.50 for each of five iterations.
        XCTAssertEqual(count(html, "<th>kept improvements</th><td class='n'>2</td>"), 1)
        XCTAssertEqual(count(html, "<th>cost per kept improvement</th><td class='n'>\\$1.25</td>"), 1)
        XCTAssertEqual(count(html, "<th>time per kept improvement</th><td class='n'>[0-9]"), 1)

        // Memory: markdown as escaped HTML; the missing file says so.
        let learnings = try XCTUnwrap(section(html, "learnings"))
        XCTAssertTrue(learnings.contains("<h3>Learnings</h3>") && learnings.contains("<b>0.7</b>"), learnings)
        XCTAssertTrue(learnings.contains("<table class='md'><tr><th>change</th><th>effect</th></tr><tr><td>x 0.5</td>"), learnings)
        XCTAssertTrue(learnings.contains("<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>"), learnings)
        XCTAssertTrue(learnings.contains("&lt;img src=x onerror=alert(2)&gt;"), learnings)
        XCTAssertTrue(try XCTUnwrap(section(html, "near-misses")).contains("<ol><li>x to 0.1: 0.4 (<code>best</code> 0.8)</li></ol>"))
        XCTAssertTrue(try XCTUnwrap(section(html, "do-not-retry")).contains("none yet"))

        // The audit as a table by kind and rule.
        XCTAssertEqual(count(html, "<table class='audit'>.*<tr><td>limit</td><td>limits</td><td>rejected</td><td class='n'>1</td>"), 1)

        // Agent text is escaped everywhere; the page loads nothing and runs nothing.
        XCTAssertTrue(html.contains("x to 0.5 &lt;script&gt;alert(1)&lt;/script&gt;"))
        XCTAssertFalse(html.contains("<script") || html.contains("<img") || html.contains("<em>") || html.contains("<b>smaller"))
        XCTAssertEqual(count(html, "<[a-z]+[^<>]*\\s(src|href|on[a-z]+)="), 0, "no tag loads or runs anything")
        XCTAssertEqual(count(html, "https?://"), 1, "only the SVG namespace")

        // A new run: the chart shows that run only; the ledger table keeps every row.
        let again = try ws.run(["--iterations", "1"])
        XCTAssertEqual(again.status, 0, again.text)
        let second = try ws.proctor(["report", "--workspace", ws.root, "--out", out])
        XCTAssertEqual(second.status, 0, second.text)
        let latest = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertEqual(count(latest, "class='point "), 2, "the new run's baseline and iteration")
        XCTAssertEqual(count(latest, "<g class='nudge'"), 0, "the nudge was the earlier run's")
        XCTAssertEqual(count(latest, "<tr class='(keep|discard|crash|timeout|rejected)'>"), ws.rows.count)
    }

    func testReportOfAWorkspaceWithoutRunsSaysSo() throws {
        let ws = try LoopWorkspace()
        let out = ws.base + "/report.html"
        let report = try ws.proctor(["report", "--workspace", ws.root, "--out", out])
        XCTAssertEqual(report.status, 0, report.text)
        let html = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertEqual(count(html, "class='point "), 0)
        XCTAssertTrue(html.contains("no iterations yet"))
        XCTAssertEqual(count(html, "<p class='none'>none yet</p>"), 3, "three memory sections")
        XCTAssertTrue(html.contains("<th>time per kept improvement</th><td class='n'>n/a</td>"))
        XCTAssertTrue(html.contains("<th>cost per kept improvement</th><td class='n'>n/a</td>"))
    }

    /// `--out -`: the page on stdout, no file named "-" anywhere, the default report untouched.
    func testReportToStandardOutput() throws {
        let ws = try LoopWorkspace()
        let report = try ws.proctor(["report", "--workspace", ws.root, "--out", "-"])
        XCTAssertEqual(report.status, 0, report.text)
        XCTAssertTrue(report.stdout.hasPrefix("<!doctype html>") && report.stdout.contains("no iterations yet"), report.text)
        XCTAssertTrue(report.stdout.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix("</html>"), String(report.stdout.suffix(200)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("-")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: FileManager.default.currentDirectoryPath + "/-"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/report.html")))
    }

    /// The memory files' markdown: only the tags the converter writes, whatever the text holds.
    func testMarkdownEscapesEverythingAndKeepsItsOwnTagsOnly() {
        let text = """
            # Title <i>x</i>
            - `a <b>` and **bold <u>**
            - unbalanced ` and ** stay as text <s>
            2. ordered

            | a \\| b | c |
            |---|:-:|
            | <td>1 | **2** |
            [link](javascript:alert(1)) <a href='x'>y</a>
            ```html
            <script>alert(1)</script>
            """
        let html = SafeMarkdown.html(text)
        XCTAssertEqual(html, "<h3>Title &lt;i&gt;x&lt;/i&gt;</h3>"
            + "<ul><li><code>a &lt;b&gt;</code> and <b>bold &lt;u&gt;</b></li><li>unbalanced ` and ** stay as text &lt;s&gt;</li></ul>"
            + "<ol><li>ordered</li></ol>"
            + "<table class='md'><tr><th>a | b</th><th>c</th></tr><tr><td>&lt;td&gt;1</td><td><b>2</b></td></tr></table>"
            + "<p>[link](javascript:alert(1)) &lt;a href=&#39;x&#39;&gt;y&lt;/a&gt;</p>"
            + "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>")
    }

    /// A near miss's diff sits in a ```` fence because its lines may hold ```: such a line stays code
    /// (it used to close the fence, and the rest of the diff rendered as headings and lists).
    func testALongerFenceIsNotClosedByAShorterOne() {
        let html = SafeMarkdown.html("````diff\n ```\n-# not a heading\n+- not a list\n````\nafter")
        XCTAssertEqual(html, "<pre><code> ```\n-# not a heading\n+- not a list</code></pre><p>after</p>")
    }

    /// Infinite scores sit on the edges, outside the finite range, which they do not stretch.
    func testChartScaleKeepsInfiniteScoresOnTheEdges() {
        let scale = ReportChart.Scale(iterations: [0, 1, 2], finite: [0.5, 0.7], infinite: true)
        XCTAssertEqual(scale.lo, 0.5)
        XCTAssertEqual(scale.hi, 0.7)
        XCTAssertLessThan(scale.y(.infinity), scale.y(0.7))
        XCTAssertGreaterThan(scale.y(-.infinity), scale.y(0.5))
        XCTAssertLessThanOrEqual(scale.y(-.infinity), scale.plotBottom)
        XCTAssertGreaterThanOrEqual(scale.y(.infinity), scale.top)
        XCTAssertGreaterThanOrEqual(scale.y(0.7) - scale.y(.infinity), 14, "the inf label clears the top tick")
        let flat = ReportChart.Scale(iterations: [0], finite: [2], infinite: false)
        XCTAssertLessThan(flat.lo, 2)
        XCTAssertGreaterThan(flat.hi, 2)
    }

    // MARK: helpers

    func count(_ text: String, _ pattern: String) -> Int {
        (try? NSRegularExpression(pattern: pattern, options: [.dotMatchesLineSeparators]))
            .map { $0.numberOfMatches(in: text, range: NSRange(text.startIndex..., in: text)) } ?? -1
    }

    /// The body of `<section class='memory' id='ID'>`.
    func section(_ html: String, _ id: String) -> String? {
        guard let start = html.range(of: "<section class='memory' id='\(id)'>") else { return nil }
        return html[start.upperBound...].range(of: "</section>").map { String(html[start.upperBound..<$0.lowerBound]) }
    }

    func rewriteRecords(_ ws: LoopWorkspace, _ change: (inout [String: Any]) -> Void) throws {
        var lines: [String] = []
        for var record in ws.records {
            change(&record)
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self))
        }
        try ws.write(".proctor/runs.jsonl", lines.map { $0 + "\n" }.joined())
    }

    func append(_ ws: LoopWorkspace, _ rel: String, _ line: String) throws {
        try ws.write(rel, (ws.read(rel) ?? "") + line + "\n")
    }
}
