/// Text from an untrusted source (an agent's description, an analysis's output, a nudge) on its
/// way to a terminal, a prompt, the ledger or the report.
extension Unicode.Scalar {
    /// A control character, a line or paragraph separator, or a bidirectional control: text holding
    /// one shows differently from how it is stored (an escape sequence rewrites a terminal, an
    /// override reverses what follows it).
    public var rewritesDisplay: Bool {
        let v = value
        return properties.generalCategory == .control || v == 0x2028 || v == 0x2029
            || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
            // Invisible marks: direction marks (LRM, RLM, ALM) reorder what is around them; zero-width
            // spaces and joiners, the soft hyphen and the byte-order mark hide inside a word.
            || v == 0x00AD || v == 0x061C || (0x200B...0x200F).contains(v) || (0x2060...0x2064).contains(v) || v == 0xFEFF
            // Every other invisible format character: tag characters (U+E0020...) spell ASCII no one
            // sees and a model reads; interlinear annotations; the Mongolian vowel separator.
            || properties.generalCategory == .format
            // Marks and letters that show nothing: the grapheme joiner, variation selectors, the
            // Hangul fillers and the blank braille pattern (a description that looks empty).
            || v == 0x034F || (0xFE00...0xFE0F).contains(v) || (0xE0100...0xE01EF).contains(v)
            || v == 0x115F || v == 0x1160 || v == 0x3164 || v == 0xFFA0 || v == 0x2800
    }
}

extension String {
    /// The text with every scalar that `rewritesDisplay` shown as an escape, `\xNN` for ASCII
    /// controls and `\uNNNN` above, except those in `keeping` (a terminal or a prompt keeps its
    /// newlines and tabs). One spelling for the terminal, the ledger, prompts and the report.
    public func displayEscaped(keeping: Set<Unicode.Scalar> = ["\n", "\t"]) -> String {
        var out = ""
        for scalar in unicodeScalars {
            if scalar.rewritesDisplay && !keeping.contains(scalar) {
                out += scalar.value < 0x80 ? "\\x" + hex(scalar.value, digits: 2) : "\\u" + hex(scalar.value, digits: 4)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(digits - text.count, 0)) + text
    }

    /// At most `limit` Unicode scalars. A cap on characters alone bounds nothing: one character
    /// can carry any number of combining marks (a letter and 450,000 accents is one character).
    public func prefix(scalars limit: Int) -> String {
        String(unicodeScalars.prefix(limit))
    }
}

extension StringProtocol {
    /// The text's lines, split at every line feed; a carriage return before one stays at the end of
    /// its line. Splitting a `String` on the Character "\n" finds no CRLF at all (Swift reads
    /// "\r\n" as one Character), so a Windows-edited file would be one line.
    public func linesSplitAtLF() -> [String] {
        utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }
}

extension String {
    /// Whether the last byte is a line feed (`hasSuffix("\n")` is false for a text ending in CRLF).
    public var endsWithLineFeed: Bool { utf8.last == UInt8(ascii: "\n") }
}
