#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

import ProctorSandbox

/// Writes an in-process agent's transcript (`AgentContext.transcript`). Never fatal: a
/// transcript that cannot be written costs the user a log, not the iteration.
public enum AgentTranscript {
    /// Replaces the file at `path` with `text`, the key (if any, 4+ characters) redacted.
    public static func write(_ text: String, to path: String, redacting key: String? = nil) {
        let text = text.redacting(key)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        WriteAll.text(fd, text)
    }
}

extension String {
    /// The text with every occurrence of `key` (4+ characters; nil: none) replaced by `[redacted]`,
    /// matched on the UTF-8 bytes. Matching characters missed the key when a server echoed it with
    /// a combining mark or a joiner after it: the mark joins the key's last letter into another
    /// character, and the key's bytes passed into commits, the ledger and the transcript.
    public func redacting(_ key: String?) -> String {
        guard let key, key.unicodeScalars.count >= 4 else { return self }
        let needle = Array(key.utf8)
        let bytes = Array(utf8)
        guard bytes.count >= needle.count else { return self }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == needle[0], i + needle.count <= bytes.count, bytes[i..<(i + needle.count)].elementsEqual(needle) {
                out += Array("[redacted]".utf8)
                i += needle.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        // The key is whole scalars, so what is cut out starts and ends on scalar boundaries.
        return String(decoding: out, as: UTF8.self)
    }
}
