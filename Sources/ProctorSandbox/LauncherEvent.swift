import CLauncherProtocol

/// One line of the launcher's report. The record kinds, their fields and the fields' types are
/// `PSB_RECORDS` in `sandbox/protocol/psb_protocol.h`, the table the launcher formats with;
/// `sandbox/README.md` says what each field means.
public enum LauncherEvent: Sendable, Equatable {
    /// The protocol the launcher speaks (`PSB_PROTOCOL_VERSION`); always the first line.
    case version(Int64)
    /// How a limit is enforced: `memory`, `cgroup-v1`, `4294967296`.
    case enforce(limit: String, mechanism: String, value: String)
    /// A limit not enforced as asked (or another problem the supervisor should say).
    case warn(limit: String, message: String)
    /// A denied write: wall-clock milliseconds, the caller's host pid, the syscall and the path
    /// (a hint read from the caller's memory, escaped).
    case deny(unixMs: Int64, pid: Int64, syscall: String, path: String)
    /// Deny records past the cap: counted, not reported.
    case dropped(count: Int64)
    /// A limit that was hit: `timeout`, `memory`, `pids`, `output`, `stdio`, `cpu`, `fsize`,
    /// `parent`, `signal`.
    case limit(kind: String, detail: String)
    /// A connection through the allowlist proxy (`--net allowlist`), when it ended: the destination
    /// as asked, `allowed`, `denied` or `dropped` (refusals past the proxy's cap; `up` counts them),
    /// why (empty for an allowed one that went well), and the bytes relayed each way.
    case net(unixMs: Int64, host: String, port: Int64, decision: String, detail: String, up: Int64, down: Int64)
    /// How the command ended; always the last line.
    case result(exit: Int64, signal: Int64, timedOut: Bool, wallMs: Int64, cpuMs: Int64, peakMemoryBytes: Int64)

    /// Parses one line (without its newline). Throws on anything `PSB_RECORDS` does not define:
    /// an unknown kind, another number of fields, a number that does not parse.
    public init(line: String) throws(LauncherProtocolError) {
        let parts = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard let spec = LauncherRecordSpec.named[String(parts[0])] else {
            throw .unknownRecord(String(parts[0]))
        }
        let f = Fields(spec: spec, values: Array(parts.dropFirst()))
        guard f.values.count == spec.types.count else {
            throw .fieldCount(record: spec.name, expected: spec.types.count, found: f.values.count)
        }
        switch spec.record {
        case PSB_RECORD_VERSION: self = .version(try f.int(0))
        case PSB_RECORD_ENFORCE: self = .enforce(limit: f.text(0), mechanism: f.text(1), value: f.text(2))
        case PSB_RECORD_WARN: self = .warn(limit: f.text(0), message: f.text(1))
        case PSB_RECORD_DENY: self = .deny(unixMs: try f.int(0), pid: try f.int(1), syscall: f.text(2), path: f.text(3))
        case PSB_RECORD_DROPPED: self = .dropped(count: try f.int(0))
        case PSB_RECORD_LIMIT: self = .limit(kind: f.text(0), detail: f.text(1))
        case PSB_RECORD_NET:
            self = .net(unixMs: try f.int(0), host: f.text(1), port: try f.int(2), decision: f.text(3), detail: f.text(4),
                        up: try f.int(5), down: try f.int(6))
        case PSB_RECORD_RESULT:
            self = .result(exit: try f.int(0), signal: try f.int(1), timedOut: try f.flag(2), wallMs: try f.int(3),
                           cpuMs: try f.int(4), peakMemoryBytes: try f.int(5))
        default:
            // A kind added to the table without a case here (the golden test names it).
            throw .unhandledRecord(spec.name)
        }
    }

    /// The fields of one line, read as the table types them.
    private struct Fields {
        var spec: LauncherRecordSpec
        var values: [Substring]

        func text(_ i: Int) -> String { String(values[i]) }

        func int(_ i: Int) throws(LauncherProtocolError) -> Int64 {
            guard spec.types[i] == "i", let value = Int64(values[i]) else { throw bad(i) }
            return value
        }

