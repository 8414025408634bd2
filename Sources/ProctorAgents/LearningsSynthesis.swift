import ProctorConfig

/// `[memory] synthesize = "agent"`: a second model call after each iteration rewrites
/// `learnings.md` from the last iteration's diff and result and the current file. What it is
/// given is what every agent may see (the log entry, the diff, the deterministic synthesis),
/// never an evaluator's words nor a sealed score.
extension HTTPAgent {
    /// The model's new `learnings.md` (control characters other than newline and tab removed, at
    /// most 32 KiB) and the tokens it cost.
    public func synthesizeLearnings(current: String, deterministic: String, lastEntry: String, patch: String?)
        throws -> (text: String, usage: AgentUsage?)
    {
        var key: String? = nil
        do {
            key = try apiKeyForSynthesis()
            let system = """
                You maintain learnings.md for an automated machine-learning research loop. After each \
                experiment you rewrite the whole file, synthesized, not appended: group the changes tried \
                by category; for each give how often it was tried and kept, its best and mean effect on \
                the score, and a verdict: "confidently bad" (tried at least 3 times, never better on any \
                seed), "ambiguous" (mixed) or "promising" (kept or nearly kept). End with the two or three \
                most useful next directions. Answer with the file's markdown only, at most 150 lines.
                """
            var user = "# The current learnings.md\n\n\(current.isEmpty ? "(none yet)" : current)\n\n"
            user += "# The counts from the ledger (exact; keep your numbers consistent with them)\n\n\(deterministic)\n\n"
            user += "# The last iteration\n\n\(lastEntry)\n"
            if let patch, !patch.isEmpty {
                let fence = patch.contains("```") ? "````" : "```"
                user += "\n# Its diff\n\n\(fence)diff\n\(patch)\(patch.endsWithLineFeed ? "" : "\n")\(fence)\n"
            }
            var reply = try complete(system: system, user: user, key: key)
            reply.text = reply.text.redacting(key)
            if let usage = reply.usage { onUsage?(usage) }
            // Shown as escapes: what would display otherwise than it is stored (controls, bidi
            // overrides, invisible tag characters), newlines and tabs kept.
            var text = reply.text.displayEscaped()
            // A model that wrapped the file in a fence: the file is what is inside.
            let trimmed = text.trimmed()
            if trimmed.hasPrefix("```"), trimmed.hasSuffix("```"), let firstBreak = trimmed.firstIndex(of: "\n") {
                text = String(trimmed[trimmed.index(after: firstBreak)...].dropLast(3))
            }
            if text.utf8.count > 32 << 10 { text = String(decoding: Array(text.utf8.prefix(32 << 10)), as: UTF8.self) }
            guard !text.trimmed().isEmpty else { throw AgentError.failed(reason: "the model's learnings.md was empty") }
            return (text.endsWithLineFeed ? text : text + "\n", reply.usage)
        } catch let error as AgentError {
            throw scrubbed(error, key)
        }
    }
}
