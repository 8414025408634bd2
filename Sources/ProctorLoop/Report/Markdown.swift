import Foundation

/// A small markdown subset to HTML for the memory files (agent-written text): headings, lists, pipe
/// tables, fenced code, paragraphs, inline `code` and **bold**. Every character of the input goes
/// through `Reports.escape` before any tag is added, and the only tags are the ones written here:
/// no raw HTML, no links (a `javascript:` URL has nowhere to go), no attributes from the input.
enum SafeMarkdown {
    static func html(_ text: String) -> String {
        var out = ""
        var paragraph: [String] = []
        var list: (ordered: Bool, items: [String])?
        var table: [String] = []
        // An open code fence: its backticks and lines. It closes on a line of at least as many
        // backticks and nothing else, so a diff's ``` context line inside a ```` fence stays code.
        var fence: (marks: Int, lines: [String])?

        func flush() {
            if !paragraph.isEmpty { out += "<p>" + paragraph.map(inline).joined(separator: "<br>") + "</p>" }
            paragraph = []
            if let current = list {
                let tag = current.ordered ? "ol" : "ul"
                out += "<\(tag)>" + current.items.map { "<li>\(inline($0))</li>" }.joined() + "</\(tag)>"
            }
            list = nil
            if !table.isEmpty { out += tableHTML(table) }
            table = []
        }

        for line in text.components(separatedBy: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let marks = trimmed.prefix(while: { $0 == "`" }).count
            if var code = fence {
                if marks >= code.marks && marks == trimmed.count {
                    out += "<pre><code>" + Reports.escape(code.lines.joined(separator: "\n")) + "</code></pre>"
                    fence = nil
                } else {
                    code.lines.append(line)
                    fence = code
                }
                continue
            }
            if marks >= 3 {
                flush()
                fence = (marks, [])
            } else if trimmed.isEmpty {
                flush()
            } else if let found = heading(trimmed) {
                flush()
                // The page's sections are <h2>: a file's own headings sit below them.
                let tag = "h\(min(found.level + 2, 6))"
                out += "<\(tag)>\(inline(found.title))</\(tag)>"
            } else if trimmed.hasPrefix("|") {
                if table.isEmpty { flush() }
                table.append(trimmed)
            } else if let item = listItem(trimmed) {
                if list == nil || list?.ordered != item.ordered { flush() }
                list = (item.ordered, (list?.items ?? []) + [item.text])
            } else if list != nil && line.hasPrefix(" ") {
                // A continuation line of the last item.
                list!.items[list!.items.count - 1] += " " + trimmed
            } else {
                if list != nil || !table.isEmpty { flush() }
                paragraph.append(trimmed)
            }
        }
        if let code = fence { out += "<pre><code>" + Reports.escape(code.lines.joined(separator: "\n")) + "</code></pre>" }
        flush()
        return out
    }

    static func heading(_ line: String) -> (level: Int, title: String)? {
        let hashes = line.prefix { $0 == "#" }.count
        guard (1...6).contains(hashes), line.dropFirst(hashes).first == " " else { return nil }
        return (hashes, line.dropFirst(hashes).trimmingCharacters(in: .whitespaces))
    }

    static func listItem(_ line: String) -> (ordered: Bool, text: String)? {
        for bullet in ["- ", "* ", "+ "] where line.hasPrefix(bullet) {
            return (false, String(line.dropFirst(2)))
        }
        let digits = line.prefix { $0.isASCII && $0.isNumber }
        if !digits.isEmpty, line.dropFirst(digits.count).hasPrefix(". ") {
            return (true, String(line.dropFirst(digits.count + 2)))
        }
        return nil
    }

    /// Pipe table lines; the second line, when it is only dashes and colons, makes the first the header.
    static func tableHTML(_ lines: [String]) -> String {
        func cells(_ line: String) -> [String] {
            var body = Substring(line)
            if body.hasPrefix("|") { body = body.dropFirst() }
            if body.hasSuffix("|") && !body.hasSuffix("\\|") { body = body.dropLast() }
            // `\|` is a pipe inside a cell.
            return body.replacingOccurrences(of: "\\|", with: "\u{0}").components(separatedBy: "|").map {
                $0.replacingOccurrences(of: "\u{0}", with: "|").trimmingCharacters(in: .whitespaces)
            }
        }
        let isRule = { (line: String) in cells(line).allSatisfy { !$0.isEmpty && $0.allSatisfy { "-:".contains($0) } } }
        var html = "<table class='md'>"
        var body = lines[...]
        if lines.count >= 2, isRule(lines[1]) {
            html += "<tr>" + cells(lines[0]).map { "<th>\(inline($0))</th>" }.joined() + "</tr>"
            body = lines.dropFirst(2)
        }
        for line in body {
            html += "<tr>" + cells(line).map { "<td>\(inline($0))</td>" }.joined() + "</tr>"
        }
        return html + "</table>"
    }

    /// Escaped text with `code` spans and **bold** (both only when balanced).
    static func inline(_ text: String) -> String {
        let parts = text.components(separatedBy: "`")
        guard parts.count % 2 == 1 else { return bold(Reports.escape(text)) }
        return parts.enumerated().map { index, part in
            index % 2 == 1 ? "<code>\(Reports.escape(part))</code>" : bold(Reports.escape(part))
        }.joined()
    }

    private static func bold(_ escaped: String) -> String {
        let parts = escaped.components(separatedBy: "**")
        guard parts.count % 2 == 1, parts.count > 1 else { return escaped }
        return parts.enumerated().map { index, part in index % 2 == 1 ? "<b>\(part)</b>" : part }.joined()
    }
}
