import Foundation

/// What the locked evaluator measured, read from the JSON object on its last stdout line.
public struct Evaluation: Sendable, Equatable {
    /// The metric: a number, or `-inf`/`inf` (the worst or best possible, as the direction says).
    public var score: Double
    /// Every other numeric key (e.g. `features`, `trees`), for the limits and the record; `-inf`
    /// and `inf` included, NaN left out (it measures nothing).
    public var measurements: [String: Double]

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case noOutput
        case notJSON(String)
        case missingMetric(String)
        /// The metric key is there, its value is not a number.
        case notANumber(String, NonNumber)

        /// What stood where the metric's number should be.
        public enum NonNumber: String, Sendable {
            case nan = "NaN"
            case null = "null"
            case string = "a string"
        }

        public var description: String {
            switch self {
            case .noOutput: return "the evaluator printed nothing"
            case .notJSON(let line): return "the evaluator's last line is not a JSON object: \(line.prefix(120))"
            case .missingMetric(let key): return "the evaluator's JSON has no numeric \"\(key)\""
            case .notANumber(let key, let value): return "the evaluator's \"\(key)\" is \(value.rawValue), not a score"
            }
        }
    }

    /// A JSON value, of which only numbers matter here (and, for the reason of a crash, what else it is).
    private enum Value: Decodable {
        case number(Double)
        case string
        case null
        case other

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if (try? container.decode(Bool.self)) != nil {
                self = .other
            } else if let number = try? container.decode(Double.self) {
                self = .number(number)
            } else if (try? container.decode(String.self)) != nil {
                self = .string
            } else {
                self = .other
            }
        }
    }

    /// Parses the evaluator's stdout. Only the last non-empty line counts; what the experiment
    /// printed never reaches here.
    public static func parse(stdout: String, metric: String) throws -> Evaluation {
        guard let line = stdout.split(whereSeparator: \.isNewline).last(where: { !$0.allSatisfy(\.isWhitespace) }) else {
            throw Failure.noOutput
        }
        guard let object = decodeObject(Array(line.utf8)) else { throw Failure.notJSON(String(line)) }
        var measurements: [String: Double] = [:]
        for (key, value) in object {
            if case .number(let number) = value, !number.isNaN { measurements[key] = number }
        }
        switch object[metric] {
        case .number(let score) where score.isNaN: throw Failure.notANumber(metric, .nan)
        case .null: throw Failure.notANumber(metric, .null)
        case .string: throw Failure.notANumber(metric, .string)
        default: break
        }
        guard let score = measurements.removeValue(forKey: metric) else { throw Failure.missingMetric(metric) }
        return Evaluation(score: score, measurements: measurements)
    }

    /// `key`'s measurement as a whole count (`features`, `trees`): nil when absent, infinite or past `Int`'s
    /// range, where `Int(_:)` would stop the supervisor.
    public func count(_ key: String) -> Int? {
        measurements[key].flatMap { Int(exactly: $0.rounded(.towardZero)) }
    }

    /// The line as a JSON object, where Python's `Infinity`, `-Infinity` and `NaN` may stand as values.
    /// JSON has no such tokens and strict JSONDecoder refuses them; JSON5 has them, but also comments,
    /// hex, unquoted keys and trailing commas, none of which an evaluator should get away with. So the
    /// line must be strict JSON once each Python token is replaced by `0`, and is then read as JSON5
    /// for the tokens' values.
    private static func decodeObject(_ line: [UInt8]) -> [String: Value]? {
        guard let strict = withoutPythonTokens(line) else {
            return try? JSONDecoder().decode([String: Value].self, from: Data(line))
        }
        guard (try? JSONDecoder().decode([String: Value].self, from: Data(strict))) != nil else { return nil }
        let json5 = JSONDecoder()
        json5.allowsJSON5 = true
        return try? json5.decode([String: Value].self, from: Data(line))
    }

    /// `line` with each `Infinity`, `-Infinity` and `NaN` that stands as a value (outside strings, after
    /// `:`, `,` or `[`, before a delimiter) replaced by `0`; nil when there is none.
    static func withoutPythonTokens(_ line: [UInt8]) -> [UInt8]? {
        let tokens: [[UInt8]] = [Array("-Infinity".utf8), Array("Infinity".utf8), Array("NaN".utf8)]
        var out: [UInt8] = []
        out.reserveCapacity(line.count)
        var found = false
        var inString = false
        var escaped = false
        var i = 0
        while i < line.count {
            let byte = line[i]
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if let token = tokens.first(where: { line[i...].starts(with: $0) }), atValueStart(out),
                i + token.count == line.count || isDelimiter(line[i + token.count]) {
                out.append(UInt8(ascii: "0"))
                i += token.count
                found = true
                continue
            }
            out.append(byte)
            i += 1
        }
        return found ? out : nil
    }

    /// Whether what was written so far ends where a value may start: after `:`, `,` or `[`.
    private static func atValueStart(_ written: [UInt8]) -> Bool {
        guard let last = written.last(where: { !isJSONWhitespace($0) }) else { return false }
        return last == UInt8(ascii: ":") || last == UInt8(ascii: ",") || last == UInt8(ascii: "[")
    }

    private static func isJSONWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    private static func isDelimiter(_ byte: UInt8) -> Bool {
        isJSONWhitespace(byte) || byte == UInt8(ascii: ",") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]")
    }
}

