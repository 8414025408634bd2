import Foundation

/// What one change is about, read from its unified diff without a model: the research memory groups
/// trials by these (`ResearchMemory`).
///
/// For each changed file, each added or removed line that assigns something names a category:
/// `NAME = value` (Python, TOML, shell), `name: value` (YAML), `--flag value` / `--flag=value`
/// (command lines). A line with a `# mutate:` marker (`LEARNING_RATE = 0.1  # mutate: float
/// 0.01..0.5 log`, the built-in mutate agent's knobs) names its parameter and carries its range.
/// A hunk whose changed lines assign nothing is `file:function` when git's hunk header names the
/// enclosing function or class, else `file`.
public struct ChangeCategory: Sendable, Hashable, Comparable {
    /// The category's name: an assignment's name (`LEARNING_RATE`, `--lr`), `file:function` or `file`.
    public var name: String
    /// The value the change gives it (the added line's literal), nil when the change only removed it
    /// or the category is not an assignment.
    public var value: String?
    /// The value the change replaces (the removed line's literal), nil when there was none.
    public var oldValue: String?
    /// The range of a `# mutate:` parameter; nil for other categories.
    public var mutate: MutateRange?

    public init(name: String, value: String? = nil, oldValue: String? = nil, mutate: MutateRange? = nil) {
        self.name = name
        self.value = value
        self.oldValue = oldValue
        self.mutate = mutate
    }

    /// By name.
    public static func < (a: ChangeCategory, b: ChangeCategory) -> Bool { a.name < b.name }
}

/// The `int|float LO..HI [log|linear]` of a `# mutate:` marker.
public struct MutateRange: Sendable, Hashable {
    /// `int` (true) or `float`.
    public var isInteger: Bool
    /// The bounds `LO..HI`, inclusive.
    public var low: Double
    public var high: Double

    /// Every value of an integer range, when it has at most `limit` of them; nil for a float range
    /// (continuous: never enumerated) or a larger one.
    public func grid(limit: Int = 256) -> [String]? {
        guard isInteger, low.isFinite, high.isFinite else { return nil }
        let first = low.rounded(.up)
        let last = high.rounded(.down)
        guard first <= last, last - first < Double(limit) else { return nil }
        return stride(from: first, through: last, by: 1).map { String(Int($0)) }
    }
}

