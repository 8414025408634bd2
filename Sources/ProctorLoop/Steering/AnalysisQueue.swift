import Foundation
import ProctorConfig
import ProctorSandbox

/// Analysis requests waiting for the run that holds the workspace lock:
/// `.proctor/analysis/queue/<id>.request` (written whole, with a rename, by a waiting
/// `proctor analyze`), renamed to `<id>.running` by the loop that takes it, answered with
/// `<id>.result`. A rename is atomic, so a request is run by one process only: the loop, or the
/// CLI that withdrew it when the run ended. `.proctor/` is seen by no sandbox: only proctor
/// processes of the workspace's user write here, and the loop still checks each file (a regular
/// file of its own user, small, valid JSON, a valid command) before it runs anything.
public struct AnalysisQueue: Sendable {
    public let root: String

    public init(root: String) {
        self.root = root
    }

    public var directory: String { root + "/.proctor/analysis/queue" }
    func path(_ id: String, _ suffix: String) -> String { directory + "/" + id + "." + suffix }

    /// One request as queued.
    public struct Request: Codable, Sendable, Equatable {
        public var id: String
        public var time: Date
        public var command: [String]
        /// The waiting `proctor analyze`.
        public var pid: Int32
    }

    /// The loop's answer: the analysis it ran, or why it ran none.
    public struct Result: Codable, Sendable, Equatable {
        public var id: String
        public var number: Int?
        public var error: String?
    }

    /// Queues `command`; returns its id.
    public func enqueue(_ command: [String]) throws -> String {
        let command = try AnalysisStore.validate(command)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        // Sortable by time, unique per process and call.
        let millis = Int64(Date().timeIntervalSince1970 * 1000)
        let id = String(format: "%015lld-%d-%@", millis, getpid(), String(UInt32.random(in: 0...UInt32.max), radix: 16))
        let request = Request(id: id, time: Date(), command: command, pid: getpid())
        try AtomicFile.write(JSONLines.encoder().encode(request), to: path(id, "request"))
        return id
    }

    /// Takes the request back if nobody has taken it yet (true: it will not run).
    public func withdraw(_ id: String) -> Bool {
        let mine = path(id, "withdrawn-\(getpid())")
        guard rename(path(id, "request"), mine) == 0 else { return false }
        unlink(mine)
        return true
    }

    /// Whether the loop has taken the request (it is running or answered).
    public func isTaken(_ id: String) -> Bool {
        FileManager.default.fileExists(atPath: path(id, "running")) || FileManager.default.fileExists(atPath: path(id, "result"))
    }

    /// Puts a request back in the queue that a loop took and never answered: it died (a SIGKILL, a
    /// power cut) between `runPending` taking it and writing its result. Call it only where no loop
    /// can be running it: under the workspace lock, or with the lock seen free. True when it is back.
    @discardableResult
    public func requeue(_ id: String) -> Bool {
        guard !FileManager.default.fileExists(atPath: path(id, "result")) else { return false }
        return rename(path(id, "running"), path(id, "request")) == 0
    }

