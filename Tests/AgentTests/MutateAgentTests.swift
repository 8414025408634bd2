import Foundation
import XCTest

@testable import ProctorAgents

/// The built-in `mutate` agent, judged by the files it leaves on disk.
final class MutateAgentTests: XCTestCase {
    struct Marker {
        var name: String
        var isInt: Bool
        var low: Double
        var high: Double
    }

    static let markers = [
        Marker(name: "LEARNING_RATE", isInt: false, low: 0.005, high: 0.5),
        Marker(name: "NUM_LEAVES", isInt: true, low: 4, high: 128),
        Marker(name: "FEATURE_FRACTION", isInt: false, low: 0.3, high: 1.0),
    ]

    func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }

    /// The value literal of `NAME = VALUE  # mutate: ...` lines.
    func value(of name: String, in text: String) -> String? {
        for line in lines(text) where line.hasPrefix(name + " = ") {
            return String(line.dropFirst(name.count + 3).prefix(while: { $0 != " " }))
        }
        return nil
    }

    func testChangesOnlyMarkerValuesWithinRange() throws {
        let ws = try TestWorkspace()
        var previous = try XCTUnwrap(ws.read("train.py"))
        let untouched = ws.snapshot().filter { $0.key != "ws/train.py" }
        for iteration in 1...150 {
            let proposal = try MutateAgent().propose(ws.context(seed: 7, iteration: iteration))
            let current = try XCTUnwrap(ws.read("train.py"))
            let before = lines(previous)
            let after = lines(current)
            XCTAssertEqual(before.count, after.count)
            var changed: [String] = []
            for (old, new) in zip(before, after) where old != new {
                // Same name, same comment: only the value between " = " and the comment differs.
                let marker = try XCTUnwrap(
                    Self.markers.first { old.hasPrefix($0.name + " = ") }, "non-marker line changed: \(old)")
                let oldComment = old[old.firstIndex(of: "#")!...]
                let newComment = new[new.firstIndex(of: "#")!...]
                XCTAssertEqual(oldComment, newComment)
                XCTAssertTrue(new.hasPrefix(marker.name + " = "))
                let literal = try XCTUnwrap(value(of: marker.name, in: current))
                XCTAssertEqual(new, "\(marker.name) = \(literal)  \(newComment)")
                let number = try XCTUnwrap(Double(literal), literal)
                XCTAssertGreaterThanOrEqual(number, marker.low)
                XCTAssertLessThanOrEqual(number, marker.high)
                if marker.isInt {
                    XCTAssertNotNil(Int(literal), "int knob written as \(literal)")
                } else {
                    XCTAssertTrue(literal.contains("."), "float knob lost its decimal point: \(literal)")
                    let digits = literal.filter(\.isNumber).drop(while: { $0 == "0" })
                    XCTAssertLessThanOrEqual(digits.count, 4, "more than 4 significant digits: \(literal)")
                }
                XCTAssertNotEqual(value(of: marker.name, in: previous), literal, "a picked knob must move")
                changed.append("\(marker.name) \(value(of: marker.name, in: previous)!) -> \(literal)")
            }
            XCTAssertTrue((1...2).contains(changed.count), "iteration \(iteration) changed \(changed.count) knobs")
            XCTAssertEqual(proposal.description, changed.joined(separator: ", "))
            previous = current
        }
        XCTAssertEqual(ws.snapshot().filter { $0.key != "ws/train.py" }, untouched)
    }

    func testDeterministicPerSeed() throws {
        func run(seed: UInt64) throws -> (String, String) {
            let ws = try TestWorkspace()
            let proposal = try MutateAgent().propose(ws.context(seed: seed, iteration: 3))
            return (proposal.description, try XCTUnwrap(ws.read("train.py")))
        }
        let first = try run(seed: 1234)
        let second = try run(seed: 1234)
        XCTAssertEqual(first.0, second.0)
        XCTAssertEqual(first.1, second.1)
        var outcomes: Set<String> = []
        for seed in 0..<20 as Range<UInt64> { outcomes.insert(try run(seed: seed).1) }
        XCTAssertGreaterThan(outcomes.count, 10, "different seeds should explore")
    }

    /// The exact change just tried and discarded is not proposed again (for any seed here).
    func testDoesNotRepeatAChangeThatWasJustDiscarded() throws {
        for seed in 0..<40 as Range<UInt64> {
            let (a, b, c) = (try TestWorkspace(), try TestWorkspace(), try TestWorkspace())
            let first = try MutateAgent().propose(a.context(seed: seed, iteration: 7))
            let history = [HistoryEntry(iteration: 6, status: "discard", score: 0.8, description: first.description)]
            let again = try MutateAgent().propose(b.context(seed: seed, iteration: 7, history: history))
            XCTAssertNotEqual(again.description, first.description, "seed \(seed)")
            // A kept change is no reason to avoid it.
            let kept = [HistoryEntry(iteration: 6, status: "keep", score: 0.9, description: first.description)]
            let same = try MutateAgent().propose(c.context(seed: seed, iteration: 7, history: kept))
            XCTAssertEqual(same.description, first.description, "seed \(seed)")
        }
    }

    func testPrefersKnobsThatHaveNotJustFailed() throws {
        let history = (1...6).map {
            HistoryEntry(iteration: $0, status: "discard", score: 0.8, description: "LEARNING_RATE 0.1 -> 0.0\($0)")
        }
        var picks: [String: Int] = [:]
        for seed in 0..<120 as Range<UInt64> {
            let ws = try TestWorkspace()
            let proposal = try MutateAgent().propose(ws.context(seed: seed, iteration: 7, history: history))
            for part in proposal.description.split(separator: ",") {
                picks[String(part.split(separator: " ")[0]), default: 0] += 1
            }
        }
        XCTAssertLessThan(picks["LEARNING_RATE", default: 0] * 5, picks["NUM_LEAVES", default: 0], "\(picks)")
        XCTAssertGreaterThan(picks["FEATURE_FRACTION", default: 0], 0)
    }

    func testKeepsExponentStyleAndHandlesBounds() throws {
        let text = """
            WEIGHT_DECAY = 1e-4  # mutate: float 1e-6..1e-2 log
            DEPTH=128 # mutate: int 4..128 log
            """
        let ws = try TestWorkspace(files: ["model.py": text])
        for iteration in 1...40 {
            _ = try MutateAgent().propose(ws.context(editable: ["model.py"], iteration: iteration))
            let current = try XCTUnwrap(ws.read("model.py"))
            let decay = try XCTUnwrap(value(of: "WEIGHT_DECAY", in: current))
            XCTAssertTrue(decay.contains("e"), "exponent style lost: \(decay)")
            let number = try XCTUnwrap(Double(decay))
            XCTAssertTrue((1e-6...1e-2).contains(number), decay)
            let depthLine = try XCTUnwrap(lines(current).first { $0.hasPrefix("DEPTH=") })
            XCTAssertTrue(depthLine.hasSuffix(" # mutate: int 4..128 log"), depthLine)
            let depth = try XCTUnwrap(Int(depthLine.dropFirst(6).prefix(while: { $0 != " " })))
            XCTAssertTrue((4...128).contains(depth))
        }
        XCTAssertFalse(try XCTUnwrap(ws.read("model.py")).hasSuffix("\n"), "no newline was added")
    }

    func testNoMarkersFails() throws {
        let ws = try TestWorkspace(files: ["train.py": "print('hello')\n# mutate: float 0..1 linear is the syntax\n"])
        let before = ws.snapshot()
        XCTAssertThrowsError(try MutateAgent().propose(ws.context())) { error in
            guard case AgentError.failed(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("no `# mutate:` markers"), reason)
        }
        XCTAssertEqual(ws.snapshot(), before)
    }

    func testBadMarkerNamesTheLine() throws {
        let ws = try TestWorkspace(files: ["train.py": "X = 1\nLR = 0.1  # mutate: float 0.5..0.1 log\n"])
        XCTAssertThrowsError(try MutateAgent().propose(ws.context())) { error in
            guard case AgentError.failed(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("train.py:2"), reason)
        }
    }

    func testSymlinkedEditableFileIsNotWrittenThrough() throws {
        let ws = try TestWorkspace()
        try FileManager.default.removeItem(atPath: ws.root + "/train.py")
        try TestWorkspace.train.write(toFile: ws.parent + "/real.py", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: ws.root + "/train.py", withDestinationPath: "../real.py")
        let before = ws.snapshot()
        XCTAssertThrowsError(try MutateAgent().propose(ws.context())) { error in
            guard case AgentError.rejected(let reason, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("symlink"), reason)
        }
        XCTAssertEqual(ws.snapshot(), before)
    }

    func testFormatting() {
        XCTAssertEqual(Knob.format(0.0632461, exponentStyle: false), "0.06325")
        XCTAssertEqual(Knob.format(1.0, exponentStyle: false), "1.0")
        XCTAssertEqual(Knob.format(0.5, exponentStyle: false), "0.5")
        XCTAssertEqual(Knob.format(123456, exponentStyle: false), "123500.0")
        XCTAssertEqual(Knob.format(0.000632461, exponentStyle: true), "6.325e-4")
        XCTAssertEqual(Knob.format(1e-4, exponentStyle: true), "1e-4")
        XCTAssertEqual(Knob.format(-2.5, exponentStyle: false), "-2.5")
        XCTAssertEqual(Knob.format(9.99996, exponentStyle: false), "10.0")
    }

    // MARK: - The research memory (issue 8)

    /// Values the memory says were tried and not kept are not drawn again; exhausted knobs are left
    /// alone while others remain.
    func testSkipsTriedValuesAndExhaustedKnobs() throws {
        let ws = try TestWorkspace()
        let original = try XCTUnwrap(ws.read("train.py"))
        let tried: Set<String> = ["12", "13", "14", "16", "17", "18"]
        for iteration in 1...40 {
            try Data(original.utf8).write(to: URL(fileURLWithPath: ws.root + "/train.py"))
            var context = ws.context(seed: 11, iteration: iteration)
            context.memory.triedValues = ["NUM_LEAVES": tried]
            context.memory.exhausted = ["LEARNING_RATE", "FEATURE_FRACTION"]
            let proposal = try MutateAgent().propose(context)
            let text = try XCTUnwrap(ws.read("train.py"))
            XCTAssertEqual(value(of: "LEARNING_RATE", in: text), "0.1", proposal.description)
            XCTAssertEqual(value(of: "FEATURE_FRACTION", in: text), "1.0", proposal.description)
            let leaves = try XCTUnwrap(value(of: "NUM_LEAVES", in: text))
            XCTAssertNotEqual(leaves, "15", proposal.description)
            XCTAssertFalse(tried.contains(leaves), "drew a value already tried: \(proposal.description)")
        }
    }

    /// `train.py` back to `original`, and iteration `iteration`'s context on a plateau with two near
    /// misses: iteration 3 set LEARNING_RATE to 0.2, iteration 5 NUM_LEAVES to 30.
    func plateau(_ ws: TestWorkspace, _ original: String, iteration: Int) throws -> AgentContext {
        try Data(original.utf8).write(to: URL(fileURLWithPath: ws.root + "/train.py"))
        var context = ws.context(seed: 5, iteration: iteration)
        context.memory.plateau = true
        context.memory.iterationsWithoutKeep = 20
        context.memory.nearMisses = [
            .init(iteration: 3, score: 0.8, description: "LEARNING_RATE 0.1 -> 0.2", patch: "-LEARNING_RATE = 0.1\n+LEARNING_RATE = 0.2\n"),
            .init(iteration: 5, score: 0.79, description: "NUM_LEAVES 15 -> 30", patch: "-NUM_LEAVES = 15\n+NUM_LEAVES = 30\n"),
        ]
        return context
    }

    /// On a plateau, the mutate agent sets the near misses' values together (every other draw).
    func testPlateauCombinesNearMisses() throws {
        let ws = try TestWorkspace()
        let original = try XCTUnwrap(ws.read("train.py"))
        var combined = 0
        for iteration in 1...20 {
            let context = try plateau(ws, original, iteration: iteration)
            let proposal = try MutateAgent().propose(context)
            guard proposal.description.hasPrefix("combine near misses") else { continue }
            combined += 1
            XCTAssertEqual(proposal.description, "combine near misses 3, 5: LEARNING_RATE 0.1 -> 0.2, NUM_LEAVES 15 -> 30")
            let text = try XCTUnwrap(ws.read("train.py"))
            XCTAssertEqual(value(of: "LEARNING_RATE", in: text), "0.2")
            XCTAssertEqual(value(of: "NUM_LEAVES", in: text), "30")
            XCTAssertEqual(value(of: "FEATURE_FRACTION", in: text), "1.0")
        }
        XCTAssertGreaterThan(combined, 3, "a plateau combines the near misses about every other time")
        XCTAssertLessThan(combined, 20, "and still explores")
    }

    /// The combination once tried (discarded) or in flight under `--parallel` is not proposed
    /// again: it was, at every other iteration, each a duplicate the loop discarded (7 of 8
    /// iterations of one resumed run).
    func testACombinationTriedOrInFlightIsNotProposedAgain() throws {
        let ws = try TestWorkspace()
        let original = try XCTUnwrap(ws.read("train.py"))
        let twin = "combine near misses 3, 5: LEARNING_RATE 0.1 -> 0.2, NUM_LEAVES 15 -> 30"
        for seen in ["history", "in flight", "duplicate row", "near miss"] {
            for iteration in 1...20 {
                var context = try plateau(ws, original, iteration: iteration)
                switch seen {
                case "history":
                    context.history.append(HistoryEntry(iteration: 9, status: "discard", score: 0.7, description: twin))
                case "in flight":
                    context.measured.append(MeasuredIteration(iteration: 9, status: MeasuredIteration.running, description: twin,
                                                              seedScores: [], agent: "mutate"))
                case "duplicate row":
                    // As the ledger words a duplicate's row.
                    context.history.append(HistoryEntry(iteration: 10, status: "discard", score: nil, description: twin + " (duplicate of iteration 9)"))
                default:
                    // The combination became a near miss itself: combining it with its sources again
                    // words the same values differently ("combine near misses 9, 3, 5: ...").
                    context.memory.nearMisses.insert(.init(iteration: 9, score: 0.81, description: twin, patch: ""), at: 0)
                }
                let proposal = try MutateAgent().propose(context)
                XCTAssertFalse(proposal.description.hasSuffix("LEARNING_RATE 0.1 -> 0.2, NUM_LEAVES 15 -> 30"), "\(seen), iteration \(iteration): \(proposal.description)")
            }
        }
    }
}