/// The keep rule: a candidate must beat the best by `minImprovement`, first on one seed, then on
/// the mean over all its seeds, so that a lucky seed is not mistaken for progress.
public struct Gate: Sendable {
    public var maximize: Bool
    public var minImprovement: Double

    public init(maximize: Bool, minImprovement: Double) {
        self.maximize = maximize
        self.minImprovement = minImprovement
    }

    /// Whether `score` beats `best` by at least the minimum improvement. `-inf` and `inf` are the ends
    /// of the scale (issue 8: an evaluator's hard gate prints `-Infinity`): anything finite beats the
    /// worst end and the best end beats anything finite, by any margin; an infinity never beats itself.
    public func beats(_ score: Double, _ best: Double?) -> Bool {
        guard let best else { return true }
        guard !score.isNaN, !best.isNaN else { return false }
        if !score.isFinite || !best.isFinite {
            // score - best would be inf - inf (NaN) or an inf epsilon below: compare the order alone.
            return maximize ? score > best : score < best
        }
        let gain = maximize ? score - best : best - score
        // A relative epsilon so that an exact tie on min_improvement = 0 is not an improvement.
        return gain >= minImprovement && gain > 1e-12 * max(1, abs(best))
    }

    /// The mean over seeds; never NaN for scores that are not NaN. One infinite score makes the mean
    /// that infinity (a seed that fails the evaluator's hard gate fails the candidate). Both `-inf` and
    /// `inf` among the scores have no mean: that counts as the worst end for the direction (`-inf`
    /// when maximizing, `inf` when minimizing), never as progress.
    public static func mean(_ scores: [Double], maximize: Bool = true) -> Double {
        let worst = scores.contains(-.infinity), best = scores.contains(.infinity)
        if worst && best { return maximize ? -.infinity : .infinity }
        if worst { return -.infinity }
        if best { return .infinity }
        // Each term divided first: two finite scores near the largest double must not sum to inf.
        let n = Double(max(scores.count, 1))
        return scores.reduce(0) { $0 + $1 / n }
    }

    /// Max minus min of one candidate's scores over its seeds (0 for none), for the check that a score
    /// still moves with `PROCTOR_SEED`. Nil when a score is infinite: inf - inf is NaN and an infinite
    /// spread says nothing about the noise, so that check is off rather than confused.
    public static func spread(_ scores: [Double]) -> Double? {
        guard scores.allSatisfy(\.isFinite) else { return nil }
        return (scores.max() ?? 0) - (scores.min() ?? 0)
    }

    /// The sample standard deviation of one configuration's scores over its seeds; nil for fewer
    /// than two or an infinite one (as `spread`).
    public static func deviation(_ scores: [Double]) -> Double? {
        guard scores.count >= 2, scores.allSatisfy(\.isFinite) else { return nil }
        let mean = scores.reduce(0, +) / Double(scores.count)
        return (scores.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(scores.count - 1)).squareRoot()
    }
}
