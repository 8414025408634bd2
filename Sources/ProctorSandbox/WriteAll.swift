import Foundation

/// Writes every byte to a descriptor, retrying short writes and `EINTR`: the one loop for the
/// files proctor appends to or replaces (transcripts, the research log, the memory files).
public enum WriteAll {
    /// 0 when every byte was written, else the `errno` of the failing `write`.
    @discardableResult
    public static func bytes(_ fd: Int32, _ data: some Collection<UInt8>) -> Int32 {
        let bytes = Array(data)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return n == 0 ? EIO : errno }
            offset += n
        }
        return 0
    }

    @discardableResult
    public static func text(_ fd: Int32, _ text: String) -> Int32 { bytes(fd, text.utf8) }
}
