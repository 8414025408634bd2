import Foundation
import ProctorTestSupport
import XCTest

/// Issue 11 from inside real sandboxed children (`proctor exec`), judged from outside: the
/// interpreter that ran, what of the home directory the child could list or read, the bytes of
/// the environment it tried to change.
final class PythonEnvironmentExecTests: XCTestCase {
    override func setUpWithError() throws {
        try requireProctorBinary()
        try PythonHome.requireVenv()
    }

    /// Prints the interpreter, then every path the child can find under `root` (the directory that
    /// holds the home), then tries to read the home's secrets and to write into its own environment.
    private func probeScript(root: String, home: String) -> String {
        """
        import os, sys
        print('EXE', sys.executable)
        print('PREFIX', sys.prefix)
        print('VIRTUAL_ENV', os.environ.get('VIRTUAL_ENV'))
        print('CONDA_PREFIX', os.environ.get('CONDA_PREFIX'))
        for top, dirs, files in os.walk('\(root)'):
            for name in dirs + files:
                print('SEEN', os.path.join(top, name))
        for rel in ['.ssh/id_ed25519', '.bash_history', 'notes/private.txt']:
            try:
                print('READ', open('\(home)/' + rel).read())
            except OSError as e:
                print('DENIED', rel, type(e).__name__)
        for target in [sys.prefix + '/bin/planted', sys.prefix + '/pyvenv.cfg', '\(home)/planted']:
            try:
                open(target, 'a').write('x')
                print('WROTE', target)
            except OSError as e:
                print('NOWRITE', target, type(e).__name__)
        """
    }

    private func lines(_ out: ChildOutcome, _ tag: String) -> [String] {
        out.stdout.split(separator: "\n").filter { $0.hasPrefix(tag + " ") }.map { String($0.dropFirst(tag.count + 1)) }
    }

    /// A `python3 -m venv` environment (with and without `--system-site-packages`), a `uv venv` one and
    /// a conda-style prefix, all in a home directory beside its secrets: each runs as itself, and the
    /// child sees its own prefix and nothing else of the home.
    func testEnvironmentInAHomeRunsAndExposesOnlyItsPrefix() throws {
        let h = try PythonHome()
        var envs = [(try PythonHome.venv(h.home + "/venvs/ml"), "VIRTUAL_ENV"),
                    (try PythonHome.venv(h.home + "/venvs/sys", systemSitePackages: true), "VIRTUAL_ENV"),
                    (try PythonHome.condaPrefix(h.home + "/miniconda3/envs/ml"), "CONDA_PREFIX")]
        do { envs.append((try PythonHome.uvVenv(h.home + "/proj/.venv"), "VIRTUAL_ENV")) } catch is XCTSkip {
            print("warning: uv is not installed: the uv venv case was not run")
        }
        let ws = try TestWorkspace()
        for (env, variable) in envs {
            let before = bytes(env + "/pyvenv.cfg")
            var environment = ProcessInfo.processInfo.environment
            environment["HOME"] = h.home
            let out = try ws.exec([env + "/bin/python", "-c", probeScript(root: h.root, home: h.home)], environment: environment)
            XCTAssertEqual(out.status, 0, out.text)
            XCTAssertEqual(lines(out, "EXE"), [env + "/bin/python"], out.text)
            XCTAssertEqual(lines(out, "PREFIX"), [env], "the environment's interpreter, not its base")
            XCTAssertEqual(lines(out, variable), [env], out.text)
            // Everything the child found under the home's parent: the environment and the directories on its way.
            for path in lines(out, "SEEN") {
                XCTAssertTrue(path == env || path.hasPrefix(env + "/") || env.hasPrefix(path + "/"), "\(env): the sandbox sees \(path)")
            }
            XCTAssertFalse(lines(out, "SEEN").isEmpty, out.text)
            XCTAssertEqual(lines(out, "READ"), [], "a secret of the home was read")
            XCTAssertEqual(lines(out, "DENIED").count, 3, out.text)
            // The environment is read-only. The directories on its way exist only in the sandbox's own
            // view (its private /tmp here; an unprivileged sandbox owns them and may write there):
            // whatever is written there never reaches the host's home, checked below.
            XCTAssertEqual(lines(out, "WROTE").filter { $0.hasPrefix(env + "/") }, [], out.text)
            XCTAssertFalse(out.stdout.contains("SECRET"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: env + "/bin/planted"))
            XCTAssertFalse(FileManager.default.fileExists(atPath: h.home + "/planted"))
            XCTAssertEqual(bytes(env + "/pyvenv.cfg"), before)
        }
        // The conda environment's own packages are importable inside.
        let conda = envs[2].0
        let imported = try ws.exec([conda + "/bin/python", "-c", "import condamarker; print(condamarker.where)"])
        XCTAssertEqual(imported.status, 0, imported.text)
        XCTAssertEqual(imported.stdout, "conda\n")
    }

