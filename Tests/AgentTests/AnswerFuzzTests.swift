import Foundation
import XCTest

@testable import ProctorAgents

/// Malformed HTTP-agent answers, generated from a seed (issue 10, "bad input, fuzzed"): each
/// server body goes through the real reply parser and answer applier on a temporary workspace.
/// Every case must end `rejected` (nothing written) or as a valid change that wrote only the
/// editable and notes files; never a trap, never `failed`, never a byte outside.
///
/// `PROCTOR_FUZZ_CASES` (default 1,000), `PROCTOR_FUZZ_SEED` (default 10); `bench/fuzz.sh` runs
/// 10,000 and reads the counts from `PROCTOR_FUZZ_SUMMARY`. `PROCTOR_FUZZ_PROGRESS` names a file
/// that holds the number of the case being run, so a case that kills the process can be found.
final class AnswerFuzzTests: XCTestCase {
    func testMalformedAnswersAreRejectedAndWriteNothing() throws {
        let env = ProcessInfo.processInfo.environment
        let cases = Int(env["PROCTOR_FUZZ_CASES"] ?? "") ?? 1000
        let seed = UInt64(env["PROCTOR_FUZZ_SEED"] ?? "") ?? 10
        let progress = env["PROCTOR_FUZZ_PROGRESS"]
        let only = Int(env["PROCTOR_FUZZ_CASE"] ?? "")

        let ws = try TestWorkspace()
        // A planted symlink and a hard link among the editable files: writing either must be refused.
        XCTAssertEqual(symlink("prepare.py", ws.root + "/link.py"), 0)
        XCTAssertEqual(link(ws.root + "/prepare.py", ws.root + "/hard.py"), 0)
        let context = ws.context(editable: ["train.py"], notes: ["LOG.md"])
        var fuller = context
        fuller.editableFiles["link.py"] = ""
        fuller.editableFiles["hard.py"] = ""
        let pristine = ws.snapshot()
        let editable = Set(["ws/train.py", "ws/LOG.md"])

        var counts: [String: Int] = [:]
        var failures: [String] = []
        for index in 0..<cases where only == nil || only == index {
            if let progress { try? "\(index)\n".write(toFile: progress, atomically: false, encoding: .utf8) }
            var random = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9)
            let wire: HTTPAgentProtocol = random.below(2) == 0 ? .openai : .anthropic
            let agent = HTTPAgent(config: HTTPAgentConfig(
                wireProtocol: wire, baseURL: "http://127.0.0.1:9", model: "m", pricePerMTokIn: 2, pricePerMTokOut: 10))
            let body = AnswerFuzz.body(AnswerFuzz.answer(&random), wire, &random)
            let outcome: String
            do {
                let reply = try agent.parseReply(body)
                if let usage = reply.usage {
                    // What the loop and the report do with it: sums that must not overflow.
                    _ = usage.promptTokens + usage.completionTokens
                    XCTAssertTrue(usage.promptTokens >= 0 && usage.completionTokens >= 0, "case \(index): negative usage")
                }
                _ = try agent.apply(reply, to: random.below(4) == 0 ? fuller : context)
                outcome = "accepted"
            } catch .rejected(let reason, _) {
                outcome = "rejected"
                if reason.isEmpty { failures.append("case \(index): rejected without a reason") }
            } catch .failed(let reason) {
                outcome = "failed"
                failures.append("case \(index): failed (\(reason)), expected rejected or accepted")
            }
            counts[outcome, default: 0] += 1

            // Nothing but the editable and notes files may change, and nothing at all on a rejection.
            let after = ws.snapshot()
            for path in Set(after.keys).union(pristine.keys) where after[path] != pristine[path] {
                if outcome != "accepted" || !editable.contains(path) {
                    failures.append("case \(index) (\(outcome)): \(path) was written")
                }
            }
            // Back to the pristine tree for the next case.
            try pristine["ws/train.py"]!.write(to: URL(fileURLWithPath: ws.root + "/train.py"))
            unlink(ws.root + "/LOG.md")
            if failures.count > 20 { break }
        }
        let summary = counts.merging(["cases": counts.values.reduce(0, +), "seed": Int(seed)]) { a, _ in a }
        if let path = env["PROCTOR_FUZZ_SUMMARY"], let data = try? JSONSerialization.data(withJSONObject: summary) {
            FileManager.default.createFile(atPath: path, contents: data)
        }
        print("answer fuzz: seed \(seed), \(summary)")
        XCTAssertEqual(failures, [], "reproduce with PROCTOR_FUZZ_SEED=\(seed) PROCTOR_FUZZ_CASE=N")
        XCTAssertGreaterThan(counts["rejected"] ?? 0, 0)
        XCTAssertGreaterThan(counts["accepted"] ?? 0, 0, "no valid answer among the mutants: the generator is broken")
    }

    /// Found by the fuzzer: `Int.max` tokens were trusted, and the report's sum of a run's tokens
    /// trapped. An absurd or negative count now makes the usage unknown; the answer still counts.
    func testAbsurdUsageIsUnknownNotTrusted() throws {
        let agent = HTTPAgent(config: HTTPAgentConfig(wireProtocol: .openai, baseURL: "http://127.0.0.1:9", model: "m"))
        func body(_ prompt: Any, _ completion: Any) throws -> [UInt8] {
            Array(try JSONSerialization.data(withJSONObject: [
                "choices": [["message": ["content": "SUMMARY: x"], "finish_reason": "stop"]],
                "usage": ["prompt_tokens": prompt, "completion_tokens": completion],
            ]))
        }
        for (prompt, completion) in [(Int.max, 1), (1, Int.max), (-5, 10), (10, Int.min), ((1 << 40) + 1, 0)] {
            let reply = try agent.parseReply(try body(prompt, completion))
            XCTAssertNil(reply.usage, "\(prompt), \(completion)")
            XCTAssertEqual(reply.text, "SUMMARY: x")
        }
        XCTAssertEqual(try agent.parseReply(try body(1 << 40, 7)).usage, AgentUsage(promptTokens: 1 << 40, completionTokens: 7))
    }
}

