#if canImport(Glibc)
    import Glibc
#endif

/// The supervisor's own lines on stdout and stderr. Foundation's `FileHandle.write` traps on a
/// write error, and a terminal that hung up (EIO) or a reader that went away (EPIPE, once
/// `StopSignal` turned SIGPIPE into a stop) is no reason to die mid-run: what cannot be shown is
/// dropped, and the run stops or goes on as its signals say.
public enum Console {
    public static func out(_ text: String) { write(STDOUT_FILENO, text) }
    public static func err(_ text: String) { write(STDERR_FILENO, text) }

    private static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            bytes = bytes.dropFirst(written)
        }
    }
}
