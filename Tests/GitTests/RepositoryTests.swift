import Foundation
import ProctorGit
import XCTest

final class RepositoryTests: XCTestCase {
    private let files = ["train.py": "lr = 0.1\n", "prepare.py": "print('score')\n", "LOG.md": "# log\n"]

    func testCreateCommitAndReadBack() throws {
        let scratch = try Scratch(self)
        let repo = try Repository.create(at: scratch.path + "/new/ws")
        XCTAssertNil(try repo.head())
        XCTAssertEqual(try repo.currentBranch(), "main")
        try FileManager.default.createDirectory(atPath: repo.workdir + "/src", withIntermediateDirectories: true)
        try Data("print(1)\n".utf8).write(to: URL(fileURLWithPath: repo.workdir + "/src/run.py"))
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: repo.workdir + "/extra.txt"))
        let id = try repo.commit(message: "scaffold\n\nbody text", paths: ["src"])
        XCTAssertEqual(try repo.head(), id)
        XCTAssertEqual(try repo.branchTip("main"), id)
        XCTAssertEqual(try repo.blob(at: "src/run.py", in: id), Array("print(1)\n".utf8))
        XCTAssertThrowsError(try repo.blob(at: "extra.txt", in: id)) {
            XCTAssertTrue(($0 as? GitError)?.isNotFound == true)
        }
        let info = try repo.commitInfo(id)
        XCTAssertEqual(info.summary, "scaffold")
        XCTAssertEqual(info.message, "scaffold\n\nbody text")
        XCTAssertEqual(info.parents, [])
        // git itself agrees.
        let git = Scratch.gitOutput(in: repo.workdir, "ls-tree", "-r", "--name-only", "HEAD")
        XCTAssertEqual(git, "src/run.py")
        XCTAssertThrowsError(try Repository.create(at: repo.workdir), "no re-initialisation")
    }

    func testCommitDirectoryLikeGitAdd() throws {
        let (scratch, repo) = try Scratch.repository(
            self, ["src/a.py": "a\n", "src/sub/b.py": "b\n", ".gitignore": "*.log\n", "other.py": "o\n"])
        try scratch.write("src/kept.log", "tracked though ignored\n")
        try scratch.git("add", "-f", "src/kept.log")
        try scratch.git("commit", "-q", "-m", "kept")
        try scratch.remove("src/sub")
        try scratch.write("src/new.py", "n\n")
        try scratch.write("src/debug.log", "ignored\n")
        try scratch.write("src/kept.log", "changed\n")
        try scratch.write("other.py", "changed\n")
        let id = try repo.commit(message: "src", paths: ["src"])
        XCTAssertEqual(
            try scratch.git("ls-tree", "-r", "--name-only", id.hex).split(separator: "\n"),
            [".gitignore", "other.py", "src/a.py", "src/kept.log", "src/new.py"])
        XCTAssertEqual(try repo.blob(at: "src/kept.log", in: id), Array("changed\n".utf8))
        XCTAssertEqual(try repo.blob(at: "other.py", in: id), Array("o\n".utf8))
    }

    func testOpenDoesNotSearchParents() throws {
        let (scratch, _) = try Scratch.repository(self, files)
        try FileManager.default.createDirectory(atPath: scratch.path + "/sub", withIntermediateDirectories: true)
        XCTAssertThrowsError(try Repository.open(at: scratch.path + "/sub")) { error in
            guard case .libgit2(let function, _, _) = error as? GitError else { return XCTFail("\(error)") }
            XCTAssertEqual(function, "git_repository_open_ext")
        }
    }

    func testCommitOnlyListedPathsAndNoHooks() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let base = try repo.head()!
        try scratch.write("train.py", "lr = 0.2\n")
        try scratch.write("prepare.py", "print('fake score')\n")
        try scratch.write(".git/hooks/pre-commit", "#!/bin/sh\ntouch \(scratch.root)/hook-ran\n")
        try scratch.chmod(".git/hooks/pre-commit", 0o755)
        try scratch.write(".git/hooks/post-commit", "#!/bin/sh\ntouch \(scratch.root)/hook-ran\n")
        try scratch.chmod(".git/hooks/post-commit", 0o755)

        let id = try repo.commit(message: "lr 0.2", paths: ["train.py"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.root + "/hook-ran"))
        XCTAssertEqual(try repo.commitInfo(id).parents, [base])
        XCTAssertEqual(try repo.blob(at: "train.py", in: id), Array("lr = 0.2\n".utf8))
        XCTAssertEqual(try repo.blob(at: "prepare.py", in: id), Array("print('score')\n".utf8))
        // The unlisted file is still modified on disk, and is the only change left.
        XCTAssertEqual(scratch.read("prepare.py"), "print('fake score')\n")
        XCTAssertEqual(try repo.status(against: id).map(\.path), ["prepare.py"])
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "M prepare.py")
    }

    func testCommitAllTrackedChanges() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("train.py", "lr = 0.3\n")
        try scratch.remove("LOG.md")
        try scratch.write("untracked.py", "x\n")
        let id = try repo.commit(message: "all tracked")
        XCTAssertEqual(try repo.blob(at: "train.py", in: id), Array("lr = 0.3\n".utf8))
        XCTAssertThrowsError(try repo.blob(at: "LOG.md", in: id))
        XCTAssertThrowsError(try repo.blob(at: "untracked.py", in: id))
        XCTAssertEqual(try repo.status(against: id).map(\.path), ["untracked.py"])
    }

    func testCommitKeepsLinksAsLinksAndModes() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.symlink("link", to: "/etc/passwd")
        try scratch.write("run.sh", "#!/bin/sh\n")
        try scratch.chmod("run.sh", 0o755)
        let id = try repo.commit(message: "link", paths: ["link", "run.sh"])
        XCTAssertTrue(try scratch.git("ls-tree", id.hex, "link").hasPrefix("120000 blob "))
        XCTAssertEqual(try scratch.git("cat-file", "-p", "\(id.hex):link"), "/etc/passwd")
        XCTAssertTrue(try scratch.git("ls-tree", id.hex, "run.sh").hasPrefix("100755 "))
        XCTAssertThrowsError(try repo.commit(message: "x", paths: ["../outside"]))
        XCTAssertThrowsError(try repo.commit(message: "x", paths: [".git/config"]))
    }

    func testBranchesAndLog() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let base = try repo.head()!
        try repo.createBranch("proctor/run-1", at: base)
        XCTAssertThrowsError(try repo.createBranch("proctor/run-1", at: base))
        try repo.setHead(branch: "proctor/run-1")
        XCTAssertEqual(try repo.currentBranch(), "proctor/run-1")
        var ids: [ObjectID] = []
        for step in 1...3 {
            try scratch.write("train.py", "lr = \(step)\n")
            ids.append(try repo.commit(message: "step \(step)", paths: ["train.py"]))
        }
        XCTAssertEqual(try repo.branchTip("main"), base)
        XCTAssertEqual(try repo.branchTip("proctor/run-1"), ids[2])
        XCTAssertNil(try repo.branchTip("proctor/none"))
        XCTAssertEqual(try repo.resolve("HEAD~1"), ids[1])
        XCTAssertEqual(try repo.resolve(String(ids[0].hex.prefix(10))), ids[0])
        XCTAssertEqual(try repo.resolve("main"), base)
        XCTAssertEqual(try repo.log(branch: "proctor/run-1").map(\.summary), ["step 3", "step 2", "step 1", "initial"])
        XCTAssertEqual(try repo.log(limit: 2).map(\.id), [ids[2], ids[1]])
        XCTAssertEqual(try repo.log(branch: "main").map(\.id), [base])
        XCTAssertEqual(try scratch.git("rev-parse", "--abbrev-ref", "HEAD"), "proctor/run-1")
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "")
    }

    func testMaterializePinnedCopy() throws {
        let (scratch, repo) = try Scratch.repository(
            self,
            ["prepare.py": "evaluator\n", "eval/run.sh": "#!/bin/sh\n", "eval/data/y.csv": "1\n", "train.py": "t\n"],
            executable: ["eval/run.sh"])
        let commit = try repo.head()!
        try scratch.write("prepare.py", "tampered\n")
        let pinned = scratch.root + "/pinned"
        try FileManager.default.createDirectory(atPath: pinned, withIntermediateDirectories: true)
        try repo.materialize(["prepare.py", "eval"], from: commit, into: pinned)
        let pin = { (path: String) in try String(contentsOfFile: pinned + "/" + path, encoding: .utf8) }
        XCTAssertEqual(try pin("prepare.py"), "evaluator\n")
        XCTAssertEqual(try pin("eval/data/y.csv"), "1\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: pinned + "/train.py"))
        let mode = { (path: String) -> Int in
            var info = stat()
            return lstat(pinned + "/" + path, &info) == 0 ? Int(info.st_mode & 0o7777) : -1
        }
        XCTAssertEqual(mode("prepare.py"), 0o444)
        XCTAssertEqual(mode("eval/run.sh"), 0o555)
        XCTAssertEqual(mode("eval/data/y.csv"), 0o444)
        // Never overwrites, never escapes.
        XCTAssertThrowsError(try repo.materialize(["prepare.py"], from: commit, into: pinned))
        for bad in ["../prepare.py", "/etc/passwd", ".git/config", "eval/../prepare.py"] {
            XCTAssertThrowsError(try repo.materialize([bad], from: commit, into: scratch.root + "/other")) { error in
                guard case .unsafePath = error as? GitError else { return XCTFail("\(bad): \(error)") }
            }
        }
    }

    func testMaterializeRefusesLinksAndDoesNotFollowThem() throws {
        let (scratch, repo) = try Scratch.repository(self, ["eval/a.py": "a\n"])
        try scratch.symlink("eval/link", to: "/etc/passwd")
        let commit = try repo.commit(message: "link", paths: ["eval/link"])
        let pinned = scratch.root + "/pinned"
        try FileManager.default.createDirectory(atPath: pinned, withIntermediateDirectories: true)
        XCTAssertThrowsError(try repo.materialize(["eval"], from: commit, into: pinned))
        // A link inside the destination is not followed to create files elsewhere.
        let outside = scratch.root + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        let other = scratch.root + "/pinned2"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: other + "/eval", withDestinationPath: outside)
        XCTAssertThrowsError(try repo.materialize(["eval/a.py"], from: commit, into: other))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside), [])
    }
}

