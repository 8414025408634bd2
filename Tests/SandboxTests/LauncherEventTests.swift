import CLauncherProtocol
import Foundation
@testable import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// The launcher protocol (sandbox/protocol/psb_protocol.h) as both sides use it: every record kind
/// formatted by the C formatter the launcher uses, parsed by `LauncherEvent`.
final class LauncherEventTests: XCTestCase {
    private enum Field {
        case i(Int64)
        case t(String)
    }

    /// One line per record kind: its fields, the exact line the launcher writes, the event it is.
    private let golden: [String: (fields: [Field], line: String, event: LauncherEvent)] = [
        "version": ([.i(Int64(PSB_PROTOCOL_VERSION))], "version\t\(PSB_PROTOCOL_VERSION)", .version(Int64(PSB_PROTOCOL_VERSION))),
        "enforce": ([.t("memory"), .t("cgroup-v1"), .t("4294967296")], "enforce\tmemory\tcgroup-v1\t4294967296",
                    .enforce(limit: "memory", mechanism: "cgroup-v1", value: "4294967296")),
        "warn": ([.t("memory"), .t("cgroup not writable; RLIMIT_AS only")], "warn\tmemory\tcgroup not writable; RLIMIT_AS only",
                 .warn(limit: "memory", message: "cgroup not writable; RLIMIT_AS only")),
        "deny": ([.i(1_700_000_000_123), .i(4242), .t("openat"), .t("/ws/prepare.py")],
                 "deny\t1700000000123\t4242\topenat\t/ws/prepare.py",
                 .deny(unixMs: 1_700_000_000_123, pid: 4242, syscall: "openat", path: "/ws/prepare.py")),
        "dropped": ([.i(17)], "dropped\t17", .dropped(count: 17)),
        "limit": ([.t("stdio"), .t("dropped 12 bytes")], "limit\tstdio\tdropped 12 bytes",
                  .limit(kind: "stdio", detail: "dropped 12 bytes")),
        "net": ([.i(1_700_000_000_123), .t("api.example.com"), .i(443), .t("denied"), .t("not in allow_hosts"), .i(0), .i(0)],
                "net\t1700000000123\tapi.example.com\t443\tdenied\tnot in allow_hosts\t0\t0",
                .net(unixMs: 1_700_000_000_123, host: "api.example.com", port: 443, decision: "denied",
                     detail: "not in allow_hosts", up: 0, down: 0)),
        "result": ([.i(137), .i(9), .i(1), .i(512), .i(40), .i(-1)], "result\t137\t9\t1\t512\t40\t-1",
                   .result(exit: 137, signal: 9, timedOut: true, wallMs: 512, cpuMs: 40, peakMemoryBytes: -1)),
    ]

