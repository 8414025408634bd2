#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `kind = "mutate"`: the built-in offline agent. It perturbs the tunable constants that the
/// editable files mark with a comment (the grammar: `Markers.swift`), one or two per iteration:
///
///     LEARNING_RATE = 0.1  # mutate: float 0.005..0.5 log
///     NUM_LEAVES = 15  # mutate: int 4..128 log
///     FEATURE_FRACTION = 1.0  # mutate: float 0.3..1.0 linear
///
/// Log-scale knobs are multiplied by `exp(N(0, 0.5))`, linear ones get `N(0, 0.15 * (hi - lo))`
/// added; results are clamped to the range, integers rounded and always moved, floats written
/// with at most 4 significant digits in the literal's own style (`0.0632`, or `6.32e-4` when the
/// literal used an exponent) and inside the range (`Knob.floatLiteral`); a `choice` or `bool` knob takes another of its values at random.
/// Only the value's characters change; the rest of the file is byte-identical. Deterministic: the same seed and iteration give the same change.
public struct MutateAgent: MarkerAgent {
    /// Knobs that failed within this many recent iterations are picked less often.
    public var recentWindow: Int

    /// The agent; `recentWindow` iterations of history steer it away from knobs that just failed.
    public init(recentWindow: Int = 10) {
        self.recentWindow = recentWindow
    }

    public func propose(_ context: AgentContext) throws -> Proposal {
        let files = WorkspaceFiles(context)
        var marked = try MarkedFiles(context, files)
        let movable = try marked.movable(context)

        // Iteration mixed into the seed: a loop that passes one run seed still gets a new draw each time.
        var rng = SplitMix64(
            seed: context.seed ^ (UInt64(truncatingIfNeeded: context.iteration) &* 0xD1B5_4A32_D192_ED03))
        let failures = recentFailures(context.history)

        // The same change just tried and not kept would waste an iteration (a narrow int range
        // makes repeats likely): draw again, a few times, before settling for a repeat. Changes are
        // compared by the values they set, not by their words (a combination of near misses and a
        // duplicate's row word the same change differently). Under `--parallel` the candidates in
        // flight count as tried: the loop would discard a twin of one as a duplicate.
        let memory = context.memory
        let triedDescriptions = context.history.suffix(recentWindow).filter { $0.status != "keep" }.map(\.description)
            + context.measured.filter { $0.status == MeasuredIteration.running }.map(\.description)
            + memory.nearMisses.map(\.description)
        let tried = Set(triedDescriptions.map { MutateAgent.key(MutateAgent.changes(describedBy: $0)) }.filter { !$0.isEmpty })
        func describe(_ changes: [(Knob, String)]) -> String {
            changes.map { "\($0.0.label) \($0.0.literal) -> \($0.1)" }.joined(separator: ", ")
        }
        // A value the memory says was already measured for that knob and not kept is not worth
        // another iteration; nor is a knob whose category is exhausted, while others are left.
        func triedBefore(_ change: (Knob, String)) -> Bool {
            memory.triedValues[change.0.label]?.contains(change.1) ?? false
        }
        let fresh = movable.filter { !memory.exhausted.contains($0.label) }
        let pool = fresh.isEmpty ? movable : fresh
        // On a plateau: every other iteration combines the near misses' values, else wider steps.
        var chosen: [(Knob, String)] = []
        var description = ""
        // The combination is the same until the near misses change: once tried (or in flight), it
        // was proposed again at every other iteration, each a duplicate.
        let combined = memory.plateau ? combineNearMisses(memory.nearMisses, knobs: movable) : nil
        let combinedDescription = combined.map {
            "combine near misses \($0.iterations.map(String.init).joined(separator: ", ")): " + describe($0.changes)
        }
        if let combined, let combinedDescription, !combined.changes.isEmpty,
            !tried.contains(MutateAgent.key(combined.changes.map { ($0.0.label, $0.1) })), rng.uniform() < 0.5 {
            chosen = combined.changes
            description = combinedDescription
        } else {
            let widen = memory.plateau ? 2.0 : 1.0
            for _ in 0..<8 {
                chosen = draw(pool, failures: failures, widen: widen, &rng)
                description = describe(chosen)
                if !tried.contains(MutateAgent.key(chosen.map { ($0.0.label, $0.1) })) && !chosen.contains(where: triedBefore) { break }
            }
        }
        guard !chosen.isEmpty else { throw AgentError.failed(reason: "could not move any `# mutate:` knob") }
        context.transcript.map {
            AgentTranscript.write("# mutate agent, iteration \(context.iteration)\(memory.plateau ? " (plateau: \(memory.iterationsWithoutKeep) iterations without a keep)" : "")\n\(description)\n", to: $0)
        }
        for (knob, literal) in chosen { marked.set(knob, to: literal) }
        try marked.write(files)
        return Proposal(description: description)
    }

