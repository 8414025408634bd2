import ArgumentParser
import XCTest

@testable import ProctorCommands

/// The command line as the library declares it (issue 9): `run` and `session` share their loop
/// options, `--agent` is an enum, bad values are parse errors (which `proctor` turns into exit 125).
final class CommandLineTests: XCTestCase {
    func testRunAndSessionShareTheLoopOptions() throws {
        let run = try XCTUnwrap(try ProctorCommand.parseAsRoot(["run", "--iterations", "3", "--resume", "--agent", "http"]) as? Run)
        XCTAssertEqual(run.loop.iterations, 3)
        XCTAssertTrue(run.loop.resume)
        XCTAssertFalse(run.loop.wait)
        XCTAssertEqual(run.agent, .http)
        let session = try XCTUnwrap(try ProctorCommand.parseAsRoot(["session", "--iterations", "2", "--wait", "--", "claude", "-p"]) as? Session)
        XCTAssertEqual(session.loop.runOptions.iterations, 2)
        XCTAssertTrue(session.loop.runOptions.wait)
        XCTAssertEqual(session.command, ["claude", "-p"])
    }

    func testBadValuesAreValidationFailures() {
        for args in [["run", "--agent", "gpt"], ["run", "--iterations", "0"], ["session", "--iterations", "0", "--", "x"],
                     ["session"], ["nudge"]] {
            XCTAssertThrowsError(try ProctorCommand.parseAsRoot(args), "\(args)") { error in
                XCTAssertEqual(ProctorCommand.exitCode(for: error), .validationFailure, "\(args): \(error)")
            }
        }
        // A negative number is the option's bad value, not a missing one ("Missing value for
        // '--iterations'" read -1 as an option), and an empty --workspace is not the current directory.
        for (args, text) in [(["run", "--iterations", "-1"], "--iterations must be at least 1"),
                             (["run", "--parallel", "-2"], "--parallel must be from 1 to 64"),
                             (["check", "--parallel", "-2"], "--parallel must be from 1 to 64"),
                             (["exec", "--seed", "-1", "--", "true"], "'-1' is invalid for '--seed"),
                             (["status", "--workspace", ""], "--workspace is empty"),
                             (["run", "--workspace", "", "--iterations", "1"], "--workspace is empty")] {
            XCTAssertThrowsError(try ProctorCommand.parseAsRoot(args), "\(args)") { error in
                XCTAssertEqual(ProctorCommand.exitCode(for: error), .validationFailure, "\(args): \(error)")
                XCTAssertTrue(ProctorCommand.message(for: error).contains(text), "\(args): \(ProctorCommand.message(for: error))")
            }
        }
        // The message names what --agent takes.
        XCTAssertThrowsError(try ProctorCommand.parseAsRoot(["run", "--agent", "gpt"])) { error in
            let message = ProctorCommand.message(for: error)
            for kind in AgentKind.allCases { XCTAssertTrue(message.contains(kind.rawValue), message) }
        }
    }

    /// An option given twice was the last one, silently (`--iterations 5 ... --iterations 500`):
    /// `proctor` now refuses it (125) before parsing. After `--` is the command's own.
    func testAnOptionGivenTwiceIsFound() {
        XCTAssertEqual(repeatedOption(["run", "--iterations", "5", "--resume", "--iterations", "500"]), "--iterations")
        XCTAssertEqual(repeatedOption(["exec", "--seed=1", "--phase", "agent", "--seed", "2", "--", "x"]), "--seed")
        XCTAssertEqual(repeatedOption(["run", "--resume", "--resume"]), "--resume")
        XCTAssertNil(repeatedOption(["session", "--iterations", "2", "--", "agent", "--iterations", "3"]))
        XCTAssertNil(repeatedOption(["exec", "--workspace", "w", "--", "sh", "-c", "--", "--"]))
        XCTAssertNil(repeatedOption(["run", "--iterations", "5", "--wait", "--agent", "http"]))
    }

    /// Foundation's file errors were printed whole: `proctor init /proc/x` gave `Error
    /// Domain=NSCocoaErrorDomain Code=4 ... UserInfo={...}` over several lines. Now the path and
    /// the system's reason; other errors keep their own description.
    func testFoundationFileErrorsAreThePathAndTheReason() throws {
        XCTAssertThrowsError(try FileManager.default.createDirectory(atPath: "/proc/no-such-dir/x", withIntermediateDirectories: false)) { error in
            let text = describe(error)
            XCTAssertFalse(text.contains("NSCocoaErrorDomain") || text.contains("\n"), text)
            XCTAssertTrue(text.hasPrefix("/proc/no-such-dir/x: "), text)
        }
        struct Own: Error, CustomStringConvertible { var description = "the working tree differs from HEAD" }
        XCTAssertEqual(describe(Own()), "the working tree differs from HEAD")
    }

    /// A failure carries its exit status to the one place that prints it and exits.
    func testCommandFailureKeepsItsStatus() {
        struct Refused: Error, CustomStringConvertible { var description = "the working tree differs from HEAD" }
        let failure = CommandFailure(Refused(), status: 125)
        XCTAssertEqual(failure.status, 125)
        XCTAssertEqual(failure.message, "the working tree differs from HEAD")
    }
}
