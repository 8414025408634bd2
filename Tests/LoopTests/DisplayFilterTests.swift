import Foundation
import XCTest

@testable import ProctorLoop

/// A session agent's output on its way to the operator's terminal (`DisplayFilter`): what rewrites
/// the display is shown as `\xNN`, text goes through, and the cost per byte stays small.
final class DisplayFilterTests: XCTestCase {
    func shown(_ chunks: [[UInt8]]) -> String {
        var filter = DisplayFilter()
        return String(decoding: chunks.flatMap { filter.shown($0[...]) }, as: UTF8.self)
    }

    func testControlsAndBadBytesAreShownAndTextGoesThrough() {
        XCTAssertEqual(shown([Array("a\tb\nc\u{1B}[2Jd".utf8)]), "a\tb\nc\\x1b[2Jd")
        XCTAssertEqual(shown([[0x41, 0xFF, 0x00, 0x42]]), "A\\xff\\x00B")
        // é (C3 A9) split between two reads waits for the second; a C1 CSI (C2 9B) is escaped.
        XCTAssertEqual(shown([[0x63, 0x61, 0x66, 0xC3], [0xA9, 0xC2, 0x9B]]), "caf\u{E9}\\xc2\\x9b")
        XCTAssertEqual(shown([Array("\u{202E}x".utf8)]), "\\xe2\\x80\\xaex")
    }

    /// 60 MB of NUL bytes were copied at 0.45 MB/s (a parser and `String(format:)` per byte).
    func testManyBytesCostLittle() {
        var filter = DisplayFilter()
        let zeros = [UInt8](repeating: 0, count: 1 << 20), text = [UInt8](repeating: 0x61, count: 4 << 20)
        let started = Date()
        XCTAssertEqual(filter.shown(zeros[...]).count, 4 * (1 << 20))
        XCTAssertEqual(filter.shown(text[...]).count, 4 << 20)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
    }
}
