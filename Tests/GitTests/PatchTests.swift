import Foundation
import ProctorGit
import XCTest

final class PatchTests: XCTestCase {
    private let files = ["train.py": "a = 1\nb = 2\nc = 3\n", "prepare.py": "score\n"]

    func testGoodPatchApplies() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        try scratch.write("train.py", "a = 1\nb = 42\nc = 3\n")
        try scratch.write("notes.md", "new\n")
        try scratch.git("add", "-N", "notes.md")
        let patch = try scratch.git("diff") + "\n"
        try scratch.git("reset", "-q", "--hard")
        try? scratch.remove("notes.md")
        XCTAssertEqual(scratch.read("train.py"), "a = 1\nb = 2\nc = 3\n")

        let entries = try Repository.patchEntries(patch)
        XCTAssertEqual(entries.map(\.newPath).sorted(), ["notes.md", "train.py"])
        XCTAssertTrue(entries.allSatisfy { $0.problem == nil })
        XCTAssertEqual(entries.first { $0.newPath == "notes.md" }?.kind, .added)

        try repo.apply(patch: patch)
        XCTAssertEqual(scratch.read("train.py"), "a = 1\nb = 42\nc = 3\n")
        XCTAssertEqual(scratch.read("notes.md"), "new\n")
        XCTAssertEqual(try repo.status(against: repo.head()!).map(\.path), ["notes.md", "train.py"])
    }

    func testNonApplyingPatchIsRejectedAndChangesNothing() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let patch = """
            diff --git a/prepare.py b/prepare.py
            --- a/prepare.py
            +++ b/prepare.py
            @@ -1 +1 @@
            -score
            +fake
            diff --git a/train.py b/train.py
            --- a/train.py
            +++ b/train.py
            @@ -1,3 +1,3 @@
             a = 1
            -b = 999
            +b = 3
             c = 3

            """
        XCTAssertThrowsError(try repo.apply(patch: patch)) { error in
            guard case .patchDoesNotApply = error as? GitError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(scratch.read("prepare.py"), "score\n", "all or nothing")
        XCTAssertEqual(scratch.read("train.py"), "a = 1\nb = 2\nc = 3\n")
    }

    func testUnsafePathsAreReportedBeforeApplying() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let cases = [
            "../escape.py", ".git/hooks/pre-commit", "src/../../escape.py", ".GIT/config",
        ]
        for path in cases {
            let patch = """
                diff --git a/\(path) b/\(path)
                new file mode 100644
                --- /dev/null
                +++ b/\(path)
                @@ -0,0 +1 @@
                +boom

                """
            let entries = try Repository.patchEntries(patch)
            XCTAssertNotNil(entries.first?.problem, path)
            XCTAssertThrowsError(try repo.apply(patch: patch), path) { error in
                guard case .unsafePath = error as? GitError else { return XCTFail("\(path): \(error)") }
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.root + "/escape.py"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path + "/.git/hooks/pre-commit"))
    }

    func testSymlinkPatchIsReported() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let patch = """
            diff --git a/link b/link
            new file mode 120000
            --- /dev/null
            +++ b/link
            @@ -0,0 +1 @@
            +/etc/passwd
            \\ No newline at end of file

            """
        let entries = try Repository.patchEntries(patch)
        XCTAssertEqual(entries.first?.newMode, .symlink)
        XCTAssertNotNil(entries.first?.problem)
        XCTAssertThrowsError(try repo.apply(patch: patch))
        XCTAssertFalse(scratch.exists("link"))
    }

    func testPatchThroughALinkInTheWorkingTreeIsRefused() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let outside = scratch.root + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try scratch.symlink("lib", to: outside)
        let patch = """
            diff --git a/lib/evil.py b/lib/evil.py
            new file mode 100644
            --- /dev/null
            +++ b/lib/evil.py
            @@ -0,0 +1 @@
            +boom

            """
        XCTAssertNil(try Repository.patchEntries(patch).first?.problem, "lexically fine")
        XCTAssertThrowsError(try repo.apply(patch: patch)) { error in
            guard case .unsafePath = error as? GitError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside), [])
    }

    func testGarbageIsNotAPatch() throws {
        XCTAssertThrowsError(try Repository.patchEntries("diff --git a/x\n@@ nonsense"))
        XCTAssertEqual(try Repository.patchEntries(""), [])
    }
}

/// `--parallel`'s re-apply (issue 13): a three-way line merge of one file.
final class MergeFileTests: XCTestCase {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testChangesToNearbyLinesMergeAndToTheSameLineDoNot() throws {
        let base = "A = 1\nB = 2\nC = 3\nD = 4\n"
        let merged = try Repository.mergeFile(base: bytes(base), ours: bytes("A = 9\nB = 2\nC = 3\nD = 4\n"),
                                              theirs: bytes("A = 1\nB = 2\nC = 7\nD = 4\n"))
        XCTAssertEqual(merged.map { String(decoding: $0, as: UTF8.self) }, "A = 9\nB = 2\nC = 7\nD = 4\n")
        XCTAssertNil(try Repository.mergeFile(base: bytes(base), ours: bytes("A = 9\nB = 2\nC = 3\nD = 4\n"),
                                              theirs: bytes("A = 5\nB = 2\nC = 3\nD = 4\n")), "both changed A")
        XCTAssertEqual(try Repository.mergeFile(base: [], ours: [], theirs: bytes("new\n")), bytes("new\n"))
    }
}
