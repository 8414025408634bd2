import ProctorConfig
import XCTest

/// What reaches a terminal, a prompt, the ledger or the report from an agent is shown as it is
/// stored: whatever would display otherwise (or not at all) is an escape.
final class DisplayTextTests: XCTestCase {
    /// A description that looked blank held hidden ASCII a later model reads (tag characters), and
    /// invisible marks and letters passed raw into commits, the ledger and the report.
    func testInvisibleCharactersAreEscaped() {
        let hidden = "\u{3164}\u{E0069}\u{E0067}\u{034F}\u{FE0F}\u{2800}\u{115F}\u{1160}\u{FFA0}\u{180E}\u{FFF9}\u{206A}\u{E0100}"
        let shown = hidden.displayEscaped()
        XCTAssertEqual(shown.unicodeScalars.filter { $0.value > 0x7E }.count, 0, shown)
        XCTAssertTrue(shown.contains("\\ue0069"), shown)
        // Bidi overrides and zero-width spaces, as before.
        XCTAssertEqual("a\u{202E}b\u{200B}c".displayEscaped(), "a\\u202eb\\u200bc")
    }

    func testOrdinaryTextStaysAsItIs() {
        for text in ["naïve café", "学习率 0.1", "Ünïcödé ✓ → ≤", "emoji 🚀", "tab\tand\nnewline"] {
            XCTAssertEqual(text.displayEscaped(), text)
        }
        XCTAssertEqual("tab\tand\nnewline".displayEscaped(keeping: []), "tab\\x09and\\x0anewline")
    }
}
