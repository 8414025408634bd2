import Foundation
import ProctorTestSupport
import XCTest

/// Process tests of the `proctor-sandbox` launcher: run the built binary, judge real effects.
/// The full attack suite is `sandbox/tests/attack.sh`; these check the interface contract.
final class LauncherTests: XCTestCase {
    private struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
        var report: [String]
    }

    private var launcher: URL {
        get throws {
            #if !os(Linux)
            throw XCTSkip("proctor-sandbox is Linux only")
            #else
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            for config in ["debug", "release"] {
                let url = root.appendingPathComponent(".build/\(config)/proctor-sandbox")
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
            }
            throw XCTSkip("proctor-sandbox not built (swift build --product proctor-sandbox)")
            #endif
        }
    }

    private func policy(workspace: String) -> [String] {
        var p = ["--ro", "/usr", "/usr"]
        for dir in ["/lib", "/lib64", "/bin", "/sbin"] { p += ["--ro-try", dir, dir] }
        // The tmpfs comes first: the workspace may live under /tmp, and later mounts win.
        p += ["--tmpfs", "/tmp", "16MiB", "--ro", "/etc", "/etc", "--ro", workspace, workspace,
              "--rw", workspace + "/outputs", workspace + "/outputs",
              "--dev", "/dev", "--proc", "/proc", "--net", "none",
              "--audit-writes", "--chdir", workspace, "--setenv", "PATH", "/usr/bin:/bin"]
        return p
    }

    private func run(_ args: [String]) throws -> Run {
        let out = Pipe()
        let err = Pipe()
        let reportFile = FileManager.default.temporaryDirectory.appendingPathComponent("psb-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: reportFile) }
        let process = Process()
        // The report goes to fd 3, which the shell opens on a file just before exec.
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec \"$0\" \"$@\" 3>\"$PSB_REPORT\"", try launcher.path, "--report-fd", "3"] + args
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_TEST_SECRET"] = "hunter2"
        env["PSB_REPORT"] = reportFile.path
        process.environment = env
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let report = (try? String(contentsOf: reportFile, encoding: .utf8)) ?? ""
        return Run(
            status: process.terminationStatus,
            stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self),
            report: report.split(separator: "\n").map(String.init))
    }

    private func workspace() throws -> String {
        let ws = FileManager.default.temporaryDirectory.appendingPathComponent("psb-launcher-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: ws.appendingPathComponent("outputs"), withIntermediateDirectories: true)
        try "pinned\n".write(to: ws.appendingPathComponent("prepare.py"), atomically: false, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(at: ws) }
        return ws.path
    }

    func testExitStatusAndResultLine() throws {
        let ws = try workspace()
        let r = try run(policy(workspace: ws) + ["--", "sh", "-c", "echo hi; exit 7"])
        XCTAssertEqual(r.status, 7)
        XCTAssertEqual(r.stdout, "hi\n")
        let last = try XCTUnwrap(r.report.last)
        XCTAssertTrue(last.hasPrefix("result\t7\t0\t0\t"), last)
        XCTAssertTrue(r.report.contains { $0.hasPrefix("enforce\tseccomp\t") })
    }

    func testDeniedWriteLeavesBytesAndIsReported() throws {
        let ws = try workspace()
        let r = try run(policy(workspace: ws) + ["--", "sh", "-c", "echo pwn > prepare.py; echo ok > outputs/a"])
        XCTAssertEqual(r.status, 0)  // the last command (the allowed write) succeeded
        XCTAssertEqual(try String(contentsOfFile: ws + "/prepare.py", encoding: .utf8), "pinned\n")
        XCTAssertEqual(try String(contentsOfFile: ws + "/outputs/a", encoding: .utf8), "ok\n")
        let denies = r.report.filter { $0.hasPrefix("deny\t") }
        XCTAssertEqual(denies.count, 1, "\(denies)")
        XCTAssertTrue(denies.first?.hasSuffix("\topenat\t\(ws)/prepare.py") ?? false, "\(denies)")
    }

    func testEnvironmentIsOnlySetenv() throws {
        let ws = try workspace()
        let r = try run(policy(workspace: ws) + ["--setenv", "A", "1", "--", "env"])
        XCTAssertEqual(r.status, 0)
        XCTAssertFalse(r.stdout.contains("hunter2"))
        XCTAssertTrue(r.stdout.contains("A=1"))
    }

    func testTimeoutIs124() throws {
        let ws = try workspace()
        let start = Date()
        let r = try run(policy(workspace: ws) + ["--timeout", "500", "--", "sleep", "30"])
        XCTAssertEqual(r.status, 124)
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
        XCTAssertTrue(r.report.contains { $0.hasPrefix("limit\ttimeout\t") })
    }

    func testSetupFailureIs125WithStage() throws {
        let r = try run(["--ro", "/nonexistent-psb", "/x", "--", "true"])
        XCTAssertEqual(r.status, 125)
        XCTAssertTrue(r.stderr.contains("(stage: mounts)"), r.stderr)
        let bad = try run(["--bogus", "--", "true"])
        XCTAssertEqual(bad.status, 125)
        XCTAssertTrue(bad.stderr.contains("(stage: args)"), bad.stderr)
    }

    func testNotFoundAndNotExecutable() throws {
        let ws = try workspace()
        XCTAssertEqual(try run(policy(workspace: ws) + ["--", "/nonexistent/cmd"]).status, 127)
        XCTAssertEqual(try run(policy(workspace: ws) + ["--", ws + "/prepare.py"]).status, 126)
    }
}
