import ProctorConfig
import ProctorLoop
import ProctorSandbox
import XCTest

@testable import ProctorCommands

/// Issue 9: the one table from error codes to exit statuses (README: 125 bad input or a refused
/// start, 130 interrupted, 1 a run that failed on the way, 2 `proctor experiment` without a session).
final class ExitStatusTests: XCTestCase {
    struct Other: Error {}

    func testEachCodeMapsToItsDocumentedStatus() {
        let config = ConfigError(file: "proctor.toml", line: 3, key: "experiment.timeout", message: "expected a duration")
        // Wherever the command is, a refusal, a held lock, a bad proctor.toml and an interrupt exit the same.
        for failed in [ExitStatus.badInput, ExitStatus.runFailed, ExitStatus.noSession] {
            let table: [(Error, Int32)] = [
                (LoopError(.refused, "dirty tree"), 125),
                (LoopError(.interrupted, "interrupted"), 130),
                (LoopError(.failed, "no baseline score"), failed),
                (LoopError.io(ENOSPC, "write ledger"), failed),
                (SandboxError(.lockBusy(path: "/ws/.proctor/lock", holder: nil), "another run holds the lock"), 125),
                (SandboxError(.badPlan, "no command to run"), failed),
                (SandboxError(.notInstalled, "the launcher is missing"), failed),
                (SandboxError(.planted, "outputs is a link"), failed),
                (SandboxError.io(EMFILE, "pipe"), failed),
                (config, 125),  // proctor.toml is bad input wherever it is read (a locked name matching nothing, at the start of a run)
                (Other(), failed),
            ]
            for (error, status) in table {
                XCTAssertEqual(ExitStatus.of(error, failed: failed), status, "\(error) where failing exits \(failed)")
            }
        }
        XCTAssertEqual([ExitStatus.badInput, ExitStatus.interrupted, ExitStatus.runFailed, ExitStatus.noSession], [125, 130, 1, 2])
    }

    /// The failure `ProctorCommand.main` prints keeps the error's message and takes the table's status.
    /// What reaches the operator's terminal from `proctor audit --json` and any command's error
    /// (a path an agent chose, quoted in `proctor exec`'s refusal): C1 controls such as CSI,
    /// bidirectional overrides and invisible marks are escaped; the JSON value stays the same.
    func testAuditJSONAndErrorsEscapeWhatRewritesATerminal() throws {
        let json = "{\"path\":\"a\u{9B}2J\u{202E}b\u{200B}c\"}"
        let safe = jsonDisplaySafe(json)
        XCTAssertEqual(safe, "{\"path\":\"a\\u009b2J\\u202eb\\u200bc\"}")
        let decoded = try JSONSerialization.jsonObject(with: Data(safe.utf8)) as? [String: String]
        XCTAssertEqual(decoded?["path"], "a\u{9B}2J\u{202E}b\u{200B}c")
        XCTAssertEqual(terminalSafe("a\u{1B}]0;x\u{07}\u{200F}\n"), "a\\x1b]0;x\\x07\\u200f\n")
    }

    func testCommandFailureTakesTheTablesStatus() {
        let refused = CommandFailure(LoopError(.refused, "nothing to resume"), failed: ExitStatus.runFailed)
        XCTAssertEqual(refused.status, 125)
        XCTAssertEqual(refused.message, "nothing to resume")
        let io = CommandFailure(LoopError.io(ENOENT, "open /x/r.html"), failed: ExitStatus.runFailed)
        XCTAssertEqual(io.status, 1)
        XCTAssertEqual(io.message, "open /x/r.html: No such file or directory")
    }

    /// Nothing of a run starts in a workspace that is not there: bad input, 125, from `driveLoop`.
    func testLoopThatCannotStartExits125() {
        let missing = NSTemporaryDirectory() + "no-workspace-\(getpid())-\(UUID().uuidString)"
        XCTAssertThrowsError(try driveLoop(workspace: missing, options: RunOptions(iterations: 1, resume: false, wait: false),
                                           agent: nil, session: nil)) { error in
            XCTAssertEqual((error as? CommandFailure)?.status, 125, "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
    }

    /// `proctor exec`'s own failures go through the same table.
    func testExecFailureStatusComesFromTheTable() {
        XCTAssertEqual(statusOrFailure { throw SandboxError(.badPlan, "no command to run") }, 125)
        XCTAssertEqual(statusOrFailure { throw LoopError(.interrupted, "interrupted") }, 130)
        XCTAssertEqual(statusOrFailure { 7 }, 7)
    }
}