extension Scratch {
    static func gitOutput(in directory: String, _ arguments: String...) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = ["-C", directory] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A loop's keeps hold their index entries in memory (`defersIndexWrites`, issue 10): the repository's
/// own status and restore see them at once, `.git/index` gets them at `writeIndex`, a git that rewrote
/// the file meanwhile loses none of them, and a status through an index left behind (a SIGKILL before
/// the write) still finds the working tree equal to the commit.
final class DeferredIndexTests: XCTestCase {
    private let files = ["train.py": "lr = 0.1\n", "prepare.py": "print('score')\n"]

    func testKeepsWaitInMemoryUntilWritten() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try repo.resetIndex(to: repo.head()!)  // as a run's start does
        repo.defersIndexWrites = true
        let before = try scratch.git("ls-files", "-s", "train.py")
        try scratch.write("train.py", "lr = 0.2\n")
        let kept = try repo.commit(message: "lr 0.2", paths: ["train.py"])
        XCTAssertEqual(try repo.status(against: kept), [], "the repository itself sees its keep at once")
        XCTAssertEqual(try scratch.git("ls-files", "-s", "train.py"), before, "not yet in .git/index")
        try repo.writeIndex(unlessWrittenWithin: 3600)
        XCTAssertEqual(try scratch.git("ls-files", "-s", "train.py"), before, "written less than an hour ago (at the commit before)")
        try repo.writeIndex()
        XCTAssertNotEqual(try scratch.git("ls-files", "-s", "train.py"), before)
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "", "git agrees once written")
    }

    func testAnotherGitRewritingTheIndexLosesNoKeep() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        repo.defersIndexWrites = true
        try scratch.write("train.py", "lr = 0.3\n")
        let kept = try repo.commit(message: "lr 0.3", paths: ["train.py"])
        // The user's `git status` (or `git add`) rewrites .git/index from what it holds on disk.
        try scratch.write("notes.txt", "mine\n")
        _ = try scratch.git("add", "notes.txt")
        _ = try scratch.git("rm", "-q", "--cached", "notes.txt")
        XCTAssertEqual(try repo.status(against: kept).map(\.path), ["notes.txt"], "train.py is still the kept one")
        try repo.writeIndex()
        XCTAssertEqual(try scratch.git("status", "--porcelain", "--untracked-files=no"), "")
    }

    func testAStatusThroughAnIndexLeftBehindSeesNoChange() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        repo.defersIndexWrites = true
        try scratch.write("train.py", "lr = 0.4\n")
        try scratch.write("model.py", "layers = 2\n")
        try scratch.remove("prepare.py")
        try scratch.write("bin.dat", "\u{0}\u{1}\u{2}")
        let kept = try repo.commit(message: "lr 0.4", paths: ["train.py", "model.py", "prepare.py", "bin.dat"])
        // Killed before the write: a new process (a later `proctor check`) opens the stale index.
        let later = try Repository.open(at: scratch.path)
        XCTAssertEqual(try later.status(against: kept), [], "the tree equals the kept commit, whatever the index says")
        XCTAssertEqual(try scratch.git("ls-files", "model.py"), "", "a status never writes the index")
        try later.resetIndex(to: kept)
        XCTAssertEqual(try scratch.git("status", "--porcelain"), "")
    }
}
