import Foundation
import ProctorTestSupport
import XCTest

/// Attacks from inside real sandboxed children started by `proctor exec`, each judged from outside:
/// the protected file's bytes, the host's files, a listener, the process table, the audit log.
final class ExecAttackTests: XCTestCase {
    override func setUpWithError() throws {
        try requireProctorBinary()
    }

    // MARK: Reading what it must not

    /// A data set a package ships (scikit-learn's digits: the bundled workspace's source, whose raw
    /// rows would give every clean label away) is hidden from every phase by
    /// `[sandbox] hide = ["{site-packages}/..."]`, wherever the interpreter keeps its packages.
    func testPackageDataSetHiddenByHostHide() throws {
        let probe = try runChild(["/usr/bin/env", python, "-c", "import sklearn.datasets"])
        guard probe.status == 0 else { throw XCTSkip("no scikit-learn for \(python)") }
        let load = "from sklearn.datasets import load_digits; print('rows', len(load_digits().target))"
        // Without the hide the raw data set is readable: this test can fail.
        let open = try TestWorkspace()
        let seen = try open.exec([python, "-c", load])
        XCTAssertTrue(seen.stdout.contains("rows 1797"), seen.stdout + seen.stderr)

        let ws = try TestWorkspace(extra: "[sandbox]\nhide = [\"{site-packages}/sklearn/datasets/data\"]\n")
        for phase in ["experiment", "evaluator", "agent"] {
            let out = try ws.exec([python, "-c", load], phase: phase)
            XCTAssertNotEqual(out.status, 0, "\(phase): \(out.stdout)")
            XCTAssertFalse(out.stdout.contains("rows"), phase)
            XCTAssertTrue(out.stderr.contains("FileNotFoundError") || out.stderr.contains("No such file"), "\(phase): \(out.stderr)")
        }
    }

    /// The same hide reaches every Python installation a phase can see, not only its own
    /// interpreter's: a project's `.venv/` in the workspace (an agent runs `sh` or `claude`, an
    /// experiment may run `sh -c ...`), a pyenv root or a conda installation given as `read_only`.
    /// An agent read the raw digits through the workspace's `.venv/` and rebuilt the held-out labels.
    func testPackageDataSetHiddenInEveryInstallationAPhaseSees() throws {
        var template = Array("/var/tmp/proctor-pyroots-XXXXXX".utf8CString)
        let roots = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { _ = try? runChild(["/bin/rm", "-rf", roots]) }
        let data = "lib/python3.11/site-packages/pkgx/data/secret.csv"
        let inRoots = ["pyenv/versions/3.11.7/" + data, "conda/" + data, "conda/envs/ml/" + data]
        for rel in inRoots {
            let path = roots + "/" + rel
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data("SECRET-PKG-DATA\n".utf8).write(to: URL(fileURLWithPath: path))
        }
        _ = try runChild(["/bin/chmod", "-R", "a+rX", roots])
        func workspace(hide: Bool) throws -> TestWorkspace {
            let ws = try TestWorkspace(extra: "[sandbox]\nread_only = [\"\(roots)/pyenv\", \"\(roots)/conda\"]\n"
                                       + (hide ? "hide = [\"{site-packages}/pkgx/data\"]\n" : ""))
            try ws.write(".venv/pyvenv.cfg", "home = /usr/bin\n")
            try ws.write(".venv/" + data, "SECRET-PKG-DATA\n")
            return ws
        }
        let paths = [".venv/" + data] + inRoots.map { roots + "/" + $0 }
        let read = ["sh", "-c", "for f in \(paths.joined(separator: " ")); do cat \"$f\"; done 2>&1"]
        // Without the hide each copy is readable: this test can fail.
        let open = try workspace(hide: false)
        for phase in ["experiment", "agent"] {
            let out = try open.exec(read, phase: phase)
            XCTAssertEqual(out.stdout.components(separatedBy: "SECRET-PKG-DATA").count - 1, 4, "\(phase): \(out.text)")
        }
        let ws = try workspace(hide: true)
        for phase in ["experiment", "evaluator", "agent"] {
            let out = try ws.exec(read, phase: phase)
            XCTAssertFalse(out.stdout.contains("SECRET-PKG-DATA"), "\(phase): \(out.text)")
        }
    }

    /// The bundled example that `proctor init` copies lies in every phase's view once proctor is
    /// installed under /usr/local/share or /opt (here: a `read_only` path), and its held-out and
    /// sealed labels are those of every workspace made from it: a red team's experiment trained on
    /// them and was kept at AUC 0.998. Hidden from every phase; the policies beside it stay.
    func testTheBundledExampleIsHiddenFromEveryPhase() throws {
        var template = Array("/var/tmp/proctor-home-XXXXXX".utf8CString)
        let home = String(cString: try XCTUnwrap(mkdtemp(&template)))
        defer { _ = try? runChild(["/bin/rm", "-rf", home]) }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        _ = try runChild(["/bin/cp", "-R", repo + "/policies", home + "/policies"])
        try FileManager.default.createDirectory(atPath: home + "/workspace/holdout", withIntermediateDirectories: true)
        try Data("id,label\nSECRET-BUNDLED-LABELS\n".utf8).write(to: URL(fileURLWithPath: home + "/workspace/holdout/test_labels.csv"))
        _ = try runChild(["/bin/chmod", "-R", "a+rX", home])
        let ws = try TestWorkspace(extra: "[sandbox]\nread_only = [\"\(home)\"]\n")
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_HOME"] = home
        let read = ["sh", "-c", "cat \(home)/workspace/holdout/test_labels.csv; ls \(home)/policies 2>&1"]
        for phase in ["experiment", "evaluator", "agent"] {
            let out = try ws.exec(read, phase: phase, environment: env)
            XCTAssertFalse(out.stdout.contains("SECRET-BUNDLED-LABELS"), "\(phase): \(out.text)")
            XCTAssertTrue(out.stdout.contains("default.toml"), "\(phase): \(out.text)")
        }
    }

