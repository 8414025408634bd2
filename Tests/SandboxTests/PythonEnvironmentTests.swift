import Foundation
@testable import ProctorConfig
@testable import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 11: what a phase's `command[0]` means, resolved on the host against real environments
/// (`python3 -m venv`, `uv venv`, a conda-style prefix), what of them a plan mounts, and the
/// refusals where the sandbox would run another interpreter than the host or one it cannot see.
final class PythonEnvironmentTests: XCTestCase {
    private let system = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt"]

    private func query(_ command: String, path: String = "/usr/local/bin:/usr/bin:/bin", environment: [String: String] = [:],
                       workspace: String, home: String) -> InterpreterQuery {
        var env = environment
        env["HOME"] = env["HOME"] ?? home
        return InterpreterQuery(command: command, sandboxPath: path, environment: env, workspace: workspace,
                                visible: system + [workspace], key: "[experiment] command", envKey: "[experiment] env",
                                file: workspace + "/proctor.toml")
    }

    private func refusal(_ q: InterpreterQuery, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            let found = try PythonEnvironment.resolve(q, probeCache: nil)
            XCTFail("not refused: \(String(describing: found))", file: file, line: line)
            return ""
        } catch let error as SandboxError {
            XCTAssertEqual(error.code, .interpreter, file: file, line: line)
            return error.description
        } catch {
            XCTFail("\(error)", file: file, line: line)
            return ""
        }
    }

    // MARK: Environments as users make them

    func testVenvInAHomeDirectoryMountsItsPrefixOnly() throws {
        let h = try PythonHome()
        for systemSite in [false, true] {
            let env = try PythonHome.venv(h.home + "/venvs/ml\(systemSite ? "-sys" : "")", systemSitePackages: systemSite)
            let found = try XCTUnwrap(PythonEnvironment.resolve(query(env + "/bin/python", workspace: h.root + "/ws", home: h.home), probeCache: nil))
            XCTAssertEqual(found.kind, .venv)
            XCTAssertEqual(found.executable, env + "/bin/python")
            XCTAssertEqual(found.prefix, env)
            XCTAssertEqual(found.base, "/usr", "pyvenv.cfg home = /usr/bin")
            XCTAssertEqual(found.mounts, [env], "the base is a system directory: nothing else of the home")
            XCTAssertEqual(found.bin, env + "/bin")
            XCTAssertEqual(found.variables, ["VIRTUAL_ENV": env])
            XCTAssertEqual(found.packageRoots, [env, "/usr"])
        }
    }

    func testUvVenvIsAVenv() throws {
        let h = try PythonHome()
        let env = try PythonHome.uvVenv(h.home + "/proj/.venv")
        let found = try XCTUnwrap(PythonEnvironment.resolve(query(env + "/bin/python3", workspace: h.root + "/ws", home: h.home), probeCache: nil))
        XCTAssertEqual(found.kind, .venv)
        XCTAssertEqual(found.mounts, [env])
        XCTAssertEqual(found.base, "/usr")
    }

    func testCondaStylePrefixMountsThePrefix() throws {
        let h = try PythonHome()
        let env = try PythonHome.condaPrefix(h.home + "/miniconda3/envs/ml")
        let found = try XCTUnwrap(PythonEnvironment.resolve(query(env + "/bin/python", workspace: h.root + "/ws", home: h.home), probeCache: nil))
        XCTAssertEqual(found.kind, .conda)
        XCTAssertEqual(found.mounts, [env], "not miniconda3/ nor its pkgs/: the environment only")
        XCTAssertEqual(found.variables, ["CONDA_PREFIX": env])
    }

    /// A venv made from an interpreter outside the system (uv-managed, pyenv): its base installation
    /// is mounted too, as its own prefix, not the home directory around it.
    func testBaseInstallationOutsideTheSystemIsMountedByItself() throws {
        let h = try PythonHome()
        let base = try h.installation(".local/share/uv/python/cpython-3.12.7-linux-x86_64-gnu")
        let env = h.home + "/proj/.venv"
        try h.write("proj/.venv/pyvenv.cfg", "home = \(base)/bin\ninclude-system-site-packages = false\n")
        try FileManager.default.createDirectory(atPath: env + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: env + "/bin/python", withDestinationPath: base + "/bin/python3.12")
        let found = try XCTUnwrap(PythonEnvironment.resolve(query(env + "/bin/python", workspace: h.root + "/ws", home: h.home), probeCache: nil))
        XCTAssertEqual(found.kind, .venv)
        XCTAssertEqual(found.mounts, [env, base])
        XCTAssertEqual(found.packageRoots, [env, base])
    }

    /// A pyenv shim stands for the interpreter it runs: that installation's prefix is mounted, and the
    /// shim itself, which the sandbox does not see, is never what a refusal tells the user to name.
    func testShimResolvesToTheInstallationItRuns() throws {
        let h = try PythonHome()
        let version = try h.installation(".pyenv/versions/3.12.1")
        try h.write(".pyenv/shims/python3", "#!/bin/sh\necho '\(version)/bin/python3.12'\n")
        chmod(h.home + "/.pyenv/shims/python3", 0o755)
        let shims = h.home + "/.pyenv/shims"
        let found = try XCTUnwrap(PythonEnvironment.resolve(query("python3", path: shims + ":/usr/bin:/bin", workspace: h.root + "/ws",
                                                                  home: h.home), probeCache: nil))
        XCTAssertEqual(found.kind, .installation)
        XCTAssertEqual(found.executable, version + "/bin/python3.12")
        XCTAssertEqual(found.mounts, [version], "the version's prefix, not ~/.pyenv")
        XCTAssertEqual(found.bin, version + "/bin")

        let byPath = refusal(query(shims + "/python3", workspace: h.root + "/ws", home: h.home))
        XCTAssertTrue(byPath.contains("a shim for \(version)/bin/python3.12, which the sandbox does not see"), byPath)
        XCTAssertTrue(byPath.hasSuffix("[experiment] command = [\"\(version)/bin/python3.12\", ...]"), byPath)

        let unpassed = refusal(query("python3", path: "/usr/bin:/bin", environment: ["PATH": shims + ":/usr/bin:/bin"],
                                     workspace: h.root + "/ws", home: h.home))
        XCTAssertTrue(unpassed.contains("but \(shims)/python3 (\(version)/bin/python3.12) on this host"), unpassed)
        XCTAssertTrue(unpassed.contains("[experiment] command = [\"\(version)/bin/python3.12\", ...]"), unpassed)
    }

    // MARK: Never switching interpreters silently

    /// The issue's second case: an activated venv, `command = ["python3", ...]`, and a sandbox whose
    /// PATH is not the host's. Refused, naming both interpreters and the keys that fix it.
    func testActivatedVenvWithoutItsPATHIsRefused() throws {
        let h = try PythonHome()
        let env = try PythonHome.venv(h.home + "/venvs/ml")
        let activated = ["PATH": env + "/bin:/usr/bin:/bin", "VIRTUAL_ENV": env]
        let message = refusal(query("python3", environment: activated, workspace: h.root + "/ws", home: h.home))
        XCTAssertTrue(message.contains("/usr/bin/python3"), message)
        XCTAssertTrue(message.contains(env + "/bin/python3"), message)
        XCTAssertTrue(message.contains("[experiment] command = [\"\(env)/bin/python3\", ...]"), message)
        XCTAssertTrue(message.contains("[experiment] env = [\"PATH\", ...]"), message)
        XCTAssertTrue(message.hasPrefix(h.root + "/ws/proctor.toml: "), message)

        // With the PATH passed, the same command is the venv's interpreter inside too.
        let passed = try XCTUnwrap(PythonEnvironment.resolve(query("python3", path: activated["PATH"]!, environment: activated,
                                                                   workspace: h.root + "/ws", home: h.home), probeCache: nil))
        XCTAssertEqual(passed.kind, .venv)
        XCTAssertEqual(passed.executable, env + "/bin/python3")
        XCTAssertEqual(passed.mounts, [env])
    }

    /// An activated environment whose `bin` is not first on PATH any more (`sudo`, a login shell):
    /// the command names the host's python3, the user means the environment's.
    func testActivatedEnvironmentNotOnPathIsRefused() throws {
        let h = try PythonHome()
        let env = try PythonHome.condaPrefix(h.home + "/miniconda3/envs/ml")
        let message = refusal(query("python3", path: "/usr/bin:/bin", environment: ["PATH": "/usr/bin:/bin", "CONDA_PREFIX": env],
                                    workspace: h.root + "/ws", home: h.home))
        XCTAssertTrue(message.contains("CONDA_PREFIX=\(env)"), message)
        XCTAssertTrue(message.contains(env + "/bin/python3"), message)
    }

    /// A uv or poetry project keeps its environment in `.venv/`: a bare `python3` that resolves
    /// elsewhere is not what `uv run` would run.
    func testProjectVenvBesideABarePythonIsRefused() throws {
        let h = try PythonHome()
        let ws = h.root + "/ws"
        try PythonHome.venv(ws + "/.venv")
        let message = refusal(query("python3", path: "/usr/bin:/bin", environment: ["PATH": "/usr/bin:/bin"], workspace: ws, home: h.home))
        XCTAssertTrue(message.contains(ws + "/.venv/bin/python3"), message)
        XCTAssertTrue(message.contains(".venv/ (uv, poetry)"), message)
        // Named by its path, it is the environment, seen through the workspace.
        let named = try XCTUnwrap(PythonEnvironment.resolve(query(".venv/bin/python", workspace: ws, home: h.home), probeCache: nil))
        XCTAssertEqual(named.kind, .venv)
        XCTAssertEqual(named.prefix, ws + "/.venv")
        XCTAssertEqual(named.mounts, [], "the workspace is seen anyway")
    }

    /// The issue's first case, made worse: a python in a home directory that belongs to no
    /// environment. Mounting its `bin/..` would mount the home directory.
    func testPythonInNoEnvironmentIsRefused() throws {
        let h = try PythonHome()
        try FileManager.default.createDirectory(atPath: h.home + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: h.home + "/bin/python3")
        let message = refusal(query("python3", path: h.home + "/bin:/usr/bin:/bin", workspace: h.root + "/ws", home: h.home))
        XCTAssertTrue(message.contains("lies in no Python installation or environment"), message)
        XCTAssertTrue(message.contains("Your Python environment"), message)
    }

    func testEnvironmentThatIsTheHomeDirectoryIsRefused() throws {
        let h = try PythonHome()
        try h.write("pyvenv.cfg", "home = /usr/bin\n")
        try FileManager.default.createDirectory(atPath: h.home + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: h.home + "/bin/python", withDestinationPath: PythonHome.basePython)
        let message = refusal(query(h.home + "/bin/python", workspace: h.root + "/ws", home: h.home))
        XCTAssertTrue(message.contains("the home directory itself"), message)
    }

    func testVenvWhoseBaseWasUninstalledIsRefused() throws {
        let h = try PythonHome()
        let env = try PythonHome.venv(h.home + "/venvs/old")
        try "home = /opt/python-gone/bin\n".write(toFile: env + "/pyvenv.cfg", atomically: false, encoding: .utf8)
        let message = refusal(query(env + "/bin/python", workspace: h.root + "/ws", home: h.home))
        XCTAssertTrue(message.contains("home = /opt/python-gone/bin, which does not exist"), message)
    }

    /// A link the sandbox does not see to an interpreter it does: the same interpreter runs.
    func testLinkToTheSystemInterpreterIsNoSwitch() throws {
        let h = try PythonHome()
        try FileManager.default.createDirectory(atPath: h.home + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: h.home + "/bin/python3", withDestinationPath: PythonHome.basePython)
        let found = try XCTUnwrap(PythonEnvironment.resolve(query("python3", path: h.home + "/bin:/usr/bin:/bin",
                                                                  workspace: h.root + "/ws", home: h.home), probeCache: nil))
        XCTAssertEqual(found.kind, .system)
        XCTAssertEqual(found.mounts, [])
    }

    // MARK: Plans

    private func preset() -> PolicyPreset {
        PolicyPreset(name: "test", system: system, hide: [], tmpSize: 1 << 20, shmSize: 0, nofile: 64,
                     stdioLimit: 1 << 20, graceMs: 100, allowNetwork: false)
    }

    private func request(_ ws: TestWorkspace, _ phase: Phase, _ command: [String], edit: (inout WorkspaceConfig) -> Void = { _ in }) throws -> LaunchRequest {
        var config = try WorkspaceConfig.load(workspace: ws.root)
        edit(&config)
        return LaunchRequest(config: config, preset: preset(), phase: phase, command: command,
                             pinnedDirectory: phase == .evaluator ? ws.root + "/.proctor/pinned" : nil,
                             agentHome: phase == .agent ? ws.root + "/.proctor/agent-home" : nil)
    }

    private func host(_ ws: TestWorkspace, _ environment: [String: String]) -> HostFacts {
        var facts = HostFacts.live(workspace: ws.root)
        facts.environment = environment
        facts.interpreter = { query in try PythonEnvironment.resolve(query, probeCache: nil) }
        return facts
    }

    /// The bundled workspace hides scikit-learn's digits with `{site-packages}/...`: with a venv the
    /// hide covers the venv's own packages (and its base's), after the venv is mounted.
    func testVenvPlanMountsItHidesItsPackageDataAndSetsItsVariables() throws {
        let h = try PythonHome()
        let env = try PythonHome.venv(h.home + "/venvs/ml")
        let data = try PythonHome.sitePackages(env) + "/sklearn/datasets/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let ws = try TestWorkspace(extra: "[sandbox]\nhide = [\"{site-packages}/sklearn/datasets/data\"]\n")
        let facts = host(ws, ["PATH": "/usr/bin:/bin", "HOME": h.home, "PYTHONHOME": "/elsewhere", "VIRTUAL_ENV": "/other/env",
                              "CONDA_PREFIX": "/other/conda"])
        for phase in [Phase.experiment, .evaluator] {
            let plan = try LaunchPlan.compile(request(ws, phase, [env + "/bin/python", "train.py"]) { config in
                config.experiment.env = ["PATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX"]
            }, host: facts)
            let mount = try XCTUnwrap(plan.mounts.firstIndex(of: .readOnly(source: env, target: env, optional: false)), "\(phase)")
            let hide = try XCTUnwrap(plan.mounts.firstIndex(of: .hide(data)), "\(phase): \(plan.mounts)")
            XCTAssertLessThan(mount, hide)
            let fromHome = plan.mounts.filter { "\($0)".contains(h.home) }
            XCTAssertEqual(fromHome, [.readOnly(source: env, target: env, optional: false), .hide(data)], "nothing else of the home")
            let names = plan.environment.map(\.0)
            XCTAssertFalse(names.contains("PYTHONHOME"), "never")
            XCTAssertFalse(names.contains("CONDA_PREFIX"), "not the environment mounted")
            XCTAssertEqual(plan.environment.filter { $0.0 == "VIRTUAL_ENV" }.map(\.1), [env], "the mounted one's, not the host's")
            XCTAssertEqual(plan.environment.first { $0.0 == "PATH" }?.1, env + "/bin:/usr/bin:/bin")
        }
    }

    /// An environment in the workspace is read-only in every phase: the agent's broad glob binds
    /// nothing of it writable, the evaluator sees it read-only over its empty workspace, no output
    /// may lie in it.
    func testWorkspaceEnvironmentIsReadOnlyInEveryPhase() throws {
        let ws = try TestWorkspace()
        try PythonHome.venv(ws.path(".venv"))
        let facts = host(ws, ["PATH": "/usr/bin:/bin"])
        let venv = ws.path(".venv")
        // The agent's own command is not the environment's: the environment is found in the workspace.
        let agent = try LaunchPlan.compile(request(ws, .agent, ["/bin/true"]) { $0.files.editable = ["**"] }, host: facts)
        let writable = agent.mounts.compactMap { mount -> String? in
            if case .readWrite(_, let target) = mount { return target }
            return nil
        }
        XCTAssertFalse(writable.isEmpty)
        XCTAssertFalse(writable.contains { $0 == venv || $0.hasPrefix(venv + "/") || venv.hasPrefix($0 + "/") }, "\(writable)")
        // In-process agents (mutate, http) and the diff validator: the same rule, from the files on disk.
        let config = try WorkspaceConfig.load(workspace: ws.root)
        XCTAssertTrue(config.isOffLimitsToAgents(".venv/lib/python3.11/site-packages/sitecustomize.py"))
        XCTAssertTrue(config.isOffLimitsToAgents(".venv"))
        XCTAssertFalse(config.isOffLimitsToAgents("train.py"))
        XCTAssertTrue(config.isOffLimitsToAgents("env2/pyvenv.cfg"), "a new environment is not an agent's to make")
        XCTAssertTrue(config.isOffLimitsToAgents("env3/conda-meta/history"))

        let evaluator = try LaunchPlan.compile(request(ws, .evaluator, [".venv/bin/python", "prepare.py"]), host: facts)
        let empty = try XCTUnwrap(evaluator.mounts.firstIndex(of: .tmpfs(ws.root, size: 16 << 20)))
        let bound = try XCTUnwrap(evaluator.mounts.firstIndex(of: .readOnly(source: venv, target: venv, optional: false)), "\(evaluator.mounts)")
        XCTAssertLessThan(empty, bound)

        XCTAssertThrowsError(try LaunchPlan.compile(request(ws, .experiment, [".venv/bin/python", "train.py"]) {
            $0.files.outputs = [".venv/lib"]
        }, host: facts)) { error in
            XCTAssertTrue("\(error)".contains("overlaps the Python environment"), "\(error)")
        }
    }

    /// `uv run train.py` would start uv in the sandbox (no cache, no network to sync with): refused
    /// with the interpreter to name instead.
    func testToolRunnersAreRefused() throws {
        let ws = try TestWorkspace()
        for command in [["uv", "run", "train.py"], ["poetry", "run", "python", "train.py"], ["/opt/conda/bin/conda", "run", "-n", "ml", "python"]] {
            XCTAssertThrowsError(try LaunchPlan.compile(request(ws, .experiment, command), host: host(ws, ["PATH": "/usr/bin:/bin"]))) { error in
                XCTAssertEqual((error as? SandboxError)?.code, .interpreter)
                XCTAssertTrue("\(error)".contains("run\" would start"), "\(error)")
            }
        }
        let uvRun = ["uv", "run", "train.py"]
        XCTAssertThrowsError(try LaunchPlan.compile(request(ws, .experiment, uvRun) { $0.experiment.command = uvRun }, host: host(ws, [:]))) { error in
            XCTAssertTrue("\(error)".contains("[experiment] command: \"uv run\" would start uv inside the sandbox"), "\(error)")
            XCTAssertTrue("\(error)".hasSuffix("[experiment] command = [\".venv/bin/python\", ...]"), "\(error)")
        }
        XCTAssertNoThrow(try LaunchPlan.compile(request(ws, .experiment, ["/bin/sh", "run"]), host: host(ws, ["PATH": "/usr/bin:/bin"])))
    }

    /// What `proctor run` checks before anything runs, per phase: the evaluator's own command may
    /// name another environment than the experiment's.
    func testEachCommandIsResolvedOnItsOwn() throws {
        let h = try PythonHome()
        let experiment = try PythonHome.venv(h.home + "/venvs/train")
        let evaluator = try PythonHome.condaPrefix(h.home + "/miniconda3/envs/score")
        let ws = try TestWorkspace()
        var config = try WorkspaceConfig.load(workspace: ws.root)
        config.experiment.command = [experiment + "/bin/python", "train.py"]
        config.evaluator.command = [evaluator + "/bin/python", "-I", "prepare.py"]
        let found = try SandboxEnvironment.interpreters(config: config, preset: preset(), host: host(ws, ["PATH": "/usr/bin:/bin"]))
        XCTAssertEqual(found["experiment"]?.prefix, experiment)
        XCTAssertEqual(found["experiment"]?.kind, .venv)
        XCTAssertEqual(found["evaluator"]?.prefix, evaluator)
        XCTAssertEqual(found["evaluator"]?.kind, .conda)

        let activated = host(ws, ["PATH": "/usr/bin:/bin", "VIRTUAL_ENV": experiment])
        config.files.sealed = ["sealed/**"]
        config.evaluator.sealedCommand = ["python3", "prepare.py", "--sealed"]
        XCTAssertThrowsError(try SandboxEnvironment.interpreters(config: config, preset: preset(), host: activated)) { error in
            XCTAssertTrue("\(error)".contains("[evaluator] sealed_command: \"python3\" would run /usr/bin/python3"), "\(error)")
        }
        config.evaluator.command = ["python3", "prepare.py"]
        XCTAssertThrowsError(try SandboxEnvironment.interpreters(config: config, preset: preset(), host: activated)) { error in
            XCTAssertTrue("\(error)".contains("[evaluator] command: \"python3\""), "\(error)")
        }
    }
}
