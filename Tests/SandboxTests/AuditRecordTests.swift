import Foundation
import XCTest

@testable import ProctorSandbox

/// Issue 9: the audit line's `phase`, `kind`, `decision` and `rule` are typed in Swift and the same
/// strings in audit.jsonl.
final class AuditRecordTests: XCTestCase {
    static let time = Date(timeIntervalSince1970: 1_700_000_000)

    /// The bytes a typed record encodes to are those the string fields wrote.
    func testTypedFieldsEncodeToTheSameJSON() throws {
        let record = AuditRecord(time: Self.time, run: "r", iteration: 3, phase: .validate, kind: .tamper, decision: .rejected,
                                 path: "/w/evaluate.py", rule: .locked, detail: "differs from its pin")
        let line = String(decoding: try JSONLines.encoder().encode(record), as: UTF8.self)
        XCTAssertEqual(line, #"{"decision":"rejected","detail":"differs from its pin","iteration":3,"kind":"tamper","path":"/w/evaluate.py","phase":"validate","rule":"locked","run":"r","time":"2023-11-14T22:13:20.000Z"}"#)
        let limit = AuditRecord(time: Self.time, run: "r", iteration: nil, phase: AuditPhase(.experiment), kind: .memory,
                                decision: .killed, rule: AuditRule(rawValue: "read-only-system"))
        let text = String(decoding: try JSONLines.encoder().encode(limit), as: UTF8.self)
        XCTAssertTrue(text.contains(#""phase":"experiment""#) && text.contains(#""kind":"memory""#)
                      && text.contains(#""decision":"killed""#) && text.contains(#""rule":"read-only-system""#), text)
        XCTAssertTrue(text.contains(#""iteration":null"#), text)
        // The named constants spell what readers and the README match.
        XCTAssertEqual([AuditRule.ignoresSeed, .agentProposal, .experimentInput, .sessionFreeze, .outputs, .limits].map(\.rawValue),
                       ["ignores-seed", "agent-proposal", "experiment-input", "session-freeze", "outputs", "limits"])
        XCTAssertEqual([AuditDecision.enforced, .unenforced, .failed, .denied].map(\.rawValue), ["enforced", "unenforced", "failed", "denied"])
        XCTAssertEqual(AuditPhase.agent, AuditPhase(rawValue: "agent"))
    }

    /// A line with a value this version does not name (another version's audit.jsonl) is still read.
    func testUnknownValuesAreReadNotDropped() throws {
        let line = #"{"decision":"quarantined","iteration":1,"kind":"network","phase":"analysis","rule":"egress","run":"r","time":"2023-11-14T22:13:20.000Z"}"#
        let record = try JSONLines.decoder().decode(AuditRecord.self, from: Data(line.utf8))
        XCTAssertEqual(record.kind.rawValue, "network")
        XCTAssertEqual(record.decision.rawValue, "quarantined")
        XCTAssertEqual(record.phase.rawValue, "analysis")
        XCTAssertEqual(record.rule?.rawValue, "egress")
        XCTAssertEqual(String(decoding: try JSONLines.encoder().encode(record), as: UTF8.self), line, "round trip")
    }
}
