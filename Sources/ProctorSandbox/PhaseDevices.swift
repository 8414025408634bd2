import ProctorConfig

/// The devices one phase's sandbox gets (issue 13): with `gpus`, the NVIDIA control nodes, the
/// assigned `/dev/nvidiaK`, the driver's files read-only and `CUDA_VISIBLE_DEVICES`; with the
/// experiment's `devices`, those character devices. The agent never gets any; the evaluator only
/// GPUs, and only when `[evaluator] gpus` asks. Nothing else from the host's /dev, ever.
struct PhaseDevices {
    var mounts: [LaunchPlan.Mount] = []
    var environment: [(String, String)] = []

    static func of(_ config: WorkspaceConfig, phase: Phase, preset: PolicyPreset, host: HostFacts, offset: Int = 0) throws -> PhaseDevices {
        var devices = PhaseDevices()
        let gpus: GPURequest, gpusKey: String, gpusLine: Int?, extra: [String]
        switch phase {
        case .experiment: (gpus, gpusKey, gpusLine, extra) = (config.experiment.gpus, "experiment.gpus", config.experiment.gpusLine, config.experiment.devices)
        case .evaluator: (gpus, gpusKey, gpusLine, extra) = (config.evaluator.gpus, "evaluator.gpus", config.evaluator.gpusLine, [])
        case .agent: return devices
        }
        if gpus.wanted {
            let found = host.gpus()
            let count: Int
            switch gpus {
            case .all: count = found.gpus.count
            case .count(let n): count = n
            }
            guard count > 0, count <= found.gpus.count, !found.control.isEmpty else {
                let asked = gpus == .all ? "\"all\" GPUs" : "\(count) GPU\(count == 1 ? "" : "s")"
                throw ConfigError(file: config.file, line: gpusLine, key: gpusKey,
                                  message: "\(asked) asked, but this host has \(found.gpus.count) NVIDIA GPU\(found.gpus.count == 1 ? "" : "s") (/dev/nvidiaN)\(found.control.isEmpty ? " and no /dev/nvidiactl" : ""); set gpus = 0 or run where the GPUs are")
            }
            // A `--parallel` slot's own GPUs: slots never share one.
            guard offset + count <= found.gpus.count else {
                throw ConfigError(file: config.file, line: gpusLine, key: gpusKey,
                                  message: "\(count) GPU\(count == 1 ? "" : "s") for each of the run's slots needs \(offset + count) GPUs, but this host has \(found.gpus.count); lower --parallel or gpus")
            }
            let assigned = found.gpus.dropFirst(offset).prefix(count)
            for path in found.driverPaths where !covered(path, preset: preset, config: config) {
                devices.mounts.append(.readOnly(source: path, target: path, optional: true))
            }
            devices.mounts += (found.control + assigned.map(\.node)).map { .device(source: $0.source, target: $0.target) }
            // The indices are the nodes' numbers; PCI bus order makes CUDA's numbering nvidia-smi's.
            devices.environment = [("CUDA_VISIBLE_DEVICES", assigned.map { String($0.index) }.joined(separator: ",")),
                                   ("CUDA_DEVICE_ORDER", "PCI_BUS_ID")]
        }
        for path in extra {
            let problem: String?
            switch host.deviceKind(path) {
            case .character: problem = nil
            case .block: problem = "is a block device (a disk): never passed through"
            case .missing: problem = "does not exist on this host"
            case .other: problem = "is not a character device (a symlink is not followed: name the node itself)"
            }
            if let problem {
                throw ConfigError(file: config.file, line: config.experiment.devicesLine, key: "experiment.devices", message: "\"\(path)\" \(problem)")
            }
            devices.mounts.append(.device(source: path, target: path))
        }
        return devices
    }

    /// Already visible through a system mount, or somewhere no driver file may re-expose: the
    /// workspace, a hidden path.
    private static func covered(_ path: String, preset: PolicyPreset, config: WorkspaceConfig) -> Bool {
        func beneath(_ base: String) -> Bool { path == base || path.hasPrefix(base == "/" ? "/" : base + "/") }
        return preset.system.contains(where: beneath) || preset.hide.contains(where: beneath)
            || config.sandbox.hide.contains(where: beneath) || beneath(config.root)
    }
}
