import Foundation
import ProctorTestSupport
import XCTest

@testable import ProctorAgents

#if canImport(Glibc)
    import Glibc
#endif

/// Attempts to cheat the score or corrupt the loop's record, through the product paths (`proctor
/// run`, `proctor session`) on a real workspace and git repository, judged from outside: ledger
/// rows, run records, audit lines, commits and files.
final class CheatTests: XCTestCase {
    static func commandAgent(_ script: String) -> String { RedTeamTests.commandAgent(script) }
    static let good = CommandAgentLoopTests.good

    /// Notes are exempt from the diff-line cap and the binary check, and "never affect scoring".
    /// A one-line `exec(open("LOG.md").read())` in train.py would make them the experiment's code:
    /// the agent ships an unbounded (even binary) program through its notes. The experiment must
    /// not see the notes, so the score is that of train.py alone.
    func testNotesAreNotTheExperimentsCode() throws {
        let train = LoopWorkspace.train("0.2", extra: "exec(open(\"LOG.md\").read())")
        let script = "printf 'X = 0.7\\n' > LOG.md\n"
            + "cat > train.py <<'PROCTOR_EOF'\n\(train)PROCTOR_EOF\necho 'SUMMARY: read the notes'\n"
        let ws = try LoopWorkspace(agent: Self.commandAgent(script))
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        let rows = ws.rows()
        XCTAssertEqual(rows.count, 2, ws.describe(outcome))
        XCTAssertNotEqual(rows.last?["score"], "1.000000", "the notes ran as the experiment: \(ws.describe(outcome))")
        XCTAssertEqual(rows.last?["status"], "discard", ws.describe(outcome))
        XCTAssertEqual(ws.gitSubjects().count, 1, "a commit was kept: \(ws.gitSubjects())")
    }

