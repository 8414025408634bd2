import Foundation
import ProctorConfig
import XCTest

/// `network`, `allow_hosts`, `allow_private` of `[agent]` and `[experiment]` (issue 12).
final class NetworkAccessTests: XCTestCase {
    func parse(agent: String, experiment: String = "") throws -> WorkspaceConfig {
        let text = """
            [experiment]
            command = ["python3", "train.py"]
            \(experiment)

            [evaluator]
            command = ["python3", "prepare.py"]

            [agent]
            kind = "command"
            command = ["claude"]
            \(agent)
            """
        return try WorkspaceConfig.parse(text, root: "/ws", file: "/ws/proctor.toml")
    }

    func error(agent: String, experiment: String = "") -> ConfigError? {
        do {
            _ = try parse(agent: agent, experiment: experiment)
            return nil
        } catch { return error as? ConfigError }
    }

    func testTheThreeModesAndTheDefault() throws {
        XCTAssertEqual(try parse(agent: "").agent.network, NetworkAccess())
        XCTAssertEqual(try parse(agent: "network = \"none\"").agent.network.mode, .none)
        XCTAssertEqual(try parse(agent: "network = \"host\"").agent.network.mode, .host)
        XCTAssertEqual(try parse(agent: "network = \"host\"").warnings, [], "an explicit host is the user's choice")
        let allow = try parse(agent: """
            network = "allowlist"
            allow_hosts = ["API.anthropic.com", "*.openai.com", "127.0.0.1:11434", "[::1]:8080", "data.example.org:8443"]
            allow_private = true
            """)
        XCTAssertEqual(allow.agent.network, NetworkAccess(mode: .allowlist, allowHosts: [
            "api.anthropic.com", "*.openai.com", "127.0.0.1:11434", "[::1]:8080", "data.example.org:8443"], allowPrivate: true))
        let exp = try parse(agent: "", experiment: "network = \"allowlist\"\nallow_hosts = [\"huggingface.co\"]")
        XCTAssertEqual(exp.experiment.network.mode, .allowlist)
        XCTAssertEqual(exp.experiment.network.allowHosts, ["huggingface.co"])
    }

    /// `true` keeps meaning the host's network, and says so with the risk, located.
    func testTrueMeansHostWithAWarningThatNamesTheRisk() throws {
        let config = try parse(agent: "network = true")
        XCTAssertEqual(config.agent.network.mode, .host)
        XCTAssertEqual(config.warnings.count, 1)
        let warning = try XCTUnwrap(config.warnings.first)
        XCTAssertTrue(warning.hasPrefix("/ws/proctor.toml:11: agent.network: true means \"host\""), warning)
        XCTAssertTrue(warning.contains("127.0.0.1") && warning.contains("metadata") && warning.contains("allowlist"), warning)
        XCTAssertEqual(try parse(agent: "network = false").agent.network.mode, .none)
        XCTAssertEqual(try parse(agent: "", experiment: "network = true").experiment.network.mode, .host)
    }

    func testBadSettingsAreLocatedErrors() {
        let cases: [(String, String, String)] = [
            ("network = \"lan\"", "agent.network", "expected one of \"none\", \"allowlist\", \"host\""),
            ("network = 1", "agent.network", "expected one of"),
            ("network = \"allowlist\"", "agent.allow_hosts", "expected at least one host"),
            ("allow_hosts = [\"a.com\"]", "agent.allow_hosts", "network = \"allowlist\" only"),
            ("network = \"host\"\nallow_private = true", "agent.allow_private", "network = \"allowlist\" only"),
            ("network = \"allowlist\"\nallow_hosts = [\"http://a.com\"]", "agent.allow_hosts", "got \"http://a.com\""),
            ("network = \"allowlist\"\nallow_hosts = [\"a.com:0\"]", "agent.allow_hosts", "port must be a number"),
            ("network = \"allowlist\"\nallow_hosts = [\"a.com:99999\"]", "agent.allow_hosts", "port must be a number"),
            ("network = \"allowlist\"\nallow_hosts = [\"*\"]", "agent.allow_hosts", "wildcard"),
            ("network = \"allowlist\"\nallow_hosts = [\"*.com\"]", "agent.allow_hosts", "two labels"),
            ("network = \"allowlist\"\nallow_hosts = [\"a*.example.com\"]", "agent.allow_hosts", "wildcard"),
            ("network = \"allowlist\"\nallow_hosts = [\"::1\"]", "agent.allow_hosts", "brackets"),
            ("network = \"allowlist\"\nallow_hosts = [\"127.1\"]", "agent.allow_hosts", "four decimal numbers"),
            ("network = \"allowlist\"\nallow_hosts = [\"127.0.0.1:11434\"]", "agent.allow_hosts", "allow_private = true"),
            ("network = \"allowlist\"\nallow_hosts = [\"169.254.169.254\"]", "agent.allow_hosts", "allow_private = true"),
            ("network = \"allowlist\"\nallow_hosts = [\"[fe80::1]:80\"]", "agent.allow_hosts", "allow_private = true"),
            ("network = \"allowlist\"\nallow_hosts = [\"a.com\"]\nallow_private = \"yes\"", "agent.allow_private", "expected true or false"),
        ]
        for (agent, key, message) in cases {
            guard let error = error(agent: agent) else {
                XCTFail("accepted: \(agent)")
                continue
            }
            XCTAssertEqual(error.key, key, agent)
            XCTAssertNotNil(error.line, agent)
            XCTAssertTrue(error.message.contains(message), "\(agent): \(error.message)")
        }
    }
}
