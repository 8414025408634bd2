import Foundation
@testable import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// Issue 10 ("bad input, fuzzed"): configurations that load but cannot be launched still get an
/// error naming proctor.toml and the key, as the fuzzer's oracle demands of every bad input.
final class LocatedPlanErrorTests: XCTestCase {
    private let preset = PolicyPreset(name: "test", system: ["/usr"], hide: [], tmpSize: 1 << 20, shmSize: 0, nofile: 64,
                                      stdioLimit: 1 << 20, graceMs: 100, allowNetwork: false)

    /// 400 outputs (each a writable bind) were refused naming only the editable, notes and hidden
    /// globs, and no file.
    func testTooManyOutputsNamesTheFileAndTable() {
        var config = WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml")
        config.files.outputs = (0..<400).map { "out\($0)" }
        let host = HostFacts(environment: [:], exists: { _ in true }, workspaceEntries: { [] }, interpreter: { _ in nil })
        let request = LaunchRequest(config: config, preset: preset, phase: .experiment, command: ["true"], pinnedDirectory: nil)
        XCTAssertThrowsError(try LaunchPlan.compile(request, host: host)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("/ws/proctor.toml: files: the experiment sandbox would need"), text)
            XCTAssertTrue(text.contains("too many outputs"), text)
        }
    }

    /// An output that exists as a file (`outputs = ["program.md"]`) was refused without naming
    /// the configuration.
    func testAnOutputThatIsAFileNamesTheKey() throws {
        let ws = try TestWorkspace()
        try ws.write("program.md", "read me\n")
        var config = try WorkspaceConfig.load(workspace: ws.root)
        config.files.outputs = ["program.md"]
        let env = SandboxEnvironment(config: config, preset: preset, launcher: Launcher(helper: "/nonexistent"))
        XCTAssertThrowsError(try env.prepareOutputs(clear: true)) { error in
            XCTAssertTrue("\(error)".hasPrefix(ws.root + "/proctor.toml: files.outputs: "), "\(error)")
        }
        XCTAssertEqual(ws.read("program.md"), "read me\n")
    }
}

extension LocatedPlanErrorTests {
    /// Nothing half-done: a plan refused for its size made every output directory first.
    func testARefusedPlanLeavesNoOutputDirectories() throws {
        let ws = try TestWorkspace()
        var config = try WorkspaceConfig.load(workspace: ws.root)
        config.files.outputs = (0..<400).map { "out\($0)" }
        let env = SandboxEnvironment(config: config, preset: preset, launcher: Launcher(helper: "/nonexistent"))
        XCTAssertThrowsError(try env.launch(phase: .experiment, command: ["/bin/true"], seed: nil, audit: nil,
                                            context: AuditContext(run: "t", iteration: nil, config: config)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.root + "/out0"))
    }
}

extension LocatedPlanErrorTests {
    /// `outputs = ["runs/plots"]` without a `runs/` failed its mkdir with ENOENT, naming no file or
    /// key; every level is made now, and a level that is a link is refused with the key.
    func testNestedOutputsAreMadeAndALinkOnTheWayIsRefused() throws {
        let ws = try TestWorkspace()
        var config = try WorkspaceConfig.load(workspace: ws.root)
        config.files.outputs = ["runs/plots", "~/x"]
        let env = SandboxEnvironment(config: config, preset: preset, launcher: Launcher(helper: "/nonexistent"))
        try env.prepareOutputs(clear: true)
        var isDirectory: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: ws.root + "/runs/plots", isDirectory: &isDirectory) && isDirectory.boolValue)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ws.root + "/~/x"))

        XCTAssertEqual(symlink("/tmp", ws.root + "/linked"), 0)
        config.files.outputs = ["linked/plots"]
        let linked = SandboxEnvironment(config: config, preset: preset, launcher: Launcher(helper: "/nonexistent"))
        XCTAssertThrowsError(try linked.prepareOutputs(clear: true)) { error in
            XCTAssertTrue("\(error)".hasPrefix(ws.root + "/proctor.toml: files.outputs: "), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/plots"))
    }
}
