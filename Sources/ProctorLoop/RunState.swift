import Foundation
import ProctorSandbox

/// `.proctor/state.json`: what `--resume` needs beyond the ledger and the branch. Written with
/// write-to-temp, fsync, rename, so a crash leaves either the old or the new state, never half.
public struct RunState: Codable, Sendable {
    public var run: String
    public var branch: String
    /// The commit the run started from; its locked files are the pins.
    public var baseCommit: String
    /// The last kept commit (the branch tip when consistent).
    public var bestCommit: String
    public var bestScore: Double
    public var baselineScore: Double
    /// Max minus min of the baseline's scores over its seeds (nil in state files from before it was kept).
    public var baselineSpread: Double?
    /// The best's mean over its confirmation seeds alone (nil: none, or a state file from before it
    /// was kept): what a candidate's confirmation seeds must beat (`Iteration.judge`).
    public var bestConfirmation: Double?
    /// The secret the fresh confirmation seeds are drawn from (`FreshSeeds`); nil in state files
    /// from before it, which `--resume` gives one.
    public var seedKey: String?
    /// SHA-256 of each locked file, by workspace-relative path.
    public var pins: [String: String]
    /// The last iteration that finished (its row is in the ledger).
    public var lastIteration: Int
    /// An iteration that started and has no row yet (the supervisor died during it).
    public var inProgress: Int?
    /// `--parallel`: the iterations proposed and not yet recorded (nil or empty in a serial run).
    public var inFlight: [Int]?
    /// Numbers given out that ended without a row (Ctrl-C with candidates in flight, one of them
    /// below a later one that was recorded): given out again first, so no number is left without
    /// a row.
    public var abandoned: [Int]?

    /// The next iteration's number: an abandoned one, else past every recorded and in-flight one.
    var nextIteration: Int { abandoned?.min() ?? highestGivenOut + 1 }

    /// The highest number recorded, being decided or in flight.
    private var highestGivenOut: Int { max(lastIteration, inProgress ?? 0, (inFlight ?? []).max() ?? 0) }

    /// Iteration `number` starts (serially, or proposed under `--parallel`): no longer abandoned.
    mutating func starting(_ number: Int) {
        abandoned?.removeAll { $0 == number }
        if abandoned?.isEmpty == true { abandoned = nil }
    }

    /// Iteration `number` ends without a row: its number is given out again, unless no recorded or
    /// in-flight iteration lies past it (then a next number reaches it anyway).
    mutating func abandon(_ number: Int) {
        inFlight?.removeAll { $0 == number }
        if inProgress == number { inProgress = nil }
        if number < highestGivenOut && !(abandoned ?? []).contains(number) { abandoned = (abandoned ?? []) + [number] }
    }

    public static func path(_ root: String) -> String { root + "/.proctor/state.json" }

    public static func load(_ root: String) -> RunState? {
        guard let data = FileManager.default.contents(atPath: path(root)),
            let state = try? JSONLines.decoder().decode(RunState.self, from: data), state.impossible == nil
        else { return nil }
        return state
    }

    /// The most iterations a run may number: a state file edited or damaged past it (or below 0)
    /// is refused, not trusted (one past `Int.max` traps, a negative iteration has no ledger row).
    static let largestIteration = 1_000_000_000

    /// What makes the state impossible (a file edited or damaged: every name in it reaches a path
    /// or a git reference, every number an iteration), nil when it is fine.
    var impossible: String? {
        func hex(_ text: String, _ lengths: Set<Int>) -> Bool { lengths.contains(text.utf8.count) && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } }
        let token = !run.isEmpty && run.utf8.count <= 100 && run != "." && run != ".."
            && run.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }
        if !token { return "run \(run.debugDescription) is not a run id" }
        if branch != "proctor/" + run { return "branch \(branch.debugDescription) is not proctor/\(run)" }
        for (name, commit) in [("baseCommit", baseCommit), ("bestCommit", bestCommit)] where !hex(commit, [40, 64]) {
            return "\(name) \(commit.debugDescription) is not a commit id"
        }
        if let bad = pins.first(where: { path, hash in
            path.isEmpty || path.hasPrefix("/") || path.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == ".." || $0 == "." || $0.isEmpty } || !hex(hash, [64])
        }) {
            return "pins holds \(bad.key.debugDescription), not a workspace path with a SHA-256"
        }
        let range = 0...RunState.largestIteration
        if !range.contains(lastIteration) { return "lastIteration \(lastIteration) is outside 0...\(RunState.largestIteration)" }
        if let inProgress, !range.contains(inProgress) { return "inProgress \(inProgress) is outside 0...\(RunState.largestIteration)" }
        if let bad = (inFlight ?? []).first(where: { !range.contains($0) }) { return "inFlight holds \(bad), outside 0...\(RunState.largestIteration)" }
        if let bad = (abandoned ?? []).first(where: { !range.contains($0) || $0 == 0 }) { return "abandoned holds \(bad), outside 1...\(RunState.largestIteration)" }
        return nil
    }

    /// The state `--resume` continues from; a missing or unreadable one refuses the start, saying which.
    static func loadForResume(_ root: String) throws -> RunState {
        guard let data = FileManager.default.contents(atPath: path(root)) else {
            throw LoopError(.refused, "nothing to resume: no \(path(root)) (start a run without --resume)")
        }
        let state: RunState
        do {
            state = try JSONLines.decoder().decode(RunState.self, from: data)
        } catch {
            throw LoopError(.refused, "\(path(root)): not a run state proctor can resume (\(JSONLines.problem(error))); start a new run without --resume")
        }
        if let impossible = state.impossible {
            throw LoopError(.refused, "\(path(root)): not a run state proctor can resume (\(impossible)); start a new run without --resume")
        }
        return state
    }

    public func save(_ root: String) throws {
        try AtomicFile.write(JSONLines.encoder().encode(self), to: RunState.path(root))
    }
}

/// Whole-file replacement that survives a crash at any moment.
public enum AtomicFile {
    /// The temporary file a whole-file write of `path` by this process goes through.
    static func temporary(for path: String) -> String { path + ".tmp-\(getpid())" }

    /// Whether `name` is such a temporary file of a process that is gone (a killed writer's).
    static func leftByDeadProcess(_ name: String) -> Bool {
        guard let mark = name.range(of: ".tmp-", options: .backwards), let pid = Int32(name[mark.upperBound...]), pid > 0 else { return false }
        return pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH
    }

    public static func write(_ data: Data, to path: String) throws {
        let temp = temporary(for: path)
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw LoopError.io(errno, "open \(temp)") }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        // The write's errno before fsync and close can change it; a short write has none (EIO, as `WriteAll`).
        let writeFailure = written < 0 ? errno : EIO
        fsync(fd)
        close(fd)
        guard written == data.count, rename(temp, path) == 0 else {
            let failure = written == data.count ? errno : writeFailure
            unlink(temp)
            throw LoopError.io(failure, "write \(path)")
        }
    }
}
