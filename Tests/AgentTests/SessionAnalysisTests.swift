import Foundation
import ProctorTestSupport
import XCTest

/// Issue 8: `proctor analyze` from inside a session goes over the session channel, like
/// `proctor experiment`: the supervisor runs it in the experiment sandbox between experiments and
/// answers with its summary and exit status.
final class SessionAnalysisTests: XCTestCase {
    /// A session whose agent runs `script`, then one experiment (x = 0.6), and waits to be stopped.
    func sessionThenOneExperiment(_ ws: LoopWorkspace, _ script: String) throws -> ChildOutcome {
        let agent = script + "\n" + SessionTests.setX("0.6") + "proctor experiment \"x=0.6\"\nsleep 1000\n"
        return try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c", agent], deadline: 180)
    }

    func testAnalysisFromInsideASession() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let script = """
            proctor analyze -- sh -c 'cat holdout/target.txt; echo ANALYSIS-MARK; echo kept > "$PROCTOR_OUTPUTS/made.txt"; exit 5' > "$HOME/a" 2>&1
            echo "analysis rc=$?"
            echo "reply: $(tr '\\n' ' ' < "$HOME/a")"
            """
        let outcome = try sessionThenOneExperiment(ws, script)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("analysis rc=5"), "the command's status: \(outcome.stdout)")
        XCTAssertTrue(outcome.stdout.contains("ANALYSIS-MARK"), outcome.stdout)
        XCTAssertTrue(outcome.stdout.contains("analysis #1"), outcome.stdout)
        XCTAssertFalse(outcome.stdout.contains(LoopWorkspace.hiddenLabel), "the hidden file is absent in the analysis")
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], "an analysis is not an iteration")
        let meta = try XCTUnwrap(ws.bytes(".proctor/analysis/1/meta.json"))
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: meta) as? [String: Any])
        XCTAssertEqual(record["origin"] as? String, "session")
        XCTAssertEqual(record["status"] as? Int, 5)
        XCTAssertEqual(ws.read(".proctor/analysis/1/scratch/outputs/made.txt"), "kept\n")
        XCTAssertEqual(ws.filesContaining(LoopWorkspace.hiddenLabel, under: ws.root + "/.proctor/analysis"), [])
    }

    /// One request right after another's answer is served, not refused as busy: the server sent the
    /// answer before it was free again, and about one back-to-back request in twelve was refused
    /// ("another experiment is running").
    func testARequestRightAfterAnAnswerIsServed() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        // The requests `proctor analyze` sends, straight on the session channel: one process, so the
        // next one follows the answer within microseconds.
        let client = """
            import array, json, os, socket
            fd = int(os.environ["PROCTOR_SESSION_FD"])
            refused = 0
            for i in range(150):
                s = socket.socket(fileno=fd)
                a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.sendmsg([("ANALYZE\t" + json.dumps(["true"])).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [b.fileno()]))])
                b.close(); s.detach()
                reply = a.recv(65536).decode(); a.close()
                refused += "one at a time" in reply
            print("refused=%d" % refused)
            """
        let script = "cat > \"$HOME/client.py\" <<'CLIENT'\n\(client)\nCLIENT\npython3 \"$HOME/client.py\""
        let outcome = try sessionThenOneExperiment(ws, script)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("refused=0"), outcome.stdout)
    }

    /// The session agent's analysis command is never resolved on the host. It used to be, as an
    /// interpreter: a `#!` file named `python3` in the agent's home was run on the host as a pyenv
    /// shim (outside every sandbox, as the supervisor's user: it could rewrite the ledger), and a
    /// fake venv there got the directory its `pyvenv.cfg` named mounted into the analysis (any host
    /// directory, `[sandbox] hide` bypassed). Both run as the experiment's sandbox sees them now:
    /// not at all (127). Judged from outside: the marker the shim writes, the secret's bytes.
    func testAnAnalysisCommandFromTheAgentsHomeRunsNothingOnTheHostAndMountsNothing() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let outside = try TemporaryDirectory("agent-analysis")
        chmod(outside.path, 0o755)
        let marker = outside.path + "/SHIM-RAN-ON-THE-HOST"
        let secret = outside.path + "/secret"
        try FileManager.default.createDirectory(atPath: secret + "/bin", withIntermediateDirectories: true)
        chmod(secret, 0o755)
        chmod(secret + "/bin", 0o755)
        try Data("HOST-SECRET-7f3a\n".utf8).write(to: URL(fileURLWithPath: secret + "/secret.txt"))
        chmod(secret + "/secret.txt", 0o644)
        let script = """
            printf '#!/bin/sh\\ntouch %s\\n' '\(marker)' > "$HOME/python3"; chmod 755 "$HOME/python3"
            proctor analyze -- "$HOME/python3" > "$HOME/a1" 2>&1; echo "shim rc=$?"
            mkdir -p "$HOME/venv/bin"; printf 'home = %s\\n' '\(secret)/bin' > "$HOME/venv/pyvenv.cfg"
            cp /bin/dash "$HOME/venv/bin/python3"; chmod -R a+rX "$HOME"
            proctor analyze -- "$HOME/venv/bin/python3" -c 'cat \(secret)/secret.txt' > "$HOME/a2" 2>&1; echo "venv rc=$?"
            echo "replies: $(cat "$HOME/a1" "$HOME/a2" | tr '\\n' ' ')"
            proctor analyze -- python3 -c 'import sys; print("SAME-PYTHON", sys.version_info[0])' > "$HOME/a3" 2>&1; echo "python rc=$?"
            cat "$HOME/a3"
            """
        let outcome = try sessionThenOneExperiment(ws, script)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the agent's file ran on the host: \(outcome.stdout)")
        XCTAssertFalse(outcome.stdout.contains("HOST-SECRET-7f3a"), outcome.stdout)
        XCTAssertEqual(ws.filesContaining("HOST-SECRET-7f3a", under: ws.root + "/.proctor"), [])
        XCTAssertTrue(outcome.stdout.contains("shim rc=127"), outcome.stdout)
        XCTAssertTrue(outcome.stdout.contains("venv rc=127"), outcome.stdout)
        // The experiment's own interpreter still answers to its name.
        XCTAssertTrue(outcome.stdout.contains("python rc=0"), outcome.stdout)
        XCTAssertTrue(outcome.stdout.contains("SAME-PYTHON 3"), outcome.stdout)
    }

    /// A session agent running analyses in a loop does not fill the disk: each is bounded, and all
    /// but the last ten keep only their record and the end of their log (what their summary shows).
    func testASessionAgentsOldAnalysesArePruned() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let script = """
            for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
                proctor analyze -- sh -c 'head -c 200000 /dev/zero > "$PROCTOR_OUTPUTS/big.bin"; seq 1 3000; echo "END-OF-ANALYSIS"' > /dev/null 2>&1
            done
            \(SessionTests.setX("0.6"))
            proctor experiment "x=0.6"
            sleep 1000
            """
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c", script],
                                     deadline: 240)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        for number in 1...12 {
            let scratch = ws.path(".proctor/analysis/\(number)/scratch/outputs/big.bin")
            XCTAssertEqual(FileManager.default.fileExists(atPath: scratch), number > 2, "analysis \(number)")
            let log = try XCTUnwrap(ws.read(".proctor/analysis/\(number)/output.log"), "analysis \(number)")
            XCTAssertTrue(log.hasSuffix("2999\n3000\nEND-OF-ANALYSIS\n"), "analysis \(number)")
            XCTAssertEqual(log.utf8.count <= 4097, number <= 2, "analysis \(number): \(log.utf8.count) bytes")
            XCTAssertNotNil(ws.bytes(".proctor/analysis/\(number)/meta.json"), "analysis \(number)")
        }
    }

    /// A nudge given before `--resume` reaches the session agent with its next verdict and in the
    /// read-only memory; the agent cannot nudge itself (the queue is proctor's, invisible inside)
    /// nor write the memory. Judged from outside: the queue's bytes, the memory's, the agent's output.
    func testNudgeReachesTheSessionInItsVerdictAndTheAgentCannotNudgeItself() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let first = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c",
                                    SessionTests.setX("0.6") + "proctor experiment \"x=0.6\"\nsleep 1000\n"], deadline: 180)
        XCTAssertEqual(first.status, 0, ws.describe(first))
        let nudge = try ws.proctor(["nudge", "--workspace", ws.root, "HUMAN-NUDGE go to 0.65"])
        XCTAssertEqual(nudge.status, 0, nudge.text)
        let script = """
            proctor nudge "SELF-NUDGE" > "$HOME/n" 2>&1; echo "self-nudge rc=$?"
            echo SELF > /run/proctor/memory/nudges.md 2>/dev/null; echo "memory write rc=$?"
            \(SessionTests.setX("0.65"))
            proctor experiment "x=0.65"
            echo "--- memory"; cat /run/proctor/memory/nudges.md
            proctor experiment "again"
            sleep 1000
            """
        let second = try ws.proctor(["session", "--workspace", ws.root, "--resume", "--iterations", "2", "--", "sh", "-c", script],
                                    deadline: 180)
        XCTAssertEqual(second.status, 0, ws.describe(second))
        XCTAssertTrue(second.stdout.contains("from the human supervising this run:\n- HUMAN-NUDGE go to 0.65"), second.stdout)
        // (proctor's own progress lines may come between the agent's lines)
        XCTAssertTrue(second.stdout.contains("--- memory"), second.stdout)
        XCTAssertTrue(second.stdout.contains("# Messages from the human supervising this run (proctor nudge)\n\n- HUMAN-NUDGE go to 0.65"),
                      second.stdout)
        XCTAssertFalse(second.stdout.contains("self-nudge rc=0"), second.stdout)
        XCTAssertFalse(second.stdout.contains("memory write rc=0"), second.stdout)
        XCTAssertFalse(ws.read(".proctor/nudges.jsonl")?.contains("SELF-NUDGE") ?? true)
        XCTAssertFalse(ws.read(".proctor/memory/nudges.md")?.contains("SELF") ?? true)
        let record = try XCTUnwrap(ws.records().first { $0["iteration"] as? Int == 2 })
        XCTAssertEqual(record["nudges"] as? [String], ["HUMAN-NUDGE go to 0.65"])
        XCTAssertNil(ws.records().last?["nudges"], "delivered once")
    }

    /// A nudge given while the session agent prepares its first experiment rides on that
    /// experiment's verdict and record (not the next one's, nor, with one iteration, none).
    func testANudgeGivenWhileTheAgentWorksRidesOnItsNextVerdict() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        // (A second experiment so that the first verdict is printed before the session ends.)
        let script = Self.untilGo + SessionTests.setX("0.6") + "proctor experiment \"x=0.6\"\nproctor experiment \"again\"\nsleep 1000\n"
        let output = try CapturedOutput()
        let session = try startProcess([proctorBinary, "session", "--workspace", ws.root, "--iterations", "2", "--", "sh", "-c", script],
                                       environment: ws.environment(), output: output)
        defer { if session.isRunning { session.terminate() } }
        // After the baseline, while the agent works on its first experiment (the loop waits for it).
        XCTAssertTrue(waitUntil(timeout: 60) { ws.statuses() == ["keep"] }, output.stdout + output.stderr)
        XCTAssertTrue(waitUntil(timeout: 60) { output.stdout.contains("session: agent started") }, output.stdout + output.stderr)
        let nudge = try ws.proctor(["nudge", "--workspace", ws.root, "WHILE-YOU-WORK try 0.6"])
        XCTAssertEqual(nudge.status, 0, nudge.text)
        try Self.go(ws)
        XCTAssertTrue(waitUntil(timeout: 90) { !session.isRunning }, output.stdout)
        XCTAssertEqual(ws.statuses().prefix(2), ["keep", "keep"])
        XCTAssertTrue(output.stdout.contains("iteration 1: keep score 0.9 (best 0.9)\nfrom the human supervising this run:\n- WHILE-YOU-WORK try 0.6"), output.stdout)
        let record = ws.records().last { $0["iteration"] as? Int == 1 } ?? [:]
        XCTAssertEqual(record["nudges"] as? [String], ["WHILE-YOU-WORK try 0.6"], ws.read(".proctor/runs.jsonl") ?? "")
    }

    /// An analysis queued from another terminal while the session agent works is run between its
    /// experiments, without waiting for the agent's next request.
    func testAnalysisQueuedFromAnotherTerminalRunsWhileTheAgentWorks() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let script = Self.untilGo + SessionTests.setX("0.6") + "proctor experiment \"x=0.6\"\nsleep 1000\n"
        let output = try CapturedOutput()
        let session = try startProcess([proctorBinary, "session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c", script],
                                       environment: ws.environment(), output: output)
        defer { if session.isRunning { session.terminate() } }
        XCTAssertTrue(waitUntil(timeout: 60) { output.stdout.contains("session: agent started") }, output.stdout + output.stderr)
        let analysis = try ws.proctor(["analyze", "--workspace", ws.root, "--", "sh", "-c", "echo IDLE-ANALYSIS"], deadline: 60)
        XCTAssertEqual(analysis.status, 0, analysis.text)
        XCTAssertTrue(analysis.stdout.contains("IDLE-ANALYSIS"), analysis.text)
        XCTAssertTrue(session.isRunning, "answered while the agent was still working")
        XCTAssertEqual(ws.statuses(), ["keep"], "before the agent's first experiment")
        try Self.go(ws)
        XCTAssertTrue(waitUntil(timeout: 90) { !session.isRunning })
        XCTAssertEqual(ws.statuses(), ["keep", "keep"])
    }

    /// The agent works (waits) until the test has done what it does meanwhile and says `go` in
    /// LOG.md, a notes file the agent sees live: no fixed sleep to outlast on a loaded machine.
    static let untilGo = "until grep -q PROCEED LOG.md; do sleep 0.1; done\n"

    static func go(_ ws: LoopWorkspace) throws {
        // In place (no atomic rename): the agent may see the file through a bind of its own.
        try Data("# Notes\nPROCEED\n".utf8).write(to: URL(fileURLWithPath: ws.path("LOG.md")))
    }
}
