import Foundation
import ProctorAgents
import ProctorConfig
import ProctorGit
import ProctorSandbox

/// What the agent is shown for its proposal: program.md, the goal, the recent history (never the
/// evaluator's words), the editable files, and the runtime's memory around the loop.
extension Runner {
    func agentContext(_ iteration: Int, memory: AgentMemory) throws -> AgentContext {
        let (files, notes, _) = agentFiles()
        try? FileManager.default.createDirectory(atPath: root + "/.proctor/logs/" + state.run, withIntermediateDirectories: true)
        let program = (try? String(contentsOfFile: root + "/program.md", encoding: .utf8)) ?? ""
        // The built-in agents' draws: from the run id, or from `[agent] seed` to repeat a search.
        let source = config.agent.seed.map { "seed \($0)" } ?? state.run
        // FNV-1a over the source, from the iteration (this proposal's draws) or from FNV's own
        // offset (the run's: the search design's shift, the same at every iteration).
        func hashed(from start: UInt64) -> UInt64 { source.utf8.reduce(start) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 } }
        let seed = hashed(from: UInt64(iteration) &* 0x9E37_79B9_7F4A_7C15)
        let runSeed = hashed(from: 0xCBF2_9CE4_8422_2325)
        var context = AgentContext(workspace: root, program: program, editableFiles: files, notesFiles: notes,
                            metric: config.evaluator.metric, maximize: config.evaluator.maximize,
                            bestScore: state.bestScore, history: history, iteration: iteration, seed: seed,
                            maxDiffLines: config.limits.diffLines, memory: memory,
                            transcript: root + "/.proctor/" + transcriptPath(iteration))
        context.runSeed = runSeed
        // The baseline was measured on the base commit (a run starts from a clean tree).
        if baselineFiles == nil, let base = ObjectID(hex: state.baseCommit) {
            baselineFiles = files.keys.reduce(into: [:]) { read, rel in
                if let bytes = try? repo.blob(at: rel, in: base) { read[rel] = String(decoding: bytes, as: UTF8.self) }
            }
        }
        context.baselineFiles = baselineFiles ?? [:]
        context.measured = measuredThisRun + inFlight.map {
            MeasuredIteration(iteration: $0.number, status: MeasuredIteration.running, description: $0.description, seedScores: [],
                              agent: recordedAgent)
        }
        context.inFlight = inFlight.map { "iteration \($0.number): \($0.description)" }
        return context
    }

    /// The editable files' texts and the notes files an agent is shown; `notText`: each editable
    /// file that is not UTF-8 (shown empty) with the first line that is not.
    private func agentFiles() -> (files: [String: String], notes: [String], notText: [String]) {
        let editable = config.files.editable.map(Glob.init)
        var files: [String: String] = [:]
        var notes: [String] = []
        var notText: [String] = []
        let noteGlobs = config.files.notes.map(Glob.init)
        // Never the hidden labels, the locked evaluator or the config, however broad the globs: these
        // files are the prompt of an http agent (sent to a remote model) and what it may rewrite.
        let offLimits = OffLimits(config)
        let listed = FileTree.regularFiles(under: root, skipping: config.files.outputs, reaching: editable + noteGlobs) { rel in
            !offLimits.contains(rel) && (editable.contains { $0.matches(rel) } || noteGlobs.contains { $0.matches(rel) })
        }
        for rel in listed {
            if editable.contains(where: { $0.matches(rel) }) {
                let data = FileManager.default.contents(atPath: root + "/" + rel) ?? Data()
                if let text = String(data: data, encoding: .utf8) {
                    files[rel] = text
                } else {
                    files[rel] = ""
                    let line = data.split(separator: 0x0A, omittingEmptySubsequences: false).firstIndex { String(data: Data($0), encoding: .utf8) == nil }
                    notText.append("\(rel):\((line ?? 0) + 1)")
                }
            }
            if noteGlobs.contains(where: { $0.matches(rel) }) { notes.append(rel) }
        }
        for pattern in config.files.notes where !pattern.contains(where: { "*?[".contains($0) }) && !notes.contains(pattern)
            && !offLimits.contains(pattern) {
            notes.append(pattern)
        }
        return (files, notes.sorted(), notText.sorted())
    }

    /// Before the run starts: the agent's own check of the files it will edit (the built-in agents'
    /// `# mutate:` markers), so that a typo in one is refused at once (exit 125), not found by the
    /// first proposal after the baseline was measured, and then as a crash row each iteration; a
    /// workspace with nothing to move starts with a warning.
    func checkAgent() throws {
        let (files, notes, notText) = agentFiles()
        // The built-in agents read and rewrite the editable files as UTF-8 text: a Latin-1 train.py
        // read as empty (no markers, "every proposal will fail"; an http agent shown nothing).
        if agentName != "command", let first = notText.first {
            throw LoopError(.refused, "the \(agentName) agent cannot start: \(first): not UTF-8 text; the \(agentName) agent reads and writes the editable files as UTF-8 (convert the file, or use a command agent)")
        }
        let context = AgentContext(workspace: root, program: "", editableFiles: files, notesFiles: notes,
                                   metric: config.evaluator.metric, maximize: config.evaluator.maximize, bestScore: nil,
                                   history: [], iteration: 0, seed: 0, maxDiffLines: config.limits.diffLines)
        do {
            for warning in try agent.check(context) { progress.line("warning: the \(agentName) agent: \(warning)") }
        } catch AgentError.failed(let reason) {
            throw LoopError(.refused, "the \(agentName) agent cannot start: \(reason)")
        }
    }

    /// The history a prompt shows: the last `historyLength` records, read once when the run starts or
    /// resumes (every run in this workspace, as the ledger holds them), then kept up by `record`:
    /// reading runs.jsonl for every proposal would cost more each iteration of a long night.
    /// With it, every record of this run for the `search` agent (`measuredThisRun`).
    func loadHistory() {
        let records = Ledger.records(in: root + "/.proctor")
        history = records.suffix(Runner.historyLength).map(Runner.historyEntry)
        measuredThisRun = records.filter { $0.run == state.run }.map(Runner.measuredIteration)
        baselineFiles = nil
    }

    /// Appends a record just written to the history of the next prompt.
    func appendHistory(_ record: RunRecord) {
        if record.run == state.run { measuredThisRun.append(Runner.measuredIteration(record)) }
        history.append(Runner.historyEntry(record))
        if history.count > Runner.historyLength { history.removeFirst(history.count - Runner.historyLength) }
    }

    static let historyLength = 50

    /// One record as the `search` agent models it: the agent's description and every seed's score.
    static func measuredIteration(_ record: RunRecord) -> MeasuredIteration {
        MeasuredIteration(iteration: record.iteration, status: record.status.rawValue, description: record.description,
                          seedScores: record.scores.compactMap(\.score), agent: record.agent)
    }

    /// A row's description with its reason in brackets, for anything but a keep or discard: the
    /// ledger's row with the reason's `ledgerText`, a prompt's history with its `agentText`. Each
    /// part is cut at 300 characters on its own: an agent's description padded to the cap and
    /// ending in a made-up `[reason]` must not push the real one out of the row.
    static func rowDescription(_ description: String, reason: String?, status: IterationStatus) -> String {
        let shown = description.prefix(scalars: 300)
        guard let reason, status != .keep && status != .discard else { return shown }
        return shown + " [\(reason.prefix(scalars: 300))]"
    }

    /// One record as a prompt's history shows it: its description and `agentReason`, never its
    /// `reason` (which quotes the evaluator). The score is the ledger's (six decimals), as before.
    static func historyEntry(_ record: RunRecord) -> HistoryEntry {
        let description: String
        if record.reason != nil && record.agentReason == nil {
            description = legacyAgentVisibleHistory(Ledger.clean(rowDescription(record.description, reason: record.reason, status: record.status), limit: Ledger.rowDescriptionLimit))
        } else {
            description = Ledger.clean(rowDescription(record.description, reason: record.agentReason, status: record.status), limit: Ledger.rowDescriptionLimit)
        }
        return HistoryEntry(iteration: record.iteration, status: record.status.rawValue,
                            score: record.score.map { Double(LedgerRow.scoreField($0)) ?? $0 }, description: description)
    }

    /// Only for records written before `agentReason` existed (a run continued with `--resume`
    /// across the upgrade): their reason is the ledger's text alone, so the evaluator's words are
    /// cut where the old reasons marked them. The row is `description [reason]`, and the reason
    /// always follows the description, so cutting at the first evaluator marker removes it even
    /// when the agent wrote such a marker in its own description. Live reasons never come here:
    /// their `agentText` is typed (`FailureReason`).
    static func legacyAgentVisibleHistory(_ description: String) -> String {
        let cut = [" [evaluator", " [confirmation: evaluator"].compactMap { description.range(of: $0)?.lowerBound }.min()
        guard let cut else { return description }
        return String(description[..<cut]) + " [" + FailureReason.evaluatorHidden + "]"
    }

    /// The transcript of iteration `i`'s agent, relative to `.proctor/`.
    func transcriptPath(_ iteration: Int) -> String {
        "logs/\(state.run)/\(iteration)-agent.log"
    }

    /// The memory shown with iteration `i`'s proposal.
    func agentMemory(_ iteration: Int) -> AgentMemory {
        var memory = AgentMemory()
        if let (_, phase) = config.phase(at: iteration) {
            memory.phase = .init(name: phase.name, strategy: phase.strategy, until: phase.until)
        }
        fillMemory(&memory)
        memory.directory = Transcript.memorySource(root) == nil ? nil : Transcript.memoryMount
        return memory
    }
}