    /// **For a run's start**, under the workspace lock: every request a killed run had taken and not
    /// answered goes back in the queue, so this run runs it (or, if its `proctor analyze` stopped
    /// waiting, the request is withdrawn by nobody and runs anyway, as it would have). An answered
    /// one only loses its `running` mark. The half-written directory of the first attempt stays.
    public func requeueOrphans() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasSuffix(".running") {
            let id = String(name.dropLast(".running".count))
            if !requeue(id) { unlink(path(id, "running")) }
        }
    }

    /// Whether the request is still waiting in the queue.
    public func isQueued(_ id: String) -> Bool { FileManager.default.fileExists(atPath: path(id, "request")) }

    /// Whether the loop ran (or tried) the request and could not write its answer (a full disk);
    /// the mark is removed as it is read.
    func takeUnanswered(_ id: String) -> Bool { unlink(path(id, "unanswered")) == 0 }

    /// The answer, once there is one; it is removed as it is read.
    public func takeResult(_ id: String) -> Result? {
        guard let data = AnalysisQueue.readOwnFile(path(id, "result")),
            let result = try? JSONLines.decoder().decode(Result.self, from: data), result.id == id
        else { return nil }
        unlink(path(id, "result"))
        return result
    }

    /// **For the loop**: runs the queued analyses, oldest first, at most `limit` of them, and
    /// answers each waiting `proctor analyze`. Call it between iterations, before the proposal,
    /// while the run holds its locks; then show the agent `AnalysisStore.summaries`. Never throws:
    /// a request that cannot be run is answered with the reason and removed.
    @discardableResult
    public func runPending(env: SandboxEnvironment, audit: AuditLog?, run: String, iteration: Int?,
                           limit: Int = 8) -> [AnalysisRecord] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        // Answers nobody collected (the `proctor analyze` gave up or was killed) go after an hour.
        for name in entries where name.hasSuffix(".result") || name.hasSuffix(".unanswered") {
            var st = stat()
            if lstat(directory + "/" + name, &st) == 0, time(nil) - st.st_mtim.tv_sec > 3600 { unlink(directory + "/" + name) }
        }
        let names = entries.filter { $0.hasSuffix(".request") }.sorted()
        var records: [AnalysisRecord] = []
        for name in names.prefix(limit) {
            let id = String(name.dropLast(".request".count))
            guard AnalysisQueue.isValidID(id) else {
                unlink(directory + "/" + name)
                continue
            }
            // Taken: from here on this process answers it (or it was withdrawn a moment ago).
            guard rename(path(id, "request"), path(id, "running")) == 0 else { continue }
            var result = Result(id: id, number: nil, error: nil)
            if let data = AnalysisQueue.readOwnFile(path(id, "running")),
                let request = try? JSONLines.decoder().decode(Request.self, from: data), request.id == id {
                do {
                    let record = try AnalysisStore(root: root).run(command: request.command, env: env, audit: audit, run: run,
                                                                   iteration: iteration, origin: "queue")
                    records.append(record)
                    result.number = record.number
                } catch {
                    result.error = "\(error)"
                }
            } else {
                result.error = "the queued request is not one proctor wrote (not a small regular file of this user holding a valid request)"
            }
            do {
                try AtomicFile.write(JSONLines.encoder().encode(result), to: path(id, "result"))
                unlink(path(id, "running"))
            } catch {
                // A full disk: the request renamed (no new blocks) so the waiter says what happened,
                // not that its request vanished.
                Console.err("proctor: analysis queue: \(error)\n")
                if rename(path(id, "running"), path(id, "unanswered")) != 0 { unlink(path(id, "running")) }
            }
        }
        return records
    }

    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 64 && id.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "-" }
    }

    /// A regular file (no link followed) owned by this user, at most 64 KiB.
    static func readOwnFile(_ path: String) -> Data? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid(), st.st_size <= 65536 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n == bytes.count ? Data(bytes) : nil
    }
}

/// `proctor analyze` outside a session: the analysis at once when the workspace lock is free,
/// else queued for the run that holds it.
public enum AnalyzeStep {
    /// What happened, for the CLI to print.
    public struct Outcome: Sendable {
        public var record: AnalysisRecord
        /// `AnalysisStore.summary(of:)`.
        public var summary: String
        /// The analysis directory.
        public var path: String
        /// True when the running loop ran it.
        public var queued: Bool
    }