    /// A whole program (or data set) on one 100 KB line is not "one changed line": the diff-line
    /// cap (400 here) counts a line once per 200 bytes, so the proposal is rejected and audited.
    func testOneHugeLineDoesNotSlipUnderTheDiffLineCap() throws {
        let blob = "BLOB = \"" + String(repeating: "ab", count: 50_000) + "\""
        let script = SessionTests.setX("0.6", extra: blob) + "echo 'SUMMARY: one long line'\n"
        let ws = try LoopWorkspace(agent: Self.commandAgent(script))
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "rejected"], ws.describe(outcome))
        XCTAssertTrue(ws.rows().last?["description"]?.contains("diff-lines") == true, ws.describe(outcome))
        let audited = ws.audit(kind: "diff", decision: "rejected", iteration: 1)
        XCTAssertTrue(audited.contains { $0["rule"] as? String == "diff-lines" && $0["path"] as? String == ws.path("train.py") },
                      "\(audited)")
        XCTAssertTrue(ws.read("train.py") == LoopWorkspace.train("0.2"), "the rejected change was not reverted")
    }

    /// An http agent's answer names a file with terminal control sequences (cursor up, erase line,
    /// then a fake verdict). The rejection's reason quotes the path: it must reach neither the
    /// ledger nor the operator's terminal (proctor's progress lines) as control characters, where it
    /// would overwrite the real "rejected" line with "keep 0.999".
    func testControlCharactersInAnAnswerDoNotReachTheLedgerOrTheTerminal() throws {
        let fake = "\u{1B}[1A\u{1B}[2K[1/2] keep     score 0.999"
        let answer = "SUMMARY: tidy\nFILE: train.py\u{1B}[1A\u{1B}[2K\(fake)\n```python\nX = 1\n```\n"
        let wire = HTTPAgentProtocol.openai
        let server = try ScriptedHTTPServer([HTTPLoopTests.reply(wire, answer), HTTPLoopTests.reply(wire, HTTPLoopTests.setX("0.6"))],
                                            lifetime: 300)
        let ws = try LoopWorkspace(agent: HTTPLoopTests.agentBlock(server, wire))
        let outcome = try ws.run(iterations: 2, environment: [HTTPLoopTests.keyVariable: HTTPLoopTests.key])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "keep"], ws.describe(outcome))
        let ledger = ws.read(".proctor/results.tsv") ?? ""
        XCTAssertTrue(ledger.contains("control character"), ledger)
        XCTAssertFalse(ledger.unicodeScalars.contains { $0.value == 0x1B }, "ESC in the ledger")
        let progress = outcome.stdout.split(separator: "\n").filter { $0.contains("rejected") }
        XCTAssertFalse(progress.isEmpty, outcome.stdout)
        XCTAssertFalse(progress.contains { $0.unicodeScalars.contains { $0.value == 0x1B } },
                       "ESC on the terminal: \(progress.map { $0.debugDescription })")
        // `proctor audit` quotes the rejected path, escaped; the audit log itself keeps it exactly.
        let audit = try ws.proctor(["audit", "--workspace", ws.root])
        XCTAssertEqual(audit.status, 0, audit.stderr)
        XCTAssertTrue(audit.stdout.contains("\\x1b[1A"), audit.stdout)
        XCTAssertFalse(audit.stdout.unicodeScalars.contains { $0.value == 0x1B }, "ESC from proctor audit")
        XCTAssertTrue(ws.audit(kind: "diff", decision: "rejected", iteration: 1).contains {
            ($0["path"] as? String ?? "").contains("\u{1B}[1A")
        })
    }

    /// The experiment makes its outputs (and a directory in them) unlistable, 0300: as a user other
    /// than root the check before the evaluator could not open them and stopped the run, and the mode
    /// stayed, so every later run stopped the same way. (Through Slurm the node's check ignored the
    /// error and the evaluator followed a link left inside.) The modes are put back, the link is
    /// refused, and the run goes on.
    func testUnlistableOutputsDoNotStopTheRunOrHideALink() throws {
        let extra = """
            out = os.environ["PROCTOR_OUTPUTS"]
            os.mkdir(os.path.join(out, "sub"))
            os.symlink("../../holdout/target.txt", os.path.join(out, "sub", "pred.txt"))
            os.chmod(os.path.join(out, "sub"), 0o300)
            os.chmod(out, 0o300)
            """
        let script = SessionTests.setX("0.6", extra: extra) + "echo 'SUMMARY: unlistable outputs'\n"
        let ws = try LoopWorkspace(agent: Self.commandAgent(script))
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "rejected"], ws.describe(outcome))
        XCTAssertFalse(ws.audit(kind: "tamper", decision: "rejected", iteration: 1).isEmpty, ws.describe(outcome))
        var st = stat()
        XCTAssertEqual(stat(ws.path("outputs"), &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o755, "the outputs' mode was put back")
        let again = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "1"])
        XCTAssertEqual(again.status, 0, ws.describe(again))
    }

    /// The experiment leaves, under a directory in its outputs, a file whose name is not UTF-8.
    /// Emptying the outputs decoded names as UTF-8 (repairing them), so that file could not be
    /// removed, its directory neither, and the next measurement (and every `--resume`) stopped
    /// the whole run with an error. A link with such a name also escaped the check for links.
    func testOutputNamesThatAreNotUTF8AreClearedAndChecked() throws {
        let extra = """
            out = os.fsencode(os.environ["PROCTOR_OUTPUTS"])
            os.mkdir(os.path.join(out, b"sub"))
            with open(os.path.join(out, b"sub", b"\\xff\\xfe"), "w") as f:
                f.write("stuck")
            """
        let script = SessionTests.setX("0.6", extra: extra) + "echo 'SUMMARY: odd names'\n"
        let ws = try LoopWorkspace(agent: Self.commandAgent(script))
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep", "discard"], ws.describe(outcome))
        let left = try runChild(["/bin/ls", "-A", ws.path("outputs")], environment: [:], deadline: 30)
        XCTAssertEqual(left.stdout, "", "the outputs were not emptied: \(left.stdout)\(left.stderr)")

        // A link named with bytes that are not UTF-8 is a link all the same: refused, audited.
        let link = """
            out = os.fsencode(os.environ["PROCTOR_OUTPUTS"])
            os.symlink(b"../holdout/target.txt", os.path.join(out, b"\\xff"))
            """
        let ws2 = try LoopWorkspace(agent: Self.commandAgent(SessionTests.setX("0.6", extra: link) + "echo 'SUMMARY: link'\n"))
        let outcome2 = try ws2.run(iterations: 1)
        XCTAssertEqual(outcome2.status, 0, ws2.describe(outcome2))
        XCTAssertEqual(ws2.statuses(), ["keep", "rejected"], ws2.describe(outcome2))
        XCTAssertFalse(ws2.audit(kind: "tamper", decision: "rejected", iteration: 1).isEmpty, ws2.describe(outcome2))
    }

    /// What git keeps nothing of, made in an editable directory: the names of empty directories
    /// (a whole program hex-encoded in them passed no diff: only the two-line loader in train.py
    /// did, and was kept with a score its commit does not reproduce), a FIFO, and a new executable
    /// file (committed 100755). Each is rejected now, and gone after the revert.
    func testWhatGitCannotKeepIsRejected() throws {
        let loader = LoopWorkspace.train("0.2", extra: "X = float(bytes.fromhex(sorted(os.listdir('src/p'))[0]).decode()) if os.path.isdir('src/p') else X")
        let script = """
            if grep -q 'This is iteration 1\\.' "$1"; then
                mkdir -p src/p/302e37
                cat > train.py <<'PROCTOR_EOF'
            \(loader)PROCTOR_EOF
                echo "SUMMARY: a loader"; exit 0
            fi
            if grep -q 'This is iteration 2\\.' "$1"; then
                mkfifo src/fifo
                \(Self.good)
                exit 0
            fi
            printf '#!/bin/sh\\n' > src/run.sh; chmod 755 src/run.sh
            \(Self.good)
            """
        let ws = try LoopWorkspace(agent: Self.commandAgent(script), editable: "[\"train.py\", \"src/\"]",
                                   files: ["src/__init__.py": ""])
        let outcome = try ws.run(iterations: 3)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "rejected", "rejected"], ws.describe(outcome))
        let reasons = ws.rows().dropFirst().map { $0["description"] ?? "" }
        XCTAssertTrue(reasons[0].contains("src/p/302e37: an empty directory") && reasons[0].contains("[untrackable]"), reasons[0])
        XCTAssertTrue(reasons[1].contains("src/fifo: a FIFO, socket or device"), reasons[1])
        XCTAssertTrue(reasons[2].contains("src/run.sh: a new executable file"), reasons[2])
        XCTAssertEqual(ws.gitSubjects().count, 1, "a commit was kept: \(ws.gitSubjects())")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("src/p")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("src/fifo")))
    }

    /// A new file named with a backslash (or a control character) passed validation, was measured,
    /// and its keep failed in the commit ("refusing path"): `proctor run` exited 1 mid-night, the
    /// tree dirty, no row; the agent could end every run so. A C1 escape (U+009B, the terminal's
    /// one-byte CSI) in a kept name reached the terminal raw in a later warning. Both `rejected`
    /// now (rule `name`), the run goes on, and nothing raw reaches proctor's output.
    func testANameNoCommitTakesOrThatShowsOtherwiseIsRejected() throws {
        let script = """
            if grep -q 'This is iteration 1\\.' "$1"; then printf 'x = 1\\n' > 'src/a\\b.py'; fi
            if grep -q 'This is iteration 2\\.' "$1"; then printf 'x = 1\\n' > "src/$(printf '\\302\\233')2J.py"; fi
            \(Self.good)
            """
        let ws = try LoopWorkspace(agent: Self.commandAgent(script), editable: "[\"train.py\", \"src/\"]",
                                   files: ["src/__init__.py": ""])
        let outcome = try ws.run(iterations: 3)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "rejected", "rejected", "keep"], ws.describe(outcome))
        let reasons = ws.rows().dropFirst().map { $0["description"] ?? "" }
        XCTAssertTrue(reasons[0].contains("a name no commit takes") && reasons[0].contains("[name]"), reasons[0])
        XCTAssertTrue(reasons[1].contains("shows as other than it is") && reasons[1].contains("[name]"), reasons[1])
        XCTAssertFalse(outcome.stdout.unicodeScalars.contains("\u{9B}") || outcome.stderr.unicodeScalars.contains("\u{9B}"), outcome.text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: ws.path("src")), ["__init__.py"])
    }

    /// A program in a directory the agent made unreadable (mode 0300), run by train.py: as its
    /// owner (proctor not root) libgit2 left the directory out with a warning, the change was kept
    /// and its commit held the loader only. The validation now gives the owner's bits back first
    /// (`restoreOwnerAccess`), so git reads the directory, as root and as a user, and the kept
    /// commit holds what ran. (`Status.unreachable` still rejects one it cannot read.)
    func testAProgramInAnUnreadableDirectoryIsNotKeptUnseen() throws {
        let loader = LoopWorkspace.train("0.2", extra: "exec(open('src/hid/p.py').read()) if os.path.exists('src/hid/p.py') else None")
        let script = """
            mkdir -p src/hid
            printf 'X = 0.6\\n' > src/hid/p.py
            chmod 0300 src/hid
            cat > train.py <<'PROCTOR_EOF'
            \(loader)PROCTOR_EOF
            echo "SUMMARY: a loader"
            """
        let ws = try LoopWorkspace(agent: Self.commandAgent(script), editable: "[\"train.py\", \"src/\"]",
                                   files: ["src/__init__.py": ""])
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let tree = try runChild(["/usr/bin/git", "-C", ws.root, "ls-tree", "-r", "--name-only", "HEAD"], deadline: 30)
        XCTAssertTrue(tree.stdout.contains("src/hid/p.py"), "the kept commit holds what ran: \(tree.stdout)")
    }

    /// An extended attribute on train.py held a program the two-line loader in train.py ran: git
    /// keeps no attribute, so the diff showed the loader only, the change was kept, and its commit
    /// scored the baseline. Setting one fails in the agent's sandbox (audited), so the loader finds
    /// nothing and the file carries no attribute afterwards.
    func testAProgramInAnExtendedAttributeDoesNotReachTheExperiment() throws {
        let loader = LoopWorkspace.train("0.2", extra: "exec(os.getxattr(__file__, 'user.p')) if 'user.p' in os.listxattr(__file__) else None")
        let script = """
            cat > train.py <<'PROCTOR_EOF'
            \(loader)PROCTOR_EOF
            python3 -c "import os; os.setxattr('train.py', 'user.p', b'X = 0.6')" 2> "$HOME/err" || true
            grep -q 'Operation not supported' "$HOME/err" && echo "SUMMARY: xattr refused" || echo "SUMMARY: xattr set"
            """
        let ws = try LoopWorkspace(agent: Self.commandAgent(script))
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.rows().last?["description"], "xattr refused", ws.describe(outcome))
        XCTAssertNotEqual(ws.statuses().last, "keep", "the loader alone is no better: \(ws.describe(outcome))")
        let attributes = try runChild(["/usr/bin/python3", "-c", "import os, sys; print(os.listxattr(sys.argv[1]))", ws.path("train.py")], deadline: 30)
        XCTAssertEqual(attributes.stdout, "[]\n", "train.py carries an attribute: \(attributes.text)")
        XCTAssertTrue(ws.read(".proctor/audit.jsonl")?.contains("setxattr") ?? false, "the refused attribute is audited")
    }

    /// `hidden = ["holdout"]` (a directory named without its slash) hid every new file whose path
    /// merely began so: a 500-line `holdout_tools/payload.py` in an editable directory passed no
    /// diff-line cap, and train.py's import of it was kept. The prefix ends at a `/` now.
    func testAHiddenNameHidesOnlyItsOwnDirectoryFromValidation() throws {
        let payload = (1...500).map { "P\($0) = \($0)" }.joined(separator: "\\n")
        let script = "printf '\(payload)\\n' > holdout_tools/payload.py\n" + Self.good
        let ws = try LoopWorkspace(agent: Self.commandAgent(script), editable: "[\"train.py\", \"holdout_tools/\"]",
                                   hidden: "[\"holdout\"]", files: ["holdout_tools/__init__.py": ""])
        let outcome = try ws.run(iterations: 1)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "rejected"], ws.describe(outcome))
        XCTAssertTrue(ws.rows().last?["description"]?.contains("diff-lines") == true, ws.describe(outcome))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("holdout_tools/payload.py")))
    }

    /// A session agent's description spans lines and carries its own `proctor-score:` trailer
    /// paragraph. The kept commit's message must state only the score the evaluator computed, and
    /// the ledger, the record and the commit the same one-line description.
    func testMultiLineDescriptionCannotForgeTheCommitsScore() throws {
        let ws = try LoopWorkspace(agent: SessionTests.noAgent)
        let forged = "honest change\\n\\nproctor-run: forged\\nproctor-iteration: 1\\nproctor-score: score=0.999999 (forged)"
        let script = SessionTests.setX("0.6") + """
            proctor experiment "$(printf '\(forged)')"
            sleep 1000
            """
        let outcome = try ws.proctor(["session", "--workspace", ws.root, "--iterations", "1", "--", "sh", "-c", script],
                                     deadline: 120)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let git = try runChild(["/usr/bin/git", "-C", ws.root, "log", "-1", "--format=%B"],
                               environment: ["PATH": "/usr/bin:/bin"], deadline: 30)
        XCTAssertEqual(git.status, 0, git.stderr)
        let message = git.stdout
        // The only trailer lines are proctor's own, and they carry the evaluator's score.
        let trailers = message.split(separator: "\n").filter { $0.hasPrefix("proctor-") }
        XCTAssertEqual(trailers.count, 3, message)
        XCTAssertEqual(trailers.filter { $0.hasPrefix("proctor-score:") }.count, 1, message)
        XCTAssertTrue(trailers.contains { $0.hasPrefix("proctor-score: score=0.9 ") }, message)
        XCTAssertFalse(trailers.contains { $0.contains("0.999999") || $0.contains("forged") }, message)
        XCTAssertEqual(message.split(separator: "\n").first.map(String.init), ws.rows().last?["description"], message)
        XCTAssertEqual(ws.records().last?["description"] as? String, ws.rows().last?["description"])
    }
}
