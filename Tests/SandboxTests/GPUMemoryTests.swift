import Foundation
import ProctorConfig
@testable import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 13: GPU memory read through NVML, here a stub library the test compiles (`StubNVML`),
/// which reports the sandbox's processes and a decoy outside it.
final class GPUMemoryTests: XCTestCase {
    private var stub: StubNVML!
    private var dir: String { stub.directory.path }

    override func setUpWithError() throws {
        try requireProctorBinary()
        stub = try StubNVML()
    }

    /// XCTest keeps every test case object to the end of the run: its directory goes now.
    override func tearDown() { stub = nil }

    private func script(_ text: String) throws { try stub.script(text) }

    /// `gpuhog 20` outside any sandbox: the stub reports it as a GPU process like the sandbox's.
    private func startDecoy() throws -> Process {
        let decoy = Process()
        decoy.executableURL = URL(fileURLWithPath: stub.decoy)
        decoy.arguments = ["20"]
        try decoy.run()
        return decoy
    }

    func testTheStubLibraryIsReadAndABrokenOneRefused() throws {
        let nvml = try NVML(library: stub.library)
        try script("gpuhog 1000\n")
        let decoy = try startDecoy()
        defer { decoy.terminate(); decoy.waitUntilExit() }
        usleep(100_000)
        XCTAssertEqual(nvml.memoryByProcess()?[decoy.processIdentifier], 1000)
        XCTAssertTrue(GPUMemoryWatch.descends(decoy.processIdentifier, from: getpid()))
        XCTAssertFalse(GPUMemoryWatch.descends(getpid(), from: decoy.processIdentifier))
        try FileManager.default.removeItem(atPath: dir + "/script")
        XCTAssertNil(nvml.memoryByProcess(), "an NVML error is no reading, not zero")
        XCTAssertThrowsError(try NVML(library: "/bin/sh"))
        XCTAssertThrowsError(try NVML(library: dir + "/missing.so"))
    }

    /// A sandboxed experiment with a GPU (a stand-in node): its processes' GPU memory is its peak,
    /// the decoy's is not; over `gpu_memory` it is stopped, the limit named and audited.
    func testPeakGPUMemoryOfTheSandboxAndTheBudgetKill() throws {
        let ws = try TestWorkspace()
        var env = try SandboxEnvironment.load(workspace: ws.root)
        let stub = try NVML(library: stub.library)
        env.nvml = { stub }
        env.gpus = { StubNVML.oneGPU }
        env.config.experiment.gpus = .count(1)
        try script("gpuhog \(700 << 20)\n")
        let decoy = try startDecoy()
        defer { decoy.terminate(); decoy.waitUntilExit() }
        // Decoy's 700 MiB counted too would make 1400.
        let hog = ["/bin/sh", "-c", "cp /bin/sleep /tmp/gpuhog && /tmp/gpuhog 1.5"]
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(null) }
        let context = AuditContext(run: "gpu", iteration: 1, config: env.config)
        let measured = try env.launch(phase: .experiment, command: hog, seed: 1, audit: nil, context: context, stdout: null, stderr: null)
        XCTAssertEqual(measured.status, 0, measured.reason)
        XCTAssertEqual(measured.peakGPUMemoryBytes, 700 << 20, "the sandbox's process only")
        XCTAssertEqual(measured.limitsHit, [])

        let agent = try env.launch(phase: .agent, command: ["/bin/true"], seed: nil, agentHome: ws.path("outputs"), audit: nil,
                                   context: context, stdout: null, stderr: null)
        XCTAssertNil(agent.peakGPUMemoryBytes, "no GPU, no reading")

        env.config.experiment.gpuMemoryBytes = 512 << 20
        try FileManager.default.createDirectory(atPath: ws.path(".proctor"), withIntermediateDirectories: true)
        let audit = try AuditLog(path: ws.path(".proctor/audit.jsonl"))
        let started = Date()
        let capped = try env.launch(phase: .experiment, command: ["/bin/sh", "-c", "cp /bin/sleep /tmp/gpuhog && /tmp/gpuhog 20"],
                                    seed: 1, audit: audit, context: context, stdout: null, stderr: null)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "stopped at the cap, not at the end of its sleep")
        XCTAssertNotEqual(capped.status, 0)
        XCTAssertEqual(capped.limitsHit.first, "gpu_memory")
        XCTAssertTrue(capped.reason.contains("gpu_memory limit: GPU memory 700 MiB over the cap of 512 MiB"), capped.reason)
        // The launcher's own record of the stop ("signal") comes with the one that says why.
        let records = ws.audit().filter { $0["kind"] as? String == "limit" && ($0["detail"] as? String)?.hasPrefix("gpu_memory: ") == true }
        XCTAssertEqual(records.count, 1, "\(ws.audit())")
        XCTAssertEqual(records.first?["decision"] as? String, "killed")
        XCTAssertEqual(records.first?["phase"] as? String, "experiment")
    }
}