    /// The silent switch: an activated venv and `python3`. With PATH passed (the bundled
    /// workspace's `env = ["PATH", "LANG"]`) the venv's interpreter runs inside; without, proctor
    /// refuses before anything runs, with exit 125 and both interpreters named.
    func testActivatedVenvRunsItselfOrIsRefused() throws {
        let h = try PythonHome()
        let env = try PythonHome.venv(h.home + "/venvs/ml")
        var activated = ProcessInfo.processInfo.environment
        activated["VIRTUAL_ENV"] = env
        activated["PATH"] = env + "/bin:" + (activated["PATH"] ?? "/usr/bin:/bin")
        activated["HOME"] = h.home
        let ws = try TestWorkspace()
        let script = "import sys, os; print(sys.executable); print(sys.prefix); print(os.environ.get('VIRTUAL_ENV'))"
        let ran = try ws.exec(["python3", "-c", script], environment: activated)
        XCTAssertEqual(ran.status, 0, ran.text)
        XCTAssertEqual(ran.stdout, "\(env)/bin/python3\n\(env)\n\(env)\n")

        try ws.write("proctor.toml", TestWorkspace.defaultToml.replacingOccurrences(of: "env      = [\"PATH\", \"LANG\"]", with: "env = [\"LANG\"]"))
        let marker = ws.path("outputs/ran")
        let refused = try ws.exec(["python3", "-c", "open('\(marker)', 'w')"], environment: activated)
        XCTAssertEqual(refused.status, 125, refused.text)
        XCTAssertTrue(refused.stderr.contains(env + "/bin/python3"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("[experiment] env = [\"PATH\", ...]"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "nothing ran")
    }

    /// A project's `.venv/` is read-only in every phase: an experiment, an agent and the evaluator try
    /// to plant a `sitecustomize.py` that every later run of the environment would import.
    func testWorkspaceEnvironmentStaysReadOnlyInEveryPhase() throws {
        let ws = try TestWorkspace(toml: TestWorkspace.defaultToml.replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = [\"**\"]"))
        let env = try PythonHome.venv(ws.path(".venv"))
        let site = try PythonHome.sitePackages(env)
        let script = """
            import sys
            print(sys.prefix)
            for target in ['\(site)/sitecustomize.py', '\(env)/bin/python-planted', '\(env)/pyvenv.cfg']:
                try:
                    open(target, 'a').write('import os')
                    print('WROTE', target)
                except OSError as e:
                    print('NOWRITE', type(e).__name__)
            """
        let before = bytes(env + "/pyvenv.cfg")
        for phase in ["experiment", "agent", "evaluator"] {
            let out = try ws.exec([".venv/bin/python", "-c", script], phase: phase)
            XCTAssertEqual(out.status, 0, "\(phase): \(out.text)")
            XCTAssertTrue(out.stdout.hasPrefix(env + "\n"), "\(phase): the project's environment runs: \(out.stdout)")
            XCTAssertFalse(out.stdout.contains("WROTE"), "\(phase): \(out.stdout)")
            XCTAssertEqual(lines(out, "NOWRITE").count, 3, "\(phase): \(out.stdout)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: site + "/sitecustomize.py"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: env + "/bin/python-planted"))
        XCTAssertEqual(bytes(env + "/pyvenv.cfg"), before)
    }

    /// `{site-packages}` in `[sandbox] hide` holds in a venv: the bundled workspace's hide of
    /// scikit-learn's digits, with a stand-in for the package's data directory in the venv.
    func testPackageDataHiddenInsideAVenv() throws {
        let h = try PythonHome()
        let env = try PythonHome.venv(h.home + "/venvs/ml")
        let data = try PythonHome.sitePackages(env) + "/sklearn/datasets/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try "SECRET-DIGITS\n".write(toFile: data + "/digits.csv", atomically: false, encoding: .utf8)
        let read = "print(open('\(data)/digits.csv').read())"
        // Without the hide the stand-in is readable: this test can fail.
        let open = try TestWorkspace()
        let seen = try open.exec([env + "/bin/python", "-c", read])
        XCTAssertTrue(seen.stdout.contains("SECRET-DIGITS"), seen.text)

        let ws = try TestWorkspace(extra: "[sandbox]\nhide = [\"{site-packages}/sklearn/datasets/data\"]\n")
        for phase in ["experiment", "evaluator", "agent"] {
            let out = try ws.exec([env + "/bin/python", "-c", read], phase: phase)
            XCTAssertNotEqual(out.status, 0, "\(phase): \(out.stdout)")
            XCTAssertFalse(out.stdout.contains("SECRET"), phase)
            XCTAssertTrue(out.stderr.contains("FileNotFoundError") || out.stderr.contains("NotADirectoryError"), "\(phase): \(out.stderr)")
        }
    }
}
