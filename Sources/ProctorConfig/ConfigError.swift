/// A configuration mistake, located precisely enough to fix without reading the source:
/// `proctor.toml:12: [experiment].timeout: expected a duration such as "30s" or "5m", got "soon"`.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    /// 1-based line, when known.
    public var line: Int?
    /// Dotted key such as `experiment.timeout`, when the error is about one key.
    public var key: String?
    public var message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}

extension ConfigError {
    /// A file that is not UTF-8, located at the first line holding a byte sequence that is not
    /// (the fuzzer's byte flips were "not UTF-8 text" with no line, issue 10).
    static func notUTF8(file: String, bytes: [UInt8]) -> ConfigError {
        var line = 1
        for chunk in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            if String(validating: chunk, as: UTF8.self) == nil { break }
            line += 1
        }
        return ConfigError(file: file, line: line, key: nil, message: "not UTF-8 text (this line holds bytes that are not UTF-8)")
    }
}
