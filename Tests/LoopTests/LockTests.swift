import Foundation
import ProctorTestSupport
import XCTest

/// Issue 3, step 1: one experiment at a time per workspace (and per machine). A second `proctor run` or
/// `proctor exec` fails at once with "another run holds the lock: pid, run, iteration, since", or waits
/// with `--wait`; `proctor status` shows the holder; the kernel releases the lock.
final class LockTests: XCTestCase {
    static func sleepingSpec() -> WorkspaceSpec {
        var spec = WorkspaceSpec()
        spec.experimentTimeout = "90s"
        spec.agentScript = agentPrelude + "set_var SLEEP 60; echo \"SUMMARY: slow experiment\"\n"
        return spec
    }

    /// The holder recorded in `.proctor/lock`, while it is held.
    static func holder(_ ws: LoopWorkspace) -> [String: Any]? {
        guard let data = ws.bytes(".proctor/lock"), !data.isEmpty else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    func testSecondRunFailsAtOnceAndStatusShowsTheHolder() throws {
        let ws = try LoopWorkspace(LockTests.sleepingSpec())
        let output = try CapturedOutput()
        let first = try ws.startRun(["--iterations", "1"], output: output)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() } }
        XCTAssertTrue(waitUntil(timeout: 60) {
            ws.read("outputs/sleeping") != nil && LockTests.holder(ws)?["iteration"] as? Int == 1
        }, "the first run never reached its slow experiment: \(output.stdout)\(output.stderr)")
        let run = try XCTUnwrap(ws.runID)
        let pid = first.processIdentifier
        let rowsBefore = ws.ledgerLines
        var st = stat()
        XCTAssertEqual(stat(ws.root + "/.proctor/lock", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o644, "another user may wait on the workspace lock, not rewrite its holder")
        let stateBefore = ws.bytes(".proctor/state.json")

        for args in [["run", "--workspace", ws.root, "--iterations", "1"],
                     ["run", "--workspace", ws.root, "--resume", "--iterations", "1"],
                     ["exec", "--workspace", ws.root, "--", "/bin/true"],
                     ["exec", "--workspace", ws.root, "--phase", "experiment", "--", "/bin/sleep", "5"]] {
            let second = try ws.proctor(args)
            XCTAssertEqual(second.status, 125, "proctor \(args.joined(separator: " ")): \(second.text)")
            XCTAssertLessThan(second.seconds, 5, "it must fail at once, not wait")
            XCTAssertTrue(second.stderr.contains("another run holds the lock"), second.text)
            XCTAssertTrue(second.stderr.contains("pid \(pid)"), second.text)
            XCTAssertTrue(second.stderr.contains("run \(run)"), second.text)
            XCTAssertTrue(second.stderr.contains("iteration 1"), second.text)
            XCTAssertTrue(second.stderr.contains("since"), second.text)
            XCTAssertTrue(second.stderr.contains("pass --wait to wait for it"), "the refusal says how to wait: \(second.text)")
            XCTAssertTrue(first.isRunning, "the second attempt must not disturb the first")
        }
        XCTAssertEqual(ws.ledgerLines, rowsBefore, "the refused runs wrote no rows")
        XCTAssertEqual(ws.bytes(".proctor/state.json"), stateBefore, "the refused runs left the state alone")
        XCTAssertEqual(try ws.proctorBranches(), [ws.branch!], "the refused runs made no branch")
        let denied = ws.audit.filter { $0["kind"] as? String == "lock" }
        XCTAssertEqual(denied.count, 4, "\(denied)")
        XCTAssertTrue(denied.allSatisfy { $0["decision"] as? String == "denied" })

        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertEqual(status.status, 0, status.text)
        XCTAssertTrue(status.stdout.contains("lock: held by pid \(pid), run \(run), iteration 1, since"), status.stdout)
        XCTAssertTrue(status.stdout.contains("iteration: 1 in progress"), status.stdout)

        // An evaluator-phase exec is not an experiment and does not need the lock.
        // Another workspace on the same machine lock cannot run an experiment either.
        let other = try LoopWorkspace()
        other.machineLock = ws.machineLock
        let blocked = try other.proctor(["exec", "--workspace", other.root, "--", "/bin/true"])
        XCTAssertEqual(blocked.status, 125, blocked.text)
        XCTAssertTrue(blocked.stderr.contains("another run holds the lock"), blocked.text)
        XCTAssertTrue(blocked.stderr.contains(ws.machineLock), blocked.text)
        other.machineLock = other.base + "/machine.lock"
        XCTAssertEqual(try other.proctor(["exec", "--workspace", other.root, "--", "/bin/true"]).status, 0,
                       "with its own machine lock it runs")

        // `--wait` waits for the holder instead of failing.
        let waitOutput = try CapturedOutput()
        let waiter = try startProcess([proctorBinary, "exec", "--workspace", ws.root, "--wait", "--", "/bin/true"],
                                      environment: ws.environment, output: waitOutput)
        defer { if waiter.isRunning { kill(waiter.processIdentifier, SIGKILL) } }
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertTrue(waiter.isRunning, "--wait must wait: \(waitOutput.stderr)")

        // Ctrl-C (SIGINT) abandons the iteration cleanly and frees the lock.
        kill(pid, SIGINT)
        XCTAssertTrue(waitUntil(timeout: 20) { !first.isRunning })
        XCTAssertEqual(exitStatus(first), 130, output.stdout + output.stderr)
        XCTAssertTrue(waitUntil(timeout: 20) { !waiter.isRunning }, "the waiter got the lock once it was free")
        XCTAssertEqual(exitStatus(waiter), 0, waitOutput.stderr)
        let free = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(free.stdout.contains("lock: free"), free.stdout)
        XCTAssertEqual(ws.rows.map(\.iteration), [0], "an abandoned iteration has no row")
        XCTAssertEqual(try ws.gitStatus(), "", "the abandoned change is reverted")
        XCTAssertFalse(ws.read("train.py")!.contains("SLEEP = 60"))
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: ws.tag).isEmpty }, "\(processes(containing: ws.tag))")
    }

    /// A lock held without a holder record (another tool's flock, a holder killed before it wrote):
    /// `proctor status` said "lock: free" (bench/crash.sh's oracle found it).
    /// The machine's settings in the environment are input too: `PROCTOR_MACHINE_SLOTS=abc` (or 0,
    /// -1) was one slot without a word; a `PROCTOR_MACHINE_LOCK` that is a directory failed the run
    /// with exit 1, one in a missing directory made it. 125 naming the variable, nothing made.
    func testMalformedMachineSettingsAreRefused() throws {
        let ws = try LoopWorkspace()
        let missing = ws.base + "/no/such/dir/machine.lock"
        let cases: [([String: String], String)] = [
            (["PROCTOR_MACHINE_SLOTS": "abc"], "PROCTOR_MACHINE_SLOTS: expected a whole number"),
            (["PROCTOR_MACHINE_SLOTS": "0"], "PROCTOR_MACHINE_SLOTS: expected a whole number"),
            (["PROCTOR_MACHINE_SLOTS": "-1"], "PROCTOR_MACHINE_SLOTS: expected a whole number"),
            (["PROCTOR_MACHINE_LOCK": ws.base], "PROCTOR_MACHINE_LOCK: expected a lock file"),
            (["PROCTOR_MACHINE_LOCK": missing], "PROCTOR_MACHINE_LOCK: expected a file in an existing directory"),
        ]
        for (environment, message) in cases {
            for args in [["run", "--workspace", ws.root, "--iterations", "1"], ["exec", "--workspace", ws.root, "--", "true"],
                         ["check", "--workspace", ws.root]] where !(args[0] == "check" && environment["PROCTOR_MACHINE_LOCK"] != nil) {
                let result = try ws.proctor(args, environment: environment)
                XCTAssertEqual(result.status, 125, "\(args[0]) \(environment): \(result.text)")
                XCTAssertTrue(result.stderr.contains(message), "\(args[0]) \(environment): \(result.stderr)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.base + "/no"), "a directory was made")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/results.tsv")))
        XCTAssertEqual(try ws.proctor(["run", "--workspace", ws.root, "--iterations", "1"], environment: ["PROCTOR_MACHINE_SLOTS": "1"]).status, 0)
    }

    func testStatusSaysALockWithoutAHolderIsHeld() throws {
        let ws = try LoopWorkspace()
        try ws.write(".proctor/lock", "")
        let output = try CapturedOutput()
        // --no-fork: flock runs sleep itself, so the kill below ends the holder (a forked sleep
        // kept the output pipe open and the test waited out its 30 s).
        let holder = try startProcess(["/usr/bin/flock", "--no-fork", ws.path(".proctor/lock"), "sleep", "30"],
                                      environment: ws.environment, output: output)
        defer { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() }
        XCTAssertTrue(waitUntil(timeout: 10) {
            (try? ws.proctor(["status", "--workspace", ws.root]).stdout.contains("lock: held (holder unknown")) == true
        }, "status never saw the flock")
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 125, "a run refuses the held lock")
    }

    /// The kernel releases the lock of a proctor killed with SIGKILL: no stale lock.
    func testKilledHolderLeavesNoStaleLock() throws {
        let ws = try LoopWorkspace(LockTests.sleepingSpec())
        let output = try CapturedOutput()
        let first = try ws.startRun(["--iterations", "1"], output: output)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 60) { ws.read("outputs/sleeping") != nil }, output.stderr)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: ws.tag).isEmpty },
                      "the experiment outlived its supervisor: \(processes(containing: ws.tag))")
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(status.stdout.contains("lock: free"), status.stdout)
        let exec = try ws.proctor(["exec", "--workspace", ws.root, "--", "/bin/true"])
        XCTAssertEqual(exec.status, 0, exec.text)
    }
}
