import ProctorConfig
import XCTest

final class UnitsTests: XCTestCase {
    func testDurations() {
        XCTAssertEqual(Units.milliseconds("500ms"), 500)
        XCTAssertEqual(Units.milliseconds("30s"), 30_000)
        XCTAssertEqual(Units.milliseconds("5m"), 300_000)
        XCTAssertEqual(Units.milliseconds("1h"), 3_600_000)
        XCTAssertNil(Units.milliseconds("5"))
        XCTAssertNil(Units.milliseconds("-5s"))
        XCTAssertNil(Units.milliseconds("ms"))
        XCTAssertEqual(Units.budget("8760h"), 8760 * 3_600_000)
        XCTAssertNil(Units.budget("8761h"))
        XCTAssertNil(Units.budget("0s"))
    }

    func testSizes() {
        XCTAssertEqual(Units.bytes("64KiB"), 65536)
        XCTAssertEqual(Units.bytes("4GiB"), 4 << 30)
        XCTAssertEqual(Units.bytes("10B"), 10)
        XCTAssertNil(Units.bytes("4G"))
        XCTAssertNil(Units.bytes("99999999999999999999GiB"))
    }
}
