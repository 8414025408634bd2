#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How the `search` agent picks the next configuration. A strategy sees the space (each knob as
/// a coordinate in 0...1), every measured configuration with its noise-aware value, and the points
/// of its quasi-random design not measured yet, and returns candidates, most promising first; the
/// agent takes the first one not measured yet.
/// A new strategy is one file with a type conforming to this and a case in `SearchStrategies`.
protocol SearchStrategy: Sendable {
    /// How many configurations (the baseline included) the even, quasi-random design has; 0 for none.
    var designLength: Int { get }
    /// `design`: the design's points not measured yet, in order (empty once it is done).
    func candidates(_ space: SearchSpace, _ observations: [Observation], design: [[Double]], _ rng: inout SplitMix64) -> [[Double]]
}

extension SearchStrategy {
    var designLength: Int { 4 }
}

/// The strategies `[agent] strategy` names.
enum SearchStrategies {
    static func named(_ name: String) -> SearchStrategy? {
        switch name {
        case "tpe": return TPEStrategy()
        case "cmaes": return CMAESStrategy()
        case "random": return RandomStrategy()
        default: return nil
        }
    }
}

/// The knobs as coordinates: a point is one number in 0...1 per knob, in the knobs' order.
struct SearchSpace {
    let knobs: [Knob]
    var count: Int { knobs.count }

    /// For a `choice`/`bool` knob, its number of options (its coordinate picks an equal share);
    /// nil for numbers.
    func categories(_ dimension: Int) -> Int? {
        let knob = knobs[dimension]
        return knob.kind == .choice || knob.kind == .bool ? knob.options.count : nil
    }

    /// The option (from 0) a coordinate in 0...1 picks among `options` equal shares.
    static func option(_ unit: Double, of options: Int) -> Int { min(Int(unit * Double(options)), options - 1) }

    /// The literals a point sets.
    func literals(_ point: [Double]) -> [String] {
        zip(knobs, point).map { $0.literal(atUnit: $1) }
    }

    /// A configuration's identity: each knob's value, not its spelling (`Knob.identity`).
    func key(_ literals: [String]) -> String {
        zip(knobs, literals).map { $0.identity(of: $1) }.joined(separator: "\u{1F}")
    }

    /// How many configurations there are when every knob is an int, a choice or a bool and they
    /// number at most `listable`; nil otherwise.
    var size: Int? {
        var total = 1
        for knob in knobs {
            guard let values = knob.valueCount else { return nil }
            let (product, overflow) = total.multipliedReportingOverflow(by: values)
            guard !overflow, product <= Self.listable else { return nil }
            total = product
        }
        return total
    }

    /// The most configurations `unmeasured` lists: 256 random draws that all hit measured ones
    /// mean most of the space was measured, which no run does to a larger one.
    static let listable = 65_536

    /// Every configuration whose key `measured` lacks, in a fixed order; nil when `size` is.
    func unmeasured(_ measured: Set<String>) -> [[String]]? {
        guard let size else { return nil }
        return (0..<size).compactMap { index in
            var rest = index
            let literals = knobs.map { knob -> String in
                let values = knob.valueCount ?? 1
                defer { rest /= values }
                return knob.literal(ofValue: rest % values)
            }
            return measured.contains(key(literals)) ? nil : literals
        }
    }

    /// A uniformly random point.
    func random(_ rng: inout SplitMix64) -> [Double] {
        knobs.map { _ in rng.uniform() }
    }

    /// Point `index` (from 1) of the Halton sequence, shifted by `shift` modulo 1 (a randomised
    /// quasi-random design: the first configurations cover the space evenly).
    func halton(_ index: Int, shift: [Double]) -> [Double] {
        let primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97]
        return (0..<count).map { dimension in
            let base = primes[dimension % primes.count]
            var f = 1.0
            var r = 0.0
            var i = index + (dimension / primes.count) * 7919
            while i > 0 {
                f /= Double(base)
                r += f * Double(i % base)
                i /= base
            }
            return (r + shift[dimension]).truncatingRemainder(dividingBy: 1)
        }
    }
}

/// A measured configuration: where it is, and how good it is (larger is better, whatever the
/// metric's direction; `-inf` for one that failed or scored at the bad end of the scale).
struct Observation {
    var point: [Double]
    var value: Double
    var seeds: Int
}

/// The noise model: each configuration's mean over its seeds is shrunk towards the mean of all
/// configurations by how noisy it is (empirical Bayes: the seed-to-seed variance, pooled over the
/// configurations measured on several seeds, against the spread between configurations), so a
/// lucky single seed does not outrank a configuration confirmed on three.
enum NoiseModel {
    /// `scores[i]`: configuration i's finite seed scores, oriented so larger is better.
    static func shrunkMeans(_ scores: [[Double]]) -> [Double] {
        let means = scores.map { $0.isEmpty ? Double.nan : $0.reduce(0, +) / Double($0.count) }
        var within = 0.0
        var freedom = 0
        for (row, mean) in zip(scores, means) where row.count > 1 {
            within += row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
            freedom += row.count - 1
        }
        let known = zip(scores, means).filter { !$0.0.isEmpty }
        guard freedom > 0, known.count > 1 else { return means }
        let noise = within / Double(freedom)
        let grand = known.reduce(0) { $0 + $1.1 } / Double(known.count)
        let spread = known.reduce(0) { $0 + ($1.1 - grand) * ($1.1 - grand) } / Double(known.count - 1)
        let between = max(spread - known.reduce(0) { $0 + noise / Double($1.0.count) } / Double(known.count), 1e-12)
        return zip(scores, means).map { row, mean in
            guard !row.isEmpty else { return mean }
            let weight = between / (between + noise / Double(row.count))
            return grand + weight * (mean - grand)
        }
    }
}
