@testable import ProctorConfig
import XCTest

/// Issue 14: `[executor]` as read from proctor.toml.
final class ExecutorConfigTests: XCTestCase {
    func parse(_ executor: String) throws -> WorkspaceConfig {
        let text = ["[experiment]", #"command = ["python3", "train.py"]"#, "",
                    "[evaluator]", #"command = ["python3", "prepare.py"]"#, "", "[executor]", executor].joined(separator: "\n")
        return try WorkspaceConfig.parse(text, root: "/ws", file: "/ws/proctor.toml")
    }

    func error(_ executor: String) -> ConfigError? {
        do { _ = try parse(executor); return nil } catch { return error as? ConfigError }
    }

    func testLocalByDefaultAndSlurmWithItsSettings() throws {
        let plain = try WorkspaceConfig.parse("[experiment]\ncommand = [\"x\"]\n[evaluator]\ncommand = [\"y\"]\n", root: "/ws", file: "/ws/proctor.toml")
        XCTAssertEqual(plain.executor, ExecutorSettings())
        XCTAssertEqual(plain.executor.kind, .local)
        let slurm = try parse("""
            kind = "slurm"
            partition = "gpu"
            account = "lab-42"
            qos = "normal"
            cpus_per_task = 8
            time_margin = "5m"
            extra_args = ["--constraint=a100", "--exclusive"]
            """)
        XCTAssertEqual(slurm.executor.kind, .slurm)
        XCTAssertEqual(slurm.executor.partition, "gpu")
        XCTAssertEqual(slurm.executor.account, "lab-42")
        XCTAssertEqual(slurm.executor.qos, "normal")
        XCTAssertEqual(slurm.executor.cpusPerTask, 8)
        XCTAssertEqual(slurm.executor.timeMarginMs, 300_000)
        XCTAssertEqual(slurm.executor.extraArgs, ["--constraint=a100", "--exclusive"])
    }

    func testBadValuesAreLocatedWithFileLineAndKey() {
        let cases: [(String, String, Int)] = [
            ("kind = \"pbs\"", "executor.kind", 8),
            ("kind = 1", "executor.kind", 8),
            ("partition = \"--wrap=rm -rf /\"", "executor.partition", 8),
            ("partition = \"\"", "executor.partition", 8),
            ("account = \"a b\"", "executor.account", 8),
            ("qos = \"x;y\"", "executor.qos", 8),
            ("cpus_per_task = 0", "executor.cpus_per_task", 8),
            ("time_margin = \"soon\"", "executor.time_margin", 8),
            ("extra_args = [\"-x\"]", "executor.extra_args", 8),
            ("extra_args = [\"--time=99\"]", "executor.extra_args", 8),
            ("extra_args = [\"--job-name=other\"]", "executor.extra_args", 8),
            ("extra_args = [\"--dependency\"]", "executor.extra_args", 8),
            // Later options win: these would undo --no-requeue and --export=NONE; sbatch takes abbreviations.
            ("extra_args = [\"--requeue\"]", "executor.extra_args", 8),
            ("extra_args = [\"--export=ALL\"]", "executor.extra_args", 8),
            ("extra_args = [\"--expor=ALL\"]", "executor.extra_args", 8),
            ("extra_args = [\"--get-user-env\"]", "executor.extra_args", 8),
            ("extra_args = [\"--erro=/tmp/x\"]", "executor.extra_args", 8),
            ("extra_args = [\"--cpus-per-tas=9\"]", "executor.extra_args", 8),
            ("nodes = 2", "executor.nodes", 8),
            // `--` alone ends sbatch's options (proctor's own would become the script and its arguments);
            // these change what one measurement is.
            ("extra_args = [\"--\"]", "executor.extra_args", 8),
            ("extra_args = [\"--=x\"]", "executor.extra_args", 8),
            ("extra_args = [\"--array=0-9\"]", "executor.extra_args", 8),
            ("extra_args = [\"--uid=0\"]", "executor.extra_args", 8),
            ("extra_args = [\"--wait\"]", "executor.extra_args", 8),
            ("extra_args = [\"--bbf=/x\"]", "executor.extra_args", 8),
            // A signal before the time limit: to the batch shell (B:) a stop, to the launcher SIGUSR1 a freeze.
            ("extra_args = [\"--signal=B:USR1@60\"]", "executor.extra_args", 8),
            ("extra_args = [\"--sig=TERM@30\"]", "executor.extra_args", 8),
            // An option's value as a second word: `--mail-user` took proctor's `--job-name=...` for its value.
            ("extra_args = [\"--mail-user\"]", "executor.extra_args", 8),
            ("extra_args = [\"--constraint\", \"a100\"]", "executor.extra_args", 8),
        ]
        for (text, key, line) in cases {
            let e = error(text)
            XCTAssertEqual(e?.key, key, text)
            XCTAssertEqual(e?.line, line, text)
            XCTAssertEqual(e?.file, "/ws/proctor.toml", text)
        }
    }
}
