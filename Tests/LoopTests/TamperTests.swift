import Foundation
import ProctorTestSupport
import XCTest

/// Issue 3, step 5: locked files are pinned at `proctor init` and when the run starts; a locked file that
/// differs from its pin is rejected with a `tamper` audit line, and the evaluator always runs from the
/// pinned copy.
final class TamperTests: XCTestCase {
    static let cheatingEvaluator = "import json\nprint(json.dumps({\"score\": 999.0}))\n"

    /// A `[files] locked` list changed since `proctor init` is a change of proctor.toml, not of the
    /// files: it said "locked files differ from their pins" and audited each as `tamper`. Now a
    /// located configuration error (125), nothing audited or written.
    func testAChangedLockedListIsAConfigurationErrorNotTampering() throws {
        let ws = try LoopWorkspace()
        try ws.write("other.py", "x = 1\n")
        let config = try XCTUnwrap(ws.read("proctor.toml"))
        try ws.write("proctor.toml", config.replacingOccurrences(of: "locked   = [\"prepare.py\"]", with: "locked   = [\"other.py\"]"))
        try ws.git(["add", "-A"])
        try ws.git(["-c", "user.name=me", "-c", "user.email=me@example.org", "commit", "-qm", "lock other.py instead"])
        let refused = try ws.run(["--iterations", "1"])
        XCTAssertEqual(refused.status, 125, refused.text)
        XCTAssertTrue(refused.stderr.contains("proctor.toml:"), refused.text)
        XCTAssertTrue(refused.stderr.contains("files.locked"), refused.text)
        XCTAssertTrue(refused.stderr.contains("no longer locked: prepare.py; newly locked: other.py"), refused.text)
        XCTAssertTrue(refused.stderr.contains("--repin"), refused.text)
        XCTAssertEqual(ws.audit.filter { $0["kind"] as? String == "tamper" }.count, 0, "\(ws.audit)")
        XCTAssertTrue(ws.rows.isEmpty)
        XCTAssertNil(ws.state)
        let check = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(check.status, 1, check.text)
        XCTAssertTrue(check.stdout.contains("no longer locked: prepare.py; newly locked: other.py"), check.text)
    }

    /// A locked glob with a wildcard that matches nothing locks nothing (a typo leaves the data the
    /// agent's): the run says so, located, and goes on; it said nothing.
    func testALockedGlobMatchingNothingIsSaid() throws {
        let ws = try LoopWorkspace()
        let config = try XCTUnwrap(ws.read("proctor.toml"))
        try ws.write("proctor.toml", config.replacingOccurrences(of: "locked   = [\"prepare.py\"]", with: "locked   = [\"prepare.py\", \"dta/*.csv\"]"))
        try ws.git(["add", "-A"])
        try ws.git(["-c", "user.name=me", "-c", "user.email=me@example.org", "commit", "-qm", "lock the data"])
        XCTAssertEqual(try ws.proctor(["init", ws.root, "--repin"]).status, 0)
        let run = try ws.run(["--iterations", "1"])
        XCTAssertEqual(run.status, 0, run.text)
        XCTAssertTrue(run.text.contains("proctor.toml:4: files.locked: \"dta/*.csv\" matches no committed file: it locks nothing"), run.text)
    }

    /// A human (or an agent with host access) commits a changed evaluator on the branch: the pin taken at
    /// `proctor init` no longer matches, the run refuses before anything runs, and `--repin` accepts it.
    func testCommittedEvaluatorChangeIsRefusedUntilRepinned() throws {
        let ws = try LoopWorkspace()
        let original = try XCTUnwrap(ws.bytes("prepare.py"))
        let initCommit = try ws.git(["rev-parse", "HEAD"])
        try ws.write("prepare.py", TamperTests.cheatingEvaluator)
        try ws.git(["-c", "user.name=mallory", "-c", "user.email=m@example.org", "commit", "-qam", "better evaluator"])

        let refused = try ws.run(["--iterations", "1"])
        XCTAssertNotEqual(refused.status, 0, refused.text)
        XCTAssertTrue(refused.stderr.contains("prepare.py"), refused.text)
        XCTAssertTrue(refused.stderr.contains("--repin"), refused.text)
        let tamper = ws.audit.filter { $0["kind"] as? String == "tamper" }
        XCTAssertEqual(tamper.count, 1, "\(ws.audit.filter { $0["kind"] as? String != "sandbox" })")
        XCTAssertEqual(tamper.first?["decision"] as? String, "rejected")
        XCTAssertEqual(tamper.first?["path"] as? String, ws.path("prepare.py"))
        XCTAssertNotNil(tamper.first?["time"] as? String)
        XCTAssertTrue(ws.rows.isEmpty, "nothing ran: \(ws.ledgerLines)")
        XCTAssertEqual(try ws.proctorBranches(), [], "no run branch was made")
        XCTAssertNil(ws.state)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/logs")), "no experiment ran")

        // `proctor check` says the same.
        let check = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(check.status, 1, check.text)
        XCTAssertTrue(check.stdout.contains("prepare.py: differs from its pin [tamper]"), check.text)

        // Not beside a run that holds the workspace lock (it went ahead): 125 naming the holder.
        let output = try CapturedOutput()
        let hold = "import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)"
        let holder = try startProcess(["/usr/bin/env", "python3", "-c", hold, ws.path(".proctor/lock")], output: output)
        XCTAssertTrue(waitUntil(timeout: 20) { output.stdout.contains("held") }, output.stderr)
        let pinsBefore = ws.read(".proctor/pins.json")
        let busy = try ws.proctor(["init", ws.root, "--repin"])
        holder.terminate()
        holder.waitUntilExit()
        XCTAssertEqual(busy.status, 125, busy.text)
        XCTAssertTrue(busy.stderr.contains("the workspace is held by") && !busy.stderr.contains("--wait"), "init takes no --wait: \(busy.stderr)")
        XCTAssertEqual(ws.read(".proctor/pins.json"), pinsBefore, "re-pinned beside a run")

        // Re-pinning on purpose makes the new evaluator the locked one.
        let repin = try ws.proctor(["init", ws.root, "--repin"])
        XCTAssertEqual(repin.status, 0, repin.text)
        let accepted = try ws.run(["--iterations", "1", "--agent", "mutate"])
        XCTAssertEqual(accepted.status, 0, accepted.text)
        XCTAssertEqual(ws.row(0)?.score, 999, "the re-pinned evaluator scores the baseline")
        XCTAssertNotEqual(original, ws.bytes("prepare.py"))
        XCTAssertNotEqual(try ws.git(["rev-parse", "HEAD"]), initCommit)
    }

