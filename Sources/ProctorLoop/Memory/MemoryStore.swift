import Foundation
import ProctorSandbox

/// Where the research memory lives on disk, and its rebuild at `--resume`:
///
///     .proctor/memory/learnings.md         ResearchMemory.learningsMarkdown()
///     .proctor/memory/near_misses.md       ResearchMemory.nearMissesMarkdown()
///     .proctor/memory/do_not_retry.md      ResearchMemory.doNotRetryMarkdown(userLines:)
///     .proctor/memory/diffs/<run>/<iteration>.patch   the patch each iteration measured
///
/// Each file is replaced whole (write to a temporary file, rename), and only when its bytes changed,
/// so a reader never sees half a file. Unlike `AtomicFile.write` nothing is fsynced: three fsyncs
/// cost ~14 ms per iteration on the project VM (bench/memory.sh), the loop's whole overhead, and
/// nothing here is the truth. The ledger is (it fsyncs every row); the markdown files are derived
/// and `load` rebuilds them from `.proctor/runs.jsonl` and the stored patches at `--resume`. A
/// machine crash can lose the last patches (their iterations then count for no category, and a
/// near-miss among them shows "diff not stored"), never a ledger row. One writer: the run holding
/// the workspace lock.
public final class MemoryStore {
    /// The workspace root.
    public let root: String
    /// The run whose patches and memory this store holds.
    public let run: String
    /// `.proctor/memory` under the workspace.
    public let directory: String
    /// `.proctor/memory/diffs/<run>`.
    public let patchDirectory: String
    private var written: [String: Data] = [:]
    private var made: Set<String> = []

    /// The markdown files' names in `directory`.
    public static let learningsFile = "learnings.md"
    public static let nearMissesFile = "near_misses.md"
    public static let doNotRetryFile = "do_not_retry.md"

    /// The store of run `run` in the workspace at `root`; the run id must be one path component.
    public init(root: String, run: String) throws {
        guard !run.isEmpty, !run.contains("/"), run != ".", run != "..", !run.contains("\0") else {
            throw LoopError(.failed, "memory: run id '\(run)' is not a file name")
        }
        self.root = root
        self.run = run
        directory = root + "/.proctor/memory"
        patchDirectory = directory + "/diffs/" + run
    }

    /// Stores the patch iteration `iteration` measured (before `ResearchMemory.add`), so that near-misses
    /// can be re-applied and `load` can rebuild the memory. An empty patch is not stored.
    public func savePatch(_ patch: String, iteration: Int) throws {
        guard !patch.isEmpty else { return }
        try makeDirectory(patchDirectory)
        try Self.replace(patchPath(iteration), with: Data(patch.utf8))
    }

    /// The stored patch of `iteration`, nil when none was stored.
    public func patch(iteration: Int) -> String? {
        FileManager.default.contents(atPath: patchPath(iteration)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `.proctor/memory/diffs/<run>/<iteration>.patch`.
    public func patchPath(_ iteration: Int) -> String { patchDirectory + "/\(iteration).patch" }

    /// Writes the three markdown files from `memory`, each only if its bytes changed since this store
    /// last wrote it. `userLines`: the lines of the user's do-not-retry file (`userLines(path:)`).
    /// Returns the paths written.
    @discardableResult
    public func write(_ memory: ResearchMemory, userLines: [String] = []) throws -> [String] {
        try makeDirectory(directory)
        var paths: [String] = []
        for (name, text) in [
            (Self.learningsFile, memory.learningsMarkdown()), (Self.nearMissesFile, memory.nearMissesMarkdown()),
            (Self.doNotRetryFile, memory.doNotRetryMarkdown(userLines: userLines)),
        ] {
            let data = Data(text.utf8)
            guard written[name] != data else { continue }
            try Self.replace(directory + "/" + name, with: data)
            written[name] = data
            paths.append(directory + "/" + name)
        }
        return paths
    }

    /// The memory of this run rebuilt from `.proctor/runs.jsonl` (this run's records, in ledger order)
    /// and the stored patches: what `--resume` continues from. Equal, render for render, to the memory
    /// the run had fed itself.
    public func load(options: MemoryOptions) -> ResearchMemory {
        var memory = ResearchMemory(run: run, options: options)
        for record in Ledger.records(in: root + "/.proctor") where record.run == run {
            memory.add(record, patch: patch(iteration: record.iteration))
        }
        return memory
    }

    /// Creates `path` and its parents once per store (a directory removed behind its back comes back
    /// at the next failed write only: a store is per run and `.proctor` is proctor's).
    private func makeDirectory(_ path: String) throws {
        guard !made.contains(path) else { return }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        made.insert(path)
    }

    /// Replaces the file at `path` whole: a temporary file beside it (never through a link), renamed
    /// over it. Not fsynced (see the type).
    static func replace(_ path: String, with data: Data) throws {
        let temp = AtomicFile.temporary(for: path)
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw LoopError.io(errno, "memory: open \(temp)") }
        let status = WriteAll.bytes(fd, data)
        let failure: Int32? = status == 0 ? nil : status
        close(fd)
        if let failure {
            unlink(temp)
            throw LoopError.io(failure, "memory: write \(temp)")
        }
        guard rename(temp, path) == 0 else {
            let code = errno
            unlink(temp)
            throw LoopError.io(code, "memory: rename to \(path)")
        }
    }

    /// The non-empty lines of the user's do-not-retry file at `path` (at most `limit`, each made one
    /// line by `ResearchMemory.doNotRetryMarkdown`); empty when it does not exist.
    public static func userLines(path: String, limit: Int = 200) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { String($0) }.filter { !$0.allSatisfy(\.isWhitespace) }.prefix(limit).map { $0 }
    }
}
