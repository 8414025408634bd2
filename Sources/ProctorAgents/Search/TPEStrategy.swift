#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `strategy = "tpe"`: the Tree-structured Parzen Estimator (Bergstra et al., "Algorithms for
/// Hyper-Parameter Optimization", NeurIPS 2011), multivariate: the measured configurations are
/// split into the best tenth (at least one, at most 25) and the rest; each group becomes a
/// mixture of product kernels over all knobs at once (one kernel per configuration, plus a broad
/// prior), so knobs that only help together are modelled together. Candidates are ranked by the
/// ratio good/rest of the two densities (the expected improvement under the model). Proposals are
/// global (the design's next point while it lasts, then draws from the good mixture) or small
/// moves around the best: the first `globalFirst` global, then each kind in the share of the
/// improvement it has brought so far in this run (`localShare`). Where configurations failed is
/// read knob by knob (`Failures`): a candidate likely to fail ranks lower, one past a knob's hard
/// edge goes last.
struct TPEStrategy: SearchStrategy {
    /// Candidates drawn from the good mixture per proposal (Optuna draws 24).
    var draws = 64
    /// Local moves the model chooses among: more selection trusts a model of few points too much
    /// (among eight: better on the benchmark's smooth objective, worse on its noisy one).
    var localChoice = 5
    /// Candidates ranked down by their chance to fail and past a knob's hard edge put last, read
    /// from the configurations that failed (`Failures`); off only to measure what it brings.
    var avoidsFailures = true
    /// Local moves pick their knobs away from those whose recent moves did not pay (`knobWeights`);
    /// off only to measure what it brings.
    var weighsKnobs = true

    /// Ten configurations, the baseline included (as Optuna's default ten startup trials): on the
    /// bundled workspace, whose baseline is poor, broad early coverage pays, and on the noisy
    /// benchmark objective. The design's points are the global proposals while it lasts, so where
    /// every configuration far from the baseline is worse (the smooth objective), local moves take
    /// over instead of waiting for the design to end (median best of 30 runs after 30 evaluations
    /// there: -1.74 with the design first).
    var designLength: Int { 10 }

    /// Proposals made global whatever the share says: the design's first three points after the
    /// baseline. Until a broad jump has been tried, the share cannot tell a workspace whose
    /// baseline is poor (the bundled one: any configuration far from it tends to beat it, and moves
    /// around it cost the best after ten evaluations) from one where every configuration far from
    /// the baseline is worse (the smooth objective, where three evaluations spent so cost little:
    /// median best after 30 evaluations over 600 runs, in-process, -1.42 against -1.44 without them;
    /// with the share by gains below -1.47, and `mutate` -1.56).
    static let globalFirst = 3

