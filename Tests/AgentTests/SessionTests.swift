import Foundation
import ProctorTestSupport
import XCTest

/// `proctor session -- CMD`: the agent drives the loop with `proctor experiment` from inside the
/// agent sandbox, over the inherited socket. Real child processes; judged from the ledger, the
/// audit, the agent's own output (proctor's stdout) and the files.
final class SessionTests: XCTestCase {
    /// Writes train.py in place (per-file binds refuse a rename over it) with X and optional extra code.
    static func setX(_ x: String, extra: String = "") -> String {
        let text = LoopWorkspace.train(x, extra: extra)
        return "cat > train.py <<'PROCTOR_EOF'\n\(text)PROCTOR_EOF\n"
    }

    func session(_ ws: LoopWorkspace, _ script: String, iterations: Int? = nil, deadline: Double = 180) throws
        -> ChildOutcome
    {
        var args = ["session", "--workspace", ws.root]
        if let iterations { args += ["--iterations", String(iterations)] }
        return try ws.proctor(args + ["--", "sh", "-c", script], deadline: deadline)
    }

    /// A session agent is frozen with SIGSTOP while its experiments run, and SIGCONT resumes a
    /// stopped process whoever sends it: a red team's agent armed a POSIX timer with SIGCONT, ran
    /// through every freeze and raced the revert (which wrote a host file through its link). The
    /// ways to have the kernel signal it later are refused in its sandbox: timer_create and
    /// mq_notify, F_SETSIG, a parent-death SIGCONT (SIGALRM from setitimer resumes nothing).
    func testASessionAgentCannotArmASignalThatWakesItFromTheFreeze() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let probe = """
            python3 - <<'PY'
            import ctypes, errno, fcntl, os, signal, struct
            libc = ctypes.CDLL(None, use_errno=True)
            sev = ctypes.create_string_buffer(64)
            struct.pack_into("Pii", sev, 0, 0, signal.SIGCONT, 0)  # sigev_value, sigev_signo, sigev_notify = SIGEV_SIGNAL
            tid = ctypes.c_void_p()
            r = libc.timer_create(1, sev, ctypes.byref(tid))
            print("timer_create", r, ctypes.get_errno())
            r = libc.syscall(244, 0, sev)  # mq_notify
            print("mq_notify", r, ctypes.get_errno())
            try:
                fcntl.fcntl(0, 10, signal.SIGCONT)
                print("F_SETSIG ok")
            except OSError as e:
                print("F_SETSIG", e.errno)
            r = libc.prctl(1, signal.SIGCONT, 0, 0, 0)
            print("PDEATHSIG", r, ctypes.get_errno())
            r = libc.prctl(1, signal.SIGTERM, 0, 0, 0)
            print("PDEATHSIG-TERM", r)
            PY
            """
        let outcome = try session(ws, probe, iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        for line in ["timer_create -1 1", "F_SETSIG 1", "PDEATHSIG -1 1", "PDEATHSIG-TERM 0"] {
            XCTAssertTrue(outcome.stdout.contains(line), "\(line): \(outcome.stdout)")
        }
        XCTAssertTrue(outcome.stdout.contains("mq_notify -1 1"), outcome.stdout)
        // Not in a command agent's sandbox, which is never frozen.
        let exec = try ws.proctor(["exec", "--workspace", ws.root, "--phase", "agent", "--", "python3", "-c",
                                   "import ctypes, struct, signal; libc = ctypes.CDLL(None, use_errno=True); sev = ctypes.create_string_buffer(64); struct.pack_into('Pii', sev, 0, 0, signal.SIGCONT, 0); tid = ctypes.c_void_p(); print('timer_create', libc.timer_create(1, sev, ctypes.byref(tid)))"])
        XCTAssertTrue(exec.stdout.contains("timer_create 0"), exec.text)
    }

    /// Two `proctor experiment` at the same moment, their replies printed as "A: ..." and "B: ...".
    static let twoAtOnce = """
        ( proctor experiment "first"; echo "rc=$?" ) > /tmp/a 2>&1 &
        ( proctor experiment "second"; echo "rc=$?" ) > /tmp/b 2>&1 &
        wait
        echo "A: $(tr '\\n' ' ' < /tmp/a)"
        echo "B: $(tr '\\n' ' ' < /tmp/b)"
        """

    static func twoAtOnceReplies(_ outcome: ChildOutcome) -> [Substring] {
        outcome.stdout.split(separator: "\n").filter { $0.hasPrefix("A: ") || $0.hasPrefix("B: ") }
    }

    static let noAgent = "[agent]\nkind = \"mutate\"\ntimeout = \"60s\""
    /// A session whose agent's network is the allowlist proxy (its launcher has the proxy's helper).
    static func behindTheProxy(timeout: String) -> String {
        "[agent]\nkind = \"mutate\"\ntimeout = \"\(timeout)\"\nnetwork = \"allowlist\"\nallow_hosts = [\"api.test:443\"]"
    }

