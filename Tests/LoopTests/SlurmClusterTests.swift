import Foundation
import ProctorLoop
import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 14 against a real Slurm cluster (`.ci/test` starts a one-node one on loopback with
/// `.ci/slurm-cluster.sh`; `SLURM_CONF` comes from the environment): the bundled demo through
/// Slurm, the cluster's singleton lock, Ctrl-C, `--resume` after a SIGKILL with a job in flight,
/// slurmd killed mid-job, a suspended job, sessions through Slurm. Skipped only where Slurm's
/// commands are not installed.
final class SlurmClusterTests: XCTestCase {
    var base: String!
    /// Read-only in the experiment's sandbox: `sleep` there makes each experiment sleep that long.
    var control: String!

    override func setUpWithError() throws {
        let missing = SlurmCLI.missingTools()
        guard missing.isEmpty else {
            throw XCTSkip("no Slurm to test against: \(missing.joined(separator: ", ")) not on PATH (.ci/setup installs slurm-wlm; .ci/slurm-cluster.sh start runs a one-node cluster)")
        }
        // Slurm installed but no cluster (a plain `swift test`): skip, unless SLURM_CONF names one
        // (as .ci/test's one-node cluster does), whose silence is then a failure of its own.
        if ProcessInfo.processInfo.environment["SLURM_CONF"] == nil {
            let ping = try runChild(["/usr/bin/env", "scontrol", "ping"], deadline: 30)
            if ping.status != 0 {
                throw XCTSkip("no Slurm controller answers `scontrol ping` and SLURM_CONF is unset (.ci/slurm-cluster.sh start runs a one-node cluster, as .ci/test does): \(ping.stderr.suffix(200))")
            }
        }
        // Each proctor these tests start looks at its job every 0.2 s, not every second: the
        // tests wait on some 60 jobs, and half a second each was a minute of CI (what is
        // looked at does not change with how often).
        setenv("PROCTOR_SLURM_POLL_MS", "200", 0)
        base = NSTemporaryDirectory() + "proctor-slurm-test-" + UUID().uuidString.prefix(8)
        // Outside /tmp, which every sandbox gets a private one of.
        control = "/var/tmp/proctor-slurm-control-" + UUID().uuidString.prefix(8)
        for dir in [base!, control!] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            chmod(dir, 0o755)
        }
        // A machine lock of the tests' own: never the real one another proctor on this host holds
        // (put back when the test ends: a later test's lock would re-create the removed folder).
        useMachineLockInProcess(base + "/machine.lock")
    }

    override func tearDown() {
        // (After a skip in setUp too, when nothing was made.)
        guard let base, let control else { return }
        // Nothing of a failed test stays queued.
        for ws in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] {
            _ = try? runChild(["/usr/bin/env", "scancel", "--name=" + jobName(base + "/" + ws)], deadline: 20)
        }
        _ = try? runChild(["/bin/rm", "-rf", base, control])
    }

    // MARK: - Helpers

    /// The bundled workspace, its experiment made to sleep as long as `control/sleep` says, or
    /// `control/sleep-changed` once the agent changed `train.py` (never the baseline: a test that
    /// waits for iteration 1 then races no line of output); `oneSeed`: no confirmation seeds (one
    /// job per measurement: shorter tests; the demo keeps them).
    func makeWorkspace(_ name: String = "ws", oneSeed: Bool = true) throws -> String {
        let ws = base + "/" + name
        let made = try runChild([proctorBinary, "init", ws], deadline: 60)
        XCTAssertEqual(made.status, 0, made.text)
        let c = control!
        let train = try String(contentsOfFile: ws + "/train.py", encoding: .utf8)
        let controlled = """
            import os, time; os.path.exists("\(c)/sleep") and time.sleep(float(open("\(c)/sleep").read()))
            os.path.exists("\(c)/sleep-changed") and open(__file__, "rb").read() != open("\(c)/baseline.py", "rb").read() and time.sleep(float(open("\(c)/sleep-changed").read()))
            os.path.exists("\(c)/link-changed") and open(__file__, "rb").read() != open("\(c)/baseline.py", "rb").read() and os.symlink("/etc/hostname", os.path.join(os.environ.get("PROCTOR_OUTPUTS") or "outputs", "planted"))

            """ + train
        try controlled.write(toFile: ws + "/train.py", atomically: true, encoding: .utf8)
        try controlled.write(toFile: c + "/baseline.py", atomically: true, encoding: .utf8)
        chmod(c + "/baseline.py", 0o644)
        let toml = try String(contentsOfFile: ws + "/proctor.toml", encoding: .utf8)
        try toml.replacingOccurrences(of: "\n[sandbox]\n", with: "\n[sandbox]\nread_only = [\"\(control!)\"]\n")
            .replacingOccurrences(of: "confirm_seeds   = [17, 73]", with: oneSeed ? "confirm_seeds   = []" : "confirm_seeds   = [17, 73]")
            .write(toFile: ws + "/proctor.toml", atomically: true, encoding: .utf8)
        let committed = try runChild(["/usr/bin/git", "-C", ws, "commit", "-qam", "slurm test: a sleep the test controls"], deadline: 30)
        XCTAssertEqual(committed.status, 0, committed.text)
        return ws
    }

    /// Each experiment from now on sleeps `seconds` (`afterBaseline`: once `train.py` changed);
    /// nil: none sleeps any more.
    func sleep(_ seconds: Int?, afterBaseline: Bool = false) throws {
        let file = control + (afterBaseline ? "/sleep-changed" : "/sleep")
        if let seconds {
            try "\(seconds)".write(toFile: file, atomically: true, encoding: .utf8)
            chmod(file, 0o644)
        } else {
            unlink(control + "/sleep")
            unlink(control + "/sleep-changed")
        }
    }

    func jobName(_ ws: String) -> String { "proctor-\(SlurmExecutor.workspaceID(ws))-0" }

    func run(_ ws: String, _ args: [String], deadline: Double = 240) throws -> ChildOutcome {
        try runChild([proctorBinary, "run", "--workspace", ws, "--executor", "slurm"] + args, deadline: deadline)
    }

    func start(_ ws: String, _ args: [String], output: CapturedOutput) throws -> Process {
        try startProcess([proctorBinary, "run", "--workspace", ws, "--executor", "slurm"] + args, output: output)
    }

    /// A session agent's shell line that sets train.py's LEARNING_RATE to `value`, in place (the
    /// agent sandbox binds train.py alone: a rename over it is refused).
    static func setLearningRate(_ value: String) -> String {
        "python3 -c 'import re; p = \"train.py\"; s = open(p).read(); open(p, \"w\").write(re.sub(r\"LEARNING_RATE = [0-9.]+ \", \"LEARNING_RATE = \(value) \", s))'"
    }

    /// SIGINT, as Ctrl-C sends: proctor must stop within a minute and exit 130.
    func assertCtrlCExits130(_ process: Process, _ output: CapturedOutput, file: StaticString = #filePath, line: UInt = #line) {
        kill(process.processIdentifier, SIGINT)
        XCTAssertTrue(waitUntil(timeout: 60) { !process.isRunning }, "proctor did not stop", file: file, line: line)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        XCTAssertEqual(exitStatus(process), 130, output.stdout + output.stderr, file: file, line: line)
    }

    /// `.proctor/slurm/jobs.jsonl`: (job, event, state, iteration) in order.
    func jobEvents(_ ws: String) -> [SlurmExecutor.JobEvent] {
        JSONLines.read(SlurmExecutor.JobEvent.self, from: SlurmExecutor.jobsLog(ws))
    }

    /// The first measurement job the run submitted, once it runs on the node.
    func firstRunningJob(_ ws: String, timeout: Double = 60) -> String? {
        var found: String?
        waitUntil(timeout: timeout, interval: 0.3) {
            guard let job = jobEvents(ws).first(where: { $0.event == "submitted" })?.job else { return false }
            if SlurmCLI().state(of: job)?.name == "RUNNING" { found = job }
            return found != nil
        }
        return found
    }

    /// Some experiment (`python3 train.py`) is in the sleep `control/sleep` asked for: its kernel
    /// wait channel says so. A job reads RUNNING from the moment its batch shell starts, before the
    /// experiment has reached its check; a test that lifts the sleep then (`sleep(nil)`) races it:
    /// the experiment skips the sleep and the job ends before the test acts on it.
    /// Whether an experiment of `ws` sleeps: a `train.py` in `nanosleep` below a process whose
    /// arguments name the workspace (its launcher). Any sleeping train.py on the machine was taken
    /// for it, which failed a test while other runs went on beside the suite.
    func anExperimentIsAsleep(in ws: String) -> Bool {
        processes(containing: "train.py").contains { line in
            var pid = String(line.prefix { $0 != ":" })
            guard (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8))?.contains("nanosleep") ?? false else { return false }
            for _ in 0..<8 {
                guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                    let parent = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") })
                else { return false }
                pid = parent.dropFirst(5).trimmingCharacters(in: .whitespaces)
                if pid == "0" || pid == "1" { return false }
                if let arguments = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                    String(decoding: arguments, as: UTF8.self).contains(ws) { return true }
            }
            return false
        }
    }

    func waitForTheExperimentsSleep(_ output: CapturedOutput, in ws: String) {
        XCTAssertTrue(waitUntil(timeout: 60, interval: 0.2) { anExperimentIsAsleep(in: ws) },
                      "no experiment asleep: " + output.stdout + output.stderr)
    }

    /// `scontrol show job`'s field of a job (`StartTime`, `EndTime`, `JobState`).
    func field(_ name: String, of job: String) throws -> String {
        let out = try runChild(["/usr/bin/env", "scontrol", "show", "job", "--oneliner", job], deadline: 30)
        return out.stdout.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) } ?? ""
    }

    func records(_ ws: String) -> [RunRecord] { Ledger.records(in: ws + "/.proctor") }

    // MARK: - Tests

    func testTheBundledDemoRunsFiveIterationsAsSlurmJobs() throws {
        let ws = try makeWorkspace(oneSeed: false)
        let ran = try run(ws, ["--iterations", "5"])
        XCTAssertEqual(ran.status, 0, ran.text)
        XCTAssertTrue(ran.stdout.contains("jobs are named \(jobName(ws))"), ran.text)
        let records = records(ws)
        XCTAssertEqual(Set(records.map(\.iteration)), Set(0...5), ran.text)
        for record in records where !record.scores.isEmpty {
            // One job per seed measured, each id in runs.jsonl.
            XCTAssertEqual(record.slurmJobs?.count, record.scores.count, "iteration \(record.iteration)")
        }
        let events = jobEvents(ws)
        let submitted = events.filter { $0.event == "submitted" }.map(\.job)
        XCTAssertEqual(submitted.sorted(), records.flatMap { $0.slurmJobs ?? [] }.sorted())
        XCTAssertEqual(Set(events.filter { $0.event == "ended" }.compactMap(\.state)), ["COMPLETED"])
        // Slurm's own output of each job lands in the run's logs.
        guard let run = records.first?.run, let first = submitted.first else { return XCTFail("no records or no jobs: " + ran.text) }
        let log = "\(ws)/.proctor/logs/\(run)/0-42-slurm-\(first).log"
        XCTAssertTrue((try? String(contentsOfFile: log, encoding: .utf8))?.contains("proctor measurement job \(first)") ?? false, log)
        let status = try runChild([proctorBinary, "status", "--workspace", ws], deadline: 60)
        XCTAssertTrue(status.stdout.contains("slurm jobs: \(submitted.count)"), status.text)
        XCTAssertTrue(status.stdout.contains("job \(first): iteration 0 seed 42: COMPLETED"), status.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(ws)/.proctor/slurm/inflight-0.json"))
    }

    /// `proctor session` through Slurm: a session agent's `proctor experiment` is measured in jobs
    /// on the node like a run's iteration (one per seed, each id in runs.jsonl), the agent reads each
    /// verdict, and nothing of the session stays queued once it ends.
    func testASessionAgentsExperimentsRunAsSlurmJobs() throws {
        let ws = try makeWorkspace()
        let script = """
            \(Self.setLearningRate("0.1")) && proctor experiment "learning rate 0.1"; echo "rc=$?"
            \(Self.setLearningRate("0.05")) && proctor experiment "learning rate 0.05"; echo "rc=$?"
            """
        let ran = try runChild([proctorBinary, "session", "--workspace", ws, "--executor", "slurm", "--iterations", "3", "--",
                                "sh", "-c", script], deadline: 300)
        XCTAssertEqual(ran.status, 0, ran.text)
        let records = records(ws)
        XCTAssertEqual(records.map(\.iteration), [0, 1, 2], ran.text)
        XCTAssertEqual(records.dropFirst().map(\.description), ["learning rate 0.1", "learning rate 0.05"])
        for record in records {
            XCTAssertFalse(record.scores.isEmpty, "iteration \(record.iteration) was not measured: \(ran.text)")
            XCTAssertEqual(record.slurmJobs?.count, record.scores.count, "iteration \(record.iteration)")
        }
        // The agent read both verdicts (proctor experiment exits 0 on a measured experiment) and the
        // session ended with it, below its three iterations.
        XCTAssertEqual(ran.stdout.components(separatedBy: "rc=0").count - 1, 2, ran.text)
        let events = jobEvents(ws)
        XCTAssertEqual(events.filter { $0.event == "submitted" }.map(\.job).sorted(), records.flatMap { $0.slurmJobs ?? [] }.sorted())
        XCTAssertEqual(Set(events.filter { $0.event == "ended" }.compactMap(\.state)), ["COMPLETED"])
        let queued = try runChild(["/usr/bin/env", "squeue", "--noheader", "--name=" + jobName(ws)], deadline: 30)
        XCTAssertEqual(queued.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "", "jobs left queued")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(ws)/.proctor/slurm/inflight-0.json"))
    }

    /// `--parallel 2` through Slurm: one job per slot (`proctor-<id>-0` and `proctor-<id>-1`), the
    /// cluster running the two at once; each iteration recorded once, its jobs in runs.jsonl.
    func testParallelTwoMeasuresInTwoJobsAtOnce() throws {
        let ws = try makeWorkspace()
        try sleep(4, afterBaseline: true)
        let ran = try run(ws, ["--iterations", "4", "--parallel", "2"])
        XCTAssertEqual(ran.status, 0, ran.text)
        let records = records(ws)
        XCTAssertEqual(records.map(\.iteration).sorted(), Array(0...4), ran.text)
        let submitted = jobEvents(ws).filter { $0.event == "submitted" }.map(\.job)
        XCTAssertEqual(submitted.sorted(), records.flatMap { $0.slurmJobs ?? [] }.sorted())
        let names = Set(try submitted.map { try field("JobName", of: $0) })
        XCTAssertEqual(names, [jobName(ws), String(jobName(ws).dropLast()) + "1"])
        // Two measurement jobs overlapped in time (Slurm's own start and end times).
        let spans = try submitted.dropFirst().map { (try field("StartTime", of: $0), try field("EndTime", of: $0)) }
        let overlapping = spans.enumerated().contains { i, a in spans.dropFirst(i + 1).contains { b in a.0 < b.1 && b.0 < a.1 } }
        XCTAssertTrue(overlapping, "\(spans)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(ws)/.proctor/slurm/inflight-1.json"))
    }

    /// Under `--parallel` each job checks its own slot's outputs for a link before its evaluator
    /// (it checked the working tree's, and a slot's evaluator followed the link it was given; the
    /// supervisor's own check rejected the row afterwards). Every candidate's job skips it.
    func testAParallelJobChecksItsOwnSlotsOutputsForLinks() throws {
        let ws = try makeWorkspace()
        try "1".write(toFile: control + "/link-changed", atomically: true, encoding: .utf8)
        chmod(control + "/link-changed", 0o644)
        let ran = try run(ws, ["--iterations", "2", "--parallel", "2"])
        XCTAssertEqual(ran.status, 0, ran.text)
        let records = records(ws)
        XCTAssertEqual(records.filter { $0.iteration > 0 }.map(\.status), [.rejected, .rejected], ran.text)
        let logs = ws + "/.proctor/logs/" + (records.first?.run ?? "")
        for iteration in [1, 2] {
            let out = (try? String(contentsOfFile: "\(logs)/\(iteration)-42-evaluator.out", encoding: .utf8)) ?? ""
            XCTAssertEqual(out, "", "iteration \(iteration)'s evaluator ran on a link")
        }
        XCTAssertEqual(records.first?.status, .keep, "the baseline's evaluator ran")
    }

    /// `--dependency=singleton` on `proctor-<workspace id>-<slot>`: a job of the same workspace and
    /// slot submitted from anywhere (another login node) holds the run's job back until it ends.
    func testTheClusterHoldsTheRunsJobBehindAnotherOfTheSameWorkspaceAndSlot() throws {
        let ws = try makeWorkspace()
        let blocker = try runChild(["/usr/bin/env", "sbatch", "--parsable", "--job-name=" + jobName(ws), "--dependency=singleton",
                                    "--output=/dev/null", "--mem=64M", "--time=2", "--wrap", "sleep 8"], deadline: 30)
        XCTAssertEqual(blocker.status, 0, blocker.text)
        let other = blocker.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let ran = try run(ws, ["--iterations", "1"])
        XCTAssertEqual(ran.status, 0, ran.text)
        let first = try XCTUnwrap(jobEvents(ws).first { $0.event == "submitted" }?.job)
        let blockerEnd = try field("EndTime", of: other), firstStart = try field("StartTime", of: first)
        XCTAssertFalse(blockerEnd.isEmpty || firstStart.isEmpty)
        XCTAssertGreaterThanOrEqual(firstStart, blockerEnd, "job \(first) started before job \(other) of the same name ended")
    }

    /// A second `proctor run --wait` on the same workspace waits for the first (the workspace lock
    /// guards the supervisor): none of its jobs starts before the first run's last one ended.
    func testASecondRunOnTheSameWorkspaceWaitsForTheFirst() throws {
        let ws = try makeWorkspace()
        try sleep(6)
        let firstOutput = try CapturedOutput()
        let first = try start(ws, ["--iterations", "1"], output: firstOutput)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        XCTAssertNotNil(firstRunningJob(ws), firstOutput.stdout + firstOutput.stderr)
        let secondOutput = try CapturedOutput()
        let second = try start(ws, ["--iterations", "1", "--wait"], output: secondOutput)
        defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
        try sleep(nil)
        for process in [first, second] {
            XCTAssertTrue(waitUntil(timeout: 150) { !process.isRunning }, firstOutput.stdout + secondOutput.stdout)
            process.waitUntilExit()
            XCTAssertEqual(exitStatus(process), 0, firstOutput.stdout + firstOutput.stderr + secondOutput.stdout + secondOutput.stderr)
        }
        let runs = records(ws).map(\.run).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        guard runs.count == 2 else { return XCTFail("\(runs.count) runs recorded, not 2") }
        let jobs = jobEvents(ws).filter { $0.event == "submitted" }
        let lastOfFirst = try XCTUnwrap(jobs.last { $0.run == runs[0] }?.job)
        let firstOfSecond = try XCTUnwrap(jobs.first { $0.run == runs[1] }?.job)
        XCTAssertGreaterThanOrEqual(try field("StartTime", of: firstOfSecond), try field("EndTime", of: lastOfFirst))
    }

    func testCtrlCCancelsTheRunsJobAndExits130() throws {
        let ws = try makeWorkspace()
        try sleep(60)
        let output = try CapturedOutput()
        let process = try start(ws, ["--iterations", "1"], output: output)
        let job = try XCTUnwrap(firstRunningJob(ws), output.stdout + output.stderr)
        assertCtrlCExits130(process, output)
        XCTAssertEqual(SlurmCLI().state(of: job)?.name, "CANCELLED")
        // The launcher's command line names the workspace (--chdir, its mounts): none is left.
        XCTAssertTrue(waitUntil(timeout: 30) { processes(containing: ws).isEmpty },
                      "the job's processes outlived the cancel: \(processes(containing: ws))")
    }

    /// A session's experiment, run as a job on the node (here the same machine), cannot reach the
    /// session's channel: no socket descriptor, neither the agent's mounted path nor the host's.
    /// Judged from outside, from the experiment's log of iteration 1 (asked for by the agent).
    func testASessionsExperimentOnTheNodeCannotReachTheSessionChannel() throws {
        let ws = try makeWorkspace()
        let probe = sessionChannelProbe()
        let train = try String(contentsOfFile: ws + "/train.py", encoding: .utf8)
        try (probe + train).write(toFile: ws + "/train.py", atomically: true, encoding: .utf8)
        let committed = try runChild(["/usr/bin/git", "-C", ws, "commit", "-qam", "slurm test: the session probe"], deadline: 30)
        XCTAssertEqual(committed.status, 0, committed.text)
        let script = """
            \(Self.setLearningRate("0.1"))
            test -S /run/proctor/session.sock && echo "agent-sees-its-socket"
            proctor experiment "learning rate 0.1"; echo "rc=$?"
            """
        let ran = try runChild([proctorBinary, "session", "--workspace", ws, "--executor", "slurm", "--iterations", "2", "--",
                                "sh", "-c", script], deadline: 300)
        XCTAssertEqual(ran.status, 0, ran.text)
        XCTAssertTrue(ran.stdout.contains("agent-sees-its-socket"), ran.text)
        XCTAssertEqual(records(ws).map(\.iteration), [0, 1], ran.text)
        XCTAssertEqual(records(ws).last?.slurmJobs?.count, 1, "iteration 1 measured in a job")
        let run = try XCTUnwrap(records(ws).first?.run)
        let log = try String(contentsOfFile: "\(ws)/.proctor/logs/\(run)/1-42-experiment.log", encoding: .utf8)
        XCTAssertTrue(log.contains("SESSION-UNREACHABLE"), "the probe never ran: " + log)
        XCTAssertFalse(log.contains("SESSION-REACHABLE"), "the experiment reached the session channel: " + log)
    }

    /// Ctrl-C while `sbatch` itself runs (a slow controller; here a stand-in that waits before the
    /// real sbatch): the run waits for sbatch's answer, cancels the job it submitted, and exits 130
    /// with nothing queued and nothing left in flight.
    func testCtrlCWhileSbatchRunsCancelsTheJobItSubmitsAndExits130() throws {
        let ws = try makeWorkspace()
        let bin = base + "/slow-sbatch"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let real = try XCTUnwrap(path.split(separator: ":").map { String($0) + "/sbatch" }.first { FileManager.default.isExecutableFile(atPath: $0) }, "no sbatch on PATH")
        // The probe job passes; a measurement job's submission waits in a sleep the test can see.
        try """
            #!/bin/sh
            case "$*" in *probe*) ;; *) sleep 6 ;; esac
            exec '\(real)' "$@"

            """.write(toFile: bin + "/sbatch", atomically: true, encoding: .utf8)
        chmod(bin + "/sbatch", 0o755)
        chmod(bin, 0o755)
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = bin + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        let output = try CapturedOutput()
        let process = try startProcess([proctorBinary, "run", "--workspace", ws, "--executor", "slurm", "--iterations", "1"],
                                       environment: environment, output: output)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 90, interval: 0.2) { !processes(containing: bin + "/sbatch --parsable").isEmpty || !process.isRunning },
                      output.stdout + output.stderr)
        XCTAssertTrue(process.isRunning, output.stdout + output.stderr)
        assertCtrlCExits130(process, output)
        let submitted = jobEvents(ws).filter { $0.event == "submitted" }.map(\.job)
        XCTAssertEqual(submitted.count, 1, "the baseline's job, submitted once sbatch answered")
        for job in submitted {
            XCTAssertTrue(waitUntil(timeout: 30) { SlurmCLI().state(of: job)?.name == "CANCELLED" }, "job \(job): \(String(describing: SlurmCLI().state(of: job)))")
        }
        let queued = try runChild(["/usr/bin/env", "squeue", "--noheader", "--name=" + jobName(ws)], deadline: 30)
        XCTAssertEqual(queued.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "", "jobs left queued")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(ws)/.proctor/slurm/inflight-0.json"))
    }

    /// Ctrl-C while a session agent's experiment runs as a job: the job is cancelled, the agent
    /// stopped, and the session exits 130 with nothing of it left running.
    func testCtrlCDuringASessionsExperimentCancelsItsJobAndStopsTheAgent() throws {
        let marker = "slurm-session-agent-\(UUID().uuidString.prefix(8))"
        let (ws, process, output, job) = try runningIterationOne(sleeping: 60, sessionAgent: marker)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        assertCtrlCExits130(process, output)
        XCTAssertEqual(SlurmCLI().state(of: job)?.name, "CANCELLED")
        XCTAssertTrue(waitUntil(timeout: 30) { processes(containing: ws).isEmpty && processes(containing: marker).isEmpty },
                      "left running: \(processes(containing: ws)) \(processes(containing: marker))")
        XCTAssertEqual(sessionDirectories(of: process.processIdentifier), [], "the session channel's directory outlived proctor")
        XCTAssertEqual(Set(records(ws).map(\.iteration)), [0], "an interrupted experiment is not recorded as measured")
    }

    /// A session's supervisor SIGKILLed while its agent's experiment runs as a job: the agent does
    /// not outlive it, and `proctor session --resume` waits for the job in flight (no second copy)
    /// before its agent starts, the workspace back at the last keep.
    func testASessionKilledWithAJobInFlightResumes() throws {
        let marker = "slurm-session-agent-\(UUID().uuidString.prefix(8))"
        let (ws, process, output, job) = try runningIterationOne(sleeping: 10, sessionAgent: marker)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try sleep(nil)
        XCTAssertTrue(waitUntil(timeout: 30) { processes(containing: marker).isEmpty },
                      "the session agent outlived its supervisor: \(processes(containing: marker))")
        let inFlight = job

        let resumed = try runChild([proctorBinary, "session", "--workspace", ws, "--executor", "slurm", "--resume", "--",
                                    "sh", "-c", "grep '^LEARNING_RATE' train.py; echo agent-started"], deadline: 240)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertTrue(resumed.stdout.contains("slurm: job \(inFlight) of run"), resumed.text)
        XCTAssertEqual(try field("JobState", of: inFlight), "COMPLETED")
        XCTAssertEqual(jobEvents(ws).filter { $0.event == "submitted" && $0.job == inFlight }.count, 1)
        // The resumed agent found the tree as the last keep left it.
        let agentLines = resumed.stdout.split(separator: "\n").drop { !$0.contains("session: agent started") }.dropFirst()
        XCTAssertEqual(Array(agentLines.prefix(2)), ["LEARNING_RATE = 0.3  # mutate: float 0.005..0.5 log", "agent-started"], resumed.text)
        let status = try runChild(["/usr/bin/git", "-C", ws, "status", "--porcelain", "--untracked-files=no"], deadline: 30)
        XCTAssertEqual(status.stdout, "", "the tree differs from the last keep")
        // The iteration cut short is a crash row (its measurement is not used), the session goes on after it.
        XCTAssertTrue(resumed.stdout.contains("its measurement is not used"), resumed.text)
        XCTAssertTrue(resumed.stdout.contains("resuming run \(records(ws)[0].run) at iteration 2"), resumed.text)
        XCTAssertEqual(records(ws).map(\.status), [.keep, .crash])
        XCTAssertEqual(records(ws).last?.reason, "supervisor stopped")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(ws)/.proctor/slurm/inflight-0.json"))
        // The killed supervisor's channel directory, swept by the resumed session's start.
        XCTAssertEqual(sessionDirectories(of: process.processIdentifier), [], "the killed session's channel directory was left")
    }

    /// A job the cluster suspends (`scontrol suspend`, as preemption by suspension does) is waited
    /// for, not given up: once resumed it ends, and its measurement stands.
    func testASuspendedJobIsWaitedForAndItsMeasurementStands() throws {
        let ws = try makeWorkspace()
        try sleep(12)
        let output = try CapturedOutput()
        let process = try start(ws, ["--iterations", "1"], output: output)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let job = try XCTUnwrap(firstRunningJob(ws), output.stdout + output.stderr)
        waitForTheExperimentsSleep(output, in: ws)
        let suspended = try runChild(["/usr/bin/env", "scontrol", "suspend", job], deadline: 30)
        XCTAssertEqual(suspended.status, 0, suspended.text)
        XCTAssertTrue(waitUntil(timeout: 30) { SlurmCLI().state(of: job)?.name == "SUSPENDED" })
        Thread.sleep(forTimeInterval: 8)
        XCTAssertTrue(process.isRunning, "proctor gave up on a suspended job: " + output.stdout + output.stderr)
        try sleep(nil)
        let resumed = try runChild(["/usr/bin/env", "scontrol", "resume", job], deadline: 30)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertTrue(waitUntil(timeout: 120) { !process.isRunning }, output.stdout + output.stderr)
        process.waitUntilExit()
        XCTAssertEqual(exitStatus(process), 0, output.stdout + output.stderr)
        XCTAssertEqual(records(ws).first?.scores.map(\.score), [0.951428], output.stdout)
        XCTAssertEqual(jobEvents(ws).first { $0.event == "ended" && $0.job == job }?.state, "COMPLETED")
    }

    /// A run SIGKILLed while its first job runs (that job's experiment sleeps `seconds`; later
    /// ones do not): the workspace and the job left in flight.
    func killedWithAJobInFlight(sleeping seconds: Int) throws -> (ws: String, job: String) {
        let ws = try makeWorkspace()
        try sleep(seconds)
        let output = try CapturedOutput()
        let process = try start(ws, ["--iterations", "1"], output: output)
        let job = try XCTUnwrap(firstRunningJob(ws), output.stdout + output.stderr)
        waitForTheExperimentsSleep(output, in: ws)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try sleep(nil)
        return (ws, job)
    }

    /// A two-iteration run whose baseline ran at full speed and whose iteration 1 job is now
    /// running, its experiment asleep for `seconds`; with `sessionAgent`, a session instead, whose
    /// agent (`sh -c ... MARKER`) asked for that experiment and then sleeps.
    func runningIterationOne(sleeping seconds: Int, sessionAgent marker: String? = nil) throws
        -> (ws: String, process: Process, output: CapturedOutput, job: String)
    {
        let ws = try makeWorkspace()
        try sleep(seconds, afterBaseline: true)
        let output = try CapturedOutput()
        let script = """
            \(Self.setLearningRate("0.1"))
            proctor experiment "learning rate 0.1"; sleep 300
            """
        let process = try marker.map {
            try startProcess([proctorBinary, "session", "--workspace", ws, "--executor", "slurm", "--", "sh", "-c", script, $0],
                             output: output)
        } ?? start(ws, ["--iterations", "2"], output: output)
        var job: String?
        XCTAssertTrue(waitUntil(timeout: 90, interval: 0.3) {
            job = jobEvents(ws).last { $0.event == "submitted" && $0.iteration == 1 }?.job
            return job.map { SlurmCLI().state(of: $0)?.name == "RUNNING" } ?? !process.isRunning
        } && process.isRunning, output.stdout + output.stderr)
        waitForTheExperimentsSleep(output, in: ws)
        return (ws, process, output, try XCTUnwrap(job, output.stdout + output.stderr))
    }

    /// Someone's `scancel` of the run's job: a `crash` row with Slurm's state, and the run goes on.
    func testAJobCancelledFromOutsideIsACrashRowAndTheRunGoesOn() throws {
        let (ws, process, output, job) = try runningIterationOne(sleeping: 60)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try sleep(nil)
        SlurmCLI().cancel(job)
        try assertCrashRowAndTheRunGoesOn(ws, process, output, job: job, state: "CANCELLED")
    }

    /// `scancel --batch`: SIGTERM to the job's batch shell alone. The shell used to die of it, and its
    /// launcher, out of proctrack/linuxproc's sight once its parent was gone, ran the experiment on
    /// after the job's end while the run measured its next candidate. The shell now passes the
    /// signal on and waits: nothing is left running, a `crash` row, and the run goes on.
    func testASignalToTheBatchShellAloneLeavesNoLauncherBehind() throws {
        let (ws, process, output, job) = try runningIterationOne(sleeping: 60)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try sleep(nil)
        // The experiment's launcher (and the sandbox's init, a copy of it): the node is this machine.
        let launchers = processes(containing: ws).filter { $0.contains("proctor-sandbox") }
        XCTAssertFalse(launchers.isEmpty, "no launcher found")
        let pids = launchers.compactMap { Int32($0.prefix { $0 != ":" }) }
        let signalled = try runChild(["/usr/bin/env", "scancel", "--batch", "--signal=TERM", job], deadline: 30)
        XCTAssertEqual(signalled.status, 0, signalled.text)
        XCTAssertTrue(waitUntil(timeout: 30) { SlurmCLI().state(of: job)?.ended ?? false }, "the job did not end")
        XCTAssertTrue(waitUntil(timeout: 10) { pids.allSatisfy { kill($0, 0) != 0 } },
                      "left running after the job's end: \(launchers)")
        try assertCrashRowAndTheRunGoesOn(ws, process, output, job: job, state: "FAILED", reason: "Slurm job \(job) ended (FAILED")
    }

    /// A job of a higher-priority partition takes the node (`.ci/slurm-cluster.sh`: "urgent"
    /// preempts "debug" by cancelling): the run's job ends `PREEMPTED`, a `crash` row says so, and
    /// the run goes on once the node is free.
    func testAPreemptedJobIsACrashRowAndTheRunGoesOn() throws {
        let (ws, process, output, job) = try runningIterationOne(sleeping: 60)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try sleep(nil)
        let urgent = try runChild(["/usr/bin/env", "sbatch", "--parsable", "--partition=urgent", "--exclusive", "--mem=1G",
                                   "--output=/dev/null", "--wrap", "sleep 3"], deadline: 30)
        guard urgent.status == 0 else {
            throw XCTSkip("this cluster has no partition \"urgent\" that preempts (.ci/slurm-cluster.sh makes one): \(urgent.text)")
        }
        try assertCrashRowAndTheRunGoesOn(ws, process, output, job: job, state: "PREEMPTED")
    }

    /// The run of `runningIterationOne` ended well, its iteration 1 a `crash` row naming the job
    /// and Slurm's `state`, and iteration 2 measured after it.
    /// `reason`: what the crash row says, by default that Slurm ended the job in `state`.
    func assertCrashRowAndTheRunGoesOn(_ ws: String, _ process: Process, _ output: CapturedOutput, job: String,
                                       state: String, reason: String? = nil) throws {
        XCTAssertTrue(waitUntil(timeout: 90) { !process.isRunning }, output.stdout + output.stderr)
        process.waitUntilExit()
        XCTAssertEqual(exitStatus(process), 0, output.stdout + output.stderr)
        let row = try XCTUnwrap(records(ws).first { $0.iteration == 1 })
        XCTAssertEqual(row.status, .crash)
        XCTAssertTrue(row.reason?.contains(reason ?? "Slurm ended job \(job) on localhost: \(state)") ?? false, String(describing: row.reason))
        XCTAssertNotNil(records(ws).first { $0.iteration == 2 }, output.stdout)
    }

    func testResumeAfterSIGKILLWaitsForTheJobInFlightAndRunsNoSecondCopy() throws {
        let (ws, job) = try killedWithAJobInFlight(sleeping: 10)
        // Recorded before sbatch ran, with the id once it answered.
        let inFlight = try String(contentsOfFile: "\(ws)/.proctor/slurm/inflight-0.json", encoding: .utf8)
        XCTAssertTrue(inFlight.contains("\"job\":\"\(job)\""), inFlight)
        XCTAssertEqual(SlurmCLI().state(of: job)?.name, "RUNNING")
        let status = try runChild([proctorBinary, "status", "--workspace", ws], deadline: 60)
        XCTAssertTrue(status.stdout.contains("job \(job): iteration 0 seed 42: RUNNING"), status.text)

        // A local run would measure beside it (the job's score was credited to a local candidate).
        let local = try runChild([proctorBinary, "run", "--workspace", ws, "--executor", "local", "--resume", "--iterations", "1"], deadline: 60)
        XCTAssertEqual(local.status, 125, local.text)
        XCTAssertTrue(local.stderr.contains("a Slurm job a killed run left may still be running (.proctor/slurm/inflight-0.json)"), local.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(ws)/.proctor/slurm/inflight-0.json"))
        let resumed = try run(ws, ["--resume", "--iterations", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertTrue(resumed.stdout.contains("slurm: job \(job) of run"), resumed.text)
        XCTAssertTrue(resumed.stdout.contains("waiting for it to end"), resumed.text)
        XCTAssertEqual(try field("JobState", of: job), "COMPLETED")
        // The resumed run's first job started only after the one in flight ended.
        let next = try XCTUnwrap(jobEvents(ws).filter { $0.event == "submitted" }.map(\.job).first { $0 != job })
        XCTAssertGreaterThanOrEqual(try field("StartTime", of: next), try field("EndTime", of: job))
        XCTAssertEqual(Set(records(ws).map(\.iteration)), [0, 1])
    }

    func testResumeWithCancelRunningCancelsTheJobInFlight() throws {
        let (ws, job) = try killedWithAJobInFlight(sleeping: 120)
        let resumed = try run(ws, ["--resume", "--cancel-running", "--iterations", "1"], deadline: 100)
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertTrue(resumed.stdout.contains("slurm: cancelling job \(job)"), resumed.text)
        XCTAssertEqual(try field("JobState", of: job), "CANCELLED")
        XCTAssertLessThan(resumed.seconds, 100)
    }

    /// The start checks' stand-ins for a cluster whose nodes do not see this machine's files: the
    /// supervisor in a private mount namespace, where a tmpfs holds what the node cannot see.
    func privately(_ dir: String, _ command: String, environment: [String: String] = [:]) throws -> ChildOutcome {
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        return try runChild(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                             "mount -t tmpfs proctor-private \"$0\" && " + command, dir], environment: env, deadline: 120)
    }

    func testAWorkspaceTheNodesDoNotShareIsRefusedWith125() throws {
        guard geteuid() == 0 else { throw XCTSkip("a private mount namespace for the stand-in needs root") }
        let hidden = base + "/private"
        try FileManager.default.createDirectory(atPath: hidden, withIntermediateDirectories: true)
        let ran = try privately(hidden, "\"$1\" init \"$0/ws\" >/dev/null && \"$1\" run --workspace \"$0/ws\" --executor slurm --iterations 1 ".replacingOccurrences(of: "$1", with: proctorBinary))
        XCTAssertEqual(ran.status, 125, ran.text)
        XCTAssertTrue(ran.stderr.contains("is not on a filesystem the Slurm nodes share"), ran.text)
        XCTAssertFalse(ran.stdout.contains("measuring the baseline"), ran.text)
    }

    func testALauncherNotAtTheSamePathOnTheNodesIsRefusedWith125() throws {
        guard geteuid() == 0 else { throw XCTSkip("a private mount namespace for the stand-in needs root") }
        let ws = try makeWorkspace()
        let hidden = base + "/private"
        try FileManager.default.createDirectory(atPath: hidden, withIntermediateDirectories: true)
        let launcher = (proctorBinary as NSString).deletingLastPathComponent + "/proctor-sandbox"
        let ran = try privately(hidden, "cp '\(launcher)' \"$0/\" && PROCTOR_SANDBOX=\"$0/proctor-sandbox\" '\(proctorBinary)' run --workspace '\(ws)' --executor slurm --iterations 1")
        XCTAssertEqual(ran.status, 125, ran.text)
        XCTAssertTrue(ran.stderr.contains("is not at the same path on the Slurm nodes"), ran.text)
        XCTAssertTrue(records(ws).isEmpty, "nothing recorded")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws + "/.proctor/slurm"), "the refused start left .proctor/slurm/")
    }

    /// slurmd killed while the job runs: Slurm marks the node down and ends the job (NODE_FAIL);
    /// the iteration is a `crash` row with that reason, and the run goes on once slurmd is back.
    func testSlurmdKilledMidJobIsACrashRowWithSlurmsReasonAndTheRunGoesOn() throws {
        guard geteuid() == 0 else { throw XCTSkip("killing and restarting the cluster's slurmd needs root") }
        var cluster = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { cluster.deleteLastPathComponent() }
        let script = cluster.appendingPathComponent(".ci/slurm-cluster.sh").path
        let (ws, process, output, job) = try runningIterationOne(sleeping: 45)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(try runChild([script, "slurmd-kill"], deadline: 20).status, 0)
        let crashed = waitUntil(timeout: 90, interval: 0.5) { self.records(ws).contains { $0.iteration == 1 } }
        try sleep(nil)
        let restarted = try runChild([script, "slurmd-start"], deadline: 30)
        XCTAssertEqual(restarted.status, 0, restarted.text)
        XCTAssertTrue(crashed, output.stdout + output.stderr)
        let row = try XCTUnwrap(records(ws).first { $0.iteration == 1 })
        XCTAssertEqual(row.status, .crash)
        XCTAssertTrue(row.reason?.contains("Slurm ended job \(job)") ?? false, String(describing: row.reason))
        XCTAssertTrue(row.reason?.contains("NODE_FAIL") ?? false, String(describing: row.reason))
        XCTAssertTrue(waitUntil(timeout: 120) { !process.isRunning }, output.stdout + output.stderr)
        process.waitUntilExit()
        XCTAssertEqual(exitStatus(process), 0, output.stdout + output.stderr)
        XCTAssertNotEqual(records(ws).first { $0.iteration == 2 }?.status, .crash, output.stdout)
    }
}