    func candidates(_ space: SearchSpace, _ observations: [Observation], design: [[Double]], _ rng: inout SplitMix64) -> [[Double]] {
        // Best first; ties in measurement order so the split depends on nothing else.
        let ranked = observations.enumerated().sorted {
            $0.element.value != $1.element.value ? $0.element.value > $1.element.value : $0.offset < $1.offset
        }.map(\.element)
        let usable = ranked.filter { $0.value > -Double.infinity }.count
        guard usable > 0 else { return design + (0..<draws).map { _ in space.random(&rng) } }
        let goodCount = min(max(1, Int((0.1 * Double(ranked.count)).rounded(.up))), 25, usable)
        let good = Parzen(space, ranked.prefix(goodCount).map(\.point))
        let rest = Parzen(space, ranked.dropFirst(goodCount).map(\.point))
        // Two kinds of proposal: global ones, the design's points and then draws from the good
        // mixture (exploration), and moves of one knob or two around the best one (exploitation, as
        // a local search would: with few configurations, the best's slightly worse neighbours sit
        // in the "rest" mixture and the ratio alone would push every proposal away from a narrow
        // ridge). Which pays depends on the objective, so each comes first in the share of
        // improvements it has brought. Among the mixture's draws the density ratio decides.
        let incumbent = ranked[0].point
        let drawn = (0..<draws).map { _ in good.sample(&rng) }
        let weights = weighsKnobs ? TPEStrategy.knobWeights(space, observations) : Array(repeating: 1, count: space.count)
        let moves = (0..<draws).map { _ in good.move(incumbent, weights: weights, &rng) }
        // The ratio over every knob for draws; for a move, over the knobs it moves only (over all,
        // the smallest move would win): a value that good configurations have and the rest do not.
        let failures = Failures(space, avoidsFailures ? observations : [], width: good.width)
        func byRatio(_ points: [[Double]], moved: ([Double]) -> [Int]?) -> [[Double]] {
            let scored = points.map { point -> ([Double], Double) in
                let knobs = moved(point)
                return (point, good.logDensity(point, on: knobs) - rest.logDensity(point, on: knobs) + failures.logSurvival(point))
            }
            return scored.enumerated().sorted { $0.element.1 != $1.element.1 ? $0.element.1 > $1.element.1 : $0.offset < $1.offset }
                .map(\.element.0)
        }
        let global = design + byRatio(drawn) { _ in nil }
        // The last improvement's step taken again, twice as long, then the model's pick among a
        // few moves, then the other moves as drawn (a fallback when those were measured already).
        let local = TPEStrategy.repeatedStep(space, observations)
            + byRatio(Array(moves.prefix(localChoice))) { TPEStrategy.changed($0, from: incumbent) } + moves.dropFirst(localChoice)
        let share = observations.count <= TPEStrategy.globalFirst ? 0 : TPEStrategy.localShare(observations)
        let ordered = rng.uniform() < share ? local + global : global + local
        // A candidate past a knob's hard edge goes after every other.
        let likely = ordered.map { !failures.pastAnEdge($0) }
        return zip(ordered, likely).filter(\.1).map(\.0) + zip(ordered, likely).filter { !$0.1 }.map(\.0)
    }

    /// The step of the last improvement taken again from the best, twice as long (an accelerating
    /// pattern move, as in Hooke and Jeeves' search): along a slope a move that paid is usually
    /// short of the way left, and a doubled step gets there in fewer evaluations (median best of 150
    /// runs after 30 evaluations, in-process, with the wider moves and sharper share below: smooth
    /// -1.61 -> -1.33, noisy 2.29 -> 2.39). Only after a local move of numbers (a choice cannot be
    /// stepped); once measured, the duplicate rule skips it.
    static func repeatedStep(_ space: SearchSpace, _ observations: [Observation]) -> [[Double]] {
        guard var best = observations.first else { return [] }
        var previous: Observation?
        for observation in observations.dropFirst() where observation.value > best.value {
            previous = best
            best = observation
        }
        guard let previous, let moved = localMove(best.point, from: previous.point),
            moved.allSatisfy({ space.categories($0) == nil })
        else { return [] }
        return [zip(best.point, previous.point).map { min(max($0 + 2 * ($0 - $1), 0), 1) }]
    }

    /// How likely each knob is to be the one a local move changes, as the `mutate` agent weighs its
    /// knobs: 1/(1+m)^2 for a knob that m of the local moves among the last ten configurations
    /// changed without raising the best. Where some knobs only pay together (a narrow valley), a
    /// move of one of them alone keeps failing, and the moves go to the knobs that pay alone: on
    /// the benchmark's `smooth` objective, the median best after 30 evaluations over 100 real runs
    /// rose from -1.47 to -1.38 (`mutate`: -1.42); on the bundled workspace 10 paired runs lost
    /// about 0.0009 at 30 (README, Benchmarks).
    static func knobWeights(_ space: SearchSpace, _ observations: [Observation]) -> [Double] {
        var misses = [Double](repeating: 0, count: space.count)
        for (observation, best) in againstTheBest(observations).suffix(10) where observation.value <= best.value {
            for dimension in localMove(observation.point, from: best.point) ?? [] { misses[dimension] += 1 }
        }
        return misses.map { 1 / ((1 + $0) * (1 + $0)) }
    }

    /// Each configuration after the first, in measurement order, with the best one before it.
    static func againstTheBest(_ observations: [Observation]) -> [(observation: Observation, best: Observation)] {
        guard var best = observations.first else { return [] }
        return observations.dropFirst().map { observation in
            defer { if observation.value > best.value { best = observation } }
            return (observation, best)
        }
    }

    /// The coordinates `point` changed from `origin`.
    static func changed(_ point: [Double], from origin: [Double]) -> [Int] {
        point.indices.filter { abs(point[$0] - origin[$0]) > 1e-9 }
    }

