import Foundation
import ProctorConfig
import ProctorLoop
import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 8 from the command line: `proctor nudge` and `proctor analyze`, the built binary.
final class SteeringCLITests: XCTestCase {
    static let canary = "CANARY-HIDDEN-5f0c2a91d7"

    /// A workspace whose hidden directory holds the canary, made by `proctor init`.
    func workspace() throws -> LoopWorkspace {
        try LoopWorkspace(WorkspaceSpec(), files: ["holdout/canary.txt": Self.canary + "\n"])
    }

    func testNudgeCommandNeedsARun() throws {
        let ws = try workspace()
        let refused = try ws.proctor(["nudge", "--workspace", ws.root, "try fewer trees"])
        XCTAssertEqual(refused.status, 125, refused.text)
        XCTAssertTrue(refused.stderr.contains("has no run to nudge"), refused.text)
        XCTAssertTrue(refused.stderr.contains("proctor run"), refused.text)
        XCTAssertNil(ws.read(".proctor/nudges.jsonl"))

        try ws.write(".proctor/state.json", "{}")
        let queued = try ws.proctor(["nudge", "--workspace", ws.root, "try fewer trees"])
        XCTAssertEqual(queued.status, 0, queued.text)
        XCTAssertTrue(queued.stdout.contains("nudge #1 queued"), queued.text)
        let bad = try ws.proctor(["nudge", "--workspace", ws.root, "evil \u{1B}]0;title\u{07}"])
        XCTAssertEqual(bad.status, 125, bad.text)
        XCTAssertFalse(bad.stderr.contains("\u{1B}"), "the refusal does not echo the escape")
        XCTAssertEqual(NudgeQueue(root: ws.root).all().map(\.text), ["try fewer trees"])
    }

    /// From the CLI with no run: it takes the lock, runs at once in the experiment sandbox and exits
    /// with the command's status; hidden files are absent, the workspace read-only, and its outputs
    /// go to its own scratch, not to the outputs the evaluator reads.
    func testAnalysisIsSandboxedKeptAndItsStatusPropagated() throws {
        let ws = try workspace()
        try ws.write("outputs/pred.txt", "EVALUATOR-INPUT\n")
        let train = ws.bytes("train.py")
        let script = """
            cat holdout/canary.txt holdout/target.txt; ls holdout
            echo ANALYSIS-MARK; echo "outputs=$PROCTOR_OUTPUTS"; echo "notes: $(cat LOG.md)"
            echo scratch > "$PROCTOR_OUTPUTS/made.txt"; echo forged > "$PROCTOR_OUTPUTS/pred.txt"
            echo hacked >> train.py || echo "train.py is read-only"
            echo x > ../escape.txt; printf 'esc \\033[2J done\\n'
            exit 7
            """
        let outcome = try ws.proctor(["analyze", "--workspace", ws.root, "--", "sh", "-c", script])
        XCTAssertEqual(outcome.status, 7, outcome.text)
        XCTAssertTrue(outcome.stdout.contains("analysis kept in \(ws.root)/.proctor/analysis/1"), outcome.text)
        XCTAssertTrue(outcome.stdout.contains("ANALYSIS-MARK"), "the summary shows the output: \(outcome.text)")
        XCTAssertTrue(outcome.stdout.contains("status 7"), outcome.text)
        XCTAssertFalse(outcome.stdout.contains("\u{1B}"), "escape sequences are shown, not sent")
        let log = try XCTUnwrap(ws.read(".proctor/analysis/1/output.log"))
        XCTAssertTrue(log.contains("ANALYSIS-MARK"), log)
        XCTAssertTrue(log.contains("outputs=\(ws.root)/outputs"), "the usual path inside: \(log)")
        XCTAssertTrue(log.contains("train.py is read-only"), log)
        XCTAssertTrue(log.contains("notes: # notes"), "the notes are readable in an analysis: \(log)")
        // Judged from outside: the canary's bytes are nowhere in what was kept or printed.
        XCTAssertFalse(outcome.stdout.contains(Self.canary) || outcome.stderr.contains(Self.canary))
        XCTAssertFalse(try filesUnder(ws.root + "/.proctor/analysis").contains { $0.1.contains(Self.canary) })
        XCTAssertEqual(ws.read(".proctor/analysis/1/scratch/outputs/made.txt"), "scratch\n")
        XCTAssertEqual(ws.read(".proctor/analysis/1/scratch/outputs/pred.txt"), "forged\n")
        XCTAssertEqual(ws.read("outputs/pred.txt"), "EVALUATOR-INPUT\n", "the evaluator's outputs are untouched")
        XCTAssertNil(ws.read("outputs/made.txt"))
        XCTAssertEqual(ws.bytes("train.py"), train)
        XCTAssertNil(ws.read("../escape.txt"))
        let meta = try XCTUnwrap(ws.bytes(".proctor/analysis/1/meta.json"))
        let record = try JSONLines.decoder().decode(AnalysisRecord.self, from: meta)
        XCTAssertEqual(record.status, 7)
        XCTAssertEqual(record.origin, "cli")
        XCTAssertEqual(record.command, ["sh", "-c", script])

        // The next one gets the next number, and both reach the agent once.
        let second = try ws.proctor(["analyze", "--workspace", ws.root, "--", "/bin/true"])
        XCTAssertEqual(second.status, 0, second.text)
        let store = AnalysisStore(root: ws.root)
        XCTAssertEqual(store.pending().map(\.number), [1, 2])
        let text = store.summaries(since: 0)
        XCTAssertTrue(text.contains("analysis #1: sh -c 'cat holdout") && text.contains("analysis #2: /bin/true"), text)
        XCTAssertTrue(text.contains("esc \\x1b[2J done"), text)
        try store.markDelivered(upTo: 2)
        XCTAssertEqual(AnalysisStore(root: ws.root).pending(), [])
        XCTAssertEqual(store.summaries(since: 2), "")
    }

    private func filesUnder(_ dir: String) throws -> [(String, String)] {
        var found: [(String, String)] = []
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return found }
        while let rel = walker.nextObject() as? String {
            var st = stat()
            guard lstat(dir + "/" + rel, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            found.append((rel, String(decoding: FileManager.default.contents(atPath: dir + "/" + rel) ?? Data(), as: UTF8.self)))
        }
        return found
    }
}
