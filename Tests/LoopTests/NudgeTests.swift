import Foundation
import ProctorConfig
import ProctorLoop
import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 8: the human's nudges queue in order, reach the agent once, and survive a restart.
final class NudgeTests: XCTestCase {
    /// A directory that looks like a workspace with a run (only `.proctor/state.json` is needed).
    func fakeRun() throws -> String {
        let dir = NSTemporaryDirectory() + "/proctor-nudge-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/.proctor", withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir + "/.proctor/state.json"))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// A hand-edited queue line with the largest id: the next id (one past it) trapped `proctor
    /// nudge`. Such a line is skipped like any other that does not validate.
    func testAQueueLineWithAnImpossibleIdIsSkipped() throws {
        let root = try fakeRun()
        let queue = NudgeQueue(root: root)
        try queue.append("first")
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: queue.queuePath))
        handle.seekToEndOfFile()
        handle.write(Data("{\"id\":9223372036854775807,\"text\":\"x\",\"time\":\"2026-12-05T14:38:14.105Z\"}\n".utf8))
        handle.closeFile()
        XCTAssertEqual(try queue.append("second").id, 2)
        XCTAssertEqual(queue.all().map(\.text), ["first", "second"])
    }

    /// A torn last line (the machine lost power mid-write): the next nudge was glued onto it and
    /// never read, while `proctor nudge` said it was queued. It starts on a line of its own; so does
    /// the next audit line after a torn one.
    func testALineAfterATornOneIsRead() throws {
        let root = try fakeRun()
        let queue = NudgeQueue(root: root)
        try queue.append("first")
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: queue.queuePath))
        handle.seekToEndOfFile()
        handle.write(Data("{\"id\":2,\"te".utf8))
        handle.closeFile()
        XCTAssertEqual(try queue.append("after the tear").id, 2)
        XCTAssertEqual(queue.all().map(\.text), ["first", "after the tear"])

        let auditPath = root + "/.proctor/audit.jsonl"
        let log = try AuditLog(path: auditPath)
        log.append(AuditRecord(run: "r", iteration: 1, phase: .experiment, kind: .write, decision: .denied, path: "/a"))
        let torn = try XCTUnwrap(FileHandle(forWritingAtPath: auditPath))
        torn.seekToEndOfFile()
        torn.write(Data("{\"run\":\"r\",\"ite".utf8))
        torn.closeFile()
        log.append(AuditRecord(run: "r", iteration: 2, phase: .experiment, kind: .write, decision: .denied, path: "/b"))
        XCTAssertEqual(JSONLines.read(AuditRecord.self, from: auditPath).map(\.path), ["/a", "/b"])
    }

    func testNudgesQueueInOrderAreDeliveredOnceAndSurviveAReopen() throws {
        let root = try fakeRun()
        let queue = NudgeQueue(root: root)
        for text in ["first", "  second\r\nline two  ", "third"] { try queue.append(text) }
        XCTAssertEqual(queue.pending().map(\.text), ["first", "second\nline two", "third"])
        XCTAssertEqual(queue.pending().map(\.id), [1, 2, 3])
        // Taken but not marked (a crash before the record): delivered again, not lost.
        XCTAssertEqual(NudgeQueue(root: root).pending().count, 3)
        try queue.markDelivered(upTo: 2)
        // A new process (a --resume) sees the cursor.
        let reopened = NudgeQueue(root: root)
        XCTAssertEqual(reopened.pending().map(\.text), ["third"])
        try reopened.append("fourth")
        XCTAssertEqual(NudgeQueue(root: root).pending().map(\.text), ["third", "fourth"])
        try reopened.markDelivered(upTo: 1)  // never back
        XCTAssertEqual(NudgeQueue(root: root).pending().map(\.id), [3, 4])
        try reopened.markDelivered(upTo: 4)
        XCTAssertEqual(NudgeQueue(root: root).pending(), [])
        XCTAssertEqual(NudgeQueue(root: root).all().map(\.id), [1, 2, 3, 4])
        let lines = try String(contentsOfFile: queue.queuePath, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 4, "one JSON line per nudge")
        let rendered = NudgeQueue.render(NudgeQueue(root: root).all())
        XCTAssertTrue(rendered.contains("- second\n  line two\n"), rendered)
        XCTAssertEqual(NudgeQueue.render([]), "")
    }

    func testConcurrentNudgesGetDistinctIdsInFileOrder() throws {
        let root = try fakeRun()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for k in 0..<10 { _ = try? NudgeQueue(root: root).append("worker \(worker) nudge \(k)") }
        }
        let all = NudgeQueue(root: root).all()
        XCTAssertEqual(all.map(\.id), Array(1...40))
        XCTAssertEqual(Set(all.map(\.text)).count, 40)
    }

    func testNudgeTextIsValidated() throws {
        let root = try fakeRun()
        let queue = NudgeQueue(root: root)
        for bad in ["", "   \n\t ", "clear \u{1B}[2J the screen", "bell \u{07}", "nul \u{0}", "c1 \u{9B}",
                    "bidi \u{202E}txet", String(repeating: "x", count: NudgeQueue.maxBytes + 1)] {
            XCTAssertThrowsError(try queue.append(bad), bad.debugDescription)
        }
        XCTAssertEqual(queue.all(), [], "nothing refused was queued")
        XCTAssertNoThrow(try queue.append(String(repeating: "é", count: NudgeQueue.maxBytes / 2)))
        XCTAssertNoThrow(try queue.append("tabs\tand\nnewlines"))
        XCTAssertEqual(queue.all().count, 2)
    }

}