    /// The coordinates `point` changed from `origin` when that is a local move (under half of
    /// them); nil for a broader change.
    static func localMove(_ point: [Double], from origin: [Double]) -> [Int]? {
        let moved = changed(point, from: origin)
        return 2 * moved.count < point.count ? moved : nil
    }

    /// How often a local move should come first. Each configuration after the first is labelled
    /// local (it differs from the best before it in under half the coordinates, as `move` makes
    /// them) or global, and each kind is credited with how far its configurations raised the best
    /// (by how much, not how often: on the bundled workspace local moves beat the best often, by
    /// noise-sized steps, while broad jumps beat it less often by much more). Each kind's gain per
    /// configuration tried, from a prior of a quarter of the mean gain per improvement, sets its
    /// share in proportion to the squares of the two, so a kind that stopped paying loses its
    /// evaluations soon; until anything has improved, `closerShare`. The share stays within
    /// 0.1...0.9 so that neither kind is ever abandoned.
    static func localShare(_ observations: [Observation]) -> Double {
        guard !observations.isEmpty else { return 0.5 }
        var gained = [0.0, 0.0], tried = [1.0, 1.0]  // local, global; the prior counts as one try
        var improvements = 0.0
        var shortfalls: [[Double]] = [[], []]  // how far each configuration fell short, by kind
        for (observation, best) in againstTheBest(observations) {
            let kind = localMove(observation.point, from: best.point) == nil ? 1 : 0
            tried[kind] += 1
            if best.value > -Double.infinity { shortfalls[kind].append(best.value - observation.value) }
            if observation.value > best.value {
                // A best of -inf (nothing has scored yet) is left by any score: no gain to measure.
                gained[kind] += best.value > -Double.infinity ? observation.value - best.value : 0
                improvements += 1
            }
        }
        let total = gained[0] + gained[1]
        guard improvements > 0, total > 0, total.isFinite else { return closerShare(local: shortfalls[0], global: shortfalls[1]) }
        let prior = 0.25 * total / improvements
        let local = (gained[0] + prior) / tried[0], global = (gained[1] + prior) / tried[1]
        return min(max(local * local / (local * local + global * global), 0.1), 0.9)
    }

    /// The local share while nothing has raised the best, from how far each local and each global
    /// configuration fell short of the best before it: the chance that a local one fell short by
    /// less than a global one did (over every pair of the two),
    /// within 0.1...0.9; one half until each kind has been tried. Where the baseline is hard to beat
    /// (the smooth objective), broad jumps fall far short and moves around it come close, and the
    /// next evaluations go to the moves before any of them has won: there, the median best after 30
    /// evaluations over 100 real runs rose from -1.38 to -1.26 (with the narrower draws of `Parzen`
    /// too, -1.30; `mutate`: -1.42).
    static func closerShare(local: [Double], global: [Double]) -> Double {
        guard !local.isEmpty, !global.isEmpty else { return 0.5 }
        var closer = 0.0
        for l in local {
            for g in global { closer += l < g ? 1 : l == g ? 0.5 : 0 }
        }
        return min(max(closer / Double(local.count * global.count), 0.1), 0.9)
    }
}

/// Where configurations failed (scored -inf: a crash, or a hard region such as a leverage that
/// wipes a trading account out), knob by knob. A hard region is usually set by one knob or two,
/// with the best configurations right next to it; in the joint space the failures near a candidate
/// are too few for the two mixtures to see it, along the knob that sets it they are not. Two
/// readings: along each knob, the share of the configurations near a value that failed (a kernel
/// estimate with one configuration at the run's failure rate as prior; a candidate's chance to
/// score is the smallest over its knobs), which ranks candidates; and a knob's hard edge, beyond
/// every score and at or beyond two failures, past which a candidate goes last. On the bundled
/// workspace (over 500 trees fails) the share of proposals that failed in evaluations 11 to 30
/// fell from 10% to 5%, Optuna's.
struct Failures {
    let space: SearchSpace
    let width: [Double]
    let points: [[Double]]
    let failed: [Bool]
    let rate: Double
    /// Per knob, the values at and beyond which a candidate is past its hard edge (numbers: below
    /// `low` or above `high`, infinite where there is none), or its options with two failures and
    /// no score (`choice`/`bool`).
    let edges: [(low: Double, high: Double, deadOptions: Set<Int>)]

