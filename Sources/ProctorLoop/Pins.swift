import Crypto
import Foundation
import ProctorSandbox

/// `.proctor/pins.json`, written by `proctor init`: the locked files' hashes when the workspace was made.
public enum Pins {
    public static func path(_ root: String) -> String { root + "/.proctor/pins.json" }

    public static func load(_ root: String) -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: path(root)) else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: data)
    }

    /// The pins for a run's start: nil when there is no file (a workspace not made by `proctor
    /// init`) or nothing is locked; a file that is there but unreadable or not pins is refused,
    /// where it was taken for none and a changed locked evaluator started a run unchecked.
    static func loadForStart(_ root: String) throws -> [String: String]? {
        var st = stat()
        guard lstat(path(root), &st) == 0 else { return nil }
        guard let data = FileManager.default.contents(atPath: path(root)),
              let pins = try? JSONDecoder().decode([String: String].self, from: data) else {
            throw LoopError(.refused, "\(path(root)): unreadable, or not pins: the locked files cannot be checked; if they are as you want them, run `proctor init --repin`")
        }
        return pins.isEmpty ? nil : pins
    }

    public static func save(_ pins: [String: String], root: String) throws {
        try FileManager.default.createDirectory(atPath: root + "/.proctor", withIntermediateDirectories: true)
        try AtomicFile.write(JSONLines.encoder().encode(pins), to: path(root))
    }

    public static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
