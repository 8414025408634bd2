import ProctorGit
import XCTest

final class DiffValidatorTests: XCTestCase {
    private let policy = DiffPolicy(
        isEditable: { $0 == "train.py" || ($0.hasPrefix("models/") && $0.hasSuffix(".py")) },
        isNotes: { $0 == "LOG.md" || $0.hasPrefix("notes/") },
        maxChangedLines: 10, maxFileBytes: 1000)

    private func rules(_ changes: Change...) -> [String] {
        DiffValidator.validate(changes, policy: policy).map { "\($0.path) \($0.rule.rawValue)" }
    }

    /// A name no commit takes (a backslash, a control character: its keep failed and stopped the
    /// run), or a new one that shows as other than it is (a C1 escape, a direction override).
    func testNamesACommitRefusesOrThatShowOtherwiseAreRefused() {
        for path in ["models/a\\b.py", "models/a\u{7}.py", "notes/x\ty.md"] {
            XCTAssertEqual(rules(Change(path: path, kind: .added, oldMode: .absent)), ["\(path) name"], path)
        }
        for path in ["models/\u{9B}2J.py", "models/a\u{202E}yp.py", "notes/\u{200B}.md"] {
            XCTAssertEqual(rules(Change(path: path, kind: .added, oldMode: .absent)), ["\(path) name"], path)
            XCTAssertEqual(rules(Change(path: path, kind: .modified)), [], "a name already committed: \(path)")
        }
        XCTAssertEqual(rules(Change(path: "models/é.py", kind: .added, oldMode: .absent)), [])
    }

    /// A `.gitattributes` (at any depth) is never an agent's to write, even under an editable glob;
    /// a change to a file git rewrites (`ident`) is refused.
    func testGitAttributesAreRefused() {
        let all = DiffPolicy(isEditable: { _ in true }, isNotes: { _ in false }, maxChangedLines: 100, maxFileBytes: 1 << 20)
        for path in [".gitattributes", "src/.gitattributes"] {
            XCTAssertEqual(DiffValidator.validate([Change(path: path, kind: .added, addedLines: 1)], policy: all).map(\.rule), [.attributes])
        }
        var rewritten = Change(path: "train.py", kind: .modified)
        rewritten.rewritingAttribute = "ident"
        XCTAssertEqual(DiffValidator.validate([rewritten], policy: all).map(\.rule), [.attributes])
        XCTAssertEqual(DiffValidator.validate([Change(path: "src/x.gitattributes", kind: .added, addedLines: 1)], policy: all), [])
    }

    func testAllowedChangesPass() {
        XCTAssertEqual(
            rules(
                Change(path: "train.py", kind: .modified, addedLines: 3, removedLines: 4, newSize: 100),
                Change(path: "models/new.py", kind: .added, oldMode: .absent, addedLines: 2, newSize: 10),
                Change(path: "notes/idea.md", kind: .added, oldMode: .absent, addedLines: 500, newSize: 900),
                Change(path: "LOG.md", kind: .modified, isBinary: true, newSize: 10)),
            [])
    }

    func testNotEditableAndNewFile() {
        XCTAssertEqual(rules(Change(path: "prepare.py", kind: .modified, addedLines: 1)), ["prepare.py not-editable"])
        XCTAssertEqual(
            rules(Change(path: "sitecustomize.py", kind: .added, oldMode: .absent)), ["sitecustomize.py new-file"])
        XCTAssertEqual(rules(Change(path: "models/x.txt", kind: .added, oldMode: .absent)), ["models/x.txt new-file"])
    }

    func testDeletedRenamedMode() {
        XCTAssertEqual(rules(Change(path: "train.py", kind: .deleted, newMode: .absent)), ["train.py deleted"])
        XCTAssertEqual(
            rules(Change(path: "models/b.py", oldPath: "models/a.py", kind: .renamed)), ["models/b.py renamed"])
        XCTAssertEqual(rules(Change(path: "train.py", kind: .modified, newMode: .executable)), ["train.py mode"])
        XCTAssertEqual(
            rules(Change(path: "prepare.py", kind: .typeChange, newMode: .symlink, isSymlink: true)),
            ["prepare.py mode", "prepare.py not-editable", "prepare.py symlink"])
    }

    func testSymlinkSubmoduleBinary() {
        XCTAssertEqual(
            rules(Change(path: "train.py", kind: .typeChange, newMode: .symlink, isSymlink: true)),
            ["train.py mode", "train.py symlink"])
        XCTAssertEqual(
            rules(Change(path: "notes/link", kind: .added, oldMode: .absent, newMode: .symlink, isSymlink: true)),
            ["notes/link symlink"])
        XCTAssertEqual(
            rules(Change(path: "notes/repo", kind: .added, oldMode: .absent, newMode: .submodule, isSubmodule: true)),
            ["notes/repo submodule"])
        XCTAssertEqual(rules(Change(path: "train.py", kind: .modified, isBinary: true)), ["train.py binary"])
    }

    func testLineCapCountsEditableFilesOnly() {
        XCTAssertEqual(
            rules(
                Change(path: "train.py", kind: .modified, addedLines: 4, removedLines: 3),
                Change(path: "models/a.py", kind: .modified, addedLines: 3),
                Change(path: "LOG.md", kind: .modified, addedLines: 1000)),
            [])
        let violations = DiffValidator.validate(
            [
                Change(path: "train.py", kind: .modified, addedLines: 6, removedLines: 3),
                Change(path: "models/a.py", kind: .modified, addedLines: 2),
            ], policy: policy)
        XCTAssertEqual(violations.map(\.rule), [.diffLines])
        XCTAssertEqual(violations.first?.path, "train.py")
        XCTAssertTrue(violations.first?.message.contains("11") == true)
    }

    /// Every new file counts at least one line, in the notes too: empty files would otherwise be a
    /// change of any number of files (3,000 kept in one commit, each listed in LOG.md and the memory).
    func testNewEmptyFilesCountALineEach() {
        let empty = (0..<6).map { Change(path: "models/m\($0).py", kind: .added, oldMode: .absent) }
            + (0..<6).map { Change(path: "notes/n\($0).md", kind: .added, oldMode: .absent) }
        XCTAssertEqual(DiffValidator.validate(empty, policy: policy).map(\.rule.rawValue), ["diff-lines"])
        XCTAssertEqual(DiffValidator.validate(Array(empty.prefix(5)) + Array(empty.suffix(5)), policy: policy).map(\.rule.rawValue), [])
    }

    func testSizeCapAppliesToNotesToo() {
        XCTAssertEqual(
            rules(
                Change(path: "LOG.md", kind: .modified, newSize: 1001),
                Change(path: "train.py", kind: .modified, newSize: 1000)),
            ["LOG.md size"])
    }

    func testValidatesRealStatus() throws {
        let (scratch, repo) = try Scratch.repository(self, ["train.py": "a\n", "prepare.py": "p\n", "LOG.md": "l\n"])
        try scratch.write("train.py", "b\n")
        try scratch.write("LOG.md", "l\nmore\n")
        try scratch.write("prepare.py", "fake\n")
        try scratch.write("numpy.py", "evil\n")
        try scratch.write("notes/idea.md", "idea\n")
        try scratch.symlink("notes/x", to: "/etc")
        let violations = DiffValidator.validate(try repo.status(against: repo.head()!), policy: policy)
        XCTAssertEqual(
            violations.map { "\($0.path) \($0.rule.rawValue)" },
            ["notes/x symlink", "numpy.py new-file", "prepare.py not-editable"])
    }
}
