#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

import ProctorConfig

/// `kind = "search"`: a model-based optimizer over the `# mutate:` knobs (grammar: `Markers.swift`).
/// Each proposal sets every knob at once, to the configuration the strategy (`[agent] strategy`:
/// `tpe`, `cmaes` or `random`) finds most promising given every configuration measured in this
/// run, and never one already measured. The ledger is its memory: the description of each
/// proposal lists the whole configuration (`search tpe: NAME=VALUE ...`), read back from the
/// run's records with each seed's score, so `--resume` continues the same search. The first
/// configurations follow a quasi-random design (Halton, shifted by the run's seed); draws are
/// seeded by the run and the iteration, never the clock: the same ledger gives the same proposal.
public struct SearchAgent: MarkerAgent {
    public let strategyName: String
    let strategy: SearchStrategy

    /// Nil for a strategy it does not know.
    public init?(strategy: String) {
        guard let chosen = SearchStrategies.named(strategy) else { return nil }
        strategyName = strategy
        self.strategy = chosen
    }

    public static let strategies = ["tpe", "cmaes", "random"]
    /// The longest description it writes (every knob's label and value, its memory; the loop caps
    /// other agents' at 300 scalars); a configuration it cannot describe in full is not proposed.
    public var descriptionLimit: Int { 65_536 }
    /// Every knob set at once: its description is the whole configuration (`Agent`).
    public var proposesWholeConfigurations: Bool { true }
    /// `[agent] kind`, as the ledger records it.
    public static let kind = "search"

    /// The markers, and `[limits] diff_lines` against a whole configuration: a proposal rewrites
    /// every knob's line (one removed and one added, and the validator counts a line once per 200
    /// bytes), and one over the limit is rejected before it runs (40 knobs under the bundled
    /// workspace's 60 made every broad proposal a rejection, which the model then took for a bad region).
    public func check(_ context: AgentContext) throws -> [String] {
        let marked = try MarkedFiles(context, WorkspaceFiles(context))
        let warnings = marked.nothingToMove(context)
        guard warnings.isEmpty else { return warnings }
        let knobs = try marked.movable(context)
        var lines: [String: Int] = [:]
        for knob in knobs { lines["\(knob.path)\u{1F}\(knob.lineIndex)"] = 2 * max(1, (knob.line.utf8.count + 199) / 200) }
        let changed = lines.values.reduce(0, +)
        if changed > context.maxDiffLines {
            throw AgentError.failed(reason: "a proposal sets all \(knobs.count) knobs, \(changed) changed lines (each line removed and added), more than [limits] diff_lines = \(context.maxDiffLines); raise diff_lines to \(changed) or more, or mark fewer constants")
        }
        return []
    }

    public func propose(_ context: AgentContext) throws -> Proposal {
        let files = WorkspaceFiles(context)
        var marked = try MarkedFiles(context, files)
        let knobs = try marked.movable(context)
        let space = SearchSpace(knobs: knobs)
        let labels = knobs.map(\.label)
        let (observations, measured) = SearchAgent.observations(context, space: space, labels: labels)

        var rng = SplitMix64(seed: context.seed ^ 0x5EA2_C4A6_E7F1_0B3D)
        var shiftRNG = SplitMix64(seed: context.runSeed)
        let shift = knobs.map { _ in shiftRNG.uniform() }
        // The design's points (the baseline counts as its first) that are not measured yet.
        let design = stride(from: 2, through: strategy.designLength, by: 1).map { space.halton($0, shift: shift) }
            .filter { !measured.contains(space.key(space.literals($0))) }
        var candidates = strategy.candidates(space, observations, design: design, &rng)
        // Never a configuration already measured: the strategy's ranking first, then random points,
        // then (a small space of ints and options) one of those left, so it ends only when none is.
        candidates += (0..<256).map { _ in space.random(&rng) }
        let chosen: [String]
        if let drawn = candidates.map(space.literals).first(where: { !measured.contains(space.key($0)) }) {
            chosen = drawn
        } else if let left = space.unmeasured(measured) {
            guard !left.isEmpty else {
                throw AgentEnded(reason: "search: all \(space.size ?? 0) configurations of the `# mutate:` knobs were measured")
            }
            chosen = left[rng.below(left.count)]
        } else {
            throw AgentEnded(reason: "search: every configuration it drew was measured already; the space of the `# mutate:` knobs is as good as exhausted")
        }
        let description = "search \(strategyName): " + zip(labels, chosen).map { "\($0)=\($1)" }.joined(separator: " ")
        guard description.unicodeScalars.count <= descriptionLimit else {
            throw AgentError.failed(reason: "\(knobs.count) knobs: their configuration is longer than the \(descriptionLimit) characters a description holds")
        }
        for (knob, literal) in zip(knobs, chosen) where literal != knob.literal { marked.set(knob, to: literal) }
        try marked.write(files)
        context.transcript.map {
            AgentTranscript.write("# search agent (\(strategyName)), iteration \(context.iteration): \(observations.count) configurations measured\n\(description)\n", to: $0)
        }
        return Proposal(description: description)
    }

