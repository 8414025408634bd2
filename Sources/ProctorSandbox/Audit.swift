import Foundation

/// The typed fields of an audit line. Each is a string in the JSON, as before; in Swift each is a
/// type whose constants are the values proctor writes, so that a writer names `.tamper`, not a
/// spelling a reader (`proctor audit`, the report) would have to match. They are open (a
/// `RawRepresentable` struct rather than a closed enum) so that reading an audit.jsonl written by
/// another version never drops a line it does not know; values computed at run time (a limit the
/// launcher names, the rule of a denied path, a diff rule) come in through `init(rawValue:)`.
public protocol AuditValue: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible where RawValue == String {
    init(rawValue: String)
}

extension AuditValue {
    public var description: String { rawValue }
}

/// Which step wrote an audit line: a sandbox's phase, or the supervisor's validation of a candidate.
public struct AuditPhase: AuditValue {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ phase: Phase) { rawValue = phase.rawValue }
    public static let experiment = AuditPhase(.experiment)
    public static let evaluator = AuditPhase(.evaluator)
    public static let agent = AuditPhase(.agent)
    /// The supervisor's checks of a candidate or of the workspace at the start (no sandbox).
    public static let validate = AuditPhase(rawValue: "validate")
}

/// What an audit line is about.
public struct AuditKind: AuditValue {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    /// A write the sandbox denied.
    public static let write = AuditKind(rawValue: "write")
    /// A diff (or an agent's answer) that broke the policy.
    public static let diff = AuditKind(rawValue: "diff")
    /// A locked file, a validated input or the outputs changed behind the supervisor's back.
    public static let tamper = AuditKind(rawValue: "tamper")
    /// A measurement over `[limits]`, or a sandbox limit other than the three below.
    public static let limit = AuditKind(rawValue: "limit")
    public static let timeout = AuditKind(rawValue: "timeout")
    public static let memory = AuditKind(rawValue: "memory")
    public static let pids = AuditKind(rawValue: "pids")
    /// A score that ignores `PROCTOR_SEED`.
    public static let seed = AuditKind(rawValue: "seed")
    /// The experiment lock was held by another run.
    public static let lock = AuditKind(rawValue: "lock")
    /// How a launch's limits were enforced.
    public static let sandbox = AuditKind(rawValue: "sandbox")
    /// A connection the allowlist proxy refused (`host`, `port`, why in `detail`).
    public static let network = AuditKind(rawValue: "network")
}

/// What was done about it.
public struct AuditDecision: AuditValue {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let denied = AuditDecision(rawValue: "denied")
    public static let killed = AuditDecision(rawValue: "killed")
    public static let rejected = AuditDecision(rawValue: "rejected")
    /// `sandbox` lines: every limit enforced, some not, or the launch never got that far.
    public static let enforced = AuditDecision(rawValue: "enforced")
    public static let unenforced = AuditDecision(rawValue: "unenforced")
    public static let failed = AuditDecision(rawValue: "failed")
}

/// The rule that decided (the supervisor's named rules; a denied path's rule and a diff rule come
/// in by `init(rawValue:)`).
public struct AuditRule: AuditValue {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    /// A locked file differs from its pin.
    public static let locked = AuditRule(rawValue: "locked")
    public static let limits = AuditRule(rawValue: "limits")
    /// A link or special file in the outputs.
    public static let outputs = AuditRule(rawValue: "outputs")
    public static let ignoresSeed = AuditRule(rawValue: "ignores-seed")
    /// The agent's answer refused before it was applied.
    public static let agentProposal = AuditRule(rawValue: "agent-proposal")
    /// A validated path changed while the candidate was measured.
    public static let experimentInput = AuditRule(rawValue: "experiment-input")
    /// A frozen session agent ran during its experiment.
    public static let sessionFreeze = AuditRule(rawValue: "session-freeze")
    /// A session agent's request the supervisor refused as malformed (not a request, or a reply
    /// channel that is not a Unix socket).
    public static let sessionChannel = AuditRule(rawValue: "session-channel")
    /// A baseline clearly below what an earlier run measured for the same commit.
    public static let baselineDrop = AuditRule(rawValue: "baseline-drop")
}

