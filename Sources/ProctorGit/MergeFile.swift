import CGit2
import Foundation

extension Repository {
    /// A three-way merge of one file's bytes (libgit2's line merge): the change from `base` to
    /// `theirs` carried onto `ours`. Nil when the two changes touch the same lines (a conflict).
    /// `--parallel` uses it to move a candidate measured on an older best onto the new one: changes
    /// to nearby lines merge, where a patch's three lines of context would refuse them.
    public static func mergeFile(base: [UInt8], ours: [UInt8], theirs: [UInt8]) throws -> [UInt8]? {
        precondition(libgit2Initialized)
        return try base.withUnsafeBufferPointer { basePointer in
            try ours.withUnsafeBufferPointer { oursPointer in
                try theirs.withUnsafeBufferPointer { theirsPointer in
                    func input(_ bytes: UnsafeBufferPointer<UInt8>) throws -> git_merge_file_input {
                        var input = git_merge_file_input()
                        _ = try check(git_merge_file_input_init(&input, UInt32(GIT_MERGE_FILE_INPUT_VERSION)), "git_merge_file_input_init")
                        // An empty side still needs a pointer: libgit2 reads `ptr` whatever the size.
                        let start = bytes.baseAddress.map(UnsafeRawPointer.init) ?? UnsafeRawPointer(("" as StaticString).utf8Start)
                        input.ptr = start.assumingMemoryBound(to: CChar.self)
                        input.size = bytes.count
                        return input
                    }
                    var ancestor = try input(basePointer)
                    var mine = try input(oursPointer)
                    var other = try input(theirsPointer)
                    var result = git_merge_file_result()
                    _ = try check(git_merge_file(&result, &ancestor, &mine, &other, nil), "git_merge_file")
                    defer { git_merge_file_result_free(&result) }
                    guard result.automergeable != 0 else { return nil }
                    guard let pointer = result.ptr, result.len > 0 else { return [] }
                    return Array(UnsafeRawBufferPointer(start: pointer, count: result.len).bindMemory(to: UInt8.self))
                }
            }
        }
    }
}
