import Foundation
import TOMLKit

/// Reads a TOML document into typed values while tracking which keys were used, so that an
/// unknown key, a wrong type or an impossible value is an error naming the file, line and key.
///
/// TOMLKit does not expose source positions of values, so lines are found by scanning the
/// text for the table header and the `key =` line beneath it.
final class TOMLReader {
    let file: String
    private let lines: [String]
    /// Lines (from 1) that begin inside a multi-line string: never a header or a key's line.
    private var insideStrings: Set<Int> = []
    let root: TOMLTable

    init(file: String, text: String) throws {
        self.file = file
        self.lines = text.linesSplitAtLF()
        if let (line, message) = Self.inputTOMLKitTrapsOn(text, insideStrings: &insideStrings) {
            throw ConfigError(file: file, line: line, key: nil, message: message)
        }
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: file, line: error.source.begin.line, key: nil, message: error.description)
        }
    }

    /// The first place toml++ 3.4 asserts on instead of returning an error (a SIGABRT in debug
    /// builds, undefined behaviour where `NDEBUG` turns the assertion into an assumption), found by
    /// `bench/fuzz.sh` (issue 10): a table header whose name does not start with a key character or
    /// a quote (`[` alone on a line, `[ =x]`), and a `}` where an array expects a value
    /// (`editable = [}train.py"]`). And a `\u0000` escape, which TOMLKit's C-string conversion
    /// silently cut the value at (`outputs = ["a\u0000b"]` made a directory `a`). The line and
    /// the message. And a raw NUL byte, which cut the whole file short there. A header is a `[` that opens a line
    /// outside strings and outside a value's brackets, so arrays spanning lines pass.
    /// `insideStrings`: the lines that begin inside a multi-line string, gathered on the way.
    static func inputTOMLKitTrapsOn(_ text: String, insideStrings: inout Set<Int>) -> (Int, String)? {
        let scalars = Array(text.unicodeScalars)
        // A raw NUL byte: TOMLKit hands toml++ a C string, which ends there, so everything after
        // it (a whole [sandbox] table) would vanish without an error.
        if let nul = scalars.firstIndex(of: "\u{0}") {
            return (scalars[..<nul].filter { $0 == "\n" }.count + 1, "a NUL byte is not allowed (the file would be read only up to it)")
        }
        var index = 0
        var line = 1
        var open: [Unicode.Scalar] = []  // the [ and { of values not closed yet
        var atLineStart = true
        func at(_ i: Int) -> Unicode.Scalar? { i < scalars.count ? scalars[i] : nil }
        func startsWith(_ s: String, _ i: Int) -> Bool {
            s.unicodeScalars.enumerated().allSatisfy { at(i + $0.offset) == $0.element }
        }
        func isKeyStart(_ c: Unicode.Scalar?) -> Bool {
            guard let c else { return true }  // the end of the text: toml++ reports that itself
            return ("0"..."9").contains(c) || ("a"..."z").contains(c) || ("A"..."Z").contains(c)
                || c == "_" || c == "-" || c == "\"" || c == "'" || c == "]"
        }
        while index < scalars.count {
            let c = scalars[index]
            if c == "\n" { line += 1; atLineStart = true; index += 1; continue }
            if c == " " || c == "\t" || c == "\r" { index += 1; continue }
            if atLineStart && open.isEmpty && c == "[" {
                var next = index + 1
                if at(next) == "[" { next += 1 }
                while at(next) == " " || at(next) == "\t" { next += 1 }
                if !isKeyStart(at(next)) {
                    let found = at(next).map { $0 == "\n" ? "the end of the line" : "\"" + $0.escaped(asASCII: true) + "\"" }
                    return (line, "a table header needs a name right after \"[\" (such as [files]), got \(found ?? "the end of the file")")
                }
                // A header never spans lines: go on after it.
                while let c = at(index), c != "\n" { index += 1 }
                continue
            }
            atLineStart = false
            switch c {
            case "#":
                while let c = at(index), c != "\n" { index += 1 }
                continue
            case "[", "{": open.append(c)
            case "}" where open.last == "[":
                return (line, "expected a value or \"]\" in an array, got \"}\"")
            case "]", "}": _ = open.popLast()
            case "\"", "'":
                let triple = startsWith(String(c) + String(c) + String(c), index)
                index += triple ? 3 : 1
                while let d = at(index) {
                    if d == "\\" && c == "\"" {
                        if startsWith("\\u0000", index) || startsWith("\\U00000000", index) {
                            return (line, "a NUL character (\\u0000) in a string is not allowed (the value would be cut short there)")
                        }
                        // toml++ 3.4 kept an escape TOML does not have (`metric = "a\qc"` meant `a\qc`);
                        // a multi-line string may end a line with a backslash.
                        let escaped = at(index + 1)
                        let known = escaped.map { "btnfr\"\\uU".unicodeScalars.contains($0) } ?? true
                        let lineEnd = triple && escaped.map { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" } == true
                        if !known && !lineEnd {
                            let shown = escaped.map { $0.escaped(asASCII: true) } ?? ""
                            return (line, "\"\\\(shown)\" is no escape TOML has (\\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX); write \\\\ for a backslash, or use a 'literal string'")
                        }
                        if escaped == "\n" { line += 1; insideStrings.insert(line) }
                        index += 2
                        continue
                    }
                    if d == "\n" {
                        if !triple { break }  // an unterminated string: toml++ reports it
                        line += 1
                        insideStrings.insert(line)
                    }
                    if d == c && (!triple || startsWith(String(c) + String(c) + String(c), index)) {
                        index += triple ? 3 : 1
                        break
                    }
                    index += 1
                }
                continue
            default: break
            }
            index += 1
        }
        return nil
    }

    /// The line of `key` inside the table `path` (e.g. ["agent", "mutate"]), or of the table header.
    /// `occurrence` counts `[[path]]` headers (0-based) for the elements of an array of tables.
    func line(of path: [String], key: String?, occurrence: Int = 0) -> Int? {
        var current: [String] = []
        var headerLine: Int?
        var tableLine: Int?
        var inlineLine: Int?
        var seen = 0
        // A line of a multi-line string that starts with `[` or reads `key =` is the string's.
        for (index, raw) in lines.enumerated() where !insideStrings.contains(index + 1) {
            let text = raw.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("[") {
                let inner = text.drop(while: { $0 == "[" }).prefix(while: { $0 != "]" })
                current = inner.split(separator: ".").map {
                    $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
                }
                if current == path {
                    if seen != occurrence {
                        seen += 1
                        current = []  // an earlier element of the array: not the one asked about
                        continue
                    }
                    seen += 1
                    headerLine = index + 1
                }
                if let key, tableLine == nil, current == path + [key] { tableLine = index + 1 }
                continue
            }
            let name = text.prefix(while: { $0 != "=" }).trimmingCharacters(in: .whitespaces)
                .trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if let key, current == path, name == key && text.contains("=") { return index + 1 }
            // A dotted key (`limits.features = 0` at the top level) names the key on one line of an
            // enclosing table; an inline table (`limits = { features = 0 }`, `phases = [{ ... }]`)
            // holds it on the line that names the table.
            if text.contains("="), path.count > current.count, Array(path.prefix(current.count)) == current {
                let parts = name.split(separator: ".").map {
                    $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
                }
                let rest = Array(path.dropFirst(current.count))
                if let key, parts == rest + [key] { return index + 1 }
                if inlineLine == nil, parts == rest { inlineLine = index + 1 }
            }
        }
        return tableLine ?? headerLine ?? inlineLine
    }

    func error(_ path: [String], _ key: String?, _ message: String, occurrence: Int? = nil) -> ConfigError {
        let dotted = (path + (key.map { [$0] } ?? [])).joined(separator: ".")
        let name = occurrence.map { _ in path.joined(separator: ".") + "[\(occurrence! + 1)]" + (key.map { "." + $0 } ?? "") } ?? dotted
        return ConfigError(file: file, line: line(of: path, key: key, occurrence: occurrence ?? 0),
                           key: name.isEmpty ? nil : name, message: message)
    }
}

