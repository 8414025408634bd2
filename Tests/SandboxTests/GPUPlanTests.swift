@testable import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// Issue 13: what `gpus` and `devices` compile to on a host whose GPUs are presented by the test
/// (`HostFacts.gpus`): device binds, the driver's files, `CUDA_VISIBLE_DEVICES`, per phase.
final class GPUPlanTests: XCTestCase {
    static let fakeGPUs = GPUHost(
        control: [DeviceNode(source: "/dev/nvidiactl", target: "/dev/nvidiactl"),
                  DeviceNode(source: "/dev/nvidia-uvm", target: "/dev/nvidia-uvm"),
                  DeviceNode(source: "/dev/nvidia-caps/nvidia-cap1", target: "/dev/nvidia-caps/nvidia-cap1")],
        gpus: [(1, DeviceNode(source: "/dev/nvidia1", target: "/dev/nvidia1")),
               (0, DeviceNode(source: "/dev/nvidia0", target: "/dev/nvidia0"))],
        driverPaths: ["/usr/lib/x86_64-linux-gnu", "/usr/local/nvidia", "/opt/driver/lib", "/ws/lib", "/usr/bin/nvidia-smi"])

    private func plan(_ phase: Phase, experimentGPUs: GPURequest = .none, evaluatorGPUs: GPURequest = .none,
                      devices: [String] = [], gpus: GPUHost = fakeGPUs,
                      kinds: [String: DeviceKind] = [:]) throws -> LaunchPlan {
        var config = WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml")
        config.experiment.gpus = experimentGPUs
        config.experiment.gpusLine = 7
        config.experiment.devices = devices
        config.evaluator.gpus = evaluatorGPUs
        config.experiment.env = ["PATH", "CUDA_VISIBLE_DEVICES"]
        let preset = PolicyPreset(name: "test", system: ["/usr/bin", "/usr/lib", "/usr/local/lib"], hide: [], tmpSize: 1 << 20, shmSize: 0,
                                  nofile: 64, stdioLimit: 1 << 20, graceMs: 100, allowNetwork: true)
        let request = LaunchRequest(config: config, preset: preset, phase: phase, command: ["true"],
                                    pinnedDirectory: phase == .evaluator ? "/pinned" : nil, agentHome: "/home/agent")
        let host = HostFacts(environment: ["CUDA_VISIBLE_DEVICES": "0,1,2,3", "PATH": "/usr/bin"], exists: { _ in true },
                             workspaceEntries: { [] }, interpreter: { _ in nil },
                             gpus: { gpus }, deviceKind: { kinds[$0] ?? .missing })
        return try LaunchPlan.compile(request, host: host)
    }

    private func devNodes(_ plan: LaunchPlan) -> [String] {
        plan.mounts.compactMap { if case .device(_, let target) = $0 { return target } else { return nil } }
    }

    private func env(_ plan: LaunchPlan, _ name: String) -> [String] {
        plan.environment.filter { $0.0 == name }.map(\.1)
    }

    func testOneGPUGetsTheControlNodesItsOwnNodeTheDriverAndCUDAVisibleDevices() throws {
        let p = try plan(.experiment, experimentGPUs: .count(1))
        XCTAssertEqual(devNodes(p), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia0"],
                       "the lowest index first, never the other GPU")
        XCTAssertEqual(env(p, "CUDA_VISIBLE_DEVICES"), ["0"], "the host's value is replaced, once")
        XCTAssertEqual(env(p, "CUDA_DEVICE_ORDER"), ["PCI_BUS_ID"])
        let args = p.arguments
        XCTAssertTrue(args.joined(separator: " ").contains("--dev-node /dev/nvidia0 /dev/nvidia0"))
        // Driver files: those the system mounts do not show, never beneath the workspace.
        let readOnly = p.mounts.compactMap { m -> String? in if case .readOnly(let s, _, true) = m { return s } else { return nil } }
        XCTAssertTrue(readOnly.contains("/usr/local/nvidia"))
        XCTAssertTrue(readOnly.contains("/opt/driver/lib"))
        XCTAssertFalse(readOnly.contains("/usr/lib/x86_64-linux-gnu"), "already under /usr/lib")
        XCTAssertFalse(readOnly.contains("/usr/bin/nvidia-smi"), "already under /usr/bin")
        XCTAssertFalse(readOnly.contains("/ws/lib"), "a driver path never exposes the workspace")
        // The binds come after the private /dev they go in.
        let devIndex = try XCTUnwrap(args.firstIndex(of: "--dev"))
        XCTAssertLessThan(devIndex, try XCTUnwrap(args.firstIndex(of: "--dev-node")))
    }

