import Foundation

/// What the locked evaluator measured, read from the JSON object on its last stdout line.
public struct Evaluation: Sendable, Equatable {
    public var score: Double
    /// Every other numeric key (e.g. `features`, `trees`), for the limits and the record.
    public var measurements: [String: Double]

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case noOutput
        case notJSON(String)
        case missingMetric(String)
        case notFinite(String)

        public var description: String {
            switch self {
            case .noOutput: return "the evaluator printed nothing"
            case .notJSON(let line): return "the evaluator's last line is not a JSON object: \(line.prefix(120))"
            case .missingMetric(let key): return "the evaluator's JSON has no numeric \"\(key)\""
            case .notFinite(let key): return "the evaluator's \"\(key)\" is not a finite number"
            }
        }
    }

    /// A JSON value, of which only numbers matter here.
    private enum Value: Decodable {
        case number(Double)
        case other

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if (try? container.decode(Bool.self)) != nil {
                self = .other
            } else if let number = try? container.decode(Double.self) {
                self = .number(number)
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
        guard let object = try? JSONDecoder().decode([String: Value].self, from: Data(line.utf8)) else {
            throw Failure.notJSON(String(line))
        }
        var measurements: [String: Double] = [:]
        for (key, value) in object {
            if case .number(let number) = value { measurements[key] = number }
        }
        guard let score = measurements.removeValue(forKey: metric) else { throw Failure.missingMetric(metric) }
        guard score.isFinite else { throw Failure.notFinite(metric) }
        return Evaluation(score: score, measurements: measurements)
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

    /// Whether `score` beats `best` by at least the minimum improvement.
    public func beats(_ score: Double, _ best: Double?) -> Bool {
        guard let best else { return true }
        let gain = maximize ? score - best : best - score
        // A relative epsilon so that an exact tie on min_improvement = 0 is not an improvement.
        return gain >= minImprovement && gain > 1e-12 * max(1, abs(best))
    }

    public static func mean(_ scores: [Double]) -> Double {
        // Each term divided first: two finite scores near the largest double must not sum to inf.
        let n = Double(max(scores.count, 1))
        return scores.reduce(0) { $0 + $1 / n }
    }
}