/// The generator: valid answers to start from, then mutations of the text and of the wire JSON.
enum AnswerFuzz {
    static let train = TestWorkspace.train
    static let paths = [
        "train.py", "./train.py", "LOG.md", "prepare.py", "../outside.txt", "/etc/passwd", "~/x", "a/../train.py",
        ".git/config", ".GIT/hooks/pre-commit", "train.py\u{0}.txt", "train\u{1B}[2J.py", "train.py/", "//train.py",
        "link.py", "hard.py", "new.py", "", " ", "proctor.toml", "dir/../../x", String(repeating: "a/", count: 3000) + "b",
        "\"train.py\"", "tr\u{202E}ain.py", "train.py\r", "ｔrain.py",
    ]

    static func answer(_ r: inout SplitMix64) -> String {
        var text: String
        switch r.below(4) {
        case 0:
            text = "SUMMARY: a change\nFILE: train.py\n```python\n\(train.replacingOccurrences(of: "15", with: "31"))```\n"
        case 1:
            text = HTTPAgentTests.diffAnswer + "\n"
        case 2:
            text = "SUMMARY: notes and code\nFILE: LOG.md\n````\nlearned ```x```\n````\n```diff\n--- /dev/null\n+++ b/LOG.md\n@@ -0,0 +1 @@\n+hi\n```\n"
        default:
            text = "**SUMMARY:** insert\n```patch\n--- a/train.py\n+++ b/train.py\n@@ -1,0 +2,1 @@\n+# added\n```\n"
        }
        for _ in 0..<(1 + r.below(4)) { text = mutate(text, &r) }
        return text
    }

