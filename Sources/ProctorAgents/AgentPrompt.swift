import ProctorConfig

/// The prompt proctor gives a language model: a system part (role, rules, answer format) and a
/// user part (program.md, goal, recent results, the editable files in full).
///
/// Shared by the `http` agent and meant for the `command` agent's `{prompt}` placeholder, so
/// every model sees the same rules and answers in the format `Answer.parse` reads.
public enum AgentPrompt {
    /// How many of the most recent iterations the prompt lists.
    public static let historyLimit = 20

    /// Role, rules and answer format.
    public static func system(_ context: AgentContext) -> String {
        let editable = context.editableFiles.keys.sorted()
        let notes = context.notesFiles.sorted()
        let notesRule =
            notes.isEmpty
            ? ""
            : "\n- You may also write these notes files (they never affect the score): \(notes.joined(separator: ", "))."
        return """
            You are the research agent of Proctor, a supervisor that runs machine-learning experiments. \
            Each turn you propose ONE change. Proctor validates it, runs the experiment in a sandbox, scores \
            it with a locked evaluator, and keeps the change only if the score improves; otherwise it is \
            reverted. You cannot run code or see anything but what is shown here.

            Rules:
            - Change only these files: \(editable.joined(separator: ", ")).\(notesRule)
            - Any other path (the evaluator, its data, proctor.toml, .git, anything outside the workspace, \
            absolute paths) gets the whole answer rejected.
            - Change at most \(context.maxDiffLines) lines in total (added plus removed lines).
            - Make one focused change you expect to improve the metric; do not try to game the evaluator.

            Answer format (only this is read):
            SUMMARY: <one line: what you changed and why>

            Then EITHER the complete new contents of each changed file:
            FILE: <path>
            ```
            <the whole file, every line, not just the changed part>
            ```
            OR a unified diff against the current files:
            ```diff
            --- a/<path>
            +++ b/<path>
            @@ -<start>,<count> +<start>,<count> @@
             <unchanged context line>
            -<removed line>
            +<added line>
            ```
            In a diff, context and removed lines must match the current file exactly, character for \
            character. If a file contains a line starting with ```, fence it with four backticks instead.
            """
    }

    /// program.md, the goal, recent results and the editable files.
    public static func user(_ context: AgentContext) -> String {
        var text = ""
        let program = context.program.trimmed()
        if !program.isEmpty {
            text += "# Research program (program.md)\n\n\(program)\n\n"
        }
        let direction = context.maximize ? "maximize (higher is better)" : "minimize (lower is better)"
        text += "# Goal\n\nMetric: \(context.metric), \(direction).\n"
        text += "Best kept score so far: \(context.bestScore.map { format($0) } ?? "none yet").\n\n"

        text += memory(context.memory)
        text += "# Recent iterations (oldest first)\n\n"
        let recent = context.history.suffix(historyLimit)
        if recent.isEmpty {
            text += "None yet: this is the first iteration.\n\n"
        } else {
            if context.history.count > recent.count {
                text += "(\(context.history.count - recent.count) earlier iterations not shown)\n"
            }
            for entry in recent {
                let score = entry.score.map { format($0) } ?? "no score"
                text += "- iteration \(entry.iteration): \(entry.status), \(score): \(oneLine(entry.description))\n"
            }
            text += "\n"
        }

        if !context.inFlight.isEmpty {
            text += "# Being measured now (proposed, not scored yet; propose something different)\n\n"
            for entry in context.inFlight { text += "- \(oneLine(entry))\n" }
            text += "\n"
        }
        text += "# Current files\n\n"
        for path in context.editableFiles.keys.sorted() {
            let contents = context.editableFiles[path] ?? ""
            let fence = String(repeating: "`", count: max(3, longestBacktickRun(contents) + 1))
            text +=
                "FILE: \(path)\n\(fence)\n\(contents)\(contents.endsWithLineFeed || contents.isEmpty ? "" : "\n")\(fence)\n\n"
        }
        text += "This is iteration \(context.iteration). Propose your next change in the answer format."
        return text
    }

    /// The plateau hint's text: after `[memory] plateau_after` iterations without a keep.
    public static func plateauHint(_ count: Int) -> String {
        "The last \(count) iterations kept nothing: the current line of changes has stalled. Try something " +
            "fundamentally different (another model family, features, objective or data treatment), or combine " +
            "the near misses below into one change."
    }

