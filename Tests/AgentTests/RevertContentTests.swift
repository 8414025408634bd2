import Foundation
import ProctorTestSupport
import XCTest

/// Issue 10: an agent that changes a tracked file in place without changing its size, and puts its
/// access and modification times back, must not leave the change behind after a discard. Whatever
/// decides "changed" compares content with the kept tree, never size and mtime.
final class RevertContentTests: XCTestCase {
    /// Changes `X = 0.2` to `X = 0.0` (same length, a worse score: discard) in place, then restores
    /// the file's times as they were before the write.
    static let sameSizeEdit = """
        python3 - <<'PY'
        import os
        st = os.stat("train.py")
        data = open("train.py", "rb").read().replace(b"X = 0.2", b"X = 0.0")
        with open("train.py", "r+b") as f:
            f.write(data)
        os.utime("train.py", ns=(st.st_atime_ns, st.st_mtime_ns))
        PY
        echo "SUMMARY: set X to 0.0 quietly"
        """

    func assertReverted(_ ws: LoopWorkspace, _ outcome: ChildOutcome, line: UInt = #line) throws {
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome), line: line)
        XCTAssertEqual(ws.statuses(), ["keep", "discard"], ws.describe(outcome), line: line)
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.2"), "the discarded edit survived the revert", line: line)
        let status = try runChild(["/usr/bin/git", "-C", ws.root, "status", "--porcelain"], environment: [:], deadline: 30)
        XCTAssertEqual(status.stdout, "", "git status after the run", line: line)
    }

    /// A user's repository has the files' sizes and times in its index (any `git status` writes
    /// them), which is what lets a checkout skip a file whose size and mtime match.
    func refreshIndex(_ ws: LoopWorkspace) throws {
        _ = try runChild(["/usr/bin/git", "-C", ws.root, "update-index", "--refresh"], environment: [:], deadline: 30)
    }

    func testCommandAgentsSameSizeEditIsReverted() throws {
        let script = "if grep -q 'This is iteration 1\\.' \"$1\"; then\n\(Self.sameSizeEdit)\nfi\n"
        let ws = try LoopWorkspace(agent: """
            [agent]
            kind    = "command"
            command = ["sh", "-c", \(tomlString(script)), "agent", "{prompt_file}"]
            timeout = "20s"
            """)
        try refreshIndex(ws)
        try assertReverted(ws, try ws.run(iterations: 1))
    }

    func testSessionAgentsSameSizeEditIsReverted() throws {
        let script = Self.sameSizeEdit + "\nproctor experiment 'x=0.0 quietly'\nsleep 1000\n"
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        try refreshIndex(ws)
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c", script])
        try assertReverted(ws, outcome)
    }
}