/// One line of `.proctor/audit.jsonl`.
public struct AuditRecord: Codable, Sendable, Equatable {
    public var time: Date
    public var run: String
    /// Null outside an iteration (e.g. `proctor exec`).
    public var iteration: Int?
    public var phase: AuditPhase
    /// `write`, `diff`, `limit`, `lock`, `timeout`, `memory`, `pids`, `tamper`, `seed`, `sandbox`.
    public var kind: AuditKind
    /// `denied`, `killed`, `rejected`, or `enforced`/`unenforced`/`failed` for the sandbox's limit summary.
    public var decision: AuditDecision
    public var pid: Int?
    public var syscall: String?
    /// Absolute path.
    public var path: String?
    public var rule: AuditRule?
    public var detail: String?
    /// For `sandbox` records: how each limit was enforced (`memory: cgroup-v1 4294967296`).
    public var limits: [String: String]?
    public var count: Int?
    /// For `network` records: the destination as the sandbox asked for it.
    public var host: String?
    public var port: Int?

    public init(time: Date = Date(), run: String, iteration: Int?, phase: AuditPhase, kind: AuditKind, decision: AuditDecision,
                pid: Int? = nil, syscall: String? = nil, path: String? = nil, rule: AuditRule? = nil,
                detail: String? = nil, limits: [String: String]? = nil, count: Int? = nil, host: String? = nil, port: Int? = nil) {
        self.time = time
        self.run = run
        self.iteration = iteration
        self.phase = phase
        self.kind = kind
        self.decision = decision
        self.pid = pid
        self.syscall = syscall
        self.path = path
        self.rule = rule
        self.detail = detail
        self.limits = limits
        self.count = count
        self.host = host
        self.port = port
    }

    /// For the launcher's report lines (`Launcher.handle`), whose limit names and decisions arrive
    /// as strings from the C helper: the same record, each value taken by its raw spelling. Internal
    /// to this module: the supervisor's own lines name their values by type.
    init(time: Date = Date(), run: String, iteration: Int?, phase: String, kind: String, decision: String,
                pid: Int? = nil, syscall: String? = nil, path: String? = nil, rule: String? = nil,
                detail: String? = nil, limits: [String: String]? = nil, count: Int? = nil, host: String? = nil, port: Int? = nil) {
        self.init(time: time, run: run, iteration: iteration, phase: AuditPhase(rawValue: phase), kind: AuditKind(rawValue: kind),
                  decision: AuditDecision(rawValue: decision), pid: pid, syscall: syscall, path: path,
                  rule: rule.map(AuditRule.init(rawValue:)), detail: detail, limits: limits, count: count, host: host, port: port)
    }

    private enum CodingKeys: String, CodingKey {
        case time, run, iteration, phase, kind, decision, pid, syscall, path, rule, detail, limits, count, host, port
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(time, forKey: .time)
        try c.encode(run, forKey: .run)
        try c.encode(iteration, forKey: .iteration)  // null, not absent: the contract names the key
        try c.encode(phase, forKey: .phase)
        try c.encode(kind, forKey: .kind)
        try c.encode(decision, forKey: .decision)
        try c.encodeIfPresent(pid, forKey: .pid)
        try c.encodeIfPresent(syscall, forKey: .syscall)
        try c.encodeIfPresent(path, forKey: .path)
        try c.encodeIfPresent(rule, forKey: .rule)
        try c.encodeIfPresent(detail, forKey: .detail)
        try c.encodeIfPresent(limits, forKey: .limits)
        try c.encodeIfPresent(count, forKey: .count)
        try c.encodeIfPresent(host, forKey: .host)
        try c.encodeIfPresent(port, forKey: .port)
    }
}