    /// Runs the analysis and returns when it is done. Without a run holding the workspace lock, takes
    /// the locks itself (`SandboxEnvironment.takeLocks`) and runs it now. When a run holds the lock,
    /// queues it and waits for the loop to run it between iterations (`AnalysisQueue.runPending`):
    /// as long as the lock stays held while it is queued, then at most the experiment's timeout plus
    /// `margin` once taken. When the lock is released with the request still queued (the run ended,
    /// or the holder was a `proctor exec`), the request is withdrawn and run here. `say` gets one
    /// line for the user when it starts waiting. Ctrl-C (`StopSignal`) withdraws a queued request.
    public static func run(workspace: String, command: [String], margin: TimeInterval = 60, poll: TimeInterval = 0.2,
                           say: (String) -> Void = { _ in }) throws -> Outcome {
        let env = try SandboxEnvironment.load(workspace: workspace)
        let command = try AnalysisStore.validate(command)
        let root = env.config.root
        let store = AnalysisStore(root: root)
        let queue = AnalysisQueue(root: root)
        let runID = RunID.make(prefix: "analyze")
        let audit = try AuditLog(path: root + "/.proctor/audit.jsonl")
        var queued: String?
        var told = false
        var toldQueued = false
        var firstAttempt = true
        defer { if let id = queued { _ = queue.withdraw(id) } }
        while true {
            if queued == nil {
                do {
                    // Only the first refusal is audited: the retries below would flood the audit.
                    let locks = try env.takeLocks(run: runID, iteration: nil, wait: false, audit: firstAttempt ? audit : nil,
                                                  phase: .experiment)
                    let record = try withExtendedLifetime(locks) {
                        try store.run(command: command, env: env, audit: audit, run: runID, iteration: nil, origin: "cli")
                    }
                    return Outcome(record: record, summary: store.summary(of: record), path: store.path(record.number), queued: false)
                } catch let error as SandboxError {
                    guard case .lockBusy(let path, let holder) = error.code else { throw error }
                    firstAttempt = false
                    if path == ExperimentLock.workspacePath(root) {
                        queued = try queue.enqueue(command)
                        // Once: a holder seen free for a moment (its file rewritten) re-queues the request.
                        if !toldQueued {
                            toldQueued = true
                            say("a run holds the workspace (\(holder?.summary ?? "unknown holder")); queued: it runs the analysis before its next proposal")
                        }
                    } else if !told {
                        told = true
                        say("waiting for the machine lock: \(holder?.summary ?? "unknown holder")")
                    }
                }
            }
            guard let id = queued else {
                try pause(poll)
                continue
            }
            // Queued: wait for the answer, the loop taking it, or the lock going free.
            var deadline: Date?
            while true {
                if let result = queue.takeResult(id) {
                    queued = nil
                    guard let number = result.number, let record = store.record(number) else {
                        throw LoopError(.failed, "the run could not start the analysis: \(result.error ?? "no record")")
                    }
                    return Outcome(record: record, summary: store.summary(of: record), path: store.path(number), queued: true)
                }
                if queue.takeUnanswered(id) {
                    queued = nil
                    throw LoopError(.failed, "the run took the analysis but could not write its answer in \(queue.directory) (is the disk full?); see \(store.directory)")
                }
                if queue.isTaken(id) {
                    // Taken by a run that is gone without an answer (killed): back in the queue, and
                    // with the lock free, withdrawn and run here on the next pass.
                    if ExperimentLock.state(at: ExperimentLock.workspacePath(root)) == .free, queue.requeue(id) {
                        deadline = nil
                        continue
                    }
                    let limit = Double(env.config.experiment.timeoutMs + env.preset.graceMs) / 1000 + margin
                    if deadline == nil { deadline = Date().addingTimeInterval(limit) }
                    if Date() > deadline! {
                        queued = nil  // it is the loop's now; its result stays for `proctor analyze` to ignore
                        throw LoopError(.failed, "the run took the analysis but gave no result within \(Int(limit)) s; see \(store.directory)")
                    }
                } else if ExperimentLock.state(at: ExperimentLock.workspacePath(root)) == .free, queue.withdraw(id) {
                    queued = nil  // the run is gone; take the lock here
                    break
                } else if !queue.isQueued(id) && !queue.isTaken(id) {
                    // Answered (or marked unanswered) between the looks above: read it next time round.
                    if FileManager.default.fileExists(atPath: queue.path(id, "result"))
                        || FileManager.default.fileExists(atPath: queue.path(id, "unanswered")) { continue }
                    queued = nil
                    throw LoopError(.failed, "the queued analysis request disappeared from \(queue.directory)")
                }
                try pause(poll)
            }
        }
    }

    private static func pause(_ seconds: TimeInterval) throws {
        if StopSignal.received { throw LoopError(.interrupted, "interrupted while waiting for the workspace") }
        usleep(useconds_t(seconds * 1_000_000))
    }

    /// Ctrl-C stops a running analysis sandbox and a wait (the queued request is withdrawn).
    public static func installInterruptHandler() { StopSignal.install() }
}
