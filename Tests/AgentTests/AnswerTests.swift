import XCTest

@testable import ProctorAgents

/// Parsing answers and applying diffs, without a server or a disk.
final class AnswerTests: XCTestCase {
    func testSummaryAndLongerFence() throws {
        let answer = try Answer.parse(
            """
            **SUMMARY:** document the run
            FILE: `LOG.md`
            ````markdown
            Example:
            ```python
            x = 1
            ```
            ````
            """)
        XCTAssertEqual(answer.summary, "document the run")
        XCTAssertEqual(answer.changes, [.replace(path: "LOG.md", contents: "Example:\n```python\nx = 1\n```\n")])
    }

    func testOtherFencesAreIgnored() throws {
        let answer = try Answer.parse("SUMMARY: a\nFor example:\n```python\nprint(1)\n```\n")
        XCTAssertEqual(answer.changes, [])
    }

    func testDiffHeadersAndRefusals() throws {
        let answer = try Answer.parse(
            "```diff\ndiff --git a/x.py b/x.py\nindex 1..2 100644\n--- a/x.py\t2024-01-01\n+++ b/x.py\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n```"
        )
        guard case .patch(let patch) = answer.changes.first else { return XCTFail("no patch") }
        XCTAssertEqual(patch.oldPath, "x.py")
        XCTAssertEqual(patch.hunks.count, 1)

        for (diff, text) in [
            ("--- a/x.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n", "deleting"),
            ("--- a/x.py\n+++ b/y.py\n@@ -1 +1 @@\n-a\n+b\n", "renaming"),
            ("old mode 100644\nnew mode 100755\n", "modes"),
            ("--- a/x.py\n+++ b/x.py\nhello\n", "no hunks"),
            ("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n?b\n", "unexpected line"),
            // Found by bench/fuzz.sh (issue 10): a header with no number after "-" trapped.
            ("--- a/x.py\n+++ b/x.py\n@@ - @@\n-a\n", "bad hunk header"),
            ("--- a/x.py\n+++ b/x.py\n@@ -,3 +1 @@\n-a\n", "bad hunk header"),
            ("--- a/x.py\n+++ b/x.py\n@@ -99999999999999999999 +1 @@\n-a\n", "bad hunk header"),
        ] {
            XCTAssertThrowsError(try Answer.parse("```diff\n\(diff)```")) { error in
                guard case AgentError.rejected(let reason, _) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(reason.contains(text), "\(reason) lacks \(text)")
            }
        }
    }

    func patch(_ diff: String) throws -> FilePatch {
        let answer = try Answer.parse("```diff\n\(diff)```")
        guard case .patch(let patch) = answer.changes.first else { throw AgentError.failed(reason: "no patch") }
        return patch
    }

    /// The hunk search finds every place a run of lines occurs, overlapping ones included.
    func testOccurrencesFindsEveryPlace() {
        XCTAssertEqual(FilePatch.occurrences(of: [1, 1], in: [1, 1, 1, 2, 1, 1], from: 0), [0, 1, 4])
        XCTAssertEqual(FilePatch.occurrences(of: [1, 2, 1], in: [1, 2, 1, 2, 1], from: 1), [2])
        XCTAssertEqual(FilePatch.occurrences(of: [3], in: [1, 2], from: 0), [])
        XCTAssertEqual(FilePatch.occurrences(of: [1], in: [1], from: 5), [])
    }

    /// Hostile answers that cost hunk x file (160k identical lines, an 80k-line hunk: 85 s) or the
    /// square of a line (a million `#` before a name: minutes) are parsed and applied in one pass.
    func testHostileAnswersAreParsedAndAppliedInLinearTime() throws {
        let file = String(repeating: "x\n", count: 160_000)
        let hunk = "--- a/f\n+++ b/f\n@@ -1,80001 +1,80001 @@\n" + String(repeating: " x\n", count: 80_000) + "-x\n+y\n"
        let patched = try patch(hunk).apply(to: file)
        XCTAssertEqual(patched.split(separator: "\n").filter { $0 == "y" }.count, 1)
        let answer = try Answer.parse(String(repeating: "#", count: 1_000_000) + " SUMMARY: marks\n" + String(repeating: "*", count: 1_000_000) + "\n")
        XCTAssertEqual(answer.summary, "marks")
    }

