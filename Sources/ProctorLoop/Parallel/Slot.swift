import Foundation
import ProctorConfig
import ProctorGit
import ProctorSandbox

/// One slot of `proctor run --parallel N` (issue 13): `.proctor/slots/K/` holds `tree/`, the
/// candidate's tracked files as proctor wrote them, and `outputs/`, the slot's own outputs. Its
/// experiment sees that tree at the workspace's path (`SlotView`), never the working tree, where
/// the next candidate is being proposed; its CPUs, its GPUs and its memory budget are its own.
/// `.proctor/` is hidden from every sandbox, so no slot sees another's tree or outputs.
final class Slot: @unchecked Sendable {
    let index: Int
    let directory: String
    /// The launches of this slot: the run's environment with the slot's view and GPUs.
    let env: SandboxEnvironment
    /// The CPUs this slot's launches are pinned to (inherited from the thread that starts them).
    let cpus: [Int]
    /// The commit whose tracked files `tree/` holds, and the paths a candidate wrote over them.
    private var base: ObjectID?
    private var written: [String] = []
    private var tree: String { directory + "/tree" }

    static func root(_ workspace: String) -> String { workspace + "/.proctor/slots" }

    /// The machine slots (`PROCTOR_MACHINE_SLOTS`) `parallel` slots take. Through Slurm the cluster
    /// runs the experiments (one job per slot): this machine gives one, for what still runs here
    /// (the sealed evaluator).
    static func machineSlots(parallel: Int, executor: ExecutorSettings.Kind) -> Int {
        executor == .slurm ? 1 : parallel
    }

    /// Why this machine cannot give `parallel` slots; nil when it can (`proctor run` refuses to
    /// start, `proctor check` reports it).
    /// `named`: where the number came from (`Slot.named`).
    static func machineShortfall(parallel: Int, named: String, executor: ExecutorSettings.Kind) -> String? {
        let available = ExperimentLock.machineSlots
        guard machineSlots(parallel: parallel, executor: executor) > available else { return nil }
        return "\(named) needs \(parallel) experiment slots, but this machine has \(available) (PROCTOR_MACHINE_SLOTS, default 1: one experiment at a time, so that wall-clock budgets mean the same in every run); set PROCTOR_MACHINE_SLOTS=\(parallel) or more to split the machine"
    }

    /// The slots asked for, as the user wrote it: the flag, or the config's key with its line.
    static func named(_ parallel: Int, flag: Int?, config: WorkspaceConfig) -> String {
        if flag != nil { return "--parallel \(parallel)" }
        return "\(config.file)\(config.experiment.parallelLine.map { ":\($0)" } ?? ""): experiment.parallel = \(parallel)"
    }

    /// `userData`: `Slot.userData`, the same for every slot of the run.
    init(index: Int, of count: Int, runner: Runner, userData: [String]) throws {
        self.index = index
        directory = Slot.root(runner.root) + "/\(index)"
        FileTree.removeDirectory(directory)
        for dir in [directory + "/tree", directory + "/outputs"] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        var env = runner.env
        env.slot = SlotView(tree: directory + "/tree", outputs: directory + "/outputs", userData: userData)
        env.slotIndex = index
        // A slot's own GPUs on this machine; a Slurm job gets its GPUs from the cluster (`--gres`).
        if case .count(let n) = runner.config.experiment.gpus, runner.executorKind == .local { env.gpuOffset = index * n }
        self.env = env
        cpus = Slot.share(of: index, count: count)
    }