/// Reading categories out of a unified diff (see `ChangeCategory`).
public enum Categories {
    /// The categories of `patch`, one per name (the value of the last added line that names it),
    /// sorted by name. Empty for an empty patch. A name counts only where the hunk changed its value
    /// (a line reformatted around the same value does not). Binary hunks have no lines: they give `file`.
    public static func of(_ patch: String) -> [ChangeCategory] {
        var found: [String: ChangeCategory] = [:]
        var file = ""
        var hunkContext = ""
        var currentFunction = ""
        var removed: [String: (value: String, mutate: MutateRange?)] = [:]
        var added: [String: (value: String, mutate: MutateRange?)] = [:]
        var hunkChanged = false
        var fileHasHunk = false
        var inHeader = false

        func closeHunk() {
            var named = false
            for name in Set(removed.keys).union(added.keys) where removed[name]?.value != added[name]?.value {
                named = true
                var category = found[name] ?? ChangeCategory(name: name)
                if let new = added[name] { category.value = new.value }
                if category.oldValue == nil, let old = removed[name] { category.oldValue = old.value }
                // The range of the tree the change started from (the removed line's marker): the
                // agent's own new marker could narrow it, and so declare the parameter exhausted.
                category.mutate = category.mutate ?? removed[name]?.mutate ?? added[name]?.mutate
                found[name] = category
            }
            if hunkChanged && !named {
                let name = hunkContext.isEmpty ? file : file + ":" + hunkContext
                if found[name] == nil { found[name] = ChangeCategory(name: name) }
            }
            hunkChanged = false
            removed = [:]
            added = [:]
        }
        func closeFile() {
            closeHunk()
            if !file.isEmpty && !fileHasHunk && found[file] == nil { found[file] = ChangeCategory(name: file) }
        }

        // "\r\n" is one Character in Swift: split on both.
        for line in patch.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            if line.hasPrefix("diff --git ") {
                closeFile()
                // `diff --git a/x b/x`: the new side, replaced below by `+++ b/x` when there is one.
                file = line.range(of: " b/", options: .backwards).map { String(line[$0.upperBound...]) } ?? ""
                fileHasHunk = false
                inHeader = true
                continue
            }
            if inHeader {
                if line.hasPrefix("+++ ") {
                    let path = line.dropFirst(4)
                    if path != "/dev/null" { file = String(path.hasPrefix("b/") ? path.dropFirst(2) : path) }
                    continue
                }
                if line.hasPrefix("--- ") {
                    let path = line.dropFirst(4)
                    if path != "/dev/null", file.isEmpty {
                        file = String(path.hasPrefix("a/") ? path.dropFirst(2) : path)
                    }
                    continue
                }
                if !line.hasPrefix("@@") { continue }
            }
            if line.hasPrefix("@@") {
                closeHunk()
                inHeader = false
                fileHasHunk = true
                currentFunction = functionName(inHunkHeader: line)
                hunkContext = currentFunction
                continue
            }
            guard let sign = line.first, sign == "+" || sign == "-" || sign == " " else { continue }
            // A definition inside the hunk (`def main():` among the context lines) is where what
            // follows happens; the header names the one before the hunk started.
            if let name = definitionName(line.dropFirst()) { currentFunction = name }
            guard sign != " " else { continue }
            if !hunkChanged { hunkContext = currentFunction }
            hunkChanged = true
            for assignment in assignments(in: line.dropFirst()) {
                if sign == "+" {
                    added[assignment.name] = (assignment.value, assignment.mutate)
                } else if removed[assignment.name] == nil {
                    removed[assignment.name] = (assignment.value, assignment.mutate)
                }
            }
        }
        closeFile()
        return found.values.sorted()
    }

    /// The function or class a hunk header's context names: `fit` in `@@ -1,3 +1,3 @@ def fit(x):`;
    /// "" when the context is not a definition (git's default takes the last unindented line, often
    /// an `import`).
    static func functionName(inHunkHeader line: Substring) -> String {
        guard let close = line.dropFirst(2).range(of: "@@") else { return "" }
        return definitionName(line[close.upperBound...]) ?? ""
    }

    /// `fit` for a line that defines it (`def fit(x):`, `async def`, `class`, `func`, `fn`,
    /// `function`, ... after modifiers), nil for any other line.
    static func definitionName(_ line: Substring) -> String? {
        let words = line.split(whereSeparator: { !isIdentifier($0) })
        guard let first = line.first(where: { $0 != " " && $0 != "\t" }), isIdentifier(first) else { return nil }
        let modifiers: Set<Substring> = [
            "async", "static", "public", "private", "internal", "pub", "export",
            "final", "override", "mutating", "open", "fileprivate", "abstract",
        ]
        let definitions: Set<Substring> = [
            "def", "class", "func", "fn", "function", "fun", "struct", "impl",
            "enum", "extension", "protocol", "trait", "sub", "module", "interface",
        ]
        let rest = words.drop(while: { modifiers.contains($0) })
        guard let keyword = rest.first, definitions.contains(keyword), let name = rest.dropFirst().first else {
            return nil
        }
        return String(name.prefix(60))
    }

    private static func isIdentifier(_ c: Character) -> Bool { c == "_" || (c.isASCII && (c.isLetter || c.isNumber)) }

    /// The assignments on one line of code (without its diff sign): every `--flag value` or
    /// `--flag=value` on it (a flag without a value gets `on`), else its one `NAME = value`,
    /// `name: value`, `"name": value` or `self.name = value`.
    static func assignments(in line: Substring) -> [(name: String, value: String, mutate: MutateRange?)] {
        var code = line.drop(while: { $0 == " " || $0 == "\t" })
        var marker: MutateRange?
        if let hash = code.firstIndex(of: "#") {
            marker = mutateRange(code[code.index(after: hash)...])
            code = code[..<hash]
        }
        while code.last == " " || code.last == "\t" || code.last == "," || code.last == "\\" { code = code.dropLast() }
        guard !code.isEmpty else { return [] }

        let tokens = code.split(whereSeparator: { $0 == " " || $0 == "\t" })
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"',[]()")) }
        var flags: [(name: String, value: String, mutate: MutateRange?)] = []
        for (index, token) in tokens.enumerated() where token.hasPrefix("--") {
            let parts = token.split(separator: "=", maxSplits: 1).map(String.init)
            guard let flag = parts.first, flag.count > 2,
                flag.dropFirst(2).allSatisfy({ isIdentifier($0) || $0 == "-" })
            else { continue }
            if parts.count == 2 {
                flags.append((flag, String(parts[1].prefix(80)), marker))
            } else if index + 1 < tokens.count, !tokens[index + 1].hasPrefix("--"), !tokens[index + 1].isEmpty {
                flags.append((flag, String(tokens[index + 1].prefix(80)), marker))
            } else {
                flags.append((flag, "on", marker))
            }
        }
        if !flags.isEmpty { return flags }

        var name = code.prefix(while: { isIdentifier($0) || $0 == "." })
        var rest = code.dropFirst(name.count)
        if name.isEmpty, let quote = code.first, quote == "\"" || quote == "'" {
            let inner = code.dropFirst().prefix(while: { isIdentifier($0) || $0 == "." || $0 == "-" })
            guard !inner.isEmpty, code.dropFirst(inner.count + 1).first == quote else { return [] }
            name = inner
            rest = code.dropFirst(inner.count + 2)
        }
        guard let first = name.first, !first.isNumber, name.contains(where: isIdentifier) else { return [] }
        rest = rest.drop(while: { $0 == " " })
        if rest.first == ":" {
            // `name: value`, or a Python annotation `NAME: float = 0.1`.
            rest = rest.dropFirst()
            if let equals = rest.firstIndex(of: "="), !rest[..<equals].contains("(") {
                rest = rest[rest.index(after: equals)...]
            }
        } else if rest.first == "=", rest.dropFirst().first != "=" {
            rest = rest.dropFirst()
        } else if let op = ["+=", "-=", "*=", "/="].first(where: { rest.hasPrefix($0) }) {
            rest = rest.dropFirst(op.count)
        } else {
            return []
        }
        let value = rest.trimmingCharacters(in: .whitespaces)
        // `key:` alone is a YAML section (or `else:`), not a setting.
        guard !value.isEmpty else { return [] }
        let shortName = name.split(separator: ".").last.map(String.init) ?? String(name)
        return [(name.hasPrefix("self.") ? shortName : String(name), String(value.prefix(80)), marker)]
    }

    /// `mutate: float 0.01..0.5 log` (the text after `#`).
    static func mutateRange(_ comment: Substring) -> MutateRange? {
        let text = comment.drop(while: { $0 == " " || $0 == "\t" })
        guard text.hasPrefix("mutate:") else { return nil }
        let spec = text.dropFirst("mutate:".count).split(whereSeparator: \.isWhitespace)
        guard spec.count >= 2, spec[0] == "int" || spec[0] == "float", let dots = spec[1].range(of: ".."),
            let low = Double(spec[1][..<dots.lowerBound]), let high = Double(spec[1][dots.upperBound...])
        else { return nil }
        return MutateRange(isInteger: spec[0] == "int", low: low, high: high)
    }
}
