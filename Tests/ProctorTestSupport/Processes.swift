import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// What every test target that drives the built binaries needs: where `proctor` is, and how to run a
// child with its output captured and a deadline. Foundation only, so it builds with everything else.

/// The built `proctor` binary: `$PROCTOR_BIN`, else `.build/debug/proctor` of this checkout.
public let proctorBinary: String = {
    if let path = ProcessInfo.processInfo.environment["PROCTOR_BIN"] { return path }
    var dir = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { dir.deleteLastPathComponent() }
    return dir.appendingPathComponent(".build/debug/proctor").path
}()

/// What a finished child did.
public struct ChildOutcome: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var seconds: Double
    /// The test's own deadline ran out and the child was killed.
    public var killed: Bool

    public var text: String { "status \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }

    public init(status: Int32, stdout: String, stderr: String, seconds: Double, killed: Bool) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds
        self.killed = killed
    }
}

/// Output files of a process; files rather than pipes so a flood cannot deadlock the test.
public final class CapturedOutput {
    public let outPath: String
    public let errPath: String
    public let out: FileHandle
    public let err: FileHandle

    public init() throws {
        outPath = NSTemporaryDirectory() + "/proctor-test-out-\(UUID().uuidString)"
        errPath = outPath + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    }

    public var stdout: String { String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self) }
    public var stderr: String { String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self) }

    deinit {
        try? out.close()
        try? err.close()
        unlink(outPath)
        unlink(errPath)
    }
}

/// Starts a program without waiting for it; stdin is /dev/null.
public func startProcess(_ argv: [String], environment: [String: String]? = nil, cwd: String? = nil,
                         output: CapturedOutput) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: argv[0])
    process.arguments = Array(argv.dropFirst())
    if let environment { process.environment = environment }
    if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    process.standardOutput = output.out
    process.standardError = output.err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    return process
}

/// The shell's view of how a process ended: its exit status, or 128 + the signal.
public func exitStatus(_ process: Process) -> Int32 {
    process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
}

/// Runs a program to completion, capturing its output. With a deadline, a child still running
/// then gets SIGTERM, and SIGKILL two seconds later (`killed` says so).
@discardableResult
public func runChild(_ argv: [String], environment: [String: String]? = nil, cwd: String? = nil,
                     deadline seconds: Double? = nil) throws -> ChildOutcome {
    let output = try CapturedOutput()
    let start = Date()
    let process = try startProcess(argv, environment: environment, cwd: cwd, output: output)
    var killed = false
    if let seconds {
        while process.isRunning {
            if Date().timeIntervalSince(start) > seconds {
                killed = true
                kill(process.processIdentifier, SIGTERM)
                let grace = Date()
                while process.isRunning && Date().timeIntervalSince(grace) < 2 { usleep(50_000) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            usleep(20_000)
        }
    }
    process.waitUntilExit()
    return ChildOutcome(status: exitStatus(process), stdout: output.stdout, stderr: output.stderr,
                        seconds: Date().timeIntervalSince(start), killed: killed)
}

/// Polls `condition` until it holds or `timeout` seconds pass.
@discardableResult
public func waitUntil(timeout: Double, interval: Double = 0.05, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: interval)
    }
    return condition()
}

/// Live processes whose command line contains `marker` (the test's own process and zombies excluded).
public func processes(containing marker: String) -> [String] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var found: [String] = []
    for pid in entries where Int32(pid) != nil && Int32(pid) != getpid() {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { continue }
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z" { continue }
        let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        if cmdline.contains(marker) { found.append("\(pid): \(cmdline)") }
    }
    return found
}

/// The session channels' directories (`proctor-session-PID-*`) in the base proctor makes them in;
/// with `pid`, only those of that supervisor (a test's own, not another session's on the machine
/// meanwhile: counting every new one failed a test while helpers ran sessions beside it).
public func sessionDirectories(of pid: Int32? = nil) -> Set<String> {
    let base = ProcessInfo.processInfo.environment["PROCTOR_AGENT_HOME_BASE"] ?? "/var/tmp"
    let prefix = "proctor-session-" + (pid.map { "\($0)-" } ?? "")
    return Set(((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).filter { $0.hasPrefix(prefix) })
}

/// Python that prints `SESSION-UNREACHABLE`, or `SESSION-REACHABLE` and what it reached: a socket
/// descriptor, the agent's mounted session socket or a host one (`proctor-session-*` in /var/tmp).
/// Put before an experiment's code (its names start with `_`), it tells from the experiment's log
/// whether the experiment could talk to the session channel; it first sleeps `sleep` seconds.
public func sessionChannelProbe(sleep: Int = 0) -> String {
    """
    import glob as _glob, os as _os, socket as _socket, time as _time
    _time.sleep(\(sleep))
    _reached = []
    for _fd in range(3, 64):
        try:
            if _os.path.stat.S_ISSOCK(_os.fstat(_fd).st_mode):
                _reached.append("fd %d" % _fd)
        except OSError:
            pass
    for _path in ["/run/proctor/session.sock"] + _glob.glob("/var/tmp/proctor-session-*/session.sock"):
        _client = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            _client.connect(_path)
            _reached.append(_path)
        except OSError:
            pass
        finally:
            _client.close()
    print("SESSION-REACHABLE " + " ".join(_reached) if _reached else "SESSION-UNREACHABLE")

    """
}
