import Foundation
import ProctorTestSupport
import XCTest

/// Issue 13, second half: `proctor run --parallel N`. Candidates are measured in slots
/// (`.proctor/slots/K/`), keep decisions are taken one at a time in completion order, and the
/// ledger, the branch, `--resume` and the locks hold as in a serial run. Judged from outside.
final class ParallelRunTests: XCTestCase {
    /// An experiment that takes `seconds` once the agent moved X off the baseline's 0.2, while the
    /// git-ignored `gate/` (user data, bound into every slot) holds a file `block`.
    static func slowSpec(_ seconds: Int = 1) -> WorkspaceSpec {
        var spec = WorkspaceSpec()
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(of: "GREEDY = 0\n", with: """
            GREEDY = 0
            began = time.time()
            if (X != 0.2 or TREES != 50) and os.path.exists("gate/block"):
                open(os.path.join(out, "sleeping"), "w").write(str(os.getpid()))
                time.sleep(\(seconds))
            print("SPAN %f %f" % (began, time.time()))

            """)
        return spec
    }

    static func workspace(_ spec: WorkspaceSpec) throws -> LoopWorkspace {
        let ws = try LoopWorkspace(spec, files: [".gitignore": "gate/\n"])
        try ws.write("gate/block", "1\n")
        return ws
    }

    /// Each iteration once (in any order: completion order), eleven fields a row, a record a row.
    func assertIterations(_ ws: LoopWorkspace, _ count: Int, file: StaticString = #filePath, line: UInt = #line) {
        let rows = ws.rows
        XCTAssertEqual(rows.map(\.iteration).sorted(), Array(0...count), ws.ledgerLines.joined(separator: "\n"), file: file, line: line)
        XCTAssertEqual(ws.records.compactMap { $0["iteration"] as? Int }, rows.map(\.iteration), file: file, line: line)
        for row in ws.ledgerLines.dropFirst() { XCTAssertEqual(row.components(separatedBy: "\t").count, 11, row, file: file, line: line) }
    }

    /// Every keep on the branch in ledger order, nothing else; the tree is the tip (the user's
    /// ignored `gate/` aside).
    func assertBranchHoldsTheKeeps(_ ws: LoopWorkspace, file: StaticString = #filePath, line: UInt = #line) throws {
        try? FileManager.default.removeItem(atPath: ws.path("gate"))
        let keeps = ws.records.filter { $0["status"] as? String == "keep" && ($0["iteration"] as? Int ?? 0) > 0 }.compactMap { $0["commit"] as? String }
        let base = try XCTUnwrap(ws.record(0)?["commit"] as? String, file: file, line: line)
        let chain = try ws.git(["rev-list", "--first-parent", "--reverse", "\(base)..\(ws.branch!)"]).split(separator: "\n").map(String.init)
        XCTAssertEqual(chain, keeps, file: file, line: line)
        try ResumeTests.assertTreeAndBranchConsistent(ws, file: file, line: line)
    }

