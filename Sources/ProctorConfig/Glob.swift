/// A path pattern from `proctor.toml` (`train.py`, `src/*.py`, `holdout/**`, `outputs/`), matched against
/// workspace-relative paths with `/` separators.
///
/// Every pattern is anchored at the workspace root: `train.py` matches `train.py` only, never `src/train.py`,
/// and `*.py` matches Python files at the root only.
/// - `*` matches any run of characters and `?` one character, both within one segment (never `/`);
/// - `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) match one character of a class; `\` quotes the next character;
/// - `**` as a whole segment matches zero or more segments (`a/**/b` matches `a/b` and `a/x/y/b`);
/// - a trailing `/` (`outputs/`) means that directory and everything beneath it;
/// - a leading `./` is ignored; a path with a `..` segment never matches.
///
/// Matching is O(pattern × path) in the worst case: no exponential backtracking.
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    /// The pattern as written.
    public let pattern: String
    private let segments: [Segment]

    private enum Segment: Sendable, Hashable {
        /// `**`: zero or more whole segments.
        case anySegments
        case tokens([Token])
    }

    private enum Token: Sendable, Hashable {
        case literal(Unicode.Scalar)
        case anyCharacter
        case anyRun
        case characterClass(ranges: [ClosedRange<UInt32>], negated: Bool)
    }

    /// Compiles `pattern`; every string is a valid pattern (an unclosed `[` is a literal `[`).
    public init(_ pattern: String) {
        self.pattern = pattern
        var text = Substring(pattern)
        while text.hasPrefix("./") { text = text.dropFirst(2) }
        guard !text.isEmpty else {
            segments = []
            return
        }
        let isDirectory = text.hasSuffix("/")
        var parts = text.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        if isDirectory { parts.append("**") }
        var compiled: [Segment] = []
        for part in parts {
            let segment: Segment = part == "**" ? .anySegments : .tokens(Glob.tokens(of: part))
            // Consecutive `**` are one `**`: keeps matching linear and the meaning is the same.
            if segment == .anySegments, compiled.last == .anySegments { continue }
            compiled.append(segment)
        }
        segments = compiled
    }

    /// Whether `relativePath` (workspace-relative, `/`-separated; a leading `./` or trailing `/` is ignored)
    /// matches the pattern.
    public func matches(_ relativePath: String) -> Bool {
        guard !segments.isEmpty else { return false }
        var text = Substring(relativePath)
        while text.hasPrefix("./") { text = text.dropFirst(2) }
        let parts = text.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        // A `..` segment could lead anywhere: no lexical pattern can vouch for it.
        guard !parts.isEmpty, !parts.contains("..") else { return false }
        return Glob.matchSequence(segments, parts.map { Array($0.unicodeScalars) }) { segment, part in
            if case .tokens(let tokens) = segment { return Glob.matchSegment(tokens, part) }
            return false
        } isStar: {
            $0 == .anySegments
        }
    }

    /// Whether the pattern could match a path strictly beneath the directory `directory`
    /// (workspace-relative): conservative, true when in doubt. `**/*.py` and `data/**` could match
    /// beneath `data`; `*.py` and `src/*.py` could not.
    public func couldMatchBeneath(_ directory: String) -> Bool {
        let parts = directory.split(separator: "/").filter { $0 != "." }
        for (index, part) in parts.enumerated() {
            guard index < segments.count else { return false }
            switch segments[index] {
            case .anySegments: return true
            case .tokens(let tokens):
                if !Glob.matchSegment(tokens, Array(part.unicodeScalars)) { return false }
            }
        }
        return segments.count > parts.count
    }

    /// The leading whole segments that contain no wildcard, joined with `/` (`holdout/**` → `holdout`,
    /// `src/*.py` → `src`, `train.py` → `train.py`, `*.py` → ``): the deepest directory or file that every
    /// match lies in or is.
    public var literalPrefix: String {
        var literal: [String] = []
        for segment in segments {
            guard case .tokens(let tokens) = segment else { break }
            var name = String.UnicodeScalarView()
            for token in tokens {
                guard case .literal(let scalar) = token else { return literal.joined(separator: "/") }
                name.append(scalar)
            }
            literal.append(String(name))
        }
        return literal.joined(separator: "/")
    }

    /// Whether the pattern contains no wildcard at all, so it names exactly one path (`literalPrefix`).
    public var isLiteral: Bool {
        segments.allSatisfy { segment in
            guard case .tokens(let tokens) = segment else { return false }
            return tokens.allSatisfy { if case .literal = $0 { return true } else { return false } }
        }
    }

    public var description: String { pattern }

    // MARK: - Compilation and matching

    private static func tokens(of segment: Substring) -> [Token] {
        let scalars = Array(segment.unicodeScalars)
        var tokens: [Token] = []
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar {
            case "*":
                if tokens.last != .anyRun { tokens.append(.anyRun) }
                index += 1
            case "?":
                tokens.append(.anyCharacter)
                index += 1
            case "\\" where index + 1 < scalars.count:
                tokens.append(.literal(scalars[index + 1]))
                index += 2
            case "[":
                if let (token, next) = characterClass(scalars, from: index) {
                    tokens.append(token)
                    index = next
                } else {
                    tokens.append(.literal(scalar))
                    index += 1
                }
            default:
                tokens.append(.literal(scalar))
                index += 1
            }
        }
        return tokens
    }

    /// Parses `[...]` starting at `start` (the `[`); nil when it is not closed.
    private static func characterClass(_ scalars: [Unicode.Scalar], from start: Int) -> (Token, Int)? {
        var index = start + 1
        var negated = false
        if index < scalars.count, scalars[index] == "!" || scalars[index] == "^" {
            negated = true
            index += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while index < scalars.count {
            var low = scalars[index]
            // A `]` right after `[` or `[!` is a member, as in fnmatch(3).
            if low == "]", !first { return (.characterClass(ranges: ranges, negated: negated), index + 1) }
            first = false
            if low == "\\", index + 1 < scalars.count {
                index += 1
                low = scalars[index]
            }
            if index + 2 < scalars.count, scalars[index + 1] == "-", scalars[index + 2] != "]" {
                var high = scalars[index + 2]
                var end = index + 3
                if high == "\\", index + 3 < scalars.count {
                    high = scalars[index + 3]
                    end += 1
                }
                if low.value <= high.value { ranges.append(low.value...high.value) }
                index = end
            } else {
                ranges.append(low.value...low.value)
                index += 1
            }
        }
        return nil
    }

    private static func matchSegment(_ tokens: [Token], _ name: [Unicode.Scalar]) -> Bool {
        matchSequence(tokens, name) { token, scalar in
            switch token {
            case .literal(let literal): return literal == scalar
            case .anyCharacter: return true
            case .anyRun: return false
            case .characterClass(let ranges, let negated):
                return ranges.contains { $0.contains(scalar.value) } != negated
            }
        } isStar: {
            $0 == .anyRun
        }
    }

    /// Wildcard matching where each non-star element consumes exactly one item and a star consumes any run.
    /// Greedy with one resume point: on a mismatch, retry from the most recent star consuming one more item.
    /// Forgetting earlier stars is sound because every other element has a fixed width.
    private static func matchSequence<P, T>(
        _ pattern: [P], _ items: [T], matchOne: (P, T) -> Bool, isStar: (P) -> Bool
    ) -> Bool {
        var p = 0
        var i = 0
        var starP = -1
        var starI = 0
        while i < items.count {
            if p < pattern.count, isStar(pattern[p]) {
                starP = p
                starI = i
                p += 1
            } else if p < pattern.count, matchOne(pattern[p], items[i]) {
                p += 1
                i += 1
            } else if starP >= 0 {
                starI += 1
                i = starI
                p = starP + 1
            } else {
                return false
            }
        }
        while p < pattern.count, isStar(pattern[p]) { p += 1 }
        return p == pattern.count
    }
}
