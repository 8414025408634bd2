import ProctorConfig

/// One file's part of a unified diff, and a strict applier for it.
///
/// Strict where it matters for safety and meaning: every context and removed line must equal
/// the file's line exactly (no whitespace or fuzz tolerance), renames, deletions, mode changes
/// and binary patches are refused. Lenient where models are commonly sloppy and nothing is at
/// stake: the line counts in `@@` headers are not trusted (a hunk ends at the next header), a
/// hunk whose start line is off is placed at the nearest position where its old lines match
/// exactly, and a blank line inside a hunk is read as a blank context line.
struct FilePatch: Equatable {
    /// The path on the `---` side, nil for `/dev/null` (a new file).
    var oldPath: String?
    /// The path on the `+++` side, nil for `/dev/null` (a deletion, which is refused).
    var newPath: String?
    var hunks: [Hunk]

    struct Hunk: Equatable {
        enum Line: Equatable {
            case context(String)
            case remove(String)
            case add(String)
        }

        /// 1-based start line on the old side from the `@@` header, nil when the header has none.
        var oldStart: Int?
        var lines: [Line]
        /// A `\ No newline at end of file` marker followed a line on the new side.
        var newSideLacksFinalNewline = false

        var oldLines: [String] {
            lines.compactMap {
                switch $0 {
                case .context(let text), .remove(let text): return text
                case .add: return nil
                }
            }
        }

        var newLines: [String] {
            lines.compactMap {
                switch $0 {
                case .context(let text), .add(let text): return text
                case .remove: return nil
                }
            }
        }
    }

    /// The path this patch writes.
    var target: String? { newPath ?? oldPath }

    /// Parses every file section of a diff block (the lines between the fences).
    static func parseAll(_ lines: [String]) throws(AgentError) -> [FilePatch] {
        var patches: [FilePatch] = []
        var index = 0
        func malformed(_ why: String) -> AgentError {
            AgentError.rejected(reason: "malformed diff: \(why)", paths: [])
        }
        while index < lines.count {
            let line = lines[index]
            if line.hasPrefix("--- "), index + 1 < lines.count, lines[index + 1].hasPrefix("+++ ") {
                let oldPath = try path(from: line, prefix: "a/")
                let newPath = try path(from: lines[index + 1], prefix: "b/")
                if newPath == nil {
                    throw AgentError.rejected(
                        reason: "deleting files is not allowed: \(oldPath ?? "/dev/null")",
                        paths: oldPath.map { [$0] } ?? [])
                }
                if let oldPath, let newPath, oldPath != newPath {
                    throw AgentError.rejected(
                        reason: "renaming files is not allowed: \(oldPath) -> \(newPath)", paths: [oldPath, newPath])
                }
                index += 2
                var patch = FilePatch(oldPath: oldPath, newPath: newPath, hunks: [])
                while index < lines.count, lines[index].hasPrefix("@@") {
                    var hunk = Hunk(oldStart: try oldStart(lines[index]), lines: [])
                    index += 1
                    var trailingBlanks = 0
                    while index < lines.count {
                        let body = lines[index]
                        if body.hasPrefix("@@") || body.hasPrefix("diff --git ") { break }
                        if body.hasPrefix("--- "), index + 1 < lines.count, lines[index + 1].hasPrefix("+++ ") { break }
                        if body.isEmpty {
                            hunk.lines.append(.context(""))
                            trailingBlanks += 1
                        } else {
                            trailingBlanks = 0
                            switch body.first {
                            case " ": hunk.lines.append(.context(String(body.dropFirst())))
                            case "-": hunk.lines.append(.remove(String(body.dropFirst())))
                            case "+": hunk.lines.append(.add(String(body.dropFirst())))
                            case "\\":
                                switch hunk.lines.last {
                                case .add, .context: hunk.newSideLacksFinalNewline = true
                                default: break
                                }
                            default:
                                throw malformed(
                                    "unexpected line in a hunk of \(patch.target ?? "?"): \(body.prefix(80))")
                            }
                        }
                        index += 1
                    }
                    // Blank lines after the last real hunk line separate sections; they are not context.
                    hunk.lines.removeLast(trailingBlanks)
                    if !hunk.lines.isEmpty { patch.hunks.append(hunk) }
                }
                guard !patch.hunks.isEmpty else { throw malformed("no hunks for \(patch.target ?? "?")") }
                patches.append(patch)
            } else if line.hasPrefix("diff --git ") || line.hasPrefix("index ") || line.hasPrefix("new file mode ")
                || line.trimmed().isEmpty
            {
                index += 1
            } else if line.hasPrefix("deleted file mode") {
                throw AgentError.rejected(reason: "deleting files is not allowed", paths: [])
            } else if line.hasPrefix("old mode") || line.hasPrefix("new mode") {
                throw AgentError.rejected(reason: "changing file modes is not allowed", paths: [])
            } else if line.hasPrefix("rename ") || line.hasPrefix("copy ") || line.hasPrefix("similarity index")
                || line.hasPrefix("dissimilarity index")
            {
                throw AgentError.rejected(reason: "renaming or copying files is not allowed", paths: [])
            } else if line.hasPrefix("Binary files") || line.hasPrefix("GIT binary patch") {
                throw AgentError.rejected(reason: "binary patches are not allowed", paths: [])
            } else if line.hasPrefix("@@") {
                throw malformed("a hunk without --- and +++ lines")
            } else {
                throw malformed("unexpected line: \(line.prefix(80))")
            }
        }
        guard !patches.isEmpty else { throw malformed("the diff block holds no file") }
        return patches
    }

