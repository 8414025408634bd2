/// Parsing of the human units used in `proctor.toml`: durations (`500ms`, `30s`, `5m`, `1h`)
/// and sizes (`64KiB`, `512MiB`, `4GiB`).
public enum Units {
    /// Milliseconds in a duration such as `5m`; nil when the text is not a duration.
    public static func milliseconds(_ text: String) -> Int64? {
        parse(text, [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)])
    }

    /// The longest duration a budget takes, a year (8760h): sums of budgets (a Slurm job's time
    /// limit, a deadline) stay far from overflow, and no real experiment needs more.
    public static let longestMilliseconds: Int64 = 8760 * 3_600_000

    /// A positive duration up to `longestMilliseconds`; nil otherwise.
    public static func budget(_ text: String) -> Int64? {
        milliseconds(text).flatMap { $0 > 0 && $0 <= longestMilliseconds ? $0 : nil }
    }

    /// Bytes in a size such as `4GiB`; nil when the text is not a size.
    public static func bytes(_ text: String) -> Int64? {
        parse(text, [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
                     ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("B", 1)])
    }

    /// A non-negative integer followed by one of the suffixes, times the suffix's factor. The table
    /// is tried in order, and a suffix only counts when a plain number stands before it ("5ms" also
    /// ends in "s"); overflow is no value.
    private static func parse(_ text: String, _ table: [(String, Int64)]) -> Int64? {
        for (suffix, factor) in table where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int64(number) else {
                continue
            }
            let (product, overflow) = value.multipliedReportingOverflow(by: factor)
            return overflow ? nil : product
        }
        return nil
    }
}