        /// An integer that is 0 or 1.
        func flag(_ i: Int) throws(LauncherProtocolError) -> Bool {
            let value = try int(i)
            guard value == 0 || value == 1 else { throw bad(i) }
            return value == 1
        }

        private func bad(_ i: Int) -> LauncherProtocolError {
            .badField(record: spec.name, field: spec.fields[i], value: String(values[i].prefix(64)))
        }
    }
}

/// One kind of report record from `PSB_RECORDS`.
public struct LauncherRecordSpec: Sendable, Equatable {
    /// `PSB_RECORD_<ID>`.
    public var record: psb_record
    /// The first field of the line: `enforce`, `deny`...
    public var name: String
    /// One per field after the name: `i` a decimal integer, `t` text.
    public var types: [Character]
    /// The fields' names, as in the table (`UNIX_MS`, `PID`...).
    public var fields: [String]

    /// Every kind, in table order.
    public static let all: [LauncherRecordSpec] = (0..<PSB_RECORD_COUNT.rawValue).map { raw in
        let record = psb_record(rawValue: raw)
        let spec = psb_record_spec(record)
        return LauncherRecordSpec(record: record, name: String(cString: spec.name), types: Array(String(cString: spec.types)),
                                  fields: String(cString: spec.fields).split(separator: " ").map(String.init))
    }

    static let named: [String: LauncherRecordSpec] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

extension psb_record: @retroactive @unchecked Sendable {}

/// A report that does not follow the launcher protocol: proctor and the launcher disagree about
/// what the lines mean, so none of them can be trusted to say how the command ended.
public enum LauncherProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A first field that names no record kind.
    case unknownRecord(String)
    /// A record with another number of fields than the table gives it.
    case fieldCount(record: String, expected: Int, found: Int)
    /// A field that does not parse as its type.
    case badField(record: String, field: String, value: String)
    /// A kind of the table that `LauncherEvent` has no case for.
    case unhandledRecord(String)
    /// The first line is not a version line of this protocol (`found` nil: not a version line).
    case version(found: Int64?, expected: Int64)
    /// A version line after the first line.
    case repeatedVersion

    public var description: String {
        let what: String
        switch self {
        case .unknownRecord(let name): what = "unknown record \"\(name.prefix(64))\""
        case .fieldCount(let record, let expected, let found): what = "\(record) record with \(found) fields, not \(expected)"
        case .badField(let record, let field, let value): what = "\(record) record: \(field) is \"\(value)\""
        case .unhandledRecord(let name): what = "\(name) record not handled by this proctor"
        case .version(let found?, let expected): what = "launcher protocol version \(found), this proctor speaks \(expected)"
        case .version(nil, let expected): what = "no version line first (this proctor speaks protocol version \(expected))"
        case .repeatedVersion: what = "a second version line"
        }
        return "proctor-sandbox report: \(what); rebuild proctor and proctor-sandbox together (stage: report)"
    }
}

/// The launcher's report as it arrives: the version line first, then the events. The first
/// violation is kept and everything after it ignored; the run then fails with it.
struct LauncherReport {
    private(set) var error: LauncherProtocolError?
    private var versionSeen = false

    /// The event of one line; nil for the version line and once the report is in error.
    mutating func event(_ line: String) -> LauncherEvent? {
        guard error == nil else { return nil }
        do throws(LauncherProtocolError) {
            let event = try LauncherEvent(line: line)
            let expected = Int64(PSB_PROTOCOL_VERSION)
            switch (versionSeen, event) {
            case (false, .version(expected)):
                versionSeen = true
                return nil
            case (false, .version(let found)): throw LauncherProtocolError.version(found: found, expected: expected)
            case (false, _): throw LauncherProtocolError.version(found: nil, expected: expected)
            case (true, .version): throw LauncherProtocolError.repeatedVersion
            case (true, _): return event
            }
        } catch {
            self.error = error
            return nil
        }
    }
}
