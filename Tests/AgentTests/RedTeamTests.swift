import Foundation
import ProctorTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Red-team attacks through the product paths (`proctor run`, `proctor session`, `proctor exec`),
/// each from inside a real sandboxed child and judged from outside: ledger rows, audit lines,
/// file bytes, host files, the supervisor's own exit.
final class RedTeamTests: XCTestCase {
    /// An evaluator that scores the first line of the predictions against the first line of the
    /// hidden holdout, the shape of most real ones (predictions.csv vs labels.csv).
    static let firstLinePrepare = """
        import json
        with open("outputs/pred.txt") as f:
            pred = float(f.readline().strip())
        with open("holdout/target.txt") as f:
            target = float(f.readline().strip())
        print(json.dumps({"score": round(1.0 - abs(pred - target), 6)}))

        """

    static func commandAgent(_ script: String) -> String {
        """
        [agent]
        kind    = "command"
        command = ["sh", "-c", \(tomlString(script)), "agent", "{prompt_file}"]
        timeout = "20s"
        """
    }

    /// The experiment leaves `outputs/pred.txt -> ../holdout/target.txt`: the experiment cannot
    /// read the holdout, but the evaluator sees it and would follow the link, scoring the labels
    /// against themselves (a perfect 1.0). The iteration must be rejected, audited, never kept.
    func testOutputsLinkToTheHoldoutIsNotFollowedByTheEvaluator() throws {
        let cheat = LoopWorkspace.train("0.2", extra: "")
            .replacingOccurrences(
                of: "with open(os.path.join(os.environ[\"PROCTOR_OUTPUTS\"], \"pred.txt\"), \"w\") as f:\n    f.write(repr(X) + \"\\n\")",
                with: "os.symlink(\"../holdout/target.txt\", os.path.join(os.environ[\"PROCTOR_OUTPUTS\"], \"pred.txt\"))")
        XCTAssertTrue(cheat.contains("os.symlink"))
        let script = "cat > train.py <<'PROCTOR_EOF'\n\(cheat)PROCTOR_EOF\necho 'SUMMARY: link the predictions'\n"
        let ws = try LoopWorkspace(agent: Self.commandAgent(script), prepare: Self.firstLinePrepare)
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        let rows = ws.rows()
        XCTAssertEqual(rows.count, 2, ws.describe(outcome))
        XCTAssertEqual(rows.last?["status"], "rejected", ws.describe(outcome))
        XCTAssertNotEqual(rows.last?["score"], "1.000000", "the evaluator scored the holdout against itself")
        XCTAssertFalse(ws.statuses().dropFirst().contains("keep"))
        let tamper = ws.audit(kind: "tamper", decision: "rejected", iteration: 1)
        XCTAssertTrue(tamper.contains { ($0["path"] as? String) == ws.path("outputs/pred.txt") }, "\(tamper)")
        // `proctor exec --phase evaluator` refuses the same outputs (125) instead of scoring them.
        let exec = try ws.proctor(["exec", "--workspace", ws.root, "--", "sh", "-c",
                                   "ln -sf ../holdout/target.txt outputs/pred.txt"])
        XCTAssertEqual(exec.status, 0, ws.describe(exec))
        let eval = try ws.proctor(["exec", "--workspace", ws.root, "--phase", "evaluator", "--", "python3", "prepare.py"])
        XCTAssertEqual(eval.status, 125, ws.describe(eval))
        XCTAssertFalse(eval.stdout.contains("1.0"), eval.stdout)
    }

    /// The command agent replaces its output file (in its own writable home) with a link to a
    /// host file only the supervisor can read. Proctor must not read the link: the host file's
    /// last line would become the summary, then the ledger's description and the next prompt.
    func testAgentOutputLinkDoesNotLeakAHostFileIntoTheLedger() throws {
        let secretDir = try makeTempDir()
        defer { _ = try? runChild(["/bin/rm", "-rf", secretDir], environment: [:], deadline: 30) }
        let secret = secretDir + "/credentials"
        try Data("[default]\naws_secret_access_key = SECRET-7f3e21\n".utf8).write(to: URL(fileURLWithPath: secret))
        chmod(secret, 0o600)
        let script = """
            sed 's/^X = .*/X = 0.3/' train.py > "$HOME/t" && cat "$HOME/t" > train.py
            echo "SUMMARY: honest change"
            rm -f "$HOME/.proctor-agent-output"
            ln -s \(secret) "$HOME/.proctor-agent-output"
            """
        let ws = try LoopWorkspace(agent: Self.commandAgent(script))
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.filesContaining("SECRET-7f3e21", under: ws.root + "/.proctor"), [], ws.describe(outcome))
        XCTAssertFalse(ws.rows().contains { ($0["description"] ?? "").contains("SECRET") }, ws.describe(outcome))
        XCTAssertFalse(outcome.stdout.contains("SECRET-7f3e21"), outcome.stdout)
    }

    /// A session agent asks for an experiment with, as its reply channel, a stream socket whose
    /// buffer it filled and never reads. Answering must not block: the run ends after
    /// `--iterations 1` while the agent still sleeps, instead of hanging until the agent's timeout.
    func testSessionReplyChannelThatCannotBeWrittenDoesNotHangTheSupervisor() throws {
        let ws = try LoopWorkspace(agent: "[agent]\nkind = \"mutate\"\ntimeout = \"90s\"")
        let script = SessionTests.setX("0.6") + """
            cat > "$HOME/jam.py" <<'PROCTOR_EOF'
            import os, socket, time
            channel = socket.socket(fileno=int(os.environ["PROCTOR_SESSION_FD"]))
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            a.setblocking(False)
            try:
                while True:
                    a.send(b"x" * 65536)
            except BlockingIOError:
                pass
            a.setblocking(True)
            socket.send_fds(channel, [b"EXPERIMENT\tjammed reply"], [a.fileno()])
            a.close()
            print("jam sent", flush=True)
            time.sleep(80)
            PROCTOR_EOF
            python3 "$HOME/jam.py"
            """
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c", script],
                                     deadline: 150)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("jam sent"), ws.describe(outcome))
        XCTAssertLessThan(outcome.seconds, 45, "the supervisor blocked on the agent's reply channel: \(ws.describe(outcome))")
        XCTAssertEqual(ws.rows().count, 2, ws.describe(outcome))
    }

    /// The experiment nests 110 directories under its outputs: under the launcher's depth cap
    /// (128), over libgit2's (100). Git's status walk after the experiment failed on it and the
    /// whole run stopped with an error (and again on every --resume). The run must go on.
    func testDeepTreeInTheOutputsDoesNotStopTheRun() throws {
        let deep = "d = os.environ[\"PROCTOR_OUTPUTS\"]\nfor _ in range(110):\n    d = os.path.join(d, \"d\")\n    os.mkdir(d)"
        let script = SessionTests.setX("0.6", extra: deep) + "echo 'SUMMARY: deep outputs'\n"
        let ws = try LoopWorkspace(agent: Self.commandAgent(script))
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep", "discard"], ws.describe(outcome))
        XCTAssertEqual(ws.rows().count, 3, ws.describe(outcome))
    }

    func makeTempDir() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/proctor-redteam-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        return String(cString: made)
    }
}