    /// Each memory section at most this many characters (the learnings of a long night grow).
    static let sectionLimit = 12_000

    /// The runtime's memory: phase, nudges, plateau, learnings, do-not-retry, near misses, analyses.
    public static func memory(_ memory: AgentMemory) -> String {
        func bounded(_ text: String) -> String {
            let trimmed = text.trimmed()
            guard trimmed.count > sectionLimit else { return trimmed }
            return closingOpenFence(String(trimmed.prefix(sectionLimit)))
                + "\n[... cut at \(sectionLimit) characters; the whole file is in the memory directory]"
        }
        var text = ""
        if let phase = memory.phase {
            let span = phase.until.map { "until iteration \($0)" } ?? "until the run ends"
            text += "# Research phase: \(oneLine(phase.name)) (\(span))\n\n\(bounded(phase.strategy))\n\n"
        }
        if !memory.nudges.isEmpty {
            text += "# From the human supervising this run (new since your last turn; follow it)\n\n"
            text += memory.nudges.map { "- " + bounded($0) }.joined(separator: "\n") + "\n\n"
        }
        if memory.plateau {
            text += "# Plateau\n\n\(memory.plateauHint ?? plateauHint(memory.iterationsWithoutKeep))\n\n"
        }
        if !memory.learnings.trimmed().isEmpty {
            text += "# Learnings so far (synthesized by Proctor from every measured change)\n\n\(bounded(memory.learnings))\n\n"
        }
        if !memory.doNotRetry.trimmed().isEmpty {
            text += "# Do not retry\n\n\(bounded(memory.doNotRetry))\n\n"
        }
        if !memory.nearMisses.isEmpty {
            text += "# Near misses (discarded, closest to the best; re-appliable diffs)\n\n"
            // Whole near misses while they fit: one cut inside its diff left the fence open, and the
            // next section's fence closed it, so the agent's own file read as the prompt's text.
            var section = ""
            for (index, miss) in memory.nearMisses.enumerated() {
                let fence = String(repeating: "`", count: max(3, longestBacktickRun(miss.patch) + 1))
                let block = "## iteration \(miss.iteration): \(format(miss.score)): \(oneLine(miss.description))\n\n\(fence)diff\n\(miss.patch)\(miss.patch.endsWithLineFeed ? "" : "\n")\(fence)\n\n"
                if index > 0 && section.count + block.count > sectionLimit {
                    section += "[... \(memory.nearMisses.count - index) more near misses; the whole file is in the memory directory]"
                    break
                }
                section += block
            }
            text += bounded(section) + "\n\n"
        }
        if !memory.analyses.isEmpty {
            text += "# Analysis runs since your last turn (their output, no score)\n\n"
            text += bounded(memory.analyses.joined(separator: "\n\n")) + "\n\n"
        }
        if let directory = memory.directory, !text.isEmpty {
            text += "(These memory files are also readable, not writable, under \(directory)/.)\n\n"
        }
        return text
    }

    /// A single line of at most `limit` Unicode scalars: tabs, line breaks, control characters and
    /// bidirectional controls become spaces (the ledger is tab-separated).
    static func oneLine(_ text: String, limit: Int = 200) -> String {
        var line = String(text.unicodeScalars.map { $0.rewritesDisplay ? " " : Character($0) })
        line = line.trimmed()
        if line.unicodeScalars.count > limit { line = line.prefix(scalars: limit - 1) + "…" }
        return line
    }

    private static func format(_ value: Double) -> String {
        "\(value)"
    }

    /// `text` cut inside a fenced block (a line of three or more backticks opens one; a line of
    /// at least as many closes it) with that block closed: left open, the next fence in the prompt
    /// closed it instead, and what followed read as the prompt's own text.
    static func closingOpenFence(_ text: String) -> String {
        var open: Int?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let run = line.prefix { $0 == "`" }.count
            guard run >= 3 else { continue }
            if let opened = open {
                if run >= opened && line.dropFirst(run).allSatisfy({ $0 == " " }) { open = nil }
            } else {
                open = run
            }
        }
        guard let open else { return text }
        return text + (text.hasSuffix("\n") ? "" : "\n") + String(repeating: "`", count: open)
    }

    private static func longestBacktickRun(_ text: String) -> Int {
        var longest = 0
        for line in text.linesSplitAtLF() {
            let stripped = line.drop(while: { $0 == " " })
            longest = max(longest, stripped.prefix(while: { $0 == "`" }).count)
        }
        return longest
    }
}
