import Foundation
@testable import ProctorConfig
@testable import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 9: a failure of the sandbox layer carries a code (which the command maps to an exit status)
/// and, for a failed system call, its errno. Paths below a regular file or at a directory fail with
/// ENOTDIR and EISDIR, which no permission bit (and no root) gets around.
final class SandboxErrorTests: XCTestCase {
    var scratch: TemporaryDirectory!
    var dir: String { scratch.path }

    override func setUpWithError() throws {
        scratch = try TemporaryDirectory("sandbox-error")
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/file"))
    }

    override func tearDown() { scratch = nil }

    func testFailedCallsCarryTheirErrno() {
        let failures: [(() throws -> Any, SandboxError)] = [
            ({ try ExperimentLock(path: self.dir + "/file/lock", holder: self.holder()) },
             SandboxError(.io, "open lock \(dir)/file/lock: Not a directory", errno: ENOTDIR)),
            ({ try AuditLog(path: self.dir) }, SandboxError(.io, "open \(dir): Is a directory", errno: EISDIR)),
            ({ try FileTree.walk(self.dir + "/missing", removing: false) { _ in } },
             SandboxError(.io, "open \(dir)/missing: No such file or directory", errno: ENOENT)),
        ]
        for (body, expected) in failures {
            XCTAssertThrowsError(try body()) { XCTAssertEqual($0 as? SandboxError, expected, "\($0)") }
        }
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
        let host = HostFacts(environment: [:], exists: { _ in true }, workspaceEntries: { [] }, interpreter: { _ in nil })
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
