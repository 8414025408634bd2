#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes an in-process agent's transcript (`AgentContext.transcript`). Never fatal: a
/// transcript that cannot be written costs the user a log, not the iteration.
public enum AgentTranscript {
    /// Replaces the file at `path` with `text`, the key (if any, 4+ characters) redacted.
    public static func write(_ text: String, to path: String, redacting key: String? = nil) {
        var text = text
        if let key, key.count >= 4 { text = text.replacing(key, with: "[redacted]") }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }
}