    func testTwoSlotsRecordEveryIterationOnceAndKeepInCompletionOrder() throws {
        let ws = try ParallelRunTests.workspace(ParallelRunTests.slowSpec())
        let result = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "6", "--parallel", "2"],
                                    environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertTrue(result.stdout.contains("2 slots: candidates are measured 2 at once"), result.text)
        assertIterations(ws, 6)
        try assertBranchHoldsTheKeeps(ws)
        XCTAssertEqual(ws.state?["inFlight"] as? [Int], [])
        XCTAssertEqual(ws.state?["lastIteration"] as? Int, 6)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/slots")), "the slots' copies are removed at the end")
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
        // Two experiments overlapped: the spans they printed (start, end) intersect.
        let logs = ws.path(".proctor/logs/" + ws.runID!)
        let spans = try FileManager.default.contentsOfDirectory(atPath: logs).filter { $0.hasSuffix("-experiment.log") && !$0.hasPrefix("0-") }
            .compactMap { name -> (Double, Double)? in
                let text = (try? String(contentsOfFile: logs + "/" + name, encoding: .utf8)) ?? ""
                guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("SPAN ") }) else { return nil }
                let times = line.split(separator: " ").dropFirst().compactMap { Double($0) }
                return times.count == 2 ? (times[0], times[1]) : nil
            }
        let overlapping = spans.enumerated().contains { i, a in spans.dropFirst(i + 1).contains { b in a.0 < b.1 && b.0 < a.1 } }
        XCTAssertTrue(overlapping, "no two experiments ran at once: \(spans)")
    }

    func testParallelNeedsAsManyMachineSlots() throws {
        let ws = try ParallelRunTests.workspace(WorkspaceSpec())
        let refused = try ws.run(["--iterations", "1", "--parallel", "2"])
        XCTAssertEqual(refused.status, 125, refused.text)
        XCTAssertTrue(refused.stderr.contains("PROCTOR_MACHINE_SLOTS"), refused.text)
        XCTAssertTrue(ws.rows.isEmpty, "nothing ran")
        let flag = try ws.run(["--iterations", "1", "--parallel", "0"])
        XCTAssertNotEqual(flag.status, 0, flag.text)
    }

    /// On a 4-slot machine two `--parallel 2` runs both run; a third is refused (or waits with --wait).
    func testTwoParallelRunsShareAFourSlotMachineAndAThirdIsRefused() throws {
        let first = try ParallelRunTests.workspace(ParallelRunTests.slowSpec(3))
        let second = try ParallelRunTests.workspace(ParallelRunTests.slowSpec(3))
        let third = try ParallelRunTests.workspace(WorkspaceSpec())
        second.machineLock = first.machineLock
        third.machineLock = first.machineLock
        let slots = ["PROCTOR_MACHINE_SLOTS": "4"]
        let outputs = try (0..<2).map { _ in try CapturedOutput() }
        let runs = try zip([first, second], outputs).map { ws, output in
            try startProcess([proctorBinary, "run", "--workspace", ws.root, "--iterations", "2", "--parallel", "2"],
                             environment: ws.environment.merging(slots) { $1 }, output: output)
        }
        // Both hold their slots once their baselines are recorded and their candidates sleep.
        XCTAssertTrue(waitUntil(timeout: 60) { first.rows.count >= 1 && second.rows.count >= 1 }, outputs.map(\.stdout).joined())
        let refused = try third.proctor(["run", "--workspace", third.root, "--iterations", "1", "--parallel", "1"], environment: slots)
        XCTAssertEqual(refused.status, 125, refused.text)
        XCTAssertTrue(refused.stderr.contains("another run holds the lock"), refused.text)
        for run in runs { run.waitUntilExit() }
        for (run, output) in zip(runs, outputs) { XCTAssertEqual(exitStatus(run), 0, output.stdout) }
        assertIterations(first, 2)
        assertIterations(second, 2)
        let after = try third.proctor(["run", "--workspace", third.root, "--iterations", "1", "--parallel", "1"], environment: slots)
        XCTAssertEqual(after.status, 0, "free again: \(after.text)")
    }

    /// A `--parallel 2` run whose two slots are both measuring a candidate that sleeps a minute.
    func startWithTwoInFlight(_ env: [String: String]) throws -> (LoopWorkspace, Process, CapturedOutput) {
        let ws = try ParallelRunTests.workspace(ParallelRunTests.slowSpec(60))
        let output = try CapturedOutput()
        let run = try startProcess([proctorBinary, "run", "--workspace", ws.root, "--iterations", "8", "--parallel", "2"],
                                   environment: ws.environment.merging(env) { $1 }, output: output)
        let sleeping = { (0..<2).allSatisfy { FileManager.default.fileExists(atPath: ws.path(".proctor/slots/\($0)/outputs/outputs/sleeping")) } }
        XCTAssertTrue(waitUntil(timeout: 60, sleeping), output.stdout)
        return (ws, run, output)
    }

    /// SIGKILL of the supervisor with two candidates in flight: nothing kept is lost, no process is
    /// left, and `--resume` records both as crashes and goes on.
    func testSIGKILLWithTwoInFlightThenResume() throws {
        let env = ["PROCTOR_MACHINE_SLOTS": "2"]
        let (ws, run, output) = try startWithTwoInFlight(env)
        let inFlight = try XCTUnwrap(ws.state?["inFlight"] as? [Int], output.stdout)
        // Two measuring, and perhaps a third proposed ahead for the first slot to finish.
        XCTAssertTrue((2...3).contains(inFlight.count), "\(inFlight)")
        kill(run.processIdentifier, SIGKILL)
        run.waitUntilExit()
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: ws.tag).isEmpty },
                      "experiments outlived their supervisor: \(processes(containing: ws.tag))")
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertTrue(status.stdout.contains("lock: free"), status.stdout)
        XCTAssertTrue(status.stdout.contains(inFlight.map(String.init).joined(separator: ", ") + " in progress"), status.stdout)
        let before = ws.rows

        try FileManager.default.removeItem(atPath: ws.path("gate/block"))
        let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "2", "--parallel", "2"], environment: env)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertEqual(Array(ws.rows.prefix(before.count)).map(\.fields), before.map(\.fields), "rows before the kill stay")
        for lost in inFlight {
            let row = try XCTUnwrap(ws.row(lost))
            XCTAssertEqual(row.status, "crash")
            XCTAssertTrue(row.description.contains("interrupted"), row.description)
        }
        assertIterations(ws, (ws.rows.map(\.iteration).max() ?? 0))
        try assertBranchHoldsTheKeeps(ws)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty)
    }

    /// A resume that records the in-flight iterations as crashes, killed between two of those rows
    /// (a red-team helper's `strace` fault): the next resume recorded the first one again, so the
    /// ledger held its number twice. Each crash row now leaves the state's list at once.
    func testResumeKilledBetweenItsCrashRowsRecordsEachIterationOnce() throws {
        let strace = "/usr/bin/strace"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: strace), "strace is not installed (.ci/setup installs it)")
        let env = ["PROCTOR_MACHINE_SLOTS": "2"]
        let (ws, run, output) = try startWithTwoInFlight(env)
        let inFlight = try XCTUnwrap(ws.state?["inFlight"] as? [Int], output.stdout)
        XCTAssertGreaterThanOrEqual(inFlight.count, 2, "\(inFlight)")
        kill(run.processIdentifier, SIGKILL)
        run.waitUntilExit()
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: ws.tag).isEmpty })
        try FileManager.default.removeItem(atPath: ws.path("gate/block"))
        let rowsBefore = ws.rows.count
        // Killed at its second write to results.tsv: one crash row written, the others not.
        let killed = try runChild([strace, "-qq", "-f", "-P", ws.path(".proctor/results.tsv"), "-e", "trace=write",
                                   "-e", "inject=write:signal=KILL:when=2", "-o", "/dev/null",
                                   proctorBinary, "run", "--workspace", ws.root, "--resume", "--iterations", "1", "--parallel", "2"],
                                  environment: ws.environment.merging(env) { $1 })
        XCTAssertNotEqual(killed.status, 0, killed.text)
        XCTAssertEqual(ws.rows.count, rowsBefore + 1, ws.ledgerLines.joined(separator: "\n"))
        let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "1", "--parallel", "2"], environment: env)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        for lost in inFlight { XCTAssertEqual(ws.rows.filter { $0.iteration == lost }.map(\.status), ["crash"], "iteration \(lost)") }
        assertIterations(ws, (ws.rows.map(\.iteration).max() ?? 0))
        try assertBranchHoldsTheKeeps(ws)
    }

    /// A three-iteration `--parallel 2` run, its state put back as saved just before its last row:
    /// that iteration (being decided, or a proposal recorded before measuring) and one more, 4, in flight.
    func diedBeforeItsLastRowsState(decided: Bool, _ env: [String: String]) throws -> (LoopWorkspace, Row) {
        let ws = try ParallelRunTests.workspace(ParallelRunTests.slowSpec())
        try FileManager.default.removeItem(atPath: ws.path("gate/block"))
        let first = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "3", "--parallel", "2"], environment: env)
        XCTAssertEqual(first.status, 0, first.text)
        let last = try XCTUnwrap(ws.rows.last)
        let record = try XCTUnwrap(ws.records.last)
        var state = try XCTUnwrap(ws.state)
        state["lastIteration"] = ws.rows.dropLast().map(\.iteration).max()
        state["inProgress"] = decided ? last.iteration : nil
        state["inFlight"] = [last.iteration, 4]
        if last.status == "keep" {
            state["bestCommit"] = record["parent"]
            state["bestScore"] = record["bestBefore"]
        }
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: ws.path(".proctor/state.json")))
        return (ws, last)
    }

    /// The supervisor dies between an in-flight iteration's row and the state save that takes it out
    /// of `inFlight` (found by killing at random): `--resume` took it for unmeasured, cut its record
    /// (a keep's included) and added a crash row on top, so the ledger held the iteration twice and
    /// rows and records no longer paired. Both ways a row is written under `--parallel`: a measured
    /// candidate being decided (`inProgress` is it) and a proposal rejected before measuring (nil).
    func testDeathBetweenAnInFlightRowAndTheStateThenResume() throws {
        let env = ["PROCTOR_MACHINE_SLOTS": "2"]
        for decided in [true, false] {
            let (ws, last) = try diedBeforeItsLastRowsState(decided: decided, env)
            let before = ws.rows

            let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "1", "--parallel", "2"], environment: env)
            XCTAssertEqual(resumed.status, 0, resumed.text)
            XCTAssertEqual(Array(ws.rows.prefix(before.count)).map(\.fields), before.map(\.fields), "rows before the kill stay")
            XCTAssertEqual(ws.row(4)?.status, "crash", "the one never recorded is the crash")
            assertIterations(ws, 5)
            XCTAssertEqual(ws.records.filter { $0["iteration"] as? Int == last.iteration }.first?["status"] as? String, last.status,
                           "iteration \(last.iteration)'s own record stays")
            try assertBranchHoldsTheKeeps(ws)
        }
    }

    /// Two deaths: the first between an in-flight iteration's row and its state save (as above),
    /// the second in the resume that reconciles it. That resume reconciled only in memory, wrote a
    /// crash row for the other iteration in flight, and could die before saving: the next resume
    /// found that crash row last, no longer the first death's row, and recorded that iteration
    /// again (its keep's commit dropped from the branch; found by killing at random). The
    /// reconciled state is saved before anything is written now.
    func testASecondDeathWhileResumingRecordsNothingTwice() throws {
        let strace = "/usr/bin/strace"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: strace), "strace is not installed (.ci/setup installs it)")
        let env = ["PROCTOR_MACHINE_SLOTS": "2"]
        let (ws, last) = try diedBeforeItsLastRowsState(decided: true, env)
        let record = try XCTUnwrap(ws.records.last)
        // Killed as it writes its first row (the crash row of iteration 4): what it had saved by
        // then is the state the first death left, reconciled with the ledger.
        let killed = try runChild([strace, "-qq", "-f", "-P", ws.path(".proctor/results.tsv"), "-e", "trace=write",
                                   "-e", "inject=write:signal=KILL:when=1", "-o", "/dev/null",
                                   proctorBinary, "run", "--workspace", ws.root, "--resume", "--iterations", "1", "--parallel", "2"],
                                  environment: ws.environment.merging(env) { $1 })
        XCTAssertNotEqual(killed.status, 0, killed.text)
        let saved = try XCTUnwrap(ws.state)
        XCTAssertNil(saved["inProgress"] as? Int, "\(saved)")
        XCTAssertEqual(saved["inFlight"] as? [Int], [4], "\(saved)")
        XCTAssertEqual(saved["lastIteration"] as? Int, ws.rows.map(\.iteration).max(), "\(saved)")
        if last.status == "keep" { XCTAssertEqual(saved["bestCommit"] as? String, record["commit"] as? String, "\(saved)") }
        let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "1", "--parallel", "2"], environment: env)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertEqual(ws.rows.filter { $0.iteration == last.iteration }.map(\.status), [last.status], ws.ledgerLines.joined(separator: "\n"))
        XCTAssertEqual(ws.row(4)?.status, "crash")
        assertIterations(ws, 5)
        try assertBranchHoldsTheKeeps(ws)
    }

    /// Ctrl-C with two in flight: both sandboxes end, no row for either, exit 130, and the state has
    /// nothing in flight; `--resume` goes on from the last row.
    func testCtrlCWithTwoInFlightRecordsNothingForThem() throws {
        let env = ["PROCTOR_MACHINE_SLOTS": "2"]
        let (ws, run, output) = try startWithTwoInFlight(env)
        let rows = ws.rows
        kill(run.processIdentifier, SIGINT)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 130, output.stdout)
        XCTAssertTrue(processes(containing: ws.tag).isEmpty, "\(processes(containing: ws.tag))")
        XCTAssertEqual(ws.rows.map(\.fields), rows.map(\.fields), "no row for the interrupted candidates")
        XCTAssertEqual(ws.state?["inFlight"] as? [Int], [])
        try FileManager.default.removeItem(atPath: ws.path("gate/block"))
        let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "2", "--parallel", "2"], environment: env)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertFalse(ws.rows.contains { $0.status == "crash" }, ws.ledgerLines.joined(separator: "\n"))
        // An interrupted number below a recorded one was left without a row for good; it is given
        // out again first.
        assertIterations(ws, ws.rows.map(\.iteration).max() ?? 0)
        try assertBranchHoldsTheKeeps(ws)
    }

    /// Ctrl-C (or SIGTERM) while a candidate is in flight below one already recorded (a later one
    /// finished first): the interrupted number had no row and was never given out again, a hole
    /// for good in the run's iterations. It is given out first on `--resume` now.
    func testAnInterruptedNumberBelowARecordedOneIsGivenOutAgain() throws {
        let env = ["PROCTOR_MACHINE_SLOTS": "2"]
        var spec = WorkspaceSpec()
        // Candidates take as long as X is far from the baseline's: a later one often finishes first.
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(of: "GREEDY = 0\n", with: """
            GREEDY = 0
            if os.path.exists("gate/block"):
                time.sleep(0.2 + 4 * abs(X - 0.2))

            """)
        let ws = try ParallelRunTests.workspace(spec)
        let output = try CapturedOutput()
        let run = try startProcess([proctorBinary, "run", "--workspace", ws.root, "--iterations", "200", "--parallel", "2"],
                                   environment: ws.environment.merging(env) { $1 }, output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 120, interval: 0.01) {
            guard let state = ws.state, let last = state["lastIteration"] as? Int, let flight = state["inFlight"] as? [Int] else { return false }
            return flight.contains { $0 < last }
        }, output.stdout)
        kill(run.processIdentifier, SIGINT)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 130, output.stdout)
        try FileManager.default.removeItem(atPath: ws.path("gate/block"))
        let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "3", "--parallel", "2"], environment: env)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        assertIterations(ws, ws.rows.map(\.iteration).max() ?? 0)
        try assertBranchHoldsTheKeeps(ws)
    }

    /// From inside a slot's experiment: the other slots' trees and outputs, proctor's state and the
    /// working tree's files are out of reach; the user's ignored data is there, read-only.
    func testASlotCannotSeeOrWriteAnotherSlotOrTheWorkingTree() throws {
        var spec = ParallelRunTests.slowSpec(1)
        spec.train = spec.train.replacingOccurrences(of: "GREEDY = 0\n", with: """
            GREEDY = 0
            import json, errno as E
            here = os.getcwd()
            probe = {"data": open("gate/block").read().strip(), "linked": open("gatelink/block").read().strip(),
                     "nested": open("data/train.csv").read().strip(), "nested-dir": open("data/raw/x").read().strip(),
                     "nested-link": open("data/latest/x").read().strip(),
                     "cpus": ",".join(map(str, sorted(os.sched_getaffinity(0))))}
            for rel in [".proctor", ".proctor/slots", ".proctor/slots/0/tree/train.py", ".proctor/slots/1/outputs", "holdout/target.txt"]:
                probe[rel] = "visible" if os.path.exists(os.path.join(here, rel)) else "absent"
            def attempt(name, path, mode="w"):
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    open(path, mode).write("planted\\n")
                    probe[name] = "WROTE"
                except OSError as e:
                    probe[name] = E.errorcode.get(e.errno, str(e.errno))
            for k in (0, 1):
                attempt("other-outputs-%d" % k, os.path.join(here, ".proctor/slots/%d/outputs/outputs/planted" % k))
                attempt("other-tree-%d" % k, os.path.join(here, ".proctor/slots/%d/tree/train.py" % k), "a")
            attempt("tree", os.path.join(here, "train.py"), "a")
            attempt("data-write", os.path.join(here, "gate/block"), "a")
            attempt("nested-write", os.path.join(here, "data/train.csv"), "a")
            attempt("ws-outputs-sibling", os.path.join(here, "outputs-planted"))
            print("PROBE " + json.dumps(probe, sort_keys=True))

            """)
        // The evaluator (locked, run from the pinned copy) probes its own view the same way.
        spec.prepare = WorkspaceSpec.defaultPrepare.replacingOccurrences(of: "import json, math, os, random\n", with: """
            import json, math, os, random, sys
            seen = {rel: os.path.exists(rel) for rel in [".proctor", ".proctor/slots", ".proctor/slots/0/outputs", ".proctor/slots/1/tree", "train.py"]}
            try:
                open("outputs/planted-by-evaluator", "w").write("x")
                seen["write-outputs"] = True
            except OSError:
                seen["write-outputs"] = False
            print("EVALPROBE " + json.dumps(seen, sort_keys=True), file=sys.stderr)

            """)
        // Ignored data beside a tracked file of its directory too (`data/.gitkeep`), as data-science
        // layouts have it: a file, a directory and a link.
        let ws = try LoopWorkspace(spec, files: [".gitignore": "gate/\ngatelink\ndata/*\n!data/.gitkeep\n", "data/.gitkeep": ""])
        try ws.write("gate/block", "1\n")
        try FileManager.default.createSymbolicLink(atPath: ws.path("gatelink"), withDestinationPath: "gate")
        try ws.write("data/train.csv", "2\n")
        try ws.write("data/raw/x", "3\n")
        try FileManager.default.createSymbolicLink(atPath: ws.path("data/latest"), withDestinationPath: "raw")
        let result = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "4", "--parallel", "2"],
                                    environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        XCTAssertEqual(result.status, 0, result.text)
        let logs = ws.path(".proctor/logs/" + ws.runID!)
        for (name, probe) in try probes(in: logs, ending: "-experiment.log", marked: "PROBE ", as: [String: String].self) {
            XCTAssertEqual(probe["data"], "1", "the user's ignored data is bound into the slot: \(probe)")
            XCTAssertEqual(probe["data-write"], "EROFS", "read-only: \(probe)")
            XCTAssertEqual(probe["linked"], "1", "an ignored link is a link in the slot too: \(probe)")
            XCTAssertEqual([probe["nested"], probe["nested-dir"], probe["nested-link"]], ["2", "3", "3"],
                           "ignored data inside a tracked directory is bound too: \(probe)")
            XCTAssertEqual(probe["nested-write"], "EROFS", "read-only: \(probe)")
            // Its share of the CPUs: half of them here (each slot a part of its own, or one in turn).
            let cpus = (probe["cpus"] ?? "").split(separator: ",").count
            XCTAssertTrue(cpus >= 1 && cpus <= max(1, ProcessInfo.processInfo.activeProcessorCount / 2), "\(probe)")
            for rel in [".proctor", ".proctor/slots", ".proctor/slots/0/tree/train.py", ".proctor/slots/1/outputs", "holdout/target.txt"] {
                XCTAssertEqual(probe[rel], rel == ".proctor" ? probe[rel] : "absent", "\(name): \(rel): \(probe)")
            }
            for (key, value) in probe where !["data", "linked", "cpus", "nested", "nested-dir", "nested-link"].contains(key) && !key.hasPrefix(".") && !key.hasPrefix("holdout") {
                XCTAssertNotEqual(value, "WROTE", "\(name): \(key): \(probe)")
            }
        }
        // From outside: the working tree is the tip, the data untouched, nothing planted anywhere.
        XCTAssertEqual(ws.read("gate/block"), "1\n")
        XCTAssertEqual(ws.read("data/train.csv"), "2\n")
        for path in ["gatelink", "data/train.csv", "data/raw", "data/latest"] { try FileManager.default.removeItem(atPath: ws.path(path)) }
        try assertBranchHoldsTheKeeps(ws)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("outputs-planted")))
        let planted = FileManager.default.enumerator(atPath: ws.path(".proctor"))?.compactMap { $0 as? String }.filter { $0.hasSuffix("planted") } ?? []
        XCTAssertEqual(planted, [])
        XCTAssertFalse(ws.records.contains { ($0["status"] as? String) == "crash" }, ws.ledgerLines.joined(separator: "\n"))
        // The evaluators of slot candidates: no state, no slot, no candidate tree, read-only outputs.
        for (name, seen) in try probes(in: logs, ending: "-evaluator.err", marked: "EVALPROBE ", as: [String: Bool].self) {
            XCTAssertEqual(seen, [".proctor": false, ".proctor/slots": false, ".proctor/slots/0/outputs": false,
                                  ".proctor/slots/1/tree": false, "train.py": false, "write-outputs": false], "\(name): \(seen)")
        }
    }

    /// Rows come in completion order: a fast discard (2) recorded before a slow keep (1) went into
    /// that keep's commit of LOG.md. A resumed run took "the entries after the last keep" by
    /// iteration number (2 > 1), not by place in the ledger, and wrote 2's entry into the next keep's
    /// LOG.md again. Each iteration's entry is in the branch's LOG.md once.
    func testAResumedRunWritesNoLogEntryIntoTheBranchTwice() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.6; set_var SLEEP 3; echo "SUMMARY: x=0.6, slowly" ;;
            2) set_var X 0.0; echo "SUMMARY: x=0.0" ;;
            *) set_var X 0.7; set_var SLEEP 0; echo "SUMMARY: x=0.7" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let first = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "2", "--parallel", "2"],
                                   environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        XCTAssertEqual(first.status, 0, first.text)
        XCTAssertEqual(ws.rows.map(\.iteration), [0, 2, 1], "the discard recorded before the slow keep: \(ws.ledgerLines)")
        let resumed = try ws.run(["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "discard", "keep", "keep"], ws.ledgerLines.joined(separator: "\n"))
        let log = try ws.git(["show", "\(ws.branch!):LOG.md"])
        for i in 1...3 {
            XCTAssertEqual(log.components(separatedBy: "## Iteration \(i)").count - 1, 1, "iteration \(i) in LOG.md: \(log)")
        }
    }

    /// Notes are empty to the experiment (they skip the diff cap and the binary check, so code in
    /// them must never run). A notes file the candidate creates exists only in its slot's tree (the
    /// working tree is back at the best commit by then): the slot's experiment must see it empty too.
    func testANotesFileTheCandidateCreatesIsEmptyInItsSlot() throws {
        var spec = WorkspaceSpec()
        spec.files = spec.files.replacingOccurrences(of: #"notes    = ["LOG.md"]"#, with: #"notes    = ["LOG.md", "notes/"]"#)
        spec.agentScript = agentPrelude + """
            printf 'print("CODE FROM NOTES RAN")\n' > notes/plan.md 2>/dev/null
            set_var X 0.4
            cat >> train.py <<'EOF'
            plan = "notes/plan.md"
            text = open(plan).read() if os.path.exists(plan) else None
            print("NOTEPROBE " + ("absent" if text is None else "empty" if not text else "visible"))
            if text:
                exec(text)
            EOF
            echo "SUMMARY: a plan in notes"
            """
        let ws = try LoopWorkspace(spec)
        // An empty notes directory (git keeps no empty directory): where the agent's sandbox can create a file.
        try FileManager.default.createDirectory(atPath: ws.path("notes"), withIntermediateDirectories: false)
        let result = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "2", "--parallel", "2"],
                                    environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        XCTAssertEqual(result.status, 0, result.text)
        // The candidate did hold the file: the first keep committed it.
        XCTAssertEqual(try ws.git(["show", "\(ws.branch!):notes/plan.md"]), #"print("CODE FROM NOTES RAN")"#, ws.ledgerLines.joined(separator: "\n"))
        let logs = ws.path(".proctor/logs/" + ws.runID!)
        var probed = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: logs) where name.hasSuffix("-experiment.log") && !name.hasPrefix("0-") {
            let text = try String(contentsOfFile: logs + "/" + name, encoding: .utf8)
            XCTAssertFalse(text.contains("CODE FROM NOTES RAN"), "\(name): \(text)")
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("NOTEPROBE ") }) {
                probed += 1
                XCTAssertNotEqual(line, "NOTEPROBE visible", "\(name): \(text)")
            }
        }
        XCTAssertGreaterThan(probed, 0, "no slot experiment ran the probe")
    }

    /// Between two candidates without a keep, a slot's tree went back to the best by removing the
    /// last candidate's files only: the directories it made stayed, empty. Their names reached the
    /// next candidates' experiments (bytes no commit holds, past the diff's line count), and a
    /// later candidate's file where one of them was stopped the whole run (exit 1, "File exists").
    /// Every candidate here is discarded: candidates 1 and 2 make `extra/x/`, later ones write a
    /// file `extra/x`; each makes a directory of its own. No experiment sees an empty directory or
    /// another candidate's; the run ends well.
    func testASlotKeepsNoDirectoryOfADiscardedCandidate() throws {
        var spec = WorkspaceSpec()
        spec.files = spec.files.replacingOccurrences(of: #"editable = ["train.py"]"#, with: #"editable = ["train.py", "extra/"]"#)
        spec.agentScript = agentPrelude + """
            if [ "$i" -le 2 ]; then mkdir -p extra/x && echo "dir $i" > extra/x/f.txt; else echo "file $i" > extra/x; fi
            mkdir -p "extra/made$i" && echo "$i" > "extra/made$i/f.txt"
            set_var X 0.1
            cat >> train.py <<EOF
            # candidate $i
            for top, dirs, names in os.walk("extra"):
                print("DIRPROBE " + top + (" EMPTY" if not dirs and not names else ""))
            EOF
            echo "SUMMARY: candidate $i"
            """
        let ws = try LoopWorkspace(spec, files: ["extra/keep.txt": "kept\n"])
        let result = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "6", "--parallel", "2"],
                                    environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        XCTAssertEqual(result.status, 0, result.text)
        assertIterations(ws, 6)
        XCTAssertEqual(ws.rows.dropFirst().map(\.status), Array(repeating: "discard", count: 6), ws.ledgerLines.joined(separator: "\n"))
        let logs = ws.path(".proctor/logs/" + ws.runID!)
        var probed = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: logs) where name.hasSuffix("-experiment.log") && !name.hasPrefix("0-") {
            let text = try String(contentsOfFile: logs + "/" + name, encoding: .utf8)
            let lines = text.split(separator: "\n").filter { $0.hasPrefix("DIRPROBE ") }
            if !lines.isEmpty { probed += 1 }
            XCTAssertFalse(lines.contains { $0.hasSuffix(" EMPTY") }, "\(name): \(text)")
            // Its own directory, and no other candidate's.
            let iteration = name.split(separator: "-").first.map(String.init) ?? ""
            let made = lines.filter { $0.hasPrefix("DIRPROBE extra/made") }
            XCTAssertEqual(made, ["DIRPROBE extra/made" + iteration], "\(name): \(text)")
        }
        XCTAssertGreaterThanOrEqual(probed, 6, "the probes ran")
    }

    /// The JSON a probe printed after `marker` in each slot iteration's log ending in `ending` (the
    /// baseline's, `0-`, left out), with the log's name; fails when no slot iteration logged one.
    func probes<T>(in logs: String, ending: String, marked marker: String, as: T.Type,
                   file: StaticString = #filePath, line: UInt = #line) throws -> [(name: String, probe: T)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: logs).filter { $0.hasSuffix(ending) && !$0.hasPrefix("0-") }
        XCTAssertFalse(names.isEmpty, "no \(ending) of a slot iteration", file: file, line: line)
        return try names.map { name in
            let text = try String(contentsOfFile: logs + "/" + name, encoding: .utf8)
            let found = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix(marker) }, text, file: file, line: line)
            let probe = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(found.dropFirst(marker.count).utf8)) as? T, file: file, line: line)
            return (name, probe)
        }
    }

    /// Iteration 1 keeps while iteration 2, proposed on the baseline, is still measured. A change
    /// that applies to the new best is re-applied and measured again on it; one that does not is
    /// recorded `discard` with reason `stale`.
    func testACandidateMeasuredOnAMovedBestIsReappliedOrStale() throws {
        // SLOW is far below X: a change of it alone still applies once X changed.
        for (second, applies) in [("set_var SLOW 2", true), ("set_var X 0.5; set_var SLOW 2", false)] {
            var spec = WorkspaceSpec()
            spec.train += "SLOW = 0\nif SLOW:\n    time.sleep(SLOW)\n"
            spec.agentScript = agentPrelude + """
                case "$i" in
                1) set_var X 0.69; echo "SUMMARY: x closer" ;;
                2) \(second); echo "SUMMARY: the slow one" ;;
                esac
                """
            let ws = try LoopWorkspace(spec)
            let result = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "2", "--parallel", "2"],
                                        environment: ["PROCTOR_MACHINE_SLOTS": "2"])
            XCTAssertEqual(result.status, 0, result.text)
            assertIterations(ws, 2)
            XCTAssertEqual(ws.rows.map(\.iteration), [0, 1, 2], "completion order: 1 (fast) before 2 (slow)")
            let kept = try XCTUnwrap(ws.record(1)?["commit"] as? String, ws.ledgerLines.joined(separator: "\n"))
            let slow = try XCTUnwrap(ws.record(2))
            if applies {
                XCTAssertTrue(result.stdout.contains("[2] the best moved to"), result.stdout)
                XCTAssertEqual(slow["parent"] as? String, kept, "measured again on the new best")
                XCTAssertNotNil(slow["score"] as? Double)
                XCTAssertNotEqual(ws.row(2)?.description.contains("stale"), true)
            } else {
                XCTAssertEqual(ws.row(2)?.status, "discard")
                XCTAssertTrue(ws.row(2)?.description.contains("(stale: the best moved") == true, ws.ledgerLines.joined(separator: "\n"))
                XCTAssertTrue((slow["reason"] as? String)?.hasPrefix("stale") == true, "\(slow)")
            }
            try assertBranchHoldsTheKeeps(ws)
        }
    }
}
