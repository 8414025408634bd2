import Foundation
@testable import ProctorSandbox
import ProctorTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The supervisor changes modes in the agent's writable places while the agent should be frozen;
/// one that keeps running (a timer's SIGCONT) races the walk. A red team swapped a directory the
/// walk had opened for a link to a host directory: every later chmod by path went through the link,
/// and as root a file no sandbox could reach became 0644. Here the swap is made from the visitor,
/// at the moment the racing agent made it.
final class FileTreeTests: XCTestCase {
    /// A directory of 60,000 sibling directories (made by an experiment in its outputs, or an agent
    /// in its notes): the walk copied the list of siblings once per sibling (40,000: 28 s of the
    /// supervisor's CPU per iteration, past Ctrl-C). Visited in linear time.
    func testWideDirectoriesAreWalkedInLinearTime() throws {
        let scratch = try TemporaryDirectory("filetree-wide")
        let place = scratch.path + "/outputs"
        try FileManager.default.createDirectory(atPath: place, withIntermediateDirectories: true)
        let name = String(repeating: "d", count: 200)
        for i in 0..<60_000 { XCTAssertEqual(mkdir("\(place)/\(name)\(i)", 0o755), 0) }
        let started = Date()
        var visited = 0
        try FileTree.walk(place, removing: false) { _ in visited += 1 }
        XCTAssertEqual(visited, 60_000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 15, "quadratic in the siblings")
    }

    func testAWalksChangesStayInTheTreeWhenADirectoryIsSwappedForALink() throws {
        let scratch = try TemporaryDirectory("filetree-race")
        let place = scratch.path + "/notes", host = scratch.path + "/host"
        for dir in [place + "/zz/p", host] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        for path in [place + "/zz/p/a", place + "/zz/p/victim", host + "/victim"] {
            try Data("x".utf8).write(to: URL(fileURLWithPath: path))
        }
        chmod(place + "/zz/p/victim", 0o044)
        chmod(host + "/victim", 0o600)
        var swapped = false
        var changed: [String] = []
        try FileTree.walk(place, removing: false) { entry in
            if entry.path == "zz/p/a" && !swapped {
                swapped = rename(place + "/zz/p", place + "/zz/q") == 0 && symlink(host, place + "/zz/p") == 0
            }
            if entry.path == "zz/p/victim" {
                XCTAssertTrue(entry.chmod(0o644))
                changed.append(entry.path)
            }
        }
        XCTAssertTrue(swapped, "the visitor could not swap the directory")
        XCTAssertEqual(changed, ["zz/p/victim"], "the walk visited the entry after the swap")
        var st = stat()
        XCTAssertEqual(lstat(host + "/victim", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o600, "the host file's mode changed through the link")
        XCTAssertEqual(lstat(place + "/zz/q/victim", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o644, "the entry the walk read was not changed")
        // The path the walk names now leads to the host file: a chmod by path changes it.
        XCTAssertEqual(chmod(place + "/" + "zz/p/victim", 0o644), 0)
        XCTAssertEqual(lstat(host + "/victim", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o644)
    }

    /// A link in a walked directory is never changed through: `Entry.chmod` refuses it.
    func testAnEntrysChmodNeverFollowsALink() throws {
        let scratch = try TemporaryDirectory("filetree-link")
        let place = scratch.path + "/notes", host = scratch.path + "/host-file"
        try FileManager.default.createDirectory(atPath: place, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: host))
        chmod(host, 0o600)
        XCTAssertEqual(symlink(host, place + "/link"), 0)
        var tried = 0
        try FileTree.walk(place, removing: false) { entry in
            tried += 1
            XCTAssertFalse(entry.chmod(0o666))
        }
        XCTAssertEqual(tried, 1)
        var st = stat()
        XCTAssertEqual(stat(host, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o600)
    }
}
