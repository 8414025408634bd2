import ProctorConfig

/// A model's answer, parsed: a summary line and the changes it asks for, in order.
///
/// The format (what `AgentPrompt` asks for):
///
///     SUMMARY: one line saying what changed and why
///
///     FILE: train.py
///     ```python
///     <the whole new contents>
///     ```
///
/// and/or unified diffs in a fence whose info string is `diff` or `patch`:
///
///     ```diff
///     --- a/train.py
///     +++ b/train.py
///     @@ -10,3 +10,3 @@
///     ...
///     ```
///
/// A fence closes at a line holding only the same fence character, at least as many times as it
/// opened with, so a file containing ``` lines is sent in a ```` fence. Other fenced blocks
/// (examples, explanations) are ignored. Nothing here touches the disk.
struct Answer: Equatable {
    /// One change the answer asks for.
    enum Change: Equatable {
        /// Replace the whole file with `contents`.
        case replace(path: String, contents: String)
        /// Apply a unified diff to one file.
        case patch(FilePatch)

        /// The paths this change reads or writes (for `/dev/null` sides: none).
        var paths: [String] {
            switch self {
            case .replace(let path, _): return [path]
            case .patch(let patch): return [patch.oldPath, patch.newPath].compactMap { $0 }
            }
        }
    }

    /// The text after the first `SUMMARY:` outside any fence, trimmed; nil when there is none.
    var summary: String?
    var changes: [Change]

    /// Parses `text`; throws `rejected` when a FILE header or a diff is malformed.
    static func parse(_ text: String) throws(AgentError) -> Answer {
        let lines = text.linesSplitAtLF().map { line in
            line.hasSuffix("\r") ? String(line.dropLast()) : line
        }
        var answer = Answer(summary: nil, changes: [])
        var index = 0
        while index < lines.count {
            let line = lines[index]
            if answer.summary == nil, let summary = summaryText(line) {
                answer.summary = summary
                index += 1
            } else if let path = fileHeader(line) {
                var next = index + 1
                while next < lines.count, lines[next].trimmed(" \t").isEmpty { next += 1 }
                guard next < lines.count, let fence = Fence(opening: lines[next]) else {
                    throw AgentError.rejected(
                        reason: "malformed answer: FILE: \(path) is not followed by a fenced block", paths: [])
                }
                guard let (body, end) = fence.body(in: lines, from: next + 1) else {
                    throw AgentError.rejected(
                        reason: "malformed answer: the block for FILE: \(path) is never closed (answer cut short?)",
                        paths: [])
                }
                answer.changes.append(
                    .replace(path: path, contents: body.isEmpty ? "" : body.joined(separator: "\n") + "\n"))
                index = end + 1
            } else if let fence = Fence(opening: line) {
                let info = fence.info.lowercased()
                let isDiff = info == "diff" || info == "patch" || info == "udiff"
                guard let (body, end) = fence.body(in: lines, from: index + 1) else {
                    if isDiff {
                        throw AgentError.rejected(
                            reason: "malformed answer: a diff block is never closed (answer cut short?)", paths: [])
                    }
                    break
                }
                let looksLikeDiff =
                    info.isEmpty
                    && body.first(where: { !$0.isEmpty }).map {
                        $0.hasPrefix("--- ") || $0.hasPrefix("diff --git ")
                    } == true
                if isDiff || looksLikeDiff {
                    answer.changes += try FilePatch.parseAll(body).map { .patch($0) }
                }
                index = end + 1
            } else {
                index += 1
            }
        }
        return answer
    }

    /// `SUMMARY: text` (optionally bold or a heading) → `text`.
    private static func summaryText(_ line: String) -> String? {
        let stripped = stripDecoration(line)
        guard stripped.uppercased().hasPrefix("SUMMARY:") else { return nil }
        let text = stripDecoration(String(stripped.dropFirst("SUMMARY:".count)))
        return text.isEmpty ? nil : text
    }

    /// `FILE: path` (optionally bold, a heading, the path in backticks or quotes) → `path`.
    private static func fileHeader(_ line: String) -> String? {
        let stripped = stripDecoration(line)
        guard stripped.hasPrefix("FILE:") else { return nil }
        var path = stripDecoration(String(stripped.dropFirst("FILE:".count)))
        for quote in ["`", "\"", "'"] where path.count >= 2 && path.hasPrefix(quote) && path.hasSuffix(quote) {
            path = String(path.dropFirst().dropLast())
        }
        return path.isEmpty ? nil : path
    }

    /// The line without surrounding blanks, markdown emphasis and heading marks.
    private static func stripDecoration(_ line: String) -> String {
        var text = line.trimmed(" \t")
        // Cut once (dropping one mark at a time copied the rest of the line each time: a line of a
        // million `#` took minutes).
        text = String(text.drop { $0 == "#" || $0 == "*" })
        if let last = text.lastIndex(where: { $0 != "*" }) { text = String(text[...last]) } else { text = "" }
        if text.hasPrefix("**") { text = String(text.dropFirst(2)) }
        text = text.trimmed(" \t")
        if text.hasPrefix("SUMMARY:**") || text.hasPrefix("FILE:**") {
            text = text.replacing("**", with: "", maxReplacements: 1)
        }
        return text
    }
}

/// A CommonMark-style code fence: three or more backticks or tildes, an optional info string.
struct Fence {
    let character: Character
    let length: Int
    let info: String

    init?(opening line: String) {
        let indent = line.prefix(while: { $0 == " " })
        guard indent.count <= 3 else { return nil }
        let rest = line.dropFirst(indent.count)
        guard let first = rest.first, first == "`" || first == "~" else { return nil }
        let run = rest.prefix(while: { $0 == first })
        guard run.count >= 3 else { return nil }
        let info = String(rest.dropFirst(run.count)).trimmed(" \t")
        if first == "`" && info.contains("`") { return nil }
        self.character = first
        self.length = run.count
        self.info = info.split(separator: " ").first.map(String.init) ?? ""
    }

    func closes(_ line: String) -> Bool {
        let trimmed = line.trimmed(" \t")
        return trimmed.count >= length && trimmed.allSatisfy { $0 == character }
    }

    /// The lines between the opening fence and its closing line (index of the closing line),
    /// or nil when the fence is never closed.
    func body(in lines: [String], from start: Int) -> ([String], Int)? {
        var index = start
        while index < lines.count {
            if closes(lines[index]) { return (Array(lines[start..<index]), index) }
            index += 1
        }
        return nil
    }
}