/// One table being read; `finish()` rejects keys nobody asked for.
struct TableReader {
    let reader: TOMLReader
    let path: [String]
    let table: TOMLTable?
    /// The element's index when this table is one of an array of tables (`[[phases]]`).
    let occurrence: Int?
    private var used: Set<String> = []

    init(_ reader: TOMLReader, _ path: [String], _ table: TOMLTable?, occurrence: Int? = nil) {
        self.reader = reader
        self.path = path
        self.table = table
        self.occurrence = occurrence
    }

    /// The located error for `key` of this table.
    func error(_ key: String?, _ message: String) -> ConfigError {
        reader.error(path, key, message, occurrence: occurrence)
    }

    /// An array of tables (`[[phases]]`); missing is an empty array.
    mutating func tables(_ key: String) throws -> [TableReader] {
        used.insert(key)
        guard let value = table?[key] else { return [] }
        guard let array = value.array else { throw error(key, "expected an array of tables ([[\(key)]]), got \(value.type)") }
        return try array.enumerated().map { index, element in
            guard let sub = element.table else {
                throw error(key, "expected an array of tables ([[\(key)]]), found a \(element.type)")
            }
            return TableReader(reader, path + [key], sub, occurrence: index)
        }
    }

    /// A sub-table; missing is allowed (all its keys take defaults).
    mutating func table(_ key: String) throws -> TableReader {
        used.insert(key)
        guard let value = table?[key] else { return TableReader(reader, path + [key], nil) }
        guard let sub = value.table else { throw error(key, "expected a table, got \(value.type)") }
        return TableReader(reader, path + [key], sub)
    }