    /// The workspace's git-ignored entries (data sets, a `.venv/`, the hidden labels), at the top
    /// and inside tracked directories (`data/train.csv` beside a tracked `data/.gitkeep`): what a
    /// serial experiment sees of them, the slot's sees too, bound read-only from the workspace (a
    /// symbolic link is copied as a link instead: a bind would follow it). An ignored directory is
    /// one entry, not walked. Untracked entries that are not ignored, and ignored ones an `editable`
    /// or `notes` glob reaches, are the agent's work (bound live, the agent proposing the next
    /// candidate could change what a running experiment reads); a tracked file is the candidate's
    /// (in the slot's tree, even where an ignore rule matches it): never bound. The outputs, and
    /// what holds them, are the slot's own.
    static func userData(root: String, config: WorkspaceConfig, repo: Repository) throws -> [String] {
        let outputs = config.files.outputs  // workspace-relative, without "./" or a trailing "/"
        let tracked = try repo.head().map { try repo.trackedPaths(of: $0) } ?? [:]
        var found: [String] = []
        func visit(_ directory: String) throws {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? root : root + "/" + directory)) ?? []
            for name in names.sorted() {
                let path = directory.isEmpty ? name : directory + "/" + name
                if directory.isEmpty && [".git", ".proctor"].contains(name) { continue }
                if tracked[path] == false { continue }  // a tracked file
                if outputs.contains(where: { path == $0 || $0.hasPrefix(path + "/") || path.hasPrefix($0 + "/") }) { continue }
                var st = stat()
                guard lstat(root + "/" + path, &st) == 0 else { continue }
                let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
                if try repo.isIgnored(path, directory: isDirectory) {
                    if config.isUsersIgnoredPath(path) { found.append(path) }
                } else if isDirectory && tracked[path] == true {
                    try visit(path)
                }
            }
        }
        try visit("")
        return found
    }

    /// Slot `index`'s share of the CPUs this process may use: an equal contiguous part, or one CPU
    /// in turn when there are fewer CPUs than slots.
    static func share(of index: Int, count: Int) -> [Int] {
        var mask = [UInt64](repeating: 0, count: 16)
        let size = mask.count * 8
        let read = mask.withUnsafeMutableBytes { Affinity.get(0, size, $0.baseAddress!) }
        var all: [Int] = []
        if read == 0 {
            for cpu in 0..<(size * 8) where mask[cpu / 64] & (1 << UInt64(cpu % 64)) != 0 { all.append(cpu) }
        }
        guard !all.isEmpty else { return [] }
        guard all.count >= count else { return [all[index % all.count]] }
        let per = all.count / count
        return Array(all[(index * per)..<(index == count - 1 ? all.count : (index + 1) * per)])
    }

    /// Pins the calling thread to the slot's CPUs: the launcher it starts, and everything below it,
    /// inherit them. (An affinity, not a cpuset cgroup: a program that resets its own affinity can
    /// spread out again; the README says so.)
    func pinThread() {
        guard !cpus.isEmpty else { return }
        var mask = [UInt64](repeating: 0, count: 16)
        for cpu in cpus where cpu < mask.count * 64 { mask[cpu / 64] |= 1 << UInt64(cpu % 64) }
        let size = mask.count * 8
        _ = mask.withUnsafeMutableBytes { Affinity.set(0, size, $0.baseAddress!) }
    }

    /// Makes `tree/` the candidate: `best`'s tracked files with `files` written over them (nil: the
    /// file is removed). A new best rewrites the whole tree; otherwise only what the last candidate wrote.
    func prepare(best: ObjectID, files: [String: CandidateFile?], repo: Repository, config: WorkspaceConfig) throws {
        if base != best {
            FileTree.removeDirectory(tree)
            try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
            try repo.materialize(try repo.topLevelEntries(of: best).map(\.name), from: best, into: tree)
            // Mount points: the workspace's own state (hidden), the user's data and the outputs.
            for name in [".git", ".proctor"] { try Slot.makeDirectory(tree + "/" + name) }
            for path in env.slot?.userData ?? [] {
                var st = stat()
                guard lstat(config.root + "/" + path, &st) == 0 else { continue }
                try Slot.makeDirectory(tree + "/" + (path as NSString).deletingLastPathComponent)
                switch st.st_mode & S_IFMT {
                case S_IFDIR: try Slot.makeDirectory(tree + "/" + path)
                case S_IFLNK:
                    // The same link, pointing where the workspace's does (the launcher never binds a link).
                    let target = try FileManager.default.destinationOfSymbolicLink(atPath: config.root + "/" + path)
                    try FileManager.default.createSymbolicLink(atPath: tree + "/" + path, withDestinationPath: target)
                default: FileManager.default.createFile(atPath: tree + "/" + path, contents: Data())
                }
            }
            for output in config.files.outputs { try Slot.makeDirectory(tree + "/" + output) }
            base = best
        } else {
            // Back to `best`: the last candidate's files go, with the directories it made, then
            // `best`'s files come back. (Its empty directories were left: their names reached the
            // next candidates' experiments, a channel no diff showed, and a file of a later
            // candidate's at the path of one stopped the run.)
            for path in written { remove(path) }
            for path in written where (try? repo.blob(at: path, in: best)) != nil {
                try repo.materialize([path], from: best, into: tree)
            }
        }
        // What the candidate removes first (a directory it empties may be where it writes a file).
        let ordered = files.sorted { ($0.value == nil) != ($1.value == nil) ? $0.value == nil : $0.key < $1.key }
        for (path, file) in ordered {
            remove(path)
            guard let file else { continue }
            try Slot.makeDirectory(tree + "/" + (path as NSString).deletingLastPathComponent)
            try file.write(to: tree + "/" + path)
        }
        written = files.keys.sorted()
    }

    /// Removes `path` from the tree, and the directories above it that this leaves empty (git
    /// has no empty directories). The tree itself stays, and so do the mount points: no
    /// candidate's path lies in one, and one below a directory keeps it from being empty.
    private func remove(_ path: String) {
        unlink(tree + "/" + path)
        var directory = (path as NSString).deletingLastPathComponent
        while !directory.isEmpty && rmdir(tree + "/" + directory) == 0 {
            directory = (directory as NSString).deletingLastPathComponent
        }
    }

    private static func makeDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
}

/// One changed file of a candidate, as validated: its bytes and whether it is executable.
struct CandidateFile: Sendable, Equatable {
    var bytes: Data
    var executable: Bool

    /// The file at `path` now, or nil when there is none (a link is never followed: nil too).
    static func read(_ path: String) -> CandidateFile? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { close(fd); return nil }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        return CandidateFile(bytes: (try? handle.readToEnd()) ?? Data(), executable: st.st_mode & 0o100 != 0)
    }

    /// Writes the file new at `path` (an existing one is replaced, a link in its place too).
    func write(to path: String, mode: mode_t? = nil) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode ?? (executable ? 0o555 : 0o444))
        guard fd >= 0 else { throw LoopError.io(errno, "write \(path)") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { $0.isEmpty ? 0 : Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw LoopError.io(errno, "write \(path)") }
    }
}

/// glibc's `sched_getaffinity` and `sched_setaffinity` (a thread's CPU mask, pid 0 = the calling
/// thread), which Swift's Glibc module leaves out (they need `_GNU_SOURCE`): looked up once.
enum Affinity {
    typealias Call = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
    static let get: Call = lookup("sched_getaffinity")
    static let set: Call = lookup("sched_setaffinity")

    private static func lookup(_ name: String) -> Call {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else {
            return { _, _, _ in -1 }  // no such call: every slot shares the CPUs (the README says so)
        }
        return unsafeBitCast(symbol, to: Call.self)
    }
}
