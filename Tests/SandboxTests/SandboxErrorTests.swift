import Foundation
@testable import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// Issue 9: a failure of the sandbox layer carries a code (which the command maps to an exit status)
/// and, for a failed system call, its errno. Paths below a regular file or at a directory fail with
/// ENOTDIR and EISDIR, which no permission bit (and no root) gets around.
final class SandboxErrorTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sandbox-error-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/file"))
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func assertIO(_ body: @autoclosure () throws -> Any, errno expected: Int32, message: String,
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? SandboxError else { return XCTFail("\(type(of: error)): \(error)", file: file, line: line) }
            XCTAssertEqual(error.code, .io, file: file, line: line)
            XCTAssertEqual(error.errno, expected, file: file, line: line)
            XCTAssertEqual(error.description, message, file: file, line: line)
        }
    }

    func testFailedCallsCarryTheirErrno() {
        assertIO(try ExperimentLock(path: dir + "/file/lock", holder: holder()), errno: ENOTDIR,
                 message: "open lock \(dir)/file/lock: Not a directory")
        assertIO(try AuditLog(path: dir), errno: EISDIR, message: "open \(dir): Is a directory")
        assertIO(try FileTree.walk(dir + "/missing", removing: false) { _, _ in }, errno: ENOENT,
                 message: "open \(dir)/missing: No such file or directory")
    }

    /// A log line that cannot be written reports why: here a descriptor open for reading only.
    func testLogWriteFailureCarriesItsErrno() throws {
        let fd = open(dir + "/file", O_RDONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertThrowsError(try JSONLines.append(["a": 1], to: fd, encoder: JSONLines.encoder())) { error in
            XCTAssertEqual(error as? SandboxError,
                           SandboxError(.io, "write to the log failed: Bad file descriptor", errno: EBADF))
        }
        XCTAssertEqual(bytes(dir + "/file"), Data("x".utf8), "nothing written")
    }

    /// The second taker of a lock learns who holds it; the code carries the path and the holder.
    func testBusyLockNamesItsHolder() throws {
        let path = dir + "/lock"
        let first = try ExperimentLock(path: path, holder: holder(run: "r1"))
        XCTAssertThrowsError(try ExperimentLock(path: path, holder: holder(run: "r2"))) { error in
            guard let error = error as? SandboxError, case .lockBusy(let busyPath, let holder) = error.code else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(busyPath, path)
            XCTAssertEqual(holder?.run, "r1")
            XCTAssertNil(error.errno)
            XCTAssertTrue(error.description.hasPrefix("another run holds the lock: pid \(getpid()), run r1"), error.description)
        }
        withExtendedLifetime(first) {}
    }

    func testPlanAndPlantedFailuresHaveTheirCodes() throws {
        var config = WorkspaceConfig(root: dir, file: dir + "/proctor.toml")
        config.files.outputs = ["outputs"]
        let preset = PolicyPreset(name: "test", system: ["/usr"], hide: [], tmpSize: 1 << 20, shmSize: 0, nofile: 64,
                                  stdioLimit: 1 << 20, graceMs: 100, allowNetwork: false)
        let host = HostFacts(environment: [:], exists: { _ in true }, workspaceEntries: { [] }, interpreterPrefix: { _, _ in nil })
        XCTAssertThrowsError(try LaunchPlan.compile(LaunchRequest(config: config, preset: preset, phase: .experiment, command: []),
                                                    host: host)) { error in
            XCTAssertEqual(error as? SandboxError, SandboxError(.badPlan, "no command to run"))
        }
        // A link planted where an output directory belongs.
        XCTAssertEqual(symlink(dir + "/file", dir + "/outputs"), 0)
        let env = SandboxEnvironment(config: config, preset: preset, launcher: Launcher(helper: "/nonexistent"))
        XCTAssertThrowsError(try env.prepareOutputs(clear: false)) { error in
            XCTAssertEqual((error as? SandboxError)?.code, .planted, "\(error)")
            XCTAssertNil((error as? SandboxError)?.errno)
        }
    }

    private func holder(run: String = "r") -> LockHolder {
        LockHolder(pid: getpid(), run: run, iteration: nil, since: Date(), workspace: dir)
    }
}
