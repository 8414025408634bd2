import Foundation
import XCTest

/// Issue 3, "The run": SIGKILL mid-experiment, then `proctor run --resume` continues with a consistent
/// ledger, tree and branch.
final class ResumeTests: XCTestCase {
    static func spec() -> WorkspaceSpec {
        var spec = WorkspaceSpec()
        spec.experimentTimeout = "90s"
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.5; echo "SUMMARY: X to 0.5" ;;
            2) set_var SLEEP 60; set_var X 0.6; echo "SUMMARY: slow" ;;
            3) set_var X 0.69; echo "SUMMARY: X to 0.69" ;;
            *) set_var X 0.1; echo "SUMMARY: X to 0.1" ;;
            esac
            """
        return spec
    }

    /// Starts `proctor run ARGS`, waits for the slow experiment of iteration 2 and kills proctor with SIGKILL.
    static func killMidExperiment(_ ws: LoopWorkspace, _ args: [String], file: StaticString = #filePath,
                                  line: UInt = #line) throws {
        let output = try CapturedOutput()
        let run = try ws.startRun(args, output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 90) { ws.read("outputs/sleeping") != nil },
                      "never reached the slow experiment: \(output.stdout)\(output.stderr)", file: file, line: line)
        XCTAssertFalse(processes(containing: ws.tag).isEmpty, "the experiment is running", file: file, line: line)
        kill(run.processIdentifier, SIGKILL)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 128 + SIGKILL, file: file, line: line)
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: ws.tag).isEmpty },
                      "the experiment outlived its supervisor: \(processes(containing: ws.tag))", file: file, line: line)
    }

    /// The branch tip is the last keep in the ledger, the tree equals the tip, HEAD is on the branch.
    static func assertTreeAndBranchConsistent(_ ws: LoopWorkspace, file: StaticString = #filePath, line: UInt = #line) throws {
        let branch = try XCTUnwrap(ws.branch, file: file, line: line)
        let tip = try ws.git(["rev-parse", branch])
        let lastKeep = try XCTUnwrap(ws.rows.last { $0.status == "keep" }, file: file, line: line)
        if lastKeep.iteration == 0 {
            XCTAssertTrue(tip.hasPrefix(lastKeep.commit), "baseline \(lastKeep.commit) vs tip \(tip)", file: file, line: line)
        } else {
            XCTAssertTrue(tip.hasPrefix(lastKeep.commit), "last keep \(lastKeep.fields) vs tip \(tip)", file: file, line: line)
            XCTAssertEqual(ws.record(lastKeep.iteration)?["commit"] as? String, tip, file: file, line: line)
        }
        XCTAssertEqual(ws.state?["bestCommit"] as? String, tip, file: file, line: line)
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), branch, file: file, line: line)
        XCTAssertEqual(try ws.gitStatus(), "", file: file, line: line)
        XCTAssertEqual(try ws.ignoredLeftovers(), [], file: file, line: line)
        XCTAssertEqual(try ws.git(["diff", tip, "--stat"]), "", file: file, line: line)
    }

    func testResumeAfterSIGKILLMidExperiment() throws {
        let ws = try LoopWorkspace(ResumeTests.spec())
        try ResumeTests.killMidExperiment(ws, ["--iterations", "4"])
        let run = try XCTUnwrap(ws.runID)

        // Straight after the kill: whole lines only, the lock free, the iteration marked in progress.
        assertLedgerConsistent(ws, iterations: [0, 1])
        XCTAssertEqual(ws.state?["inProgress"] as? Int, 2)
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(status.stdout.contains("lock: free"), status.stdout)
        XCTAssertTrue(ws.read("train.py")!.contains("SLEEP = 60"), "the killed iteration's change is still in the tree")

        let resumed = try ws.run(["--resume", "--iterations", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertEqual(ws.runID, run, "the same run continues")
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep", "crash", "keep", "discard"])
        let interrupted = try XCTUnwrap(ws.row(2))
        XCTAssertEqual(interrupted.commit, "")
        XCTAssertNil(interrupted.score)
        XCTAssertTrue(interrupted.description.contains("interrupted"), interrupted.description)
        XCTAssertEqual(ws.record(2)?["run"] as? String, run)

        try ResumeTests.assertTreeAndBranchConsistent(ws)
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "3", "init + keeps 1 and 3")
        XCTAssertTrue(ws.read("train.py")!.contains("X = 0.69  #"))
        XCTAssertTrue(ws.read("train.py")!.contains("SLEEP = 0\n"))
        XCTAssertNil(ws.state?["inProgress"] as? Int)
        XCTAssertEqual(ws.state?["lastIteration"] as? Int, 4)
        let after = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(after.stdout.contains("lock: free"), after.stdout)
        XCTAssertTrue(after.stdout.contains("iteration: 4 finished"), after.stdout)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
    }

    /// The ledger holds every run of the workspace. A second run killed mid-iteration must resume from its
    /// own rows: the interrupted iteration is recorded and the numbering continues from the second run.
    func testResumeOfASecondRunIgnoresTheFirstRunsRows() throws {
        var spec = ResumeTests.spec()
        spec.agentScript = agentPrelude + """
            if grep -q RUN2 LOG.md; then
              case "$i" in
              1) set_var X 0.5; echo "SUMMARY: X to 0.5" ;;
              2) set_var SLEEP 60; echo "SUMMARY: slow" ;;
              *) set_var X 0.69; echo "SUMMARY: X to 0.69" ;;
              esac
            else
              set_var X 0.3$i; echo "SUMMARY: first run $i"
            fi
            """
        let ws = try LoopWorkspace(spec)
        let first = try ws.run(["--iterations", "5"])
        XCTAssertEqual(first.status, 0, first.text)
        let firstRun = try XCTUnwrap(ws.runID)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4, 5])

        // A second run, from the first run's result, marked so the agent behaves differently.
        try ws.write("LOG.md", "# notes\nRUN2\n")
        try ws.git(["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "second run"])
        try ResumeTests.killMidExperiment(ws, ["--iterations", "3"])
        XCTAssertNotEqual(ws.runID, firstRun)
        XCTAssertEqual(ws.state?["inProgress"] as? Int, 2)

        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4, 5, 0, 1, 2, 3])
        let second = Array(ws.rows.suffix(4))
        XCTAssertEqual(second.map(\.status), ["keep", "keep", "crash", "keep"], second.map(\.fields).description)
        XCTAssertTrue(second[2].description.contains("interrupted"), second[2].description)
        XCTAssertEqual(ws.records.suffix(4).map { $0["run"] as? String }, Array(repeating: ws.runID, count: 4))
        try ResumeTests.assertTreeAndBranchConsistent(ws)
        // `proctor status` reports the current run, not the sum of every run in the ledger.
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(status.stdout.contains("run: \(ws.runID!) on \(ws.branch!)"), status.stdout)
        XCTAssertTrue(status.stdout.contains("iteration: 3 finished"), status.stdout)
        XCTAssertTrue(status.stdout.contains("iterations: keep 2, discard 0, crash 1, timeout 0, rejected 0"), status.stdout)
    }

    /// A new run killed during its baseline: resume refuses (there is no best score to continue from), even
    /// though an earlier run's baseline row is in the ledger.
    func testResumeRefusesARunThatDiedInItsBaseline() throws {
        var spec = WorkspaceSpec()
        spec.experimentTimeout = "90s"
        spec.train = spec.train.replacingOccurrences(of: "SLEEP = 0\n",
                                                     with: "SLEEP = 60 if \"SLOWBASE\" in open(\"LOG.md\").read() else 0\n")
        spec.agentScript = agentPrelude + "set_var X 0.3$i; echo \"SUMMARY: X\"\n"
        let ws = try LoopWorkspace(spec)
        let first = try ws.run(["--iterations", "1"])
        XCTAssertEqual(first.status, 0, first.text)
        let firstRun = try XCTUnwrap(ws.runID)
        try ws.write("LOG.md", "# notes\nSLOWBASE\n")
        try ws.git(["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "slow baseline"])
        try ResumeTests.killMidExperiment(ws, ["--iterations", "1"])
        XCTAssertNotEqual(ws.runID, firstRun)
        XCTAssertEqual(ws.state?["inProgress"] as? Int, 0)

        let refused = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertNotEqual(refused.status, 0, refused.text)
        XCTAssertTrue(refused.stderr.contains("baseline"), refused.text)
        assertLedgerConsistent(ws, iterations: [0, 1])
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
    }
}