/// JSON lines from one configured encoder (sorted keys, ISO 8601 dates), one `write` per record
/// on an `O_APPEND` descriptor, so concurrent writers and crashes never interleave half lines.
public enum JSONLines {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // A score that is not a number yet (before the baseline) must still round-trip.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(UTCTime.iso8601(date))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = isoFormatter.date(from: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not ISO 8601: \(text)"))
            }
            return date
        }
        return decoder
    }

    /// What a decoding failure says, in one short clause (Foundation's own is a multi-part dump):
    /// `not valid JSON`, `no key "run"`, `key "pins.a": expected a string`.
    public static func problem(_ error: Error) -> String {
        func key(_ path: [CodingKey]) -> String { "\"" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "\"" }
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "key \(key(context.codingPath)): \(context.debugDescription)"
        case .keyNotFound(let missing, let context):
            return "no key \(key(context.codingPath + [missing]))"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "key \(key(context.codingPath)): expected \(type == String.self ? "a string" : "a value of type \(type)")"
        @unknown default:
            return "\(error)"
        }
    }

    /// For reading only: writing uses `UTCTime.iso8601`, which needs no ICU formatter (building one
    /// costs about 2 ms of `proctor exec`'s start-up).
    nonisolated(unsafe) static let isoFormatter: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()

    /// Appends one record as one line with one `write(2)`. A short write (a full disk, a file size
    /// limit) is cut back off, so the next line does not run on from half a record; a torn line left
    /// by a crash of the machine mid-write is not cut (another process may be appending) but ended
    /// first, so the record starts on a line of its own and is read (it was glued to the fragment:
    /// a nudge queued after it was never delivered).
    public static func append<T: Encodable>(_ value: T, to fd: Int32, encoder: JSONEncoder) throws {
        var data = try encoder.encode(value)
        data.append(0x0A)
        var info = stat()
        var last: UInt8 = 0x0A
        if fstat(fd, &info) == 0, info.st_size > 0, pread(fd, &last, 1, info.st_size - 1) == 1, last != 0x0A {
            data.insert(0x0A, at: data.startIndex)
        }
        try data.withUnsafeBytes { raw in
            let written = write(fd, raw.baseAddress, raw.count)
            if written == raw.count { return }
            // A short write says no errno; a full filesystem is the usual cause, and saying so lets the
            // user act (the disk-full bench saw "only 545 of 1037 bytes").
            let failure: Int32 = written < 0 ? errno : shortWriteCause(fd, wanted: raw.count - written)
            var reason = String(cString: strerror(failure))
            if written >= 0 { reason += " (only \(written) of \(raw.count) bytes written)" }
            if written > 0 {
                let end = lseek(fd, 0, SEEK_CUR)  // O_APPEND: just past what was written
                if end >= written { _ = ftruncate(fd, end - off_t(written)) }
            }
            throw SandboxError(.io, "write to the log failed: \(reason)", errno: failure)
        }
    }

    /// Why a `write` of `wanted` more bytes stopped short without an errno: the file size limit
    /// (`EFBIG`), a full filesystem (`ENOSPC`), else `EIO`.
    static func shortWriteCause(_ fd: Int32, wanted: Int) -> Int32 {
        var info = stat()
        var limit = rlimit()
        if fstat(fd, &info) == 0, getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limit) == 0,
            limit.rlim_cur != rlim_t.max, UInt64(info.st_size) + UInt64(wanted) > UInt64(limit.rlim_cur) {
            return EFBIG
        }
        var space = statvfs()
        if fstatvfs(fd, &space) == 0, UInt64(space.f_bavail) * UInt64(space.f_frsize) < UInt64(wanted) { return ENOSPC }
        return EIO
    }

    /// Reads every complete line; a torn last line (a crash mid-write on another system) is skipped.
    public static func read<T: Decodable>(_ type: T.Type, from path: String) -> [T] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = decoder()
        return data.split(separator: 0x0A).compactMap { try? decoder.decode(T.self, from: Data($0)) }
    }
}