    /// The line `psb_format_record` (the launcher's own formatter) makes of the fields; nil when it refuses them.
    private func format(_ record: psb_record, _ fields: [Field]) -> String? {
        let texts = fields.map { field -> UnsafeMutablePointer<CChar>? in
            if case .t(let s) = field { return strdup(s) }
            return nil
        }
        defer { texts.forEach { free($0) } }
        let cFields = zip(fields, texts).map { field, text -> psb_field in
            switch field {
            case .i(let v): return psb_field(type: CChar(UInt8(ascii: "i")), i: v, t: nil)
            case .t: return psb_field(type: CChar(UInt8(ascii: "t")), i: 0, t: UnsafePointer(text))
            }
        }
        var buffer = [CChar](repeating: 0, count: Int(PSB_REPORT_LINE_MAX))
        let n = psb_format_record(&buffer, buffer.count, record, cFields, cFields.count)
        guard n >= 0 else { return nil }
        return String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func testEveryRecordKindFormatsAndParsesToItsEvent() throws {
        XCTAssertEqual(LauncherRecordSpec.all.count, Int(PSB_RECORD_COUNT.rawValue))
        for spec in LauncherRecordSpec.all {
            guard let sample = golden[spec.name] else {
                XCTFail("record \(spec.name) of PSB_RECORDS has no golden line: add one here and its LauncherEvent case")
                continue
            }
            XCTAssertEqual(spec.types.count, spec.fields.count, "\(spec.name): a name for every field")
            let line = try XCTUnwrap(format(spec.record, sample.fields), "\(spec.name): the formatter refused the fields")
            XCTAssertEqual(line, sample.line, spec.name)
            XCTAssertEqual(try LauncherEvent(line: line), sample.event, spec.name)
        }
        XCTAssertEqual(Set(golden.keys), Set(LauncherRecordSpec.all.map(\.name)), "golden lines of kinds the table lacks")
    }

    func testTheFormatterRefusesFieldsTheTableDoesNotGive() {
        let deny = LauncherRecordSpec.named["deny"]!.record
        XCTAssertNil(format(deny, [.i(1), .i(2), .t("openat")]), "one field short")
        XCTAssertNil(format(deny, [.t("1"), .i(2), .t("openat"), .t("/p")]), "text where the table says integer")
        XCTAssertNil(format(PSB_RECORD_COUNT, []), "no such record")
    }

    func testTabsAndNewlinesInTextCannotSplitALine() throws {
        let limit = LauncherRecordSpec.named["limit"]!.record
        let line = try XCTUnwrap(format(limit, [.t("output"), .t("a\tb\nc")]))
        XCTAssertEqual(line, "limit\toutput\ta\\x09b\\x0ac")
        XCTAssertEqual(try LauncherEvent(line: line), .limit(kind: "output", detail: "a\\x09b\\x0ac"))
    }

    func testAnUnknownKindIsAnError() {
        XCTAssertThrowsError(try LauncherEvent(line: "enforced\tmemory\tcgroup-v2\t1")) { error in
            XCTAssertEqual(error as? LauncherProtocolError, .unknownRecord("enforced"))
        }
        XCTAssertThrowsError(try LauncherEvent(line: "")) { error in
            XCTAssertEqual(error as? LauncherProtocolError, .unknownRecord(""))
        }
    }

    func testEveryKindWithAFieldMoreOrLessIsAnError() {
        for (name, sample) in golden {
            let fields = sample.line.split(separator: "\t", omittingEmptySubsequences: false).dropFirst().map(String.init)
            for wrong in [fields.dropLast(), fields + ["0"]] {
                let line = ([name] + wrong).joined(separator: "\t")
                XCTAssertThrowsError(try LauncherEvent(line: line), line) { error in
                    XCTAssertEqual(error as? LauncherProtocolError,
                                   .fieldCount(record: name, expected: fields.count, found: wrong.count), line)
                }
            }
        }
    }

    func testEveryIntegerFieldThatDoesNotParseIsAnError() {
        var checked = 0
        for spec in LauncherRecordSpec.all {
            let line = golden[spec.name]!.line
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).dropFirst().map(String.init)
            for (i, type) in spec.types.enumerated() where type == "i" {
                for bad in ["", "12x", "0x10", "99999999999999999999"] {
                    var wrong = fields
                    wrong[i] = bad
                    let line = ([spec.name] + wrong).joined(separator: "\t")
                    XCTAssertThrowsError(try LauncherEvent(line: line), line) { error in
                        XCTAssertEqual(error as? LauncherProtocolError,
                                       .badField(record: spec.name, field: spec.fields[i], value: bad), line)
                    }
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 0)
        XCTAssertThrowsError(try LauncherEvent(line: "result\t0\t0\t2\t1\t1\t1"), "TIMEDOUT is 0 or 1") { error in
            XCTAssertEqual(error as? LauncherProtocolError, .badField(record: "result", field: "TIMEDOUT", value: "2"))
        }
    }

    func testTheReportStartsWithThisVersionAndStopsAtTheFirstError() {
        let version = "version\t\(PSB_PROTOCOL_VERSION)"
        var report = LauncherReport()
        XCTAssertNil(report.event(version))
        XCTAssertEqual(report.event("dropped\t3"), .dropped(count: 3))
        XCTAssertNil(report.error)
        XCTAssertNil(report.event(version))
        XCTAssertEqual(report.error, .repeatedVersion)
        XCTAssertNil(report.event("dropped\t3"), "nothing after the first error is read")

        var newer = LauncherReport()
        XCTAssertNil(newer.event("version\t\(PSB_PROTOCOL_VERSION + 1)"))
        XCTAssertEqual(newer.error, .version(found: Int64(PSB_PROTOCOL_VERSION + 1), expected: Int64(PSB_PROTOCOL_VERSION)))
        XCTAssertNil(newer.event("dropped\t3"))

        var older = LauncherReport()
        XCTAssertNil(older.event("enforce\tseccomp\tfilter\t1"), "a launcher without a version line")
        XCTAssertEqual(older.error, .version(found: nil, expected: Int64(PSB_PROTOCOL_VERSION)))
        XCTAssertTrue(older.error!.description.contains("(stage: report)"))
    }

    /// Every option the plan emits is in PSB_OPTIONS with the arity it is given, and every option of
    /// the table is one proctor uses (or is named here as unused).
    func testPlanArgumentsFollowTheOptionTable() {
        var plan = LaunchPlan(phase: .experiment, workingDirectory: "/ws", timeoutMs: 1000, graceMs: 100,
                              command: ["true", "--ro"])
        plan.mounts = [.readOnly(source: "/usr", target: "/usr", optional: false),
                       .readOnly(source: "/lib", target: "/lib", optional: true),
                       .readWrite(source: "/ws/out", target: "/ws/out"), .hide("/ws/h"), .tmpfs("/tmp", size: 1 << 20),
                       .dev("/dev"), .proc("/proc"), .symlink(target: "usr/bin", at: "/bin"), .hideSockets("/ws"),
                       .device(source: "/dev/nvidia0", target: "/dev/nvidia0")]
        plan.environment = [("PATH", "/usr/bin")]
        plan.cpuSeconds = 1
        plan.memoryBytes = 1 << 30
        plan.pids = 64
        plan.maxFileSize = 1 << 20
        plan.nofile = 64
        plan.outputLimits = [("/ws/out", 1 << 20)]
        plan.outputGrowth = true
        plan.outputEntries = 500
        plan.noWakeSignals = true
        plan.stdioLimit = 1 << 20
        plan.writable = ["/ws/out"]
        plan.passDescriptors = [7, 8]
        plan.filterCache = "/ws/.proctor/cache"
        plan.user = SandboxUser(name: "proctor-sandbox", uid: 999, gid: 998)
        plan.ownerMapped = ["/ws"]
        plan.network = .allowlist
        plan.proxy = NetworkProxy(allowHosts: ["api.example.com", "127.0.0.1:11434"], allowPrivate: true, hostsFile: "/ws/hosts")

        var args = plan.arguments[...]
        var used = Set<String>()
        while let option = args.first, option != "--" {
            let id = psb_option_find(option)
            guard id != PSB_OPTION_COUNT else { return XCTFail("\(option) is not in PSB_OPTIONS") }
            let nargs = Int(psb_option_spec(id).nargs)
            XCTAssertGreaterThanOrEqual(args.count, 1 + nargs, option)
            XCTAssertFalse(args.dropFirst().prefix(nargs).contains { $0.hasPrefix("--") },
                           "\(option): an argument is another option")
            used.insert(option)
            args = args.dropFirst(1 + nargs)
        }
        XCTAssertEqual(Array(args), ["--", "true", "--ro"])
        let table = Set((0..<PSB_OPTION_COUNT.rawValue).map { String(cString: psb_option_spec(psb_option(rawValue: $0)).name) })
        // Launcher.run passes the descriptors.
        XCTAssertEqual(table.subtracting(used), ["--report-fd", "--parent-fd"])
        XCTAssertEqual(LaunchPlan.maxMounts, Int(PSB_MAX_OPS))
    }
}

/// A launch's network use lists at most a hundred host names: a wildcard entry over a domain that
/// answers every name let each made-up name add one to the iteration's record.
final class NetworkUseTests: XCTestCase {
    func testTheHostsListedAreBoundedAndTheRestCounted() {
        let plan = LaunchPlan(phase: .agent, workingDirectory: "/ws", timeoutMs: 1000, graceMs: 100, command: ["true"])
        let context = AuditContext(run: "r", iteration: 1, config: WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml"))
        var result = SandboxResult(status: 0)
        for n in 0..<150 {
            Launcher(helper: "").handle(.net(unixMs: 0, host: "h\(n).any.test", port: 443, decision: "allowed", detail: "", up: 10, down: 20),
                                        result: &result, plan: plan, audit: nil, context: context)
        }
        XCTAssertEqual(result.network.count, 101)
        XCTAssertEqual(result.network[Launcher.otherHosts]?.connections, 50)
        XCTAssertEqual(result.network["h0.any.test"]?.connections, 1)
    }
}
