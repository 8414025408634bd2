import Foundation
import ProctorGit
import XCTest

final class DiffTextTests: XCTestCase {
    private let files = [
        "train.py": "a = 1\nb = 2\nc = 3\n", "prepare.py": "score\n", "old.txt": "gone soon\n",
        "notes/LOG.md": "log\n",
    ]

    /// The diff of a modified, a new (untracked) and a deleted file re-creates all three on a clean tree,
    /// and a changed file not asked for stays out of it.
    func testDiffTextRoundTripsThroughApply() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let base = try XCTUnwrap(repo.head())
        try scratch.write("train.py", "a = 1\nb = 42\nc = 3\n")
        try scratch.write("features.py", "def f(x):\n    return x * 2\n")
        try scratch.remove("old.txt")
        try scratch.write("notes/LOG.md", "log\nnot part of the patch\n")

        let patch = try repo.diffText(against: base, paths: ["features.py", "old.txt", "train.py"])
        XCTAssertTrue(patch.contains("--- a/train.py\n+++ b/train.py\n"), patch)
        XCTAssertTrue(patch.contains("-b = 2\n+b = 42\n"), patch)
        XCTAssertTrue(patch.contains("+++ b/features.py\n"), patch)
        XCTAssertTrue(patch.contains("--- a/old.txt\n+++ /dev/null\n"), patch)
        XCTAssertFalse(patch.contains("LOG.md"), patch)
        XCTAssertEqual(
            try Repository.patchEntries(patch).map(\.newPath).sorted(), ["features.py", "old.txt", "train.py"])

        try scratch.git("reset", "-q", "--hard")
        try scratch.git("clean", "-qfd")
        XCTAssertEqual(scratch.read("train.py"), files["train.py"])
        XCTAssertFalse(scratch.exists("features.py"))

        try repo.apply(patch: patch)
        XCTAssertEqual(scratch.read("train.py"), "a = 1\nb = 42\nc = 3\n")
        XCTAssertEqual(scratch.read("features.py"), "def f(x):\n    return x * 2\n")
        XCTAssertFalse(scratch.exists("old.txt"))
        XCTAssertEqual(scratch.read("notes/LOG.md"), "log\n")
        // The same change measured again gives the same text: what a duplicate check relies on.
        XCTAssertEqual(try repo.diffText(against: base, paths: ["features.py", "old.txt", "train.py"]), patch)
    }

    func testUnchangedOrNoPathsGiveAnEmptyDiff() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let base = try XCTUnwrap(repo.head())
        try scratch.write("prepare.py", "changed\n")
        XCTAssertEqual(try repo.diffText(against: base, paths: ["train.py"]), "")
        XCTAssertEqual(try repo.diffText(against: base, paths: []), "")
        XCTAssertFalse(try repo.diffText(against: base, paths: ["prepare.py"]).isEmpty)
    }

    /// Binary content travels as a git binary patch that applies back byte for byte.
    func testBinaryFileRoundTrips() throws {
        let (scratch, repo) = try Scratch.repository(self, files)
        let base = try XCTUnwrap(repo.head())
        let bytes = Data([0, 1, 2, 0xFF, 0, 10, 13, 0x80] + Array(repeating: 7, count: 100))
        try scratch.write("model.bin", bytes)
        let patch = try repo.diffText(against: base, paths: ["model.bin"])
        XCTAssertTrue(patch.contains("GIT binary patch"), patch)
        try scratch.remove("model.bin")
        try repo.apply(patch: patch)
        XCTAssertEqual(try Data(contentsOf: scratch.url("model.bin")), bytes)
    }
}
