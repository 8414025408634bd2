import Foundation
import ProctorTestSupport
import XCTest

/// A command agent with `network = "allowlist"` in a real `proctor run` (issue 12): it reaches its
/// "API" through the proxy by the usual proxy variables, a refused host costs it nothing but the
/// refusal, the iteration's runs.jsonl record counts the bytes per host and `proctor audit` sums
/// them. The API is a loopback server named by the proxy's test resolver.
final class NetworkAllowlistLoopTests: XCTestCase {
    func testAllowedTrafficIsCountedPerHostAndRefusalsAudited() throws {
        let server = try ScriptedHTTPServer([.respond(status: 200, headers: [], body: "0123456789"),
                                             .respond(status: 200, headers: [], body: "0123456789")], lifetime: 120)
        let body = String(repeating: "p", count: 1000)
        // urllib takes http_proxy from the environment, as most clients do.
        let fetch = """
            python3 - >> LOG.md 2>&1 <<'EOF'
            import urllib.request, urllib.error
            reply = urllib.request.urlopen(urllib.request.Request("http://api.test:\(server.port)/v1/messages", data=b"\(body)"), timeout=5).read()
            print("api:", reply.decode())
            try:
                urllib.request.urlopen("http://elsewhere.test:\(server.port)/exfiltrate", timeout=5)
                print("elsewhere: REACHED")
            except urllib.error.HTTPError as e:
                print("elsewhere:", e.code)
            EOF
            """
        let script = """
            \(fetch)
            \(CommandAgentLoopTests.good)
            """
        let ws = try LoopWorkspace(agent: """
            [agent]
            kind    = "command"
            command = ["sh", "-c", \(tomlString(script)), "agent", "{prompt_file}"]
            timeout = "20s"
            network = "allowlist"
            allow_hosts = ["api.test:\(server.port)"]
            allow_private = true
            """)
        let hosts = ws.parent + "/hosts"
        try Data("api.test 127.0.0.1\nelsewhere.test 127.0.0.1\n".utf8).write(to: URL(fileURLWithPath: hosts))
        let outcome = try ws.run(iterations: 1, environment: ["PROCTOR_NET_HOSTS_FILE": hosts])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(ws.statuses(), ["keep", "keep"], ws.describe(outcome))
        let log = ws.read("LOG.md") ?? ""
        XCTAssertTrue(log.contains("api: 0123456789"), log)
        XCTAssertTrue(log.contains("elsewhere: 403"), log)

        // From outside: the server saw the one allowed request, not the refused one.
        XCTAssertEqual(server.requests.map(\.path), ["/v1/messages"])
        XCTAssertEqual(server.requests.first?.body.count, 1000)

        // The iteration's record: bytes per host, up at least the body, down at least the reply.
        let record = try XCTUnwrap(ws.records().first { $0["iteration"] as? Int == 1 })
        let network = try XCTUnwrap(record["network"] as? [String: [String: [String: Int]]], "\(record)")
        XCTAssertEqual(Array(network.keys), ["agent"])
        XCTAssertEqual(Array(network["agent"]!.keys), ["api.test"])
        let use = network["agent"]!["api.test"]!
        XCTAssertEqual(use["connections"], 1)
        XCTAssertGreaterThan(use["bytes_up"] ?? 0, 1000)
        XCTAssertLessThan(use["bytes_up"] ?? 0, 2000)
        XCTAssertGreaterThan(use["bytes_down"] ?? 0, 10)
        XCTAssertLessThan(use["bytes_down"] ?? 0, 1000)
        XCTAssertNil(ws.records().first { $0["iteration"] as? Int == 0 }?["network"], "the baseline talked to nobody")

        let refused = ws.audit(kind: "network", decision: "denied")
        XCTAssertEqual(refused.count, 1, "\(refused)")
        XCTAssertEqual(refused.first?["host"] as? String, "elsewhere.test")
        XCTAssertEqual(refused.first?["port"] as? Int, Int(server.port))
        XCTAssertEqual(refused.first?["phase"] as? String, "agent")
        XCTAssertEqual(refused.first?["iteration"] as? Int, 1)

        let audit = try ws.proctor(["audit", "--workspace", ws.root])
        XCTAssertTrue(audit.stdout.contains("1      network denied: elsewhere.test:\(server.port)"), audit.stdout)
        XCTAssertTrue(audit.stdout.contains("network: api.test: 1 connection(s), \(use["bytes_up"]!) bytes up, \(use["bytes_down"]!) bytes down"),
                      audit.stdout)
    }

    /// The experiment's allowlist in a real run: train.py fetches from the listed data host, each
    /// iteration's record counts it under `experiment`, and an unlisted host is refused and audited.
    func testExperimentTrafficIsCountedInTheIterationsRecord() throws {
        let server = try ScriptedHTTPServer(Array(repeating: .respond(status: 200, headers: [], body: "0.7"), count: 4), lifetime: 120)
        let fetch = """
            import urllib.request, urllib.error
            print("data:", urllib.request.urlopen("http://data.test:\(server.port)/target", timeout=5).read().decode())
            try:
                urllib.request.urlopen("http://other.test:\(server.port)/", timeout=5)
            except urllib.error.HTTPError as e:
                print("other:", e.code)
            """
        let ws = try LoopWorkspace(agent: "[agent]\nkind = \"mutate\"",
                                   experimentExtra: "network = \"allowlist\"\nallow_hosts = [\"data.test:\(server.port)\"]\nallow_private = true",
                                   train: LoopWorkspace.train("0.2", extra: fetch))
        let hosts = ws.parent + "/hosts"
        try Data("data.test 127.0.0.1\nother.test 127.0.0.1\n".utf8).write(to: URL(fileURLWithPath: hosts))
        let outcome = try ws.run(iterations: 1, environment: ["PROCTOR_NET_HOSTS_FILE": hosts])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertEqual(server.requests.map(\.path), ["/target", "/target"], "one fetch per experiment (baseline, iteration 1)")
        for iteration in [0, 1] {
            let record = try XCTUnwrap(ws.records().first { $0["iteration"] as? Int == iteration })
            let network = record["network"] as? [String: [String: [String: Int]]]
            XCTAssertEqual(network?["experiment"]?["data.test"]?["connections"], 1, "\(record)")
            XCTAssertNil(network?["agent"])
        }
        let refused = ws.audit(kind: "network", decision: "denied")
        XCTAssertEqual(refused.map { $0["host"] as? String }, ["other.test", "other.test"])
        XCTAssertTrue(refused.allSatisfy { $0["phase"] as? String == "experiment" })
    }
}
