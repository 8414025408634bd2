/// The evaluator's last stdout line read as one JSON object: strict JSON (RFC 8259: no comments,
/// trailing commas, single quotes, hex or leading `+`), plus Python's `Infinity`, `-Infinity` and
/// `NaN` as values (what `json.dumps` writes). A key given twice at the top is refused: Python and a
/// human reader take the last value, a decoder may take the first, and a score must not depend on
/// which reads it. Only the top level's values matter; nested ones are checked and dropped.
struct EvaluatorLine {
    /// A top-level value, as far as a score or a measurement cares.
    enum Value: Equatable {
        case number(Double)
        /// A number literal past a double's range (`1e400`, a 400-digit integer).
        case outOfRange
        case string
        case null
        /// `true`, `false`, an array or an object.
        case other
    }

    enum Problem: Error, Equatable {
        case malformed
        case duplicateKey(String)
    }

    /// Nesting past this is refused (the parser recurses).
    static let maxDepth = 128

    private let bytes: [UInt8]
    private var at = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The top-level object's keys (as UTF-8 bytes) and values.
    static func object(_ line: ArraySlice<UInt8>) throws(Problem) -> [[UInt8]: Value] {
        var reader = EvaluatorLine(Array(line))
        reader.skipBlank()
        guard reader.peek == UInt8(ascii: "{") else { throw .malformed }
        var object: [[UInt8]: Value] = [:]
        try reader.members(depth: 1) { key, value throws(Problem) in
            guard object.updateValue(value, forKey: key) == nil else { throw .duplicateKey(String(decoding: key, as: UTF8.self)) }
        }
        reader.skipBlank()
        guard reader.at == reader.bytes.count else { throw .malformed }
        return object
    }

    private var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

    private mutating func skipBlank() {
        while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { at += 1 }
    }

    private mutating func expect(_ byte: UInt8) throws(Problem) {
        skipBlank()
        guard peek == byte else { throw .malformed }
        at += 1
    }

    /// `{ "key": value, ... }`, each member handed to `member`.
    private mutating func members(depth: Int, _ member: ([UInt8], Value) throws(Problem) -> Void) throws(Problem) {
        guard depth <= Self.maxDepth else { throw .malformed }
        try expect(UInt8(ascii: "{"))
        skipBlank()
        if peek == UInt8(ascii: "}") { at += 1; return }
        while true {
            skipBlank()
            let key = try string()
            try expect(UInt8(ascii: ":"))
            try member(key, value(depth: depth))
            skipBlank()
            guard let next = peek else { throw .malformed }
            at += 1
            if next == UInt8(ascii: "}") { return }
            guard next == UInt8(ascii: ",") else { throw .malformed }
        }
    }

    private mutating func value(depth: Int) throws(Problem) -> Value {
        skipBlank()
        guard let first = peek else { throw .malformed }
        switch first {
        case UInt8(ascii: "{"):
            try members(depth: depth + 1) { _, _ in }
            return .other
        case UInt8(ascii: "["):
            guard depth + 1 <= Self.maxDepth else { throw .malformed }
            at += 1
            skipBlank()
            if peek == UInt8(ascii: "]") { at += 1; return .other }
            while true {
                _ = try value(depth: depth + 1)
                skipBlank()
                guard let next = peek else { throw .malformed }
                at += 1
                if next == UInt8(ascii: "]") { return .other }
                guard next == UInt8(ascii: ",") else { throw .malformed }
            }
        case UInt8(ascii: "\""):
            _ = try string()
            return .string
        default:
            if try word("null") { return .null }
            if try word("true") { return .other }
            if try word("false") { return .other }
            if try word("NaN") { return .number(.nan) }
            if try word("Infinity") { return .number(.infinity) }
            if try word("-Infinity") { return .number(-.infinity) }
            return try number()
        }
    }

    /// Whether `text` stands here as a whole token (then read past it).
    private mutating func word(_ text: StaticString) throws(Problem) -> Bool {
        let token = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        guard bytes.count - at >= token.count, zip(bytes[at...], token).allSatisfy({ $0 == $1 }) else { return false }
        let end = at + token.count
        // `NaNx`, `nullx`: one malformed token, not a word and a stray letter.
        if end < bytes.count, Self.isTokenByte(bytes[end]) { throw .malformed }
        at = end
        return true
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
    }

    /// `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`, read as the nearest double; one past
    /// its range is `outOfRange` (Python would read `1e400` as infinity, the best score there is).
    private mutating func number() throws(Problem) -> Value {
        let start = at
        func digits() -> Int {
            let from = at
            while let byte = peek, byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") { at += 1 }
            return at - from
        }
        if peek == UInt8(ascii: "-") { at += 1 }
        if peek == UInt8(ascii: "0") {
            at += 1
        } else {
            guard let byte = peek, byte >= UInt8(ascii: "1") && byte <= UInt8(ascii: "9") else { throw .malformed }
            _ = digits()
        }
        if peek == UInt8(ascii: ".") {
            at += 1
            guard digits() > 0 else { throw .malformed }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            at += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { at += 1 }
            guard digits() > 0 else { throw .malformed }
        }
        if let byte = peek, Self.isTokenByte(byte) { throw .malformed }
        guard let number = Double(String(decoding: bytes[start..<at], as: UTF8.self)) else { throw .malformed }
        return number.isFinite ? .number(number) : .outOfRange
    }

    /// A string, its escapes decoded, as UTF-8 bytes (a key is compared byte for byte, as Python
    /// compares code points: no canonical equivalence); raw control characters and invalid UTF-8
    /// are refused. Built byte by byte and checked once at the closing quote: linear in its length.
    private mutating func string() throws(Problem) -> [UInt8] {
        guard peek == UInt8(ascii: "\"") else { throw .malformed }
        at += 1
        var out: [UInt8] = []
        while true {
            guard let byte = peek else { throw .malformed }
            at += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard String(validating: out, as: UTF8.self) != nil else { throw .malformed }
                return out
            case 0..<0x20:
                throw .malformed
            case UInt8(ascii: "\\"):
                guard let escape = peek else { throw .malformed }
                at += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var unit = try hex4()
                    if (0xD800..<0xDC00).contains(unit), bytes.count - at >= 6, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") {
                        let mark = at
                        at += 2
                        let low = try hex4()
                        if (0xDC00..<0xE000).contains(low) {
                            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            at = mark
                        }
                    }
                    // A lone surrogate is no scalar: it stands as U+FFFD (Python keeps it as is).
                    out.append(contentsOf: String(Unicode.Scalar(unit) ?? "\u{FFFD}").utf8)
                default:
                    throw .malformed
                }
            default:
                out.append(byte)
            }
        }
    }

    private mutating func hex4() throws(Problem) -> UInt32 {
        guard bytes.count - at >= 4 else { throw .malformed }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[at]
            at += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw .malformed
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }
}