    init(_ space: SearchSpace, _ observations: [Observation], width: [Double]) {
        self.space = space
        self.width = width
        points = observations.map(\.point)
        failed = observations.map { $0.value == -Double.infinity }
        rate = Double(failed.filter { $0 }.count) / Double(max(observations.count, 1))
        let scored = zip(points, failed).filter { !$0.1 }.map(\.0), fails = zip(points, failed).filter(\.1).map(\.0)
        edges = (0..<space.count).map { dimension in
            if let options = space.categories(dimension) {
                let option = { (point: [Double]) in SearchSpace.option(point[dimension], of: options) }
                let scoredOptions = Set(scored.map(option))
                let dead = Dictionary(grouping: fails.map(option), by: { $0 }).filter { $0.value.count >= 2 && !scoredOptions.contains($0.key) }
                return (-Double.infinity, Double.infinity, Set(dead.keys))
            }
            let values = scored.map { $0[dimension] }
            guard let lowest = values.min(), let highest = values.max() else { return (-Double.infinity, Double.infinity, []) }
            let below = fails.map { $0[dimension] }.filter { $0 < lowest }.sorted(by: >)
            let above = fails.map { $0[dimension] }.filter { $0 > highest }.sorted()
            return (below.count >= 2 ? below[0] : -Double.infinity, above.count >= 2 ? above[0] : Double.infinity, [])
        }
    }

    /// Whether `x` lies past a hard edge along one of its knobs: beyond every configuration that
    /// scored, at or beyond one that failed, where at least two failed and none scored (for a
    /// `choice`/`bool`, an option with two failures and no score).
    func pastAnEdge(_ x: [Double]) -> Bool {
        zip(x, edges).enumerated().contains { dimension, pair in
            let (value, edge) = pair
            if let options = space.categories(dimension) { return edge.deadOptions.contains(SearchSpace.option(value, of: options)) }
            return value <= edge.low || value >= edge.high
        }
    }

    /// log of the chance that `x` scores (0 while nothing failed).
    func logSurvival(_ x: [Double]) -> Double {
        guard rate > 0 else { return 0 }
        var worst = 0.0
        for dimension in 0..<space.count {
            let options = space.categories(dimension)
            var near = 1.0, nearFailed = rate
            for (point, failed) in zip(points, failed) {
                let k: Double
                if let options {
                    k = SearchSpace.option(point[dimension], of: options) == SearchSpace.option(x[dimension], of: options) ? 1 : 0
                } else {
                    let z = (x[dimension] - point[dimension]) / width[dimension]
                    k = exp(-0.5 * z * z)
                }
                near += k
                if failed { nearFailed += k }
            }
            worst = max(worst, nearFailed / near)
        }
        return log(max(1 - worst, 1e-6))
    }
}

/// A mixture of product kernels, one per point plus a prior component: truncated Gaussians on
/// 0...1 for numbers, for `choice`/`bool` the point's option with most of the mass.
struct Parzen {
    let space: SearchSpace
    let points: [[Double]]
    let width: [Double]
    /// The widths `sample` draws with: along a knob where the points agree, narrower (`init`).
    let drawWidth: [Double]

    /// Share of a categorical kernel's mass spread over every option.
    static let categoricalSpread = 0.25

