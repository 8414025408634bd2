import ProctorConfig

/// What an iteration's changes to the working tree may be. Path classes are predicates so that this module
/// does not depend on how patterns are written (the caller passes `Glob` matchers from `proctor.toml`).
public struct DiffPolicy: Sendable {
    /// Paths the agent may change (and create), e.g. `train.py`.
    public var isEditable: @Sendable (String) -> Bool
    /// Notes the agent may write (and create), e.g. `LOG.md`; exempt from the line cap, not from the size cap.
    public var isNotes: @Sendable (String) -> Bool
    /// Most lines added plus removed, over all editable files together.
    public var maxChangedLines: Int
    /// Largest size in bytes of any changed file.
    public var maxFileBytes: Int64

    public init(
        isEditable: @escaping @Sendable (String) -> Bool, isNotes: @escaping @Sendable (String) -> Bool,
        maxChangedLines: Int, maxFileBytes: Int64
    ) {
        self.isEditable = isEditable
        self.isNotes = isNotes
        self.maxChangedLines = maxChangedLines
        self.maxFileBytes = maxFileBytes
    }
}

/// One broken rule, naming the path and a stable rule id.
public struct Violation: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Stable rule ids, written to the audit log.
    public enum Rule: String, Sendable, Hashable, Codable, CaseIterable {
        case notEditable = "not-editable"
        case newFile = "new-file"
        case deleted
        case renamed
        case mode
        case symlink
        case submodule
        case binary
        case diffLines = "diff-lines"
        case size
        case attributes
        case nameNotUTF8 = "name-not-utf8"
        case name
        case unreachable
        case untrackable
    }

    public var path: String
    public var rule: Rule
    public var message: String

    public init(path: String, rule: Rule, message: String) {
        self.path = path
        self.rule = rule
        self.message = message
    }

    public var description: String { "\(path): \(message) [\(rule.rawValue)]" }
}