    func testApplyExactOffsetAndNearest() throws {
        let file = "a\nb\nc\nd\nb\nc\ne\n"
        // Wrong line number (10): placed where the context matches, nearest to it.
        XCTAssertEqual(
            try patch("--- a/f\n+++ b/f\n@@ -10,2 +10,2 @@\n b\n-c\n+C\n").apply(to: file), "a\nb\nc\nd\nb\nC\ne\n")
        XCTAssertEqual(
            try patch("--- a/f\n+++ b/f\n@@ -2,2 +2,2 @@\n b\n-c\n+C\n").apply(to: file), "a\nb\nC\nd\nb\nc\ne\n")
        // No numbers and an ambiguous match: refused.
        XCTAssertThrowsError(try patch("--- a/f\n+++ b/f\n@@ @@\n b\n-c\n+C\n").apply(to: file))
        // Context must match exactly (trailing space differs).
        XCTAssertThrowsError(try patch("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a \n+A\n").apply(to: file))
        // Two hunks, insertion, blank context line, no newline at end.
        XCTAssertEqual(
            try patch(
                "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n+x\n b\n@@ -6,2 +7,2 @@\n c\n-e\n+E\n\\ No newline at end of file\n"
            ).apply(to: file),
            "a\nx\nb\nc\nd\nb\nc\nE")
        XCTAssertEqual(try patch("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n\n-c\n+C\n").apply(to: "a\n\nc\n"), "a\n\nC\n")
    }

    /// A CRLF file (edited on Windows) and a CRLF answer: Swift reads "\r\n" as one Character, so
    /// splitting on "\n" saw the whole file as one line and every diff to it was "does not apply".
    func testCRLFFilesAndAnswersAreSplitIntoLines() throws {
        let file = "a\r\nb\r\nc\r\n"
        // Context and untouched lines keep their CRLF; an added line gets the file's ending.
        XCTAssertEqual(try patch("--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n").apply(to: file), "a\r\nB\r\nc\r\n")
        // The answer itself in CRLF: its lines' CRs are line endings, not text.
        let answer = try Answer.parse("SUMMARY: x\r\n```diff\r\n--- a/f\r\n+++ b/f\r\n@@ -2 +2 @@\r\n-b\r\n+B\r\n```\r\n")
        XCTAssertEqual(answer.summary, "x")
        guard case .patch(let crlf) = answer.changes.first else { return XCTFail("no patch") }
        XCTAssertEqual(try crlf.apply(to: file), "a\r\nB\r\nc\r\n")
        // An LF file stays LF, and a context line still has to match its text exactly.
        XCTAssertEqual(try crlf.apply(to: "a\nb\nc\n"), "a\nB\nc\n")
        XCTAssertThrowsError(try patch("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a \n-b\n+B\n").apply(to: file))
    }

    func testNewNotesFileFromDevNull() throws {
        let created = try patch("--- /dev/null\n+++ b/LOG.md\n@@ -0,0 +1,2 @@\n+one\n+two\n")
        XCTAssertEqual(try created.apply(to: nil), "one\ntwo\n")
        XCTAssertThrowsError(try created.apply(to: "exists\n"))
    }

    func testPathChecks() {
        let files = WorkspaceFiles(root: "/ws", editable: ["train.py", "src/model.py"], notes: ["LOG.md"])
        XCTAssertNil(files.violation("train.py"))
        XCTAssertNil(files.violation("./src/model.py"))
        XCTAssertEqual(files.violation("../train.py"), "path leaves the workspace")
        XCTAssertEqual(files.violation("src/../train.py"), "path leaves the workspace")
        XCTAssertEqual(files.violation("/ws/train.py"), "absolute path")
        XCTAssertEqual(files.violation(".git/config"), ".git is never writable")
        XCTAssertEqual(files.violation("src//model.py"), "path is not normalised")
        XCTAssertEqual(files.violation("prepare.py"), "not an editable or notes file")
        XCTAssertEqual(files.violation("train.py\n"), "control character in path")
        // Canonically equivalent is not the same file: the bytes decide.
        let accented = WorkspaceFiles(root: "/ws", editable: [], notes: ["caf\u{E9}.md"])
        XCTAssertNil(accented.violation("caf\u{E9}.md"))
        XCTAssertEqual(accented.violation("cafe\u{301}.md"), "not an editable or notes file")
    }

