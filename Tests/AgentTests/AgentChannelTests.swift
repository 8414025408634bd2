import Foundation
import ProctorTestSupport
import XCTest

@testable import ProctorAgents

#if canImport(Glibc)
    import Glibc
#endif

/// Red-team round on the agent channels (agents3): what reaches an agent, and what an agent's
/// answer or session request can change. Every test runs `proctor run`/`proctor session` as a
/// child on a real workspace and judges from outside (the model's requests, the files, the ledger).
final class AgentChannelTests: XCTestCase {
    // MARK: - A broad editable glob

    /// `editable = ["**"]` ("everything but what proctor protects") also matches the hidden labels,
    /// the locked evaluator and proctor.toml. The agent-phase sandbox never binds those writable, but
    /// the http agent's prompt listed them (the labels went to the remote model) and the diff
    /// validator let an answer rewrite the hidden labels, which are not pinned: a perfect score.
    func testBroadEditableGlobNeitherShowsNorOpensTheHiddenLabelsOrTheConfig() throws {
        let wire = HTTPAgentProtocol.openai
        let forgeLabels = "SUMMARY: relabel\nFILE: holdout/target.txt\n```\n0.2\n```\n"
        let forgeConfig = "SUMMARY: reconfigure\nFILE: proctor.toml\n```\n[files]\neditable = [\"**\"]\n```\n"
        let server = try ScriptedHTTPServer(
            [HTTPLoopTests.reply(wire, forgeLabels), HTTPLoopTests.reply(wire, forgeConfig),
             HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.6"))], lifetime: 300)
        let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire), editable: "[\"**\"]")
        let labels = ws.read("holdout/target.txt")
        let config = ws.read("proctor.toml")
        let outcome = try ws.run(iterations: 3, environment: [HTTPLoopTests.keyVariable: HTTPLoopTests.key])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(server.requests.count, 3, ws.describe(outcome))
        for request in server.requests {
            let body = String(decoding: request.body, as: UTF8.self)
            XCTAssertFalse(body.contains(LoopWorkspace.hiddenLabel), "the hidden label was sent to the model")
            XCTAssertTrue(body.contains("FILE: train.py"), "train.py is still the model's to edit")
        }
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "rejected", "keep"], ws.describe(outcome))
        XCTAssertEqual(ws.read("holdout/target.txt"), labels, "an answer rewrote the hidden labels")
        XCTAssertEqual(ws.read("proctor.toml"), config, "an answer rewrote the config")
        XCTAssertEqual(ws.rows().last.flatMap { Double($0["score"] ?? "") }, 0.9, ws.describe(outcome))
        // `proctor check` validates like the loop: a changed hidden label is a violation there too.
        try Data("0.2\n".utf8).write(to: URL(fileURLWithPath: ws.path("holdout/target.txt")))
        let check = try ws.proctor(["check", "--workspace", ws.root], deadline: 60)
        XCTAssertEqual(check.status, 1, check.stdout + check.stderr)
        XCTAssertTrue(check.stdout.contains("holdout/target.txt: changed a file that is not editable"), check.stdout)
    }

    // MARK: - The evaluator's words

    /// The locked evaluator of `LoopWorkspace`, made to quote the held-out label in its error when the
    /// prediction is above 0.65 and `PROCTOR_SEED` is one of `seeds` (all seeds when empty).
    static func leakyPrepare(seeds: [Int] = []) -> String {
        let when = seeds.isEmpty ? "" : " and os.environ.get('PROCTOR_SEED') in [\(seeds.map { "'\($0)'" }.joined(separator: ", "))]"
        return LoopWorkspace.prepare.replacingOccurrences(
            of: "print(json.dumps(",
            with: "import sys\nif pred > 0.65\(when):\n    sys.exit('bad prediction; expected ' + open('holdout/target.txt').read().split()[1])\nprint(json.dumps(")
    }

    /// The evaluator's error stays in the ledger "which no sandbox can read"; but the ledger's row
    /// (`description [reason]`) was the history in the next prompt: the held-out label went to the
    /// http agent's model (and to a command agent's PROMPT.md) one iteration later.
    func testEvaluatorErrorsDoNotReachTheNextPrompt() throws {
        let wire = HTTPAgentProtocol.openai
        let server = try ScriptedHTTPServer(
            [HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.9")), HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.6"))],
            lifetime: 300)
        let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire), prepare: Self.leakyPrepare())
        let outcome = try ws.run(iterations: 2, environment: [HTTPLoopTests.keyVariable: HTTPLoopTests.key])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        XCTAssertEqual(server.requests.count, 2)
        let second = String(decoding: server.requests.last?.body ?? Data(), as: UTF8.self)
        XCTAssertTrue(second.contains("iteration 1: crash"), "the history still names the crash: \(second.prefix(2000))")
        XCTAssertTrue(second.contains("could not score"), String(second.prefix(2000)))
        XCTAssertFalse(second.contains(LoopWorkspace.hiddenLabel), "the evaluator's error reached the model")
        // The operator keeps the evaluator's words.
        XCTAssertTrue(ws.read(".proctor/results.tsv")?.contains(LoopWorkspace.hiddenLabel) == true)
    }

    /// The session reply hid a failed evaluator's words only when the reason began with
    /// "evaluator"; one that failed on a confirmation seed is reported as "confirmation: evaluator:
    /// ...", and an agent that scores on the first seed and breaks the others read the label.
    func testEvaluatorErrorsOnAConfirmationSeedDoNotReachTheSessionAgent() throws {
        let ws = try LoopWorkspace(agent: "[gates]\nconfirm_seeds = [17]\nfresh_seeds = false  # the prepare fails on seed 17\n\n" + SessionTests.noAgent,
                                   prepare: Self.leakyPrepare(seeds: [17]))
        // Two experiments: the session stops after the second, which may cut its reply short.
        let script = SessionTests.setX("0.9") + "echo \"agent: $(proctor experiment 'x=0.9' 2>&1)\"\n"
            + SessionTests.setX("0.3") + "proctor experiment 'x=0.3'\nsleep 1000\n"
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "2", "--", "sh", "-c", script],
                                     deadline: 180)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        let reply = outcome.stdout.split(separator: "\n").first { $0.hasPrefix("agent: ") }.map(String.init) ?? ""
        XCTAssertTrue(reply.hasPrefix("agent: iteration 1: crash"), outcome.stdout)
        XCTAssertTrue(reply.contains("could not score"), reply)
        XCTAssertFalse(reply.contains(LoopWorkspace.hiddenLabel), "the agent read the holdout: \(reply)")
    }

    /// The evaluator's words on a confirmation seed (a reason that is not "evaluator: ..."), and
    /// after `--resume`, where the history is read back from runs.jsonl instead of kept in memory:
    /// the next prompts say the evaluator could not score, never what it wrote. A run recorded before
    /// `agentReason` existed (the field stripped here) is resumed with the same guarantee.
    func testEvaluatorWordsOnAConfirmationSeedDoNotReachThePromptAcrossResume() throws {
        let wire = HTTPAgentProtocol.openai
        let server = try ScriptedHTTPServer(
            [HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.9")), HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.6")),
             HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.3"))],
            lifetime: 300)
        let ws = try LoopWorkspace(agent: "[gates]\nconfirm_seeds = [17]\nfresh_seeds = false  # the prepare fails on seed 17\n\n" + HTTPLoopTests.agentBlock(server, wire),
                                   prepare: Self.leakyPrepare(seeds: [17]))
        let key = [HTTPLoopTests.keyVariable: HTTPLoopTests.key]
        let first = try ws.run(iterations: 1, environment: key)
        XCTAssertEqual(first.status, 0, ws.describe(first))
        XCTAssertEqual(ws.statuses(), ["keep", "crash"], ws.describe(first))
        let record = try XCTUnwrap(ws.records().last)
        XCTAssertTrue((record["reason"] as? String)?.hasPrefix("confirmation: evaluator: ") == true, "\(record)")
        XCTAssertTrue((record["reason"] as? String)?.contains(LoopWorkspace.hiddenLabel) == true, "the operator keeps the words")
        XCTAssertEqual(record["agentReason"] as? String,
                       "confirmation: the evaluator could not score the outputs (its messages are in the ledger, not shown to agents)")
        let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "1"], environment: key)
        XCTAssertEqual(resumed.status, 0, ws.describe(resumed))
        XCTAssertEqual(server.requests.count, 2, ws.describe(resumed))
        // The run recorded before agentReason existed: the same records without it.
        let runs = try XCTUnwrap(ws.read(".proctor/runs.jsonl"))
        let legacy = runs.split(separator: "\n").map { line -> String in
            var object = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:]
            object["agentReason"] = nil
            return String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
        }
        try Data((legacy.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: ws.path(".proctor/runs.jsonl")))
        let again = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "1"], environment: key)
        XCTAssertEqual(again.status, 0, ws.describe(again))
        XCTAssertEqual(server.requests.count, 3, ws.describe(again))
        for (index, request) in server.requests.enumerated().dropFirst() {
            let body = String(decoding: request.body, as: UTF8.self)
            XCTAssertTrue(body.contains("iteration 1: crash"), "prompt \(index + 1) names the crash: \(body.prefix(3000))")
            XCTAssertTrue(body.contains("could not score the outputs"), "prompt \(index + 1): \(body.prefix(3000))")
            XCTAssertFalse(body.contains(LoopWorkspace.hiddenLabel), "prompt \(index + 1) carried the evaluator's words")
            XCTAssertFalse(body.contains("bad prediction"), "prompt \(index + 1) carried the evaluator's words")
        }
        XCTAssertTrue(String(decoding: server.requests[1].body, as: UTF8.self).contains("[confirmation: the evaluator could not score"))
        XCTAssertTrue(ws.read(".proctor/results.tsv")?.contains(LoopWorkspace.hiddenLabel) == true)
    }

    // MARK: - The freeze

    /// A session agent is stopped (SIGSTOP) while its experiment is validated, run and committed.
    /// But a stopped process is resumed by any SIGCONT: a POSIX timer of its own did it (those are
    /// refused in its sandbox now: SessionTests), and the check stays for any other way. Here the
    /// test sends the SIGCONT, once the experiment runs; the agent swaps `X = 0.7` into train.py
    /// while the validated code (which re-reads itself) runs, and puts the validated bytes back
    /// before the experiment ends, so the post-experiment fingerprint matched: 1.0 was kept under a
    /// commit whose code scores 0.6. Caught, and the agent killed before the revert.
    func testASessionAgentResumedWhileFrozenIsCaughtAndKilled() throws {
        try resumeTheFrozenAgent(orphan: false)
    }

    /// The same from a process whose parent is the sandbox's init (double fork), which exits once it
    /// has put the validated bytes back: init reaps it, and no task that ran is left to look at.
    func testAResumedProcessThatExitsAfterwardsIsCaught() throws {
        try resumeTheFrozenAgent(orphan: true)
    }

    /// The same from a vfork child that stopped itself before its exec: its parent waits in the
    /// vfork (`V`) and counts as held, so the freeze is confirmed with the two of them still; the
    /// child's own timer wakes it, it execs the program that swaps the code, and its parent runs on.
    /// The child is one of the tasks the freeze checks: it moved.
    func testAWokenVforkChildIsCaught() throws {
        try resumeTheFrozenAgent(orphan: false, vfork: true)
    }

    func resumeTheFrozenAgent(orphan: Bool, vfork: Bool = false, line: UInt = #line) throws {
        let validated = """
            import os
            import time

            X = 0.3  # mutate: float 0.0..1.0 linear
            # WAKE-ME-7f3a
            out = os.environ["PROCTOR_OUTPUTS"]
            open(os.path.join(out, "ready"), "w").close()
            deadline = time.time() + 8
            while time.time() < deadline:
                for line in open(__file__):
                    if line.startswith("X = ") and float(line.split()[2]) != X:
                        X = float(line.split()[2])
                        deadline = 0
                time.sleep(0.02)
            with open(os.path.join(out, "pred.txt"), "w") as f:
                f.write(repr(X) + "\\n")
            open(os.path.join(out, "done"), "w").close()
            time.sleep(1)

            """
        let agent = """
            import ctypes, os, signal, subprocess, time
            validated = \(tomlString(validated))
            open("train.py", "w").write(validated)
            libc = ctypes.CDLL(None, use_errno=True)
            class sigevent(ctypes.Structure):
                _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int), ("pad", ctypes.c_byte * 48)]
            class timespec(ctypes.Structure):
                _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
            class itimerspec(ctypes.Structure):
                _fields_ = [("interval", timespec), ("value", timespec)]
            swap = \(tomlString(Self.swap))
            if \(vfork ? "True" : "False"):
                home = os.environ["HOME"]
                open(home + "/swap.py", "w").write(swap)
                open(home + "/vf.c", "w").write(\(tomlString(Self.vforkChild)))
                subprocess.run(["gcc", "-o", home + "/vf", home + "/vf.c"], check=True)
                subprocess.Popen([home + "/vf", home + "/swap.py", validated])
                time.sleep(0.3)
            client = subprocess.Popen(["proctor", "experiment", "x=0.3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if \(vfork ? "True" : "False"):
                print("agent: " + client.communicate()[0].decode().strip(), flush=True)
                time.sleep(1000)
            if \(orphan ? "True" : "False"):
                if os.fork() != 0:
                    print("agent: " + client.communicate()[0].decode().strip(), flush=True)
                    time.sleep(1000)
                if os.fork() != 0:
                    os._exit(0)
            exec(swap)
            if \(orphan ? "True" : "False"):
                os._exit(0)
            print("agent: " + client.communicate()[0].decode().strip(), flush=True)
            time.sleep(1000)
            """
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        // The wake: SIGCONT to every process of the agent's once the experiment runs (the timer's part).
        let ready = ws.path("outputs/ready")
        let waker = Thread {
            guard waitUntil(timeout: 120, { FileManager.default.fileExists(atPath: ready) }) else { return }
            for process in processes(containing: "WAKE-ME-7f3a") {
                if let pid = pid_t(process.prefix { $0 != ":" }) { kill(pid, SIGCONT) }
            }
        }
        waker.start()
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "python3", "-c", agent],
                                     deadline: 180)
        // The agent is killed once caught: the session ends as an agent killed by a signal does.
        XCTAssertEqual(outcome.status, 1, ws.describe(outcome), line: line)
        XCTAssertTrue(outcome.stderr.contains("the session agent exited (killed by signal 9)"), outcome.stderr, line: line)
        let row = ws.rows().last ?? [:]
        // Without the check: `keep 1.000000` under a commit whose train.py says X = 0.3 (0.6).
        XCTAssertEqual(row["commit"], "", "a score the committed code does not produce was kept: \(ws.describe(outcome))", line: line)
        XCTAssertEqual(row["status"], "rejected", ws.describe(outcome), line: line)
        XCTAssertTrue(row["description"]?.contains("while it was frozen") == true, ws.describe(outcome), line: line)
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.2"), "the rejected change was not reverted", line: line)
    }

    /// Run while the experiment runs (`validated` is the validated train.py): X = 0.7 in place,
    /// then the validated bytes back before it ends, so the fingerprint after it matches.
    static let swap = """
        import os, sys, time
        if "validated" not in globals():
            validated = sys.argv[1]
        while not os.path.exists("outputs/ready"):
            time.sleep(0.005)
        open("train.py", "r+").write(validated.replace("X = 0.3", "X = 0.7"))
        while not os.path.exists("outputs/done"):
            time.sleep(0.005)
        f = open("train.py", "r+"); f.write(validated); f.truncate(); f.close()

        """

    /// `vf SCRIPT ARG`: a vfork child that stops itself before its exec and, woken (by the test's
    /// SIGCONT, where its own timer did it), runs python3 SCRIPT ARG.
    static let vforkChild = """
        #include <signal.h>
        #include <time.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            (void)argc;
            if (vfork() == 0) {
                raise(SIGSTOP);
                execl("/usr/bin/python3", "python3", argv[1], argv[2], (char *)0);
                _exit(1);
            }
            return 0;
        }

        """

    // MARK: - The operator's terminal

    /// A name with escape sequences (a session agent creates it in an editable directory while the
    /// operator runs `proctor check`): the violation line printed it raw, so `ESC ] 0 ;` retitled
    /// and `ESC [ 2 J` cleared the operator's terminal.
    func testCheckDoesNotSendANamesEscapeSequencesToTheTerminal() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let name = "x\u{1B}]0;PWNED\u{07}\u{1B}[2J\u{9B}31m.py"
        XCTAssertTrue(FileManager.default.createFile(atPath: ws.path(name), contents: Data("print(1)\n".utf8)))
        let outcome = try ws.proctor(["check", "--workspace", ws.root], deadline: 60)
        XCTAssertEqual(outcome.status, 1, outcome.stdout + outcome.stderr)
        XCTAssertTrue(outcome.stdout.contains("violation: x\\x1b]0;PWNED\\x07\\x1b[2J\\u009b31m.py"), outcome.stdout)
        for text in [outcome.stdout, outcome.stderr] {
            XCTAssertFalse(text.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 || $0.value == 0x9B },
                           "a control character reached the terminal: \(text.debugDescription)")
        }
    }

    // MARK: - The API key

    /// An endpoint that echoes the key in its answer (a logging proxy, a compromised server): the
    /// summary is the ledger row and the commit message, a FILE block the committed code and notes.
    func testAnAPIKeyEchoedInTheAnswerIsNeverWritten() throws {
        let wire = HTTPAgentProtocol.anthropic
        let key = HTTPLoopTests.key
        let answer = "SUMMARY: set X with key \(key)\nFILE: train.py\n```python\n"
            + LoopWorkspace.train("0.6", extra: "KEY = '\(key)'").dropLast() + "\n```\nFILE: LOG.md\n```\nkey \(key)\n```\n"
        let server = try ScriptedHTTPServer([HTTPLoopTests.reply(wire, answer)], lifetime: 300)
        let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire))
        let outcome = try ws.run(iterations: 1, environment: [HTTPLoopTests.keyVariable: key])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        XCTAssertEqual(ws.filesContaining(key, under: ws.root), [], "the API key was written: \(ws.describe(outcome))")
        XCTAssertFalse(outcome.stdout.contains(key) || outcome.stderr.contains(key), "the API key was printed")
        XCTAssertFalse(ws.gitSubjects().contains { $0.contains(key) }, "the API key is in a commit message")
        XCTAssertTrue(ws.read("train.py")?.contains("KEY = '[redacted]'") == true, ws.read("train.py") ?? "")
    }

    /// The key echoed with a combining mark, a joiner or a variation selector right after it: the
    /// mark joins the key's last letter into another character, and a match on characters missed
    /// the key; its bytes reached the commit, the ledger and the transcript. Matched on bytes now.
    func testAnAPIKeyEchoedWithAMarkAfterItIsNeverWritten() throws {
        let wire = HTTPAgentProtocol.openai
        let key = HTTPLoopTests.key
        for mark in ["\u{0301}", "\u{200D}", "\u{FE0F}"] {
            let echoed = key + mark
            let answer = "SUMMARY: set X with key \(echoed)\nFILE: train.py\n```python\n"
                + LoopWorkspace.train("0.6", extra: "KEY = '\(echoed)'").dropLast() + "\n```\n"
            let server = try ScriptedHTTPServer([HTTPLoopTests.reply(wire, answer)], lifetime: 300)
            let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire))
            let outcome = try ws.run(iterations: 1, environment: [HTTPLoopTests.keyVariable: key])
            XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
            XCTAssertEqual(ws.filesContaining(key, under: ws.root), [], "the API key was written (mark \(mark.unicodeScalars.first!.value))")
            XCTAssertFalse(Data((outcome.stdout + outcome.stderr).utf8).range(of: Data(key.utf8)) != nil, "the API key was printed")
        }
    }
}
