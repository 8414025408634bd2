#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

import ProctorConfig

/// The `# mutate:` marker grammar, shared by the `mutate` and `search` agents. A marker ends a
/// `NAME = VALUE` line of an editable file and says what values VALUE may take:
///
///     LEARNING_RATE = 0.1  # mutate: float 0.005..0.5 log
///     NUM_LEAVES = 15  # mutate: int 4..128 log
///     FEATURE_FRACTION = 1.0  # mutate: float 0.3..1.0 linear
///     BOOSTING = "gbdt"  # mutate: choice gbdt|dart|goss
///     USE_BAGGING = True  # mutate: bool
///
/// `int`/`float` take a range and a scale (`linear` when omitted). `choice` lists its options,
/// separated by `|`, without spaces or quotes; the value is one of them, bare or quoted, and a
/// rewrite keeps its quotes. `bool` values are `True`/`False` or `true`/`false`, and keep that
/// spelling. A comment line that only mentions `mutate:`, or a line of a string in triple quotes
/// (`MarkedFiles.holdTripleQuotedText`), is not a marker; any other line with a marker that cannot
/// be read (a number outside its own range included) is an error naming the file and line.
struct Knob {
    enum Kind: String { case int, float, choice, bool }
    enum Scale: String { case log, linear }

    let path: String
    let lineIndex: Int
    let line: String
    let name: String
    let literal: String
    let valueRange: Range<String.Index>
    /// The number, or for `choice`/`bool` the index of the current option.
    let value: Double
    let kind: Kind
    /// The range; for `choice`/`bool`, 0 and the last option's index.
    let low: Double
    let high: Double
    let scale: Scale
    /// `choice` and `bool`: the values it may take, as written (without quotes).
    let options: [String]
    /// The quote a `choice` value is written in (`"`, `'` or none).
    let quote: String

    /// How descriptions, the ledger and the memory name this knob: one word, unique among the
    /// marked knobs (set by `MarkedFiles`, which sees them all).
    var label: String

    var isMovable: Bool {
        switch kind {
        case .float: return high > low
        case .int: return high.rounded(.down) > low.rounded(.up)
        case .choice, .bool: return options.count > 1
        }
    }

    /// Nil for a line without a marker; throws `failed` for a marker it cannot read.
    init?(path: String, lineIndex: Int, line: String) throws(AgentError) {
        // The marker: the first `#` that opens `mutate:` (one inside a quoted value comes earlier).
        // Spaces and tabs alike, wherever Python allows them (`#\tmutate:` was no marker: its knob
        // was left out without a word).
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let hash = line.indices.first(where: {
            line[$0] == "#" && line[line.index(after: $0)...].drop(while: blank).hasPrefix("mutate:")
        }) else { return nil }
        let comment = line[line.index(after: hash)...].drop(while: blank)
        func bad(_ why: String) -> AgentError {
            // Each part cut: a marker of 200,000 options made a 3 MB error, twice over.
            func cut(_ text: String) -> String { text.unicodeScalars.count > 300 ? text.prefix(scalars: 300) + "..." : text }
            return .failed(reason: "\(path):\(lineIndex + 1): cannot read the mutate marker (\(cut(why))): \(cut(line.trimmed()))")
        }

        // NAME = VALUE before the comment.
        let head = line[..<hash]
        // A comment line that only talks about the syntax, or a marker commented out, is not a knob;
        // a marker after another comment would be ignored by the program too: an error.
        if let earlier = Knob.commentStart(head) {
            if head[..<earlier].allSatisfy(\.isWhitespace) { return nil }
            throw bad("`mutate:` must open the line's first comment")
        }
        if head.allSatisfy(\.isWhitespace) { return nil }
        let afterIndent = head.drop(while: blank)
        let name = afterIndent.prefix(while: { $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) })
        guard let first = name.first, !first.isNumber else { throw bad("expected NAME = VALUE") }
        var rest = afterIndent.dropFirst(name.count).drop(while: blank)
        guard rest.first == "=" else { throw bad("expected NAME = VALUE") }
        rest = rest.dropFirst().drop(while: blank)
        let literal = rest.prefix(while: { !$0.isWhitespace })
        guard rest.dropFirst(literal.count).allSatisfy(\.isWhitespace), !literal.isEmpty else {
            throw bad("expected one value after `=`")
        }