/// The pure check of a working tree's changes against a `DiffPolicy`.
public enum DiffValidator {
    /// Every violation in `changes` (from `Repository.status(against:excluding:)`), in path order; empty when
    /// the changes may be scored. Only editable and notes paths may change or appear; nothing may be deleted,
    /// renamed, change mode or type, be or become a link or submodule, or touch git's attributes; names are UTF-8; editable files stay text; editable
    /// lines changed stay within the cap; every changed file stays within the size cap.
    public static func validate(_ changes: [Change], policy: DiffPolicy) -> [Violation] {
        var violations: [Violation] = []
        var linesByPath: [(String, Int)] = []
        // The byte forms of each name, grouped by `String` equality, which takes `café` precomposed
        // and decomposed for one: an agent's two such files were one path to the keep (it committed
        // one, the experiment had read both) and to the revert (the other stayed).
        var forms: [String: [[UInt8]]] = [:]
        for change in changes where !change.path.utf8.allSatisfy({ $0 < 0x80 }) {
            let bytes = Array(change.path.utf8)
            if !(forms[change.path]?.contains(bytes) ?? false) { forms[change.path, default: []].append(bytes) }
        }
        for change in changes {
            let path = change.path
            let allowed = { (path: String) in policy.isEditable(path) || policy.isNotes(path) }
            func flag(_ rule: Violation.Rule, _ message: String) {
                violations.append(Violation(path: path, rule: rule, message: message))
            }
            switch change.kind {
            case .added where !allowed(path):
                flag(.newFile, "new file outside the editable and notes files")
            case .modified where !allowed(path), .typeChange where !allowed(path):
                flag(.notEditable, "changed a file that is not editable")
            case .deleted:
                flag(.deleted, "deleted a tracked file")
            case .renamed:
                flag(.renamed, "renamed from \(change.oldPath)")
            default:
                break
            }
            if change.kind == .typeChange {
                flag(.mode, "file type changed (\(change.oldMode) → \(change.newMode))")
            } else if change.kind == .modified || change.kind == .renamed, change.oldMode != change.newMode {
                flag(.mode, "mode changed (\(change.oldMode) → \(change.newMode))")
            } else if change.kind == .added, change.newMode == .executable {
                flag(.mode, "a new executable file (a keep would commit it \(change.newMode))")
            }
            // git attributes change what git sees of a file: a `.gitattributes` is never an agent's to
            // write, and a file git rewrites (`ident`) would hide code from this check.
            let isAttributesFile = { (p: String) in p == ".gitattributes" || p.hasSuffix("/.gitattributes") }
            if isAttributesFile(path) || isAttributesFile(change.oldPath) {
                flag(.attributes, "git attributes files change how git reads the others and are never editable")
            }
            if let attribute = change.rewritingAttribute {
                flag(.attributes, "git attribute `\(attribute)` applies (from .gitattributes): git's diff of the file would not show all of its bytes")
            }
            if let why = change.unreachable { flag(.unreachable, "\(why): git cannot look at it") }
            if change.nameIsNotUTF8 == true { flag(.nameNotUTF8, "a file name that is not UTF-8 (shown repaired)") }
            if let why = nameProblem(change) { flag(.name, why) }
            if let twin = forms[change.path]?.first(where: { $0 != Array(change.path.utf8) }) {
                let shown = String(decoding: twin, as: UTF8.self).unicodeScalars
                    .map { $0.isASCII ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
                flag(.name, "another changed path, \(shown), has this name in another Unicode form: two files on disk and in git that Swift, and most tools, take for one; keep one form")
            }
            if let what = change.untrackable {
                flag(.untrackable, "\(what): git keeps none, so the experiment would see what a keep cannot commit")
            }
            if change.isSymlink { flag(.symlink, "symbolic links are not allowed") }
            if change.isSubmodule { flag(.submodule, "submodules and nested repositories are not allowed") }
            let counted = policy.isEditable(path) && !policy.isNotes(path)
            if change.isBinary, counted { flag(.binary, "binary content in an editable file") }
            if change.kind != .deleted, change.newSize > policy.maxFileBytes {
                flag(.size, "\(change.newSize) bytes, more than the limit of \(policy.maxFileBytes)")
            }
            // A new file counts at least one line, a notes file too (its lines are exempt, not its
            // existence): empty files would otherwise make a change of any number of files.
            let lines = change.addedLines + change.removedLines + change.longLineExtra
            if counted, change.kind != .deleted {
                linesByPath.append((path, change.kind == .added ? max(lines, 1) : lines))
            } else if policy.isNotes(path), change.kind == .added {
                linesByPath.append((path, 1))
            }
        }
        let total = linesByPath.reduce(0) { $0 + $1.1 }
        if total > policy.maxChangedLines, let largest = linesByPath.max(by: { $0.1 < $1.1 }) {
            // The ten largest files by lines, the rest counted: a change of thousands of files
            // would otherwise make this one message megabytes long (in the ledger and the prompt).
            let shown = linesByPath.count <= 10 ? linesByPath
                : Array(linesByPath.enumerated().sorted { $0.element.1 != $1.element.1 ? $0.element.1 > $1.element.1 : $0.offset < $1.offset }
                    .prefix(10).map(\.element))
            let detail = shown.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
                + (shown.count < linesByPath.count ? ", and \(linesByPath.count - shown.count) more files" : "")
            violations.append(
                Violation(
                    path: largest.0, rule: .diffLines,
                    message: "\(total) changed lines in editable files, more than the limit of "
                        + "\(policy.maxChangedLines) (\(detail); a line counts once per \(Change.lineWidth) bytes)"))
        }
        return violations.sorted { ($0.path, $0.rule.rawValue) < ($1.path, $1.rule.rawValue) }
    }

    /// Why a changed path's name may not be kept: one no commit takes (a control character or a
    /// backslash: the keep failed and stopped the whole run), or a new name that shows as other
    /// than it is (a C1 escape, a direction override, an invisible mark) in a terminal, a prompt or
    /// the report.
    static func nameProblem(_ change: Change) -> String? {
        for path in Set([change.path, change.oldPath]) where !path.isEmpty {
            if let problem = WorkspacePath.problem(path) { return "a name no commit takes (\(problem))" }
        }
        guard change.kind == .added || change.kind == .renamed, change.path.unicodeScalars.contains(where: \.rewritesDisplay) else { return nil }
        return "a name with a character that shows as other than it is (a control, a direction override or an invisible mark)"
    }
}
