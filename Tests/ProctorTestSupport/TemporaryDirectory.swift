import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A fresh directory (`mkdtemp`) below the temporary directory, removed with what it holds when released.
public final class TemporaryDirectory {
    public let path: String

    public init(_ prefix: String) throws {
        var template = Array((NSTemporaryDirectory() + "/\(prefix)-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw NSError(domain: "mkdtemp", code: Int(errno)) }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