        // mutate: TYPE ...
        let spec = comment.dropFirst("mutate:".count).split(whereSeparator: \.isWhitespace)
        guard let typeWord = spec.first, let kind = Kind(rawValue: String(typeWord)) else {
            throw bad("expected `mutate: int|float LO..HI log|linear`, `mutate: choice A|B|...` or `mutate: bool`")
        }
        var options: [String] = []
        var quote = ""
        var value = 0.0
        var low = 0.0
        var high = 0.0
        var scale = Scale.linear
        switch kind {
        case .int, .float:
            guard spec.count == 2 || spec.count == 3 else { throw bad("expected `mutate: \(kind) LO..HI log|linear`") }
            guard let number = Double(String(literal)), number.isFinite else { throw bad("the value is not a number") }
            guard let dots = spec[1].firstRange(of: ".."), let lo = Double(String(spec[1][..<dots.lowerBound])),
                let hi = Double(String(spec[1][dots.upperBound...])), lo.isFinite, hi.isFinite, lo <= hi
            else { throw bad("expected a range LO..HI with LO <= HI") }
            if let tiny = [literal, spec[1][..<dots.lowerBound], spec[1][dots.upperBound...]].first(where: Knob.underflows) {
                throw bad("\(tiny) is too small to be told from 0 (non-zero numbers are at least 1e-300 in magnitude)")
            }
            guard let parsedScale = spec.count == 3 ? Scale(rawValue: String(spec[2])) : .linear else {
                throw bad("the scale is `log` or `linear`")
            }
            if parsedScale == .log && lo <= 0 { throw bad("a log range must be positive") }
            if kind == .int && (literal.contains(".") || literal.lowercased().contains("e")) {
                throw bad("an int knob needs an integer literal")
            }
            // `int 20.5..800`: which ints are in it was a guess (20 or 21), and mutate and search guessed differently.
            if kind == .int, let bound = [spec[1][..<dots.lowerBound], spec[1][dots.upperBound...]].first(where: { Double(String($0)).map { $0 != $0.rounded() } ?? false }) {
                throw bad("an int range needs integer bounds, got \(bound)")
            }
            // Where every value of the range is exact and formats: an int beyond 2^53 is not one
            // integer as a Double, and a float near the ends of its scale has no four-digit literal.
            // Read as integers, not as Doubles: 9007199254740993 is 2^53 as a Double, and passed.
            if kind == .int, let outside = [literal, spec[1][..<dots.lowerBound], spec[1][dots.upperBound...]].first(where: { text in
                Int(text).map { $0.magnitude > UInt(Knob.largestInt) } ?? (Double(String(text)).map { abs($0) > Knob.largestInt } ?? true)
            }) {
                throw bad("\(outside) is beyond the ints a knob can take (at most 2^53 = 9007199254740992 either way)")
            }
            if kind == .float, let outside = [number, lo, hi].first(where: { $0 != 0 && !(Knob.floatMagnitudes ~= abs($0)) }) {
                throw bad("\(outside) is outside the floats a knob can take (0, or 1e-300 to 1e300 either way)")
            }
            // The search maps the value into its range and could never propose it again; mutate
            // would only ever move it inside: a value outside is a marker that says two things.
            guard number >= lo, number <= hi else { throw bad("the value \(literal) is outside the range \(spec[1])") }
            (value, low, high, scale) = (number, lo, hi, parsedScale)
        case .choice:
            guard spec.count == 2 else { throw bad("expected `mutate: choice A|B|...` (options without spaces)") }
            options = spec[1].split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard options.count >= 2, !options.contains(where: \.isEmpty), Set(options).count == options.count else {
                throw bad("a choice lists two or more different options, separated by `|`")
            }
            guard !options.contains(where: { $0.contains("\"") || $0.contains("'") }) else {
                throw bad("choice options are written without quotes")
            }
            // Written bare, `a#b` would be `a` and a comment to the program.
            guard !options.contains(where: { $0.contains("#") }) else { throw bad("choice options hold no `#`") }
            var bare = Substring(literal)
            if let open = literal.first, open == "\"" || open == "'" {
                guard literal.count >= 2, literal.last == open else { throw bad("the value's quotes do not close") }
                quote = String(open)
                bare = literal.dropFirst().dropLast()
            }
            guard let index = options.firstIndex(of: String(bare)) else {
                throw bad("the value \(literal) is not one of the options \(options.joined(separator: "|"))")
            }
            (value, high) = (Double(index), Double(options.count - 1))
        case .bool:
            guard spec.count == 1 else { throw bad("expected `mutate: bool` with nothing after it") }
            switch literal {
            case "False", "True": options = ["False", "True"]
            case "false", "true": options = ["false", "true"]
            default: throw bad("a bool value is True/False or true/false")
            }
            (value, high) = (literal.first == "T" || literal.first == "t" ? 1 : 0, 1)
        }

