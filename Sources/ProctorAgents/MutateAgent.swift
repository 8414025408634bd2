#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `kind = "mutate"`: the built-in offline agent. It perturbs the tunable constants that the
/// editable files mark with a comment, one or two per iteration:
///
///     LEARNING_RATE = 0.1  # mutate: float 0.005..0.5 log
///     NUM_LEAVES = 15  # mutate: int 4..128 log
///     FEATURE_FRACTION = 1.0  # mutate: float 0.3..1.0 linear
///
/// Log-scale knobs are multiplied by `exp(N(0, 0.5))`, linear ones get `N(0, 0.15 * (hi - lo))`
/// added; results are clamped to the range, integers rounded and always moved, floats written
/// with at most 4 significant digits in the literal's own style (`0.0632`, or `6.32e-4` when the
/// literal used an exponent). Only the value's characters change; the rest of the file is
/// byte-identical. Deterministic: the same seed and iteration give the same change.
public struct MutateAgent: Agent {
    /// Knobs that failed within this many recent iterations are picked less often.
    public var recentWindow: Int

    /// The agent; `recentWindow` iterations of history steer it away from knobs that just failed.
    public init(recentWindow: Int = 10) {
        self.recentWindow = recentWindow
    }

    public func propose(_ context: AgentContext) throws -> Proposal {
        let files = WorkspaceFiles(context)
        var knobs: [Knob] = []
        var texts: [String: [String]] = [:]
        for path in context.editableFiles.keys.sorted() {
            guard let bytes = try files.contents(of: path) else { continue }
            guard let text = String(validating: bytes, as: UTF8.self) else { continue }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            texts[path] = lines
            for (number, line) in lines.enumerated() {
                if let knob = try Knob(path: path, lineIndex: number, line: line) { knobs.append(knob) }
            }
        }
        let movable = knobs.filter(\.isMovable)
        guard !movable.isEmpty else {
            throw AgentError.failed(
                reason: knobs.isEmpty
                    ? "no `# mutate:` markers in the editable files (\(context.editableFiles.keys.sorted().joined(separator: ", ")))"
                    : "every `# mutate:` range holds a single value: nothing to change")
        }

        // Iteration mixed into the seed: a loop that passes one run seed still gets a new draw each time.
        var rng = SplitMix64(
            seed: context.seed ^ (UInt64(truncatingIfNeeded: context.iteration) &* 0xD1B5_4A32_D192_ED03))
        let ambiguous = Set(Dictionary(grouping: movable, by: \.name).filter { $0.value.count > 1 }.keys)
        let failures = recentFailures(context.history)

        // The same change just tried and not kept would waste an iteration (a narrow int range
        // makes repeats likely): draw again, a few times, before settling for a repeat.
        let tried = Set(context.history.suffix(recentWindow).filter { $0.status != "keep" }.map(\.description))
        let memory = context.memory
        func label(_ knob: Knob) -> String { knob.label(qualified: ambiguous.contains(knob.name)) }
        func describe(_ changes: [(Knob, String)]) -> String {
            changes.map { "\(label($0.0)) \($0.0.literal) -> \($0.1)" }.joined(separator: ", ")
        }
        // A value the memory says was already measured for that knob and not kept is not worth
        // another iteration; nor is a knob whose category is exhausted, while others are left.
        func triedBefore(_ change: (Knob, String)) -> Bool {
            memory.triedValues[label(change.0)]?.contains(change.1) ?? false
        }
        let fresh = movable.filter { !memory.exhausted.contains(label($0)) }
        let pool = fresh.isEmpty ? movable : fresh
        // On a plateau: every other iteration combines the near misses' values, else wider steps.
        var chosen: [(Knob, String)] = []
        var description = ""
        if memory.plateau, let combined = combineNearMisses(memory.nearMisses, knobs: movable, label: label), !combined.changes.isEmpty,
            rng.uniform() < 0.5 {
            chosen = combined.changes
            description = "combine near misses \(combined.iterations.map(String.init).joined(separator: ", ")): " + describe(chosen)
        } else {
            let widen = memory.plateau ? 2.0 : 1.0
            for _ in 0..<8 {
                chosen = draw(pool, failures: failures, ambiguous: ambiguous, widen: widen, &rng)
                description = describe(chosen)
                if !tried.contains(description) && !chosen.contains(where: triedBefore) { break }
            }
        }
        guard !chosen.isEmpty else { throw AgentError.failed(reason: "could not move any `# mutate:` knob") }
        context.transcript.map {
            AgentTranscript.write("# mutate agent, iteration \(context.iteration)\(memory.plateau ? " (plateau: \(memory.iterationsWithoutKeep) iterations without a keep)" : "")\n\(description)\n", to: $0)
        }
        for (knob, literal) in chosen {
            texts[knob.path]?[knob.lineIndex] = knob.line.replacingCharacters(in: knob.valueRange, with: literal)
        }
        for path in Set(chosen.map(\.0.path)).sorted() {
            guard let lines = texts[path] else { continue }
            try files.replace(path, with: Array(lines.joined(separator: "\n").utf8))
        }
        return Proposal(description: description)
    }

