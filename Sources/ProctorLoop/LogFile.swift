import Foundation
import ProctorSandbox

/// A log file a sandboxed command writes its output to.
final class LogFile {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw LoopError.io(errno, "open \(path)") }
    }

    deinit { close(fd) }

    func contents() -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// The last line, for a one-line reason.
    func tail() -> String {
        let lines = contents().split(whereSeparator: \.isNewline)
        return lines.last.map { String($0.prefix(200)) } ?? "no output"
    }
}
