import Foundation
import ProctorSandbox
import XCTest

/// `UTCTime` replaces Foundation's ICU formatters when records are written: its output must be
/// exactly theirs, so that every reader (which still parses with `ISO8601DateFormatter`) agrees.
final class UTCTimeTests: XCTestCase {
    private var dates: [Date] {
        var dates = [Date(), Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 0.9995),
                     Date(timeIntervalSince1970: 1.0009999), Date(timeIntervalSince1970: 1_764_072_000.1239999),
                     Date(timeIntervalSince1970: 4_102_444_800.9999), Date(timeIntervalSince1970: 951_782_400.5)]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 { dates.append(Date(timeIntervalSince1970: Double.random(in: 0..<4_102_444_800, using: &rng))) }
        // Halves of a millisecond: the rounding must be the formatter's.
        for _ in 0..<5000 {
            dates.append(Date(timeIntervalSince1970: Double(Int.random(in: 1_700_000_000_000..<1_800_000_000_000)) / 1000 + 0.0005))
        }
        return dates
    }

    func testISO8601MatchesFoundation() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for date in dates {
            XCTAssertEqual(UTCTime.iso8601(date), formatter.string(from: date), "\(date.timeIntervalSince1970)")
        }
        XCTAssertEqual(UTCTime.iso8601(Date(timeIntervalSince1970: 1_764_072_000.123)), "2025-11-25T12:00:00.123Z")
    }

    func testCompactStampMatchesFoundation() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        for date in dates {
            XCTAssertEqual(UTCTime.compactStamp(date), formatter.string(from: date), "\(date.timeIntervalSince1970)")
        }
    }

    func testRunIDShape() {
        let id = RunID.make(prefix: "exec")
        XCTAssertNotNil(id.range(of: #"^exec-\d{8}-\d{6}-\d+$"#, options: .regularExpression), id)
    }
}
