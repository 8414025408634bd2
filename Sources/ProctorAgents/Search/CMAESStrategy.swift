#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `strategy = "cmaes"`: a separable CMA-ES (Ros and Hansen, "A Simple Modification in CMA-ES
/// Achieving Linear Time and Space Complexity", 2008): a Gaussian over the unit cube with a
/// diagonal covariance, moved to the weighted mean of each generation's best half, its
/// per-knob variances adapted by the rank-mu update and its step size by the one-fifth success
/// rule (in place of the path-based rule, which needs more generations than a night has).
/// It keeps no state: the distribution is rebuilt by replaying the measured configurations in
/// order, one generation of lambda at a time, so a resumed run continues where it was.
struct CMAESStrategy: SearchStrategy {
    func candidates(_ space: SearchSpace, _ observations: [Observation], design: [[Double]], _ rng: inout SplitMix64) -> [[Double]] {
        // The design first: the first generation starts at its best point.
        guard design.isEmpty else { return design }
        let d = space.count
        let lambda = 4 + Int(3 * log(Double(d)))
        let mu = lambda / 2
        let raw = (0..<mu).map { log(Double(mu) + 0.5) - log(Double($0 + 1)) }
        let weights = raw.map { $0 / raw.reduce(0, +) }
        let effective = 1 / weights.reduce(0) { $0 + $1 * $1 }
        let learning = min(1, (effective + 1 / effective - 2) / ((Double(d) + 2) * (Double(d) + 2) / 2 + effective))

        // Start at the best configuration of the first generation's worth of measurements.
        guard let start = observations.prefix(lambda).enumerated().max(by: {
            $0.element.value != $1.element.value ? $0.element.value < $1.element.value : $0.offset > $1.offset
        })?.element else { return (0..<64).map { _ in space.random(&rng) } }
        var mean = start.point
        var variance = [Double](repeating: 1, count: d)
        var sigma = 0.3
        var best = start.value
        var next = lambda
        while next + lambda <= observations.count {
            let generation = observations[next..<(next + lambda)].enumerated().sorted {
                $0.element.value != $1.element.value ? $0.element.value > $1.element.value : $0.offset < $1.offset
            }.map(\.element)
            let parents = generation.prefix(mu)
            for j in 0..<d {
                let spread = zip(weights, parents).reduce(0) { sum, pair in
                    let step = (pair.1.point[j] - mean[j]) / sigma
                    return sum + pair.0 * step * step
                }
                variance[j] = max((1 - learning) * variance[j] + learning * spread, 1e-6)
            }
            mean = (0..<d).map { j in zip(weights, parents).reduce(0) { $0 + $1.0 * $1.1.point[j] } }
            let improved = generation[0].value > best
            sigma = min(max(sigma * (improved ? 1.5 : pow(1.5, -0.25)), 0.01), 1)
            best = max(best, generation[0].value)
            next += lambda
        }
        return (0..<64).map { _ in
            (0..<d).map { j in
                for _ in 0..<16 {
                    let x = mean[j] + sigma * variance[j].squareRoot() * rng.gaussian()
                    if x >= 0 && x <= 1 { return x }
                }
                return min(max(mean[j], 0), 1)
            }
        }
    }
}
