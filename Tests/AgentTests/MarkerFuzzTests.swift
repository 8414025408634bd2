import Foundation
import XCTest

@testable import ProctorAgents

/// Random `NAME = VALUE  # mutate: ...` lines, near-valid and broken, through the marker reader
/// and every way the two built-in agents rewrite a value. A line is no marker, a located error, or
/// a knob whose every proposal (across its range, and `mutate`'s perturbation) writes a line that
/// reads back as the same knob with the new value inside its range: a proposal the next
/// iteration cannot read would stop the run. A trap anywhere ends the test process (a failure).
final class MarkerFuzzTests: XCTestCase {
    func testRandomMarkerLinesAreNoKnobALocatedErrorOrAKnobWhoseRewritesReadBack() throws {
        // A longer or other fuzz: MARKER_FUZZ_SEED=S MARKER_FUZZ_CASES=N swift test --filter MarkerFuzzTests.
        let environment = ProcessInfo.processInfo.environment
        var rng = SplitMix64(seed: environment["MARKER_FUZZ_SEED"].flatMap { UInt64($0) } ?? 20_261_206)
        let cases = environment["MARKER_FUZZ_CASES"].flatMap { Int($0) } ?? 10_000
        var tally = (none: 0, errors: 0, knobs: 0, movable: 0)
        for case_ in 0..<cases {
            let line = MarkerFuzzTests.line(&rng)
            let knob: Knob?
            do {
                knob = try Knob(path: "f.py", lineIndex: 6, line: line)
            } catch {
                guard case AgentError.failed(let reason) = error else { return XCTFail("case \(case_): \(error): \(line)") }
                XCTAssertTrue(reason.hasPrefix("f.py:7: cannot read the mutate marker ("), "case \(case_): \(reason)")
                tally.errors += 1
                continue
            }
            guard let knob else {
                tally.none += 1
                continue
            }
            tally.knobs += 1
            if knob.kind == .int || knob.kind == .float {
                XCTAssertTrue(knob.low <= knob.value && knob.value <= knob.high, "case \(case_): \(line)")
            }
            guard knob.isMovable else { continue }
            tally.movable += 1
            var literals = (0...20).map { knob.literal(atUnit: Double($0) / 20) }
            literals += (0..<8).map { _ in knob.literal(atUnit: rng.uniform()) }
            for widen in [1.0, 4.0] {
                if let perturbed = knob.perturbed(&rng, widen: widen) {
                    XCTAssertNotEqual(perturbed, knob.literal, "case \(case_): a perturbation that changes nothing: \(line)")
                    literals.append(perturbed)
                }
            }
            for literal in literals {
                let rewritten = line.replacingCharacters(in: knob.valueRange, with: literal)
                XCTAssertTrue(knob.accepts(literal), "case \(case_): \(literal) from \(line)")
                let unit = knob.unit(of: literal)
                XCTAssertNotNil(unit, "case \(case_): \(literal) from \(line)")
                XCTAssertTrue((0...1).contains(unit ?? -1), "case \(case_): \(literal) from \(line)")
                do {
                    let again = try XCTUnwrap(Knob(path: "f.py", lineIndex: 6, line: rewritten), "case \(case_): \(rewritten)")
                    XCTAssertEqual(again.kind, knob.kind, "case \(case_): \(rewritten)")
                    XCTAssertEqual(again.name, knob.name, "case \(case_): \(rewritten)")
                    XCTAssertEqual(again.literal, literal, "case \(case_): \(rewritten)")
                    XCTAssertEqual([again.low, again.high], [knob.low, knob.high], "case \(case_): \(rewritten)")
                    XCTAssertEqual(again.options, knob.options, "case \(case_): \(rewritten)")
                    XCTAssertEqual(again.quote, knob.quote, "case \(case_): \(rewritten)")
                } catch {
                    XCTFail("case \(case_): a rewrite the next iteration cannot read: \(error)")
                }
            }
        }
        // The generator reaches every outcome (a fuzz that only ever makes errors proves little).
        XCTAssertGreaterThan(tally.none, cases / 20, "\(tally)")
        XCTAssertGreaterThan(tally.errors, cases / 3, "\(tally)")
        XCTAssertGreaterThan(tally.movable, cases / 7, "\(tally)")
    }

    /// A bound with more than four significant digits: four round past it (0.99999 to 1.0, 97.30659
    /// to 97.31), and the value written there was refused by the next read of the marker, so a
    /// search that reached the bound stopped every later proposal. Four digits rounded inwards.
    func testAValueAtABoundOfMoreThanFourDigitsIsWrittenInsideIt() throws {
        let cases: [(line: String, low: String, high: String)] = [
            ("X = 0.5  # mutate: float 0.001..0.99999 linear", "0.001", "0.9999"),
            ("X = 50.0  # mutate: float 7.19649..97.30659 log", "7.197", "97.3"),
            ("X = -5.0  # mutate: float -12.34567..-0.00123456 linear", "-12.34", "-0.001235"),
            ("X = 2.5e3  # mutate: float 1.00001e3..9.99999e3 log", "1.001e3", "9.999e3"),
        ]
        for (line, low, high) in cases {
            let knob = try XCTUnwrap(Knob(path: "f.py", lineIndex: 0, line: line))
            XCTAssertEqual([knob.literal(atUnit: 0), knob.literal(atUnit: 1)], [low, high], line)
            for literal in [low, high] {
                let again = try Knob(path: "f.py", lineIndex: 0, line: line.replacingCharacters(in: knob.valueRange, with: literal))
                XCTAssertEqual(again?.literal, literal, line)
            }
        }
    }

