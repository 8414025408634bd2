import CNVML
import Foundation

/// NVML, opened once: the GPU memory each process holds, by host pid. `shared` is the driver's
/// `libnvidia-ml.so.1` when this host has one (nil otherwise: no GPU memory is measured); tests
/// open a stub library they build.
public final class NVML: @unchecked Sendable {
    private var api = proctor_nvml()
    private let lock = NSLock()

    public init(library: String) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard proctor_nvml_open(&api, library, &error, error.count) == 0 else {
            throw SandboxError(.notInstalled, String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }

    deinit { proctor_nvml_close(&api) }

    public static let shared: NVML? = try? NVML(library: "libnvidia-ml.so.1")

    /// Bytes of GPU memory per pid, summed over the GPUs; nil when NVML fails.
    public func memoryByProcess() -> [pid_t: Int64]? {
        lock.lock()
        defer { lock.unlock() }
        var records = [proctor_nvml_process](repeating: proctor_nvml_process(), count: 1024)
        let n = proctor_nvml_processes(&api, &records, UInt32(records.count))
        guard n >= 0 else { return nil }
        var memory: [pid_t: Int64] = [:]
        for record in records.prefix(Int(n)) {
            memory[pid_t(bitPattern: record.pid), default: 0] += Int64(clamping: record.usedGpuMemory)
        }
        return memory
    }

    /// One process's SM use over the driver's sampling period that ended at `time` (microseconds).
    public struct Sample: Sendable, Equatable {
        public var pid: pid_t
        public var time: UInt64
        public var smPercent: UInt32
    }

    /// The utilization samples newer than `since` (microseconds); nil when this NVML cannot say
    /// (no `nvmlDeviceGetProcessUtilization`, or it failed).
    public func utilization(since: UInt64) -> [Sample]? {
        lock.lock()
        defer { lock.unlock() }
        var samples = [proctor_nvml_sample](repeating: proctor_nvml_sample(), count: 1024)
        let n = proctor_nvml_utilization(&api, &samples, UInt32(samples.count), since)
        guard n >= 0 else { return nil }
        return samples.prefix(Int(n)).map { Sample(pid: pid_t(bitPattern: $0.pid), time: $0.timeStamp, smPercent: $0.smUtil) }
    }
}

/// Polls NVML while one sandbox runs: the peak GPU memory of its processes (the launcher's
/// descendants, by host pid), and with a cap, a stop of the whole sandbox the first time they hold
/// more: through the launch's own `StopSwitch`, whose watcher signals the launcher only while it is
/// not yet reaped (never a reused pid). Polled like the output cap.
final class GPUMemoryWatch: @unchecked Sendable {
    static let interval: useconds_t = 200_000

    private let nvml: NVML
    private let cap: Int64?
    /// The launch's stop, a child of its owner's: requesting it stops this launch only.
    let stop: StopSwitch
    private let lock = NSLock()
    private var launcher: pid_t = 0
    private var done = false
    private let finished = DispatchSemaphore(value: 0)
    private(set) var peak: Int64 = 0
    /// GPU-seconds of full SM use by the sandbox's processes: each utilization sample's percent times
    /// the time since that process's previous sample (a process's first sample only starts its clock).
    /// Nil when this NVML has no per-process utilization.
    private(set) var gpuSeconds: Double?
    private var lastSample: [pid_t: UInt64] = [:]
    private var newest: UInt64 = 0
    /// What was over the cap, when the sandbox was stopped for it.
    private(set) var exceeded: String?

    init(nvml: NVML, cap: Int64?, owner: StopSwitch?) throws {
        self.nvml = nvml
        self.cap = cap
        stop = try StopSwitch(parent: owner)
    }

    func start(launcher pid: pid_t) {
        launcher = pid
        Thread { [self] in
            while !isDone {
                sample()
                usleep(Self.interval)
            }
            finished.signal()
        }.start()
    }

    /// Stops polling; returns once the poller is gone.
    func finish() {
        guard launcher > 0 else { return }
        lock.lock()
        done = true
        lock.unlock()
        finished.wait()
    }

    private var isDone: Bool {
        lock.lock()
        defer { lock.unlock() }
        return done
    }

    func sample() {
        sampleTime()
        guard let memory = nvml.memoryByProcess() else { return }
        let total = memory.filter { pid, _ in Self.descends(pid, from: launcher) }.values.reduce(0, +)
        lock.lock()
        peak = max(peak, total)
        let over = cap.map { total > $0 } ?? false
        if over && exceeded == nil {
            exceeded = "GPU memory \(total >> 20) MiB over the cap of \(cap! >> 20) MiB (gpu_memory)"
            stop.request()
        }
        lock.unlock()
    }

    private func sampleTime() {
        guard let samples = nvml.utilization(since: newest) else { return }
        lock.lock()
        defer { lock.unlock() }
        var seconds = gpuSeconds ?? 0
        for sample in samples.sorted(by: { $0.time < $1.time }) where sample.time > (lastSample[sample.pid] ?? 0) {
            newest = max(newest, sample.time)
            guard Self.descends(sample.pid, from: launcher) else { continue }
            if let previous = lastSample[sample.pid] {
                seconds += Double(min(sample.smPercent, 100)) / 100 * Double(sample.time - previous) / 1_000_000
            }
            lastSample[sample.pid] = sample.time
        }
        gpuSeconds = seconds
    }

    /// Whether `pid` is `ancestor` or below it, by the parent links in /proc (at most 64 up).
    static func descends(_ pid: pid_t, from ancestor: pid_t) -> Bool {
        var current = pid
        for _ in 0..<64 {
            if current == ancestor { return true }
            guard current > 1, let parent = parentPid(current) else { return false }
            current = parent
        }
        return false
    }

    /// The fourth field of /proc/PID/stat, read after the last ')' (the name may hold any byte).
    static func parentPid(_ pid: pid_t) -> pid_t? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
            let close = data.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = data[data.index(after: close)...].split(separator: UInt8(ascii: " "))
        guard fields.count > 2 else { return nil }
        return pid_t(String(decoding: fields[1], as: UTF8.self))
    }
}
