import Foundation
import XCTest
import ProctorTestSupport

/// Issue 3, step 3: a diff that breaks the policy is `rejected`, recorded in the ledger and the audit with
/// absolute paths, and the tree is restored exactly. `proctor check` runs the same validation alone.
final class DiffValidationTests: XCTestCase {
    /// An agent that writes only what its sandbox lets it write (train.py, LOG.md, in place) but
    /// still breaks the diff policy, one way per iteration.
    func testRejectedDiffsAreRecordedAndRestored() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) for n in $(seq 1 30); do echo "# padding line $n" >> train.py; done; echo "SUMMARY: too many lines" ;;
            2) printf 'X = 0.3\\000\\001\\002\\n' >> train.py; echo "SUMMARY: binary bytes" ;;
            3) chmod 755 train.py; echo "SUMMARY: made train.py executable" ;;
            4) set_var X 0.69; echo "note" >> LOG.md; echo "SUMMARY: a legal change" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let before = ws.snapshot()
        let initCommit = try ws.git(["rev-parse", "HEAD"])

        let result = try ws.run(["--iterations", "4"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4])

        let expectedRule = [1: "diff-lines", 2: "binary", 3: "mode"]
        for (iteration, rule) in expectedRule {
            let row = try XCTUnwrap(ws.row(iteration))
            XCTAssertEqual(row.status, "rejected", "iteration \(iteration): \(row.fields)")
            XCTAssertEqual(row.commit, "", "a rejected iteration has no commit")
            XCTAssertNil(row.score, "a rejected diff is never scored")
            XCTAssertTrue(row.description.contains(rule), "iteration \(iteration): \(row.description)")
            let audit = ws.audit.filter { $0["iteration"] as? Int == iteration && $0["kind"] as? String == "diff" }
            XCTAssertFalse(audit.isEmpty, "no diff audit record for iteration \(iteration)")
            for record in audit {
                XCTAssertEqual(record["decision"] as? String, "rejected")
                XCTAssertEqual(record["path"] as? String, ws.path("train.py"), "audit paths are absolute")
                XCTAssertEqual(record["run"] as? String, ws.runID)
                XCTAssertNotNil(record["time"] as? String)
            }
            XCTAssertTrue(audit.contains { $0["rule"] as? String == rule }, "rule \(rule) in \(audit)")
            let record = try XCTUnwrap(ws.record(iteration))
            XCTAssertEqual(record["status"] as? String, "rejected")
            XCTAssertFalse((record["violations"] as? [String] ?? []).isEmpty)
            XCTAssertEqual((record["scores"] as? [Any])?.count, 0, "nothing ran for a rejected diff")
        }
        // No experiment ran for a rejected diff: only the baseline's and iteration 4's logs exist
        // (and every iteration's agent transcript).
        let logs = try FileManager.default.contentsOfDirectory(atPath: ws.path(".proctor/logs/\(ws.runID!)"))
            .filter { !$0.hasSuffix("-agent.log") }
        XCTAssertFalse(logs.contains { $0.hasPrefix("1-") || $0.hasPrefix("2-") || $0.hasPrefix("3-") }, "\(logs)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: ws.path(".proctor/logs/\(ws.runID!)/1-agent.log")))

        // `proctor audit` summarises the rejections by rule, with the paths.
        let summary = try ws.proctor(["audit", "--workspace", ws.root, "--json", "--run", ws.runID!])
        XCTAssertEqual(summary.status, 0, summary.text)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(summary.stdout.utf8)) as? [String: Any])
        let groups = (json["groups"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "diff" }
        XCTAssertEqual(Set(groups.compactMap { $0["rule"] as? String }), ["diff-lines", "binary", "mode"], "\(groups)")
        for group in groups {
            XCTAssertEqual(group["decision"] as? String, "rejected")
            XCTAssertEqual(group["paths"] as? [String], [ws.path("train.py")])
        }
        // A run id that is no run (a typo) said "0 audit records", exit 0: now refused, naming the runs.
        let typo = try ws.proctor(["audit", "--workspace", ws.root, "--run", ws.runID! + "x"])
        XCTAssertEqual(typo.status, 125, typo.text)
        XCTAssertTrue(typo.stderr.contains("no such run") && typo.stderr.contains(ws.runID!), typo.stderr)

        // The legal change after three rejections is scored against the untouched baseline.
        let legal = try XCTUnwrap(ws.row(4))
        XCTAssertEqual(legal.status, "keep", legal.fields.joined(separator: " "))

        // The tree of the kept commit; nothing of the rejected attempts survives.
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.ignoredLeftovers(), [])
        var expected = before
        expected["train.py"] = Data(spec.train.replacingOccurrences(of: "X = 0.2 ", with: "X = 0.69 ").utf8)
        expected["LOG.md"] = nil
        var snapshot = ws.snapshot()
        let notes = snapshot.removeValue(forKey: "LOG.md").map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(snapshot, expected)
        XCTAssertEqual(agentNotes(notes), "# notes\nnote\n")
        XCTAssertTrue(notes?.contains("(proctor)") == true, notes ?? "")
        var st = stat()
        XCTAssertEqual(lstat(ws.path("train.py"), &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o644, "the mode change was reverted")
        XCTAssertEqual(try ws.git(["rev-parse", "HEAD^"]), initCommit)
    }

    /// A rejected attempt is undone byte for byte, and restoring does not depend on what the agent
    /// wrote: the tree equals the init commit, no leftovers, `git status` clean.
    func testRejectedDiffLeavesTreeBytesIdentical() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            for n in $(seq 1 40); do echo "print($n)" >> train.py; done
            printf 'scribbles\\n' > LOG.md
            echo "SUMMARY: a long edit"
            """
        let ws = try LoopWorkspace(spec)
        let before = ws.snapshot()
        let head = try ws.git(["rev-parse", "HEAD"])
        let result = try ws.run(["--iterations", "2"])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "rejected", "rejected"])
        XCTAssertEqual(ws.snapshot(), before)
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.ignoredLeftovers(), [])
        XCTAssertEqual(try ws.git(["rev-parse", "HEAD"]), head, "no commit for a rejected diff")
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), ws.branch)
        XCTAssertEqual(try ws.git(["rev-parse", ws.branch!]), head)
    }

    /// Two names Swift takes for one (`café.py` precomposed and decomposed: other bytes, two files
    /// on disk and in git) were one change: the experiment read both, the keep committed one, and the
    /// revert left the other. Each twin is now its own change, rejected by name: beside another new
    /// one, or beside a committed one; the revert removes both.
    func testNamesInTwoUnicodeFormsAreRejected() throws {
        var spec = WorkspaceSpec()
        spec.files = spec.files.replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"train.py\", \"src/**\"]")
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) printf 'A = 1\\n' > "src/caf$(printf '\\303\\251').py"; printf 'B = 2\\n' > "src/cafe$(printf '\\314\\201').py"; echo "SUMMARY: twins" ;;
            2) printf 'A = 1\\n' > "src/caf$(printf '\\303\\251').py"; set_var X 0.6; echo "SUMMARY: one form" ;;
            3) printf 'B = 2\\n' > "src/cafe$(printf '\\314\\201').py"; echo "SUMMARY: the twin of a kept one" ;;
            esac
            """
        let ws = try LoopWorkspace(spec, files: ["src/lib.py": "X = 0\n"])
        let result = try ws.run(["--iterations", "3"])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "rejected", "keep", "rejected"], result.text)
        XCTAssertTrue(ws.row(1)?.description.contains("has this name in another Unicode form") == true, ws.row(1)?.description ?? "")
        XCTAssertTrue(ws.row(3)?.description.contains("the committed src/caf\\u{e9}.py has this name in another Unicode form") == true,
                      ws.row(3)?.description ?? "")
        let names = try FileManager.default.contentsOfDirectory(atPath: ws.path("src")).map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
        XCTAssertEqual(names, [Array("caf\u{e9}.py".utf8), Array("lib.py".utf8)], "the decomposed twins went with the reverts")
        XCTAssertEqual(try ws.gitStatus(), "")
    }

    /// An editable directory (`src/**`) is writable as a whole in the agent sandbox, so the agent can make
    /// links, write binaries and nest repositories there; each is rejected in the loop and undone, and a
    /// legal new file in it is kept. (Existing files are bind mounts of their own there, so deleting or
    /// renaming them fails in the sandbox; `proctor check` covers those rules.)
    func testAgentWithAnEditableDirectory() throws {
        var spec = WorkspaceSpec()
        spec.files = spec.files.replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"train.py\", \"src/**\"]")
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) ln -s ../prepare.py src/evil.py; echo "SUMMARY: link" ;;
            2) printf 'x = 1\\000\\001\\n' > src/blob.py; echo "SUMMARY: binary" ;;
            3) mkdir -p src/sub && cd src/sub && git init -q . && echo x > f && cd ../.. ; echo "SUMMARY: nested repository" ;;
            4) ln -s /etc/passwd src/util/passwd; echo 'y = 2' >> src/util/helpers.py; echo "SUMMARY: link deeper" ;;
            5) echo 'z = 3' > src/new.py; set_var X 0.69; echo "SUMMARY: new module" ;;
            esac
            """
        let ws = try LoopWorkspace(spec, files: ["src/model.py": "W = 1\n", "src/util/helpers.py": "def h():\n    return 1\n"])
        let result = try ws.run(["--iterations", "5"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: Array(0...5))
        let expected: [Int: ([String], String)] = [
            1: (["symlink"], "src/evil.py"), 2: (["binary"], "src/blob.py"), 3: (["submodule", "new-file"], "src/sub"),
            4: (["symlink"], "src/util/passwd"),
        ]
        for (iteration, (rules, path)) in expected.sorted(by: { $0.key < $1.key }) {
            let row = try XCTUnwrap(ws.row(iteration))
            XCTAssertEqual(row.status, "rejected", "iteration \(iteration): \(row.fields)")
            let audit = ws.audit.filter { $0["iteration"] as? Int == iteration && $0["kind"] as? String == "diff" }
            XCTAssertTrue(audit.contains { rules.contains($0["rule"] as? String ?? "") && ($0["path"] as? String ?? "").hasPrefix(ws.path(path)) },
                          "iteration \(iteration): expected \(rules) on \(path) in \(audit)")
            XCTAssertTrue(audit.allSatisfy { ($0["path"] as? String ?? "").hasPrefix(ws.root + "/") }, "absolute paths: \(audit)")
        }
        let kept = try XCTUnwrap(ws.row(5))
        XCTAssertEqual(kept.status, "keep", kept.fields.joined(separator: " "))
        // The change, and proctor's log entries in the notes' LOG.md.
        XCTAssertEqual(try ws.git(["show", "--name-only", "--format=", "HEAD"]).split(separator: "\n").sorted(), ["LOG.md", "src/new.py", "train.py"])
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.ignoredLeftovers(), [])
        XCTAssertEqual(ws.read("src/model.py"), "W = 1\n")
        XCTAssertEqual(ws.read("src/util/helpers.py"), "def h():\n    return 1\n")
        for gone in ["src/evil.py", "src/blob.py", "src/sub", "src/util/passwd"] {
            var st = stat()
            XCTAssertNotEqual(lstat(ws.path(gone), &st), 0, "\(gone) survived the restore")
        }
    }

    /// git attributes change what libgit2 sees of a file: with `ident`, `$Id: any code$` reads as
    /// `$Id$`, so code there was in no diff, no line count and (at the same size) no status, yet ran
    /// (found from outside: a payload ran, the ledger said 0 lines). An agent's `.gitattributes` in its
    /// editable directory is rejected and removed; a committed one that rewrites an editable file
    /// refuses the run before anything is measured.
    func testGitAttributesCannotHideAChange() throws {
        let ws = try assertRejectedAndRemoved("""
            1) printf '*.py ident\\n' > src/.gitattributes; printf 'W = "$Id: import os$"\\n' > src/model.py; echo "SUMMARY: attributes" ;;
            2) set_var X 0.69; echo "SUMMARY: plain" ;;
            """, statuses: ["keep", "rejected", "keep"], rule: "attributes")
        let audit = ws.audit.filter { $0["iteration"] as? Int == 1 && $0["kind"] as? String == "diff" }
        XCTAssertTrue(audit.contains { $0["rule"] as? String == "attributes" && $0["path"] as? String == ws.path("src/.gitattributes") }, "\(audit)")
        XCTAssertTrue(audit.contains { $0["rule"] as? String == "attributes" && $0["path"] as? String == ws.path("src/model.py") }, "\(audit)")
        var st = stat()
        XCTAssertNotEqual(lstat(ws.path("src/.gitattributes"), &st), 0, "the agent's .gitattributes survived the revert")
        XCTAssertEqual(ws.read("src/model.py"), "W = 1\n")

        // Committed by the user: the run is refused at once, naming the file and the attribute.
        let committed = try LoopWorkspace(WorkspaceSpec(), files: [".gitattributes": "*.py ident\n"])
        let refused = try committed.run(["--iterations", "1"])
        XCTAssertEqual(refused.status, 125, refused.text)
        XCTAssertTrue(refused.stderr.contains("train.py: the git attribute `ident`"), refused.stderr)
        XCTAssertNil(committed.branch, "nothing was measured")
        XCTAssertEqual(committed.rows.count, 0)
    }

    /// Directories nested 99 deep, or 20 deep with 255-byte names, in the agent's editable directory:
    /// libgit2 then failed the whole status ("directory nesting too deep", "invalid path"), so the
    /// run stopped with exit 1, no row, the tree unrestored (and 10,000 levels made every resume
    /// crash). Rejected now (rule unreachable), removed, and the run goes on.
    func testDirectoriesTooDeepForGitAreRejectedAndRemoved() throws {
        let long = String(repeating: "L", count: 255)
        try assertRejectedAndRemoved("""
            1) (cd src && for n in $(seq 99); do mkdir d && cd d; done && echo x > f); set_var X 0.6; echo "SUMMARY: deep" ;;
            2) (cd src && for n in $(seq 20); do mkdir \(long) && cd \(long); done && echo x > f); set_var X 0.6; echo "SUMMARY: long" ;;
            3) set_var X 0.69; echo "SUMMARY: plain" ;;
            """, statuses: ["keep", "rejected", "rejected", "keep"], rule: "unreachable")
    }

    /// A file whose name is not UTF-8, made by the agent in its editable directory: Swift strings
    /// repair such names, so the path read back from git named no file. The change was "no change"
    /// and the file outlived every revert (state carried outside git from one iteration to the
    /// next, and a keep whose commit lacked it). Now rejected, audited, and removed.
    func testAFileNamedWithBytesThatAreNotUTF8() throws {
        try assertRejectedAndRemoved("""
            1) printf 'x = 1\\n' > "src/$(printf 'a\\377b').py"; echo "SUMMARY: odd name" ;;
            2) printf 'y = 2\\n' > "src/$(printf 'c\\376').py"; set_var X 0.69; echo "SUMMARY: odd name and a change" ;;
            """, statuses: ["keep", "rejected", "rejected"], rule: "name-not-utf8")
    }

    /// A rejection of many files: the audit has a line for each, and the run record lists the
    /// first of them and counts the rest (every path in the reason and in `violations` made a
    /// 50,000-file rejection write megabytes into runs.jsonl, which the memory reads every iteration).
    func testARejectionOfManyFilesIsCountedNotListedInTheLedger() throws {
        let ws = try assertRejectedAndRemoved("""
            1) for n in $(seq 150); do printf 'a\\000' > "src/f$n.bin"; done; echo "SUMMARY: binaries" ;;
            """, statuses: ["keep", "rejected"], rule: "binary")
        let audit = ws.audit.filter { $0["iteration"] as? Int == 1 && $0["kind"] as? String == "diff" }
        XCTAssertEqual(audit.filter { $0["rule"] as? String == "binary" }.count, 150, "every rejected file is audited")
        let record = try XCTUnwrap(ws.record(1))
        let reason = try XCTUnwrap(record["reason"] as? String)
        XCTAssertTrue(reason.hasSuffix("; and \(audit.count - 20) more (each in the audit log)"), reason)
        XCTAssertEqual(reason.components(separatedBy: " [binary]").count + reason.components(separatedBy: " [diff-lines]").count - 2, 20, reason)
        XCTAssertTrue(reason.contains(", and 140 more files; a line counts once per"), reason)
        let violations = try XCTUnwrap(record["violations"] as? [String])
        XCTAssertEqual(violations.count, 101)
        XCTAssertEqual(violations.last, "and \(audit.count - 100) more (each in the audit log)")
        let line = try XCTUnwrap(String(contentsOfFile: ws.path(".proctor/runs.jsonl"), encoding: .utf8)
            .split(separator: "\n").last)
        XCTAssertLessThan(line.utf8.count, 15_000, "the record of a 150-file rejection (over 30,000 bytes when every path was listed)")
        // The forced log agents read (and the workspace's LOG.md commits) names twenty and counts the rest.
        let log = try String(contentsOfFile: ws.path(".proctor/memory/LOG.md"), encoding: .utf8)
        let change = try XCTUnwrap(log.split(separator: "\n").first { $0.hasPrefix("- change: ") }, log)
        XCTAssertEqual(change.components(separatedBy: ".bin`").count - 1, 20, String(change))
        XCTAssertTrue(change.contains(".bin`, and 130 more files, +"), String(change))
    }

    /// Runs an agent whose `case "$i"` branches are `cases`, with `src/**` editable (holding a
    /// committed model.py, and `files` besides); the rows must have `statuses`, each rejected
    /// iteration's audit must name `rule`, and src/ must hold its model.py alone again, the tree clean.
    @discardableResult
    func assertRejectedAndRemoved(_ cases: String, statuses: [String], rule: String, files: [String: String] = [:],
                                  file: StaticString = #filePath, line: UInt = #line) throws -> LoopWorkspace {
        var spec = WorkspaceSpec()
        spec.files = spec.files.replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"train.py\", \"src/**\"]")
        spec.agentScript = agentPrelude + "case \"$i\" in\n" + cases + "\nesac\n"
        let ws = try LoopWorkspace(spec, files: files.merging(["src/model.py": "W = 1\n"]) { $1 })
        let result = try ws.run(["--iterations", String(statuses.count - 1)])
        XCTAssertEqual(result.status, 0, result.text, file: file, line: line)
        XCTAssertEqual(ws.rows.map(\.status), statuses, result.text, file: file, line: line)
        for (iteration, status) in statuses.enumerated() where status == "rejected" {
            let audit = ws.audit.filter { $0["iteration"] as? Int == iteration && $0["kind"] as? String == "diff" }
            XCTAssertTrue(audit.contains { $0["rule"] as? String == rule }, "\(audit)", file: file, line: line)
        }
        let left = try runChild(["/bin/ls", "-A", ws.path("src")], environment: [:], deadline: 30)
        XCTAssertEqual(left.stdout, "model.py\n", file: file, line: line)
        XCTAssertEqual(try ws.gitStatus(), "", file: file, line: line)
        return ws
    }

    /// With `text` (or `eol`, `* text=auto`) git turns CRLF into LF before hashing and diffing: an
    /// agent that rewrote every line of train.py with CRLF endings showed 1 changed line. A changed
    /// file that git converts and that holds a CRLF is rejected (rule attributes); `text` alone,
    /// on files without CR, changes nothing.
    func testConvertedLineEndingsCannotHideAChange() throws {
        let ws = try assertRejectedAndRemoved("""
            1) set_var X 0.6; sed 's/$/\\r/' train.py > "$HOME/t" && cat "$HOME/t" > train.py; echo "SUMMARY: crlf" ;;
            2) set_var X 0.69; echo "SUMMARY: plain" ;;
            """, statuses: ["keep", "rejected", "keep"], rule: "attributes", files: [".gitattributes": "*.py text\n"])
        let audit = ws.audit.filter { $0["iteration"] as? Int == 1 && $0["kind"] as? String == "diff" }
        XCTAssertTrue(audit.contains { $0["rule"] as? String == "attributes" && ($0["detail"] as? String ?? "").contains("text/eol") }, "\(audit)")
        XCTAssertFalse(ws.read("train.py")!.contains("\r"))
    }

    /// Only the line endings of another tracked file changed, under `*.py text` (or `* text=auto`):
    /// git reads each CRLF as LF, so the file was no change at all (status, diff, the keep's
    /// commit) while the experiment read which of its lines end in CR, and the revert left them.
    /// Rejected now, and the revert gives the file back its bytes.
    func testLineEndingsAloneAreAChange() throws {
        let ws = try assertRejectedAndRemoved("""
            1) set_var X 0.6; sed 's/$/\\r/' src/model.py > "$HOME/t" && cat "$HOME/t" > src/model.py; echo "SUMMARY: crlf elsewhere" ;;
            2) set_var X 0.69; echo "SUMMARY: plain" ;;
            """, statuses: ["keep", "rejected", "keep"], rule: "attributes", files: [".gitattributes": "* text=auto\n"])
        let audit = ws.audit.filter { $0["iteration"] as? Int == 1 && $0["kind"] as? String == "diff" }
        XCTAssertTrue(audit.contains { $0["rule"] as? String == "attributes" && $0["path"] as? String == ws.path("src/model.py") }, "\(audit)")
        XCTAssertEqual(ws.read("src/model.py"), "W = 1\n")
    }

    /// A git setting under which status trusts what an agent can put back (a same-size edit with its
    /// time restored passed unseen with `core.trustctime = false`) or reads CRLF as LF: the run is
    /// refused at the start, naming the setting and the command that overrides it for the workspace.
    func testAnUntrustworthyGitSettingRefusesTheStart() throws {
        for (key, value) in [("core.trustctime", "false"), ("core.autocrlf", "input"), ("core.checkStat", "minimal")] {
            let ws = try LoopWorkspace()
            _ = try ws.git(["config", key, value])
            let check = try ws.proctor(["check", "--workspace", ws.root])
            XCTAssertTrue(check.stdout.contains("git configuration: \(key) = \(value)"), check.text)
            let refused = try ws.run(["--iterations", "1"])
            XCTAssertEqual(refused.status, 125, refused.text)
            XCTAssertTrue(refused.stderr.contains("\(key) = \(value)") && refused.stderr.contains("git -C \(ws.root) config"), refused.stderr)
            XCTAssertNil(ws.branch, "nothing was measured")
            _ = try ws.git(["config", "--unset", key])
            XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        }
    }

    /// Issue 10: a file git ignores, made by the agent inside its editable directory mid-run, is the
    /// agent's change like any other: measured, and removed by the revert, so it can never carry state
    /// from one iteration to the next (a `*.log`, an ignored `cache/` directory).
    func testIgnoredFilesTheAgentMakesAreRevertedWithTheRest() throws {
        var spec = WorkspaceSpec()
        spec.files = spec.files.replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"train.py\", \"src/**\"]")
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) printf 'trace\\n' > src/debug.log; echo "SUMMARY: a log only" ;;
            2) mkdir -p src/cache && printf 'state\\n' > src/cache/state.txt; echo "SUMMARY: a cache only" ;;
            esac
            """
        let ws = try LoopWorkspace(spec, files: [".gitignore": "*.log\ncache/\n", "src/model.py": "W = 1\n"])
        let result = try ws.run(["--iterations", "2"])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "discard", "discard"], result.text)
        for gone in ["src/debug.log", "src/cache"] {
            var st = stat()
            XCTAssertNotEqual(lstat(ws.path(gone), &st), 0, "\(gone) survived the revert")
        }
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.ignoredLeftovers(), [])
    }

    /// `proctor check` on a working tree changed by hand (with host access, outside any sandbox).
    func testCheckListsEachKindOfViolation() throws {
        let ws = try LoopWorkspace()
        let clean = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(clean.status, 0, clean.text)
        XCTAssertTrue(clean.stdout.contains("ok"), clean.text)

        // Allowed edits only: still ok.
        try ws.write("train.py", ws.read("train.py")!.replacingOccurrences(of: "X = 0.2 ", with: "X = 0.3 "))
        try ws.write("LOG.md", "# notes\nanother note\n")
        try ws.write("outputs/pred.txt", "whatever the experiment wrote\n")
        let allowed = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(allowed.status, 0, allowed.text)

        // Each violation by itself.
        let cases: [(String, () throws -> Void, String, String)] = [
            ("locked file edited", { try ws.write("prepare.py", "print('{\"score\": 1}')\n") }, "prepare.py", "not-editable"),
            ("unlisted new file", { try ws.write("helper.py", "import os\n") }, "helper.py", "new-file"),
            ("new file in a new directory", { try ws.write("lib/numpy.py", "x = 1\n") }, "lib/numpy.py", "new-file"),
            ("symlink", { XCTAssertEqual(symlink(ws.path("prepare.py"), ws.path("link.py")), 0) }, "link.py", "symlink"),
            ("deleted file", { XCTAssertEqual(unlink(ws.path("LOG.md")), 0) }, "LOG.md", "deleted"),
            ("deleted hidden data", { XCTAssertEqual(unlink(ws.path("holdout/target.txt")), 0) }, "holdout/target.txt", "deleted"),
            ("editable replaced by a link", {
                XCTAssertEqual(unlink(ws.path("train.py")), 0)
                XCTAssertEqual(symlink("prepare.py", ws.path("train.py")), 0)
            }, "train.py", "symlink"),
            ("mode change", { XCTAssertEqual(chmod(ws.path("train.py"), 0o755), 0) }, "train.py", "mode"),
            ("too many lines", {
                try ws.write("train.py", ws.read("train.py")! + (1...30).map { "# line \($0)\n" }.joined())
            }, "train.py", "diff-lines"),
        ]
        let pristine = try ws.git(["rev-parse", "HEAD"])
        for (name, make, path, rule) in cases {
            _ = try ws.git(["checkout", "-f", pristine, "--", "."])
            _ = try ws.git(["clean", "-fdq"])
            XCTAssertEqual(try ws.gitStatus(), "", name)
            try make()
            let result = try ws.proctor(["check", "--workspace", ws.root])
            XCTAssertEqual(result.status, 1, "\(name): \(result.text)")
            let violations = result.stdout.split(separator: "\n").filter { $0.hasPrefix("violation: ") }
            XCTAssertTrue(violations.contains { $0.contains(path) && $0.contains("[\(rule)]") },
                          "\(name): expected \(path) [\(rule)] in \(result.text)")
        }

        // A tampered locked file is also reported against its pin.
        _ = try ws.git(["checkout", "-f", pristine, "--", "."])
        _ = try ws.git(["clean", "-fdq"])
        try ws.write("prepare.py", ws.read("prepare.py")! + "# tampered\n")
        let tampered = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(tampered.status, 1, tampered.text)
        XCTAssertTrue(tampered.stdout.contains("prepare.py: differs from its pin [tamper]"), tampered.text)

        // Several at once: every one listed, check changes nothing.
        _ = try ws.git(["checkout", "-f", pristine, "--", "."])
        try ws.write("prepare.py", "print(1)\n")
        try ws.write("extra.txt", "x\n")
        let snapshot = ws.snapshot()
        let many = try ws.proctor(["check", "--workspace", ws.root])
        XCTAssertEqual(many.status, 1, many.text)
        XCTAssertTrue(many.stdout.contains("prepare.py"), many.text)
        XCTAssertTrue(many.stdout.contains("extra.txt"), many.text)
        XCTAssertEqual(ws.snapshot(), snapshot, "check only reads")
        XCTAssertNil(ws.read(".proctor/results.tsv"), "check writes no ledger")
    }

    /// A hand-made violation left in the tree before `proctor run` is refused before anything runs.
    func testRunRefusesADirtyTree() throws {
        let ws = try LoopWorkspace()
        try ws.write("helper.py", "x = 1\n")
        let result = try ws.run(["--iterations", "1"])
        XCTAssertNotEqual(result.status, 0, result.text)
        XCTAssertTrue(result.stderr.contains("helper.py"), result.text)
        XCTAssertTrue(ws.rows.isEmpty, "no ledger rows: \(ws.ledgerLines)")
        XCTAssertEqual(ws.read("helper.py"), "x = 1\n", "proctor never deletes the user's uncommitted work")
    }
}