    // MARK: - The generator: each part valid most of the time, broken or odd now and then.

    static func pick<T>(_ options: [T], _ rng: inout SplitMix64) -> T { options[rng.below(options.count)] }

    static func number(_ rng: inout SplitMix64, integer: Bool) -> String {
        switch rng.below(20) {
        case 0: return pick(["0", "-0", "0.0", "1e-400", "1e400", "nan", "inf", "-inf", "1e300", "-1e300", "9007199254740993", "1e-300"], &rng)
        case 1: return pick(["", ".", "1.", ".5", "+3", "1_000", "0x10", "1e", "--1", "5e-324", "2.5E-3", "1E+2"], &rng)
        case 2: return String(rng.below(2) == 0 ? -Int(rng.below(1000)) : Int(rng.below(1_000_000)))
        default:
            let magnitude = pow(10, Double(rng.below(13)) - 6) * (1 + rng.uniform() * 9)
            let sign = rng.below(8) == 0 ? "-" : ""
            if integer { return sign + String(Int(magnitude.rounded())) }
            return sign + (rng.below(4) == 0 ? String(format: "%.3e", magnitude) : String(format: "%.*f", rng.below(6), magnitude))
        }
    }

    static func line(_ rng: inout SplitMix64) -> String {
        let name = rng.below(10) == 0 ? pick(["2x", "a-b", "é", ""], &rng) : pick(["X", "lr", "_n2", "NUM_LEAVES"], &rng)
        let kind = rng.below(10) == 0 ? pick(["number", "Int", ""], &rng) : pick(["int", "float", "float", "float", "choice", "bool"], &rng)
        let odd = rng.below(4) == 0
        let options = (0..<(1 + rng.below(4))).map { _ in
            odd ? pick(["a", "x#y", "'q'", "\"r\"", "", "ü", "b"], &rng) : pick(["a", "b", "gbdt", "dart", "goss", "relu"], &rng)
        }
        var spec: String
        var value: String
        switch kind {
        case "int", "float":
            let integer = kind == "int" && rng.below(6) != 0
            var low = number(&rng, integer: integer), high = number(&rng, integer: integer)
            if let l = Double(low), let h = Double(high), l > h, rng.below(4) != 0 { swap(&low, &high) }
            spec = kind + " " + low + (rng.below(10) == 0 ? pick(["...", ".", " .. "], &rng) : "..") + high
            if rng.below(3) != 0 { spec += " " + (rng.below(10) == 0 ? pick(["LOG", "exp"], &rng) : pick(["log", "linear"], &rng)) }
            if rng.below(30) == 0 { spec += " extra" }
            // Mostly a value inside the range, on the range's own written style.
            if let l = Double(low), let h = Double(high), l <= h, rng.below(5) != 0 {
                let inside = l + (h - l) * rng.uniform()
                value = integer ? String(Int(exactly: inside.rounded()) ?? 0) : String(format: pick(["%.4f", "%.3e", "%g"], &rng), inside)
            } else {
                value = number(&rng, integer: integer)
            }
        case "choice":
            spec = "choice " + options.joined(separator: pick(["|", "|", "|", ",", " | "], &rng))
            value = pick(options, &rng)
            switch rng.below(5) {
            case 0: value = "\"" + value + "\""
            case 1: value = "'" + value + "'"
            case 2: value = "\"" + value
            default: break
            }
        case "bool":
            spec = "bool" + (rng.below(10) == 0 ? " 0..1" : "")
            value = pick(["True", "False", "true", "false", "yes", "1", "TRUE"], &rng)
        default:
            spec = kind + " " + number(&rng, integer: false) + ".." + number(&rng, integer: false)
            value = number(&rng, integer: false)
        }
        let indent = pick(["", "", "    ", "\t", "  "], &rng)
        let equals = rng.below(10) == 0 ? pick([" == ", " : ", ""], &rng) : pick([" = ", " = ", "=", "  =  "], &rng)
        let gap = pick(["  ", "  ", " ", "", "\t"], &rng)
        var marker = rng.below(10) == 0 ? pick(["# MUTATE: ", "# note # mutate: ", "# mutate "], &rng) : pick(["# mutate: ", "# mutate: ", "#mutate:", "#  mutate:  "], &rng)
        if rng.below(25) == 0 { marker = "# mutate: " + spec + "  # mutate: " }
        var text = indent + name + equals + value + gap + marker + spec
        switch rng.below(40) {
        case 0: text = "# " + text  // a marked line commented out
        case 1: text += "\r"  // a Windows line ending
        case 2: text = indent + name + equals + value + " extra" + gap + marker + spec
        case 3: text = "\"\"\" " + text  // opens a docstring on the line
        default: break
        }
        return text
    }
}
