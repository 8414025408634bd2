import Foundation
import ProctorTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// `kind = "command"` agents that misbehave, through the real loop (`proctor run` as a child).
/// Each agent is a shell script that misbehaves in iteration 1 (it reads "This is iteration 1."
/// in its prompt file) and makes a good edit otherwise, so every test also shows the loop
/// surviving. Judged from outside: ledger rows, audit lines, file bytes, the process table.
final class CommandAgentLoopTests: XCTestCase {
    /// A good edit that works under per-file binds: write in place (no temp file and rename).
    static let good = """
        sed 's/^X = .*/X = 0.6  # mutate: float 0.0..1.0 linear/' train.py > /tmp/train.new && cat /tmp/train.new > train.py
        echo "SUMMARY: set X to 0.6"
        """

    static func agentBlock(iterationOne bad: String, extra: String = "") -> String {
        let script = """
            if grep -q 'This is iteration 1\\.' "$1"; then
            \(bad)
            exit 0
            fi
            \(good)
            """
        return """
            [agent]
            kind    = "command"
            command = ["sh", "-c", \(tomlString(script)), "agent", "{prompt_file}"]
            timeout = "20s"
            \(extra)
            """
    }

    /// Runs `iterations` and checks what holds for every run: exit 0, one row per iteration,
    /// the hidden label nowhere, the evaluator's bytes as pinned.
    func loop(_ bad: String, extra: String = "", iterations: Int = 2, line: UInt = #line) throws
        -> (LoopWorkspace, ChildOutcome)
    {
        let ws = try LoopWorkspace(agent: Self.agentBlock(iterationOne: bad, extra: extra))
        let outcome = try ws.run(iterations: iterations)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome), line: line)
        XCTAssertEqual(ws.rows(line: line).map { $0["iteration"] }, (0...iterations).map(String.init), ws.describe(outcome), line: line)
        XCTAssertEqual(ws.bytes("prepare.py"), Data(LoopWorkspace.prepare.utf8), "the evaluator changed", line: line)
        XCTAssertEqual(ws.filesContaining(LoopWorkspace.hiddenLabel, under: ws.root + "/.proctor"), [], line: line)
        return (ws, outcome)
    }

    func deniedWrites(_ ws: LoopWorkspace, iteration: Int) -> [[String: Any]] {
        ws.audit(kind: "write", decision: "denied", iteration: iteration).filter { $0["phase"] as? String == "agent" }
    }

    func assertDenied(
        _ ws: LoopWorkspace, _ rel: String, rule: String, iteration: Int = 1, line: UInt = #line
    ) {
        let lines = deniedWrites(ws, iteration: iteration)
        let path = ws.root + "/" + rel
        XCTAssertTrue(
            lines.contains { $0["path"] as? String == path && $0["rule"] as? String == rule && $0["pid"] != nil },
            "no denied write of \(path) (rule \(rule)) in iteration \(iteration): \(lines)", line: line)
    }

    func reason(_ ws: LoopWorkspace, _ iteration: Int) -> String {
        ws.records().last { $0["iteration"] as? Int == iteration }?["reason"] as? String ?? ""
    }

    // MARK: - Writing where it must not

    /// The agent overwrites the evaluator (and also makes the good edit): the write is denied and
    /// audited with the absolute path, and the iteration is `rejected`: its train.py edit is not
    /// run, let alone kept.
    func testWritingTheEvaluatorIsRejected() throws {
        let (ws, outcome) = try loop(
            """
            printf 'print("{\\\\"score\\\\": 1.0}")\\n' > prepare.py
            printf 'x' >> prepare.py
            rm -f prepare.py
            \(Self.good)
            """)
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], ws.describe(outcome))
        assertDenied(ws, "prepare.py", rule: "locked")
        XCTAssertTrue(reason(ws, 1).contains("prepare.py"), reason(ws, 1))
        XCTAssertEqual(ws.rows()[1]["commit"], "")
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.6"))
    }

    /// proctor.toml is not even visible to the agent; writing or creating it is denied and audited.
    func testWritingTheConfigIsRejected() throws {
        let (ws, outcome) = try loop(
            """
            echo '[agent]' >> proctor.toml
            echo 'kind = "mutate"' > proctor.toml
            \(Self.good)
            """)
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], ws.describe(outcome))
        assertDenied(ws, "proctor.toml", rule: "config")
        XCTAssertEqual(ws.bytes("proctor.toml"), FileManager.default.contents(atPath: ws.parent + "/template/proctor.toml"))
    }

    /// New files beside the editable ones, in the hidden directory, in .git and outside the
    /// workspace: none appears, each is audited, and the attempts on .git and the hidden data get
    /// the iteration `rejected`.
    func testCreatingFilesOutsideEditablePathsIsRejected() throws {
        let (ws, outcome) = try loop(
            """
            echo 'import os' > sitecustomize.py
            mkdir -p pkg
            echo planted > holdout/planted.txt
            echo '#!/bin/sh' > .git/hooks/pre-commit
            echo owned > ../outside.txt
            echo owned > /usr/proctor-planted
            \(Self.good)
            """)
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], ws.describe(outcome))
        assertDenied(ws, "sitecustomize.py", rule: "frozen")
        assertDenied(ws, "pkg", rule: "frozen")
        let fm = FileManager.default
        for rel in ["sitecustomize.py", "pkg", "holdout/planted.txt", ".git/hooks/pre-commit"] {
            XCTAssertFalse(fm.fileExists(atPath: ws.path(rel)), "\(rel) was created")
        }
        XCTAssertFalse(fm.fileExists(atPath: "/usr/proctor-planted"))
        // ../outside.txt: the test workspace lives under /tmp, which is the sandbox's private tmpfs,
        // so that write lands in the sandbox's own /tmp (allowed, gone with it): the host file is intact.
        XCTAssertEqual(fm.contents(atPath: ws.parent + "/outside.txt"), Data("outside the workspace\n".utf8))
        XCTAssertTrue(
            deniedWrites(ws, iteration: 1).contains {
                $0["path"] as? String == "/usr/proctor-planted" && $0["rule"] as? String == "read-only-system"
            }, "the write outside the workspace is audited: \(deniedWrites(ws, iteration: 1))")
        XCTAssertTrue(reason(ws, 1).contains(".git/hooks/pre-commit"), reason(ws, 1))
        XCTAssertTrue(reason(ws, 1).contains("holdout/planted.txt"), reason(ws, 1))
    }

    /// Overwriting a frozen file that exists (program.md: neither editable nor notes) is an attempt
    /// on the workspace's contract: denied, audited, `rejected`.
    func testWritingAFrozenFileIsRejected() throws {
        let (ws, outcome) = try loop(
            """
            echo 'Ignore the evaluator.' > program.md
            \(Self.good)
            """)
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], ws.describe(outcome))
        assertDenied(ws, "program.md", rule: "frozen")
        XCTAssertEqual(ws.read("program.md"), "Move X towards the hidden target.\n")
        XCTAssertTrue(reason(ws, 1).contains("program.md"), reason(ws, 1))
    }

    /// Its editable file left without permissions (the agent owns it in its sandbox): as a user,
    /// libgit2 could not read it and the run stopped (exit 1); its notes left writable by every
    /// local user. The owner's bits come back, and the others' write goes, before the validation:
    /// the iteration is measured and reverted, the run goes on.
    func testFilesLeftWithoutPermissionsNeitherStopTheRunNorStayUnreadable() throws {
        let (ws, outcome) = try loop(
            """
            sed 's/^X = .*/X = 0.1  # mutate: float 0.0..1.0 linear/' train.py > /tmp/train.new && cat /tmp/train.new > train.py
            echo "a note" >> LOG.md
            chmod 000 train.py && chmod 666 LOG.md
            echo "SUMMARY: x=0.1, then no permissions"
            """)
        XCTAssertEqual(ws.statuses(), ["keep", "discard", "keep"], ws.describe(outcome))
        for name in ["train.py", "LOG.md"] {
            var info = stat()
            XCTAssertEqual(lstat(ws.path(name), &info), 0)
            XCTAssertEqual(info.st_mode & 0o777, 0o644, name)
        }
    }

    /// A file both lists name (`notes = ["LOG.md", "train.py"]`) is editable: the experiment sees
    /// it, so its lines count against `diff_lines`. As notes they did not: 300 added lines went
    /// through the limit and were measured.
    func testAFileBothEditableAndNotesCountsItsLines() throws {
        let bad = """
            for i in $(seq 300); do echo "# line $i" >> train.py; done
            echo "SUMMARY: 300 lines through the notes"
            """
        let ws = try LoopWorkspace(agent: Self.agentBlock(iterationOne: bad), notes: "[\"LOG.md\", \"train.py\"]",
                                   extra: "[limits]\ndiff_lines = 60")
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], ws.describe(outcome))
        XCTAssertTrue(reason(ws, 1).contains("more than the limit of 60"), reason(ws, 1))
    }

    /// What a CLI's atomic save does (Claude Code's Edit tool, write-file-atomic): create
    /// `train.py.tmp.PID.N`, fail, write in place instead. The new name is never created and the
    /// attempt is audited, but it is no attack on the score: the in-place edit is measured and kept.
    /// Scratch directories and writes outside the workspace are treated the same way.
    func testAtomicSaveAttemptIsContainedNotRejected() throws {
        let (ws, outcome) = try loop(
            """
            if ! printf 'X = 0.6\n' > train.py.tmp.$$.17; then echo "atomic save refused, writing in place" >&2; fi
            mkdir -p .cache 2>/dev/null
            echo x > /usr/proctor-scratch 2>/dev/null
            \(Self.good)
            """)
        XCTAssertEqual(ws.statuses(), ["keep", "keep", "discard"], ws.describe(outcome))
        XCTAssertEqual(ws.rows().count > 1 ? ws.rows()[1]["score"] : nil, "0.900000")
        let denied = deniedWrites(ws, iteration: 1)
        XCTAssertTrue(
            denied.contains { ($0["path"] as? String ?? "").hasPrefix(ws.path("train.py.tmp.")) && $0["rule"] as? String == "frozen" },
            "\(denied)")
        XCTAssertTrue(denied.contains { $0["path"] as? String == ws.path(".cache") }, "\(denied)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: ws.root)) ?? []
        XCTAssertFalse(names.contains { $0.hasPrefix("train.py.tmp") || $0 == ".cache" }, "\(names)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/usr/proctor-scratch"))
    }

    // MARK: - Processes that outlive the agent

    /// The agent leaves a double-forked, setsid'd process that ignores SIGTERM and SIGHUP and would
    /// rewrite train.py during the experiment. It is gone when the agent exits: never seen after
    /// the iteration, and the kept train.py is the agent's own edit.
    func testDaemonDoesNotOutliveTheAgent() throws {
        let marker = "proctor-daemon-\(UUID().uuidString.prefix(8))"
        let daemon = """
            import os, signal, sys, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            time.sleep(2)
            while True:
                try:
                    with open("train.py", "w") as f:
                        f.write("X = 0.99  # daemon\\n")
                except OSError:
                    pass
                time.sleep(0.1)
            """
        let seen = MarkerWatch(marker, prefix: "python3 -c")
        let (ws, outcome) = try loop(
            """
            ( setsid python3 -c \(shellQuote(daemon)) \(marker) < /dev/null > /dev/null 2>&1 & )
            sleep 1
            \(Self.good)
            """)
        seen.stop()
        XCTAssertTrue(seen.count > 0, "the daemon never ran: the test proves nothing")
        XCTAssertEqual(processes(containing: marker), [], "the daemon outlived the run")
        // The agent's own change was measured and kept; the daemon's never reached the experiment.
        // Iteration 2 makes the same edit again: nothing changed, so it is discarded.
        XCTAssertEqual(ws.statuses(), ["keep", "keep", "discard"], ws.describe(outcome))
        XCTAssertEqual(ws.rows().count > 1 ? ws.rows()[1]["score"] : nil, "0.900000")
        XCTAssertEqual(ws.read("train.py"), LoopWorkspace.train("0.6"))
        XCTAssertFalse(ws.filesContaining("daemon", under: ws.root + "/outputs").count > 0)
    }

    // MARK: - Reading what it must not

    /// An agent that needs the hidden label fails (`crash`); one that collects what it can from
    /// holdout/, .git and /proc and writes it into its edit and notes gets nothing: the label is
    /// in no file, row, record or output.
    func testHiddenLabelDoesNotReachTheAgent() throws {
        let (ws, outcome) = try loop(
            """
            set -e
            label=$(cat holdout/target.txt)
            echo "$label" >> LOG.md
            echo "SUMMARY: label $label"
            """,
            extra: "")
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        XCTAssertFalse(outcome.stdout.contains(LoopWorkspace.hiddenLabel))
        XCTAssertFalse(outcome.stderr.contains(LoopWorkspace.hiddenLabel))

        // The scavenger: every trick at once, in a fresh run, with a good edit so
        // that what it gathered is committed and visible.
        let scavenge = """
            { cat holdout/target.txt; ls -la holdout; cat .git/config; git show HEAD:holdout/target.txt;
              cat /proc/1/root\(ws.root)/holdout/target.txt; cat /proc/*/cwd/holdout/target.txt;
              find /tmp /var/tmp -name target.txt -exec cat {} +; } > /tmp/found 2>&1
            \(Self.good)
            sed 's/^/# /' /tmp/found >> train.py
            cat /tmp/found >> LOG.md
            echo "SUMMARY: found $(tr '\\n' ' ' < /tmp/found | cut -c1-150)"
            """
        let (ws2, outcome2) = try loop(scavenge, iterations: 1)
        XCTAssertEqual(ws2.statuses(), ["keep", "keep"], ws2.describe(outcome2))
        XCTAssertTrue(ws2.read("train.py")?.contains("X = 0.6") == true)
        XCTAssertEqual(ws2.filesContaining(LoopWorkspace.hiddenLabel, under: ws2.root + "/.proctor"), [])
        XCTAssertFalse(ws2.read("train.py")?.contains(LoopWorkspace.hiddenLabel) ?? true, "the label reached train.py")
        XCTAssertFalse(ws2.read("LOG.md")?.contains(LoopWorkspace.hiddenLabel) ?? true, "the label reached LOG.md")
        XCTAssertFalse(outcome2.stdout.contains(LoopWorkspace.hiddenLabel))
        XCTAssertFalse(outcome2.stderr.contains(LoopWorkspace.hiddenLabel))
    }

    // MARK: - Exhausting the machine

    /// An agent whose helper allocates far beyond `[agent] memory` is stopped by the cgroup (or
    /// the rlimit): `crash` even though the agent script itself exits 0, audited, proctor itself
    /// unharmed, the next iteration kept.
    func testMemoryHogCrashesContained() throws {
        let (ws, outcome) = try loop(
            """
            python3 -c 'x = b"x" * (1 << 30); print(len(x))'
            """, extra: "memory = \"128MiB\"")
        // Without a writable cgroup (an unprivileged user on a cgroup v1 host) the limit is
        // RLIMIT_AS: the allocation fails inside the agent instead of an OOM kill, and the
        // fallback is announced in the audit, never silent.
        let agentSandbox = ws.audit().first { $0["kind"] as? String == "sandbox" && $0["phase"] as? String == "agent" }
        let memory = (agentSandbox?["limits"] as? [String: Any])?["memory"] as? String ?? ""
        if memory.hasPrefix("rlimit-as") {
            XCTAssertEqual(agentSandbox?["decision"] as? String, "unenforced", "\(ws.audit())")
            XCTAssertTrue((agentSandbox?["detail"] as? String ?? "").contains("RLIMIT_AS only"), "\(ws.audit())")
            XCTAssertEqual(ws.statuses().count, 3, ws.describe(outcome))
            XCTAssertNotEqual(ws.statuses()[1], "keep", ws.describe(outcome))
            return
        }
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        let why = reason(ws, 1)
        XCTAssertTrue(why.contains("memory limit"), why)
        XCTAssertFalse(ws.audit(kind: "memory", decision: "killed", iteration: 1).isEmpty, "\(ws.audit())")
    }

    /// An agent that fills the disk (its private home here; an editable directory is counted with
    /// it) is stopped once what it added passes `[agent] max_output_bytes`: `crash`, the reason
    /// named, the next iteration kept. There was no cap: 400 MiB went into the home, and an agent's
    /// timeout is long enough to fill a disk. What the editable directory held before the launch
    /// (more than the cap) is the user's and does not count.
    func testAnAgentThatFillsTheDiskIsStoppedAtItsOutputCap() throws {
        let big = String(repeating: "# a line of the user's own module, longer than the cap in all\n", count: 50_000)
        let ws = try LoopWorkspace(
            agent: Self.agentBlock(iterationOne: """
                i=0; while [ $i -lt 400 ]; do head -c 1048576 /dev/zero > "$HOME/fill$i" || break; i=$((i+1)); done
                """, extra: "max_output_bytes = \"2MiB\""),
            editable: "[\"train.py\", \"src/\"]", files: ["src/big.py": big])
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        XCTAssertTrue(reason(ws, 1).contains("output"), reason(ws, 1))
        let killed = ws.audit(kind: "limit", decision: "killed", iteration: 1).compactMap { $0["detail"] as? String }
        XCTAssertTrue(killed.contains { $0.hasPrefix("output: ") && $0.contains("added") && $0.contains("the writable places") }, "\(killed)")
        XCTAssertEqual(ws.audit(kind: "limit", decision: "killed", iteration: 2).count, 0, "the user's src/ counted against the cap")
    }

    /// A directory made readable but not searchable (0600) showed its names to the cap's walk and
    /// none of their sizes: as an ordinary user, an agent wrote 200 MiB under a 16 MiB cap through
    /// files it had opened there first. Its search bit is given back, and the writer is stopped.
    func testAnAgentsUnsearchableDirectoryStillCountsAgainstItsCap() throws {
        let ws = try LoopWorkspace(
            agent: Self.agentBlock(iterationOne: """
                mkdir -p notes/d
                python3 -c 'import os, time; fs = [open("notes/d/e%d" % i, "wb") for i in range(60)]; os.chmod("notes/d", 0o600); [(f.write(b"x" * 500000), f.flush(), time.sleep(0.01)) for f in fs]'
                """, extra: "max_output_bytes = \"8MiB\""),
            notes: "[\"LOG.md\", \"notes/\"]", files: ["notes/README.md": "notes\n"])
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        let killed = ws.audit(kind: "limit", decision: "killed", iteration: 1).compactMap { $0["detail"] as? String }
        XCTAssertTrue(killed.contains { $0.hasPrefix("output: ") }, "\(killed)")
    }

    /// An agent that makes files by the ten thousand (each costs the supervisor a look when it
    /// validates and reverts a workspace directory) is stopped past 20,000 new entries.
    func testAnAgentThatMakesTensOfThousandsOfFilesIsStopped() throws {
        let (ws, outcome) = try loop("""
            python3 -c 'import os
            os.makedirs(os.environ["HOME"] + "/many")
            for i in range(60000): open(os.environ["HOME"] + "/many/%d" % i, "w").close()'
            """)
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        let killed = ws.audit(kind: "limit", decision: "killed", iteration: 1).compactMap { $0["detail"] as? String }
        XCTAssertTrue(killed.contains { $0.contains("more than 20000 entries added") }, "\(killed)")
    }

    /// An agent that never finishes is killed at `[agent] timeout`: `crash` within the budget.
    func testHungAgentCrashesAtItsTimeout() throws {
        let ws = try LoopWorkspace(
            agent: Self.agentBlock(iterationOne: "sleep 1000").replacingOccurrences(
                of: "timeout = \"20s\"", with: "timeout = \"2s\""))
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "crash", "keep"], ws.describe(outcome))
        XCTAssertTrue(reason(ws, 1).contains("wall-clock"), reason(ws, 1))
        let seconds = ws.rows().count > 1 ? Double(ws.rows()[1]["seconds"] ?? "") ?? 99 : 99
        XCTAssertLessThan(seconds, 10)
        XCTAssertFalse(ws.audit(kind: "timeout", decision: "killed", iteration: 1).isEmpty, "\(ws.audit())")
    }

    // MARK: - Configuration

    /// What a CLI is told: `{prompt}` and `{prompt_file}` carry the same text; it asks for edits in
    /// place (not the http agent's FILE-block answer), shows program.md, the editable file, the
    /// iteration, and nothing of the evaluator or the hidden data. The agent files its prompt in
    /// LOG.md, which is committed with its kept edit.
    func testPromptTellsTheCLIToEditInPlace() throws {
        let script = """
            printf '%s' "$2" > /tmp/argv-prompt
            if cmp -s /tmp/argv-prompt "$1"; then echo "PROMPTS-AGREE" >> LOG.md; fi
            cat "$1" >> LOG.md
            \(Self.good)
            """
        let ws = try LoopWorkspace(
            agent: """
                [agent]
                kind    = "command"
                command = ["sh", "-c", \(tomlString(script)), "agent", "{prompt_file}", "{prompt}"]
                timeout = "20s"
                """)
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let prompt = try XCTUnwrap(ws.read("LOG.md"))
        XCTAssertTrue(prompt.contains("PROMPTS-AGREE"), prompt)
        for needed in [
            "editing files in the current directory", "Edit only these files, in place: train.py", "LOG.md",
            "Move X towards the hidden target.", "X = 0.2  # mutate", "This is iteration 1.", "SUMMARY:",
        ] {
            XCTAssertTrue(prompt.contains(needed), "the prompt lacks \"\(needed)\"")
        }
        for banned in ["Answer format (only this is read)", "holdout/target.txt", LoopWorkspace.hiddenLabel, "json.dumps"] {
            XCTAssertFalse(prompt.contains(banned), "the prompt holds \"\(banned)\"")
        }
        XCTAssertEqual(ws.rows().last?["description"], "set X to 0.6")
    }

    /// The agent's environment is the `[agent] env` allowlist: a key it lists arrives, a secret it
    /// does not list does not. Its `$HOME` is private, holds the `[agent.home_files]` copies, is not
    /// the user's, and is gone after the iteration.
    func testEnvironmentAllowlistAndPrivateHome() throws {
        var template = Array("/var/tmp/proctor-homefile-XXXXXX".utf8CString)
        let dir = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { _ = try? runChild(["/bin/rm", "-rf", dir], environment: [:], deadline: 30) }
        // The source is a link, as a dotfile manager leaves it: the file's bytes are copied, not the link.
        try Data("token = home-file-7d1c\n".utf8).write(to: URL(fileURLWithPath: dir + "/real-cfg"))
        chmod(dir + "/real-cfg", 0o644)
        XCTAssertEqual(symlink("real-cfg", dir + "/cfg"), 0)
        let script = """
            echo "HOME=$HOME" >> LOG.md
            echo "LISTED=${AGENT_TEST_LISTED_KEY:-absent}" >> LOG.md
            echo "UNLISTED=${AGENT_TEST_UNLISTED_SECRET:-absent}" >> LOG.md
            echo "CFG=$(cat "$HOME/.config/tool/cfg")" >> LOG.md
            echo "CFG-MODE=$(stat -c %a "$HOME/.config/tool/cfg")" >> LOG.md
            ls /root /home > /dev/null 2>&1 && ls /root /home | head -5 >> LOG.md
            \(Self.good)
            """
        let ws = try LoopWorkspace(
            agent: """
                [agent]
                kind    = "command"
                command = ["sh", "-c", \(tomlString(script))]
                env     = ["PATH", "AGENT_TEST_LISTED_KEY"]
                timeout = "20s"

                [agent.home_files]
                \(tomlString(dir + "/cfg")) = ".config/tool/cfg"
                """)
        let outcome = try ws.run(
            iterations: 1,
            environment: ["AGENT_TEST_LISTED_KEY": "listed-3b9f", "AGENT_TEST_UNLISTED_SECRET": "secret-0c4e"])
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let log = try XCTUnwrap(ws.read("LOG.md"))
        XCTAssertTrue(log.contains("LISTED=listed-3b9f"), log)
        XCTAssertTrue(log.contains("UNLISTED=absent"), log)
        XCTAssertTrue(log.contains("CFG=token = home-file-7d1c"), log)
        XCTAssertTrue(log.contains("CFG-MODE=600"), log)
        let home = log.split(separator: "\n").first { $0.hasPrefix("HOME=") }.map { String($0.dropFirst(5)) } ?? ""
        XCTAssertTrue(home.hasPrefix("/var/tmp/proctor-agent-"), log)
        XCTAssertNotEqual(home, ProcessInfo.processInfo.environment["HOME"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: home), "the private home outlived the iteration")
        XCTAssertEqual(ws.filesContaining("secret-0c4e", under: ws.root), [])
    }

    /// Without `[agent] network = true` the agent reaches nothing, not even the host's loopback
    /// (the listener receives no connection); with it, it does.
    func testNetworkOnlyWhenAsked() throws {
        for network in [false, true] {
            let server = try ScriptedHTTPServer(
                [.respond(status: 200, headers: [], body: "{}"), .respond(status: 200, headers: [], body: "{}")],
                lifetime: 120)
            let fetch = """
                python3 -c 'import urllib.request; urllib.request.urlopen("\(server.baseURL)/exfiltrate", timeout=3)' \
                  && echo "network: reached" >> LOG.md || echo "network: blocked" >> LOG.md
                \(Self.good)
                """
            let ws = try LoopWorkspace(
                agent: """
                    [agent]
                    kind    = "command"
                    command = ["sh", "-c", \(tomlString(fetch))]
                    network = \(network)
                    timeout = "20s"
                    """)
            let outcome = try ws.run(iterations: 1)
            XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
            XCTAssertEqual(server.requests.count, network ? 1 : 0, "network = \(network)")
            XCTAssertTrue(ws.read("LOG.md")?.contains(network ? "network: reached" : "network: blocked") == true)
        }
    }

    /// A `[agent.home_files]` source this host lacks: every iteration was a crash row copying it. Now
    /// `proctor run` refuses (125) naming the file, line and key; `proctor status` still reads the runs.
    func testAMissingHomeFileRefusesTheRunButNotStatus() throws {
        let ws = try LoopWorkspace(
            agent: """
                [agent]
                kind    = "command"
                command = ["sh", "-c", "true"]

                [agent.home_files]
                "/nonexistent-home-file-7c1e" = ".tool/cfg"
                """)
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(outcome.status, 125, ws.describe(outcome))
        XCTAssertTrue(outcome.stderr.contains("proctor.toml:"), outcome.stderr)
        XCTAssertTrue(outcome.stderr.contains("agent.home_files./nonexistent-home-file-7c1e: expected an existing host file"), outcome.stderr)
        XCTAssertEqual(ws.statuses(), [])
        XCTAssertEqual(try ws.proctor(["status", "--workspace", ws.root]).status, 0)
    }

    /// `[agent] read_only` makes a CLI installed outside the system directories runnable, read-only.
    /// An agent that writes 300 files into a notes directory (it may create files there). Each
    /// notes file was hidden from the experiment by a mount of its own: the sandbox needed more
    /// than the launcher takes, and the run stopped (exit 125, blaming proctor.toml, iterations
    /// left in progress, the files in the tree for every --resume). The directory is one mount now,
    /// and the experiment still reads nothing of it. Where an editable file in it keeps the notes
    /// hidden one by one, the candidate is `rejected` for it, and the run goes on.
    func testThreeHundredNotesFilesNeitherStopTheRunNorReachTheExperiment() throws {
        let write = """
            for i in $(seq 1 300); do echo "NOTE-SECRET-$i" > notes/n$i.md; done
            \(Self.good)
            """
        let readsNotes = LoopWorkspace.train("0.2", extra: "print('notes seen:', os.listdir('notes') if os.path.isdir('notes') else None)\n")
        for editableInside in [false, true] {
            let ws = try LoopWorkspace(agent: """
                [agent]
                kind    = "command"
                command = ["sh", "-c", \(tomlString(write)), "agent", "{prompt_file}"]
                timeout = "30s"
                """, editable: editableInside ? "[\"train.py\", \"notes/params.py\"]" : "[\"train.py\"]",
                notes: "[\"LOG.md\", \"notes/\"]", files: ["notes/README.md": "# notes\n", "notes/params.py": "P = 1\n"],
                train: readsNotes)
            let outcome = try ws.run(iterations: 2)
            XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
            XCTAssertEqual(ws.rows().map { $0["iteration"] }, ["0", "1", "2"], ws.describe(outcome))
            if editableInside {
                XCTAssertEqual(ws.statuses(), ["keep", "rejected", "rejected"], ws.describe(outcome))
                XCTAssertTrue(ws.rows()[1]["description"]?.contains("more sandbox mounts than the 256 the launcher takes") ?? false, ws.describe(outcome))
            } else {
                XCTAssertEqual(ws.statuses().first, "keep", ws.describe(outcome))
                XCTAssertTrue(ws.statuses().dropFirst().contains("keep"), ws.describe(outcome))
                let logs = ws.filesContaining("notes seen:", under: ws.root + "/.proctor/logs")
                XCTAssertFalse(logs.isEmpty)
                XCTAssertEqual(ws.filesContaining("NOTE-SECRET", under: ws.root + "/.proctor/logs").filter { $0.contains("experiment") }, [],
                               "an experiment read the notes")
            }
        }
    }

    /// `--parallel 2`: a slow candidate measured while more than fifty others are recorded (the
    /// agent's later candidates write the locked evaluator: each `rejected` at once), some while
    /// its evaluator runs. Recording a row deletes the logs of iterations fifty back, and deleted
    /// the slow one's: its evaluator's output, read back from its log, was gone, and the candidate
    /// that scored was a `crash`, "the evaluator printed nothing". One still measured keeps them.
    func testASlowCandidateKeepsItsLogsWhileFiftyOthersAreRecorded() throws {
        let slow = LoopWorkspace.train("0.6", extra: "import time\nwhile os.path.exists('gate/block'): time.sleep(0.1)\n")
        let script = """
            if grep -q 'This is iteration 1\\.' "$1"; then
            cat > train.py <<'PROCTOR_EOF'
            \(slow)PROCTOR_EOF
            echo "SUMMARY: slow"; exit 0
            fi
            echo tampered >> prepare.py
            echo "SUMMARY: writes the evaluator"
            """
        let ws = try LoopWorkspace(agent: """
            [agent]
            kind    = "command"
            command = ["sh", "-c", \(tomlString(script)), "agent", "{prompt_file}"]
            timeout = "20s"
            """, prepare: LoopWorkspace.prepare.replacingOccurrences(of: "import json\n", with: "import json\nimport time\ntime.sleep(1)\n"),
            files: [".gitignore": "gate/\n"])
        try FileManager.default.createDirectory(atPath: ws.path("gate"), withIntermediateDirectories: true)
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: ws.path("gate/block")))
        let output = try CapturedOutput()
        let run = try startProcess([proctorBinary, "run", "--workspace", ws.root, "--iterations", "300", "--parallel", "2"],
                                   environment: ws.environment(["PROCTOR_MACHINE_SLOTS": "2"]), output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        // Iterations 2 to 56 recorded while the first one waits at the gate.
        XCTAssertTrue(waitUntil(timeout: 180, interval: 0.2) { ws.rows().contains { $0["iteration"] == "56" } || !run.isRunning },
                      output.stdout + output.stderr)
        XCTAssertFalse(ws.rows().contains { $0["iteration"] == "1" }, "the slow candidate was recorded before the others")
        // The slow one's evaluator takes a second: more rows are recorded meanwhile.
        unlink(ws.path("gate/block"))
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, output.stdout + output.stderr)
        run.waitUntilExit()
        XCTAssertEqual(exitStatus(run), 0, output.stdout + output.stderr)
        let first = try XCTUnwrap(ws.rows().first { $0["iteration"] == "1" }, output.stdout)
        XCTAssertEqual(first["status"], "keep", "\(first)")
        XCTAssertEqual(first["score"], "0.900000", "\(first)")
    }

    func testReadOnlyMakesTheAgentInstallationVisible() throws {
        var template = Array("/var/tmp/proctor-agentbin-XXXXXX".utf8CString)
        let dir = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { _ = try? runChild(["/bin/rm", "-rf", dir], environment: [:], deadline: 30) }
        chmod(dir, 0o755)
        let tool = dir + "/fake-agent"
        let body = """
            #!/bin/sh
            if grep -q 'This is iteration 2\\.' "$1"; then echo tampered >> "$0"; fi
            \(Self.good)

            """
        try Data(body.utf8).write(to: URL(fileURLWithPath: tool))
        chmod(tool, 0o755)
        let before = try XCTUnwrap(FileManager.default.contents(atPath: tool))
        let ws = try LoopWorkspace(
            agent: """
                [agent]
                kind      = "command"
                command   = [\(tomlString(tool)), "{prompt_file}"]
                read_only = [\(tomlString(dir))]
                timeout   = "20s"
                """)
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        // The tool ran (its edit was kept). In iteration 2 its attempt to modify itself was denied
        // and audited; a write outside the workspace is contained, not an attack on the score, so
        // the iteration goes on (and finds nothing changed).
        XCTAssertEqual(ws.statuses(), ["keep", "keep", "discard"], ws.describe(outcome))
        XCTAssertEqual(FileManager.default.contents(atPath: tool), before)
        XCTAssertTrue(
            deniedWrites(ws, iteration: 2).contains { $0["path"] as? String == tool }, "\(deniedWrites(ws, iteration: 2))")
    }
}

/// Single-quotes `text` for sh.
func shellQuote(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Polls the process table in the background, counting sightings of a marked process.
final class MarkerWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var sightings = 0
    private var running = true
    private let done = DispatchSemaphore(value: 0)

    /// Counts processes whose command line starts with `prefix` and contains `marker` (the
    /// launcher's own arguments hold the agent's script, marker included: not a sighting).
    init(_ marker: String, prefix: String) {
        let thread = Thread { [self] in
            while isRunning {
                if processes(containing: marker).contains(where: { $0.contains(": " + prefix) }) {
                    lock.lock()
                    sightings += 1
                    lock.unlock()
                }
                usleep(50_000)
            }
            done.signal()
        }
        thread.start()
    }

    private var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return sightings
    }

    func stop() {
        lock.lock()
        let first = running
        running = false
        lock.unlock()
        if first { done.wait() }
    }
}