/// The start check that needs no cluster: Slurm's commands missing from PATH are a 125 refusal
/// before anything is recorded.
final class SlurmStartTests: XCTestCase {
    func testMissingSlurmCommandsAreRefusedWith125() throws {
        let base = NSTemporaryDirectory() + "proctor-slurm-start-" + UUID().uuidString.prefix(8)
        defer { _ = try? runChild(["/bin/rm", "-rf", base]) }
        let ws = base + "/ws", bin = base + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        XCTAssertEqual(try runChild([proctorBinary, "init", ws], deadline: 60).status, 0)
        // The workspace's python3 named by its real path: the PATH below holds only links, and a
        // command run through a link the sandbox cannot see is refused before Slurm's check.
        let python = try runChild(["/usr/bin/env", "python3", "-c", "import sys; print(sys.executable)"], deadline: 30)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let toml = try String(contentsOfFile: ws + "/proctor.toml", encoding: .utf8)
        try toml.replacingOccurrences(of: "[\"python3\"", with: "[\"\(python)\"").write(toFile: ws + "/proctor.toml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try runChild(["/usr/bin/git", "-C", ws, "-c", "user.name=proctor test", "-c", "user.email=test@proctor.invalid", "commit", "-qam", "python3 by its path"], deadline: 30).status, 0)
        // Everything on PATH but Slurm's client commands.
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":").map(String.init) {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where !SlurmCLI.tools.contains(name) {
                symlink(dir + "/" + name, bin + "/" + name)  // the first of a name wins, as on PATH
            }
        }
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = bin
        let ran = try runChild([proctorBinary, "run", "--workspace", ws, "--executor", "slurm", "--iterations", "1"],
                               environment: env, deadline: 60)
        XCTAssertEqual(ran.status, 125, ran.text)
        XCTAssertTrue(ran.stderr.contains("needs sbatch, squeue, scontrol, scancel on PATH"), ran.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws + "/.proctor/results.tsv"), "nothing recorded")
    }
}
