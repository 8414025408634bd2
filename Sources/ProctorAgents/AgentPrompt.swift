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

        text += "# Current files\n\n"
        for path in context.editableFiles.keys.sorted() {
            let contents = context.editableFiles[path] ?? ""
            let fence = String(repeating: "`", count: max(3, longestBacktickRun(contents) + 1))
            text +=
                "FILE: \(path)\n\(fence)\n\(contents)\(contents.hasSuffix("\n") || contents.isEmpty ? "" : "\n")\(fence)\n\n"
        }
        text += "This is iteration \(context.iteration). Propose your next change in the answer format."
        return text
    }

    /// A single line of at most `limit` characters: tabs, line breaks and control characters
    /// become spaces (the ledger is tab-separated).
    static func oneLine(_ text: String, limit: Int = 200) -> String {
        var line = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) })
        line = line.trimmed()
        if line.count > limit { line = String(line.prefix(limit - 1)) + "…" }
        return line
    }

    private static func format(_ value: Double) -> String {
        "\(value)"
    }

    private static func longestBacktickRun(_ text: String) -> Int {
        var longest = 0
        for line in text.split(separator: "\n") {
            let stripped = line.drop(while: { $0 == " " })
            longest = max(longest, stripped.prefix(while: { $0 == "`" }).count)
        }
        return longest
    }
}