    /// `--- a/train.py\t2024-...` → `train.py`; `/dev/null` → nil.
    private static func path(from header: String, prefix: String) throws(AgentError) -> String? {
        var text = String(header.dropFirst(4))
        if let tab = text.firstIndex(of: "\t") { text = String(text[..<tab]) }
        text = text.trimmed(" ")
        if text == "/dev/null" { return nil }
        if text.hasPrefix("\"") {
            throw AgentError.rejected(reason: "quoted paths are not supported in diffs: \(text)", paths: [text])
        }
        if text.hasPrefix(prefix) { text = String(text.dropFirst(prefix.count)) }
        guard !text.isEmpty else { throw AgentError.rejected(reason: "malformed diff: empty path", paths: []) }
        return text
    }

    /// `@@ -12,5 +12,6 @@ def main():` → 12; `@@ @@` (models sometimes omit numbers) → nil.
    private static func oldStart(_ header: String) throws(AgentError) -> Int? {
        let fields = header.split(separator: " ")
        guard fields.count >= 2, fields[0] == "@@" else {
            throw AgentError.rejected(reason: "malformed diff: bad hunk header \(header.prefix(80))", paths: [])
        }
        if fields[1] == "@@" { return nil }
        // `@@ - @@` and `@@ -,3 @@` have no number before the comma: split(separator:) gives no
        // first element there, and indexing it trapped (found by bench/fuzz.sh, issue 10).
        guard fields[1].hasPrefix("-"), let number = fields[1].dropFirst().split(separator: ",", omittingEmptySubsequences: false).first,
            let start = Int(number), start >= 0
        else {
            throw AgentError.rejected(reason: "malformed diff: bad hunk header \(header.prefix(80))", paths: [])
        }
        return start
    }