    func has(_ key: String) -> Bool { table?[key] != nil }

    mutating func string(_ key: String) throws -> String? {
        used.insert(key)
        guard let value = table?[key] else { return nil }
        guard let text = value.string else { throw error(key, "expected a string, got \(value.type)") }
        return text
    }

    mutating func string(_ key: String, oneOf choices: [String]) throws -> String? {
        guard let text = try string(key) else { return nil }
        guard choices.contains(text) else {
            throw error(key, "expected one of \(choices.map { "\"\($0)\"" }.joined(separator: ", ")), got \"\(text)\"")
        }
        return text
    }

    mutating func bool(_ key: String) throws -> Bool? {
        used.insert(key)
        guard let value = table?[key] else { return nil }
        guard let flag = value.bool else { throw error(key, "expected true or false, got \(value.type)") }
        return flag
    }

    mutating func int(_ key: String, min: Int = 0, max: Int = Int.max) throws -> Int? {
        used.insert(key)
        guard let value = table?[key] else { return nil }
        guard let number = value.int else { throw error(key, "expected an integer, got \(value.type)") }
        guard number >= min && number <= max else {
            throw error(key, "expected an integer from \(min) to \(max), got \(number)")
        }
        return number
    }

    mutating func double(_ key: String, min: Double = -.infinity) throws -> Double? {
        used.insert(key)
        guard let value = table?[key] else { return nil }
        let number: Double
        if let d = value.double { number = d } else if let i = value.int { number = Double(i) } else {
            throw error(key, "expected a number, got \(value.type)")
        }
        guard number.isFinite && number >= min else {
            throw error(key, "expected a finite number ≥ \(min), got \(number)")
        }
        return number
    }

    mutating func strings(_ key: String) throws -> [String]? {
        used.insert(key)
        guard let value = table?[key] else { return nil }
        guard let array = value.array else { throw error(key, "expected an array of strings, got \(value.type)") }
        return try array.map { element in
            guard let text = element.string else {
                throw error(key, "expected an array of strings, found a \(element.type)")
            }
            return text
        }
    }

    mutating func ints(_ key: String, min: Int = 0) throws -> [Int]? {
        used.insert(key)
        guard let value = table?[key] else { return nil }
        guard let array = value.array else { throw error(key, "expected an array of integers, got \(value.type)") }
        return try array.map { element in
            guard let number = element.int, number >= min else {
                throw error(key, "expected an array of integers ≥ \(min)")
            }
            return number
        }
    }

    /// A duration such as `500ms`, `30s`, `5m`, `1h`, in milliseconds.
    mutating func duration(_ key: String) throws -> Int64? {
        guard let text = try stringValue(key, expecting: "a duration such as \"30s\" or \"5m\"") else { return nil }
        guard let ms = Units.budget(text) else {
            throw error(key, "expected a positive duration up to a year (\"8760h\") such as \"500ms\", \"30s\", \"5m\" or \"1h\", got \"\(text)\"")
        }
        return ms
    }

    /// A size such as `64KiB`, `512MiB`, `4GiB`, in bytes.
    /// `minimum`: the least that can work (a memory limit of "1B" passed, and the baseline was
    /// killed for memory after the run had begun).
    mutating func size(_ key: String, minimum: Int64 = 1) throws -> Int64? {
        guard let text = try stringValue(key, expecting: "a size such as \"512MiB\"") else { return nil }
        guard let bytes = Units.bytes(text), bytes > 0 else {
            throw error(key, "expected a positive size such as \"64KiB\", \"512MiB\" or \"4GiB\", got \"\(text)\"")
        }
        guard bytes >= minimum else {
            throw error(key, "expected at least \(minimum >> 20)MiB (no program starts in less), got \"\(text)\"")
        }
        return bytes
    }

    private mutating func stringValue(_ key: String, expecting: String) throws -> String? {
        used.insert(key)
        guard let value = table?[key] else { return nil }
        guard let text = value.string else { throw error(key, "expected \(expecting), got \(value.type)") }
        return text
    }

    /// Rejects keys that were never read: a typo must not silently fall back to a default.
    func finish() throws {
        guard let table else { return }
        for key in table.keys.sorted() where !used.contains(key) {
            let name = path.joined(separator: ".")
            let section = path.isEmpty ? "the top level" : occurrence == nil ? "[\(name)]" : "[[\(name)]]"
            throw error(key, "unknown key in \(section)")
        }
    }
}
