import Foundation

extension Repository {
    /// The most path components an entry may have for git to look at it: libgit2 stops a whole
    /// status with "directory nesting too deep" at 100 levels.
    public static let deepestEntry = 90
    /// The longest absolute path, in bytes, git can look at (PATH_MAX is 4096 with its NUL).
    public static let longestPath = 4000

    /// What a status cannot show beneath `places` (workspace paths, "" for the whole tree).
    /// `unreachable`: the entries git cannot look at, each with why: nested deeper than `deepestEntry`
    /// components, an absolute path longer than `longestPath` bytes, or a directory that cannot be
    /// opened for reading (EACCES); the shallowest of each, nothing
    /// beneath it. An agent can make either in its editable directory (99 nested directories, or 20
    /// with 255-byte names), and libgit2 then fails the whole status, so the iteration could be
    /// neither judged nor reverted. With `untrackable`: what git keeps nothing of, each with what it
    /// is: a directory that holds nothing (beneath a place, not the place itself) and a FIFO, socket
    /// or device. An agent in an editable directory can make either, and the experiment would read
    /// them (names of empty directories carried a whole program past the diff) while a keep commits
    /// none of them. Paths under `excluded` prefixes, `.git`, and the ignored directories
    /// `keepingIgnored` accepts (the user's, asked once each, never inside another ignored one) are
    /// not entered. Depth first, one descriptor open per level of the current path.
    public func invisibleEntries(in places: [String], excluding excluded: [String],
                                 keepingIgnored: ((String) throws -> Bool)? = nil,
                                 untrackable: Bool = false) throws -> (unreachable: [(path: String, why: String)], untrackable: [(path: String, what: String)]) {
        let prefixes = excluded.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
        let base = workdir.hasSuffix("/") ? workdir : workdir + "/"
        let root = try FileSystem.Directory.open(workdir)
        var found: [(path: String, why: String)] = []
        var untracked: [(path: String, what: String)] = []
        /// `name` in `parent` opened; nil, recorded as unreachable, when its owner took its read bit
        /// away (the sandbox's user, proctor's own when it is not root): libgit2 skipped what it
        /// held with a warning, and a program in it ran unseen by the diff. Root opens it anyway.
        func enter(_ parent: FileSystem.Directory, _ name: String, _ path: String) throws -> FileSystem.Directory? {
            do {
                return try parent.subdirectory(name)
            } catch GitError.system(_, _, let code) where code == EACCES {
                found.append((path, "a directory that cannot be read"))
                return nil
            }
        }
        for place in places {
            let start: FileSystem.Directory
            if place.isEmpty {
                start = root
            } else {
                guard let (parent, name) = try FileSystem.openParent(of: place, in: root), try parent.entry(name)?.type == .directory
                else { continue }
                guard let opened = try enter(parent, name, place) else { continue }
                start = opened
            }
            // Directories still to look into, each with its parent (open until its last child is
            // entered): depth first, so what is open is the current path's directories.
            var stack: [(parent: FileSystem.Directory?, name: String, path: String, ignored: Bool)] = [(nil, "", place, false)]
            while let (parent, name, path, ignored) = stack.popLast() {
                guard let directory = parent == nil ? start : try? enter(parent!, name, path) else { continue }
                let depth = path.isEmpty ? 0 : path.split(separator: "/").count
                let entries = try directory.typedEntries()
                if untrackable, parent != nil, entries.isEmpty { untracked.append((path, "an empty directory")) }
                for entry in entries {
                    let name = String(cString: entry.name)
                    let child = path.isEmpty ? name : path + "/" + name
                    if path.isEmpty && name == ".git" { continue }
                    if prefixes.contains(where: { child == $0 || child.hasPrefix($0 + "/") }) { continue }
                    if depth + 1 > Self.deepestEntry || (base + child).utf8.count > Self.longestPath {
                        found.append((child, "nested more than \(Self.deepestEntry) deep or a path longer than \(Self.longestPath) bytes"))
                        continue
                    }
                    if entry.type == .other {
                        if untrackable { untracked.append((child, "a FIFO, socket or device")) }
                        continue
                    }
                    guard entry.type == .directory else { continue }
                    var inIgnored = ignored
                    if let keep = keepingIgnored, !ignored, try isIgnored(child, directory: true) {
                        if try keep(child) { continue }
                        inIgnored = true
                    }
                    stack.append((directory, name, child, inIgnored))
                }
            }
        }
        return (found.sorted { $0.path < $1.path }, untracked.sorted { $0.path < $1.path })
    }
}
