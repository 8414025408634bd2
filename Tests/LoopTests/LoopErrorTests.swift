import Foundation
import ProctorTestSupport
import ProctorGit
import XCTest

@testable import ProctorLoop

/// Issue 9: a failure of the loop's layer carries a code (which the command maps to an exit status)
/// and, for I/O on proctor's own files (ledger, run state, memory, logs), the failing call's errno.
/// A directory where a file belongs (EISDIR) and a missing directory (ENOENT) fail even as root.
final class LoopErrorTests: XCTestCase {
    private func assertIO(_ body: @autoclosure () throws -> Any, errno expected: Int32, message: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? LoopError, LoopError(.io, message, errno: expected), "\(error)", file: file, line: line)
        }
    }

    func testLedgerThatCannotBeOpenedReportsTheErrno() throws {
        let scratch = try TemporaryDirectory("loop-error"), dir = scratch.path
        try FileManager.default.createDirectory(atPath: dir + "/results.tsv", withIntermediateDirectories: false)
        assertIO(try Ledger(directory: dir), errno: EISDIR, message: "open ledger in \(dir): Is a directory")
        withExtendedLifetime(scratch) {}
    }

    func testStateMemoryAndLogWritesReportTheErrno() throws {
        let scratch = try TemporaryDirectory("loop-error"), dir = scratch.path
        let missing = dir + "/missing"
        assertIO(try RunState(run: "r", branch: "b", baseCommit: "c", bestCommit: "c", bestScore: 0, baselineScore: 0, pins: [:],
                              lastIteration: 0, inProgress: nil).save(missing),
                 errno: ENOENT, message: "open \(RunState.path(missing)).tmp-\(getpid()): No such file or directory")
        assertIO(try MemoryStore.replace(missing + "/learnings.md", with: Data("x".utf8)), errno: ENOENT,
                 message: "memory: open \(missing)/learnings.md.tmp-\(getpid()): No such file or directory")
        assertIO(try LogFile(path: dir), errno: EISDIR, message: "open \(dir): Is a directory")
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing), "nothing created on the way")
        withExtendedLifetime(scratch) {}
    }

    /// Bad input is refused with its own code (125 in the CLI), not as an I/O failure.
    func testRefusalsHaveTheirCode() throws {
        let scratch = try TemporaryDirectory("loop-error")
        for (name, body) in [("resume", { _ = try RunState.loadForResume(scratch.path) }),
                             ("nudge", { _ = try NudgeQueue.validate("  ") }),
                             ("analysis", { _ = try AnalysisStore.validate([]) })] as [(String, () throws -> Void)] {
            XCTAssertThrowsError(try body(), name) { error in
                XCTAssertEqual((error as? LoopError)?.code, .refused, "\(name): \(error)")
                XCTAssertNil((error as? LoopError)?.errno, name)
            }
        }
    }
}

/// A record's `diff.files`: bounded, the rest counted (12,000 files of 4,000-byte names wrote 48 MB
/// into one record).
final class DiffStatsTests: XCTestCase {
    func testTheChangedPathsAreBoundedAndCounted() {
        let long = String(repeating: "d", count: 250)
        let changes = (1...12_000).map { Change(path: "notes/\(long)/\($0).md", kind: .added, oldMode: .absent) }
        let stats = DiffStats(changes)
        XCTAssertEqual(stats.files.count, 100)
        XCTAssertEqual(stats.filesOmitted, 11_900)
        XCTAssertTrue(stats.files.allSatisfy { $0.unicodeScalars.count <= 300 })
        let few = DiffStats([Change(path: "train.py", kind: .modified)])
        XCTAssertEqual(few.files, ["train.py"])
        XCTAssertNil(few.filesOmitted)
    }
}

/// A near miss's diff in `near_misses.md` (and the report's copy of it), which a human reads and
/// may re-apply: a bidi override or a zero-width space in the agent's code is shown, not obeyed
/// (Trojan Source); it passed raw when only controls were escaped.
final class FencedTextTests: XCTestCase {
    func testBidiAndInvisibleCharactersInADiffAreShown() {
        let fenced = MemoryText.fenced("+level = \"user\u{202E} \u{2066}# admin\u{2069}\"\n+ZW = \"a\u{200B}b\"\n", info: "diff")
        XCTAssertTrue(fenced.contains("\\u202e") && fenced.contains("\\u2066") && fenced.contains("\\u200b"), fenced)
        XCTAssertFalse(fenced.unicodeScalars.contains { $0.value == 0x202E || $0.value == 0x200B }, fenced)
        XCTAssertTrue(fenced.hasPrefix("```diff\n+level"), fenced)
    }
}

/// Iteration numbers that ended without a row (Ctrl-C under --parallel) are given out again,
/// smallest first, so that a run's numbers have no hole; one past every other needs no reuse.
final class AbandonedNumberTests: XCTestCase {
    func testAbandonedNumbersAreGivenOutAgainSmallestFirst() {
        var state = RunState(run: "r", branch: "b", baseCommit: "c", bestCommit: "c", bestScore: 0, baselineScore: 0, pins: [:],
                             lastIteration: 6, inProgress: nil)
        state.inFlight = [4, 5, 7]
        state.abandon(5)
        state.abandon(4)
        state.abandon(7)  // the highest given out: the next number past the rest is it anyway
        XCTAssertEqual(state.inFlight, [])
        XCTAssertEqual(state.nextIteration, 4)
        state.starting(4)
        XCTAssertEqual(state.nextIteration, 5)
        state.starting(5)
        XCTAssertEqual(state.nextIteration, 7)
        XCTAssertNil(state.abandoned)
        // With one number waiting, a later one abandoned is not lost behind it.
        state.lastIteration = 9
        state.abandon(3)
        state.abandon(8)
        XCTAssertEqual(state.abandoned, [3, 8])
    }
}
