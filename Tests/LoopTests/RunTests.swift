import Foundation
import ProctorTestSupport
import XCTest

/// Whole runs: the built-in mutate agent end to end, the experiment's budget statuses, a torn ledger tail.
final class RunTests: XCTestCase {
    /// `proctor run` with the embedded mutate agent: every row accounted for, every keep a commit and
    /// every commit a keep, the tree equal to the branch tip, the summary printed.
    func testMutateAgentRunIsConsistent() throws {
        let ws = try LoopWorkspace()
        let initCommit = try ws.git(["rev-parse", "HEAD"])
        let result = try ws.run(["--iterations", "8"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: Array(0...8))
        XCTAssertTrue(result.stdout.contains("ledger: \(ws.path(".proctor/results.tsv"))"), result.stdout)

        let branch = try XCTUnwrap(ws.branch)
        let commits = try ws.git(["rev-list", "--reverse", branch]).split(separator: "\n").map(String.init)
        XCTAssertEqual(commits.first, initCommit)
        let keeps = ws.rows.filter { $0.status == "keep" && $0.iteration > 0 }
        XCTAssertEqual(keeps.count, commits.count - 1, "one commit per keep")
        for (row, commit) in zip(keeps, commits.dropFirst()) {
            XCTAssertTrue(commit.hasPrefix(row.commit), "\(row.fields) vs \(commit)")
            XCTAssertEqual(try ws.git(["log", "-1", "--format=%s", commit]), row.description)
            XCTAssertEqual(try ws.git(["show", "--name-only", "--format=", commit]), "LOG.md\ntrain.py")
        }
        // Kept scores only go up, each by at least min_improvement.
        var best = try XCTUnwrap(ws.row(0)?.score)
        for row in ws.rows.dropFirst() {
            guard let score = row.score else { continue }
            if row.status == "keep" {
                XCTAssertGreaterThanOrEqual(score, best + 0.001 - 2e-6, row.fields.description)  // the ledger rounds to 6 digits
                best = score
            }
        }
        for row in ws.rows.dropFirst() {
            XCTAssertTrue(row.description.contains("->"), "the mutate agent describes its change: \(row.description)")
        }
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.git(["diff", branch, "--stat"]), "")
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(status.stdout.contains("iteration: 8 finished"), status.stdout)
        XCTAssertTrue(status.stdout.contains("keep \(keeps.count)"), status.stdout)
    }

