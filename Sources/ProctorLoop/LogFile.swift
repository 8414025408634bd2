import Foundation
import ProctorConfig
import ProctorSandbox

/// A log file a sandboxed command writes its output to.
final class LogFile {
    let path: String
    let fd: Int32

    /// `truncate: false` keeps what is there (what a Slurm job wrote into it).
    init(path: String, truncate: Bool = true) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | (truncate ? O_TRUNC : O_APPEND) | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw LoopError.io(errno, "open \(path)") }
    }

    /// An empty file at `path`, for another to write (a Slurm job), with no descriptor held here.
    static func empty(_ path: String) throws {
        _ = try LogFile(path: path)
    }

    deinit { close(fd) }

    /// The bytes as written (the evaluator's output is read so: text that is not UTF-8 anywhere
    /// must not hide its last line).
    func bytes() -> [UInt8] {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) } ?? []
    }

    /// The last line that is not blank, for a one-line reason: read from the file's last 64 KiB only
    /// (an evaluator's 62 MB of stderr, read and split whole, cost 9 s and 1.1 GB of the supervisor's).
    func tail() -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return "no output" }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return "no output" }
        let length = Int(min(info.st_size, 65536))
        var bytes = [UInt8](repeating: 0, count: length)
        let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, info.st_size - off_t(length)) }
        guard read > 0 else { return "no output" }
        let text = String(decoding: bytes[0..<read], as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline).filter { !$0.allSatisfy(\.isWhitespace) }
        return lines.last.map { String($0).prefix(scalars: 200) } ?? "no output"
    }
}
