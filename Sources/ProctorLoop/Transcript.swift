import Foundation
import ProctorAgents
import ProctorSandbox

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

    func append(_ text: String) { WriteAll.text(fd, text) }

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
            WriteAll.bytes(fd, chunk[..<n])
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

/// A session agent's stdout and stderr, copied to proctor's own stdout and into the transcript
/// of the iteration it is working towards (`switchTo`), so that its reasoning between two
/// experiments is kept. Only when proctor's stdout is not a terminal: an interactive CLI on a
/// terminal keeps the terminal (its prompt, colours, raw mode), and the run says so once. The
/// copy on stdout shows control characters, line separators and bidirectional controls as `\xNN`
/// (`DisplayFilter`): a log read later in a
/// terminal must not let the agent clear the screen or redraw proctor's lines; the transcript
/// keeps the bytes as they came.
final class SessionTranscript: @unchecked Sendable {
    /// The descriptor the agent gets as stdout and stderr.
    let childEnd: Int32
    private let readEnd: Int32
    private let lock = NSLock()
    private var current: Transcript?
    private let done = DispatchSemaphore(value: 0)
    private var filter = DisplayFilter()

    /// nil when proctor's stdout is a terminal (or no pipe could be made).
    init?() {
        guard isatty(1) == 0 else { return nil }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        // Not inherited by anything but the agent (the launcher dups what it is given).
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        readEnd = fds[0]
        childEnd = fds[1]
        let thread = Thread { [self] in copy() }
        thread.start()
    }

    /// From now on the agent's output goes to the transcript at `path`.
    func switchTo(_ path: String) {
        let next = Transcript(path: path)
        next?.append("# session agent output\n")
        lock.lock()
        current = next
        lock.unlock()
    }

    /// The agent is gone: close proctor's copy of its end and wait for the copy to drain.
    func finish() {
        close(childEnd)
        _ = done.wait(timeout: .now() + .seconds(5))
    }

    private func copy() {
        defer {
            close(readEnd)
            done.signal()
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            WriteAll.bytes(1, filter.shown(buffer[..<n]))
            lock.lock()
            let target = current
            lock.unlock()
            if let target { WriteAll.bytes(target.fd, buffer[..<n]) }
        }
    }
}

/// Bytes on their way to a terminal with every scalar that rewrites the display
/// (`Unicode.Scalar.rewritesDisplay`: controls, C1 ones such as the CSI `U+009B` included, line
/// separators, bidirectional controls) but newline and tab shown as `\xNN`, one per byte, and so is
/// a byte that is not valid UTF-8. A sequence split between two reads waits for the next one.
struct DisplayFilter {
    private var pending: [UInt8] = []

    mutating func shown(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        let input = pending + bytes
        pending = []
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        // About a microsecond a byte as it was (a parser and String(format:) for each): a session
        // agent's 60 MB of output held a supervisor thread for a minute. Plain ASCII goes straight
        // through, and an escape is four bytes from a table.
        let hex = Array("0123456789abcdef".utf8)
        func escape<S: Sequence>(_ raw: S) where S.Element == UInt8 {
            for byte in raw {
                out.append(UInt8(ascii: "\\"))
                out.append(UInt8(ascii: "x"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        var i = 0
        while i < input.count {
            let lead = input[i]
            if (lead >= 0x20 && lead < 0x7F) || lead == 0x0A || lead == 0x09 {
                out.append(lead)
                i += 1
                continue
            }
            // 0xF8...0xFF lead nothing (it waited for three more bytes, and at the end was never shown).
            let length = lead < 0x80 ? 1 : lead >= 0xF8 ? 0 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0
            if length > 1 && i + length > input.count {
                pending = Array(input[i...])
                break
            }
            var decoder = Unicode.UTF8.ForwardParser()
            var iterator = input[i..<(i + max(length, 1))].makeIterator()
            guard length > 0, case .valid(let encoded) = decoder.parseScalar(from: &iterator), encoded.count == length else {
                escape([lead])  // not UTF-8: the byte alone, then go on from the next one
                i += 1
                continue
            }
            let scalar = Unicode.UTF8.decode(encoded)
            let sequence = input[i..<(i + length)]
            if scalar.rewritesDisplay && scalar != "\n" && scalar != "\t" { escape(sequence) } else { out += sequence }
            i += length
        }
        return out
    }
}
