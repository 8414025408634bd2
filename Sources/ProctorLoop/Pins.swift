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

    public static func save(_ pins: [String: String], root: String) throws {
        try FileManager.default.createDirectory(atPath: root + "/.proctor", withIntermediateDirectories: true)
        try AtomicFile.write(JSONLines.encoder().encode(pins), to: path(root))
    }

    public static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
