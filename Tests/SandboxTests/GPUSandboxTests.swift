import Foundation
import ProctorConfig
@testable import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 13, from inside real sandboxes, judged from outside: stand-in device nodes presented as a
/// host's NVIDIA GPUs (no GPU on the machines this runs on) are bound where CUDA looks for them,
/// only those asked for, only in the phases that ask; the rest of the sandbox holds.
final class GPUSandboxTests: XCTestCase {
    override func setUpWithError() throws {
        try requireProctorBinary()
    }

    /// Runs `script` with sh in `phase` of `ws`, its host facts live but for the GPUs.
    private func run(_ ws: TestWorkspace, _ phase: Phase, gpus: GPUHost, _ script: String,
                     request adjust: (inout LaunchRequest) -> Void = { _ in },
                     configure: (inout WorkspaceConfig) -> Void) throws -> (status: Int32, out: String) {
        var env = try SandboxEnvironment.load(workspace: ws.root)
        configure(&env.config)
        var request = LaunchRequest(config: env.config, preset: env.preset, phase: phase, command: ["/bin/sh", "-c", script],
                                    pinnedDirectory: phase == .evaluator ? ws.root : nil)
        request.user = try SandboxUser.forThisProcess(configured: env.config.sandbox.user)
        adjust(&request)
        var host = HostFacts.live(workspace: ws.root)
        host.gpus = { gpus }
        let plan = try LaunchPlan.compile(request, host: host)
        try FileManager.default.createDirectory(atPath: ws.path("outputs"), withIntermediateDirectories: true)
        let outPath = ws.path(".out-\(phase.rawValue)")
        let fd = open(outPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(fd) }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        let result = try env.launcher.run(plan, audit: nil, context: AuditContext(run: "gpu-test", iteration: nil, config: env.config),
                                          stdin: null, stdout: fd, stderr: fd)
        return (result.status, ws.read(".out-\(phase.rawValue)") ?? "")
    }

    /// Stand-ins: /dev/zero as a GPU (reads zeros, takes writes), /dev/null as the control nodes, and
    /// a driver directory with a library the sandbox must read but not write.
    private func standIns(_ ws: TestWorkspace) throws -> GPUHost {
        let driver = ws.root + "-driver"
        try FileManager.default.createDirectory(atPath: driver, withIntermediateDirectories: true)
        try Data("FAKE-LIBCUDA\n".utf8).write(to: URL(fileURLWithPath: driver + "/libcuda.so.1"))
        chmod(driver, 0o755)
        chmod(driver + "/libcuda.so.1", 0o644)
        addTeardownBlock { _ = try? FileManager.default.removeItem(atPath: driver) }
        return GPUHost(control: [DeviceNode(source: "/dev/null", target: "/dev/nvidiactl"),
                                 DeviceNode(source: "/dev/null", target: "/dev/nvidia-uvm"),
                                 DeviceNode(source: "/dev/null", target: "/dev/nvidia-caps/nvidia-cap1")],
                       gpus: [(0, DeviceNode(source: "/dev/zero", target: "/dev/nvidia0")),
                              (1, DeviceNode(source: "/dev/zero", target: "/dev/nvidia1"))],
                       driverPaths: [driver])
    }

