import Foundation
import ProctorSandbox
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

/// The session server over its real channel, from this process as the agent.
final class SessionServerTests: XCTestCase {
    /// Sends `request` with a reply socket of its own, as `proctor experiment` does; the reply end.
    private func ask(_ server: SessionServer, _ request: SessionProtocol.Request) throws -> SocketPair {
        let pair = try SocketPair()
        XCTAssertTrue(SocketChannel.send(server.agentEnd, try XCTUnwrap(request.body), passing: pair.remote.raw))
        return pair
    }

    private func answer(_ pair: borrowing SocketPair) -> String {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(pair.local.raw, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let message = SocketChannel.receive(pair.local.raw) else { return "no answer" }
        return String(decoding: message.bytes, as: UTF8.self)
    }

    /// A process frozen with another's experiment (started together with it) has its first request
    /// after the thaw refused, once; the sender of each request is known.
    func testStartedTogetherIsRefusedOnce() throws {
        let server = try SessionServer()
        defer {
            server.closeAgentEnd()
            server.removeSocket()
        }
        let first = try ask(server, .experiment(description: "first"))
        guard let request = server.next() else { return XCTFail("no request") }
        XCTAssertEqual(request.request, .experiment(description: "first"))
        XCTAssertEqual(request.sender, getpid())
        server.refuseOnce([getpid()])
        server.finish(request.takeReply(), .init(accepted: true, message: "done"))
        XCTAssertTrue(answer(first).contains("\"message\":\"done\""))

        let second = try ask(server, .experiment(description: "second"))
        XCTAssertTrue(answer(second).contains("refused: another experiment is running"))
        let third = try ask(server, .experiment(description: "third"))
        guard let accepted = server.next() else { return XCTFail("the retry was not accepted") }
        XCTAssertEqual(accepted.request, .experiment(description: "third"))
        server.finish(accepted.takeReply(), .init(accepted: true, message: "ran"))
        XCTAssertTrue(answer(third).contains("\"message\":\"ran\""))
    }
}
