import Foundation
import ProctorGit
import XCTest

/// A temporary workspace with a git repository, removed when the test ends; setup goes through
/// `/usr/bin/git` so that the code under test is checked against git itself.
final class Scratch {
    let root: String
    let path: String

    init(_ test: XCTestCase) throws {
        let root = NSTemporaryDirectory() + "proctor-git-" + UUID().uuidString
        self.root = root
        path = root + "/ws"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        test.addTeardownBlock {
            // Restore permissions first: tests make files and directories read-only.
            let chmod = Process()
            chmod.executableURL = URL(fileURLWithPath: "/bin/chmod")
            chmod.arguments = ["-R", "u+rwx", root]
            try? chmod.run()
            chmod.waitUntilExit()
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// A repository with `files` committed on `main` by git itself.
    static func repository(
        _ test: XCTestCase, _ files: [String: String], executable: [String] = []
    ) throws -> (Scratch, Repository) {
        let scratch = try Scratch(test)
        try scratch.git("init", "-q", "-b", "main")
        for (name, text) in files { try scratch.write(name, text) }
        for name in executable { try scratch.chmod(name, 0o755) }
        try scratch.git("add", "-A")
        try scratch.git("commit", "-q", "-m", "initial")
        return (scratch, try Repository.open(at: scratch.path))
    }

    func url(_ relative: String) -> URL { URL(fileURLWithPath: path + "/" + relative) }

    func write(_ relative: String, _ text: String) throws {
        try write(relative, Data(text.utf8))
    }

    func write(_ relative: String, _ data: Data) throws {
        let url = url(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
    }

    func read(_ relative: String) -> String? {
        (try? Data(contentsOf: url(relative))).map { String(decoding: $0, as: UTF8.self) }
    }

    func exists(_ relative: String) -> Bool {
        var info = stat()
        return lstat(path + "/" + relative, &info) == 0
    }

    func isSymlink(_ relative: String) -> Bool {
        var info = stat()
        return lstat(path + "/" + relative, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK
    }

    func mode(_ relative: String) -> Int {
        var info = stat()
        return lstat(path + "/" + relative, &info) == 0 ? Int(info.st_mode & 0o7777) : -1
    }

    func chmod(_ relative: String, _ mode: Int) throws {
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path + "/" + relative)
    }

    func symlink(_ relative: String, to target: String) throws {
        try FileManager.default.createSymbolicLink(atPath: path + "/" + relative, withDestinationPath: target)
    }

    func remove(_ relative: String) throws {
        try FileManager.default.removeItem(atPath: path + "/" + relative)
    }

    @discardableResult
    func git(_ arguments: String...) throws -> String {
        try run(
            "/usr/bin/git",
            ["-C", path, "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "core.hooksPath=/dev/null"]
                + arguments)
    }

    @discardableResult
    func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "\(executable) \(arguments) exited \(process.terminationStatus)", code: 1)
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