        self.path = path
        self.lineIndex = lineIndex
        self.line = line
        self.name = String(name)
        self.label = String(name)
        self.literal = String(literal)
        self.valueRange = literal.startIndex..<literal.endIndex
        self.value = value
        self.kind = kind
        self.low = low
        self.high = high
        self.scale = scale
        self.options = options
        self.quote = quote
    }

    /// Where a comment starts in `code` (the first `#` outside quotes); nil for none.
    static func commentStart(_ code: Substring) -> Substring.Index? {
        var quote: Character?
        for index in code.indices {
            let character = code[index]
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "#" {
                return index
            }
        }
        return nil
    }

    /// Whether `number` is written non-zero but reads as 0 (`1e-400`): a bound that is not what it says.
    static func underflows(_ number: Substring) -> Bool {
        Double(String(number)) == 0 && number.prefix(while: { $0 != "e" && $0 != "E" }).contains(where: { ("1"..."9").contains($0) })
    }

    /// The largest int magnitude a knob takes: every integer up to it is exact as a Double.
    static let largestInt = 9_007_199_254_740_992.0
    /// The float magnitudes a knob takes (and 0): `format` needs 10^(exponent - 3) to be a normal number.
    static let floatMagnitudes = 1e-300...1e300

    /// A new literal, different from the current value and inside the range; nil if none was found.
    func perturbed(_ rng: inout SplitMix64, widen: Double = 1) -> String? {
        if kind == .choice || kind == .bool {
            guard options.count > 1 else { return nil }
            let current = Int(value)
            let pick = rng.below(options.count - 1)
            return written(options[pick >= current ? pick + 1 : pick])
        }
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
        default:
            return accept(start + (((low + high) / 2 > start ? high : low) - start) / 2)
        }
    }

    /// Whether `literal` (a near miss's value) is a value of this knob's type inside its range.
    func accepts(_ literal: String) -> Bool {
        switch kind {
        case .choice, .bool: return options.map(written).contains(literal)
        case .int, .float:
            guard let number = Double(literal), number >= low, number <= high else { return false }
            return kind == .float || Double(Int(number)) == number
        }
    }

    /// What `literal` (one of this knob's values) stands for, whatever its spelling: the number
    /// (`+3` is `3`, `0.50` is `0.5`, `1e-4` is `0.0001`) or the option's index. Two literals with
    /// the same identity are the same configuration, which the search never measures twice.
    func identity(of literal: String) -> String {
        switch kind {
        case .choice, .bool:
            let bare = literal.count >= 2 && (literal.first == "\"" || literal.first == "'") && literal.last == literal.first
                ? String(literal.dropFirst().dropLast()) : literal
            return options.firstIndex(of: bare).map { "#\($0)" } ?? literal
        case .int, .float:
            guard let number = Double(literal) else { return literal }
            return number == 0 ? "0" : "\(number)"
        }
    }

    /// How many values the knob takes, for `int`, `choice` and `bool`; nil for `float` (as good as unbounded).
    var valueCount: Int? {
        switch kind {
        case .choice, .bool: return options.count
        case .int: return Int(high.rounded(.down) - low.rounded(.up)) + 1
        case .float: return nil
        }
    }

    /// Value `index` (from 0) of `valueCount`, as the file would write it.
    func literal(ofValue index: Int) -> String {
        kind == .int ? String(Int(low.rounded(.up)) + index) : written(options[index])
    }

    /// An option as the file writes it (in the current value's quotes).
    func written(_ option: String) -> String { quote + option + quote }

    /// The literal for the value at `unit` (0...1 across the range, on the knob's scale; for
    /// `choice`/`bool` the option whose equal share of 0...1 holds it), whether or not it is new.
    func literal(atUnit unit: Double) -> String {
        let u = min(max(unit, 0), 1)
        switch kind {
        case .choice, .bool:
            return written(options[min(Int(u * Double(options.count)), options.count - 1)])
        case .int:
            let raw = scale == .log ? exp(log(low) + u * (log(high) - log(low))) : low + u * (high - low)
            return String(Int(min(max(raw.rounded(), low.rounded(.up)), high.rounded(.down))))
        case .float:
            return floatLiteral(scale == .log ? exp(log(low) + u * (log(high) - log(low))) : low + u * (high - low))
        }
    }

    /// `raw`, clamped into the range, in the literal's own style with four significant digits, or
    /// more where four cannot write a value inside the range (next to a bound such as `97.30659`,
    /// four digits round to 97.31, which the next read of the marker would refuse): to the nearest,
    /// else rounded towards the inside. A range no fifteen digits can write a value inside of
    /// gets the current literal (inside, by the marker's own check). A number too small for a knob
    /// (under 1e-300, as in a range that ends there) is 0, which such a range holds.
    private func floatLiteral(_ raw: Double) -> String {
        let clamped = min(max(raw, low), high)
        let x = abs(clamped) < Knob.floatMagnitudes.lowerBound ? 0 : clamped
        let exponent = literal.contains("e") || literal.contains("E"), upper = literal.contains("E")
        for digits in 4...15 {
            let nearest = Knob.format(x, exponentStyle: exponent, upper: upper, digits: digits)
            guard let parsed = Double(nearest) else { continue }
            if parsed >= low && parsed <= high { return nearest }
            // Past the high bound: a smaller number (a positive one rounded towards zero); past the low, a larger.
            let rule: FloatingPointRoundingRule = (parsed > high) == (x > 0) ? .towardZero : .awayFromZero
            let inward = Knob.format(x, exponentStyle: exponent, upper: upper, digits: digits, rounding: rule)
            if let parsed = Double(inward), parsed >= low && parsed <= high { return inward }
        }
        return literal
    }

    /// Where `literal` (one of this knob's values) lies in 0...1, the inverse of `literal(atUnit:)`
    /// (the middle of an option's share); nil when it is not a value of this knob.
    func unit(of literal: String) -> Double? {
        switch kind {
        case .choice, .bool:
            guard let index = options.map(written).firstIndex(of: literal) else { return nil }
            return (Double(index) + 0.5) / Double(options.count)
        case .int, .float:
            guard let number = Double(literal), number.isFinite else { return nil }
            guard high > low else { return 0.5 }
            if scale == .log {
                guard number > 0 else { return 0 }
                return min(max((log(number) - log(low)) / (log(high) - log(low)), 0), 1)
            }
            return min(max((number - low) / (high - low), 0), 1)
        }
    }

    /// The literal for `candidate` if it is a real change inside the range.
    private func accept(_ candidate: Double) -> String? {
        switch kind {
        case .int:
            let rounded = min(max(candidate.rounded(), low.rounded(.up)), high.rounded(.down))
            guard rounded != value.rounded(), let integer = Int(exactly: rounded) else { return nil }
            return String(integer)
        case .float:
            let text = floatLiteral(candidate)
            guard let parsed = Double(text), parsed != value, parsed >= low, parsed <= high else { return nil }
            return text
        case .choice, .bool:
            return nil
        }
    }

    /// `value` with at most `digits` significant digits (4 unless a bound needs more), its magnitude
    /// rounded by `rule`, always with a decimal point or an exponent so a float stays a float
    /// (`0.0632`, `1.0`, `6.32e-4`).
    static func format(
        _ value: Double, exponentStyle: Bool, upper: Bool = false, digits count: Int = 4,
        rounding rule: FloatingPointRoundingRule = .toNearestOrAwayFromZero
    ) -> String {
        if value == 0 { return exponentStyle ? "0e0" : "0.0" }
        let sign = value < 0 ? "-" : ""
        let magnitude = abs(value)
        var exponent = Int(log10(magnitude).rounded(.down))
        func mantissa() -> Double { (magnitude / pow(10, Double(exponent - count + 1))).rounded(rule) }
        var scaled = mantissa()
        if scaled >= pow(10, Double(count)) {
            exponent += 1
            scaled = mantissa()
        } else if scaled < pow(10, Double(count - 1)) {
            exponent -= 1
            scaled = mantissa()
        }
        let digits = Array(String(Int(scaled)))  // `count` digits: value = digits × 10^(exponent - count + 1)
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

/// The editable files' lines and the knobs marked in them; changes are applied line by line so
/// only the values' characters change and the rest of each file stays byte-identical.
struct MarkedFiles {
    private(set) var knobs: [Knob] = []
    private var lines: [String: [String]] = [:]
    private var changed: Set<String> = []

    /// Reads every editable file (sorted by path) and its markers; a malformed marker throws.
    init(_ context: AgentContext, _ files: WorkspaceFiles) throws {
        for path in context.editableFiles.keys.sorted() {
            guard let bytes = try files.contents(of: path) else { continue }
            guard let text = String(validating: bytes, as: UTF8.self) else { continue }
            let split = text.linesSplitAtLF()
            lines[path] = split
            let inText = MarkedFiles.holdTripleQuotedText(split)
            for (number, line) in split.enumerated() where !inText[number] {
                if let knob = try Knob(path: path, lineIndex: number, line: line) { knobs.append(knob) }
            }
        }
        knobs = MarkedFiles.label(knobs)
    }

    /// For each line, whether it holds text of a string in triple quotes (a docstring): a marker
    /// there is text the program never runs (a docstring showing the grammar), not a knob to move
    /// or an error. A marked line never holds one (its value is one token, and options have no
    /// quotes). Strings in single quotes end on their line, and a `#` outside quotes ends it.
    static func holdTripleQuotedText(_ lines: [String]) -> [Bool] {
        var open: [Character]?  // the triple quote a string is open in
        return lines.map { line in
            var holds = open != nil
            let characters = Array(line)
            var index = 0
            func at(_ quote: [Character]) -> Bool {
                index + quote.count <= characters.count && Array(characters[index..<index + quote.count]) == quote
            }
            while index < characters.count {
                let character = characters[index]
                if let quote = open {
                    if character == "\\" { index += 2; continue }
                    if at(quote) { open = nil; index += 3; continue }
                    index += 1
                } else if character == "#" {
                    break
                } else if character == "\"" || character == "'" {
                    let triple = [Character](repeating: character, count: 3)
                    if at(triple) { (open, holds) = (triple, true); index += 3; continue }
                    // A string on one line: skip to its closing quote (an escaped one does not close it).
                    index += 1
                    while index < characters.count && characters[index] != character {
                        index += characters[index] == "\\" ? 2 : 1
                    }
                    index += 1
                } else {
                    index += 1
                }
            }
            return holds
        }
    }

    /// The warning a run starts with when no knob can move (every proposal will fail); none otherwise.
    func nothingToMove(_ context: AgentContext) -> [String] {
        do { _ = try movable(context) } catch .failed(let reason) { return [reason + ": every proposal will fail"] } catch {}
        return []
    }

    /// The knobs with more than one value; throws when there are none.
    func movable(_ context: AgentContext) throws(AgentError) -> [Knob] {
        let movable = knobs.filter(\.isMovable)
        guard movable.isEmpty else { return movable }
        throw .failed(reason: knobs.isEmpty
            ? "no `# mutate:` markers in the editable files (\(context.editableFiles.keys.sorted().joined(separator: ", ")))"
            : "every `# mutate:` range holds a single value: nothing to change")
    }

    /// Labels each knob `NAME`; `path:NAME` where another file marks the same name, and
    /// `path:LINE:NAME` where its own file does (as `if`/`else` branches may). A description lists
    /// `LABEL=VALUE` words that the `search` agent and the memory read back, so the path is
    /// percent-encoded where it holds a space, `=`, `%`, a control or a leading `[`: two knobs
    /// that shared a label, or a label that split in two, would mix up their values on `--resume`.
    static func label(_ knobs: [Knob]) -> [Knob] {
        let names = Dictionary(grouping: knobs, by: \.name).mapValues(\.count)
        let inFile = Dictionary(grouping: knobs, by: { [$0.path, $0.name] }).mapValues(\.count)
        return knobs.map { knob in
            var labelled = knob
            let path = MarkedFiles.oneWord(knob.path)
            if inFile[[knob.path, knob.name], default: 0] > 1 {
                labelled.label = "\(path):\(knob.lineIndex + 1):\(knob.name)"
            } else if names[knob.name, default: 0] > 1 {
                labelled.label = "\(path):\(knob.name)"
            }
            return labelled
        }
    }

    /// `path` with what would end, split or be rewritten in a `LABEL=VALUE` word (whitespace,
    /// controls, `=`, `%`, a leading `[`) percent-encoded, byte by byte.
    static func oneWord(_ path: String) -> String {
        var out = ""
        for scalar in path.unicodeScalars {
            let encode = scalar.properties.isWhitespace || scalar.rewritesDisplay || scalar == "=" || scalar == "%"
                || (out.isEmpty && scalar == "[")
            guard encode else {
                out.unicodeScalars.append(scalar)
                continue
            }
            for byte in String(scalar).utf8 {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// Sets `knob`'s value to `literal` (the knob as read, not yet changed).
    mutating func set(_ knob: Knob, to literal: String) {
        lines[knob.path]?[knob.lineIndex] = knob.line.replacingCharacters(in: knob.valueRange, with: literal)
        changed.insert(knob.path)
    }

    /// Writes the files that `set` changed.
    func write(_ files: WorkspaceFiles) throws {
        for path in changed.sorted() {
            guard let text = lines[path] else { continue }
            try files.replace(path, with: Array(text.joined(separator: "\n").utf8))
        }
    }
}

extension String {
    func replacingCharacters(in range: Range<String.Index>, with replacement: String) -> String {
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}

/// An agent that moves the `# mutate:` knobs (`mutate`, `search`).
public protocol MarkerAgent: Agent {}

extension MarkerAgent {
    /// The markers, before the run starts: an unreadable one is the user's to fix (exit 125).
    public func check(_ context: AgentContext) throws -> [String] {
        try MarkedFiles(context, WorkspaceFiles(context)).nothingToMove(context)
    }
}