    /// An answer of thousands of forbidden paths: rejected at once, every path kept for the audit,
    /// the reason naming twenty and counting the rest (each audit line carried all of them: 82 GB).
    /// Canonically equivalent names are checked each on its own bytes.
    func testManyForbiddenPathsGiveABoundedReason() {
        let files = WorkspaceFiles(root: "/ws", editable: ["caf\u{E9}.md"], notes: [])
        let paths = (0..<20_000).map { "../p\($0)" } + ["../p1"]
        let started = Date()
        XCTAssertThrowsError(try files.checkAll(paths)) { error in
            guard case .rejected(let reason, let rejected) = error as? AgentError else { return XCTFail("\(error)") }
            XCTAssertEqual(rejected.count, 20_000)
            XCTAssertLessThan(reason.count, 1_000, reason)
            XCTAssertTrue(reason.hasSuffix("and 19980 more"), reason)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertThrowsError(try files.checkAll(["caf\u{E9}.md", "cafe\u{301}.md"]), "the second name is not the editable file")
        XCTAssertNoThrow(try files.checkAll(["caf\u{E9}.md", "caf\u{E9}.md"]))
    }

    func testPromptListsHistoryAndRules() {
        let history = (1...25).map {
            HistoryEntry(
                iteration: $0, status: $0 % 2 == 0 ? "keep" : "discard", score: 0.5, description: "step\t\($0)\nmore")
        }
        let context = AgentContext(
            workspace: "/ws", program: "Do research.", editableFiles: ["train.py": "print(1)\n```\n"],
            notesFiles: ["LOG.md"],
            metric: "loss", maximize: false, bestScore: nil, history: history, iteration: 26, seed: 1, maxDiffLines: 50)
        let system = AgentPrompt.system(context)
        let user = AgentPrompt.user(context)
        XCTAssertTrue(system.contains("Change only these files: train.py."))
        XCTAssertTrue(system.contains("LOG.md"))
        XCTAssertTrue(system.contains("at most 50 lines"))
        XCTAssertTrue(user.contains("minimize"))
        XCTAssertTrue(user.contains("none yet"))
        XCTAssertFalse(user.contains("iteration 5:"), "only the last 20 iterations")
        XCTAssertTrue(user.contains("- iteration 6: keep, 0.5: step 6 more"))
        XCTAssertTrue(user.contains("````\nprint(1)\n```\n````"), "a file with ``` gets a longer fence")
        // In a CRLF file too, where the ``` line is not the file's first (it was read as one line).
        var crlf = context
        crlf.editableFiles = ["train.py": "print(1)\r\n```\r\n"]
        XCTAssertTrue(AgentPrompt.user(crlf).contains("````\nprint(1)\r\n```\r\n````"), "a CRLF file with ``` gets a longer fence")
    }
    /// Three near misses of padded diffs filled the section past its cap, cut inside a diff: the
    /// fence stayed open, the next section's fence closed it, and the agent's own file then read as
    /// the prompt's text (a comment posing as a nudge from the human). Whole near misses now, and any
    /// cut closes the fence it is in.
    func testACutNearMissSectionLeavesNoFenceOpen() {
        let padded = (1...50).map { "+# " + String(repeating: "y", count: 190) + " \($0)" }.joined(separator: "\n") + "\n"
        let misses = (1...3).map { AgentMemory.NearMiss(iteration: $0, score: 0.5, description: "padded \($0)", patch: padded) }
        let text = AgentPrompt.memory(AgentMemory(nearMisses: misses))
        let fences = text.split(separator: "\n").filter { $0.hasPrefix("```") }
        XCTAssertEqual(fences.count % 2, 0, "an open fence: \(fences)")
        XCTAssertTrue(text.contains("more near misses; the whole file is in the memory directory"), text.suffix(300).description)
        XCTAssertTrue(text.contains("## iteration 1:"))
        // One near miss longer than the cap alone: cut, and its fence closed.
        let huge = AgentMemory.NearMiss(iteration: 9, score: 0.5, description: "huge", patch: String(repeating: padded, count: 3))
        let alone = AgentPrompt.memory(AgentMemory(nearMisses: [huge]))
        XCTAssertEqual(alone.split(separator: "\n").filter { $0.hasPrefix("```") }.count % 2, 0, alone.suffix(300).description)
        XCTAssertTrue(alone.contains("[... cut at"))
        XCTAssertEqual(AgentPrompt.closingOpenFence("a\n````diff\n+x\n```\n+y"), "a\n````diff\n+x\n```\n+y\n````")
        XCTAssertEqual(AgentPrompt.closingOpenFence("```\nx\n```\nafter"), "```\nx\n```\nafter")
    }
}
