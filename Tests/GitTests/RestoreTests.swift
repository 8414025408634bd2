import Foundation
@testable import ProctorGit
import XCTest

final class RestoreTests: XCTestCase {
    private let files = [
        "train.py": "lr = 0.1\n",
        "run.sh": "#!/bin/sh\n",
        "src/model.py": "model\n",
        "src/deep/util.py": "util\n",
        ".gitignore": ".proctor/\noutputs/\n*.log\n",
    ]
    private let excluded = [".proctor/", "outputs/"]

    /// An agent can nest directories far deeper than a recursive removal's stack (or the descriptor
    /// limit) allows, and make each unreadable: the removal holds two descriptors and no stack.
    func testDirectoriesNestedTwentyThousandDeepAreRemoved() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let commit = try repo.head()!
        var fd = open(scratch.path + "/src", O_RDONLY | O_DIRECTORY)
        for _ in 0..<20_000 {
            XCTAssertEqual(mkdirat(fd, "d", 0o700), 0)
            let next = openat(fd, "d", O_RDONLY | O_DIRECTORY)
            close(fd)
            fd = next
        }
        let file = openat(fd, "f", O_WRONLY | O_CREAT, 0o644)
        close(file)
        close(fd)
        chmod(scratch.path + "/src/d", 0o300)
        try repo.restore(to: commit, excluding: excluded)
        XCTAssertFalse(scratch.exists("src/d"))
        XCTAssertEqual(scratch.read("src/model.py"), "model\n")
    }

    func testRestoreUndoesEverything() throws {
        let (scratch, repo) = try Scratch.repository(self, files, executable: ["run.sh"])
        let commit = try repo.head()!
        try scratch.write("train.py", "lr = 99\n")
        try scratch.chmod("train.py", 0o755)
        try scratch.chmod("run.sh", 0o644)
        try scratch.remove("src/deep/util.py")
        try scratch.chmod("src/deep", 0o000)
        try scratch.write("new.py", "x\n")
        try scratch.write("newdir/a/b/c.txt", "deep\n")
        try scratch.write("ignored.log", "ignored by .gitignore\n")
        try scratch.write("src/untracked.py", "u\n")
        try scratch.write("locked/inner.txt", "unreadable directory\n")
        try scratch.chmod("locked", 0o000)
        try scratch.write(".proctor/results.tsv", "ledger\n")
        try scratch.write("outputs/model.bin", "weights\n")
        try FileManager.default.createDirectory(atPath: scratch.path + "/emptydir", withIntermediateDirectories: true)

        try repo.restore(to: commit, excluding: excluded)

        XCTAssertEqual(scratch.read("train.py"), "lr = 0.1\n")
        XCTAssertEqual(scratch.mode("train.py"), 0o644)
        XCTAssertEqual(scratch.mode("run.sh"), 0o755)
        XCTAssertEqual(scratch.read("src/deep/util.py"), "util\n")
        XCTAssertEqual(scratch.mode("src/deep"), 0o755)
        for gone in ["new.py", "newdir", "ignored.log", "src/untracked.py", "locked", "emptydir"] {
            XCTAssertFalse(scratch.exists(gone), gone)
        }
        XCTAssertEqual(scratch.read(".proctor/results.tsv"), "ledger\n")
        XCTAssertEqual(scratch.read("outputs/model.bin"), "weights\n")
        XCTAssertEqual(try repo.status(against: commit, excluding: excluded), [])
        XCTAssertEqual(try scratch.git("status", "--porcelain", "--ignored"), "!! .proctor/\n!! outputs/")
    }

    /// Issue 10: a same-size edit whose access and modification times were put back. The index's cache
    /// says "unchanged" by size and mtime; restore compares content, and leaves untouched files alone.
    func testSameSizeEditWithItsTimesPutBackIsRestored() throws {
        let (scratch, repo) = try Scratch.repository(self, files, executable: ["run.sh"])
        let commit = try repo.head()!
        // Restore once so that the index caches the files' stat data (as any `git status` does).
        try repo.restore(to: commit, excluding: excluded)
        _ = try scratch.git("update-index", "--refresh")
        let path = scratch.path + "/train.py"
        let before = try FileManager.default.attributesOfItem(atPath: path)
        let untouched = try FileManager.default.attributesOfItem(atPath: scratch.path + "/src/model.py")[.systemFileNumber] as? Int
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.write(contentsOf: Data("lr = 9.1\n".utf8))
        try handle.close()
        try FileManager.default.setAttributes([.modificationDate: before[.modificationDate]!], ofItemAtPath: path)
        XCTAssertEqual(try repo.status(against: commit, excluding: excluded).map(\.path), ["train.py"], "validation sees it")

        try repo.restore(to: commit, excluding: excluded)

        XCTAssertEqual(scratch.read("train.py"), "lr = 0.1\n")
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "")
        XCTAssertEqual(try repo.status(against: commit, excluding: excluded), [])
        // The cache is trusted where it holds: an untouched file is not rewritten (same inode).
        XCTAssertEqual(
            try FileManager.default.attributesOfItem(atPath: scratch.path + "/src/model.py")[.systemFileNumber] as? Int, untouched)
    }

    /// The repository of `files` and a directory next to it holding `model.py` ("precious"), which no
    /// restore may touch through a link.
    private func withOutsideDirectory() throws -> (Scratch, Repository, ObjectID, String) {
        let (scratch, repo) = try Scratch.repository(self, files, executable: ["run.sh"])
        let outside = scratch.root + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: outside + "/model.py"))
        return (scratch, repo, try repo.head()!, outside)
    }

    /// Issue 10: the loop's restore costs what changed. With `within` (the only places a sandbox may
    /// write) it restores what status reports there, prunes `within`, looks at nothing else, and
    /// rewrites a changed file in place (a sandbox's bind mount of it survives an unlink-free restore).
    func testRestoreWithinUndoesEverythingAndTouchesNothingElse() throws {
        let (scratch, repo, commit, outside) = try withOutsideDirectory()
        let inode = { (rel: String) in try FileManager.default.attributesOfItem(atPath: scratch.path + "/" + rel)[.systemFileNumber] as? Int }
        let untouched = try inode("src/deep/util.py")
        let trainInode = try inode("train.py")
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: scratch.path + "/train.py"))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data("lr = 99\n".utf8))
        try handle.close()
        try scratch.write("outside-within.txt", "not looked at\n")
        try scratch.chmod("run.sh", 0o644)
        try scratch.write("new.py", "x\n")
        try scratch.write("newdir/a/b/c.txt", "deep\n")
        try scratch.write("ignored.log", "ignored by .gitignore\n")
        try FileManager.default.createDirectory(atPath: scratch.path + "/src/emptydir", withIntermediateDirectories: true)
        try scratch.remove("src/model.py")
        try scratch.symlink("src/model.py", to: outside + "/model.py")
        try scratch.write(".proctor/results.tsv", "ledger\n")

        try repo.restore(to: commit, excluding: excluded, within: ["train.py", "run.sh", "src", "new.py", "newdir", "ignored.log"])

        XCTAssertEqual(scratch.read("train.py"), "lr = 0.1\n")
        XCTAssertEqual(try inode("train.py"), trainInode, "rewritten in place")
        XCTAssertEqual(scratch.read("outside-within.txt"), "not looked at\n")
        try scratch.remove("outside-within.txt")
        XCTAssertEqual(scratch.mode("run.sh"), 0o755)
        XCTAssertEqual(scratch.read("src/model.py"), "model\n")
        XCTAssertFalse(scratch.isSymlink("src/model.py"))
        XCTAssertEqual(try String(contentsOfFile: outside + "/model.py", encoding: .utf8), "precious\n", "the link's target")
        for gone in ["new.py", "newdir", "ignored.log", "src/emptydir"] { XCTAssertFalse(scratch.exists(gone), gone) }
        XCTAssertEqual(scratch.read(".proctor/results.tsv"), "ledger\n")
        XCTAssertEqual(try inode("src/deep/util.py"), untouched, "an unchanged file is not rewritten")
        XCTAssertEqual(try repo.status(against: commit, excluding: excluded), [])
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "")
    }

    /// A hard link planted at a tracked path to a file elsewhere (mode 0600): written in place, the
    /// restore gave the other file the committed bytes and mode 0644. The name is replaced now.
    func testRestoreWithinDoesNotWriteThroughAHardLink() throws {
        let (scratch, repo, commit, outside) = try withOutsideDirectory()
        let victim = outside + "/victim.txt"
        try Data("victim\n".utf8).write(to: URL(fileURLWithPath: victim))
        chmod(victim, 0o600)
        try scratch.remove("train.py")
        XCTAssertEqual(link(victim, scratch.path + "/train.py"), 0, String(cString: strerror(errno)))

        try repo.restore(to: commit, excluding: excluded, within: ["train.py", "src"])

        XCTAssertEqual(scratch.read("train.py"), "lr = 0.1\n")
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "victim\n", "written through the link")
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: victim)[.posixPermissions] as? Int), 0o600)
        XCTAssertEqual(try repo.status(against: commit, excluding: excluded), [])
    }

    /// A link planted in place of a tracked directory: removed as a link, the directory checked out again.
    func testRestoreWithinReplacesALinkedDirectory() throws {
        let (scratch, repo, commit, outside) = try withOutsideDirectory()
        try FileManager.default.removeItem(atPath: scratch.path + "/src")
        try scratch.symlink("src", to: outside)

        try repo.restore(to: commit, excluding: excluded, within: ["train.py", "src"])

        XCTAssertFalse(scratch.isSymlink("src"))
        XCTAssertEqual(scratch.read("src/model.py"), "model\n")
        XCTAssertEqual(scratch.read("src/deep/util.py"), "util\n")
        XCTAssertEqual(try String(contentsOfFile: outside + "/model.py", encoding: .utf8), "precious\n")
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "")
    }

    func testCacheWouldHideOnlyAWriteItCannotSee() {
        let cached = FileSystem.Stamp(mtime: (100, 5), ctime: (100, 5), inode: 7, size: 9)
        XCTAssertFalse(Repository.cacheWouldHide(cached, cached), "untouched")
        XCTAssertFalse(Repository.cacheWouldHide(nil, cached), "not in the index: checkout compares content")
        var written = cached
        written.ctime = (130, 0)
        XCTAssertTrue(Repository.cacheWouldHide(cached, written), "size and mtime put back, ctime moved")
        var replaced = cached
        replaced.inode = 8
        XCTAssertTrue(Repository.cacheWouldHide(cached, replaced), "a new file with the old times")
        var grown = written
        grown.size = 10
        XCTAssertFalse(Repository.cacheWouldHide(cached, grown), "checkout sees the size and compares content itself")
    }

    func testPlantedSymlinksAreRemovedWithoutTouchingTheirTargets() throws {
        let (scratch, repo) = try Scratch.repository(self, files, executable: ["run.sh"])
        let commit = try repo.head()!
        let outside = scratch.root + "/outside"
        try FileManager.default.createDirectory(atPath: outside + "/sub", withIntermediateDirectories: true)
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: outside + "/sub/file.txt"))
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: outside + "/model.py"))
        // An untracked link to a directory, a link replacing a tracked file, a link replacing a tracked directory.
        try scratch.symlink("escape", to: outside)
        try scratch.remove("train.py")
        try scratch.symlink("train.py", to: outside + "/sub/file.txt")
        try scratch.remove("src")
        try scratch.symlink("src", to: outside)

        try repo.restore(to: commit, excluding: excluded)

        XCTAssertFalse(scratch.exists("escape"))
        XCTAssertFalse(scratch.isSymlink("train.py"))
        XCTAssertFalse(scratch.isSymlink("src"))
        XCTAssertEqual(scratch.read("train.py"), "lr = 0.1\n")
        XCTAssertEqual(scratch.read("src/model.py"), "model\n")
        XCTAssertEqual(try String(contentsOfFile: outside + "/sub/file.txt", encoding: .utf8), "precious\n")
        XCTAssertEqual(try String(contentsOfFile: outside + "/model.py", encoding: .utf8), "precious\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside).sorted(), ["model.py", "sub"])
        XCTAssertEqual(try repo.status(against: commit, excluding: excluded), [])
    }

    func testExcludedPrefixIsNotFollowedOrEntered() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let commit = try repo.head()!
        try scratch.write("nested/keep/state.json", "{}\n")
        try scratch.write("nested/drop.txt", "x\n")
        try repo.restore(to: commit, excluding: ["nested/keep/"])
        XCTAssertEqual(scratch.read("nested/keep/state.json"), "{}\n")
        XCTAssertFalse(scratch.exists("nested/drop.txt"))
    }

    func testRestoreToAnOlderCommitAndIndexMatches() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let first = try repo.head()!
        try scratch.write("added-later.py", "later\n")
        try scratch.write("train.py", "lr = 0.5\n")
        let second = try repo.commit(message: "second", paths: ["added-later.py", "train.py"])
        try repo.restore(to: first, excluding: excluded)
        XCTAssertFalse(scratch.exists("added-later.py"))
        XCTAssertEqual(scratch.read("train.py"), "lr = 0.1\n")
        XCTAssertEqual(try repo.status(against: first), [])
        try repo.restore(to: second, excluding: excluded)
        XCTAssertEqual(scratch.read("added-later.py"), "later\n")
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "")
    }
}
