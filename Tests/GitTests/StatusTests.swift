import Foundation
import ProctorGit
import XCTest

final class StatusTests: XCTestCase {
    private let files = [
        "train.py": "a = 1\nb = 2\nc = 3\n",
        "prepare.py": "def score():\n    return 1\n",
        "data/rows.csv": "x,y\n1,2\n",
        ".gitignore": ".proctor/\noutputs/\n*.log\n",
        "long.txt": (1...40).map { "line \($0) of a long enough file to be recognised when renamed" }.joined(
            separator: "\n"),
    ]

    private func status(_ repo: Repository) throws -> [String: Change] {
        let changes = try repo.status(against: repo.head()!, excluding: [".proctor/", "outputs"])
        return Dictionary(uniqueKeysWithValues: changes.map { ($0.path, $0) })
    }

    func testCleanTreeHasNoChanges() throws {
        let (_, repo) = try Scratch.repository(self, files)
        XCTAssertEqual(try repo.status(against: repo.head()!), [])
    }

    func testModifiedAddedAndDeleted() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("train.py", "a = 1\nb = 20\nc = 3\nd = 4\n")
        try scratch.write("notes/LOG.md", "one\ntwo\nthree")
        try scratch.remove("prepare.py")
        let changes = try status(repo)
        XCTAssertEqual(changes.keys.sorted(), ["notes/LOG.md", "prepare.py", "train.py"])

        let train = try XCTUnwrap(changes["train.py"])
        XCTAssertEqual(train.kind, .modified)
        XCTAssertEqual([train.addedLines, train.removedLines], [2, 1])
        XCTAssertEqual([train.oldMode, train.newMode], [.regular, .regular])
        XCTAssertEqual(train.newSize, 25)
        XCTAssertFalse(train.isBinary || train.isSymlink || train.isSubmodule)

        let log = try XCTUnwrap(changes["notes/LOG.md"])
        XCTAssertEqual(log.kind, .added)
        XCTAssertEqual([log.oldMode, log.newMode], [.absent, .regular])
        XCTAssertEqual([log.addedLines, log.removedLines], [3, 0])
        XCTAssertEqual(log.newSize, 13)