    /// Three experiments asked for from inside: each is validated, run, scored and kept or
    /// reverted; the agent reads every result; the session stops after `--iterations 3`.
    /// A session agent reads the user's terminal and may change its settings (`stty -echo -isig`,
    /// as full-screen agents do): they stayed so after proctor exited. Put back when the agent ends.
    /// On a pseudo-terminal the test makes, proctor in its foreground.
    func testTheTerminalsSettingsAreRestoredWhenTheAgentEnds() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let driver = """
            import os, pty, sys
            pid, master = pty.fork()
            if pid == 0:
                os.execvp("sh", ["sh", "-c", sys.argv[1] + " session --workspace " + sys.argv[2] + " -- sh -c 'stty -echo -isig; echo AGENT-CHANGED-IT'; echo PROCTOR-EXIT=$?; stty -a"])
            out = b""
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            os.waitpid(pid, 0)
            sys.stdout.write(out.decode(errors="replace").replace("\\r", ""))
            """
        let outcome = try runChild(["/usr/bin/env", "python3", "-c", driver, proctorBinary, ws.root],
                                   environment: ws.environment(), deadline: 120)
        XCTAssertTrue(outcome.stdout.contains("AGENT-CHANGED-IT"), outcome.text)
        XCTAssertTrue(outcome.stdout.contains("PROCTOR-EXIT=0"), outcome.text)
        let after = outcome.stdout.components(separatedBy: "PROCTOR-EXIT=0").last ?? ""
        let flags = after.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == ";" })
        XCTAssertTrue(flags.contains("isig") && flags.contains("echo"), "after proctor: \(after)")
        XCTAssertFalse(flags.contains("-isig") || flags.contains("-echo"), "after proctor: \(after)")
    }

    func testAgentRunsExperimentsThroughTheSupervisor() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let script = """
            echo "agent home: $HOME"
            for x in 0.3 0.6 0.5; do
            \(Self.setX("$x").replacingOccurrences(of: "<<'PROCTOR_EOF'", with: "<<PROCTOR_EOF"))
            echo "agent: x=$x -> $(proctor experiment "try x=$x" 2>&1; echo " rc=$?")"
            done
            sleep 1000
            """
        let outcome = try session(ws, script, iterations: 3)
        XCTAssertLessThan(outcome.seconds, 60, "proctor waited for the agent instead of stopping it")
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        let rows = ws.rows()
        XCTAssertEqual(rows.map { $0["status"] }, ["keep", "keep", "keep", "discard"], ws.describe(outcome))
        XCTAssertEqual(rows.map { $0["score"] }, ["0.500000", "0.600000", "0.900000", "0.800000"])
        XCTAssertEqual(rows.dropFirst().map { $0["description"] }, ["try x=0.3", "try x=0.6", "try x=0.5"])
        // The agent saw each verdict (its stdout is proctor's).
        XCTAssertTrue(outcome.stdout.contains("agent: x=0.3 -> iteration 1: keep score 0.6"), outcome.stdout)
        XCTAssertTrue(outcome.stdout.contains("agent: x=0.6 -> iteration 2: keep score 0.9"), outcome.stdout)
        // The discarded one was reverted to the best.
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.6"))
        // After the third experiment the still-running agent was stopped and its home removed.
        let home = outcome.stdout.split(separator: "\n").first { $0.hasPrefix("agent home: ") }.map {
            String($0.dropFirst("agent home: ".count))
        }
        XCTAssertTrue(home?.hasPrefix("/var/tmp/proctor-agent-") == true, outcome.stdout)
        XCTAssertFalse(home.map { FileManager.default.fileExists(atPath: $0) } ?? true, "the agent's home outlived the session")
        XCTAssertEqual(ws.filesContaining(LoopWorkspace.hiddenLabel, under: ws.root + "/.proctor"), [])
    }

    /// A session agent with `network = "allowlist"` (the README's Claude Code setup): its launcher
    /// has a second child, the proxy's helper, outside the sandbox, which the freeze does not stop.
    /// The freeze took it for a process of the agent's and waited for it to stop: every experiment
    /// was a `crash` ("could not be frozen"). Frozen and measured now, and the freeze still holds
    /// the agent's own processes (a child it left running stays stopped while it is measured).
    func testASessionAgentBehindTheAllowlistProxyRunsItsExperiments() throws {
        let ws = try LoopWorkspace(agent: Self.behindTheProxy(timeout: "60s"))
        let script = """
            ( while :; do date +%s%N >> "$HOME/ticks"; sleep 0.05; done ) &
            \(Self.setX("0.6"))
            proctor experiment "x=0.6"
            sleep 1000
            """
        let outcome = try session(ws, script, iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        // The agent's ticker was stopped too: a process that ran while frozen rejects the experiment.
        XCTAssertTrue(ws.audit(kind: "tamper", decision: "denied").isEmpty, "\(ws.audit(kind: "tamper", decision: "denied"))")
    }

    /// A shell that runs its commands by vfork (dash, Debian's `sh`) whose child the freeze stopped
    /// between the vfork and the exec: the shell sleeps in the vfork (`D`) until the child goes on,
    /// never `T`. The freeze waited for it to stop and gave up: a `crash` row for an agent that had
    /// done nothing wrong (seen in CI, where a 20 Hz ticker hit the window). Made certain here by a child
    /// that stops itself before its exec; it is held, the experiment runs, nothing counts as having
    /// run while frozen.
    func testAShellWaitingOnAStoppedVforkChildCountsAsFrozen() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let script = """
            cat > "$HOME/vf.c" <<'C_EOF'
            #include <signal.h>
            #include <unistd.h>
            int main(void) {
                if (vfork() == 0) { raise(SIGSTOP); execl("/bin/true", "true", (char *)0); _exit(1); }
                return 0;
            }
            C_EOF
            gcc -o "$HOME/vf" "$HOME/vf.c" || echo "no gcc"
            "$HOME/vf" &
            sleep 0.5
            echo "vfork parent: $(cut -d' ' -f3 /proc/$!/stat)"
            \(Self.setX("0.6"))
            proctor experiment "x=0.6"
            sleep 1000
            """
        let outcome = try session(ws, script, iterations: 1)
        XCTAssertTrue(outcome.stdout.contains("vfork parent: D"), outcome.stdout)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        XCTAssertTrue(ws.audit(kind: "tamper", decision: "denied").isEmpty, "\(ws.audit(kind: "tamper", decision: "denied"))")
    }

    /// A lease on the editable file (`fcntl(F_SETLEASE)`: the agent owns it in its sandbox), held
    /// through the freeze: the revert's non-blocking open of the file failed ("Resource temporarily
    /// unavailable"), the supervisor stopped with exit 1, no row, the tree unreverted (attack
    /// review). The filter refuses the lease; the discard is recorded and reverted.
    func testALeaseOnTheEditableFileCannotStopTheRevert() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let script = Self.setX("0.1") + """
            python3 - <<'PY'
            import fcntl, os, signal, subprocess
            signal.signal(signal.SIGIO, signal.SIG_IGN)
            fd = os.open("train.py", os.O_RDONLY)
            try:
                fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
                print("lease: taken", flush=True)
            except OSError as e:
                print("lease: denied", e.errno, flush=True)
            verdict = subprocess.run(["proctor", "experiment", "x=0.1 under a lease"], capture_output=True, text=True)
            print("agent:", verdict.stdout.strip(), flush=True)
            PY
            sleep 1000
            """
        let outcome = try session(ws, script, iterations: 1)
        XCTAssertTrue(outcome.stdout.contains("lease: denied 1\n"), outcome.stdout)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "discard"], ws.describe(outcome))
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.2"), "the discarded change was not reverted")
    }

    /// The editable file made a program and left running (frozen with the agent): the kernel
    /// refuses to write a file a program runs from (ETXTBSY), so the revert failed and the run
    /// stopped (exit 1, no row, the tree unreverted). The file is replaced instead; the program
    /// keeps the old one, and the agent's bind of the file goes with it (its own loss).
    func testAnEditableFileRunningAsAProgramIsStillReverted() throws {
        try assertRevertedAfterOneExperiment("""
            cp /bin/sleep train.py && chmod +x train.py && (./train.py 1000 &)
            sleep 0.3
            proctor experiment "train.py runs"
            sleep 1000
            """, ending: "rejected")
    }

    /// A session of one experiment (`script`) that ends `ending`; then the tree is the kept
    /// commit's, train.py the baseline's with its committed mode, and the session exited 0.
    func assertRevertedAfterOneExperiment(_ script: String, ending: String, line: UInt = #line) throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let outcome = try session(ws, script, iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome), line: line)
        XCTAssertEqual(ws.statuses(), ["keep", ending], ws.describe(outcome), line: line)
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.2"), "the change was not reverted", line: line)
        var info = stat()
        XCTAssertEqual(lstat(ws.path("train.py"), &info), 0, line: line)
        XCTAssertEqual(info.st_mode & 0o777, 0o644, line: line)
        let status = try runChild(["/usr/bin/git", "-C", ws.root, "status", "--porcelain"], deadline: 30)
        XCTAssertEqual(status.stdout, "", "the tree is the kept commit's", line: line)
    }

    /// The editable file changed and left without permissions (the agent owns it in its sandbox):
    /// as a user, libgit2 could not read it and the run stopped (exit 1, no row). Its owner's bits
    /// come back before the validation: it is measured (git records no read or write bits),
    /// discarded and reverted to the committed bytes and mode.
    func testAnEditableFileLeftWithoutPermissionsIsStillReverted() throws {
        try assertRevertedAfterOneExperiment(Self.setX("0.1") + """
            chmod 000 train.py
            proctor experiment "no permissions"
            sleep 1000
            """, ending: "discard")
    }

    /// A request whose reply descriptor is a loopback TCP socket with unsent data and an hour's
    /// SO_LINGER (an agent with network): closing it after the (dropped) reply waited for the data
    /// to drain, on the loop's thread, and the session hung past `--iterations` and Ctrl-C. Only a
    /// Unix socket is answered; anything else is closed unanswered, at once.
    func testALingeringReplySocketDoesNotHoldTheLoop() throws {
        let ws = try LoopWorkspace(agent: Self.behindTheProxy(timeout: "90s"))
        let simple = """
            python3 -c '
            import array, os, socket, struct, subprocess, time
            listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
            client = socket.create_connection(listener.getsockname()); server, _ = listener.accept()
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            client.setblocking(False)
            try:
                while True: client.send(b"x" * 65536)
            except BlockingIOError: pass
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3600))
            channel = socket.socket(fileno=int(os.environ["PROCTOR_SESSION_FD"]))
            channel.sendmsg([b"EXPERIMENT\\tlinger"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [client.fileno()]))])
            client.close()
            print("lingering request sent", flush=True)
            time.sleep(0.5)
            subprocess.run(["sh", "-c", open(os.environ["HOME"] + "/then").read()])
            time.sleep(1000)
            '
            """
        let then = Self.setX("0.6") + "proctor experiment \"x=0.6\"\n"
        let outcome = try session(ws, "cat > \"$HOME/then\" <<'THEN_EOF'\n\(then)THEN_EOF\n" + simple, iterations: 1, deadline: 120)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertLessThan(outcome.seconds, 40, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("lingering request sent"), outcome.stdout)
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        XCTAssertEqual(ws.rows().last?["description"], "x=0.6", "the lingering request was not run")
    }

    /// The agent's output copied to proctor's stdout shows its control characters (a clear-screen,
    /// a carriage return, a C1 CSI) as `\xNN`: read later in a terminal, the log cannot be redrawn
    /// by the agent. Its transcript keeps the bytes as they came.
    func testTheAgentsOutputOnProctorsStdoutHoldsNoControlCharacter() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let script = """
            printf 'SPOOF\\033[2J\\r[9/9] keep score 999\\302\\233m tab\\there caf\\303\\251 rlo\\342\\200\\256x\\n'
            \(Self.setX("0.6"))
            proctor experiment "x=0.6"
            sleep 1000
            """
        let outcome = try session(ws, script, iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("SPOOF\\x1b[2J\\x0d[9/9] keep score 999\\xc2\\x9bm tab\there café rlo\\xe2\\x80\\xaex\n"), outcome.stdout)
        XCTAssertFalse(outcome.stdout.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x0D || $0.value == 0x9B || $0.value == 0x202E }, outcome.stdout)
        let transcripts = try FileManager.default.contentsOfDirectory(atPath: ws.path(".proctor/logs/" + (ws.records().first?["run"] as? String ?? "")))
            .filter { $0.hasSuffix("-agent.log") }
        let raw = transcripts.compactMap { ws.bytes(".proctor/logs/\(ws.records().first?["run"] as? String ?? "")/\($0)") }
        XCTAssertTrue(raw.contains { $0.range(of: Data("SPOOF\u{1B}[2J\r".utf8)) != nil }, "the transcript keeps the bytes: \(transcripts)")
    }

    /// An evaluator that quotes the held-out data in its error: the session agent's reply says only
    /// that the outputs could not be scored; the evaluator's words stay in the ledger.
    func testEvaluatorErrorsDoNotReachTheAgent() throws {
        let leaky = LoopWorkspace.prepare.replacingOccurrences(
            of: "print(json.dumps(",
            with: "import sys\nif pred > 0.65:\n    sys.exit('bad prediction; expected ' + open('holdout/target.txt').read().split()[1])\nprint(json.dumps(")
        let ws = try LoopWorkspace(agent: Self.noAgent, prepare: leaky)
        // Two experiments: the session stops after the second, which may cut its reply short.
        let script = Self.setX("0.9") + "echo \"agent: $(proctor experiment 'x=0.9' 2>&1)\"\n"
            + Self.setX("0.3") + "proctor experiment 'x=0.3'\nsleep 1000\n"
        let outcome = try session(ws, script, iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.rows().map { $0["status"] }, ["keep", "crash", "keep"], ws.describe(outcome))
        // proctor's own progress lines (the operator's terminal) may quote the evaluator; the reply may not.
        let reply = outcome.stdout.split(separator: "\n").first { $0.hasPrefix("agent: ") }.map(String.init) ?? ""
        XCTAssertTrue(reply.hasPrefix("agent: iteration 1: crash"), outcome.stdout)
        XCTAssertTrue(reply.contains("could not score"), reply)
        XCTAssertFalse(reply.contains(LoopWorkspace.hiddenLabel), "the agent read the holdout: \(reply)")
        // The operator still has the evaluator's message.
        XCTAssertTrue(ws.read(".proctor/runs.jsonl")?.contains(LoopWorkspace.hiddenLabel) == true)
    }

    /// Two `proctor experiment` at once: exactly one runs, the other is refused at once with exit 1.
    func testConcurrentExperimentsOneIsRefused() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        // The experiment sleeps 3 s so the two requests certainly overlap.
        let script = """
            \(Self.setX("0.6", extra: "import time; time.sleep(3)"))
            \(Self.twoAtOnce)
            """
        let outcome = try session(ws, script)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        let lines = Self.twoAtOnceReplies(outcome)
        XCTAssertEqual(lines.count, 2, outcome.stdout)
        let refused = lines.filter { $0.contains("refused") }
        let accepted = lines.filter { !$0.contains("refused") }
        XCTAssertEqual(refused.count, 1, "exactly one refused: \(lines)")
        XCTAssertEqual(accepted.count, 1, "\(lines)")
        XCTAssertTrue(refused.first?.contains("rc=1") == true, "the refused one exits 1: \(lines)")
        XCTAssertTrue(accepted.first?.contains("iteration 1: keep") == true, "\(lines)")
        XCTAssertTrue(accepted.first?.contains("rc=0") == true, "\(lines)")
        // One experiment, one row.
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
    }

    /// Appending to the ledger or the audit from inside is denied and audited; the ledger holds
    /// only what the supervisor wrote, and the experiment asked for afterwards is recorded.
    func testWritingTheLedgerIsDeniedAndAudited() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let script = """
            printf '7\\tdeadbeef\\t1.000000\\tkeep\\t1.0\\t\\t\\t\\tforged\\n' >> .proctor/results.tsv
            echo '{"kind":"forged"}' >> .proctor/audit.jsonl
            echo forged > .proctor/state.json
            ln -s /tmp/x .proctor/runs.jsonl
            \(Self.setX("0.6"))
            proctor experiment "after forging"
            """
        let outcome = try session(ws, script)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        XCTAssertFalse(ws.read(".proctor/results.tsv")?.contains("forged") ?? true)
        XCTAssertFalse(ws.read(".proctor/results.tsv")?.contains("deadbeef") ?? true)
        let audit = ws.audit()
        XCTAssertFalse(audit.contains { $0["kind"] as? String == "forged" }, "a forged audit line")
        XCTAssertTrue(audit.allSatisfy { $0["time"] != nil && $0["phase"] != nil && $0["decision"] != nil })
        let denied = ws.audit(kind: "write", decision: "denied").filter { $0["phase"] as? String == "agent" }
        for rel in [".proctor/results.tsv", ".proctor/audit.jsonl"] {
            XCTAssertTrue(
                denied.contains { $0["path"] as? String == ws.path(rel) && $0["rule"] as? String == "proctor-state" },
                "no denied write of \(rel): \(denied)")
        }
        var st = stat()
        XCTAssertEqual(lstat(ws.path(".proctor/runs.jsonl"), &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFREG, "runs.jsonl was replaced")
        XCTAssertEqual(ws.records().count, 2)
    }

    /// The session agent is frozen while its experiment is validated, run and committed: a rewrite of
    /// train.py it starts after asking (here: a version that would score 0.71 replacing the measured
    /// 0.9 one) cannot land until the verdict is in. What is kept is exactly what was measured.
    func testEditDuringTheExperimentIsNeverKeptUnmeasured() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let measured = LoopWorkspace.train("0.6", extra: "import time; time.sleep(6)")
        let script = """
            \(Self.setX("0.6", extra: "import time; time.sleep(6)"))
            proctor experiment "measured x=0.6" > /tmp/reply 2>&1 &
            sleep 3
            # The reply lands when the agent is thawed, alongside this shell: give it a moment (an
            # unfrozen agent would still find none, the experiment alone takes 6 s).
            for i in 1 2 3 4 5 6 7 8 9 10; do [ -s /tmp/reply ] && break; sleep 0.1; done
            cat /tmp/reply > /tmp/reply-at-swap
            \(Self.setX("0.99", extra: "# swapped while the experiment ran"))
            wait
            echo "reply when swapping: $(cat /tmp/reply-at-swap)"
            cat /tmp/reply
            """
        let outcome = try session(ws, script)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        // The agent's `sleep 3` only ended after the verdict: it was frozen meanwhile (frozen within
        // 3 s of asking, 0.3 s of which is the settle; an unfrozen agent would read no reply, the
        // experiment alone takes 6 s).
        XCTAssertTrue(outcome.stdout.contains("reply when swapping: iteration 1: keep"), outcome.stdout)
        XCTAssertEqual(ws.gitSubjects().first, "measured x=0.6", "\(ws.gitSubjects())")
        let git = try runChild(["/usr/bin/git", "-C", ws.root, "show", "HEAD:train.py"],
                               environment: ["PATH": "/usr/bin:/bin"], deadline: 30)
        XCTAssertEqual(git.stdout, measured, "the commit holds what was measured")
        XCTAssertEqual(ws.audit(kind: "tamper", decision: "rejected", iteration: 1).count, 0, "\(ws.audit())")
    }

    /// A CLI installed outside the system directories (`[agent] read_only`) and found through the
    /// user's PATH, as `proctor session -- claude ...` needs: it starts by name, its helpers are
    /// found, `proctor experiment` too, and its `[agent.home_files]` (credentials) are in its home.
    func testSessionAgentFoundOnTheUsersPath() throws {
        var template = Array("/var/tmp/proctor-agentbin-XXXXXX".utf8CString)
        let dir = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { _ = try? runChild(["/bin/rm", "-rf", dir], environment: [:], deadline: 30) }
        chmod(dir, 0o755)
        // The CLI runs a helper of its own by name (as node-based CLIs do), then asks for the experiment.
        let tool = dir + "/fake-cli-agent"
        try Data("#!/bin/sh\ncat \"$HOME/.tool/cfg\"\nfake-cli-helper && proctor experiment \"from the fake cli\"\n".utf8)
            .write(to: URL(fileURLWithPath: tool))
        try Data("#!/bin/sh\n\(Self.setX("0.6"))".utf8).write(to: URL(fileURLWithPath: dir + "/fake-cli-helper"))
        chmod(tool, 0o755)
        chmod(dir + "/fake-cli-helper", 0o755)
        try Data("session-home-file-51a0\n".utf8).write(to: URL(fileURLWithPath: dir + "/cfg"))
        let ws = try LoopWorkspace(
            agent: "[agent]\nkind = \"mutate\"\nread_only = [\(tomlString(dir))]\n[agent.home_files]\n\(tomlString(dir + "/cfg")) = \".tool/cfg\"")
        let path = dir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let outcome = try ws.proctor(
            ["session", "--workspace", ws.root, "--", "fake-cli-agent"], environment: ["PATH": path], deadline: 120)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        XCTAssertEqual(ws.rows().last?["description"], "from the fake cli")
        XCTAssertTrue(outcome.stdout.contains("session-home-file-51a0"), "[agent.home_files] reached the session's home")
    }

    /// Node-based CLIs (Claude Code, Codex's npm wrapper) run their tools with child_process,
    /// and libuv does not let a child inherit descriptors beyond stdio. `proctor experiment` run
    /// from such a tool must still reach the supervisor.
    func testExperimentFromANodeChildProcess() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/node") else {
            throw XCTSkip("no /usr/bin/node on this machine")
        }
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let train = LoopWorkspace.train("0.6")
        let script = """
            const fs = require("fs"), cp = require("child_process");
            fs.writeFileSync("train.py", \(String(decoding: try JSONSerialization.data(withJSONObject: [train]), as: UTF8.self))[0]);
            const r = cp.spawnSync("proctor", ["experiment", "from a node tool"], {encoding: "utf8"});
            console.log("NODE-CHILD rc=" + r.status + " out=" + (r.stdout || "").trim() + " err=" + (r.stderr || "").trim());
            """
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--", "node", "-e", script], deadline: 120)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("NODE-CHILD rc=0 out=iteration 1: keep"), outcome.stdout + outcome.stderr)
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
    }

    /// Through the mounted socket (no inherited descriptor): still one experiment at a time; the
    /// socket itself cannot be removed or replaced by the agent; the experiment it asked for
    /// cannot reach the channel at all (neither the mounted path, the host path nor the fd).
    func testMountedSocketIsOneAtATimeFixedAndInvisibleToTheExperiment() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let probe = sessionChannelProbe(sleep: 3)
        let script = """
            \(Self.setX("0.6", extra: probe))
            rm -f /run/proctor/session.sock
            ln -sf /tmp/elsewhere /run/proctor/session.sock
            unset PROCTOR_SESSION_FD
            \(Self.twoAtOnce)
            """
        let outcome = try session(ws, script)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        let lines = Self.twoAtOnceReplies(outcome)
        XCTAssertEqual(lines.filter { $0.contains("refused") && $0.contains("rc=1") }.count, 1, "\(lines)")
        XCTAssertEqual(lines.filter { $0.contains("iteration 1: keep") && $0.contains("rc=0") }.count, 1, "\(lines)")
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let denied = ws.audit(kind: "write", decision: "denied").filter { $0["path"] as? String == "/run/proctor/session.sock" }
        XCTAssertFalse(denied.isEmpty, "removing the mounted socket is audited: \(ws.audit())")
        let logs = ws.root + "/.proctor/logs"
        let reached = ws.filesContaining("SESSION-REACHABLE", under: logs)
        XCTAssertEqual(reached, [], "the experiment reached the session channel: \(reached.map { ws.read(".proctor/logs/" + $0) ?? "" })")
        XCTAssertFalse(ws.filesContaining("SESSION-UNREACHABLE", under: logs).isEmpty, "the probe never ran")
    }

    /// Ctrl-C while the agent thinks after an experiment: proctor stops the agent and exits 130
    /// promptly, and nothing of the agent survives.
    func testInterruptStopsTheSessionAgent() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let marker = "session-agent-\(UUID().uuidString.prefix(8))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: proctorBinary)
        let script = Self.setX("0.6") + "proctor experiment first\nsleep 1000\n"
        process.arguments = ["session", "--workspace", ws.root, "--", "sh", "-c", script, marker]
        process.environment = ws.environment()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // proctor and the launcher carry the marker in their arguments too: wait for the agent's sh.
        func agentRunning() -> Bool { processes(containing: marker).contains { $0.contains(": sh -c ") } }
        // After its first experiment, while the agent "thinks".
        let started = Date()
        while ws.rows().count < 2 && Date().timeIntervalSince(started) < 60 { usleep(50_000) }
        XCTAssertTrue(agentRunning(), "the session agent is not running")
        usleep(300_000)
        kill(process.processIdentifier, SIGINT)
        let interrupted = Date()
        while process.isRunning && Date().timeIntervalSince(interrupted) < 10 { usleep(50_000) }
        let stopped = !process.isRunning
        if !stopped { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        XCTAssertTrue(stopped, "proctor session did not stop within 10 s of SIGINT")
        XCTAssertEqual(process.terminationStatus, 130, "an interrupted session exits 130")
        usleep(200_000)
        XCTAssertEqual(processes(containing: marker), [], "the session agent outlived proctor")
        XCTAssertEqual(sessionDirectories(of: process.processIdentifier), [], "the session channel's directory outlived proctor")
        XCTAssertEqual(ws.statuses(), ["keep", "keep"])
    }

    /// A session's supervisor SIGKILLed while its agent thinks: the agent goes with it, and the
    /// channel's directory it could not remove is swept by the next session's start
    /// (`proctor session --resume`), which goes on from the last iteration.
    func testAKilledSessionsChannelDirectoryIsSweptByTheNext() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let marker = "session-agent-\(UUID().uuidString.prefix(8))"
        let output = try CapturedOutput()
        let process = try startProcess([proctorBinary, "session", "--workspace", ws.root, "--", "sh", "-c", "sleep 1000", marker],
                                       environment: ws.environment(), output: output)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 60) { processes(containing: marker).contains { $0.contains(": sh -c ") } },
                      output.stdout + output.stderr)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertTrue(waitUntil(timeout: 10) { processes(containing: marker).isEmpty }, "the session agent outlived its supervisor")
        let killed = process.processIdentifier
        XCTAssertEqual(sessionDirectories(of: killed).count, 1, "the killed supervisor's channel directory")
        let resumed = try ws.proctor(["session", "--workspace", ws.root, "--resume", "--", "sh", "-c", "true"], deadline: 120)
        XCTAssertEqual(resumed.status, 0, ws.describe(resumed))
        XCTAssertTrue(resumed.stdout.contains("resuming run"), resumed.stdout)
        XCTAssertEqual(sessionDirectories(of: killed), [], "the killed session's channel directory was left")
    }

    /// The agent's own end decides the session's status: a failed agent (a bad flag, a missing API
    /// key: it exits at once) exits 1, with its reason, after its experiments are recorded; one that
    /// exits 0, or that the run stops after `--iterations`, exits 0. (It exited 0 in every case.)
    func testAFailedSessionAgentFailsTheSession() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let failed = try session(ws, Self.setX("0.6") + "proctor experiment \"x=0.6\"; exit 3")
        XCTAssertEqual(failed.status, 1, ws.describe(failed))
        XCTAssertTrue(failed.stderr.contains("the session agent exited (exit status 3)"), failed.stderr)
        XCTAssertTrue(failed.stdout.contains("kept 1 of 1 experiments"), failed.stdout)
        XCTAssertEqual(ws.statuses(), ["keep", "keep"])
        let killed = try session(ws, "kill -KILL $$", deadline: 120)
        XCTAssertEqual(killed.status, 1, ws.describe(killed))
        XCTAssertTrue(killed.stderr.contains("killed by signal 9"), killed.stderr)
        let fine = try session(ws, "true", deadline: 120)
        XCTAssertEqual(fine.status, 0, ws.describe(fine))
        let stopped = try session(ws, "proctor experiment \"same\"; sleep 1000", iterations: 1, deadline: 120)
        XCTAssertEqual(stopped.status, 0, ws.describe(stopped))
        XCTAssertTrue(stopped.stderr.contains("the session agent was stopped (the run is over)") && !stopped.stderr.contains("exited"), stopped.stderr)
    }

    /// A session agent is one launch for the whole session, under `[agent] max_output_bytes` like a
    /// command agent's: one that fills its home after an experiment is stopped, the session fails
    /// (exit 1) naming the cap, the audit has the kill, what it measured stays, and its files go.
    func testASessionAgentThatFillsTheDiskIsStoppedAtItsCap() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent + "\nmax_output_bytes = \"2MiB\"")
        let script = Self.setX("0.6") + """
            proctor experiment "x=0.6"
            i=0; while [ $i -lt 400 ]; do head -c 1048576 /dev/zero > "$HOME/fill$i" || break; i=$((i+1)); done
            echo FILLED-ALL
            sleep 30
            """
        let outcome = try session(ws, script, deadline: 120)
        XCTAssertEqual(outcome.status, 1, ws.describe(outcome) + outcome.text)
        XCTAssertFalse(outcome.stdout.contains("FILLED-ALL"), ws.describe(outcome))
        XCTAssertTrue(outcome.stderr.contains("output"), outcome.stderr)
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let killed = ws.audit(kind: "limit", decision: "killed").compactMap { $0["detail"] as? String }
        XCTAssertTrue(killed.contains { $0.hasPrefix("output: ") }, "\(killed)")
        let status = try runChild(["/usr/bin/git", "-C", ws.root, "status", "--porcelain"], deadline: 30)
        XCTAssertEqual(status.stdout, "", "the tree is the kept commit's")
    }

    /// The channel against a hostile agent: an empty packet on it ended the session (exit 0, "the run is
    /// over", nothing measured); a TCP socket with unsent data and an hour's SO_LINGER passed as a second
    /// descriptor, or on a connection to the mounted socket, held the supervisor's reader in close(),
    /// and every later experiment hung. Each is shrugged off, the next experiment is measured at once,
    /// and its record names the session as the agent.
    func testTheChannelShrugsOffEmptyPacketsAndLingeringSockets() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent + "\nnetwork = \"host\"")
        let probe = #"""
            import array, os, socket, struct, time
            FD = int(os.environ["PROCTOR_SESSION_FD"])
            def chan(): return socket.socket(fileno=os.dup(FD))
            def lingering():
                srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
                c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                c.connect(srv.getsockname()); a, _ = srv.accept()
                a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.setblocking(False)
                try:
                    while True: c.send(b"x" * 65536)
                except BlockingIOError: pass
                c.setblocking(True)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3600))
                return c, a, srv
            s = chan(); s.send(b""); s.close()
            c, a, srv = lingering()
            x, y = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s = chan(); s.sendmsg([b"BOGUS"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [y.fileno(), c.fileno()]))])
            s.close(); y.close(); c.close()
            c2, a2, srv2 = lingering()
            m = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); m.connect("/run/proctor/session.sock")
            m.sendmsg([b"BOGUS2"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [c2.fileno()]))]); c2.close()
            time.sleep(1)
            print("PROBED", flush=True)
            """#
        let script = "python3 -c '\(probe.replacingOccurrences(of: "'", with: "'\\''"))'\n" + Self.setX("0.6")
            + "start=$(date +%s); proctor experiment \"x=0.6\"; echo \"WAITED $(( $(date +%s) - start ))\"\n"
        let outcome = try session(ws, script, deadline: 120)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("PROBED"), outcome.text)
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let waited = outcome.stdout.components(separatedBy: "WAITED ").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? 999
        XCTAssertLessThan(waited, 20, outcome.text)
        XCTAssertEqual(ws.records().last?["agent"] as? String, "session")
        // Each malformed request is audited.
        let refused = ws.audit().filter { $0["rule"] as? String == "session-channel" }.compactMap { $0["detail"] as? String }
        XCTAssertEqual(refused.filter { $0.hasPrefix("unknown request: BOGUS") }.count, 2, "\(refused)")
    }

    /// A `proctor experiment` killed right after asking (a tool's timeout): nobody waits for its
    /// verdict, and nothing is run for it (a red team had 32 of 54 run, some kept); the agent's next
    /// request is served as usual.
    func testAnExperimentWhoseClientIsKilledIsNotRun() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let script = Self.setX("0.6") + """
            proctor experiment "killed client" & pid=$!
            sleep 0.05; kill -KILL $pid; wait $pid
            sleep 1
            proctor experiment "x=0.6"
            """
        let outcome = try session(ws, script, deadline: 120)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        XCTAssertFalse(ws.records().contains { ($0["description"] as? String ?? "").contains("killed client") }, ws.describe(outcome))
    }

    /// What the agent leaves unsubmitted when the session ends (an edit it never asked to have
    /// measured, or one cut short) goes: the tree is the last kept commit's. It stayed, and the
    /// next `proctor run` refused the dirty tree.
    func testTheAgentsUnsubmittedEditGoesWhenTheSessionEnds() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let outcome = try session(ws, Self.setX("0.6") + "proctor experiment \"x=0.6\"\n" + Self.setX("0.9") + "echo unsubmitted >> LOG.md\nexit 0\n")
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.6"), "the unsubmitted edit stayed")
        XCTAssertFalse(ws.read("LOG.md")?.contains("unsubmitted") ?? true)
        let status = try runChild(["/usr/bin/git", "-C", ws.root, "status", "--porcelain"], deadline: 30)
        XCTAssertEqual(status.stdout, "", "the tree is the kept commit's")
    }

    /// Outside a session there is no channel: `proctor experiment` fails with a clear message.
    func testExperimentOutsideASessionFails() throws {
        let ws = try LoopWorkspace(agent: Self.noAgent)
        let outcome = try ws.proctor(["experiment", "x"], deadline: 30)
        XCTAssertEqual(outcome.status, 2, outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("not inside a proctor session"), outcome.stderr)
        XCTAssertEqual(ws.statuses(), [])
    }
}