    /// The configurations this run measured, as points with noise-aware values, and the keys of
    /// every configuration measured or attempted (the current files' one included).
    static func observations(_ context: AgentContext, space: SearchSpace, labels: [String]) -> ([Observation], Set<String>) {
        let current = space.knobs.map(\.literal)
        // Each configuration once (by value: `+3` in the files is the search's `3`), in the order
        // first measured, with every seed's score.
        var configurations: [(literals: [String], key: String, scores: [Double], failed: Bool)] = []
        func add(_ literals: [String], _ seedScores: [Double], failure: Bool, first: Bool = false) {
            let oriented = seedScores.map { context.maximize ? $0 : -$0 }
            let key = space.key(literals)
            if let index = configurations.firstIndex(where: { $0.key == key }) {
                configurations[index].scores += oriented
                configurations[index].failed = configurations[index].failed || failure
            } else {
                configurations.insert((literals, key, oriented, failure), at: first ? 0 : configurations.count)
            }
        }
        let baselineLiterals = SearchAgent.baselineLiterals(context, space: space)
        var baseline: [Double]?
        for entry in context.measured {
            if entry.iteration == 0 {
                baseline = entry.seedScores
                if let baselineLiterals { add(baselineLiterals, entry.seedScores, failure: false) }
            }
            // Only this agent's descriptions: another agent's (a command agent's `SUMMARY:`) may
            // look the same and name a configuration other than the one its files held.
            guard entry.agent == SearchAgent.kind, let literals = parse(entry.description, labels: labels, current: current) else { continue }
            // A discard without scores was never run (no change, a duplicate): known, not a failure;
            // nor is a candidate still being measured (`--parallel`): known, never proposed again.
            add(literals, entry.seedScores, failure: !["keep", "discard", MeasuredIteration.running].contains(entry.status))
        }
        // The files hold the best kept configuration, known already unless another agent's proposal
        // was kept: then it counts with the best score. Without the baseline's configuration, the
        // files stand for it until a proposal is kept, and go first, as measured: the order is the
        // search's history (`TPEStrategy.localShare` reads which proposals beat the best before them).
        let currentKey = space.key(current)
        if !configurations.contains(where: { $0.key == currentKey }) {
            let standsForBaseline = baselineLiterals == nil
            add(current, (standsForBaseline ? baseline : nil) ?? context.bestScore.map { [$0] } ?? [], failure: false,
                first: standsForBaseline)
        }
        // A score at the bad end of the scale (or nan) marks the configuration as failed.
        for index in configurations.indices
        where configurations[index].scores.contains(where: { $0.isNaN || $0 == -Double.infinity }) {
            configurations[index].failed = true
        }
        let values = NoiseModel.shrunkMeans(configurations.map { $0.scores.filter(\.isFinite) })
        var observations: [Observation] = []
        for (row, value) in zip(configurations, values) {
            let point = zip(space.knobs, row.literals).compactMap { $0.unit(of: $1) }
            guard point.count == row.literals.count else { continue }
            if row.scores.isEmpty && !row.failed { continue }  // nothing known about it
            let shown = row.failed ? -Double.infinity : row.scores.contains(Double.infinity) ? Double.infinity : value
            observations.append(Observation(point: point, value: shown.isNaN ? -Double.infinity : shown, seeds: row.scores.count))
        }
        return (observations, Set(configurations.map(\.key)))
    }

    /// The baseline's configuration: the knobs' values in the run's base commit (the marker on the
    /// same line of the same file); nil when the caller passed no baseline files or a marker moved.
    static func baselineLiterals(_ context: AgentContext, space: SearchSpace) -> [String]? {
        // Each file split once, not once per knob (3,000 knobs in one file: 9 s a proposal).
        var split: [String: [String]] = [:]
        let literals = space.knobs.compactMap { knob -> String? in
            guard let text = context.baselineFiles[knob.path] else { return nil }
            let lines = split[knob.path] ?? text.linesSplitAtLF()
            split[knob.path] = lines
            guard knob.lineIndex < lines.count,
                let read = try? Knob(path: knob.path, lineIndex: knob.lineIndex, line: lines[knob.lineIndex]),
                read.name == knob.name
            else { return nil }
            return read.literal
        }
        return literals.count == space.count ? literals : nil
    }

    /// The literals a description `search STRATEGY: LABEL=VALUE ...` set, in the knobs' order;
    /// a knob it does not name keeps the current value; nil for another agent's description.
    static func parse(_ description: String, labels: [String], current: [String]) -> [String]? {
        guard description.hasPrefix("search "), let colon = description.firstIndex(of: ":") else { return nil }
        var values: [String: String] = [:]
        for word in description[description.index(after: colon)...].split(separator: " ") {
            // A reason the ledger appended (` [crash: ...]`) ends the configuration.
            if word.hasPrefix("[") { break }
            guard let equals = word.firstIndex(of: "=") else { continue }
            values[String(word[..<equals])] = String(word[word.index(after: equals)...])
        }
        guard !values.isEmpty else { return nil }
        return zip(labels, current).map { values[$0] ?? $1 }
    }
}
