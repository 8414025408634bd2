import CLauncherProtocol
@testable import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// Issue 12: what each phase's `network` setting compiles to: the launcher's `--net`, the proxy's
/// options and the variables that point clients at it.
final class NetworkPlanTests: XCTestCase {
    private func plan(_ phase: Phase, agent: NetworkAccess = NetworkAccess(), experiment: NetworkAccess = NetworkAccess(),
                      presetAllows: Bool = true, environment: [String: String] = [:]) throws -> LaunchPlan {
        var config = WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml")
        config.agent.network = agent
        config.experiment.network = experiment
        config.agent.env = ["PATH", "HTTPS_PROXY", "no_proxy"]
        let preset = PolicyPreset(name: "test", system: ["/usr"], hide: [], tmpSize: 1 << 20, shmSize: 0, nofile: 64,
                                  stdioLimit: 1 << 20, graceMs: 100, allowNetwork: presetAllows)
        let request = LaunchRequest(config: config, preset: preset, phase: phase, command: ["true"],
                                    pinnedDirectory: phase == .evaluator ? "/pinned" : nil, agentHome: "/home/agent")
        let host = HostFacts(environment: environment, exists: { _ in true }, workspaceEntries: { [] },
                             interpreter: { _ in nil })
        return try LaunchPlan.compile(request, host: host)
    }

    private func value(_ plan: LaunchPlan, _ option: String) -> [String] {
        let args = plan.arguments
        return args.indices.filter { args[$0] == option && $0 + 1 < args.count }.map { args[$0 + 1] }
    }

    private let allowlist = NetworkAccess(mode: .allowlist, allowHosts: ["api.anthropic.com", "127.0.0.1:11434"], allowPrivate: true)

    func testModesCompileToTheLaunchersNetworks() throws {
        XCTAssertEqual(value(try plan(.agent), "--net"), ["none"])
        XCTAssertEqual(value(try plan(.experiment), "--net"), ["loopback"])
        XCTAssertEqual(value(try plan(.agent, agent: NetworkAccess(mode: .host)), "--net"), ["host"])
        XCTAssertEqual(value(try plan(.experiment, experiment: NetworkAccess(mode: .host)), "--net"), ["host"])
        XCTAssertEqual(value(try plan(.experiment, experiment: NetworkAccess(mode: .host), presetAllows: false), "--net"), ["loopback"],
                       "a preset without network keeps the experiment on its loopback")
        XCTAssertEqual(value(try plan(.experiment, experiment: allowlist, presetAllows: false), "--net"), ["loopback"])
        XCTAssertEqual(value(try plan(.evaluator, agent: allowlist, experiment: allowlist), "--net"), ["none"], "the evaluator never")
        XCTAssertEqual(value(try plan(.experiment, agent: allowlist), "--net"), ["loopback"], "the agent's setting is the agent's")
    }

    func testAllowlistPassesTheHostsAndPointsClientsAtTheProxy() throws {
        let agent = try plan(.agent, agent: allowlist, environment: ["HTTPS_PROXY": "http://corp:8080", "PATH": "/usr/bin",
                                                                    "PROCTOR_NET_HOSTS_FILE": "/tmp/hosts"])
        XCTAssertEqual(value(agent, "--net"), ["allowlist"])
        XCTAssertEqual(value(agent, "--proxy-port"), ["3128"])
        XCTAssertEqual(value(agent, "--allow-host"), ["api.anthropic.com", "127.0.0.1:11434"])
        XCTAssertTrue(agent.arguments.contains("--allow-private"))
        XCTAssertEqual(value(agent, "--proxy-hosts"), ["/tmp/hosts"])
        let env = agent.environment.filter { $0.0.lowercased().hasSuffix("_proxy") }
        XCTAssertEqual(env.map(\.0), ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
                       "the host's own proxy is replaced, once")
        XCTAssertTrue(env.allSatisfy { $0.1 == "http://127.0.0.1:3128" })

        let plain = try plan(.agent, agent: NetworkAccess(mode: .allowlist, allowHosts: ["api.openai.com"]))
        XCTAssertFalse(plain.arguments.contains("--allow-private"))
        XCTAssertEqual(value(plain, "--proxy-hosts"), [], "no test resolver unless the variable is set")
        let none = try plan(.agent, environment: ["HTTPS_PROXY": "http://corp:8080"])
        XCTAssertEqual(none.environment.filter { $0.0 == "HTTPS_PROXY" }.map(\.1), ["http://corp:8080"],
                       "without an allowlist the listed variable passes as it is")
        XCTAssertEqual(value(none, "--proxy-port"), [])
    }

    /// The configuration refuses more hosts than the launcher takes.
    func testHostLimitIsTheLaunchers() {
        XCTAssertEqual(NetworkAccess.maxHosts, Int(PSB_MAX_ALLOW_HOSTS))
    }
}
