import Foundation
import ProctorAgents

/// A throw-away research workspace: `<tmp>/ws` holds the files, and `<tmp>` itself holds an
/// `outside.txt` that no agent may reach, so "../" escapes are observable too.
final class TestWorkspace {
    let parent: String
    let root: String

    static let train = """
        import sys

        LEARNING_RATE = 0.1  # mutate: float 0.005..0.5 log
        NUM_LEAVES = 15  # mutate: int 4..128 log
        FEATURE_FRACTION = 1.0  # mutate: float 0.3..1.0 linear


        def main():
            print("training with", LEARNING_RATE, NUM_LEAVES, FEATURE_FRACTION)
            return 0


        if __name__ == "__main__":
            sys.exit(main())

        """

    static let prepare = """
        # The locked evaluator.
        import json
        print(json.dumps({"auc": 0.5}))

        """

    init(files: [String: String]? = nil) throws {
        let template = NSTemporaryDirectory() + "proctor-agent-test-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { throw POSIXError(.EIO) }
        parent = String(cString: made)
        root = parent + "/ws"
        try FileManager.default.createDirectory(atPath: root + "/.git/hooks", withIntermediateDirectories: true)
        try "outside the workspace\n".write(toFile: parent + "/outside.txt", atomically: false, encoding: .utf8)
        try "[core]\n".write(toFile: root + "/.git/config", atomically: false, encoding: .utf8)
        let contents =
            files ?? [
                "train.py": Self.train, "prepare.py": Self.prepare, "program.md": "Improve the AUC.\n",
                "proctor.toml": "[files]\neditable = [\"train.py\"]\n",
            ]
        for (path, text) in contents {
            let full = root + "/" + path
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: false, encoding: .utf8)
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: parent)
    }

    func read(_ path: String) -> String? {
        FileManager.default.contents(atPath: root + "/" + path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every file under the temporary directory (workspace and outside), symlinks as their target.
    func snapshot() -> [String: Data] {
        var result: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: parent)
        while let relative = enumerator?.nextObject() as? String {
            let full = parent + "/" + relative
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: full) {
                result[relative] = Data("symlink -> \(target)".utf8)
            } else if let data = FileManager.default.contents(atPath: full) {
                result[relative] = data
            }
        }
        return result
    }

    func context(
        editable: [String] = ["train.py"], notes: [String] = ["LOG.md"], seed: UInt64 = 42, iteration: Int = 1,
        history: [HistoryEntry] = []
    ) -> AgentContext {
        var files: [String: String] = [:]
        for path in editable { files[path] = read(path) ?? "" }
        return AgentContext(
            workspace: root, program: read("program.md") ?? "", editableFiles: files, notesFiles: notes,
            metric: "auc", maximize: true, bestScore: 0.81, history: history, iteration: iteration, seed: seed,
            maxDiffLines: 400)
    }
}
