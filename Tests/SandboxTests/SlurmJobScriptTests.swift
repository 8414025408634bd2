import Foundation
import ProctorTestSupport
@testable import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// Issue 14: the Slurm job script proctor writes from two launch plans. Every value in it is one
/// quoted word: the launcher receives exactly the arguments a local launch passes, and nothing in
/// a command, an environment value or a path runs as shell code.
final class SlurmJobScriptTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "slurm-script-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Strings a hostile configuration or workspace could hold, each tried as a shell injection.
    func hostile(_ marker: String) -> [String] {
        ["'; touch \(marker); '", "$(touch \(marker))", "`touch \(marker)`", "a\ntouch \(marker)\n",
         "\"; touch \(marker); \"", "\\'$(touch \(marker))\\'", "${IFS}touch${IFS}\(marker)", "x' 3>\(marker) '",
         "*", "-- --rw / /", "é ✓ \u{7f}", ""]
    }

    func testHostileValuesReachTheLauncherAsTheSameArgumentsAndRunNothing() throws {
        let marker = dir + "/INJECTED"
        let record = dir + "/argv"
        // A stand-in launcher: it writes each argument it gets NUL-terminated, then exits 0.
        let launcher = dir + "/fake launcher 'x'"
        try Data("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >>'\(record)'\nprintf '\\001\\0' >>'\(record)'\n".utf8)
            .write(to: URL(fileURLWithPath: launcher))
        chmod(launcher, 0o755)
        // In paths: payloads without a slash (a path's directories must exist); the script runs in `dir`.
        let relative = "INJECTED"
        let outputs = dir + "/out puts $(touch \(relative))"
        try FileManager.default.createDirectory(atPath: outputs, withIntermediateDirectories: true)

        var experiment = LaunchPlan(phase: .experiment, workingDirectory: dir + "/w'd", timeoutMs: 1000, graceMs: 100,
                                    command: ["python3", "train.py"] + hostile(marker))
        experiment.environment = hostile(marker).enumerated().map { ("V\($0.offset)", $0.element) }
        experiment.mounts = [.readOnly(source: dir + "/$(touch \(relative))", target: "/x'y", optional: true)]
        var evaluator = LaunchPlan(phase: .evaluator, workingDirectory: dir, timeoutMs: 1000, graceMs: 100,
                                   command: ["python3", "-I", "prepare.py", "--score"] + hostile(marker).reversed())
        evaluator.writable = [dir + "/`touch \(relative)`"]
        let logs = dir + "/logs 'q' $(touch \(relative)) `touch \(relative)`"
        let script = try SlurmJobScript.text(
            launcher: launcher, directory: dir,
            experiment: .init(plan: experiment, stdout: logs + "-experiment.log", stderr: logs + "-experiment.log"),
            evaluator: .init(plan: evaluator, stdout: logs + "-evaluator.out", stderr: logs + "-evaluator.err"),
            outputs: [outputs])
        let path = dir + "/job.sh"
        try Data(script.utf8).write(to: URL(fileURLWithPath: path))
        for shell in ["/bin/sh", "/bin/bash", "/bin/dash"] where access(shell, X_OK) == 0 {
            unlink(record)
            let ran = try runChild([shell, path], cwd: dir, deadline: 20)
            XCTAssertEqual(ran.status, 0, "\(shell): \(ran.text)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "\(shell) ran an injected command")
            let calls = String(decoding: FileManager.default.contents(atPath: record) ?? Data(), as: UTF8.self)
                .components(separatedBy: "\u{1}\0").filter { !$0.isEmpty }
            XCTAssertEqual(calls.count, 2, "\(shell): the experiment, then the evaluator")
            let expected = [experiment, evaluator].map { plan in ["--report-fd", "3"] + plan.arguments }
            for (call, want) in zip(calls, expected) {
                var got = call.components(separatedBy: "\0")
                XCTAssertEqual(got.removeLast(), "", "NUL-terminated")
                XCTAssertEqual(got, want, shell)
            }
            XCTAssertEqual(try String(contentsOfFile: dir + "/experiment.status", encoding: .utf8), "0\n")
            XCTAssertEqual(try String(contentsOfFile: dir + "/evaluator.status", encoding: .utf8), "0\n")
        }
    }

    func testALinkLeftInTheOutputsKeepsTheEvaluatorFromRunning() throws {
        let record = dir + "/argv"
        let launcher = dir + "/launcher"
        try Data("#!/bin/sh\necho ran >>'\(record)'\n".utf8).write(to: URL(fileURLWithPath: launcher))
        chmod(launcher, 0o755)
        let outputs = dir + "/outputs"
        try FileManager.default.createDirectory(atPath: outputs + "/deep", withIntermediateDirectories: true)
        symlink("../../holdout/labels.txt", outputs + "/deep/pred.txt")
        let plan = LaunchPlan(phase: .experiment, workingDirectory: dir, timeoutMs: 1000, graceMs: 100, command: ["true"])
        let script = try SlurmJobScript.text(launcher: launcher, directory: dir,
                                             experiment: .init(plan: plan, stdout: dir + "/e.log", stderr: dir + "/e.log"),
                                             evaluator: .init(plan: plan, stdout: dir + "/v.out", stderr: dir + "/v.err"),
                                             outputs: [outputs])
        try Data(script.utf8).write(to: URL(fileURLWithPath: dir + "/job.sh"))
        XCTAssertEqual(try runChild(["/bin/sh", dir + "/job.sh"], deadline: 20).status, 0)
        XCTAssertEqual(try String(contentsOfFile: record, encoding: .utf8), "ran\n", "the experiment only")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/evaluator.skipped"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/evaluator.status"))

        // Outputs find cannot list (an experiment's chmod 0300, which stops a user other than root;
        // here a directory that is not there): the check failed open, its errors thrown away, and the
        // evaluator followed the link. It fails closed now.
        try FileManager.default.removeItem(atPath: dir + "/evaluator.skipped")
        try Data().write(to: URL(fileURLWithPath: record))
        let unlistable = try SlurmJobScript.text(launcher: launcher, directory: dir,
                                                 experiment: .init(plan: plan, stdout: dir + "/e.log", stderr: dir + "/e.log"),
                                                 evaluator: .init(plan: plan, stdout: dir + "/v.out", stderr: dir + "/v.err"),
                                                 outputs: [dir + "/not-listable"])
        try Data(unlistable.utf8).write(to: URL(fileURLWithPath: dir + "/job.sh"))
        XCTAssertEqual(try runChild(["/bin/sh", dir + "/job.sh"], deadline: 20).status, 0)
        XCTAssertEqual(try String(contentsOfFile: record, encoding: .utf8), "ran\n", "the experiment only")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/evaluator.skipped"))
    }

    /// A signal to the batch shell alone (`scancel --batch`, a `--signal=B:` option) reaches the
    /// launcher as a stop, and the shell stays until the launcher is gone: the shell used to die
    /// of it, leaving the launcher running on, where Slurm's end of the job (proctrack/linuxproc:
    /// processes found through their parents) no longer finds it. No status is written for the
    /// launch it stopped, and the evaluator does not run.
    func testASignalToTheBatchShellStopsTheLauncherAndLeavesNothingRunning() throws {
        let record = dir + "/launcher.log"
        let launcher = dir + "/launcher"
        // A stand-in launcher: it notes each start and the TERM it gets; otherwise it runs 60 s.
        try Data("""
            #!/bin/sh
            echo "started $$" >>'\(record)'
            trap 'kill $!; echo TERM >>"\(record)"; exit 143' TERM
            sleep 60 & wait

            """.utf8).write(to: URL(fileURLWithPath: launcher))
        chmod(launcher, 0o755)
        let plan = LaunchPlan(phase: .experiment, workingDirectory: dir, timeoutMs: 1000, graceMs: 100, command: ["true"])
        let script = try SlurmJobScript.text(launcher: launcher, directory: dir,
                                             experiment: .init(plan: plan, stdout: dir + "/e.log", stderr: dir + "/e.log"),
                                             evaluator: .init(plan: plan, stdout: dir + "/v.out", stderr: dir + "/v.err"),
                                             outputs: [])
        try Data(script.utf8).write(to: URL(fileURLWithPath: dir + "/job.sh"))
        for shell in ["/bin/sh", "/bin/bash", "/bin/dash"] where access(shell, X_OK) == 0 {
            unlink(record)
            let output = try CapturedOutput()
            let job = try startProcess([shell, dir + "/job.sh"], cwd: dir, output: output)
            defer { if job.isRunning { kill(job.processIdentifier, SIGKILL) } }
            func log() -> String { (try? String(contentsOfFile: record, encoding: .utf8)) ?? "" }
            XCTAssertTrue(waitUntil(timeout: 10) { log().hasPrefix("started") }, shell)
            let pid = try XCTUnwrap(Int32(log().split(separator: "\n")[0].dropFirst("started ".count)), shell)
            Thread.sleep(forTimeInterval: 0.2)
            kill(job.processIdentifier, SIGTERM)
            XCTAssertTrue(waitUntil(timeout: 10) { !job.isRunning }, "\(shell): the shell did not end")
            job.waitUntilExit()
            XCTAssertEqual(exitStatus(job), 1, "\(shell): \(output.stdout) \(output.stderr)")
            XCTAssertTrue(output.stderr.contains("SIGTERM to its batch shell stopped the measurement"), shell + output.stderr)
            XCTAssertEqual(log().split(separator: "\n").dropFirst(), ["TERM"], "\(shell): the launcher was stopped, once, and nothing ran after it")
            XCTAssertTrue(waitUntil(timeout: 5) { kill(pid, 0) != 0 }, "\(shell): the launcher outlived its shell")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/experiment.status"), shell)
        }
    }

    /// Job ids proctor passes on to scontrol and scancel are ASCII digits: a `squeue` line starting
    /// `--user=root` made `scancel --full --user=root`. A `%` in the workspace's path is not Slurm's.
    func testJobIdsAreDigitsAndThePathsPercentSignsStayLiteral() {
        for good in ["7", "123456789012345678"] { XCTAssertTrue(SlurmCLI.isJobID(good), good) }
        for bad in ["", "--user=root", "12 34", "-5", "²", "١٢٣", "1234567890123456789", "7;x"] {
            XCTAssertFalse(SlurmCLI.isJobID(bad), bad)
        }
        XCTAssertEqual(SlurmExecutor.outputPattern("/w/a%j b%%/.proctor/logs/r/3-42-slurm-%j.log"),
                       "/w/a%%j b%%%%/.proctor/logs/r/3-42-slurm-%j.log")
    }

    func testANulByteIsRefusedNotTruncated() {
        let plan = LaunchPlan(phase: .experiment, workingDirectory: "/w", timeoutMs: 1, graceMs: 1, command: ["a\0b"])
        XCTAssertThrowsError(try SlurmJobScript.text(launcher: "/l", directory: "/d",
                                                     experiment: .init(plan: plan, stdout: "/o", stderr: "/o"),
                                                     evaluator: .init(plan: plan, stdout: "/o", stderr: "/e"), outputs: []))
    }

    func testBudgetsMapToSbatchOptions() throws {
        var config = WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml")
        config.experiment.timeoutMs = 300_000
        config.evaluator.timeoutMs = 60_000
        config.executor.timeMarginMs = 90_500
        config.experiment.memoryBytes = 6 << 30
        config.evaluator.memoryBytes = 2 << 30
        config.experiment.gpus = .count(2)
        XCTAssertEqual(SlurmExecutor.timeLimit(config), "7:31")
        XCTAssertEqual(SlurmExecutor.memoryMiB(config), 6 * 1024 + 512)
        XCTAssertEqual(SlurmExecutor.gpus(config), 2)
        config.experiment.gpus = .none
        config.evaluator.memoryBytes = nil
        XCTAssertNil(SlurmExecutor.gpus(config))
        XCTAssertNil(SlurmExecutor.memoryMiB(config))
    }

    func testJobStatesSayWhoEndedTheJob() {
        for (name, bySlurm, time) in [("COMPLETED", false, false), ("TIMEOUT", true, true), ("NODE_FAIL", true, false),
                                      ("PREEMPTED", true, false), ("CANCELLED", true, false), ("DEADLINE", true, true)] {
            let state = SlurmJobState(name: name, reason: "None", node: nil)
            XCTAssertTrue(state.ended, name)
            XCTAssertEqual(state.endedBySlurm, bySlurm, name)
            XCTAssertEqual(state.isTimeLimit, time, name)
        }
        for name in ["PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED"] {
            XCTAssertFalse(SlurmJobState(name: name, reason: "None", node: nil).ended, name)
        }
        XCTAssertEqual(SlurmJobState(name: "NODE_FAIL", reason: "NodeDown", node: nil).description, "NODE_FAIL (NodeDown)")
    }

    func testTheWorkspaceIDIsStableAndShort() {
        XCTAssertEqual(SlurmExecutor.workspaceID("/shared/ws"), SlurmExecutor.workspaceID("/shared/ws"))
        XCTAssertNotEqual(SlurmExecutor.workspaceID("/shared/ws"), SlurmExecutor.workspaceID("/shared/ws2"))
        XCTAssertTrue(SlurmExecutor.workspaceID("/a").count <= 12)
        XCTAssertTrue(SlurmExecutor.workspaceID("/a").allSatisfy(\.isHexDigit))
    }
}