    func testAllGPUsAndTheEvaluatorOnlyWhenItAsks() throws {
        let all = try plan(.experiment, experimentGPUs: .all)
        XCTAssertEqual(devNodes(all).suffix(2), ["/dev/nvidia0", "/dev/nvidia1"])
        XCTAssertEqual(env(all, "CUDA_VISIBLE_DEVICES"), ["0,1"])
        XCTAssertEqual(devNodes(try plan(.evaluator, experimentGPUs: .all)), [], "the evaluator gets none unless it asks")
        XCTAssertEqual(devNodes(try plan(.evaluator, experimentGPUs: .none, evaluatorGPUs: .count(1))).last, "/dev/nvidia0")
        XCTAssertEqual(devNodes(try plan(.agent, experimentGPUs: .all, evaluatorGPUs: .all)), [], "the agent never")
        let none = try plan(.experiment)
        XCTAssertEqual(devNodes(none), [])
        XCTAssertFalse(none.arguments.contains("--dev-node"))
    }

    func testMoreGPUsThanPresentIsTheConfigurationsLocatedError() {
        for (request, host) in [(GPURequest.count(3), Self.fakeGPUs), (.count(1), GPUHost()), (.all, GPUHost())] {
            XCTAssertThrowsError(try plan(.experiment, experimentGPUs: request, gpus: host)) { error in
                let e = error as? ConfigError
                XCTAssertEqual(e?.key, "experiment.gpus", "\(error)")
                XCTAssertEqual(e?.line, 7)
                XCTAssertEqual(e?.file, "/ws/proctor.toml")
                XCTAssertTrue(e?.message.contains("this host has \(host.gpus.count) NVIDIA GPU") ?? false, "\(error)")
            }
        }
    }

    func testDevicesPassOnlyCharacterDevicesToTheExperiment() throws {
        let kinds: [String: DeviceKind] = ["/dev/kfd": .character, "/dev/blk": .block, "/dev/file": .other]
        let p = try plan(.experiment, devices: ["/dev/kfd"], kinds: kinds)
        XCTAssertEqual(devNodes(p), ["/dev/kfd"])
        XCTAssertEqual(env(p, "CUDA_VISIBLE_DEVICES"), ["0,1,2,3"], "no gpus: the host's allowlisted value, untouched")
        XCTAssertEqual(devNodes(try plan(.evaluator, devices: ["/dev/kfd"], kinds: kinds)), [], "the experiment's only")
        for (path, words) in [("/dev/blk", "block device"), ("/dev/file", "not a character device"), ("/dev/gone", "does not exist")] {
            XCTAssertThrowsError(try plan(.experiment, devices: [path], kinds: kinds)) { error in
                XCTAssertEqual((error as? ConfigError)?.key, "experiment.devices")
                XCTAssertTrue("\(error)".contains(words) && "\(error)".contains(path), "\(error)")
            }
        }
    }

    func testDiscoveryReadsTheNodesAndTheDriversLibraryDirectories() {
        let ldconfig = """
            1234 libs found in cache `/etc/ld.so.cache'
            \tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1
            \tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
            \tlibcuda.so.1 (libc6,x86-64) => /usr/local/nvidia/lib64/libcuda.so.1
            \tlibcuda.so (libc6,x86-64) => /usr/local/nvidia/lib64/libcuda.so
            """
        XCTAssertEqual(GPUHost.driverFiles(ldconfig: ldconfig), ["/usr/lib/x86_64-linux-gnu", "/usr/local/nvidia/lib64"])
        let chars: Set = ["/d/nvidiactl", "/d/nvidia-uvm", "/d/nvidia0", "/d/nvidia10", "/d/nvidia2", "/d/nvidia-caps/nvidia-cap2"]
        let found = GPUHost.scan(
            dev: "/d", ldconfig: ldconfig, isCharacterDevice: { chars.contains($0) },
            entries: { $0 == "/d" ? ["nvidiactl", "nvidia-uvm", "nvidia0", "nvidia10", "nvidia2", "nvidia3", "nvidiax", "null"]
                                  : $0 == "/d/nvidia-caps" ? ["nvidia-cap2"] : [] },
            exists: { $0 == "/usr/bin/nvidia-smi" })
        XCTAssertEqual(found.control.map(\.target), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps/nvidia-cap2"])
        XCTAssertEqual(found.control.first?.source, "/d/nvidiactl")
        XCTAssertEqual(found.gpus.map(\.index), [0, 2, 10], "nvidia3 is no device here, nvidiax no GPU")
        XCTAssertEqual(found.driverPaths, ["/usr/lib/x86_64-linux-gnu", "/usr/local/nvidia/lib64", "/usr/bin/nvidia-smi"])
    }
}
