import Foundation
import XCTest

@testable import ProctorAgents

/// How well the `search` agent searches, on the two synthetic objectives of `bench/search.py`
/// (formulas copied; the noise is drawn from another generator with the same distribution),
/// through the real agent and a stand-in for the loop's gate: a proposal is measured on the first
/// seed, confirmed on the others when it beats the best, kept when the mean still beats it.
final class SearchQualityTests: XCTestCase {
    struct Objective: Sendable {
        let train: String
        let minImprovement: Double
        let confirm: [Int]
        let score: @Sendable ([String: String], Int, Int) -> Double
    }

    static func value(_ config: [String: String], _ name: String) -> Double { Double(config[name]!)! }

    static let smooth = Objective(
        train: """
            A = 0.0  # mutate: float -2.0..2.0 linear
            B = 0.0  # mutate: float -2.0..2.0 linear
            C = 0.0  # mutate: float -2.0..2.0 linear
            RATE = 0.1  # mutate: float 1e-4..1.0 log
            DEPTH = 2  # mutate: int 1..64 log
            KIND = "a"  # mutate: choice a|b|c
            FLAG = False  # mutate: bool

            """, minImprovement: 0, confirm: []
    ) { config, _, _ in
        let a = value(config, "A"), b = value(config, "B"), c = value(config, "C")
        let valley = 100 * pow(b - a * a, 2) + pow(1 - a, 2) + 100 * pow(c - b * b, 2) + pow(1 - b, 2)
        let rate = pow(log10(value(config, "RATE")) + 2 - 0.5 * (a - 1), 2)
        let depth = 0.5 * pow(log2(value(config, "DEPTH")) - 3, 2)
        let kind = ["\"a\"": 0.5, "\"b\"": 0.0, "\"c\"": 1.0][config["KIND"]!]!
        return -log1p(valley + rate + depth + kind + (config["FLAG"] == "True" ? 0 : 0.3))
    }

    static let noisy = Objective(
        train: """
            ENTRY = 0.5  # mutate: float 0.0..1.0 linear
            EXIT = 0.5  # mutate: float 0.0..1.0 linear
            LEVERAGE = 2.0  # mutate: float 1.0..100.0 log
            WINDOW = 10  # mutate: int 2..200 log
            MODE = "trend"  # mutate: choice trend|revert|both

            """, minImprovement: 0.05, confirm: [17, 73]
    ) { config, seed, salt in
        let entry = value(config, "ENTRY"), exit = value(config, "EXIT"), leverage = value(config, "LEVERAGE")
        let window = value(config, "WINDOW"), mode = config["MODE"]!
        var edge = 1 - 4 * (pow(entry - 0.7, 2) + pow(exit - 0.3, 2)) - 0.3 * pow(log(window / 30), 2)
        edge += ["\"trend\"": 0.1, "\"revert\"": 0.0, "\"both\"": 0.25][mode]! - 2 * (entry - 0.7) * (exit - 0.3)
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in "\(seed) \(salt) \(config.sorted { $0.key < $1.key })".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        var rng = SplitMix64(seed: hash)
        let noise = 0.15 * rng.gaussian()
        if log10(leverage) * (0.5 + entry) > 1.5 { return -Double.infinity }
        return (edge + noise) * log10(leverage) * 2
    }

    static func configuration(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where line.contains("# mutate:") {
            let parts = line.split(separator: " ")
            values[String(parts[0])] = String(parts[2])
        }
        return values
    }

