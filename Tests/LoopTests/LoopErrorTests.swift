import Foundation
import ProctorTestSupport
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