    func testAGPUExperimentSeesItsNodesAndTheDriverAndNothingMore() throws {
        let ws = try TestWorkspace()
        let gpus = try standIns(ws)
        let driver = gpus.driverPaths[0]
        let before = bytes(ws.path("prepare.py"))
        let script = """
            ls /dev | tr '\\n' ' '; echo; ls /dev/nvidia-caps
            echo "visible=$CUDA_VISIBLE_DEVICES order=$CUDA_DEVICE_ORDER"
            [ -c /dev/nvidia0 ] && [ "$(head -c 4 /dev/nvidia0 | od -An -tx1 | tr -d ' ')" = 00000000 ] && echo gpu-read-ok
            echo x > /dev/nvidia0 && echo x > /dev/nvidiactl && echo gpu-write-ok
            cat \(driver)/libcuda.so.1
            { echo pwn > \(driver)/libcuda.so.1; } 2>/dev/null || echo driver-write-refused
            { echo pwn >> prepare.py; } 2>/dev/null || echo locked-write-refused
            mkfifo /dev/x 2>/dev/null || echo dev-mknod-refused
            """
        let (status, out) = try run(ws, .experiment, gpus: gpus, script) { $0.experiment.gpus = .count(1) }
        XCTAssertEqual(status, 0, out)
        let lines = out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "fd full null nvidia-caps nvidia-uvm nvidia0 nvidiactl random shm stderr stdin stdout urandom zero ",
                       "the control nodes and GPU 0, not GPU 1, nothing else of the host's /dev")
        XCTAssertTrue(lines.contains("nvidia-cap1"), out)
        XCTAssertTrue(lines.contains("visible=0 order=PCI_BUS_ID"), out)
        for word in ["gpu-read-ok", "gpu-write-ok", "FAKE-LIBCUDA", "driver-write-refused", "locked-write-refused", "dev-mknod-refused"] {
            XCTAssertTrue(lines.contains(word), "\(word): \(out)")
        }
        XCTAssertEqual(bytes(ws.path("prepare.py")), before)
        XCTAssertEqual(bytes(driver + "/libcuda.so.1"), Data("FAKE-LIBCUDA\n".utf8))
    }

    /// `--parallel`: slot 1 of a run with `gpus = 1` gets the host's second GPU only; its experiment
    /// sees the slot's tree at the workspace's path and still cannot write a locked file or its GPU's
    /// neighbour, nor reach the network.
    func testASlotGetsItsOwnGPUAndNothingMore() throws {
        let ws = try TestWorkspace()
        let gpus = try standIns(ws)
        let slot = ws.root + "-slot"
        addTeardownBlock { _ = try? FileManager.default.removeItem(atPath: slot) }
        for dir in ["tree/.git", "tree/.proctor", "tree/outputs", "outputs/outputs"] {
            try FileManager.default.createDirectory(atPath: slot + "/" + dir, withIntermediateDirectories: true)
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: ws.root) where ![".git", ".proctor", "outputs"].contains(name) {
            try FileManager.default.copyItem(atPath: ws.path(name), toPath: slot + "/tree/" + name)
        }
        try Data("SLOT-COPY\n".utf8).write(to: URL(fileURLWithPath: slot + "/tree/train.py"))
        _ = try runChild(["/bin/chmod", "-R", "a+rX", slot])
        let before = bytes(ws.path("prepare.py"))
        // A listener on the host's loopback: the experiment's own loopback must not reach it.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(listen(listener, 4), 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let script = """
            ls /dev | tr '\\n' ' '; echo; echo "visible=$CUDA_VISIBLE_DEVICES"
            cat train.py
            { echo pwn >> prepare.py; } 2>/dev/null || echo locked-write-refused
            echo out > outputs/mine && echo outputs-write-ok
            python3 -c "import socket
            try: socket.create_connection(('127.0.0.1', \(port)), timeout=2); print('NET')
            except OSError as e: print('no-network', e.errno)"
            """
        let (status, out) = try run(ws, .experiment, gpus: gpus, script, request: { request in
            request.slot = SlotView(tree: slot + "/tree", outputs: slot + "/outputs", userData: [])
            request.gpuOffset = 1
        }) { $0.experiment.gpus = .count(1) }
        XCTAssertEqual(status, 0, out)
        let lines = out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "fd full null nvidia-caps nvidia-uvm nvidia1 nvidiactl random shm stderr stdin stdout urandom zero ",
                       "GPU 1, the slot's, not GPU 0")
        XCTAssertTrue(lines.contains { $0.hasPrefix("no-network ") }, "python ran and could not connect: \(out)")
        for word in ["visible=1", "SLOT-COPY", "locked-write-refused", "outputs-write-ok"] {
            XCTAssertTrue(lines.contains(word), "\(word): \(out)")
        }
        XCTAssertEqual(bytes(ws.path("prepare.py")), before)
        XCTAssertEqual(bytes(slot + "/outputs/outputs/mine"), Data("out\n".utf8), "the slot's own outputs")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("outputs/mine")), "not the workspace's")
        _ = fcntl(listener, F_SETFL, O_NONBLOCK)
        XCTAssertLessThan(accept(listener, nil, nil), 0, "the host listener received a connection")
    }

    func testOnlyTheExperimentGetsTheGPUUnlessTheEvaluatorAsks() throws {
        let ws = try TestWorkspace()
        let gpus = try standIns(ws)
        let script = "ls /dev | tr '\\n' ' '; echo \"visible=${CUDA_VISIBLE_DEVICES-unset}\""
        let plain = "fd full null random shm stderr stdin stdout urandom zero "
        let evaluator = try run(ws, .evaluator, gpus: gpus, script) { $0.experiment.gpus = .all }
        XCTAssertEqual(evaluator.out, plain + "visible=unset\n", "the experiment's gpus are not the evaluator's")
        let asked = try run(ws, .evaluator, gpus: gpus, script) { $0.evaluator.gpus = .all }
        XCTAssertEqual(asked.out, "fd full null nvidia-caps nvidia-uvm nvidia0 nvidia1 nvidiactl random shm stderr stdin stdout urandom zero visible=0,1\n")
        let none = try run(ws, .experiment, gpus: gpus, script) { $0.experiment.gpus = .none }
        XCTAssertEqual(none.out, plain + "visible=unset\n")
    }

    /// Through `proctor exec` on this host: asking for a GPU it does not have, or a device that is a
    /// disk, is the configuration's error (125, file, line, key), and nothing runs.
    func testExecRefusesGPUsAndDevicesThisHostCannotGive() throws {
        let hasGPU = FileManager.default.fileExists(atPath: "/dev/nvidiactl")
        if !hasGPU {
            let ws = try TestWorkspace(toml: TestWorkspace.defaultToml.replacingOccurrences(of: "seeds    = [42]", with: "seeds    = [42]\ngpus = 1"))
            let out = try ws.exec(["/bin/sh", "-c", "echo ran > outputs/ran"])
            XCTAssertEqual(out.status, 125, out.stderr)
            XCTAssertTrue(out.stderr.contains("proctor.toml:17: experiment.gpus: 1 GPU asked, but this host has 0 NVIDIA GPUs"), out.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("outputs/ran")))
        }
        // A block device under a name the parser does not know as a disk's (root makes one with
        // loop0's numbers): the node itself decides.
        var loop = stat()
        let standIn = "/dev/psb-test-blk-\(getpid())"
        if getuid() == 0, stat("/dev/loop0", &loop) == 0, mknod(standIn, S_IFBLK | 0o600, loop.st_rdev) == 0 {
            defer { unlink(standIn) }
            let ws = try TestWorkspace()
            try ws.write("proctor.toml", TestWorkspace.defaultToml.replacingOccurrences(of: "seeds    = [42]", with: "seeds    = [42]\ndevices = [\"\(standIn)\"]"))
            let out = try ws.exec(["/bin/true"])
            XCTAssertEqual(out.status, 125, out.stderr)
            XCTAssertTrue(out.stderr.contains("experiment.devices: \"\(standIn)\" is a block device"), out.stderr)
        }
        // A userfaultfd node (the filter denies the call; the node's ioctl gives one all the same)
        // under a name the parser passes: the launcher refuses it by its numbers, read in /proc/misc.
        let misc = (try? String(contentsOfFile: "/proc/misc", encoding: .utf8)) ?? ""
        let uffd = misc.split(separator: "\n").first { $0.hasSuffix(" userfaultfd") }.flatMap { Int32($0.split(separator: " ").first ?? "") }
        let uffdStandIn = "/dev/psb-test-misc-\(getpid())"
        if getuid() == 0, let minor = uffd, mknod(uffdStandIn, S_IFCHR | 0o600, dev_t(10 << 8) | dev_t(minor & 0xff) | (dev_t(minor) & 0xffff_ff00) << 12) == 0 {
            defer { unlink(uffdStandIn) }
            let ws = try TestWorkspace()
            try ws.write("proctor.toml", TestWorkspace.defaultToml.replacingOccurrences(of: "seeds    = [42]", with: "seeds    = [42]\ndevices = [\"\(uffdStandIn)\"]"))
            let out = try ws.exec(["/bin/sh", "-c", "echo ran > outputs/ran"])
            XCTAssertEqual(out.status, 125, out.text)
            XCTAssertTrue(out.stderr.contains("a kernel facility the sandbox's filter denies"), out.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: ws.path("outputs/ran")))
        }
        let ws = try TestWorkspace()
        try ws.write("proctor.toml", TestWorkspace.defaultToml.replacingOccurrences(of: "seeds    = [42]", with: "seeds    = [42]\ndevices = [\"/dev/sda\"]"))
        let out = try ws.exec(["/bin/true"])
        XCTAssertEqual(out.status, 125, out.stderr)
        XCTAssertTrue(out.stderr.contains("proctor.toml:17: experiment.devices: \"/dev/sda\": a disk is never passed through"), out.stderr)
    }

    /// `devices`: a host character device the experiment asked for is there, through `proctor exec`.
    func testExecPassesADeviceTheExperimentNames() throws {
        let node = ["/dev/hwrng", "/dev/vga_arbiter"].first { DeviceKind.of($0) == .character }
        guard let node else { throw XCTSkip("no spare character device on this host") }
        let ws = try TestWorkspace()
        try ws.write("proctor.toml", TestWorkspace.defaultToml.replacingOccurrences(of: "seeds    = [42]", with: "seeds    = [42]\ndevices = [\"\(node)\"]"))
        let out = try ws.exec(["/bin/sh", "-c", "ls /dev | tr '\\n' ' '; [ -c \(node) ] && echo chr"])
        XCTAssertEqual(out.status, 0, out.stderr)
        let name = String(node.dropFirst(5))
        XCTAssertTrue(out.stdout.contains(" \(name) ") && out.stdout.contains("chr"), out.stdout)
        let agent = try ws.exec(["/bin/sh", "-c", "ls /dev | tr '\\n' ' '"], phase: "agent")
        XCTAssertFalse(agent.stdout.contains(" \(name) "), "the agent never: \(agent.stdout)")
    }
}