    init(_ space: SearchSpace, _ points: [[Double]]) {
        self.space = space
        self.points = points
        // Scott-like shrinking width; never below half an integer step, so ints keep neighbours.
        let n = Double(points.count + 1)
        let base = 0.25 * pow(n, -1 / Double(space.count + 4))
        let floors = space.knobs.map { knob in
            let steps = knob.high.rounded(.down) - knob.low.rounded(.up)
            return knob.kind == .int && steps > 0 ? max(0.02, 0.5 / steps) : 0.02
        }
        width = floors.map { max(base, $0) }
        // Draws keep near the points' values along the knobs where they agree and spread along the
        // others, as Scott's rule scales a kernel by the data's spread: the points' spread along a
        // knob (the uniform's, 0.29, counted as one more point's) against the uniform's. Measured in
        // real runs: noisy objective, median best after 30 evaluations over 100 runs 2.46 -> 2.63;
        // bundled workspace after 100, 10 paired runs, 0.9922 -> 0.9927; smooth -1.38 -> -1.40.
        let uniform = 1.0 / 12
        drawWidth = (0..<space.count).map { [width] dimension in
            let values = points.map { $0[dimension] }
            guard values.count > 1 else { return width[dimension] }
            let mean = values.reduce(0, +) / Double(values.count)
            let spread = ((values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } + uniform) / Double(values.count)).squareRoot()
            return max(width[dimension] * min(spread / uniform.squareRoot(), 1), floors[dimension])
        }
    }

    /// A draw: a component at random (the prior as likely as any point), then each coordinate.
    func sample(_ rng: inout SplitMix64) -> [Double] {
        let component = rng.below(points.count + 1)
        guard component < points.count else { return space.random(&rng) }
        let center = points[component]
        return (0..<space.count).map { dimension in
            if let options = space.categories(dimension) {
                let own = SearchSpace.option(center[dimension], of: options)
                let pick = rng.uniform() < Parzen.categoricalSpread ? rng.below(options) : own
                return (Double(pick) + 0.5) / Double(options)
            }
            for _ in 0..<16 {
                let x = center[dimension] + drawWidth[dimension] * rng.gaussian()
                if x >= 0 && x <= 1 { return x }
            }
            return min(max(center[dimension], 0), 1)
        }
    }

    /// `point` moved on one of its coordinates, or two in about a third of the moves (as the
    /// `mutate` agent does), by three quarters of a kernel width (half a width measured worse on
    /// the benchmark's objectives), or for `choice`/`bool` to another option: moving every knob at
    /// once rarely stays in a narrow ridge of good configurations.
    func move(_ point: [Double], weights: [Double], _ rng: inout SplitMix64) -> [Double] {
        var moved = point
        func pick(_ from: [Int]) -> Int { from[rng.index(weights: from.map { weights[$0] })] }
        var dimensions = [pick(Array(0..<space.count))]
        if space.count > 1 && rng.uniform() < 0.35 { dimensions.append(pick((0..<space.count).filter { $0 != dimensions[0] })) }
        for dimension in dimensions {
            if let options = space.categories(dimension) {
                let own = SearchSpace.option(point[dimension], of: options)
                let pick = rng.below(options - 1)
                moved[dimension] = (Double(pick >= own ? pick + 1 : pick) + 0.5) / Double(options)
            } else {
                let x = point[dimension] + 0.75 * width[dimension] * rng.gaussian()
                moved[dimension] = x < 0 ? min(-x, 1) : x > 1 ? max(2 - x, 0) : x
            }
        }
        return moved
    }

    /// log of the mixture's density at `x`, over the coordinates `on` (nil: all of them).
    func logDensity(_ x: [Double], on dimensions: [Int]? = nil) -> Double {
        let dimensions = dimensions ?? Array(0..<space.count)
        var terms: [Double] = [0]  // the prior: uniform, density 1 on the unit cube
        for center in points {
            var sum = 0.0
            for dimension in dimensions {
                if let options = space.categories(dimension) {
                    let own = SearchSpace.option(center[dimension], of: options)
                    let at = SearchSpace.option(x[dimension], of: options)
                    let p = Parzen.categoricalSpread / Double(options) + (own == at ? 1 - Parzen.categoricalSpread : 0)
                    sum += log(p * Double(options))  // per unit length, like the prior
                } else {
                    let sigma = width[dimension]
                    let z = (x[dimension] - center[dimension]) / sigma
                    let mass = Parzen.phi((1 - center[dimension]) / sigma) - Parzen.phi(-center[dimension] / sigma)
                    sum += -0.5 * z * z - log(sigma * (2 * Double.pi).squareRoot() * max(mass, 1e-12))
                }
            }
            terms.append(sum)
        }
        let top = terms.max() ?? 0
        return top + log(terms.reduce(0) { $0 + exp($1 - top) } / Double(terms.count))
    }

    /// The standard normal distribution function.
    static func phi(_ z: Double) -> Double { 0.5 * erfc(-z / 2.0.squareRoot()) }
}