    static func mutate(_ text: String, _ r: inout SplitMix64) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let at = r.below(max(lines.count, 1))
        switch r.below(16) {
        case 0: // a path of any kind in a header
            let path = paths[r.below(paths.count)]
            return text.replacingOccurrences(of: ["train.py", "LOG.md"][r.below(2)], with: path)
        case 1: // broken hunk headers
            let headers = ["@@", "@@ - @@", "@@ -,5 +1 @@", "@@ -x +y @@", "@@ -99999999999999999999 +1 @@", "@@ -0 +0 @@",
                           "@@ --1 +1 @@", "@@ -1,-3 +1 @@", "@@@ -1 +1 @@@", "@@ -9223372036854775807 +1 @@", "@@ -"]
            let header = headers[r.below(headers.count)]
            if let i = lines.firstIndex(where: { $0.hasPrefix("@@") }) { lines[i] = header } else { lines.insert(header, at: at) }
        case 2: lines.remove(at: at) // a line lost (a fence, a header, context)
        case 3: lines.insert(lines[at], at: at) // a line twice
        case 4: // cut short
            return String(text.prefix(r.below(text.count + 1)))
        case 5: // control characters, NUL, invalid-looking bytes
            let junk: [String] = ["\u{0}", "\u{1}", "\u{7F}", "\u{FFFD}", "\r", "\u{1B}[31m", "\t", "\u{2028}", "\u{FEFF}", "💥"]
            lines[at] += junk[r.below(junk.count)]
        case 6: // huge
            let size = [1 << 10, 1 << 16, 1 << 20][r.below(3)]
            lines.insert("+" + String(repeating: "x", count: size), at: at)
        case 7: // many hunks or many FILE blocks
            let count = 1 + r.below(300)
            lines += Array(repeating: "@@ -1 +1 @@\n-import sys\n+import os", count: count)
        case 8: lines[at] = String(lines[at].reversed())
        case 9: // headers a model might write
            let extra = ["diff --git a/train.py b/prepare.py", "deleted file mode 100644", "new mode 100755",
                         "rename from train.py", "Binary files a/x and b/x differ", "GIT binary patch",
                         "--- \"a/train.py\"", "+++ /dev/null", "--- /dev/null", "index 0000..1111", "\\ No newline at end of file",
                         "FILE:", "FILE: `train.py`", "```diff", "```", "~~~", "````", "SUMMARY:"]
            lines.insert(extra[r.below(extra.count)], at: at)
        case 10: // random printable noise
            lines[at] = String((0..<r.below(80)).map { _ in Character(Unicode.Scalar(UInt8(32 + r.below(95)))) })
        case 11: // random scalars anywhere in the BMP and beyond (no surrogates)
            var scalars = String.UnicodeScalarView()
            for _ in 0..<r.below(40) {
                if let s = Unicode.Scalar(UInt32(r.below(0x10FFFF))) { scalars.append(s) }
            }
            lines[at] += String(scalars)
        case 12: // context that does not match the file
            lines = lines.map { $0.hasPrefix(" ") ? " not in the file" : $0 }
        case 13: // whole file of binary-looking text
            return "FILE: train.py\n```\n" + String(repeating: "\u{0}\u{1}\u{2}\u{FF}", count: 1 + r.below(1000)) + "\n```\n"
        case 14: // no changes at all, or an empty answer
            return ["", "SUMMARY: nothing", "```python\nprint(1)\n```", "\n\n\n"][r.below(4)]
        default: // a second valid block for another path
            lines.append("FILE: \(paths[r.below(paths.count)])\n```\nx = 1\n```")
        }
        return lines.joined(separator: "\n")
    }

    /// The server's body: the answer in the protocol's JSON, the JSON itself sometimes broken.
    static func body(_ answer: String, _ wire: HTTPAgentProtocol, _ r: inout SplitMix64) -> [UInt8] {
        let numbers: [Any] = [10, 0, -1, Int.max, Int.min, 1e300, "12", NSNull(), [1], 3.5]
        func tokens() -> Any { r.below(3) == 0 ? numbers[r.below(numbers.count)] : 100 }
        var object: [String: Any]
        if wire == .openai {
            var message: [String: Any] = ["role": "assistant", "content": answer]
            var choice: [String: Any] = ["index": 0, "message": message, "finish_reason": r.below(5) == 0 ? "length" : "stop"]
            switch r.below(8) {
            case 0: message["content"] = [answer]
            case 1: message["content"] = NSNull()
            case 2: choice["message"] = answer
            default: break
            }
            if r.below(8) != 0 { choice["message"] = choice["message"] is String ? choice["message"] : message }
            object = ["choices": r.below(10) == 0 ? [] : [choice], "usage": ["prompt_tokens": tokens(), "completion_tokens": tokens()]]
        } else {
            var content: [[String: Any]] = [["type": "text", "text": answer]]
            switch r.below(8) {
            case 0: content = [["type": "tool_use", "text": answer]]
            case 1: content.append(["type": "text", "text": answer])
            case 2: content = [["type": 5, "text": answer]]
            default: break
            }
            object = ["content": content, "stop_reason": r.below(5) == 0 ? "max_tokens" : "end_turn",
                      "usage": ["input_tokens": tokens(), "output_tokens": tokens()]]
        }
        var bytes = Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
        switch r.below(12) {
        case 0: bytes = Array(bytes.prefix(r.below(bytes.count + 1)))  // cut short
        case 1: bytes = Array("[".utf8) + bytes + Array("]".utf8)  // an array, not the object
        case 2: bytes = Array(String(repeating: "[", count: 10_000).utf8)  // deep nesting
        case 3: if !bytes.isEmpty { bytes[r.below(bytes.count)] = UInt8(r.below(256)) }  // a flipped byte
        case 4: bytes = Array("not json at all \u{0}".utf8)
        case 5: bytes = Array("{\"error\": {\"message\": \"overloaded\"}}".utf8)
        default: break
        }
        return bytes
    }
}