    /// One or two knobs, weighted away from those that recently failed, each with its new literal.
    private func draw(_ movable: [Knob], failures: [String: Int], ambiguous: Set<String>, widen: Double = 1,
                      _ rng: inout SplitMix64) -> [(Knob, String)] {
        var candidates = movable
        var chosen: [Knob] = []
        let wanted = movable.count >= 2 && rng.uniform() < 0.35 ? 2 : 1
        while chosen.count < wanted && !candidates.isEmpty {
            let weights = candidates.map { knob -> Double in
                let misses = Double(failures[knob.label(qualified: ambiguous.contains(knob.name))] ?? 0)
                return 1 / ((1 + misses) * (1 + misses))
            }
            var target = rng.uniform() * weights.reduce(0, +)
            var pick = candidates.count - 1
            for (index, weight) in weights.enumerated() {
                if target < weight {
                    pick = index
                    break
                }
                target -= weight
            }
            chosen.append(candidates.remove(at: pick))
        }
        chosen.sort { ($0.path, $0.lineIndex) < ($1.path, $1.lineIndex) }
        return chosen.compactMap { knob in knob.perturbed(&rng, widen: widen).map { (knob, $0) } }
    }

    /// The values the near misses (this agent's own descriptions, `LABEL OLD -> NEW, ...`) set,
    /// applied together: each knob to the value of the closest near miss that moved it.
    private func combineNearMisses(_ misses: [AgentMemory.NearMiss], knobs: [Knob],
                                   label: (Knob) -> String) -> (changes: [(Knob, String)], iterations: [Int])? {
        guard misses.count >= 2 else { return nil }
        var changes: [(Knob, String)] = []
        var used: [Int] = []
        for miss in misses {
            for part in miss.description.split(separator: ",") {
                let words = part.split(separator: " ").map(String.init)
                guard words.count == 4, words[2] == "->", let knob = knobs.first(where: { label($0) == words[0] }),
                    !changes.contains(where: { label($0.0) == words[0] }), knob.literal != words[3], knob.accepts(words[3])
                else { continue }
                changes.append((knob, words[3]))
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
            for part in entry.description.split(separator: ",") {
                let words = part.split(separator: " ")
                if words.count >= 4, words[2] == "->" { counts[String(words[0]), default: 0] += 1 }
            }
        }
        return counts
    }
}

/// One `NAME = VALUE  # mutate: TYPE LO..HI SCALE` line.
struct Knob {
    enum Kind: String { case int, float }
    enum Scale: String { case log, linear }

    let path: String
    let lineIndex: Int
    let line: String
    let name: String
    let literal: String
    let valueRange: Range<String.Index>
    let value: Double
    let kind: Kind
    let low: Double
    let high: Double
    let scale: Scale

    /// `NAME` or, when two files have the same name, `path:NAME`.
    func label(qualified: Bool) -> String { qualified ? "\(path):\(name)" : name }

    var isMovable: Bool {
        switch kind {
        case .float: return high > low
        case .int: return high.rounded(.down) > low.rounded(.up)
        }
    }

    /// Nil for a line without a marker; throws `failed` for a marker it cannot read.
    init?(path: String, lineIndex: Int, line: String) throws(AgentError) {
        guard let hash = line.firstIndex(of: "#") else { return nil }
        let comment = line[line.index(after: hash)...].drop(while: { $0 == " " })
        guard comment.hasPrefix("mutate:") else { return nil }
        func bad(_ why: String) -> AgentError {
            .failed(reason: "\(path):\(lineIndex + 1): cannot read the mutate marker (\(why)): \(line.trimmed())")
        }

        // NAME = VALUE before the comment.
        let head = line[..<hash]
        // A comment line that only talks about the syntax is not a knob.
        if head.allSatisfy(\.isWhitespace) { return nil }
        let afterIndent = head.drop(while: { $0 == " " || $0 == "\t" })
        let name = afterIndent.prefix(while: { $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) })
        guard let first = name.first, !first.isNumber else { throw bad("expected NAME = VALUE") }
        var rest = afterIndent.dropFirst(name.count).drop(while: { $0 == " " })
        guard rest.first == "=" else { throw bad("expected NAME = VALUE") }
        rest = rest.dropFirst().drop(while: { $0 == " " })
        let literal = rest.prefix(while: { !$0.isWhitespace })
        guard rest.dropFirst(literal.count).allSatisfy(\.isWhitespace), !literal.isEmpty,
            let value = Double(String(literal)), value.isFinite
        else { throw bad("the value is not a number") }