    /// One or two knobs, weighted away from those that recently failed, each with its new literal.
    private func draw(_ movable: [Knob], failures: [String: Int], widen: Double = 1,
                      _ rng: inout SplitMix64) -> [(Knob, String)] {
        var candidates = movable
        var chosen: [Knob] = []
        let wanted = movable.count >= 2 && rng.uniform() < 0.35 ? 2 : 1
        while chosen.count < wanted && !candidates.isEmpty {
            let weights = candidates.map { knob -> Double in
                let misses = Double(failures[knob.label] ?? 0)
                return 1 / ((1 + misses) * (1 + misses))
            }
            chosen.append(candidates.remove(at: rng.index(weights: weights)))
        }
        chosen.sort { ($0.path, $0.lineIndex) < ($1.path, $1.lineIndex) }
        return chosen.compactMap { knob in knob.perturbed(&rng, widen: widen).map { (knob, $0) } }
    }

    /// The values the near misses (this agent's own descriptions, `LABEL OLD -> NEW, ...`) set,
    /// applied together: each knob to the value of the closest near miss that moved it.
    private func combineNearMisses(_ misses: [AgentMemory.NearMiss], knobs: [Knob]) -> (changes: [(Knob, String)], iterations: [Int])? {
        guard misses.count >= 2 else { return nil }
        var changes: [(Knob, String)] = []
        var used: [Int] = []
        for miss in misses {
            for (label, _, value) in MutateAgent.changes(describedBy: miss.description) {
                guard let knob = knobs.first(where: { $0.label == label }), !changes.contains(where: { $0.0.label == label }),
                    knob.literal != value, knob.accepts(value)
                else { continue }
                changes.append((knob, value))
                if !used.contains(miss.iteration) { used.append(miss.iteration) }
            }
        }
        guard used.count >= 2 else { return nil }
        changes.sort { ($0.0.path, $0.0.lineIndex) < ($1.0.path, $1.0.lineIndex) }
        return (changes, used)
    }

    /// How often each knob label appears in recent iterations that were not kept.
    private func recentFailures(_ history: [HistoryEntry]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for entry in history.suffix(recentWindow) where entry.status != "keep" {
            for (label, _, _) in MutateAgent.changes(describedBy: entry.description) { counts[label, default: 0] += 1 }
        }
        return counts
    }

    /// The `LABEL OLD -> NEW` changes one of this agent's descriptions names, whatever comes before
    /// them (`combine near misses 3, 5: `) or after (` (duplicate of iteration 4)`, as a row has it).
    static func changes(describedBy description: String) -> [(label: String, old: String, new: String)] {
        var text = Substring(description)
        if text.hasPrefix("combine near misses "), let colon = text.range(of: ": ") { text = text[colon.upperBound...] }
        if text.hasSuffix(")"), let suffix = text.range(of: " (duplicate of iteration ", options: .backwards) {
            text = text[..<suffix.lowerBound]
        }
        return text.split(separator: ",").compactMap { part in
            let words = part.split(separator: " ").map(String.init)
            return words.count == 4 && words[2] == "->" ? (words[0], words[1], words[3]) : nil
        }
    }

    /// A change set by the values it sets, for telling two wordings of one change apart from two changes.
    static func key(_ changes: [(label: String, new: String)]) -> String {
        changes.map { "\($0.label)=\($0.new)" }.sorted().joined(separator: " ")
    }
    static func key(_ changes: [(label: String, old: String, new: String)]) -> String {
        key(changes.map { ($0.label, $0.new) })
    }
}
