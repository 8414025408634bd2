import Foundation
import XCTest

/// The built `proctor` binary: `$PROCTOR_BIN`, else `.build/debug/proctor` of this checkout.
let proctorBinary: String = {
    if let path = ProcessInfo.processInfo.environment["PROCTOR_BIN"] { return path }
    var dir = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { dir.deleteLastPathComponent() }
    return dir.appendingPathComponent(".build/debug/proctor").path
}()

/// Skips when the binary is not built, except in CI, where a missing binary must fail loudly
/// instead of turning the attack suite into silent skips.
func requireProctorBinary(file: StaticString = #filePath, line: UInt = #line) throws {
    guard !FileManager.default.isExecutableFile(atPath: proctorBinary) else { return }
    if ProcessInfo.processInfo.environment["CI"] != nil {
        XCTFail("no proctor binary at \(proctorBinary)", file: file, line: line)
        throw XCTSkip("no binary")
    }
    throw XCTSkip("build proctor first (swift build)")
}

/// What a finished command did.
struct Outcome {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
}

/// Runs a program to completion, capturing its output (bounded by what the test asks for).
@discardableResult
func runProcess(_ argv: [String], environment: [String: String]? = nil, cwd: String? = nil) throws -> Outcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: argv[0])
    process.arguments = Array(argv.dropFirst())
    if let environment { process.environment = environment }
    if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    // Files, not pipes: a flood cannot deadlock the test and nothing is shared between threads.
    let outPath = NSTemporaryDirectory() + "/proctor-test-out-\(UUID().uuidString)"
    let errPath = outPath + ".err"
    FileManager.default.createFile(atPath: outPath, contents: nil)
    FileManager.default.createFile(atPath: errPath, contents: nil)
    defer {
        unlink(outPath)
        unlink(errPath)
    }
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    let start = Date()
    try process.run()
    process.waitUntilExit()
    try? out.close()
    try? err.close()
    let outData = FileManager.default.contents(atPath: outPath) ?? Data()
    let errData = FileManager.default.contents(atPath: errPath) ?? Data()
    let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    return Outcome(status: status, stdout: String(decoding: outData, as: UTF8.self),
                   stderr: String(decoding: errData, as: UTF8.self), seconds: Date().timeIntervalSince(start))
}

/// A throwaway workspace with a locked evaluator, hidden labels, an editable script and outputs.
final class TestWorkspace {
    let root: String

    static let defaultToml = """
        [files]
        editable = ["train.py"]
        notes    = ["LOG.md"]
        locked   = ["prepare.py", "data/**"]
        hidden   = ["holdout/**"]
        outputs  = ["outputs/"]

        [experiment]
        command  = ["python3", "train.py"]
        timeout  = "10s"
        memory   = "512MiB"
        pids     = 64
        max_file_size = "8MiB"
        max_output_bytes = "16MiB"
        env      = ["PATH", "LANG"]
        seeds    = [42]

        [evaluator]
        command   = ["python3", "prepare.py"]
        metric    = "score"
        """

    init(toml: String = TestWorkspace.defaultToml, extra: String = "") throws {
        var template = Array((NSTemporaryDirectory() + "/proctor-test-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw NSError(domain: "mkdtemp", code: Int(errno)) }
        root = URL(fileURLWithPath: String(cString: made)).resolvingSymlinksInPath().path
        chmod(root, 0o755)
        try write("proctor.toml", toml + "\n" + extra)
        try write("prepare.py", "print('{\"score\": 1.0}')\n")
        try write("train.py", "print('training')\n")
        try write("LOG.md", "notes\n")
        try write("data/train.csv", "x,y\n1,2\n")
        try write("holdout/labels.csv", "id,label\n1,SECRET-LABEL\n")
    }

    deinit {
        _ = try? runProcess(["/bin/rm", "-rf", root])
    }

    func path(_ rel: String) -> String { root + "/" + rel }

    func write(_ rel: String, _ text: String) throws {
        let url = URL(fileURLWithPath: path(rel))
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    func read(_ rel: String) -> String? {
        FileManager.default.contents(atPath: path(rel)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `proctor exec --workspace ROOT [options] -- command`.
    func exec(_ command: [String], phase: String = "experiment", options: [String] = [],
              environment: [String: String]? = nil) throws -> Outcome {
        var env = environment ?? ProcessInfo.processInfo.environment
        // Each test workspace gets its own machine lock, so tests do not serialise on the real one.
        env["PROCTOR_MACHINE_LOCK"] = path(".machine.lock")
        return try runProcess([proctorBinary, "exec", "--workspace", root, "--phase", phase] + options + ["--"] + command,
                              environment: env)
    }

    /// Audit records as dictionaries.
    func audit() -> [[String: Any]] {
        guard let text = read(".proctor/audit.jsonl") else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    func deniedWrites() -> [[String: Any]] {
        audit().filter { $0["kind"] as? String == "write" && $0["decision"] as? String == "denied" && $0["path"] != nil }
    }
}

/// Processes whose command line contains `marker` (the test's own process excluded).
func processes(containing marker: String) -> [String] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var found: [String] = []
    for pid in entries where Int(pid) != nil && Int32(pid) != getpid() {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
        let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        if cmdline.contains(marker) { found.append("\(pid): \(cmdline)") }
    }
    return found
}

/// SHA-256-free byte equality is enough here: the tests compare whole small files.
func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

/// python3 as the sandbox will find it.
let python = "python3"
