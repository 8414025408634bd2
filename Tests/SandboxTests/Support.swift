import Foundation
import ProctorTestSupport
import XCTest

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
        _ = try? runChild(["/bin/rm", "-rf", root])
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
              environment: [String: String]? = nil) throws -> ChildOutcome {
        var env = environment ?? ProcessInfo.processInfo.environment
        // Each test workspace gets its own machine lock, so tests do not serialise on the real one.
        env["PROCTOR_MACHINE_LOCK"] = path(".machine.lock")
        return try runChild([proctorBinary, "exec", "--workspace", root, "--phase", phase] + options + ["--"] + command,
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

/// SHA-256-free byte equality is enough here: the tests compare whole small files.
func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

/// python3 as the sandbox will find it.
let python = "python3"
