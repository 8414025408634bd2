/// `gpus = 0 | N | "all"` in `[experiment]` and `[evaluator]`: how many of the host's NVIDIA GPUs
/// the phase's sandbox gets (their device nodes, the driver's files, `CUDA_VISIBLE_DEVICES`).
public enum GPURequest: Sendable, Equatable {
    case count(Int)
    case all

    public static let none = GPURequest.count(0)

    public var wanted: Bool { self != .none }

    /// The key `gpus` of a table: an integer from 0 to 64, or "all".
    static func read(_ table: inout TableReader) throws -> GPURequest {
        guard table.has("gpus") else { return .none }
        if let text = try? table.string("gpus") {
            guard text == "all" else { throw table.error("gpus", "expected a number of GPUs (0 for none) or \"all\", got \"\(text)\"") }
            return .all
        }
        guard let n = try? table.int("gpus", min: 0, max: 64) else {
            throw table.error("gpus", "expected a number of GPUs from 0 to 64, or \"all\"")
        }
        return .count(n)
    }
}

/// `[experiment] devices`: other character devices passed through (an FPGA, ROCm's `/dev/kfd` and
/// `/dev/dri/renderD*`). What a name alone gives away is refused here; the node's type (a block
/// device, not a device at all) when the sandbox is planned, and its numbers by the launcher.
public enum DevicePath {
    /// Why `path` may not be passed through, or nil.
    public static func refusal(_ path: String) -> String? {
        guard path.hasPrefix("/dev/"), path.count > 5 else { return "expected a device under /dev/" }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2)
        if parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) { return "expected a plain path, with no empty, \".\" or \"..\" component" }
        let name = String(path.dropFirst(5))
        let leaf = String(parts.last ?? "")
        if ["mem", "kmem", "port", "kmsg"].contains(name) { return "the host's memory, I/O ports or kernel log are never passed through" }
        if name == "console" || name == "ptmx" || name.hasPrefix("pts") || leaf.hasPrefix("tty") || name.hasPrefix("vcs") {
            return "a terminal is never passed through"
        }
        let disks = ["sd", "hd", "vd", "xvd", "nvme", "loop", "md", "dm-", "mmcblk", "sr", "sg", "nbd", "ram", "zram", "disk/", "mapper/"]
        if disks.contains(where: { name.hasPrefix($0) }) { return "a disk is never passed through" }
        if name.hasPrefix("nvidia") { return "NVIDIA devices come with gpus = N, which also sets CUDA_VISIBLE_DEVICES" }
        // What the seccomp filter denies as a call (userfaultfd), or the host's own controls: the
        // launcher refuses these by their numbers too, whatever the node is called.
        let facilities = ["userfaultfd", "kvm", "fuse", "net/tun", "vhost-", "vsock", "uinput", "uhid", "input/", "snapshot",
                          "watchdog", "cpu/", "cpu_dma_latency", "btrfs-control", "autofs", "vfio/", "mcelog", "cuse", "rfkill"]
        if facilities.contains(where: { name == $0 || ($0.hasSuffix("/") || $0.hasSuffix("-")) && name.hasPrefix($0) || name.hasPrefix($0 + "/") }) {
            return "a kernel facility the sandbox's filter denies or a control of the host's (userfaultfd, KVM, FUSE, TUN, vhost, vsock, input, watchdog, CPU registers) is never passed through"
        }
        if let first = parts.first, sandboxOwn.contains(String(first)) {
            return "every sandbox's /dev already has \(sandboxOwn.prefix(5).joined(separator: ", ")) and the links fd, stdin, stdout, stderr (and shm, its own capped tmpfs)"
        }
        return nil
    }

    /// What the launcher puts in every sandbox's private /dev itself (sandbox/mounts.c): a device
    /// passed through at one of these names could not be placed there (the launch failed at the
    /// baseline, after the run had begun).
    static let sandboxOwn = ["null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm"]
}
