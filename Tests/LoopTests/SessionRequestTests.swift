import Foundation
import XCTest

@testable import ProctorLoop

/// The session channel's request format: `EXPERIMENT\t<description>` as before, `ANALYZE\t<JSON>` added.
final class SessionRequestTests: XCTestCase {
    private func wire(_ request: SessionProtocol.Request) -> String? {
        request.body.map { String(decoding: $0, as: UTF8.self) }
    }

    func testBothKindsRoundTripAndTheOldFormatIsUnchanged() {
        XCTAssertEqual(wire(.experiment(description: "try x=0.6")), "EXPERIMENT\ttry x=0.6")
        XCTAssertEqual(SessionProtocol.Request("EXPERIMENT\ttry x=0.6"), .experiment(description: "try x=0.6"))
        let command = ["python3", "-c", "print('a\tb\n')", "--", "é"]
        let text = wire(.analysis(command: command))
        XCTAssertTrue(text?.hasPrefix("ANALYZE\t[") == true, "\(String(describing: text))")
        XCTAssertEqual(text.flatMap(SessionProtocol.Request.init), .analysis(command: command))
    }

    func testMalformedRequestsAreNotRequests() {
        for text in ["", "EXPERIMENT", "experiment\tx", "ANALYZE\t", "ANALYZE\tnot json", "ANALYZE\t[]", "ANALYZE\t[\"\"]",
                     "ANALYZE\t{\"command\":[\"ls\"]}", "ANALYZE\t[1,2]", "ANALYZE\t[\"a\\u0000b\"]", "RUN\tls"] {
            XCTAssertNil(SessionProtocol.Request(text), text)
        }
        XCTAssertNil(SessionProtocol.Request.analysis(command: []).body)
        XCTAssertNil(SessionProtocol.Request.analysis(command: [String(repeating: "\u{1}", count: 1000)]).body,
                     "an argument whose JSON escapes outgrow one packet")
        XCTAssertNotNil(SessionProtocol.Request.analysis(command: [String(repeating: "a", count: 3000)]).body)
    }
}
