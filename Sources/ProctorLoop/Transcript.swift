import Foundation
import ProctorAgents

/// An agent's transcript, `.proctor/logs/<run>/<i>-agent.log`: what a command or session agent
/// printed, an HTTP agent's request summary and answer, the mutate agent's change. Kept beside
/// the experiment's logs, under `.proctor/`, which no sandbox sees.
final class Transcript {
    let fd: Int32

    /// Opens (truncates) the transcript at `path`; nil when it cannot be written (never fatal).
    init?(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return nil }
    }

    deinit { close(fd) }

    func append(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Appends what the agent wrote to `output` (its stdout), at most the last 4 MiB.
    func appendOutput(of output: Int32) {
        append("\n# stdout\n")
        let size = lseek(output, 0, SEEK_END)
        var offset = max(0, size - (4 << 20))
        var chunk = [UInt8](repeating: 0, count: 65536)
        while offset < size {
            let n = chunk.withUnsafeMutableBytes { pread(output, $0.baseAddress, $0.count, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, n) }
            offset += off_t(n)
        }
    }

    /// The host directory bound read-only at `AgentMemory.directory` in the agent sandbox:
    /// `.proctor/memory/` when it exists (it holds only what agents may read).
    static func memorySource(_ root: String) -> String? {
        let path = root + "/.proctor/memory"
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return path
    }

    /// Where agents find the memory files in their sandbox.
    static let memoryMount = "/run/proctor/memory"
}
