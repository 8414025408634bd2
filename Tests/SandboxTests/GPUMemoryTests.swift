import Foundation
import ProctorConfig
@testable import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 13: GPU memory read through NVML, here a stub library this test compiles with the driver's
/// entry points (nvmlInit_v2, nvmlDeviceGetCount_v2, nvmlDeviceGetHandleByIndex_v2,
/// nvmlDeviceGetComputeRunningProcesses_v3, nvmlShutdown). It reports, as using GPU memory, every
/// process on the machine whose name is in its script file: the sandbox's and a decoy outside it.
final class GPUMemoryTests: XCTestCase {
    static let stubSource = #"""
        #include <dirent.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        typedef struct { unsigned int pid; unsigned long long used; unsigned int gi, ci; } info_t;
        int nvmlInit_v2(void) { return 0; }
        int nvmlShutdown(void) { return 0; }
        int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 1; return 0; }
        int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { *h = (void *)(long)(i + 1); return i == 0 ? 0 : 2; }
        /* SCRIPT: lines "NAME BYTES"; each process whose comm is NAME holds BYTES. */
        int nvmlDeviceGetComputeRunningProcesses_v3(void *dev, unsigned int *count, info_t *out) {
            char names[16][32]; unsigned long long bytes[16]; int nn = 0;
            FILE *f = fopen(SCRIPT, "r");
            if (!f) return 999;
            while (nn < 16 && fscanf(f, "%31s %llu", names[nn], &bytes[nn]) == 2) nn++;
            fclose(f);
            unsigned int n = 0;
            DIR *d = opendir("/proc");
            struct dirent *e;
            while (d && (e = readdir(d))) {
                char p[300], comm[64] = "";
                snprintf(p, sizeof p, "/proc/%s/comm", e->d_name);
                FILE *c = fopen(p, "r");
                if (!c) continue;
                if (!fgets(comm, sizeof comm, c)) comm[0] = 0;
                fclose(c);
                comm[strcspn(comm, "\n")] = 0;
                for (int k = 0; k < nn; k++)
                    if (!strcmp(comm, names[k])) {
                        if (n < *count) { out[n].pid = (unsigned)atoi(e->d_name); out[n].used = bytes[k]; out[n].gi = out[n].ci = 0; }
                        n++;
                    }
            }
            if (d) closedir(d);
            int rc = n > *count ? 7 : 0;
            *count = n;
            return rc;
        }
        """#

    private var dir = ""

    override func setUpWithError() throws {
        try requireProctorBinary()
        var template = Array((NSTemporaryDirectory() + "/proctor-nvml-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw NSError(domain: "mkdtemp", code: Int(errno)) }
        dir = String(cString: made)
        chmod(dir, 0o755)
        try Data(Self.stubSource.utf8).write(to: URL(fileURLWithPath: dir + "/stub.c"))
        let cc = try runChild(["/usr/bin/env", "gcc", "-shared", "-fPIC", "-DSCRIPT=\"\(dir)/script\"", "-o", dir + "/libnvml-stub.so", dir + "/stub.c"])
        // gcc comes with .ci/setup (the attack tests build their probe with it too).
        guard cc.status == 0 else {
            XCTFail("building the stub NVML: \(cc.stderr)")
            throw XCTSkip("no stub library")
        }
        // A decoy outside the sandbox, under the name the sandbox's process will have too.
        try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: dir + "/gpuhog")
    }

    override func tearDown() {
        _ = try? runChild(["/bin/rm", "-rf", dir])
    }

    /// `gpuhog 20` outside any sandbox: the stub reports it as a GPU process like the sandbox's.
    private func startDecoy() throws -> Process {
        let decoy = Process()
        decoy.executableURL = URL(fileURLWithPath: dir + "/gpuhog")
        decoy.arguments = ["20"]
        try decoy.run()
        return decoy
    }

    private func script(_ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/script"))
    }

    func testTheStubLibraryIsReadAndABrokenOneRefused() throws {
        let nvml = try NVML(library: dir + "/libnvml-stub.so")
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
        let stub = try NVML(library: dir + "/libnvml-stub.so")
        env.nvml = { stub }
        env.gpus = { GPUHost(control: [DeviceNode(source: "/dev/null", target: "/dev/nvidiactl")],
                             gpus: [(0, DeviceNode(source: "/dev/zero", target: "/dev/nvidia0"))]) }
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