    /// The new text of the file after applying the hunks to `original` (nil: the file does not exist).
    func apply(to original: String?) throws(AgentError) -> String {
        let path = target ?? "?"
        func doesNotApply(_ why: String) -> AgentError {
            AgentError.rejected(reason: "patch does not apply: \(why)", paths: [path])
        }
        if oldPath == nil, let original, !original.isEmpty {
            throw doesNotApply("it creates \(path), which already exists")
        }
        if oldPath != nil, original == nil { throw doesNotApply("\(path) does not exist") }

        // Lines split at LF bytes. A CR before the LF is the line's ending, not its text: an answer's
        // diff lines carry none (`Answer` drops them), so a CRLF file is matched without them, its
        // untouched and context lines keep their own endings, and added lines get the file's.
        var lines = (original ?? "").linesSplitAtLF()
        var endsWithNewline = false
        if lines.last == "" {
            lines.removeLast()
            endsWithNewline = !lines.isEmpty || (original ?? "").hasSuffix("\n")
        }
        let texts = lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        // Lines as numbers, equal lines the same number: a hunk is found by one linear search
        // (`occurrences`), where comparing it at every position cost hunk x file (an answer of 160k
        // identical lines and an 80k-line hunk held the supervisor 85 s).
        var numbers: [String: Int] = [:]
        let textNumbers = texts.map { text in numbers[text] ?? { numbers[text] = numbers.count; return numbers.count - 1 }() }
        let addedEnding = 2 * lines.filter { $0.hasSuffix("\r") }.count > lines.count ? "\r" : ""

        var result: [String] = []
        var cursor = 0
        for (number, hunk) in hunks.enumerated() {
            let old = hunk.oldLines
            let where_ = hunk.oldStart.map { " (near line \($0))" } ?? ""
            let position: Int
            if old.isEmpty {
                // Pure insertion, no context: `@@ -N,0 +M,K @@` inserts after line N.
                guard let start = hunk.oldStart, start >= cursor, start <= lines.count else {
                    throw doesNotApply("hunk \(number + 1) of \(path) has no context and no usable line number")
                }
                position = start
            } else {
                let oldNumbers = old.map { numbers[$0] ?? -1 }
                let matches = oldNumbers.contains(-1) ? [] : Self.occurrences(of: oldNumbers, in: textNumbers, from: cursor)
                if let start = hunk.oldStart {
                    let wanted = max(start - 1, 0)
                    guard let best = matches.min(by: { abs($0 - wanted) < abs($1 - wanted) }) else {
                        throw doesNotApply("hunk \(number + 1) of \(path)\(where_) does not match the current file")
                    }
                    position = best
                } else {
                    guard matches.count == 1 else {
                        throw doesNotApply(
                            matches.isEmpty
                                ? "hunk \(number + 1) of \(path) does not match the current file"
                                : "hunk \(number + 1) of \(path) has no line number and matches \(matches.count) places"
                        )
                    }
                    position = matches[0]
                }
            }
            result += lines[cursor..<position]
            var next = position
            for line in hunk.lines {
                switch line {
                case .context:
                    result.append(lines[next])
                    next += 1
                case .remove: next += 1
                case .add(let text): result.append(text + addedEnding)
                }
            }
            cursor = next
            if cursor == lines.count {
                endsWithNewline = !hunk.newSideLacksFinalNewline
            }
        }
        result += lines[cursor...]
        if result.isEmpty { return "" }
        return result.joined(separator: "\n") + (endsWithNewline ? "\n" : "")
    }

    /// Every position at or after `start` where `pattern` (not empty) occurs in `text`, ascending:
    /// Knuth-Morris-Pratt, time linear in both.
    static func occurrences(of pattern: [Int], in text: [Int], from start: Int) -> [Int] {
        // failure[i]: the length of the longest proper prefix of pattern[0...i] that is also its suffix.
        var failure = [Int](repeating: 0, count: pattern.count)
        var k = 0
        for i in pattern.indices.dropFirst() {
            while k > 0 && pattern[i] != pattern[k] { k = failure[k - 1] }
            if pattern[i] == pattern[k] { k += 1 }
            failure[i] = k
        }
        var found: [Int] = []
        var matched = 0
        for i in max(start, 0)..<max(text.count, max(start, 0)) {
            while matched > 0 && text[i] != pattern[matched] { matched = failure[matched - 1] }
            if text[i] == pattern[matched] { matched += 1 }
            if matched == pattern.count {
                found.append(i - pattern.count + 1)
                matched = failure[matched - 1]
            }
        }
        return found
    }
}