    /// The evaluator edited in the working tree and not committed: the run refuses, audits the tamper,
    /// and leaves the file for its owner to look at.
    func testUncommittedEvaluatorChangeIsRefused() throws {
        let ws = try LoopWorkspace()
        try ws.write("prepare.py", TamperTests.cheatingEvaluator)
        let refused = try ws.run(["--iterations", "1"])
        XCTAssertNotEqual(refused.status, 0, refused.text)
        XCTAssertTrue(refused.stderr.contains("prepare.py"), refused.text)
        let tamper = ws.audit.filter { $0["kind"] as? String == "tamper" }
        XCTAssertEqual(tamper.first?["path"] as? String, ws.path("prepare.py"), "tamper audit line: \(ws.audit.filter { $0["kind"] as? String != "sandbox" })")
        XCTAssertEqual(tamper.first?["decision"] as? String, "rejected")
        XCTAssertTrue(ws.rows.isEmpty, "nothing ran: \(ws.ledgerLines)")
        XCTAssertEqual(try ws.proctorBranches(), [])
        XCTAssertEqual(ws.read("prepare.py"), TamperTests.cheatingEvaluator)
    }

    /// Changed from the host while the run is going: the evaluator still comes from the pinned copy (no
    /// score of 999), and because the tree moved under the experiment the candidate is never kept: it is
    /// rejected with a tamper line, the pinned bytes are restored, and the next iteration goes on.
    func testEvaluatorChangedDuringARunIsNeverUsedAndIsRestored() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var BONUS 2; set_var WAIT_FOR '"TAMPERED"'; echo "SUMMARY: exact predictions" ;;
            *) set_var X 0.3; echo "SUMMARY: move X" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let original = try XCTUnwrap(ws.bytes("prepare.py"))
        let output = try CapturedOutput()
        let run = try ws.startRun(["--iterations", "2"], output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }

        XCTAssertTrue(waitUntil(timeout: 60) { ws.read("outputs/waiting") != nil }, output.stderr)
        try ws.write("prepare.py", "# TAMPERED\n" + TamperTests.cheatingEvaluator)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 0, output.stdout + output.stderr)

        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        let moved = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(moved.status, "rejected", moved.fields.joined(separator: " "))
        XCTAssertTrue(moved.description.contains("prepare.py"), moved.description)
        XCTAssertEqual(try XCTUnwrap(moved.score), 1.0, accuracy: 0.001, "scored by the pinned evaluator")
        for record in ws.records {
            for seed in record["scores"] as? [[String: Any]] ?? [] {
                XCTAssertNotEqual(seed["score"] as? Double, 999)
            }
        }
        let next = try XCTUnwrap(ws.row(2))
        XCTAssertNotEqual(next.status, "rejected", next.fields.joined(separator: " "))
        let tamper = ws.audit.filter { $0["kind"] as? String == "tamper" }
        XCTAssertEqual(tamper.count, 1, "\(ws.audit.filter { $0["kind"] as? String != "sandbox" })")
        XCTAssertEqual(tamper.first?["iteration"] as? Int, 1)
        XCTAssertEqual(tamper.first?["path"] as? String, ws.path("prepare.py"))
        XCTAssertEqual(tamper.first?["decision"] as? String, "rejected")

        XCTAssertEqual(ws.bytes("prepare.py"), original, "the pinned evaluator is back")
        XCTAssertEqual(try ws.gitStatus(), "")
        // The kept commit holds the agent's change (and proctor's log), never the tampered evaluator.
        XCTAssertEqual(try ws.git(["show", "--name-only", "--format=", ws.branch!]), "LOG.md\ntrain.py")
        XCTAssertEqual(try ws.git(["show", "\(ws.branch!):prepare.py"]) + "\n", String(decoding: original, as: UTF8.self))
    }
}