        // mutate: TYPE LO..HI [SCALE]
        let spec = comment.dropFirst("mutate:".count).split(whereSeparator: \.isWhitespace)
        guard spec.count == 2 || spec.count == 3, let kind = Kind(rawValue: String(spec[0])) else {
            throw bad("expected `mutate: int|float LO..HI log|linear`")
        }
        guard let dots = spec[1].firstRange(of: ".."), let low = Double(String(spec[1][..<dots.lowerBound])),
            let high = Double(String(spec[1][dots.upperBound...])), low.isFinite, high.isFinite, low <= high
        else { throw bad("expected a range LO..HI with LO <= HI") }
        let scale = spec.count == 3 ? Scale(rawValue: String(spec[2])) : .linear
        guard let scale else { throw bad("the scale is `log` or `linear`") }
        if scale == .log && low <= 0 { throw bad("a log range must be positive") }
        if kind == .int && (literal.contains(".") || literal.lowercased().contains("e")) {
            throw bad("an int knob needs an integer literal")
        }

        self.path = path
        self.lineIndex = lineIndex
        self.line = line
        self.name = String(name)
        self.literal = String(literal)
        self.valueRange = literal.startIndex..<literal.endIndex
        self.value = value
        self.kind = kind
        self.low = low
        self.high = high
        self.scale = scale
    }

    /// A new literal, different from the current value and inside the range; nil if none was found.
    func perturbed(_ rng: inout SplitMix64, widen: Double = 1) -> String? {
        let start = min(max(value, low), high)
        for _ in 0..<32 {
            var next: Double
            switch scale {
            case .log: next = start * exp(0.5 * widen * rng.gaussian())
            case .linear: next = start + rng.gaussian() * 0.15 * widen * (high - low)
            }
            next = min(max(next, low), high)
            if let literal = accept(next) { return literal }
        }
        // Every draw landed on the current value (a knob pinned at a bound): step inwards.
        switch kind {
        case .int:
            let current = Int(start.rounded())
            return accept(Double(current + 1 <= Int(high.rounded(.down)) ? current + 1 : current - 1))
        case .float:
            return accept(start + (((low + high) / 2 > start ? high : low) - start) / 2)
        }
    }

    /// Whether `literal` (a near miss's value) is a value of this knob's type inside its range.
    func accepts(_ literal: String) -> Bool {
        guard let number = Double(literal), number >= low, number <= high else { return false }
        return kind == .float || Double(Int(number)) == number
    }

    /// The literal for `candidate` if it is a real change inside the range.
    private func accept(_ candidate: Double) -> String? {
        switch kind {
        case .int:
            let rounded = min(max(candidate.rounded(), low.rounded(.up)), high.rounded(.down))
            guard rounded != value.rounded(), let integer = Int(exactly: rounded) else { return nil }
            return String(integer)
        case .float:
            let exponent = literal.contains("e") || literal.contains("E")
            let text = Knob.format(candidate, exponentStyle: exponent, upper: literal.contains("E"))
            guard let parsed = Double(text), parsed != value, parsed >= low, parsed <= high else { return nil }
            return text
        }
    }

    /// `value` with at most 4 significant digits, always with a decimal point or an exponent so a
    /// float stays a float (`0.0632`, `1.0`, `6.32e-4`).
    static func format(_ value: Double, exponentStyle: Bool, upper: Bool = false) -> String {
        if value == 0 { return exponentStyle ? "0e0" : "0.0" }
        let sign = value < 0 ? "-" : ""
        let magnitude = abs(value)
        var exponent = Int(log10(magnitude).rounded(.down))
        var mantissa = (magnitude / pow(10, Double(exponent - 3))).rounded()
        if mantissa >= 10_000 {
            exponent += 1
            mantissa = (magnitude / pow(10, Double(exponent - 3))).rounded()
        } else if mantissa < 1000 {
            exponent -= 1
            mantissa = (magnitude / pow(10, Double(exponent - 3))).rounded()
        }
        let digits = Array(String(Int(mantissa)))  // four digits: value = digits × 10^(exponent - 3)
        func stripZeros(_ fraction: [Character]) -> String {
            var fraction = fraction
            while fraction.last == "0" { fraction.removeLast() }
            return String(fraction)
        }
        if exponentStyle {
            let fraction = stripZeros(Array(digits.dropFirst()))
            return sign + String(digits[0]) + (fraction.isEmpty ? "" : "." + fraction) + (upper ? "E" : "e")
                + String(exponent)
        }
        let pointAt = exponent + 1  // digits before the decimal point
        var integerPart: String
        var fraction: String
        if pointAt <= 0 {
            integerPart = "0"
            fraction = String(repeating: "0", count: -pointAt) + stripZeros(digits)
        } else if pointAt >= digits.count {
            integerPart = String(digits) + String(repeating: "0", count: pointAt - digits.count)
            fraction = ""
        } else {
            integerPart = String(digits[..<pointAt])
            fraction = stripZeros(Array(digits[pointAt...]))
        }
        if fraction.isEmpty { fraction = "0" }
        return sign + integerPart + "." + fraction
    }
}

extension String {
    func replacingCharacters(in range: Range<String.Index>, with replacement: String) -> String {
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}
