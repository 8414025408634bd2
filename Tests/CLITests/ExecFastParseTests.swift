import ArgumentParser
import ProctorSandbox
import XCTest

@testable import ProctorCommands

/// `proctor exec`'s fast parser must agree with ArgumentParser wherever it answers.
final class ExecFastParseTests: XCTestCase {
    /// ArgumentParser's reading of the same command line, or nil when it rejects it.
    private func viaArgumentParser(_ args: [String]) -> ExecArguments? {
        guard let command = try? ProctorCommand.parseAsRoot(args) else { return nil }
        return (command as? Exec)?.arguments
    }

    private func assertAgrees(_ args: [String], file: StaticString = #filePath, line: UInt = #line) {
        guard let fast = ExecArguments.fastParse(args[...]) else { return }
        XCTAssertEqual(fast, viaArgumentParser(args), "\(args)", file: file, line: line)
    }

    func testPlainCommandLines() {
        XCTAssertEqual(ExecArguments.fastParse(["exec", "--", "/bin/true"]),
                       ExecArguments(command: ["/bin/true"]))
        XCTAssertEqual(
            ExecArguments.fastParse(["exec", "--seed", "7", "--wait", "--phase", "evaluator", "--workspace", "/w",
                                     "--audit-log", "/a.jsonl", "--", "python3", "-c", "pass", "--", "--wait"]),
            ExecArguments(workspace: "/w", phase: .evaluator, auditLog: "/a.jsonl", seed: 7, wait: true,
                          command: ["python3", "-c", "pass", "--", "--wait"]))
        assertAgrees(["exec", "--", "/bin/true"])
        assertAgrees(["exec", "--seed", "7", "--wait", "--phase", "evaluator", "--workspace", "/w",
                      "--audit-log", "/a.jsonl", "--", "python3", "-c", "pass", "--", "--wait"])
    }

    func testEverythingElseIsLeftToArgumentParser() {
        for args in [
            [], ["exec"], ["exec", "--"], ["run", "--", "x"], ["exec", "--help"], ["exec", "-h", "--", "x"],
            ["exec", "--workspace=/w", "--", "x"], ["exec", "--workspace", "/a", "--workspace", "/b", "--", "x"],
            ["exec", "--wait", "--wait", "--", "x"], ["exec", "--workspace", "--", "x"], ["exec", "--workspace", "", "--", "x"],
            ["exec", "--workspace", "-w", "--", "x"], ["exec", "--phase", "build", "--", "x"],
            ["exec", "--seed", "-1", "--", "x"], ["exec", "--seed", "0x10", "--", "x"],
            ["exec", "--seed", "18446744073709551616", "--", "x"], ["exec", "--bogus", "1", "--", "x"],
            ["exec", "x"], ["exec", "--workspace", "/w"], ["help", "exec", "--", "x"], ["exec", "--phase"],
            ["exec", "--generate-completion-script", "bash", "--", "x"], ["exec", "--version", "--", "x"],
        ] {
            XCTAssertNil(ExecArguments.fastParse(args[...]), "\(args)")
        }
    }

    /// Every order and subset of the options, with ordinary and odd values.
    func testAgreesWithArgumentParserOnManyCommandLines() {
        let values: [String: [String]] = [
            "--workspace": [".", "/tmp/ws", "a b", "ws=1", "+x", "exec"],
            "--phase": ["experiment", "evaluator", "agent"],
            "--audit-log": ["/tmp/a.jsonl", "log"],
            "--seed": ["0", "42", "+5", "18446744073709551615"],
        ]
        let commands: [[String]] = [["/bin/true"], ["python3", "-c", "pass"], ["--"], ["--wait"], ["-h"], ["exec", "--", "x"]]
        var rng = SplitMix(seed: 2)
        var checked = 0
        for _ in 0..<400 {
            var options = ["--workspace", "--phase", "--audit-log", "--seed", "--wait"].filter { _ in rng.next() % 2 == 0 }
            options.shuffle(using: &rng)
            var args = ["exec"]
            for option in options {
                args.append(option)
                if let choices = values[option] { args.append(choices[Int(rng.next() % UInt64(choices.count))]) }
            }
            args.append("--")
            args += commands[Int(rng.next() % UInt64(commands.count))]
            XCTAssertNotNil(ExecArguments.fastParse(args[...]), "\(args)")
            assertAgrees(args)
            checked += 1
        }
        XCTAssertEqual(checked, 400)
    }
}

/// A deterministic generator, so a failure names a command line that can be replayed.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
