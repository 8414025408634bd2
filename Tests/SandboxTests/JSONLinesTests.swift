import Foundation
import XCTest

@testable import ProctorSandbox

/// The append-only logs (audit.jsonl, runs.jsonl) stay whole lines when a write comes up short.
final class JSONLinesTests: XCTestCase {
    struct Line: Codable, Equatable { var text: String }

    func testShortWriteLeavesNoHalfLine() throws {
        let path = NSTemporaryDirectory() + "/proctor-jsonl-\(UUID().uuidString)"
        defer { unlink(path) }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let encoder = JSONLines.encoder()
        try JSONLines.append(Line(text: "first"), to: fd, encoder: encoder)
        let whole = lseek(fd, 0, SEEK_CUR)

        // A file size limit 10 bytes past the end: the next record is written only in part.
        var saved = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var limit = saved
        limit.rlim_cur = rlim_t(whole + 10)
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limit)
        XCTAssertThrowsError(try JSONLines.append(Line(text: String(repeating: "x", count: 100)), to: fd, encoder: encoder)) {
            XCTAssertTrue("\($0)".contains("File too large"), "the file size limit is named: \($0)")
            XCTAssertEqual(($0 as? SandboxError)?.errno, EFBIG)
        }
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved)
        signal(SIGXFSZ, oldHandler)

        XCTAssertEqual(lseek(fd, 0, SEEK_END), whole, "the half record was cut off")
        try JSONLines.append(Line(text: "third"), to: fd, encoder: encoder)
        XCTAssertEqual(JSONLines.read(Line.self, from: path), [Line(text: "first"), Line(text: "third")])
    }
}
