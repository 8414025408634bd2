import Foundation

/// What the locked evaluator measured, read from the JSON object on its last stdout line.
public struct Evaluation: Sendable, Equatable {
    /// The metric: a number, or `-inf`/`inf` (the worst or best possible, as the direction says).
    public var score: Double
    /// Every other numeric key (e.g. `features`, `trees`), for the limits and the record; `-inf`
    /// and `inf` included, NaN left out (it measures nothing).
    public var measurements: [String: Double]

    /// The keys that are there with something other than a number (a limit on one of them must
    /// not pass for want of a number to compare), and what stood there.
    public var nonNumbers: [String: Failure.NonNumber] = [:]

    public init(score: Double, measurements: [String: Double], nonNumbers: [String: Failure.NonNumber] = [:]) {
        self.score = score
        self.measurements = measurements
        self.nonNumbers = nonNumbers
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case noOutput
        case notJSON(String)
        /// The same key twice at the top of the object.
        case duplicateKey(String)
        case missingMetric(String)
        /// The metric key is there, its value is not a number.
        case notANumber(String, NonNumber)

        /// What stood where a number should be.
        public enum NonNumber: String, Sendable {
            case nan = "NaN"
            case null = "null"
            case string = "a string"
            case outOfRange = "a number past a double's range"
            case other = "true, false, an array or an object"
        }

        public var description: String {
            switch self {
            case .noOutput: return "the evaluator printed nothing"
            case .notJSON(let line): return "the evaluator's last line is not a JSON object: \(line.prefix(120))"
            case .duplicateKey(let key): return "the evaluator's JSON gives \"\(key.prefix(120))\" twice"
            case .missingMetric(let key): return "the evaluator's JSON has no numeric \"\(key)\""
            case .notANumber(let key, let value): return "the evaluator's \"\(key)\" is \(value.rawValue), not a score"
            }
        }
    }

    /// Parses the evaluator's stdout. Only the last line that is not blank counts (lines end at
    /// LF alone: a CR before it is blank space, and no other character ends a line, as for
    /// `tail -n1`); what the experiment printed never reaches here. Found from the end, so a
    /// 64 MiB output costs one pass over its last line, not a split of all of it.
    public static func parse(stdout: [UInt8], metric: String) throws -> Evaluation {
        let blank: Set<UInt8> = [0x20, 0x09, 0x0D, 0x0B, 0x0C]
        var end = stdout.endIndex
        var line: ArraySlice<UInt8>?
        while end > stdout.startIndex {
            let start = (stdout[..<end].lastIndex(of: 0x0A)).map { $0 + 1 } ?? stdout.startIndex
            let candidate = stdout[start..<end]
            if !candidate.allSatisfy(blank.contains) {
                line = candidate
                break
            }
            end = start > stdout.startIndex ? start - 1 : stdout.startIndex
        }
        guard let line else { throw Failure.noOutput }
        let object: [[UInt8]: EvaluatorLine.Value]
        do {
            object = try EvaluatorLine.object(line)
        } catch .duplicateKey(let key) {
            throw Failure.duplicateKey(key)
        } catch {
            throw Failure.notJSON(String(decoding: line, as: UTF8.self))
        }
        // The metric is found by its bytes (Python compares keys by code points); the other keys
        // are recorded by name.
        var measurements: [String: Double] = [:], nonNumbers: [String: Failure.NonNumber] = [:]
        var score: Double?
        var names = Set<String>()
        for (bytes, value) in object {
            // Recorded by name: two keys Swift takes as one (canonically equivalent spellings)
            // would keep whichever came last out of the dictionary; refused as a key given twice.
            let name = String(decoding: bytes, as: UTF8.self)
            guard names.insert(name).inserted else { throw Failure.duplicateKey(name) }
            let what: Failure.NonNumber
            switch value {
            case .number(let number) where !number.isNaN:
                if bytes.elementsEqual(metric.utf8) { score = number } else { measurements[name] = number }
                continue
            case .number: what = .nan
            case .outOfRange: what = .outOfRange
            case .string: what = .string
            case .null: what = .null
            case .other: what = .other
            }
            if bytes.elementsEqual(metric.utf8) {
                if what != .other { throw Failure.notANumber(metric, what) }
            } else {
                nonNumbers[name] = what
            }
        }
        guard let score else { throw Failure.missingMetric(metric) }
        return Evaluation(score: score, measurements: measurements, nonNumbers: nonNumbers)
    }

    /// The same, of text.
    public static func parse(stdout: String, metric: String) throws -> Evaluation {
        try parse(stdout: Array(stdout.utf8), metric: metric)
    }

    /// `key`'s measurement as a whole count (`features`, `trees`): nil when absent, infinite or past `Int`'s
    /// range, where `Int(_:)` would stop the supervisor.
    public func count(_ key: String) -> Int? {
        measurements[key].flatMap { Int(exactly: $0.rounded(.towardZero)) }
    }

    /// Why `key` (a count a limit caps: `features`, `trees`) is over `cap`: past it, or there and not
    /// a count (NaN, `-Infinity`, negative, a string, `true`, an array, a number past a double's
    /// range: an evaluator that prints such a value has measured nothing the limit could pass); nil
    /// when within it, absent or `null` (not measured, as an evaluator of a model without trees says).
    public func over(_ key: String, cap: Int) -> String? {
        if let value = measurements[key] {
            if value > Double(cap) { return "\(key) \(format(value)) over the limit \(cap)" }
            return value >= 0 ? nil : "\(key) \(format(value)) is not a count (the limit is \(cap))"
        }
        guard let what = nonNumbers[key], what != .null else { return nil }
        return "\(key) is \(what == .other ? "not a number" : what.rawValue), not a count (the limit is \(cap))"
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
