import CLauncherProtocol
import Foundation
@testable import ProctorConfig
@testable import ProctorSandbox
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

    /// `redirections` are shell redirections applied as the launcher starts (`7</etc/hostname`).
    private func run(_ args: [String], redirections: String = "") throws -> Run {
        let out = Pipe()
        let err = Pipe()
        let reportFile = FileManager.default.temporaryDirectory.appendingPathComponent("psb-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: reportFile) }
        let process = Process()
        // The report goes to fd 3, which the shell opens on a file just before exec.
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec \"$0\" \"$@\" 3>\"$PSB_REPORT\" \(redirections)", try launcher.path, "--report-fd", "3"] + args
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

    func testTheReportStartsWithTheVersionAndEveryLineParses() throws {
        let ws = try workspace()
        let command = "echo hello; { echo x > prepare.py; } 2>/dev/null"
        let r = try run(policy(workspace: ws) + ["--timeout", "5000", "--stdio-limit", "4", "--", "sh", "-c", command])
        XCTAssertEqual(r.report.first, "version\t\(PSB_PROTOCOL_VERSION)")
        var report = LauncherReport()
        let events = r.report.compactMap { report.event($0) }
        XCTAssertNil(report.error, "\(r.report)")
        XCTAssertTrue(events.contains(.enforce(limit: "stdio", mechanism: "pipe-drain", value: "4")), "\(events)")
        XCTAssertTrue(events.contains(.limit(kind: "stdio", detail: "dropped 2 bytes")), "\(events)")
        let denied = events.contains { if case .deny(_, _, "openat", ws + "/prepare.py") = $0 { return true }; return false }
        XCTAssertTrue(denied, "\(events)")
        guard case .result(exit: 2, signal: 0, timedOut: false, _, _, _)? = events.last else { return XCTFail("\(events)") }
    }

    /// Every --pass-fd survives into the command under its number; other descriptors do not.
    func testSeveralPassedDescriptorsAreKept() throws {
        let ws = try workspace()
        let probe = "for fd in 7 8 9; do [ -e /proc/self/fd/$fd ] && printf '%s ' $fd; done; true"
        let r = try run(policy(workspace: ws) + ["--pass-fd", "8", "--pass-fd", "7", "--", "sh", "-c", probe],
                        redirections: "7</dev/null 8</dev/null 9</dev/null")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "7 8 ")
    }

    /// Launcher.run refuses a launcher that speaks another protocol, and one whose lines do not parse.
    func testLauncherRunFailsLoudlyOnAReportItCannotRead() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("psb-fake-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        func fakeLauncher(_ lines: [String]) throws -> Launcher {
            let name = UUID().uuidString
            let report = dir.appendingPathComponent(name + ".report")
            try lines.map { $0 + "\n" }.joined().write(to: report, atomically: true, encoding: .utf8)
            let script = dir.appendingPathComponent(name)
            try "#!/bin/sh\ncat '\(script.path).report' >&3\n".write(to: script, atomically: true, encoding: .utf8)
            chmod(script.path, 0o755)
            return Launcher(helper: script.path)
        }
        let plan = LaunchPlan(phase: .experiment, workingDirectory: "/", timeoutMs: 1000, graceMs: 100, command: ["true"])
        let context = AuditContext(run: "test", iteration: nil, config: WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml"))
        let version = "version\t\(PSB_PROTOCOL_VERSION)"
        let result = "result\t0\t0\t0\t5\t1\t1024"

        let good = try fakeLauncher([version, result]).run(plan, audit: nil, context: context)
        XCTAssertEqual(good.wallMs, 5)
        XCTAssertEqual(good.peakMemoryBytes, 1024)
        let cases: [([String], LauncherProtocolError)] = [
            (["version\t\(PSB_PROTOCOL_VERSION + 1)", result],
             .version(found: Int64(PSB_PROTOCOL_VERSION + 1), expected: Int64(PSB_PROTOCOL_VERSION))),
            ([result], .version(found: nil, expected: Int64(PSB_PROTOCOL_VERSION))),
            ([version, "result\t0\t0\t0\t5\t1"], .fieldCount(record: "result", expected: 6, found: 5)),
            ([version, "result\t0\t0\t0\tfive\t1\t1024"], .badField(record: "result", field: "WALL_MS", value: "five")),
        ]
        for (lines, expected) in cases {
            XCTAssertThrowsError(try fakeLauncher(lines).run(plan, audit: nil, context: context), "\(lines)") { error in
                XCTAssertEqual(error as? LauncherProtocolError, expected)
            }
        }
    }
}
