@testable import ProctorConfig
import XCTest

/// Issue 13: `[experiment] gpus`, `devices`, `gpu_memory` and `[evaluator] gpus` as read from proctor.toml.
final class GPUConfigTests: XCTestCase {
    func parse(experiment: String = "", evaluator: String = "") throws -> WorkspaceConfig {
        let text = ["[experiment]", #"command = ["python3", "train.py"]"#, experiment, "",
                    "[evaluator]", #"command = ["python3", "prepare.py"]"#, evaluator].joined(separator: "\n")
        return try WorkspaceConfig.parse(text, root: "/ws", file: "/ws/proctor.toml")
    }

    func error(experiment: String = "", evaluator: String = "") -> ConfigError? {
        do { _ = try parse(experiment: experiment, evaluator: evaluator); return nil } catch { return error as? ConfigError }
    }

    func testGPUsAreNoneByDefaultAndReadAsANumberOrAll() throws {
        let plain = try parse()
        XCTAssertEqual(plain.experiment.gpus, .none)
        XCTAssertEqual(plain.evaluator.gpus, .none)
        XCTAssertEqual(plain.experiment.devices, [])
        XCTAssertNil(plain.experiment.gpuMemoryBytes)
        XCTAssertEqual(try parse(experiment: "gpus = 2").experiment.gpus, .count(2))
        XCTAssertEqual(try parse(experiment: "gpus = 0").experiment.gpus, .none)
        let all = try parse(experiment: "gpus = \"all\"\ngpu_memory = \"8GiB\"", evaluator: "gpus = 1")
        XCTAssertEqual(all.experiment.gpus, .all)
        XCTAssertEqual(all.experiment.gpusLine, 3)
        XCTAssertEqual(all.experiment.gpuMemoryBytes, 8 << 30)
        XCTAssertEqual(all.evaluator.gpus, .count(1))
    }

    func testBadGPUValuesAreLocated() {
        for bad in ["gpus = \"some\"", "gpus = -1", "gpus = 65", "gpus = true", "gpus = 1.5"] {
            let e = error(experiment: bad)
            XCTAssertEqual(e?.key, "experiment.gpus", bad)
            XCTAssertEqual(e?.line, 3, bad)
        }
        XCTAssertEqual(error(evaluator: "gpus = \"x\"")?.key, "evaluator.gpus")
        let cap = error(experiment: "gpu_memory = \"8GiB\"")
        XCTAssertEqual(cap?.key, "experiment.gpu_memory")
        XCTAssertTrue(cap?.message.contains("gpus") ?? false, "\(String(describing: cap))")
    }

    func testDevicesRefuseDisksMemoryTerminalsAndPathsOutsideDev() throws {
        XCTAssertEqual(try parse(experiment: "devices = [\"/dev/kfd\", \"/dev/dri/renderD128\"]").experiment.devices,
                       ["/dev/kfd", "/dev/dri/renderD128"])
        let refused = ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/tty", "/dev/tty1", "/dev/ttyS0", "/dev/pts/0",
                       "/dev/console", "/dev/ptmx", "/dev/sda", "/dev/sda1", "/dev/nvme0", "/dev/nvme0n1", "/dev/loop0",
                       "/dev/dm-0", "/dev/mapper/root", "/dev/disk/by-id/x", "/dev/sg0", "/dev/vcs1", "dev/kfd", "/tmp/kfd",
                       "/dev/../etc/passwd", "/dev/", "/dev/nvidia0",
                       // What the filter denies as a call, or the host's own controls.
                       "/dev/userfaultfd", "/dev/kvm", "/dev/fuse", "/dev/net/tun", "/dev/vhost-net", "/dev/vsock",
                       "/dev/uinput", "/dev/input/event0", "/dev/snapshot", "/dev/watchdog", "/dev/cpu/0/msr",
                       "/dev/cpu_dma_latency", "/dev/btrfs-control", "/dev/vfio/vfio"]
        for path in refused {
            let e = error(experiment: "devices = [\"\(path)\"]")
            XCTAssertEqual(e?.key, "experiment.devices", path)
            XCTAssertEqual(e?.line, 3, path)
            XCTAssertTrue(e?.message.contains(path) ?? false, "\(String(describing: e))")
        }
    }

    /// The sandbox's own /dev entries, and a device listed twice, were accepted here and failed the
    /// baseline's launch (exit 1, a run begun) with "already in /dev".
    func testDevicesTheSandboxHasOrListedTwiceAreLocated() {
        for path in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/fd", "/dev/fd/3",
                     "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/shm", "/dev/shm/x"] {
            let e = error(experiment: "devices = [\"\(path)\"]")
            XCTAssertEqual(e?.key, "experiment.devices", path)
            XCTAssertEqual(e?.line, 3, path)
            XCTAssertTrue(e?.message.contains("already has") ?? false, "\(String(describing: e))")
        }
        let twice = error(experiment: "devices = [\"/dev/kfd\", \"/dev/dri/renderD128\", \"/dev/kfd\"]")
        XCTAssertEqual(twice?.key, "experiment.devices")
        XCTAssertEqual(twice?.line, 3)
        XCTAssertTrue(twice?.message.contains("\"/dev/kfd\" is listed twice") ?? false, "\(String(describing: twice))")
        XCTAssertNil(error(experiment: "devices = [\"/dev/nullish\", \"/dev/shmem\"]"))
    }
}