/// `.proctor/audit.jsonl`, opened for appending.
public final class AuditLog: @unchecked Sendable {
    public let path: String
    /// -1 until the first line creates the file.
    private var fd: Int32
    private let encoder = JSONLines.encoder()
    private let lock = NSLock()

    public init(path: String) throws {
        self.path = path
        // `.proctor` as a file: Foundation's error is a multi-line dump.
        var st = stat()
        let directory = (path as NSString).deletingLastPathComponent
        if stat(directory, &st) == 0, (st.st_mode & S_IFMT) != S_IFDIR {
            throw SandboxError.io(ENOTDIR, "\(directory) (proctor keeps its state there; move what is there away)")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Opened now, so that a log proctor cannot write stops it before anything runs; a missing
        // one is created with its first line, so that a command refused at its start (a dirty
        // tree, the lock held) leaves no empty log behind. (Removing an empty one on the way out
        // instead could drop the lines of another proctor that had opened it meanwhile.)
        fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            guard errno == ENOENT else { throw SandboxError.io(errno, "open \(path)") }
            guard access(directory, W_OK) == 0 else { throw SandboxError.io(errno, "create \(path)") }
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    public func append(_ record: AuditRecord) {
        lock.lock()
        defer { lock.unlock() }
        // An audit line that cannot be written must not stop the run; say so on stderr.
        do {
            if fd < 0 {
                fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
                guard fd >= 0 else { throw SandboxError.io(errno, "open \(path)") }
            }
            try JSONLines.append(record, to: fd, encoder: encoder)
        } catch {
            Console.err("proctor: audit: \(error)\n")
        }
    }
}

/// UTC timestamps formatted without Foundation's ICU-backed formatters, whose construction
/// dominated the cost of writing the first record of a process.
public enum UTCTime {
    /// `2026-11-25T12:00:00.123Z`: exactly what `ISO8601DateFormatter` with `.withInternetDateTime`
    /// and `.withFractionalSeconds` writes (milliseconds rounded to nearest), so readers that
    /// use that formatter parse it back.
    public static func iso8601(_ date: Date) -> String {
        let (fields, millis) = split(date)
        return digits(Int(fields.tm_year) + 1900, 4) + "-" + digits(Int(fields.tm_mon) + 1, 2) + "-"
            + digits(Int(fields.tm_mday), 2) + "T" + digits(Int(fields.tm_hour), 2) + ":"
            + digits(Int(fields.tm_min), 2) + ":" + digits(Int(fields.tm_sec), 2) + "." + digits(millis, 3) + "Z"
    }

    /// `20261125-120000`: `yyyyMMdd-HHmmss` in UTC, as `DateFormatter` writes it (the time rounded
    /// to the millisecond, then the seconds truncated).
    public static func compactStamp(_ date: Date) -> String {
        let (fields, _) = split(date)
        return digits(Int(fields.tm_year) + 1900, 4) + digits(Int(fields.tm_mon) + 1, 2) + digits(Int(fields.tm_mday), 2)
            + "-" + digits(Int(fields.tm_hour), 2) + digits(Int(fields.tm_min), 2) + digits(Int(fields.tm_sec), 2)
    }

    private static func split(_ date: Date) -> (tm, Int) {
        let scaled = date.timeIntervalSince1970 * 1000
        let total = Int64(scaled.rounded().clamped(-1e17, 1e17))
        var seconds = total / 1000
        var millis = total % 1000
        if millis < 0 {
            millis += 1000
            seconds -= 1
        }
        var time = time_t(seconds)
        var fields = tm()
        gmtime_r(&time, &fields)
        return (fields, Int(millis))
    }

    private static func digits(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.utf8.count >= width ? text : String(repeating: "0", count: width - text.utf8.count) + text
    }
}

extension Double {
    fileprivate func clamped(_ low: Double, _ high: Double) -> Double { isNaN ? 0 : Swift.min(Swift.max(self, low), high) }
}
