import Foundation
import XCTest

@testable import ProctorSandbox

/// Owned descriptors, the socket channel and per-owner stop switches: judged from the process's
/// descriptor table and from real launches.
final class DescriptorTests: XCTestCase {
    private struct Failure: Error {}

    private static func openCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    private static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) >= 0 }

    private static func readable(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 1
    }

    func testPipeEndsCloseWhenDropped() throws {
        let before = Self.openCount()
        var raws: [Int32] = []
        do {
            let pipe = try PipePair()
            raws = [pipe.read.raw, pipe.write.raw]
            XCTAssertTrue(raws.allSatisfy { Self.isOpen($0) && $0 >= 10 }, "\(raws)")
            XCTAssertTrue(raws.allSatisfy { fcntl($0, F_GETFD) & FD_CLOEXEC != 0 }, "close-on-exec")
            XCTAssertEqual(Self.openCount(), before + 2)
        }
        XCTAssertEqual(Self.openCount(), before, "both ends closed at the end of their owner's scope")
        XCTAssertFalse(raws.contains(where: Self.isOpen))
    }

    func testClosedOnAnErrorPathAndHandedOnByTake() throws {
        let before = Self.openCount()
        func openTwoThenFail() throws {
            let pair = try SocketPair()
            XCTAssertTrue(Self.isOpen(pair.local.raw) && Self.isOpen(pair.remote.raw))
            throw Failure()
        }
        XCTAssertThrowsError(try openTwoThenFail())
        XCTAssertEqual(Self.openCount(), before, "the throw closed both ends")

        do {
            let opened = try OwnedDescriptor(checking: open("/nonexistent-proctor/x", O_RDONLY), "open /nonexistent-proctor/x")
            XCTFail("opened \(opened.raw)")
        } catch {
            XCTAssertTrue("\(error)".contains("open /nonexistent-proctor/x: No such file or directory"), "\(error)")
        }
        let raw = OwnedDescriptor(open("/dev/null", O_RDONLY | O_CLOEXEC)).take()
        XCTAssertTrue(Self.isOpen(raw), "take() gives the number up without closing it")
        close(raw)
        XCTAssertEqual(Self.openCount(), before)
    }

    /// A message with a descriptor through a socketpair: the bytes, the sender and a working copy of
    /// the descriptor arrive; nothing stays open afterwards.
    func testChannelPassesADescriptor() throws {
        let before = Self.openCount()
        do {
            let channel = try SocketPair()
            try SocketChannel.passSenders(channel.local.raw)
            let pipe = try PipePair()
            XCTAssertTrue(SocketChannel.send(channel.remote.raw, Array("hello".utf8), passing: pipe.write.raw))
            guard var message = SocketChannel.receive(channel.local.raw) else { return XCTFail("nothing received") }
            XCTAssertEqual(message.bytes, Array("hello".utf8))
            XCTAssertEqual(message.senderPID, getpid())
            guard let passed = message.descriptor.take() else { return XCTFail("no descriptor passed") }
            XCTAssertNotEqual(passed.raw, pipe.write.raw, "the receiver's own copy")
            XCTAssertTrue(fcntl(passed.raw, F_GETFD) & FD_CLOEXEC != 0, "received close-on-exec")
            XCTAssertEqual(write(passed.raw, "via copy", 8), 8)
            var buffer = [UInt8](repeating: 0, count: 16)
            XCTAssertEqual(read(pipe.read.raw, &buffer, buffer.count), 8)
            XCTAssertEqual(String(decoding: buffer.prefix(8), as: UTF8.self), "via copy")
        }
        XCTAssertEqual(Self.openCount(), before)
    }

    func testChannelWithoutDescriptorAndAtEndOfFile() throws {
        let channel = try SocketPair()
        XCTAssertTrue(SocketChannel.send(channel.remote.raw, Array("plain".utf8)))
        guard var message = SocketChannel.receive(channel.local.raw) else { return XCTFail("nothing received") }
        XCTAssertEqual(message.bytes, Array("plain".utf8))
        XCTAssertNil(message.senderPID, "no SO_PASSCRED, no sender")
        if case .some = message.descriptor.take() { XCTFail("a descriptor where none was sent") }
        channel.remote.close()
        if case .some = SocketChannel.receive(channel.local.raw) { XCTFail("a message after the peer closed") }
        let sent = SocketChannel.send(channel.local.raw, Array("x".utf8))
        XCTAssertFalse(sent, "the peer is gone (no SIGPIPE)")
    }

    func testSwitchesAreIndependentAndChildrenFollowTheirParent() throws {
        let first = try StopSwitch()
        let second = try StopSwitch()
        let child = try StopSwitch(parent: first)
        child.request()
        XCTAssertTrue(child.requested)
        XCTAssertFalse(first.requested, "a child's stop is its own")
        first.request()
        first.request()
        XCTAssertTrue(first.requested)
        XCTAssertFalse(second.requested, "another owner's stop is not this one's")
        XCTAssertTrue(Self.readable(first.descriptors[0]))
        XCTAssertFalse(second.descriptors.contains(where: Self.readable))
        XCTAssertTrue(try StopSwitch(parent: first).requested, "a child of a stopped owner is stopped")
    }

    /// Two launches at once (two workspaces, as two runs), each owned by its own switch: stopping
    /// one ends its sandbox within moments, the other keeps running until its own owner stops it.
    func testStoppingOneOwnerLeavesTheOtherRunning() throws {
        let null = OwnedDescriptor(open("/dev/null", O_WRONLY | O_CLOEXEC))
        let output = null.raw
        final class Launch: @unchecked Sendable {
            let done = DispatchSemaphore(value: 0)
            let started = DispatchSemaphore(value: 0)
            let workspace: TestWorkspace
            let stop: StopSwitch
            var pid: pid_t = 0
            var result: Result<SandboxResult, Error>?
            init() throws {
                workspace = try TestWorkspace()
                stop = try StopSwitch()
            }
        }
        let launches = [try Launch(), try Launch()]
        for launch in launches {
            var owned = try SandboxEnvironment.load(workspace: launch.workspace.root)
            owned.stop = launch.stop
            let env = owned
            let context = AuditContext(run: "stop-test", iteration: nil, config: env.config)
            Thread {
                launch.result = Result {
                    try env.launch(phase: .experiment, command: ["sleep", "8"], seed: nil, audit: nil, context: context,
                                   stdout: output, stderr: output, started: { pid in launch.pid = pid; launch.started.signal() })
                }
                launch.done.signal()
            }.start()
        }
        for launch in launches { XCTAssertEqual(launch.started.wait(timeout: .now() + 30), .success, "\(String(describing: launch.result))") }
        usleep(500_000)
        let stoppedAt = Date()
        launches[0].stop.request()
        XCTAssertEqual(launches[0].done.wait(timeout: .now() + 5), .success, "the stopped owner's sandbox is gone")
        XCTAssertLessThan(Date().timeIntervalSince(stoppedAt), 5)
        XCTAssertEqual(launches[1].done.wait(timeout: .now() + 0.5), .timedOut, "the other owner's sandbox still runs")
        XCTAssertEqual(kill(launches[1].pid, 0), 0)
        launches[1].stop.request()
        XCTAssertEqual(launches[1].done.wait(timeout: .now() + 5), .success)
        for launch in launches {
            let result = try XCTUnwrap(launch.result).get()
            XCTAssertFalse(result.timedOut)
            XCTAssertNotEqual(result.status, 0, "stopped, not finished: \(result)")
        }
    }
}