    /// Inode flags (`chattr +t`, nodump, noatime, sync) set through FS_IOC_SETFLAGS are file
    /// metadata git does not keep, like extended attributes: a red team set one on an editable file
    /// and it survived the diff and the revert. Refused in every phase, the evaluator's too; judged by
    /// `lsattr` from outside, where the same flag can be set (the test says so when it cannot).
    func testInodeFlagsCannotBeSetFromAnyPhase() throws {
        let ws = try TestWorkspace()
        try ws.write("outputs/probe.txt", "x\n")
        let control = ws.path("control.txt")
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: control))
        guard try runChild(["/usr/bin/chattr", "+d", control]).status == 0 else {
            throw XCTSkip("this file system keeps no inode flags")
        }
        let script = """
            import fcntl, struct, sys
            with open(sys.argv[1], "rb") as f:
                for cmd in (0x40086602, 0xdead000040086602, 0x40046602):
                    try:
                        fcntl.ioctl(f.fileno(), cmd & 0xffffffffffffffff, struct.pack("l", 0x40))
                        print("SET", hex(cmd))
                    except OSError as e:
                        print("refused", hex(cmd), e.errno)
            """
        for (phase, rel) in [("experiment", "outputs/probe.txt"), ("agent", "train.py"), ("evaluator", "outputs/probe.txt"), ("evaluator", "prepare.py")] {
            let out = try ws.exec([python, "-c", script, ws.path(rel)], phase: phase)
            XCTAssertFalse(out.stdout.contains("SET"), "\(phase): \(out.text)")
            XCTAssertEqual(out.stdout.components(separatedBy: "refused").count - 1, 3, "\(phase) \(rel): opened and tried: \(out.text)")
            let flags = try runChild(["/usr/bin/lsattr", "-d", ws.path(rel)]).stdout
            XCTAssertFalse(flags.prefix(while: { $0 != " " }).contains("d"), "\(phase): \(flags)")
        }
    }

    /// A launcher stopped by someone else's SIGTERM (an operator, a service manager) said "stopped
    /// by the supervisor", which had asked nothing; its own stop still says that (SessionTests).
    func testALauncherStoppedFromOutsideSaysSo() throws {
        let ws = try TestWorkspace()
        let output = try CapturedOutput()
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_MACHINE_LOCK"] = ws.path(".machine.lock")
        let exec = try startProcess([proctorBinary, "exec", "--workspace", ws.root, "--", "sleep", "60"], environment: env, output: output)
        defer { if exec.isRunning { kill(exec.processIdentifier, SIGKILL) } }
        var launcher: pid_t = 0
        XCTAssertTrue(waitUntil(timeout: 30) {
            let children = (try? String(contentsOfFile: "/proc/\(exec.processIdentifier)/task/\(exec.processIdentifier)/children", encoding: .utf8)) ?? ""
            launcher = children.split(separator: " ").compactMap { pid_t($0) }.first {
                ((try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) ?? "").hasPrefix("proctor-sandbo")
            } ?? 0
            return launcher > 0 && ((try? String(contentsOfFile: "/proc/\(launcher)/task/\(launcher)/children", encoding: .utf8)) ?? "") != ""
        }, output.stderr)
        kill(launcher, SIGTERM)
        exec.waitUntilExit()
        let details = ws.audit().filter { $0["kind"] as? String == "limit" }.compactMap { $0["detail"] as? String }
        XCTAssertEqual(details, ["signal: stopped by a signal from outside proctor"], "\(ws.audit())")
    }

    // MARK: Writing where it must not

    func testAppendToLockedFileIsDeniedAndAuditedOnce() throws {
        let ws = try TestWorkspace()
        let before = bytes(ws.path("prepare.py"))
        let out = try ws.exec([python, "-c", "open('prepare.py','a').write('pwned')"])
        XCTAssertNotEqual(out.status, 0)
        XCTAssertTrue(out.stderr.contains("Read-only file system") || out.stderr.contains("PermissionError"), out.stderr)
        XCTAssertEqual(bytes(ws.path("prepare.py")), before)
        let denied = ws.deniedWrites().filter { $0["path"] as? String == ws.path("prepare.py") }
        XCTAssertEqual(denied.count, 1, "\(ws.audit())")
        XCTAssertEqual(denied.first?["rule"] as? String, "locked")
        XCTAssertEqual(denied.first?["phase"] as? String, "experiment")
        XCTAssertNotNil(denied.first?["pid"])
        XCTAssertNotNil(denied.first?["syscall"])
    }

    func testDirectWriteClassesLeaveProtectedFilesIntact() throws {
        let ws = try TestWorkspace()
        let script = """
            import os, ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            attempts = {
              'truncate': lambda: os.truncate('prepare.py', 0),
              'chmod': lambda: os.chmod('prepare.py', 0o777),
              'utime': lambda: os.utime('prepare.py', (0, 0)),
              'unlink': lambda: os.unlink('prepare.py'),
              'rename-over': lambda: os.rename('train.py', 'prepare.py'),
              'rename-away': lambda: os.rename('prepare.py', 'outputs/p.py'),
              'hardlink': lambda: os.link('prepare.py', 'outputs/p.py'),
              'symlink-new': lambda: os.symlink('/etc/passwd', 'evil'),
              'mkdir': lambda: os.mkdir('newdir'),
              'mknod-fifo': lambda: os.mkfifo('fifo'),
              'create-hook': lambda: open('.git/hooks/pre-commit', 'w'),
              'create-new': lambda: open('sitecustomize.py', 'w'),
              'editable': lambda: open('train.py', 'w'),
              'config': lambda: open('proctor.toml', 'a'),
              'data': lambda: open('data/train.csv', 'w'),
              'dotdot': lambda: open('outputs/../prepare.py', 'a'),
              'proc-fd': lambda: open('/proc/self/fd/%d' % os.open('prepare.py', os.O_RDONLY), 'w'),
              'setxattr': lambda: os.setxattr('prepare.py', 'user.x', b'1'),
            }
            for name, attempt in attempts.items():
                try:
                    attempt()
                    print('ALLOWED', name)
                except OSError as e:
                    print('denied', name, e.errno)
            # RENAME_EXCHANGE of the locked file with an output.
            open('outputs/swap', 'w').write('x')
            AT_FDCWD = -100
            r = libc.renameat2(AT_FDCWD, b'outputs/swap', AT_FDCWD, b'prepare.py', 2)
            print('ALLOWED exchange' if r == 0 else 'denied exchange')
            # A symlink inside outputs pointing at the protected file, followed for writing.
            os.symlink(os.path.abspath('prepare.py'), 'outputs/link')
            try:
                open('outputs/link', 'a').write('pwned'); print('ALLOWED symlink-follow')
            except OSError: print('denied symlink-follow')
            # O_TMPFILE then linkat into a protected place.
            try:
                fd = os.open('outputs', os.O_TMPFILE | os.O_WRONLY, 0o600)
                os.write(fd, b'x')
                r = libc.linkat(fd, b'', AT_FDCWD, b'new-locked.py', 0x1000)
                print('ALLOWED tmpfile-link' if r == 0 else 'denied tmpfile-link')
            except OSError: print('denied tmpfile')
            """
        try ws.write("outputs/.keep", "")
        let protected = ["prepare.py", "train.py", "proctor.toml", "data/train.csv", "LOG.md"]
        let before = protected.map { bytes(ws.path($0)) }
        let out = try ws.exec([python, "-c", script])
        XCTAssertFalse(out.stdout.contains("ALLOWED"), out.stdout + out.stderr)
        XCTAssertTrue(out.stdout.contains("denied exchange"), out.stdout + out.stderr)
        XCTAssertEqual(protected.map { bytes(ws.path($0)) }, before)
        for name in ["evil", "newdir", "fifo", "sitecustomize.py", "new-locked.py", ".git/hooks/pre-commit"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(name)), name)
        }
        let paths = Set(ws.deniedWrites().compactMap { $0["path"] as? String })
        for rel in ["prepare.py", "train.py", "proctor.toml", "data/train.csv", "sitecustomize.py"] {
            XCTAssertTrue(paths.contains(ws.path(rel)), "no audit line for \(rel): \(paths.sorted())")
        }
        XCTAssertFalse(paths.contains { $0.hasPrefix(ws.path("outputs/")) && !$0.hasSuffix("link") }, "false positive: \(paths)")
    }

    /// Issue 10: the evaluator (which unpickles what the experiment left) is audited like every other
    /// phase: writes to the outputs, a locked file or the hidden data are refused and audited with
    /// `phase: evaluator`; its scratch space (the workspace's tmpfs, /tmp) is not a violation.
    func testEvaluatorWritesAreAudited() throws {
        let ws = try TestWorkspace()
        try ws.write("outputs/pred.txt", "0.5\n")
        let script = """
            import os
            for path in ['outputs/pred.txt', 'prepare.py', 'holdout/labels.csv', 'outputs/new.txt']:
                try:
                    open(path, 'a').write('x')
                    print('ALLOWED', path)
                except OSError:
                    pass
            open('scratch.txt', 'w').write('fine')
            open('/tmp/t', 'w').write('fine')
            print('end')
            """
        let out = try ws.exec([python, "-c", script], phase: "evaluator")
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertFalse(out.stdout.contains("ALLOWED"), out.stdout)
        XCTAssertTrue(out.stdout.contains("end"), out.stdout + out.stderr)
        XCTAssertEqual(ws.read("outputs/pred.txt"), "0.5\n")
        let denied = ws.deniedWrites()
        var rules: [String: String] = [:]
        for line in denied where line["phase"] as? String == "evaluator" {
            if let path = line["path"] as? String { rules[path] = line["rule"] as? String }
        }
        XCTAssertEqual(rules[ws.path("outputs/pred.txt")], "outputs", "\(denied)")
        XCTAssertEqual(rules[ws.path("outputs/new.txt")], "outputs", "\(denied)")
        XCTAssertEqual(rules[ws.path("prepare.py")], "locked", "\(denied)")
        XCTAssertEqual(rules[ws.path("holdout/labels.csv")], "hidden", "\(denied)")
        XCTAssertFalse(denied.contains { ($0["path"] as? String)?.hasSuffix("scratch.txt") == true || $0["path"] as? String == "/tmp/t" },
                       "scratch space is not a violation: \(denied)")
    }

    func testAllowedWritesLeaveNoViolation() throws {
        let ws = try TestWorkspace()
        let out = try ws.exec(["sh", "-c", "echo ok > outputs/result.txt && mkdir -p outputs/sub && echo t > /tmp/t && cat outputs/result.txt > /dev/null"])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(ws.read("outputs/result.txt"), "ok\n")
        XCTAssertEqual(ws.deniedWrites().count, 0, "\(ws.deniedWrites())")
    }

    func testPlantedSymlinkAsOutputsIsRefused() throws {
        let ws = try TestWorkspace()
        let target = ws.path("../" + URL(fileURLWithPath: ws.root).lastPathComponent + "-victim")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: target) }
        try FileManager.default.createSymbolicLink(atPath: ws.path("outputs"), withDestinationPath: target)
        let out = try ws.exec(["sh", "-c", "echo pwned > outputs/x"])
        XCTAssertEqual(out.status, 125, out.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target + "/x"))
    }

    func testAuditReachesGrandchildrenThreadsAndExec() throws {
        let ws = try TestWorkspace()
        let script = """
            import os, threading, subprocess
            def attempt(path):
                try: open(path, 'a')
                except OSError: pass
            t = threading.Thread(target=attempt, args=('LOG.md',)); t.start(); t.join()
            subprocess.run(['sh', '-c', 'sh -c "echo x >> data/train.csv"'])
            os.execvp('sh', ['sh', '-c', 'echo x >> train.py'])
            """
        _ = try ws.exec([python, "-c", script])
        let paths = ws.deniedWrites().compactMap { $0["path"] as? String }
        for rel in ["LOG.md", "data/train.csv", "train.py"] {
            XCTAssertTrue(paths.contains(ws.path(rel)), "missing \(rel) in \(paths)")
        }
        let pids = Set(ws.deniedWrites().compactMap { $0["pid"] as? Int })
        XCTAssertGreaterThanOrEqual(pids.count, 2, "writes from different processes should carry their pids")
    }

    func testFloodOfDeniedWritesIsCountedNotStalled() throws {
        let ws = try TestWorkspace()
        let script = """
            import os
            for i in range(20000):
                try: os.open('prepare.py', os.O_WRONLY)
                except OSError: pass
            print('done')
            """
        let out = try ws.exec([python, "-c", script])
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertTrue(out.stdout.contains("done"))
        XCTAssertLessThan(out.seconds, 9)
        let lines = ws.audit().count
        XCTAssertLessThan(lines, 10_000, "the audit must cap a flood")
        XCTAssertTrue(ws.audit().contains { ($0["count"] as? Int ?? 0) > 0 }, "dropped records must be counted")
    }

    // MARK: Reading what it must not

    func testHiddenGitAndConfigAreInvisible() throws {
        let ws = try TestWorkspace()
        _ = try runChild(["/usr/bin/git", "init", "-q", ws.root])
        let out = try ws.exec(["sh", "-c", "cat holdout/labels.csv; ls -A holdout; ls -A .git; cat proctor.toml; cat /etc/shadow; ls -A .proctor; echo end"])
        XCTAssertFalse(out.stdout.contains("SECRET-LABEL"))
        XCTAssertFalse(out.stdout.contains("labels.csv"))
        XCTAssertFalse(out.stdout.contains("HEAD"))
        XCTAssertFalse(out.stdout.contains("[experiment]"))
        XCTAssertFalse(out.stdout.contains("root:"))
        XCTAssertTrue(out.stdout.contains("end"))
        // The evaluator phase does see the hidden labels.
        let eval = try ws.exec(["cat", "holdout/labels.csv"], phase: "evaluator")
        XCTAssertTrue(eval.stdout.contains("SECRET-LABEL"), eval.stderr)
        // ...but not the editable script (it reads artifacts only).
        let planted = try ws.exec(["sh", "-c", "cat train.py || echo gone"], phase: "evaluator")
        XCTAssertTrue(planted.stdout.contains("gone"), planted.stdout)
    }

    /// A broad editable glob (`*`, `**`) matches `.proctor`, `.git`, `proctor.toml`, the locked and
    /// the hidden entries too. None of them may become a writable bind in the agent phase: the bind
    /// would sit on top of the hide, exposing the labels, the ledger and the seccomp filter cache
    /// (a filter planted there would be loaded by the next sandbox).
    func testBroadEditableGlobExposesNoProtectedState() throws {
        let toml = TestWorkspace.defaultToml
            .replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"*\"]")
            .replacingOccurrences(of: "notes    = [\"LOG.md\"]", with: "notes    = [\"**\"]")
        let ws = try TestWorkspace(toml: toml)
        _ = try runChild(["/usr/bin/git", "init", "-q", ws.root])
        try ws.write("outputs/.keep", "")
        // First runs create .proctor/ and its filter cache (one filter per phase's options).
        XCTAssertEqual(try ws.exec(["true"]).status, 0)
        XCTAssertEqual(try ws.exec(["true"], phase: "agent").status, 0)
        let cache = ws.path(".proctor/cache")
        let cached = try FileManager.default.contentsOfDirectory(atPath: cache)
        let guarded = ["proctor.toml", "prepare.py", "data/train.csv", ".git/HEAD"]
        let before = guarded.map { bytes(ws.path($0)) }
        let script = """
            for f in .proctor/cache/*.bpf; do printf 'PLANTED' > "$f"; done
            echo PLANTED > .proctor/cache/seccomp-planted.bpf; echo PLANTED >> .proctor/audit.jsonl
            echo PLANTED >> proctor.toml; echo PLANTED >> prepare.py; echo PLANTED >> data/train.csv
            echo PLANTED >> .git/HEAD; cat holdout/labels.csv; echo PLANTED >> train.py
            echo PLANTED > outputs/predictions.csv; echo PLANTED >> outputs/.keep; echo end
            """
        let out = try ws.exec(["sh", "-c", script], phase: "agent")
        XCTAssertTrue(out.stdout.contains("end"), out.stderr)
        XCTAssertFalse(out.stdout.contains("SECRET-LABEL"), "hidden labels readable in the agent phase")
        XCTAssertEqual(guarded.map { bytes(ws.path($0)) }, before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache), cached)
        for name in cached {
            XCTAssertFalse(String(decoding: bytes(cache + "/" + name) ?? Data(), as: UTF8.self).contains("PLANTED"))
        }
        XCTAssertFalse(ws.read(".proctor/audit.jsonl")?.contains("PLANTED") ?? false)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("outputs/predictions.csv")), "the agent wrote the outputs")
        XCTAssertEqual(ws.read("outputs/.keep"), "")
        // The editable file itself stays writable.
        XCTAssertTrue(ws.read("train.py")?.contains("PLANTED") ?? false, out.stderr)
    }

    /// A symlink the agent leaves in an editable directory must not break the next agent phase
    /// (it is writable through the directory's bind, and never followed to make a mount).
    func testSymlinkLeftInEditableDirectoryDoesNotBreakTheNextAgentPhase() throws {
        let toml = TestWorkspace.defaultToml.replacingOccurrences(of: "editable = [\"train.py\"]",
                                                                    with: "editable = [\"train.py\", \"src/\"]")
        let ws = try TestWorkspace(toml: toml)
        try ws.write("src/model.py", "x = 1\n")
        let first = try ws.exec(["sh", "-c", "ln -s \(ws.path("prepare.py")) src/link && ln -s /etc src/etc && echo planted"], phase: "agent")
        XCTAssertTrue(first.stdout.contains("planted"), first.stderr)
        let before = bytes(ws.path("prepare.py"))
        let second = try ws.exec(["sh", "-c", "echo y >> src/model.py; echo pwn >> src/link; echo next"], phase: "agent")
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("next"), second.stderr)
        XCTAssertEqual(ws.read("src/model.py"), "x = 1\ny\n")
        XCTAssertEqual(bytes(ws.path("prepare.py")), before)
    }

    /// A symlink planted where a hidden glob reaches (an editable directory) must neither break
    /// the next runs nor be followed on the host when the evaluator's view is built.
    func testSymlinkMatchingAHiddenGlobIsNotFollowedOnTheHost() throws {
        let toml = TestWorkspace.defaultToml
            .replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"train.py\", \"src/\"]")
            .replacingOccurrences(of: "hidden   = [\"holdout/**\"]", with: "hidden   = [\"holdout/**\", \"**/*.secret\"]")
        let ws = try TestWorkspace(toml: toml)
        try ws.write("src/model.py", "x = 1\n")
        // A host file outside the workspace, readable by the supervisor.
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("proctor-host-\(UUID().uuidString)").path
        try Data("HOST-ONLY-BYTES\n".utf8).write(to: URL(fileURLWithPath: outside))
        chmod(outside, 0o644)
        defer { unlink(outside) }
        let plant = try ws.exec(["sh", "-c", "ln -s \(outside) src/x.secret && echo planted"], phase: "agent")
        XCTAssertTrue(plant.stdout.contains("planted"), plant.stderr)
        let eval = try ws.exec(["sh", "-c", "cat src/x.secret; echo end"], phase: "evaluator")
        XCTAssertTrue(eval.stdout.contains("end"), eval.stderr)
        XCTAssertFalse(eval.stdout.contains("HOST-ONLY-BYTES"), "the evaluator's setup followed a planted link on the host")
        XCTAssertEqual(try ws.exec(["true"]).status, 0)
        XCTAssertEqual(try ws.exec(["true"], phase: "agent").status, 0)
    }

    /// An outputs directory inside proctor's own state would make the ledger, the pins and the
    /// filter cache (or `.git/hooks`) the experiment's to write: refused before anything runs.
    func testOutputsInsideProctorStateAreRefused() throws {
        for dir in [".proctor", ".git", ".git/hooks", "./.proctor/cache"] {
            let toml = TestWorkspace.defaultToml.replacingOccurrences(of: "outputs  = [\"outputs/\"]",
                                                                        with: "outputs  = [\"\(dir)\"]")
            let ws = try TestWorkspace(toml: toml)
            _ = try runChild(["/usr/bin/git", "init", "-q", ws.root])
            try ws.write(".proctor/pins.json", "{}")
            try FileManager.default.createDirectory(atPath: ws.path(".proctor/cache"), withIntermediateDirectories: true)
            let out = try ws.exec(["sh", "-c", "echo PWN > .proctor/planted; echo PWN > .proctor/cache/planted; echo PWN > .git/hooks/pre-commit; echo PWN >> .proctor/pins.json"])
            XCTAssertEqual(out.status, 125, "\(dir): \(out.stderr)")
            XCTAssertTrue(out.stderr.contains("files.outputs"), out.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/planted")), dir)
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".proctor/cache/planted")), dir)
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path(".git/hooks/pre-commit")), dir)
            XCTAssertEqual(ws.read(".proctor/pins.json"), "{}", dir)
        }
    }

    func testEnvironmentIsAllowlisted() throws {
        let ws = try TestWorkspace()
        var env = ProcessInfo.processInfo.environment
        env["OPENAI_API_KEY"] = "sk-test-secret"
        env["AWS_SECRET_ACCESS_KEY"] = "aws-secret"
        let out = try ws.exec(["sh", "-c", "env"], environment: env)
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertFalse(out.stdout.contains("secret"))
        XCTAssertTrue(out.stdout.contains("PROCTOR_SEED=42"))
        XCTAssertTrue(out.stdout.contains("PROCTOR_PHASE=experiment"))
        XCTAssertTrue(out.stdout.contains("PROCTOR_OUTPUTS=\(ws.path("outputs"))"))
        XCTAssertFalse(out.stdout.contains("HOME=/root"))
    }

    func testHostProcessesAreInvisible() throws {
        let ws = try TestWorkspace()
        let me = getpid()
        let out = try ws.exec(["sh", "-c", "ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/\(me)/environ && echo LEAK; ls /proc/1/root/ 2>&1 | head -3; cat /proc/1/cmdline | tr '\\0' ' '"])
        let count = Int(out.stdout.split(separator: "\n").first?.trimmingCharacters(in: .whitespaces) ?? "") ?? 999
        XCTAssertLessThan(count, 10, out.stdout)
        XCTAssertFalse(out.stdout.contains("LEAK"))
    }

    // MARK: Escaping the filter and the namespaces

    func testDangerousSyscallsAreDenied() throws {
        let ws = try TestWorkspace()
        let script = """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            def call(name, nr, *args):
                r = libc.syscall(nr, *args)
                print(name, 'ALLOWED' if r >= 0 else 'denied', ctypes.get_errno())
            buf = ctypes.create_string_buffer(256)
            call('io_uring_setup', 425, 8, buf)
            call('unshare-user', 272, 0x10000000)
            call('unshare-mount', 272, 0x00020000)
            call('clone-newns', 56, 0x00020000 | 17, 0, 0, 0, 0)
            call('mount', 165, b'none', b'/tmp', b'tmpfs', 0, 0)
            call('ptrace-attach', 101, 16, 1, 0, 0)
            call('bpf', 321, 0, buf, 64)
            call('perf_event_open', 298, buf, 0, -1, -1, 0)
            call('userfaultfd', 323, 0)
            call('keyctl', 250, 0, 0, 0, 0, 0)
            call('pivot_root', 155, b'/tmp', b'/tmp')
            call('chroot', 161, b'/tmp')
            call('open_tree', 428, -100, b'/', 0)
            call('fsopen', 430, b'tmpfs', 0)
            call('setns', 308, 0, 0)
            call('open_by_handle_at', 304, -100, buf, 0)
            call('personality', 135, 0x0040000)
            call('TIOCSTI-high-bits', 16, 0, 0xdeadbeef00005412, buf)
            call('kexec_load', 246, 0, 0, 0, 0)
            ctx = ctypes.c_ulong(0)
            call('io_setup', 206, 8, ctypes.byref(ctx))
            call('io_submit', 209, 0, 0, 0)
            # A lease on a file of its own: the supervisor's later open of such a file would fail.
            fd = os.open('/tmp/leased', os.O_RDONLY | os.O_CREAT, 0o644)
            call('fcntl-F_SETLEASE', 72, fd, 1024, 0)
            call('fcntl-F_SETLEASE-high-bits', 72, fd, 0xdeadbeef00000400, 0)
            r = libc.syscall(435, 0, 0)
            print('clone3', 'ALLOWED' if r >= 0 else 'denied', ctypes.get_errno())
            """
        // Every phase loads the same filter; each is tried (the evaluator's and the agent's too).
        for phase in ["experiment", "evaluator", "agent"] {
            let out = try ws.exec([python, "-c", script], phase: phase)
            XCTAssertEqual(out.status, 0, "\(phase): \(out.text)")
            XCTAssertFalse(out.stdout.contains("ALLOWED"), "\(phase): " + out.stdout + out.stderr)
            XCTAssertTrue(out.stdout.contains("clone3 denied 38"), "\(phase): clone3 must fail with ENOSYS: \(out.stdout)")
            XCTAssertTrue(out.stdout.contains("io_uring_setup denied"), "\(phase): " + out.stdout + out.stderr)
            XCTAssertTrue(out.stdout.contains("io_setup denied 1\n"), "\(phase): " + out.stdout + out.stderr)
            XCTAssertTrue(out.stdout.contains("fcntl-F_SETLEASE denied 1\n"), "\(phase): " + out.stdout + out.stderr)
        }
    }

    func testForeignABIsAreRejected() throws {
        let ws = try TestWorkspace()
        // x32: getpid with the x32 bit set must not run as a syscall.
        let out = try ws.exec([python, "-c", "import ctypes; libc=ctypes.CDLL(None, use_errno=True); r=libc.syscall(0x40000000|39); print('ALLOWED' if r > 0 else 'denied')"])
        XCTAssertFalse(out.stdout.contains("ALLOWED"), out.stdout + out.stderr)
    }

    func testNoNewPrivsNoCapabilitiesNewSessionNoLeakedFds() throws {
        let ws = try TestWorkspace()
        let out = try ws.exec(["sh", "-c", "grep -E '^(NoNewPrivs|CapEff|CapPrm|CapBnd|CapAmb)' /proc/self/status; ls /proc/self/fd; ps -o sid= -p $$ 2>/dev/null; cat /proc/self/stat | cut -d' ' -f6,7"])
        XCTAssertTrue(out.stdout.contains("NoNewPrivs:\t1"), out.stdout)
        XCTAssertTrue(out.stdout.contains("CapEff:\t0000000000000000"), out.stdout)
        XCTAssertTrue(out.stdout.contains("CapBnd:\t0000000000000000"), out.stdout)
        let fdLine = out.stdout.split(separator: "\n").first { $0.allSatisfy { $0.isNumber || $0 == " " } && $0.contains("0") }
        XCTAssertNotNil(fdLine)
        let fds = out.stdout.split(separator: "\n").filter { Int($0) != nil }.compactMap { Int($0) }
        XCTAssertTrue(fds.allSatisfy { $0 <= 3 }, "leaked fds: \(fds)")  // 0,1,2 and ls's own directory fd
    }

    // MARK: Talking to the outside

    func testNetworkIsLoopbackOnlyAndHostListenerReceivesNothing() throws {
        let ws = try TestWorkspace()
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 4)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let script = """
            import socket
            for fam, kind, proto in [(socket.AF_NETLINK, socket.SOCK_RAW, 0), (socket.AF_PACKET, socket.SOCK_RAW, 0), (40, socket.SOCK_STREAM, 0)]:
                try: socket.socket(fam, kind, proto); print('ALLOWED family', fam)
                except OSError: print('denied family', fam)
            try:
                s = socket.create_connection(('127.0.0.1', \(port)), timeout=2); s.send(b'leak'); print('ALLOWED connect')
            except OSError as e: print('denied connect', e)
            try:
                s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print('loopback ok')
            except OSError as e: print('loopback error', e)
            """
        let out = try ws.exec([python, "-c", script])
        XCTAssertFalse(out.stdout.contains("ALLOWED"), out.stdout + out.stderr)
        XCTAssertTrue(out.stdout.contains("loopback ok"), out.stdout + out.stderr)
        // Nothing may be queued on the host listener.
        _ = fcntl(listener, F_SETFL, O_NONBLOCK)
        XCTAssertLessThan(accept(listener, nil, nil), 0, "the host listener received a connection")
    }

    /// A host process's pathname socket in the workspace (an agent's, a dev server's): the
    /// read-only bind does not stop connect(), so proctor has the launcher hide it.
    func testHostUnixSocketInTheWorkspaceIsHidden() throws {
        let ws = try TestWorkspace()
        let sockPath = ws.path("data/sub/agent.sock")
        try FileManager.default.createDirectory(atPath: ws.path("data/sub"), withIntermediateDirectories: true)
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in sockPath.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0, String(cString: strerror(errno)))
        XCTAssertEqual(listen(listener, 4), 0)
        _ = fcntl(listener, F_SETFL, O_NONBLOCK)
        let script = """
            import socket
            s = socket.socket(socket.AF_UNIX)
            try: s.connect('\(sockPath)'); s.send(b'leak'); print('CONNECTED')
            except OSError as e: print('refused', e)
            """
        for phase in ["experiment", "agent"] {
            let out = try ws.exec([python, "-c", script], phase: phase)
            XCTAssertTrue(out.stdout.contains("refused"), phase + ": " + out.stdout + out.stderr)
            XCTAssertLessThan(accept(listener, nil, nil), 0, "\(phase): the host socket received a connection")
        }
        var st = stat()
        XCTAssertEqual(lstat(sockPath, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFSOCK, "the host's socket is untouched")
    }

    /// A glob that matches more single files than the launcher takes mounts: a clear error naming
    /// the cause, exit 125, nothing run (not the launcher's "too many mount options").
    func testTooManyMountsIsAClearConfigurationError() throws {
        let ws = try TestWorkspace(toml: TestWorkspace.defaultToml.replacingOccurrences(
            of: "notes    = [\"LOG.md\"]", with: "notes    = [\"notes/*.md\"]"))
        for i in 0..<300 { try ws.write("notes/n\(i).md", "note \(i)\n") }
        let out = try ws.exec(["/bin/sh", "-c", "echo ran > outputs/ran"])
        XCTAssertEqual(out.status, 125, out.stdout + out.stderr)
        XCTAssertTrue(out.stderr.contains("more than the 256"), out.stderr)
        XCTAssertTrue(out.stderr.contains("name their directory"), out.stderr)
        XCTAssertNil(ws.read("outputs/ran"), "nothing ran")
    }

    // MARK: Exhausting the machine

    func testTimeoutReturns124AndKillsDaemonsThatIgnoreSignals() throws {
        let ws = try TestWorkspace(toml: TestWorkspace.defaultToml.replacingOccurrences(of: "timeout  = \"10s\"", with: "timeout  = \"2s\""))
        let marker = "proctor-daemon-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let out = try ws.exec(["bash", "-c", "(setsid bash -c 'trap \"\" TERM HUP INT; exec -a \(marker) sleep 1000' &); sleep 100"])
        XCTAssertEqual(out.status, 124, out.stderr)
        XCTAssertLessThan(out.seconds, 4)
        usleep(200_000)
        XCTAssertEqual(processes(containing: marker), [])
        XCTAssertTrue(ws.audit().contains { $0["kind"] as? String == "timeout" && $0["decision"] as? String == "killed" })
    }

    func testForkBombIsBounded() throws {
        let ws = try TestWorkspace()
        let script = """
            import os
            n = 0
            for i in range(400):
                try:
                    if os.fork() == 0:
                        import time; time.sleep(30); os._exit(0)
                    n += 1
                except OSError:
                    break
            print('forked', n, flush=True)
            os._exit(0)
            """
        let out = try ws.exec([python, "-c", script])
        let forked = Int(out.stdout.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 999
        XCTAssertLessThan(forked, 64, out.stdout + out.stderr)
        XCTAssertLessThan(out.seconds, 8)
    }

    func testMemoryHogIsStopped() throws {
        let ws = try TestWorkspace()
        let out = try ws.exec([python, "-c", "x = bytearray(900 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('SURVIVED')"])
        XCTAssertNotEqual(out.status, 0)
        XCTAssertFalse(out.stdout.contains("SURVIVED"))
    }

    /// /dev/shm exists (Python's multiprocessing needs POSIX semaphores) but is a small private tmpfs:
    /// filling it fails, and nothing of it reaches the host.
    func testDevShmIsPrivateAndCapped() throws {
        let ws = try TestWorkspace()
        let out = try ws.exec(["sh", "-c", "python3 -c 'import multiprocessing as m; m.Lock(); print(\"lock ok\")'; head -c 200000000 /dev/zero > /dev/shm/fill-\(getpid()) || echo FULL; echo x > /dev/planted || echo RO"])
        XCTAssertTrue(out.stdout.contains("lock ok"), out.stdout + out.stderr)
        XCTAssertTrue(out.stdout.contains("FULL"), out.stdout + out.stderr)
        XCTAssertTrue(out.stdout.contains("RO"), out.stdout + out.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/dev/shm/fill-\(getpid())"))
        XCTAssertEqual(ws.deniedWrites().filter { ($0["path"] as? String ?? "").hasPrefix("/dev/shm") }.count, 0,
                       "writes to the private /dev/shm are allowed, not violations")
    }

    func testOutputFillIsCapped() throws {
        let ws = try TestWorkspace()
        let out = try ws.exec(["sh", "-c", "i=0; while [ $i -lt 64 ]; do head -c 1048576 /dev/zero > outputs/f$i || exit 9; i=$((i+1)); done; echo WROTE-ALL"])
        XCTAssertFalse(out.stdout.contains("WROTE-ALL"), out.stdout)
        XCTAssertNotEqual(out.status, 0)
        var total = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: ws.path("outputs"))) ?? [] {
            total += (try? FileManager.default.attributesOfItem(atPath: ws.path("outputs/" + name))[.size] as? Int) ?? 0
        }
        // The cap is polled (every 50 ms): a fast writer may overshoot by what it writes in that time.
        XCTAssertLessThan(total, 48 << 20, "outputs grew far past the 16 MiB cap")
    }

    /// A burst past the cap made in a few milliseconds just before the command exits (fallocate,
    /// 3 files of 7 MiB over a 16 MiB cap) falls between two polls: the launcher looks once more
    /// when the command has exited, and the burst is caught as if the command had been killed for it.
    func testABurstPastTheCapJustBeforeExitIsCaught() throws {
        let ws = try TestWorkspace()
        for round in 0..<3 {
            let out = try ws.exec(["sh", "-c", "rm -f outputs/*; for f in a b c; do fallocate -l 7340032 outputs/$f || exit 9; done; echo WROTE-ALL; exit 0"])
            XCTAssertTrue(out.stdout.contains("WROTE-ALL"), "round \(round): \(out.stdout)\(out.stderr)")
            XCTAssertEqual(out.status, 137, "round \(round): exited 0 past the cap: \(out.stdout)\(out.stderr)")
        }
    }

    /// Two outputs directories: the launcher kept one `--output-limit`, the last given, and the
    /// first directory could be filled without a cap. They are counted together now.
    func testEveryOutputsDirectoryIsCapped() throws {
        let ws = try TestWorkspace(toml: TestWorkspace.defaultToml.replacingOccurrences(of: #"outputs  = ["outputs/"]"#,
                                                                                        with: #"outputs  = ["outputs/", "extra/"]"#))
        for dir in ["outputs", "extra"] {
            let out = try ws.exec(["sh", "-c", "i=0; while [ $i -lt 64 ]; do head -c 1048576 /dev/zero > \(dir)/f$i || exit 9; i=$((i+1)); done; echo WROTE-ALL"])
            XCTAssertFalse(out.stdout.contains("WROTE-ALL"), "\(dir): \(out.stdout)")
            XCTAssertNotEqual(out.status, 0, dir)
            let total = ((try? FileManager.default.contentsOfDirectory(atPath: ws.path(dir))) ?? []).reduce(0) { sum, name in
                sum + ((try? FileManager.default.attributesOfItem(atPath: ws.path(dir + "/" + name))[.size] as? Int) ?? 0)
            }
            XCTAssertLessThan(total, 48 << 20, "\(dir) grew far past the 16 MiB cap")
        }
    }

    /// Unlinked files kept only by a small mapping: each 8 MiB, fallocated, mapped by 4 KiB, its
    /// descriptor closed at once (open for far less than the 50 ms poll). The mapping's length was
    /// counted, so ten of them passed a 16 MiB cap; the file's whole size counts now (as root).
    func testUnlinkedFilesHeldByASmallMappingCountWhole() throws {
        try XCTSkipUnless(geteuid() == 0, "the files behind a mapping are read through /proc/PID/map_files, which needs root")
        let ws = try TestWorkspace()
        // mmap through ctypes: Python's mmap object keeps a copy of the descriptor open.
        let fill = """
            import ctypes, os, time
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
            for i in range(10):
                fd = os.open("outputs", os.O_TMPFILE | os.O_RDWR, 0o600)
                os.posix_fallocate(fd, 0, 8 << 20)
                assert libc.mmap(None, 4096, 3, 1, fd, 0) not in (None, ctypes.c_void_p(-1).value)
                os.close(fd)
            time.sleep(1)
            print("HELD-ALL", flush=True)
            """
        let out = try ws.exec(["python3", "-c", fill])
        XCTAssertFalse(out.stdout.contains("HELD-ALL"), out.stdout + out.stderr)
        XCTAssertEqual(out.status, 137, "killed for its outputs, not failed: " + out.stdout + out.stderr)
        XCTAssertFalse(out.stderr.contains("Traceback"), out.stderr)
    }

    /// A directory in the outputs that the experiment made unreadable (mode 0300): the output
    /// poll of an unprivileged launcher (its owner, never root) skipped it, and 600 MiB passed a
    /// 32 MiB cap. It is given back its bits and counted (root reads it anyway).
    func testAnUnreadableDirectoryInTheOutputsIsCounted() throws {
        let ws = try TestWorkspace()
        let fill = """
            import os, time
            os.makedirs("outputs/hid")
            os.chmod("outputs/hid", 0o300)
            for i in range(8):
                with open("outputs/hid/f%d" % i, "wb") as f:
                    f.write(b"x" * (8 << 20))
                time.sleep(0.1)
            print("WROTE-ALL", flush=True)
            """
        let out = try ws.exec(["python3", "-c", fill])
        XCTAssertFalse(out.stdout.contains("WROTE-ALL"), out.stdout + out.stderr)
        XCTAssertEqual(out.status, 137, "killed for its outputs: " + out.stdout + out.stderr)
    }

    func testStdoutFloodIsCapped() throws {
        let ws = try TestWorkspace(extra: "[sandbox]\npolicy = \"strict\"\n")
        let out = try ws.exec(["sh", "-c", "head -c 100000000 /dev/zero | tr '\\0' a; echo"])
        XCTAssertLessThanOrEqual(out.stdout.utf8.count, 8 << 20 + 4096)
    }

    func testKillingProctorKillsTheSandbox() throws {
        let ws = try TestWorkspace()
        let marker = "proctor-orphan-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: proctorBinary)
        process.arguments = ["exec", "--workspace", ws.root, "--", "bash", "-c", "exec -a \(marker) sleep 1000"]
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_MACHINE_LOCK"] = ws.path(".machine.lock")
        process.environment = env
        try process.run()
        for _ in 0..<50 where processes(containing: marker).isEmpty { usleep(100_000) }
        XCTAssertFalse(processes(containing: marker).isEmpty, "the sandboxed command never started")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        for _ in 0..<30 where !processes(containing: marker).isEmpty { usleep(100_000) }
        XCTAssertEqual(processes(containing: marker), [])
    }

    // MARK: Exit statuses and the lock

    func testExitStatusesFollowTheContract() throws {
        let ws = try TestWorkspace()
        XCTAssertEqual(try ws.exec(["sh", "-c", "exit 3"]).status, 3)
        XCTAssertEqual(try ws.exec(["sh", "-c", "kill -9 $$"]).status, 137)
        XCTAssertEqual(try ws.exec(["no-such-command-xyz"]).status, 127)
        try ws.write("outputs/notexec", "#!/bin/sh\n")
        XCTAssertEqual(try ws.exec([ws.path("outputs/notexec")]).status, 126)
        try ws.write("proctor.toml", "[experiment]\ncommand = [\"x\"]\ntimeout = \"forever\"\n")
        let bad = try ws.exec(["true"])
        XCTAssertEqual(bad.status, 125)
        XCTAssertTrue(bad.stderr.contains("proctor.toml:3") && bad.stderr.contains("experiment.timeout"), bad.stderr)
    }

    func testSecondExperimentFailsWhileTheLockIsHeld() throws {
        let ws = try TestWorkspace()
        let marker = "proctor-lockholder-\(getpid())"
        let first = Process()
        first.executableURL = URL(fileURLWithPath: proctorBinary)
        first.arguments = ["exec", "--workspace", ws.root, "--", "bash", "-c", "exec -a \(marker) sleep 5"]
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_MACHINE_LOCK"] = ws.path(".machine.lock")
        first.environment = env
        try first.run()
        defer { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() }
        for _ in 0..<50 where processes(containing: marker).isEmpty { usleep(100_000) }
        let second = try ws.exec(["true"])
        XCTAssertEqual(second.status, 125)
        XCTAssertTrue(second.stderr.contains("another run holds the lock"), second.stderr)
        XCTAssertTrue(ws.audit().contains { $0["kind"] as? String == "lock" && $0["decision"] as? String == "denied" })
    }
}
