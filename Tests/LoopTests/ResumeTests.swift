import Foundation
import ProctorTestSupport
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
        // Progress counts to the last iteration this invocation runs (it printed `[3/2]` before).
        XCTAssertTrue(resumed.text.contains("[3/4] keep") && resumed.text.contains("[4/4] discard"), resumed.text)
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
        // The forced log has each iteration of the run once, the interrupted one as a crash; the
        // memory was rebuilt from the ledger and knows the iterations before the kill.
        let log = try XCTUnwrap(ws.read(".proctor/memory/LOG.md"))
        let entries = log.components(separatedBy: "## Iteration ").dropFirst().map { String($0.prefix { $0.isNumber }) }
        XCTAssertEqual(entries, ["1", "2", "3", "4"], log)
        XCTAssertTrue(log.contains("- result: crash"), log)
        XCTAssertTrue(ws.read(".proctor/memory/learnings.md")?.contains("after 5 iterations") == true,
                      ws.read(".proctor/memory/learnings.md") ?? "")
    }

    /// SIGKILL while the agent is editing: its half-made change is undone on resume, the iteration is a crash,
    /// and neither the agent's processes nor its private home outlive proctor for long.
    func testResumeAfterSIGKILLDuringTheAgent() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.5; echo "SUMMARY: X to 0.5" ;;
            2) set_var X 0.6; echo "half" >> LOG.md; sleep 60 # {TAG}
               echo "SUMMARY: never" ;;
            *) set_var X 0.69; echo "SUMMARY: X to 0.69" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let output = try CapturedOutput()
        let run = try ws.startRun(["--iterations", "3"], output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 60) { ws.read("LOG.md")?.contains("half") == true },
                      "the agent never started iteration 2: \(output.stdout)\(output.stderr)")
        XCTAssertFalse(processes(containing: ws.tag).isEmpty, "the agent is running")
        kill(run.processIdentifier, SIGKILL)
        run.waitUntilExit()
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: ws.tag).isEmpty },
                      "the agent outlived its supervisor: \(processes(containing: ws.tag))")
        XCTAssertTrue(ws.read("train.py")!.contains("X = 0.6 "))

        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep", "crash", "keep"])
        try ResumeTests.assertTreeAndBranchConsistent(ws)
        XCTAssertEqual(agentNotes(ws.read("LOG.md")), "# notes\n", "the half-written note is gone")
        XCTAssertTrue(ws.read("train.py")!.contains("X = 0.69 "))
    }

    /// A state file whose iteration numbers are impossible (edited or damaged): `--resume` refused
    /// it only when it did not decode; `lastIteration` at `Int.max` then trapped on the next
    /// number, a negative one trapped building the agent's history after rewriting the state.
    /// Now it is refused (125) before anything is written.
    func testResumeRefusesImpossibleIterationNumbers() throws {
        let ws = try LoopWorkspace(WorkspaceSpec())
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        let good = try XCTUnwrap(ws.state)
        for (key, value) in [("lastIteration", Int.max as Any), ("lastIteration", -5), ("inProgress", Int.max), ("inFlight", [3, -1])] {
            var state = good
            state[key] = value
            let data = try JSONSerialization.data(withJSONObject: state)
            try data.write(to: URL(fileURLWithPath: ws.path(".proctor/state.json")))
            let resumed = try ws.run(["--resume", "--iterations", "1"])
            XCTAssertEqual(resumed.status, 125, "\(key)=\(value): \(resumed.text)")
            XCTAssertTrue(resumed.text.contains("not a run state proctor can resume (\(key)"), resumed.text)
            XCTAssertEqual(ws.bytes(".proctor/state.json"), data, "the refused resume left the state alone")
            XCTAssertEqual(ws.rows.count, 2)
        }
    }

    /// The names in a state file reach paths and git references, and its pins the evaluator's
    /// files: a run id with a slash, a branch of another name, a pin edited or a path with `..`
    /// failed with exit 1 after the state had been re-saved ("memory: run id 'a/b' is not a file
    /// name", git's "not valid (code -12)"). Now each is refused (125) naming state.json, the
    /// state left as it was.
    func testResumeRefusesAStateWhoseNamesOrPinsWereEdited() throws {
        let ws = try LoopWorkspace(WorkspaceSpec())
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        let good = try XCTUnwrap(ws.state)
        var pins = try XCTUnwrap(good["pins"] as? [String: String])
        let pinned = try XCTUnwrap(pins.keys.sorted().first)
        var edited = pins
        edited[pinned] = String(repeating: "0", count: 64)
        pins["../outside"] = pins[pinned]
        let cases: [(String, Any, String)] = [
            ("run", "a/b", "not a run id"), ("run", "..", "not a run id"), ("branch", "../../HEAD", "is not proctor/"),
            ("baseCommit", "HEAD", "not a commit id"), ("pins", pins, "not a workspace path"),
            ("pins", edited, "no longer match the run's pins"),
        ]
        for (key, value, words) in cases {
            var state = good
            state[key] = value
            if key == "run" { state["branch"] = "proctor/\(value)" }
            let data = try JSONSerialization.data(withJSONObject: state)
            try data.write(to: URL(fileURLWithPath: ws.path(".proctor/state.json")))
            let resumed = try ws.run(["--resume", "--iterations", "1"])
            XCTAssertEqual(resumed.status, 125, "\(key)=\(value): \(resumed.text)")
            XCTAssertTrue(resumed.stderr.contains("state.json") && resumed.stderr.contains(words), "\(key): \(resumed.text)")
            XCTAssertEqual(ws.bytes(".proctor/state.json"), data, "the refused resume left the state alone")
            XCTAssertEqual(ws.rows.count, 2)
        }
    }

    /// Rewrites state.json as it was saved when iteration 1 began: the baseline at `bestCommit` is best.
    static func rewindState(_ ws: LoopWorkspace, bestCommit: String) throws {
        var state = try XCTUnwrap(ws.state)
        state["bestCommit"] = bestCommit
        state["bestScore"] = ws.row(0)!.score!
        state["lastIteration"] = 0
        state["inProgress"] = 1
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: ws.path(".proctor/state.json")))
    }

    /// An agent that sets X to 0.5 at iteration 1 and to 0.69 after that.
    static let xTo05Then069 = agentPrelude + """
        case "$i" in
        1) set_var X 0.5; echo "SUMMARY: X to 0.5" ;;
        *) set_var X 0.69; echo "SUMMARY: X to 0.69" ;;
        esac
        """

    /// proctor dies after a keep's commit and ledger row but before `.proctor/state.json` is replaced (the
    /// state is written atomically, so it is then exactly the one saved when the iteration began). Resume
    /// must keep the recorded commit: the ledger says it was kept.
    func testResumeAfterDeathBetweenAKeepRowAndTheState() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = ResumeTests.xTo05Then069
        let ws = try LoopWorkspace(spec)
        let initCommit = try ws.git(["rev-parse", "HEAD"])
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep"])
        let kept = try ws.git(["rev-parse", ws.branch!])
        XCTAssertNotEqual(kept, initCommit)

        // The state as saved when iteration 1 began.
        try ResumeTests.rewindState(ws, bestCommit: initCommit)

        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep", "keep"])
        let tip = try ws.git(["rev-parse", ws.branch!])
        XCTAssertEqual(try ws.git(["rev-parse", tip + "^"]), kept, "iteration 1's recorded keep is still on the branch")
        XCTAssertEqual(ws.record(2)?["parent"] as? String, kept)
        try ResumeTests.assertTreeAndBranchConsistent(ws)
    }

    /// proctor dies after the baseline's row, before the state that follows it. The resumed run takes
    /// the baseline from the ledger, and must take its seed-to-seed spread too: otherwise a candidate
    /// that fixes its own seed (re-rolling it until noise looks like progress) is no longer caught.
    func testResumeAfterDeathBetweenTheBaselineRowAndTheStateKeepsTheSeedCheck() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = fixedSeedAgent
        let ws = try LoopWorkspace(spec)
        // A first iteration by the built-in agent, then cut from the ledger: what is left is the
        // baseline's row, with the state as saved when the baseline began.
        let first = try ws.run(["--iterations", "1", "--agent", "mutate"])
        XCTAssertEqual(first.status, 0, first.text)
        XCTAssertEqual(ws.rows.count, 2, first.text)
        for name in ["results.tsv", "runs.jsonl"] {
            let path = ws.path(".proctor/" + name)
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            let keep = name == "results.tsv" ? 2 : 1
            try Data((lines.prefix(keep).joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: path))
        }
        XCTAssertEqual(ws.rows.map(\.status), ["keep"])
        try ws.git(["reset", "--hard", "-q", ws.row(0)!.commit])
        var state = try XCTUnwrap(ws.state)
        XCTAssertNotNil(state["baselineSpread"])
        state["bestScore"] = "nan"
        state["baselineScore"] = "nan"
        state["baselineSpread"] = nil
        state["inProgress"] = 0
        state["lastIteration"] = 0
        state["bestCommit"] = state["baseCommit"]
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: ws.path(".proctor/state.json")))

        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        let row = try XCTUnwrap(ws.row(1), resumed.text)
        XCTAssertEqual(row.status, "rejected", row.fields.joined(separator: " "))
        XCTAssertTrue(row.description.contains("PROCTOR_SEED"), row.description)
        XCTAssertEqual(ws.audit.filter { $0["kind"] as? String == "seed" }.first?["iteration"] as? Int, 1)
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "1", "nothing kept")
        XCTAssertNotNil(ws.state?["baselineSpread"] as? Double)
    }

    /// proctor dies after a keep's commit but before its ledger row: the commit the ledger does not know is
    /// dropped from the branch, the iteration is a crash, and the run continues from the last recorded keep.
    func testResumeAfterDeathBetweenAKeepCommitAndItsRow() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = ResumeTests.xTo05Then069
        let ws = try LoopWorkspace(spec)
        let initCommit = try ws.git(["rev-parse", "HEAD"])
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        let unrecorded = try ws.git(["rev-parse", ws.branch!])

        // Take back iteration 1's row, record and state, as if proctor died right after committing.
        for file in [".proctor/results.tsv", ".proctor/runs.jsonl"] {
            var lines = ws.read(file)!.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            lines.removeLast()
            try ws.write(file, lines.joined(separator: "\n") + "\n")
        }
        try ResumeTests.rewindState(ws, bestCommit: initCommit)
        assertLedgerConsistent(ws, iterations: [0])

        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "crash", "keep"])
        let tip = try ws.git(["rev-parse", ws.branch!])
        XCTAssertEqual(try ws.git(["rev-parse", tip + "^"]), initCommit, "the unrecorded commit is gone from the branch")
        XCTAssertNotEqual(tip, unrecorded)
        try ResumeTests.assertTreeAndBranchConsistent(ws)
    }

    /// proctor dies between an iteration's record (runs.jsonl, written first) and its row (results.tsv):
    /// the record without a row is cut on resume, which records the iteration as interrupted, so
    /// runs.jsonl holds one record per row (it used to hold two for that iteration, a keep and a crash).
    func testResumeAfterDeathBetweenARecordAndItsRow() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = ResumeTests.xTo05Then069
        let ws = try LoopWorkspace(spec)
        let initCommit = try ws.git(["rev-parse", "HEAD"])
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        XCTAssertEqual(ws.row(1)?.status, "keep")
        // Take back iteration 1's row only, and the state, as if proctor died between the two writes.
        var lines = ws.read(".proctor/results.tsv")!.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        lines.removeLast()
        try ws.write(".proctor/results.tsv", lines.joined(separator: "\n") + "\n")
        try ResumeTests.rewindState(ws, bestCommit: initCommit)

        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "crash", "keep"])
        XCTAssertEqual(ws.records.compactMap { $0["status"] as? String }, ["keep", "crash", "keep"])
        try ResumeTests.assertTreeAndBranchConsistent(ws)
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

    /// A SIGKILL inside libgit2's index write leaves `.git/index.lock` (bench/crash.sh found it): every
    /// checkout refused it and `--resume` exited 1. Under the workspace lock it is proctor's to remove.
    func testResumeRemovesAStaleIndexLock() throws {
        let ws = try LoopWorkspace()
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        try ws.write(".git/index.lock", "")
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertTrue(resumed.stdout.contains("removed .git/index.lock"), resumed.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".git/index.lock")))
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        try ResumeTests.assertTreeAndBranchConsistent(ws)
    }

    /// The same for `HEAD.lock` (a SIGKILL in the `HEAD` update right after the baseline: no run
    /// could start, resumed or new) and the run branch's ref lock (a SIGKILL in a keep's ref update:
    /// every later keep failed); a red-team helper left both with `strace -e inject=rename:signal=KILL`.
    func testResumeAndANewRunRemoveStaleHEADAndBranchLocks() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + "set_var X 0.$((i + 4)); echo \"SUMMARY: X closer\"\n"
        let ws = try LoopWorkspace(spec)
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        let branch = try XCTUnwrap(ws.branch)
        try ws.write(".git/HEAD.lock", "")
        try ws.write(".git/refs/heads/\(branch).lock", "")
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertTrue(resumed.stdout.contains("removed .git/HEAD.lock"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("removed .git/refs/heads/\(branch).lock"), resumed.stdout)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep", "keep"], "the resumed keep moved the branch")
        try ResumeTests.assertTreeAndBranchConsistent(ws)
        try ws.write(".git/HEAD.lock", "")
        let fresh = try ws.run(["--iterations", "1"])
        XCTAssertEqual(fresh.status, 0, fresh.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".git/HEAD.lock")))
        XCTAssertNotEqual(try XCTUnwrap(ws.branch), branch, "a new run on its own branch")
    }

    /// A state file from before `bestConfirmation` was kept: `--resume` takes it from the best's
    /// record (the gate would otherwise compare confirmation seeds with a score that counts the
    /// first seed), and gives the run a `seedKey`.
    func testResumeOfAnOlderStateRebuildsTheBestsConfirmationMean() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + "case \"$i\" in 1) set_var X 0.5 ;; *) set_var X 0.1 ;; esac; echo \"SUMMARY: X\"\n"
        let ws = try LoopWorkspace(spec)
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep"])
        var state = try XCTUnwrap(ws.state)
        let kept = try XCTUnwrap(state["bestConfirmation"] as? Double)
        state["bestConfirmation"] = nil
        state["seedKey"] = nil
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: ws.path(".proctor/state.json")))
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep", "discard"])
        let after = try XCTUnwrap(ws.state)
        XCTAssertEqual(try XCTUnwrap(after["bestConfirmation"] as? Double), kept, accuracy: 1e-12)
        let scores = (ws.record(1)?["scores"] as? [[String: Any]] ?? []).compactMap { $0["score"] as? Double }
        XCTAssertEqual(kept, scores.dropFirst().reduce(0, +) / Double(scores.count - 1), accuracy: 1e-12)
        XCTAssertNotNil(after["seedKey"] as? String)
    }

    /// A new run killed during its baseline, with an earlier run's baseline row in the ledger: resume
    /// measures the new run's baseline again (issue 10) and goes on, the earlier rows untouched. The
    /// experiment is slow while the ignored file `slow/flag` exists.
    func testResumeMeasuresTheBaselineOfARunThatDiedInIt() throws {
        var spec = WorkspaceSpec()
        spec.experimentTimeout = "90s"
        spec.agentScript = agentPrelude + "set_var X 0.3$i; echo \"SUMMARY: X\"\n"
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(
            of: "SLEEP = 0\n", with: "SLEEP = 60 if os.path.exists('slow/flag') else 0\n")
        let ws = try LoopWorkspace(spec, files: [".gitignore": "slow/\n"])
        let first = try ws.run(["--iterations", "1"])
        XCTAssertEqual(first.status, 0, first.text)
        let firstRun = try XCTUnwrap(ws.runID)
        try ws.write("slow/flag", "1\n")
        try ResumeTests.killMidExperiment(ws, ["--iterations", "1"])
        let secondRun = try XCTUnwrap(ws.runID)
        XCTAssertNotEqual(secondRun, firstRun)
        XCTAssertEqual(ws.state?["inProgress"] as? Int, 0)

        try FileManager.default.removeItem(atPath: ws.path("slow/flag"))
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 0, 1])
        XCTAssertEqual(ws.records.map { $0["run"] as? String }, [firstRun, firstRun, secondRun, secondRun])
        try ResumeTests.assertTreeAndBranchConsistent(ws)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
    }
}
