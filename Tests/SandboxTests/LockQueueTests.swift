import Foundation
@testable import ProctorSandbox
import XCTest

/// `--wait` is first come, first served (issue 10): waiters take the lock in the order they asked,
/// a free lock is not taken past an older live waiter, and a waiter that died blocks nobody.
final class LockQueueTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/proctor-lockqueue-XXXXXX".utf8CString)
        dir = String(cString: try XCTUnwrap(mkdtemp(&template)))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func holder(_ name: String) -> LockHolder {
        LockHolder(pid: getpid(), run: name, iteration: nil, since: Date(), workspace: dir)
    }

    /// Takes the lock on a thread (waiting), records its name when it has it, holds it `hold` seconds.
    private func waiter(_ name: String, _ path: String, hold: Double, into order: LockedList,
                        done: XCTestExpectation) {
        let holder = holder(name)
        Thread.detachNewThread {
            do {
                let lock = try ExperimentLock(path: path, holder: holder, wait: true)
                order.append(name)
                Thread.sleep(forTimeInterval: hold)
                _ = lock
            } catch {
                order.append("error \(name): \(error)")
            }
            done.fulfill()
        }
    }

    func testWaitersTakeTheLockInTheOrderTheyAsked() throws {
        let path = dir + "/lock"
        var first: ExperimentLock? = try ExperimentLock(path: path, holder: holder("first"))
        let order = LockedList()
        var expectations: [XCTestExpectation] = []
        for name in ["a", "b", "c", "d"] {
            let done = expectation(description: name)
            expectations.append(done)
            waiter(name, path, hold: 0.05, into: order, done: done)
            Thread.sleep(forTimeInterval: 0.15)  // each one asks after the previous one queued
        }
        XCTAssertEqual(order.items, [], "nobody takes a held lock")
        XCTAssertEqual(try queued(path).count, 4, "four live tickets")
        first = nil
        _ = first
        wait(for: expectations, timeout: 20)
        XCTAssertEqual(order.items, ["a", "b", "c", "d"])
        XCTAssertEqual(try queued(path), [], "every ticket is gone once its waiter has the lock")
    }

    func testAFreeLockIsNotTakenPastAnOlderLiveWaiter() throws {
        let path = dir + "/lock"
        let older = try LockQueue(lockPath: path, shared: false)  // asked first, not yet served
        let order = LockedList()
        let done = expectation(description: "younger")
        waiter("younger", path, hold: 0, into: order, done: done)
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(order.items, [], "the lock is free, but an older waiter is alive: the younger one waits")
        older.leave()
        wait(for: [done], timeout: 10)
        XCTAssertEqual(order.items, ["younger"])
    }

    func testATicketLeftByADeadWaiterBlocksNobody() throws {
        let path = dir + "/lock"
        let queue = path + ".queue"
        XCTAssertEqual(mkdir(queue, 0o755), 0)
        // An older ticket with no lock on it: its waiter was killed.
        let stale = queue + "/00000000000000000001-0000000001"
        XCTAssertTrue(FileManager.default.createFile(atPath: stale, contents: nil))
        let started = Date()
        let lock = try ExperimentLock(path: path, holder: holder("next"), wait: true)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "the dead ticket is cleared away")
        _ = lock
    }

    func testMachineQueueIsStickyAndWorldWritable() throws {
        let path = dir + "/machine.lock"
        let queue = try LockQueue(lockPath: path, shared: true)
        defer { queue.leave() }
        var st = stat()
        XCTAssertEqual(lstat(path + ".queue", &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o1777, "every user queues there; nobody removes another's live ticket")
    }

    private func queued(_ path: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path + ".queue").filter { !$0.hasPrefix(".") }
    }
}

/// A list appended to from several threads.
final class LockedList: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func append(_ item: String) { lock.lock(); list.append(item); lock.unlock() }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