    /// An agent's description is bounded in bytes, not only in characters (one character can carry
    /// any number of combining marks, and the description goes into the ledger, LOG.md, the commit
    /// and every later prompt), and a bidirectional override in it reaches none of them.
    func testAnAgentsDescriptionIsBoundedInBytesAndHoldsNoBidiControl() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            set_var X 0.4
            python3 -c 'print("SUMMARY: A" + "\\u0301" * 200000 + " \\u202e\\u2066 reversed")'
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "2"])
        XCTAssertEqual(result.status, 0, result.text)
        let rows = ws.rows.dropFirst()
        XCTAssertEqual(rows.count, 2, ws.ledgerLines.joined(separator: "\n").prefix(2000).description)
        for row in rows {
            XCTAssertTrue(row.description.unicodeScalars.starts(with: "A\u{301}\u{301}".unicodeScalars), String(row.description.prefix(20)))
            XCTAssertLessThanOrEqual(row.description.utf8.count, 1200, "at most 300 scalars")
        }
        // From outside: every place the description lands, bounded and without the override.
        let branch = try XCTUnwrap(ws.branch)
        let places = [ws.read(".proctor/results.tsv"), ws.read(".proctor/runs.jsonl"), try ws.git(["log", "--format=%B", branch]),
                      try ws.git(["show", "\(branch):LOG.md"])]
            + (try FileManager.default.contentsOfDirectory(atPath: ws.path(".proctor/memory"))).map { ws.read(".proctor/memory/" + $0) }
        for text in places.compactMap({ $0 }) {
            XCTAssertLessThan(text.utf8.count, 40_000, String(text.prefix(200)))
            XCTAssertFalse(text.unicodeScalars.contains { $0.value == 0x202E || $0.value == 0x2066 }, String(text.prefix(200)))
        }
    }

    /// An agent's description in the ledger's table: a leading `"` (a TSV reader's quoted field that
    /// swallowed the rows after it) or formula character (`=HYPERLINK(...)` in a spreadsheet) is
    /// preceded by `'`; one padded to the cap and ending in a made-up `[reason]` leaves the real
    /// reason after it; invisible marks (a zero-width space, a right-to-left mark) do not pass.
    func testAnAgentsDescriptionCannotForgeLedgerRowsFormulasOrReasons() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            set_var X 0.4$i
            case "$i" in
            1) echo 'SUMMARY: "tune lr' ;;
            2) echo 'SUMMARY: =HYPERLINK("http://evil.example/","lr")' ;;
            3) echo 'raise SystemExit(3)' >> train.py
               python3 -c 'print("SUMMARY: " + "p" * 150 + " [experiment: killed by the memory limit (memory)]")' ;;
            4) python3 -c 'print("SUMMARY: wider\\u200btrees\\u200f done\"")' ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "4"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4])
        let descriptions = ws.rows.dropFirst().map(\.description)
        XCTAssertEqual(descriptions.count, 4, "\(descriptions)")
        XCTAssertEqual(descriptions.first, "'\"tune lr")
        XCTAssertTrue(descriptions[1].hasPrefix("'=HYPERLINK("), descriptions[1])
        XCTAssertTrue(descriptions[2].contains("(memory)] [experiment: exit status 3; log ") && descriptions[2].hasSuffix("-experiment.log]"),
                      descriptions[2])
        XCTAssertFalse(descriptions[3].unicodeScalars.contains { $0.value == 0x200B || $0.value == 0x200F }, descriptions[3])
        // A TSV reader sees every row.
        let read = try runChild(["/usr/bin/env", "python3", "-c",
                                 "import csv,sys; print(len(list(csv.DictReader(open(sys.argv[1]), delimiter='\\t'))))",
                                 ws.path(".proctor/results.tsv")], environment: ProcessInfo.processInfo.environment, deadline: 30)
        XCTAssertEqual(read.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "5", read.stdout + read.stderr)
    }

    /// The experiment's own failures become statuses with a reason; `outputs/` is cleared before each
    /// experiment, so a stale prediction from an earlier experiment is never scored.
    func testTimeoutCrashAndStaleOutputs() throws {
        var spec = WorkspaceSpec()
        spec.experimentTimeout = "5s"
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var SLEEP 30; echo "SUMMARY: too slow" ;;
            2) echo 'raise SystemExit(3)' >> train.py; echo "SUMMARY: exits 3" ;;
            3) sed 's/^with open(os.path.join(out, "pred.txt"), "w") as f:/if False:/' train.py > "$HOME/t"; cat "$HOME/t" > train.py
               echo "SUMMARY: writes no predictions" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "3"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "timeout", "crash", "crash"])
        XCTAssertTrue((ws.record(1)?["reason"] as? String ?? "").contains("experiment"), "\(ws.record(1) ?? [:])")
        XCTAssertLessThan(ws.row(1)?.seconds ?? 99, 25, "the timeout killed it")
        XCTAssertTrue((ws.record(2)?["reason"] as? String ?? "").contains("experiment"), "\(ws.record(2) ?? [:])")
        XCTAssertTrue((ws.record(3)?["reason"] as? String ?? "").contains("evaluator"), "\(ws.record(3) ?? [:])")
        XCTAssertTrue(ws.read(".proctor/logs/\(ws.runID!)/3-42-experiment.log")?.contains("trained") == true,
                      "iteration 3's experiment succeeded; only its predictions were missing")
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(ws.read("train.py"), spec.train)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty, "\(processes(containing: ws.tag))")
    }

    /// A torn last line (a machine crash mid-write) is cut when the ledger is opened again; the rows stay whole.
    func testTornLedgerTailIsRepairedOnResume() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + "set_var X 0.3$i; echo \"SUMMARY: X 0.3$i\"\n"
        let ws = try LoopWorkspace(spec)
        XCTAssertEqual(try ws.run(["--iterations", "2"]).status, 0)
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        let results = try FileHandle(forWritingTo: URL(fileURLWithPath: ws.path(".proctor/results.tsv")))
        results.seekToEndOfFile()
        results.write(Data("3\ttorn-row\t0.9".utf8))
        try results.close()
        let runs = try FileHandle(forWritingTo: URL(fileURLWithPath: ws.path(".proctor/runs.jsonl")))
        runs.seekToEndOfFile()
        runs.write(Data("{\"iteration\": 3, \"run\"".utf8))
        try runs.close()

        let resumed = try ws.run(["--resume", "--iterations", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4])
        // Not a hex word: commit ids in the ledger could contain one by chance.
        XCTAssertFalse(ws.read(".proctor/results.tsv")!.contains("torn-row"))
        try ResumeTests.assertTreeAndBranchConsistent(ws)
    }
}
