import Foundation
import ProctorConfig

/// One host device node and where the sandbox sees it (the same path on a real host; tests present
/// stand-in nodes made elsewhere at the NVIDIA names).
public struct DeviceNode: Sendable, Equatable {
    public var source: String
    public var target: String

    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }
}

/// What a host path is, for `[experiment] devices`.
public enum DeviceKind: Sendable, Equatable {
    case character, block, missing, other
}

/// The host's NVIDIA GPUs as plan compilation needs them: the nodes every CUDA process opens, one
/// node per GPU with its index, and the driver's user-space files (libraries, `nvidia-smi`).
public struct GPUHost: Sendable, Equatable {
    /// `/dev/nvidiactl`, `/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools`, `/dev/nvidia-modeset`,
    /// `/dev/nvidia-caps/*`: those present.
    public var control: [DeviceNode]
    /// `/dev/nvidiaK` by K, ascending.
    public var gpus: [(index: Int, node: DeviceNode)]
    /// Host files and directories of the driver, bound read-only where no system mount has them.
    public var driverPaths: [String]

    public init(control: [DeviceNode] = [], gpus: [(index: Int, node: DeviceNode)] = [], driverPaths: [String] = []) {
        self.control = control
        self.gpus = gpus.sorted { $0.index < $1.index }
        self.driverPaths = driverPaths
    }

    public static func == (a: GPUHost, b: GPUHost) -> Bool {
        a.control == b.control && a.gpus.map(\.index) == b.gpus.map(\.index) && a.gpus.map(\.node) == b.gpus.map(\.node)
            && a.driverPaths == b.driverPaths
    }

    static let controlNames = ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"]
    /// Directories where drivers installed outside the library path keep their files (containers
    /// bind them there), and where `nvidia-smi` is looked for.
    static let driverDirectories = ["/usr/local/nvidia", "/usr/lib/x86_64-linux-gnu/nvidia"]
    static let smiDirectories = ["/usr/bin", "/usr/local/bin", "/usr/local/nvidia/bin", "/bin", "/usr/sbin"]

    /// The nodes under `dev` (a directory laid out like /dev) and the driver's files; `ldconfig` is
    /// the output of `ldconfig -p`.
    static func scan(dev: String, ldconfig: String, isCharacterDevice: (String) -> Bool,
                     entries: (String) -> [String], exists: (String) -> Bool) -> GPUHost {
        var host = GPUHost()
        for name in controlNames where isCharacterDevice(dev + "/" + name) {
            host.control.append(DeviceNode(source: dev + "/" + name, target: "/dev/" + name))
        }
        for name in entries(dev + "/nvidia-caps").sorted() where isCharacterDevice(dev + "/nvidia-caps/" + name) {
            host.control.append(DeviceNode(source: dev + "/nvidia-caps/" + name, target: "/dev/nvidia-caps/" + name))
        }
        for name in entries(dev) where name.hasPrefix("nvidia") {
            let digits = name.dropFirst(6)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let index = Int(digits),
                isCharacterDevice(dev + "/" + name) else { continue }
            host.gpus.append((index, DeviceNode(source: dev + "/" + name, target: "/dev/" + name)))
        }
        host.gpus.sort { $0.index < $1.index }
        host.driverPaths = driverFiles(ldconfig: ldconfig)
        for dir in driverDirectories where exists(dir) { host.driverPaths.append(dir) }
        if let smi = smiDirectories.map({ $0 + "/nvidia-smi" }).first(where: exists) { host.driverPaths.append(smi) }
        return host
    }

    /// The directories of the NVIDIA driver's libraries in `ldconfig -p` output
    /// (`\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1`), in order, once each.
    static func driverFiles(ldconfig: String) -> [String] {
        let prefixes = ["libcuda.", "libnvidia-", "libnvcuvid.", "libnvoptix."]
        var dirs: [String] = []
        for line in ldconfig.split(separator: "\n") {
            let name = line.trimmingCharacters(in: .whitespaces)
            guard prefixes.contains(where: { name.hasPrefix($0) }), let arrow = line.range(of: "=> ") else { continue }
            let path = String(line[arrow.upperBound...]).trimmingCharacters(in: .whitespaces)
            guard path.hasPrefix("/"), let slash = path.lastIndex(of: "/") else { continue }
            let dir = slash == path.startIndex ? "/" : String(path[..<slash])
            if !dirs.contains(dir) { dirs.append(dir) }
        }
        return dirs
    }

    nonisolated(unsafe) private static var cached: GPUHost?
    private static let lock = NSLock()

    /// This machine's, read once per process (`ldconfig -p` costs a few milliseconds).
    public static func live() -> GPUHost {
        lock.lock()
        defer { lock.unlock() }
        if let cached { return cached }
        let found = scan(dev: "/dev", ldconfig: runLdconfig(), isCharacterDevice: { DeviceKind.of($0) == .character },
                         entries: { (try? FileManager.default.contentsOfDirectory(atPath: $0)) ?? [] },
                         exists: { var st = stat(); return stat($0, &st) == 0 })
        cached = found
        return found
    }

    private static func runLdconfig() -> String {
        for path in ["/sbin/ldconfig", "/usr/sbin/ldconfig"] where FileManager.default.isExecutableFile(atPath: path) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = ["-p"]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { continue }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        return ""
    }
}

extension DeviceKind {
    /// The node at `path` as the launcher will see it (a symlink is not followed: it refuses one).
    public static func of(_ path: String) -> DeviceKind {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .missing }
        switch st.st_mode & S_IFMT {
        case S_IFCHR: return .character
        case S_IFBLK: return .block
        default: return .other
        }
    }
}
