import Foundation
import ProctorConfig
import ProctorSandbox

/// One piece of steering from the human, queued by `proctor nudge` while a run goes on.
public struct Nudge: Codable, Sendable, Equatable {
    /// 1, 2, 3... in the order the nudges were queued, per workspace.
    public var id: Int
    public var time: Date
    /// Checked by `NudgeQueue.validate`: non-empty, bounded, no control characters but newline and tab.
    public var text: String

    public init(id: Int, time: Date, text: String) {
        self.id = id
        self.time = time
        self.text = text
    }
}

/// The human's nudges for a running (or resumable) run: `.proctor/nudges.jsonl`, one JSON line per
/// nudge appended with one `write` on an `O_APPEND` descriptor, and a delivery cursor,
/// `.proctor/nudges.delivered` (the last delivered id, replaced atomically).
///
/// Delivery is two-phase, so each nudge reaches the agent once, in order, across crashes and
/// `--resume`:
/// 1. before the iteration's proposal, `pending()` gives the nudges not yet delivered; the loop puts
///    them in the prompt (for a session, in the next verdict and `NudgeQueue.render` text);
/// 2. once the iteration's record (runs.jsonl, LOG.md) that names them is written,
///    `markDelivered(upTo: last.id)`.
/// A crash between the two delivers them again in the next iteration: at least once, never lost.
///
/// `.proctor/` is seen by no sandbox: only proctor processes of the workspace's user append here.
public struct NudgeQueue: Sendable {
    /// The workspace root.
    public let root: String

    /// The most bytes (UTF-8) one nudge may have.
    public static let maxBytes = 4096

    public init(root: String) {
        self.root = root
    }

    public var queuePath: String { root + "/.proctor/nudges.jsonl" }
    public var cursorPath: String { root + "/.proctor/nudges.delivered" }

    /// The text as it is stored: CRLF and CR become LF, surrounding blank space goes. Refused when
    /// empty, longer than `maxBytes`, or holding a control character other than newline and tab (it
    /// ends up in prompts, LOG.md and the HTML report; an escape sequence would rewrite a terminal),
    /// or a bidirectional override (text that reads differently from how it is stored).
    public static func validate(_ text: String) throws -> String {
        let clean = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard !clean.isEmpty else { throw LoopError(.refused, "the nudge is empty; say what the agent should know, e.g. proctor nudge \"try a smaller learning rate\"") }
        guard clean.utf8.count <= maxBytes else {
            throw LoopError(.refused, "the nudge is \(clean.utf8.count) bytes; at most \(maxBytes) (it goes into every agent's next prompt)")
        }
        for scalar in clean.unicodeScalars where scalar != "\n" && scalar != "\t" {
            if scalar.rewritesDisplay {
                throw LoopError(.refused, String(format: "the nudge holds the control character U+%04X; only text, newlines and tabs", scalar.value))
            }
        }
        return clean
    }

    /// The largest id a nudge may have: a hand-edited line with a larger one is skipped (the next
    /// id, one past it, would overflow).
    static let largestID = 1_000_000_000

    /// Queues a nudge after those already queued and returns it. Refused when the workspace has no
    /// run (`.proctor/state.json`): there is nobody to deliver it to, now or on `--resume`.
    /// Safe from several terminals at once: the id is taken under an `flock` of the queue file.
    @discardableResult
    public func append(_ text: String, time: Date = Date()) throws -> Nudge {
        guard FileManager.default.fileExists(atPath: RunState.path(root)) else {
            throw LoopError(.refused, "\(root) has no run to nudge (no .proctor/state.json); start one with `proctor run` or `proctor session`")
        }
        let clean = try NudgeQueue.validate(text)
        let fd = open(queuePath, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw LoopError.io(errno, "open \(queuePath)") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw LoopError.io(errno, "flock \(queuePath)") }
        }
        defer { flock(fd, LOCK_UN) }
        let nudge = Nudge(id: (all().last?.id ?? 0) + 1, time: time, text: clean)
        try JSONLines.append(nudge, to: fd, encoder: JSONLines.encoder())
        return nudge
    }

    /// Every queued nudge, in order. Lines that do not decode or do not validate (edited by hand)
    /// are skipped, as are ids out of order.
    public func all() -> [Nudge] {
        var result: [Nudge] = []
        for nudge in JSONLines.read(Nudge.self, from: queuePath) {
            guard nudge.id > (result.last?.id ?? 0), nudge.id <= NudgeQueue.largestID,
                (try? NudgeQueue.validate(nudge.text)) == nudge.text
            else { continue }
            result.append(nudge)
        }
        return result
    }

    /// The id of the last nudge delivered (0: none).
    public var delivered: Int {
        guard let data = FileManager.default.contents(atPath: cursorPath),
            let cursor = try? JSONLines.decoder().decode(Cursor.self, from: data)
        else { return 0 }
        return cursor.delivered
    }

    /// The nudges not yet delivered, in order: the ones for the next proposal.
    public func pending() -> [Nudge] {
        let done = delivered
        return all().filter { $0.id > done }
    }

    /// Records that every nudge up to `id` reached the agent (call it after the iteration's record
    /// naming them is written). Never moves the cursor back.
    public func markDelivered(upTo id: Int) throws {
        guard id > delivered else { return }
        try AtomicFile.write(JSONLines.encoder().encode(Cursor(delivered: id)), to: cursorPath)
    }

    private struct Cursor: Codable { var delivered: Int }

    /// The nudges as a prompt section (empty for none): what the agent reads before its proposal.
    /// Each text is validated already; the section is bounded by the number of nudges pending.
    public static func render(_ nudges: [Nudge]) -> String {
        guard !nudges.isEmpty else { return "" }
        var text = "Guidance from the human supervising this run (most recent last; follow it where it applies):\n"
        for nudge in nudges {
            let lines = nudge.text.split(separator: "\n", omittingEmptySubsequences: false)
            text += "- " + lines.joined(separator: "\n  ") + "\n"
        }
        return text
    }
}