    /// The first seed's score of every evaluation of one run (the baseline first).
    func run(_ objective: Objective, strategy: String, evaluations: Int, salt: Int) throws -> [Double] {
        let ws = try TestWorkspace(files: ["train.py": objective.train, "program.md": "Maximize.\n"])
        let agent = try XCTUnwrap(SearchAgent(strategy: strategy))
        let seeds = [42] + objective.confirm
        var kept = objective.train
        let baseline = seeds.map { objective.score(Self.configuration(kept), $0, salt) }
        var best = baseline.reduce(0, +) / Double(baseline.count)
        var measured = [MeasuredIteration(iteration: 0, status: "keep", description: "baseline", seedScores: baseline, agent: "search")]
        var firstSeed = [baseline[0]]
        for iteration in 1..<evaluations {
            var context = ws.context(seed: UInt64(iteration) &* 0x9E37_79B9 ^ UInt64(salt), iteration: iteration)
            context.runSeed = UInt64(salt) &* 7919 &+ 1
            context.measured = measured
            context.baselineFiles = ["train.py": objective.train]
            context.bestScore = best
            let proposal = try agent.propose(context)
            let text = try XCTUnwrap(ws.read("train.py"))
            let config = Self.configuration(text)
            var scores = [objective.score(config, 42, salt)]
            firstSeed.append(scores[0])
            var status = "discard"
            if scores[0] > best + objective.minImprovement {
                scores += objective.confirm.map { objective.score(config, $0, salt) }
                let mean = scores.reduce(0, +) / Double(scores.count)
                if mean > best + objective.minImprovement {
                    status = "keep"
                    best = mean
                    kept = text
                }
            }
            measured.append(MeasuredIteration(iteration: iteration, status: status, description: proposal.description, seedScores: scores,
                                              agent: "search"))
            try kept.write(toFile: ws.root + "/train.py", atomically: false, encoding: .utf8)
        }
        return firstSeed
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// Median best first-seed score after each budget over `repetitions` runs.
    func bests(_ objective: Objective, strategy: String, repetitions: Int, budgets: [Int]) throws -> [Double] {
        var curves: [[Double]] = []
        for salt in 0..<repetitions {
            let scores = try run(objective, strategy: strategy, evaluations: budgets.max()!, salt: salt)
            var best = -Double.infinity
            curves.append(scores.map { best = max(best, $0); return best })
        }
        return budgets.map { budget in Self.median(curves.map { $0[budget - 1] }) }
    }

    /// The model earns its keep: after 30 evaluations (the baseline included), TPE's median best is
    /// above random search's on both objectives (medians measured with this harness, TPE over 150
    /// runs and random over 20: smooth -1.33 against the baseline's -2.09, which random search never
    /// beat; noisy 2.39 against 1.80; over these nine runs, smooth -1.27 against -2.09 and noisy
    /// 2.16 against 1.91).
    func testTPEBeatsRandomSearchAtThirtyEvaluations() throws {
        for (name, objective, margin) in [("smooth", Self.smooth, 0.3), ("noisy", Self.noisy, 0.1)] {
            let tpe = try bests(objective, strategy: "tpe", repetitions: 9, budgets: [30])[0]
            let random = try bests(objective, strategy: "random", repetitions: 9, budgets: [30])[0]
            XCTAssertGreaterThan(tpe, random + margin, "\(name): tpe \(tpe), random \(random)")
        }
    }

    /// The last improvement's step is offered again from the best, twice as long, only when that
    /// step moved numbers on under half the knobs, and never outside the unit cube.
    func testTheLastImprovementsStepIsRepeated() {
        let space = SearchSpace(knobs: [
            try! Knob(path: "train.py", lineIndex: 0, line: "A = 0.5  # mutate: float 0.0..1.0 linear")!,
            try! Knob(path: "train.py", lineIndex: 1, line: "B = 0.5  # mutate: float 0.0..1.0 linear")!,
            try! Knob(path: "train.py", lineIndex: 2, line: "C = 0.5  # mutate: float 0.0..1.0 linear")!,
            try! Knob(path: "train.py", lineIndex: 3, line: "K = \"a\"  # mutate: choice a|b")!,
        ])
        let start = Observation(point: [0.5, 0.5, 0.5, 0.25], value: 0, seeds: 1)
        let worse = Observation(point: [0.5, 0.2, 0.5, 0.25], value: -1, seeds: 1)
        let step = Observation(point: [0.8, 0.5, 0.5, 0.25], value: 1, seeds: 1)
        XCTAssertEqual(TPEStrategy.repeatedStep(space, [start]), [])
        XCTAssertEqual(TPEStrategy.repeatedStep(space, [start, worse]), [])
        // From the best, not from the last configuration measured; clamped to the cube.
        let repeated = TPEStrategy.repeatedStep(space, [start, step, worse])
        XCTAssertEqual(repeated.count, 1)
        XCTAssertEqual(repeated.first?[0] ?? 0, 1.0, accuracy: 1e-12)
        XCTAssertEqual(Array(repeated.first?.dropFirst() ?? []), [0.5, 0.5, 0.25])
        // Twice as long: 0.5 -> 0.6 is followed by 0.8.
        let short = Observation(point: [0.6, 0.5, 0.5, 0.25], value: 1, seeds: 1)
        XCTAssertEqual(TPEStrategy.repeatedStep(space, [start, short]).first?[0] ?? 0, 0.8, accuracy: 1e-12)
        // A change of option, or a broad jump, has no step to repeat.
        let option = Observation(point: [0.8, 0.5, 0.5, 0.75], value: 2, seeds: 1)
        XCTAssertEqual(TPEStrategy.repeatedStep(space, [start, step, option]), [])
        let jump = Observation(point: [0.1, 0.9, 0.9, 0.25], value: 2, seeds: 1)
        XCTAssertEqual(TPEStrategy.repeatedStep(space, [start, step, jump]), [])
    }

    /// Local moves come first in the share of the improvement they brought: more when they raised
    /// the best, less when mixture draws did, never all or nothing.
    func testLocalMovesGetTheShareOfImprovementsTheyBrought() {
        func point(_ x: Double, _ y: Double, _ z: Double) -> [Double] { [x, y, z] }
        let start = Observation(point: point(0.5, 0.5, 0.5), value: 0, seeds: 1)
        // Each local move (one coordinate changed) beats the best; the global draws do not.
        var localWins = [start]
        for step in 1...6 {
            localWins.append(Observation(point: point(0.5 + 0.01 * Double(step), 0.5, 0.5), value: Double(step), seeds: 1))
            localWins.append(Observation(point: point(0.1 * Double(step), 0.9, 0.05 * Double(step)), value: -1, seeds: 1))
        }
        // The same, with the scores of the two kinds swapped.
        var globalWins = [start]
        var best = start.point
        for step in 1...6 {
            globalWins.append(Observation(point: [best[0], best[1] + 0.01, best[2]], value: -1, seeds: 1))
            best = point(0.1 * Double(step), 0.9 - 0.1 * Double(step), 0.05 * Double(step))
            globalWins.append(Observation(point: best, value: Double(step), seeds: 1))
        }
        XCTAssertEqual(TPEStrategy.localShare([start]), 0.5)
        XCTAssertGreaterThan(TPEStrategy.localShare(localWins), 0.8)
        XCTAssertLessThan(TPEStrategy.localShare(globalWins), 0.2)
        XCTAssertGreaterThanOrEqual(TPEStrategy.localShare(globalWins), 0.1)
        XCTAssertLessThanOrEqual(TPEStrategy.localShare(localWins), 0.9)

        // How much, not how often: four moves each beat the best by a noise-sized step, one broad
        // jump of four beat it by far more. Counted by wins, the moves would get nine tenths.
        var smallSteps = [start]
        for step in 1...4 {
            smallSteps.append(Observation(point: point(0.1 * Double(step), 0.9, 0.1), value: -1, seeds: 1))
            if step == 2 { smallSteps.append(Observation(point: point(0.8, 0.2, 0.9), value: 1, seeds: 1)) }
        }
        for step in 1...4 {
            smallSteps.append(Observation(point: point(0.8 + 0.01 * Double(step), 0.2, 0.9), value: 1 + 0.001 * Double(step), seeds: 1))
        }
        XCTAssertEqual(TPEStrategy.localShare(smallSteps), 0.1)
        // Nothing scored before (a failed baseline): the first score is no measurable gain.
        let failed = [Observation(point: point(0.5, 0.5, 0.5), value: -.infinity, seeds: 1),
                      Observation(point: point(0.1, 0.9, 0.1), value: 1, seeds: 1)]
        XCTAssertEqual(TPEStrategy.localShare(failed), 0.5)
    }

    /// Before anything has raised the best, the share goes to the kind whose configurations came
    /// closer to it: local moves that fell just short against broad jumps that fell far short
    /// (the smooth objective's baseline) get nine tenths, the other way round one tenth, and one
    /// half until both kinds have been tried.
    func testBeforeAnyGainTheShareGoesToTheKindThatCameCloser() {
        let start = Observation(point: [0.5, 0.5, 0.5], value: 0, seeds: 1)
        let near = [0.1, 0.2, 0.3].map { Observation(point: [0.5 + $0, 0.5, 0.5], value: -$0, seeds: 1) }
        let far = [0.1, 0.2, 0.3].map { Observation(point: [$0, 0.9 - $0, 0.9], value: -5 - $0, seeds: 1) }
        XCTAssertEqual(TPEStrategy.localShare([start] + far), 0.5)
        XCTAssertEqual(TPEStrategy.localShare([start] + near), 0.5)
        XCTAssertEqual(TPEStrategy.localShare([start] + far + near), 0.9)
        // Swapped: the broad jumps came closer.
        let nearJumps = far.map { Observation(point: $0.point, value: ($0.value + 5) / 10, seeds: 1) }
        let farMoves = near.map { Observation(point: $0.point, value: $0.value - 5, seeds: 1) }
        XCTAssertEqual(TPEStrategy.localShare([start] + nearJumps + farMoves), 0.1)
        // Mixed: two of the three moves came closer than every jump, one fell further than all.
        let mixed = [start, near[0], near[1], Observation(point: [0.5, 0.9, 0.5], value: -9, seeds: 1)] + far
        XCTAssertEqual(TPEStrategy.localShare(mixed), 2.0 / 3, accuracy: 1e-12)
        // Once a configuration has raised the best, the gains decide, not the shortfalls.
        XCTAssertLessThan(TPEStrategy.localShare([start] + near + far + [Observation(point: [0.9, 0.1, 0.1], value: 1, seeds: 1)]), 0.2)
    }

    /// Draws from the good configurations keep to the values they agree on: along a knob where
    /// they lie together the draws' width shrinks with their spread, along one where they differ it
    /// stays the model's width, and one configuration alone is drawn around with that width.
    func testDrawsKeepToTheValuesTheGoodAgreeOn() {
        let space = SearchSpace(knobs: (0..<3).map { index in
            try! Knob(path: "train.py", lineIndex: index, line: "K\(index) = 0.5  # mutate: float 0.0..1.0 linear")!
        })
        let agreeing: [[Double]] = (0..<8).map { index -> [Double] in
            let i = Double(index)
            return [0.3 + 0.005 * i, 0.1 * i + 0.1, 0.5]
        }
        let good = Parzen(space, agreeing)
        XCTAssertLessThan(good.drawWidth[0], 0.5 * good.width[0])
        XCTAssertLessThan(good.drawWidth[2], 0.5 * good.width[2])
        XCTAssertEqual(good.drawWidth[1], good.width[1], accuracy: 0.15 * good.width[1])
        XCTAssertEqual(Parzen(space, [agreeing[0]]).drawWidth, Parzen(space, [agreeing[0]]).width)
        // The draws themselves: most of them near 0.3 on the knob the points agree on.
        var rng = SplitMix64(seed: 11)
        let draws = (0..<2000).map { _ in good.sample(&rng) }
        let near = draws.filter { abs($0[0] - 0.32) < 0.1 }.count
        XCTAssertGreaterThan(near, 1500, "\(near) of 2000 draws within 0.1 of the agreed value")
    }

    /// The first three proposals after the baseline are the design's points whatever the share:
    /// here every local move so far paid, and the design still comes first until three were made.
    func testTheFirstProposalsAreGlobal() {
        let space = SearchSpace(knobs: (0..<3).map { index in
            try! Knob(path: "train.py", lineIndex: index, line: "K\(index) = 0.5  # mutate: float 0.0..1.0 linear")!
        })
        var observations = [Observation(point: [0.5, 0.5, 0.5], value: 0, seeds: 1)]
        let design = [[0.25, 0.75, 0.125], [0.75, 0.25, 0.625], [0.125, 0.625, 0.375]]
        for step in 1...3 {
            for seed in 0..<20 as Range<UInt64> {
                var rng = SplitMix64(seed: seed)
                let first = TPEStrategy().candidates(space, observations, design: Array(design.dropFirst(step - 1)), &rng)[0]
                XCTAssertEqual(first, design[step - 1], "proposal \(step), seed \(seed)")
            }
            observations.append(Observation(point: [0.5 + 0.02 * Double(step), 0.5, 0.5], value: Double(step), seeds: 1))
        }
        // The fourth: local moves paid every time, so they now come first in most draws.
        let local = (0..<20 as Range<UInt64>).filter { seed in
            var rng = SplitMix64(seed: seed)
            let first = TPEStrategy().candidates(space, observations, design: [design[2]], &rng)[0]
            return TPEStrategy.localMove(first, from: observations.last!.point) != nil
        }.count
        XCTAssertGreaterThan(local, 10)
    }

    /// While the design lasts, its next point is the global proposal: it comes first when global
    /// proposals paid, after the local moves when those did, and is never dropped. A local move
    /// changes one knob or two, and the model picks it among a few by the knobs it moves: away from
    /// values only worse configurations had.
    func testTheDesignIsTheGlobalProposalWhileItLasts() {
        let space = SearchSpace(knobs: (0..<4).map { index in
            try! Knob(path: "train.py", lineIndex: index, line: "K\(index) = 0.5  # mutate: float 0.0..1.0 linear")!
        })
        let start = Observation(point: [0.5, 0.5, 0.5, 0.5], value: 0, seeds: 1)
        var localWins = [start], globalWins = [start]
        for step in 1...4 {
            localWins.append(Observation(point: [0.5 + 0.02 * Double(step), 0.5, 0.5, 0.5], value: Double(step), seeds: 1))
            localWins.append(Observation(point: [0.9, 0.1 * Double(step), 0.9, 0.1], value: -1, seeds: 1))
            let best = globalWins.last!.point
            globalWins.append(Observation(point: [best[0], best[1] + 0.02, best[2], best[3]], value: -1, seeds: 1))
            globalWins.append(Observation(point: [0.1 * Double(step), 0.9, 0.2 * Double(step), 0.3], value: Double(step), seeds: 1))
        }
        let design = [[0.25, 0.75, 0.125, 0.625]]
        var designFirst = (local: 0, global: 0)
        for seed in 0..<40 as Range<UInt64> {
            for (observations, wins) in [(localWins, \(local: Int, global: Int).local), (globalWins, \.global)] {
                var rng = SplitMix64(seed: seed)
                let candidates = TPEStrategy().candidates(space, observations, design: design, &rng)
                XCTAssertTrue(candidates.contains(design[0]))
                if candidates[0] == design[0] { designFirst[keyPath: wins] += 1 }
                let best = observations.max { $0.value < $1.value }!.point
                if let moved = candidates.first(where: { TPEStrategy.localMove($0, from: best) != nil }) {
                    XCTAssertTrue((1...2).contains(TPEStrategy.localMove(moved, from: best)!.count))
                }
            }
        }
        XCTAssertLessThan(designFirst.local, 10, "share \(TPEStrategy.localShare(localWins))")
        XCTAssertGreaterThan(designFirst.global, 30, "share \(TPEStrategy.localShare(globalWins))")

        // Moving the first knob up was tried and lost each time; the other knobs were never moved.
        var tried = [start]
        for step in 1...6 { tried.append(Observation(point: [0.5 + 0.03 * Double(step), 0.5, 0.5, 0.5], value: -1, seeds: 1)) }
        func firstKnobUp(_ strategy: TPEStrategy) -> Int {
            (0..<100 as Range<UInt64>).filter { seed in
                var rng = SplitMix64(seed: seed)
                let pick = strategy.candidates(space, tried, design: [], &rng).first { TPEStrategy.localMove($0, from: start.point) != nil }!
                return TPEStrategy.localMove(pick, from: start.point)!.contains(0) && pick[0] > 0.5
            }.count
        }
        // (Knobs weighed alike: weighed, the first knob is hardly moved at all, the next test.)
        let unranked = firstKnobUp(TPEStrategy(localChoice: 1, weighsKnobs: false)), ranked = firstKnobUp(TPEStrategy(weighsKnobs: false))
        XCTAssertLessThan(ranked * 2, unranked, "picked by the model \(ranked) times in 100, as drawn \(unranked)")
    }

    /// Local moves go to the knobs whose moves paid: a knob that the last local moves changed
    /// without raising the best (as one knob of a narrow valley does when moved alone) is moved
    /// less often, as the `mutate` agent weighs its knobs.
    func testLocalMovesGoToTheKnobsThatPay() {
        let space = SearchSpace(knobs: (0..<3).map { index in
            try! Knob(path: "train.py", lineIndex: index, line: "K\(index) = 0.5  # mutate: float 0.0..1.0 linear")!
        })
        // The baseline, knob 1 moved up twice (each a gain), knob 0 moved three times (no gain).
        let observations = [
            Observation(point: [0.5, 0.5, 0.5], value: 0, seeds: 1),
            Observation(point: [0.5, 0.6, 0.5], value: 1, seeds: 1),
            Observation(point: [0.4, 0.6, 0.5], value: 0.5, seeds: 1),
            Observation(point: [0.5, 0.7, 0.5], value: 2, seeds: 1),
            Observation(point: [0.6, 0.7, 0.5], value: 1, seeds: 1),
            Observation(point: [0.35, 0.7, 0.5], value: 1.5, seeds: 1),
        ]
        XCTAssertEqual(TPEStrategy.knobWeights(space, observations), [1.0 / 16, 1, 1])
        XCTAssertEqual(TPEStrategy.knobWeights(space, Array(observations.prefix(2))), [1, 1, 1])
        // How often the model's pick among the moves (after the last gain's step, repeated) moves
        // knob 0, in 400 draws.
        func movesKnobZero(_ strategy: TPEStrategy) -> Int {
            (0..<400 as Range<UInt64>).filter { seed in
                var rng = SplitMix64(seed: seed)
                let best = [0.5, 0.7, 0.5]
                let moves = strategy.candidates(space, observations, design: [], &rng).filter { TPEStrategy.localMove($0, from: best) != nil }
                return abs(moves[1][0] - 0.5) > 1e-9
            }.count
        }
        let step = TPEStrategy.repeatedStep(space, observations)
        XCTAssertEqual(step.count, 1)
        XCTAssertEqual(step.first?[1] ?? 0, 0.9, accuracy: 1e-9)
        let weighing = movesKnobZero(TPEStrategy()), even = movesKnobZero(TPEStrategy(weighsKnobs: false))
        XCTAssertLessThan(weighing * 3, even, "local moves of knob 0: \(weighing) in 400, \(even) with every knob alike")
    }

    /// A hard region set by one knob (past 0.8 on the first, every configuration failed), with the
    /// best configurations right next to it: the proposals stay on the side that scores far more
    /// often than with the failures left to the two mixtures, which in the joint space barely see
    /// them; along the other knobs, where the failures are spread evenly, no edge is seen.
    /// An edge needs two failures beyond every score along a knob (an option: two and no score).
    func testProposalsStayOffAKnobsHardEdge() {
        let space = SearchSpace(knobs: (0..<4).map { index in
            try! Knob(path: "train.py", lineIndex: index, line: "K\(index) = 0.5  # mutate: float 0.0..1.0 linear")!
        })
        var rng = SplitMix64(seed: 7)
        var observations = [Observation(point: [0.5, 0.5, 0.5, 0.5], value: 0, seeds: 1)]
        for step in 0..<24 {
            var point = space.random(&rng)
            point[0] = 0.4 + 0.4 * point[0]  // scores below the edge, better the closer it is
            observations.append(Observation(point: point, value: point[0] - 0.1 * abs(point[1] - 0.5), seeds: 1))
            if step % 3 == 0 {
                var over = space.random(&rng)
                over[0] = 0.8 + 0.2 * over[0]
                observations.append(Observation(point: over, value: -.infinity, seeds: 1))
            }
        }
        let failures = Failures(space, observations, width: [0.1, 0.1, 0.1, 0.1])
        XCTAssertTrue(failures.pastAnEdge([0.95, 0.5, 0.5, 0.5]))
        XCTAssertFalse(failures.pastAnEdge([0.79, 0.01, 0.99, 0.5]))
        XCTAssertLessThan(failures.logSurvival([0.95, 0.5, 0.5, 0.5]), failures.logSurvival([0.6, 0.5, 0.5, 0.5]) + log(0.5))
        func overTheEdge(_ strategy: TPEStrategy) -> Int {
            (0..<200 as Range<UInt64>).filter { seed in
                var rng = SplitMix64(seed: seed)
                return strategy.candidates(space, observations, design: [], &rng)[0][0] > 0.8
            }.count
        }
        let blind = overTheEdge(TPEStrategy(avoidsFailures: false)), seeing = overTheEdge(TPEStrategy())
        XCTAssertLessThan(seeing * 3, blind, "proposals past the edge: \(seeing) in 200, \(blind) without the failure model")
        let scored = Failures(space, observations.filter { $0.value > -.infinity }, width: [0.1, 0.1, 0.1, 0.1])
        XCTAssertEqual(scored.logSurvival([0.95, 0.5, 0.5, 0.5]), 0)
        XCTAssertFalse(scored.pastAnEdge([0.95, 0.5, 0.5, 0.5]))

        // A choice: an option that failed twice and never scored is an edge; once is not enough.
        let options = SearchSpace(knobs: [try! Knob(path: "train.py", lineIndex: 0, line: "MODE = \"a\"  # mutate: choice a|b|c")!,
                                          try! Knob(path: "train.py", lineIndex: 1, line: "X = 0.5  # mutate: float 0.0..1.0 linear")!])
        var tried = [Observation(point: [0.1, 0.5], value: 1, seeds: 1), Observation(point: [0.9, 0.2], value: -.infinity, seeds: 1)]
        XCTAssertFalse(Failures(options, tried, width: [0.1, 0.1]).pastAnEdge([0.9, 0.5]))
        tried.append(Observation(point: [0.9, 0.8], value: -.infinity, seeds: 1))
        XCTAssertTrue(Failures(options, tried, width: [0.1, 0.1]).pastAnEdge([0.9, 0.5]))
        XCTAssertFalse(Failures(options, tried, width: [0.1, 0.1]).pastAnEdge([0.5, 0.5]))
    }
}