        let prepare = try XCTUnwrap(changes["prepare.py"])
        XCTAssertEqual(prepare.kind, .deleted)
        XCTAssertEqual([prepare.addedLines, prepare.removedLines], [0, 2])
        XCTAssertEqual(prepare.newMode, .absent)
    }

    /// A path whose lines count against nothing (notes; anything a revert looks at) is not diffed:
    /// a diff costs what the content does (a notes file of 500,000 lines took 7.5 s). Its change and
    /// size are reported all the same.
    func testPathsNotCountedAreNotDiffed() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("train.py", "a = 1\nb = 20\nc = 3\nd = 4\n")
        try scratch.write("long.txt", "replaced\n")
        let changes = try repo.status(against: repo.head()!, excluding: [".proctor/", "outputs"], countingLines: { $0 != "long.txt" })
        let byPath = Dictionary(uniqueKeysWithValues: changes.map { ($0.path, $0) })
        XCTAssertEqual([byPath["train.py"]?.addedLines, byPath["train.py"]?.removedLines], [2, 1])
        let notes = try XCTUnwrap(byPath["long.txt"])
        XCTAssertEqual(notes.kind, .modified)
        XCTAssertEqual([notes.addedLines, notes.removedLines], [0, 0], "not diffed")
        XCTAssertEqual(notes.newSize, 9)
    }

    func testIgnoredFilesAreReportedButExcludedPrefixesAreNot() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("debug.log", "hidden by .gitignore\n")
        try scratch.write("deep/er/cache.log", "also ignored\n")
        try scratch.write(".proctor/results.tsv", "ledger\n")
        try scratch.write("outputs/model.bin", "weights\n")
        try scratch.write("outputsx/real.txt", "not excluded: only the directory itself is\n")
        let changes = try status(repo)
        XCTAssertEqual(changes.keys.sorted(), ["debug.log", "deep/er/cache.log", "outputsx/real.txt"])
        XCTAssertEqual(changes["debug.log"]?.kind, .added)
    }

    /// Issue 10: the user's ignored directories (`wandb/`, `data/`) are neither reported nor entered
    /// when the caller says they are the user's; the ones it refuses are listed file by file.
    func testIgnoredPathsTheCallerKeepsAreNotReported() throws {
        var withIgnores = files
        withIgnores[".gitignore"] = ".proctor/\noutputs/\n*.log\nwandb/\ncache/\n"
        let (scratch, repo) = try Scratch.repository(self, withIgnores)
        try scratch.write("wandb/run-1/run.log", "loss 1\n")
        try scratch.write("wandb/settings", "x\n")
        try scratch.write("cache/a/b.bin", "planted\n")
        try scratch.write("top.log", "log\n")
        var asked: [String] = []
        let changes = try repo.status(against: repo.head()!, excluding: [".proctor/", "outputs"]) { path in
            asked.append(path)
            return path == "wandb" || path == "top.log"
        }
        XCTAssertEqual(changes.map(\.path), ["cache/a/b.bin"])
        XCTAssertEqual(changes.first?.kind, .added)
        XCTAssertEqual(asked.sorted(), ["cache", "top.log", "wandb"], "one question per ignored entry, none inside wandb/")
        // Without a keep rule every ignored file is a change, as before.
        XCTAssertEqual(try repo.status(against: repo.head()!, excluding: [".proctor/"]).map(\.path),
                       ["cache/a/b.bin", "top.log", "wandb/run-1/run.log", "wandb/settings"])
        // Restore keeps what the rule keeps and removes the rest.
        try repo.restore(to: repo.head()!, excluding: [".proctor/"]) { $0 == "wandb" }
        XCTAssertEqual(scratch.read("wandb/run-1/run.log"), "loss 1\n")
        XCTAssertFalse(scratch.exists("cache"))
        XCTAssertFalse(scratch.exists("top.log"))
    }

    func testRenameIsDetected() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try FileManager.default.moveItem(atPath: scratch.path + "/long.txt", toPath: scratch.path + "/moved.txt")
        let changes = try status(repo)
        XCTAssertEqual(changes.count, 1)
        let moved = try XCTUnwrap(changes["moved.txt"])
        XCTAssertEqual(moved.kind, .renamed)
        XCTAssertEqual(moved.oldPath, "long.txt")
    }

    func testModeChange() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.chmod("train.py", 0o755)
        let train = try XCTUnwrap(status(repo)["train.py"])
        XCTAssertEqual(train.kind, .modified)
        XCTAssertEqual([train.oldMode, train.newMode], [.regular, .executable])
        XCTAssertEqual(train.addedLines + train.removedLines, 0)
    }

    func testSymlinks() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.symlink("escape", to: "/etc/passwd")
        try scratch.remove("prepare.py")
        try scratch.symlink("prepare.py", to: "/tmp/fake_prepare.py")
        let changes = try status(repo)
        let escape = try XCTUnwrap(changes["escape"])
        XCTAssertEqual(escape.kind, .added)
        XCTAssertTrue(escape.isSymlink)
        XCTAssertEqual(escape.newMode, .symlink)
        XCTAssertEqual(escape.newSize, Int64("/etc/passwd".utf8.count))
        let prepare = try XCTUnwrap(changes["prepare.py"])
        XCTAssertEqual(prepare.kind, .typeChange)
        XCTAssertTrue(prepare.isSymlink)
        XCTAssertEqual([prepare.oldMode, prepare.newMode], [.regular, .symlink])
    }

    func testBinaryContent() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("train.py", Data([0x61, 0x00, 0x62, 0x0a]))
        try scratch.write("blob.bin", Data([0x00, 0x01, 0x02, 0xff, 0x00]))
        let changes = try status(repo)
        XCTAssertEqual(changes["train.py"]?.isBinary, true)
        XCTAssertEqual(changes["train.py"]?.addedLines, 0)
        XCTAssertEqual(changes["blob.bin"]?.isBinary, true)
        XCTAssertEqual(changes["blob.bin"]?.newSize, 5)
    }

    func testNestedRepositoryIsASubmodule() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("vendor/lib/code.py", "x = 1\n")
        try scratch.run("/usr/bin/git", ["init", "-q", scratch.path + "/vendor/lib"])
        let changes = try status(repo)
        let vendor = try XCTUnwrap(changes["vendor/lib"], "\(changes.keys)")
        XCTAssertTrue(vendor.isSubmodule)
        XCTAssertEqual(vendor.kind, .added)
    }

    /// Root reads it anyway; anyone else (its owner, when proctor is not root) is told it cannot look
    /// at it: libgit2 left a directory of mode 0300 out with a warning, and a program in it ran
    /// unseen by the diff. Never a silently clean tree.
    func testUnreadableDirectoryIsReportedOrRefused() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("hidden/secret.py", "x\n")
        for mode in [0o000, 0o300] {
            try scratch.chmod("hidden", mode)
            let changes = try status(repo)
            if getuid() == 0 {
                XCTAssertEqual(changes.keys.sorted(), ["hidden/secret.py"])
            } else {
                XCTAssertEqual(changes.keys.sorted(), ["hidden"])
                XCTAssertEqual(changes["hidden"]?.unreachable, "a directory that cannot be read")
            }
        }
        try scratch.chmod("hidden", 0o755)
    }

    /// A directory holding a git repository's own files, named anything (`src/sub` with `HEAD`,
    /// `config` and `refs/`): git takes it for a repository and runs its config's `core.fsmonitor`
    /// when the user looks there. Every changed path in it is a nested repository.
    func testFilesOfAGitDirectoryAreANestedRepository() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("src/sub/HEAD", "ref: refs/heads/keep\n")
        XCTAssertEqual(try status(repo)["src/sub/HEAD"]?.isSubmodule, false, "a file named HEAD alone is a file")
        try scratch.write("src/sub/config", "[core]\n\tbare = false\n\tworktree = ..\n\tfsmonitor = touch /tmp/x\n")
        try scratch.write("src/sub/refs/heads/keep", "0000000000000000000000000000000000000000\n")
        let changes = try status(repo)
        for path in ["src/sub/HEAD", "src/sub/config", "src/sub/refs/heads/keep"] {
            XCTAssertEqual(changes[path]?.isSubmodule, true, path)
        }
        let violations = DiffValidator.validate(Array(changes.values), policy: DiffPolicy(isEditable: { _ in true }, isNotes: { _ in false },
                                                                                        maxChangedLines: 1000, maxFileBytes: 1 << 20))
        XCTAssertEqual(Set(violations.filter { $0.rule == .submodule }.map(\.path)), ["src/sub/HEAD", "src/sub/config", "src/sub/refs/heads/keep"])
    }

    func testStatusAgainstAnOlderCommit() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let first = try repo.head()!
        try scratch.write("train.py", "changed\n")
        try scratch.git("commit", "-q", "-am", "second")
        XCTAssertEqual(try repo.status(against: repo.head()!), [])
        XCTAssertEqual(try repo.status(against: first).map(\.path), ["train.py"])
    }
}
