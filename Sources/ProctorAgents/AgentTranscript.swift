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
        var text = text
        if let key, key.count >= 4 { text = text.replacing(key, with: "[redacted]") }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        WriteAll.text(fd, text)
    }
}
