import Foundation
import ProctorAgents
import ProctorGit
import ProctorSandbox

/// 10. Remember: after the record, the runtime's memory around the loop takes the iteration in
/// (`ResearchMemory`), rewrites `.proctor/memory/` (learnings, near misses, do-not-retry, the log,
/// the nudges delivered), and the nudges and analyses shown are marked delivered. Memory is never
/// the agent's own files: only proctor writes `.proctor/memory/`, which sandboxes see read-only.
/// A failure here is reported and the run goes on: the ledger is the record, and `--resume`
/// rebuilds the memory from it.
extension Runner {
    var memoryOptions: MemoryOptions {
        MemoryOptions(maximize: config.evaluator.maximize, nearMisses: config.memory.nearMisses,
                      plateauAfter: config.memory.plateauAfter)
    }

    /// The memory of a new run (fed its baseline) or of a resumed one (rebuilt from the ledger).
    func openMemory(baseline: RunRecord?) throws {
        let store = try MemoryStore(root: root, run: state.run)
        var memory = baseline == nil ? store.load(options: memoryOptions) : ResearchMemory(run: state.run, options: memoryOptions)
        if let baseline { memory.add(baseline, patch: nil) }
        self.memory = memory
        memoryStore = store
        // The user's list is locked and read from the pinned copy: it cannot change during a run.
        userDoNotRetry = config.memory.doNotRetry.map { MemoryStore.userLines(path: pinned.directory + "/" + $0) } ?? []
        writeMemoryFiles()  // makes .proctor/memory/ first
        try? writeNudgesFile()
        researchLog = ResearchLog(runner: self)
    }

    func writeMemoryFiles() {
        guard let memory, let memoryStore else { return }
        do {
            _ = try memoryStore.write(memory, userLines: userDoNotRetry)
        } catch {
            progress.line("warning: the research memory could not be written (\(error)); the ledger is complete and --resume rebuilds it")
        }
    }

    /// With `[memory] synthesize = "agent"` and an http agent, before the record is written: the
    /// memory with this iteration in, and the model's rewrite of learnings.md, whose tokens and cost
    /// go into the record. A failed call keeps the deterministic file (and says so).
    func synthesize(_ record: inout RunRecord, patch: String?) -> ResearchMemory? {
        guard config.memory.synthesize == "agent", let http = agent as? HTTPAgent, var next = memory else { return nil }
        next.add(record, patch: patch)
        guard let entry = ResearchLog.entry(record.iteration, memory: next, nudges: record.nudges ?? []) else { return next }
        let current = synthesizedLearnings ?? (try? String(contentsOfFile: root + "/.proctor/memory/" + MemoryStore.learningsFile, encoding: .utf8)) ?? ""
        do {
            let result = try http.synthesizeLearnings(current: current, deterministic: next.learningsMarkdown(), lastEntry: entry, patch: patch)
            synthesizedLearnings = result.text
            record.synthesisUsage = result.usage.map { AgentUsageRecord(promptTokens: $0.promptTokens, completionTokens: $0.completionTokens, costUSD: $0.costUSD) }
        } catch {
            progress.line("warning: [memory] synthesize = \"agent\": the model could not rewrite learnings.md (\(Ledger.clean("\(error)"))); kept the ledger's synthesis")
        }
        return next
    }

    /// Takes the recorded iteration in: the memory, its files, the log, the steering delivered.
    /// `synthesized`: the memory `synthesize` already fed this record.
    func remember(_ record: RunRecord, patch: String?, steering: Steering?, synthesized: ResearchMemory? = nil) {
        if let synthesized { memory = synthesized } else { memory?.add(record, patch: patch) }
        writeMemoryFiles()
        if let text = synthesizedLearnings {
            try? AtomicFile.write(Data(text.utf8), to: root + "/.proctor/memory/" + MemoryStore.learningsFile)
        }
        researchLog?.append(iteration: record.iteration, nudges: record.nudges ?? [], kept: record.status == .keep)
        do {
            try steering?.markDelivered()
            // Rewritten only when this iteration delivered some (it is fsynced).
            if steering?.nudges.isEmpty == false { try writeNudgesFile() }
        } catch {
            progress.line("warning: could not mark the nudges delivered (\(error)); they will be shown again")
        }
    }

    /// `.proctor/memory/nudges.md`: every nudge delivered so far, for agents that read files (a
    /// session agent gets them in its next verdict too).
    func writeNudgesFile() throws {
        let queue = NudgeQueue(root: root)
        let delivered = queue.all().filter { $0.id <= queue.delivered }
        guard !delivered.isEmpty else { return }
        let text = "# Messages from the human supervising this run (proctor nudge)\n\n"
            + delivered.map { "- \($0.text.replacingOccurrences(of: "\n", with: "\n  "))" }.joined(separator: "\n") + "\n"
        try AtomicFile.write(Data(text.utf8), to: root + "/.proctor/memory/nudges.md")
    }

    /// What the memory shows the agent with iteration `i`'s proposal.
    func fillMemory(_ shown: inout AgentMemory) {
        guard let memory else { return }
        // Nothing learned yet (the first proposal) is no section at all.
        if !memory.categoryNames.isEmpty { shown.learnings = synthesizedLearnings ?? memory.learningsMarkdown() }
        let userLines = userDoNotRetry
        if !memory.exhaustedCategories.isEmpty || !userLines.isEmpty {
            shown.doNotRetry = memory.doNotRetryMarkdown(userLines: userLines)
        }
        shown.nearMisses = memory.nearMissNotes().map {
            AgentMemory.NearMiss(iteration: $0.iteration, score: $0.score, description: $0.description, patch: $0.patch)
        }
        shown.iterationsWithoutKeep = memory.iterationsWithoutKeep
        shown.plateau = memory.plateau
        shown.plateauHint = memory.plateauHint
        for name in memory.categoryNames {
            let values = memory.exhaustedValues(name)
            if !values.isEmpty { shown.triedValues[name] = Set(values) }
        }
        shown.exhausted = Set(memory.exhaustedCategories)
    }
}

/// The forced log: every iteration gets an entry written by proctor (hypothesis, change, result,
/// takeaway) in `.proctor/memory/LOG.md`, appended at once and readable by agents; and, when the
/// workspace's notes name a `LOG.md`, the same entries go into that file inside each keep commit
/// (all entries since the previous keep), so the branch carries the log and the working tree never
/// differs from the last kept commit between iterations. What the agent wrote in its notes stays.
final class ResearchLog {
    unowned let runner: Runner
    /// The workspace's notes file named LOG.md, if any (workspace-relative).
    let workspaceFile: String?
    /// Entries not yet in the workspace's LOG.md (since the last keep), oldest first.
    private(set) var pending: [String] = []

    init(runner: Runner) {
        self.runner = runner
        workspaceFile = runner.config.files.notes.first {
            ($0 == "LOG.md" || $0.hasSuffix("/LOG.md")) && !$0.contains(where: { "*?[".contains($0) })
        }
        guard let memory = runner.memory else { return }
        let records = Ledger.records(in: runner.root + "/.proctor").filter { $0.run == runner.state.run }
        // After a resume: the entries recorded after the last keep of this run are not in the kept
        // commit. After by place in the ledger, not by number: under --parallel rows come in
        // completion order, and a higher-numbered row recorded before a keep went into its commit.
        let afterLastKeep = records.lastIndex(where: { $0.status == .keep }).map { $0 + 1 } ?? 0
        pending = records[afterLastKeep...].compactMap { ResearchLog.entry($0.iteration, memory: memory, nudges: $0.nudges ?? []) }
        // The run's section of .proctor/memory/LOG.md, and any entry a crash kept from it (between
        // a row and its entry): the ledger is the truth.
        let header = "# Run \(runner.state.run)\n"
        let text = (try? String(contentsOfFile: memoryPath, encoding: .utf8)) ?? ""
        var missing = records.filter { $0.iteration > 0 }
        if let section = text.range(of: header, options: .backwards) {
            let logged = Set(text[section.upperBound...].components(separatedBy: "## Iteration ").dropFirst()
                .compactMap { Int($0.prefix { $0.isNumber }) })
            missing.removeAll { logged.contains($0.iteration) }
        }
        let fd = open(memoryPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        if text.isEmpty { WriteAll.text(fd, "# Research log (written by proctor, one entry per iteration)\n\n") }
        if !text.contains(header) { WriteAll.text(fd, header + "\n") }
        for record in missing {
            if let entry = ResearchLog.entry(record.iteration, memory: memory, nudges: record.nudges ?? []) { WriteAll.text(fd, entry) }
        }
    }

    var memoryPath: String { runner.root + "/.proctor/memory/LOG.md" }

    /// Iteration `i`'s entry as `memory` renders it, with the nudges delivered to it.
    static func entry(_ i: Int, memory: ResearchMemory?, nudges: [String]) -> String? {
        guard i > 0, var entry = memory?.logEntry(for: i) else { return nil }
        entry += nudges.map { "- nudge: \(Ledger.clean($0))\n" }.joined()
        if !entry.hasSuffix("\n\n") { entry += "\n" }
        return entry
    }

    /// Appends iteration `i`'s entry to `.proctor/memory/LOG.md`; unless it was kept (its entry is
    /// in the keep commit already), it waits for the next keep to reach the workspace's LOG.md.
    func append(iteration i: Int, nudges: [String], kept: Bool) {
        guard let entry = Self.entry(i, memory: runner.memory, nudges: nudges) else { return }
        let fd = open(memoryPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if fd >= 0 {
            WriteAll.text(fd, entry)
            close(fd)
        }
        if !kept { pending.append(entry) }
    }

    /// Before a keep commit: the pending entries, the kept iteration's own included (`entry`), are
    /// appended to the workspace's LOG.md, which then joins the commit. Returns the path to commit
    /// too, nil when there is no such file or it is not a plain file (a link is never written through).
    func appendToWorkspace(keptEntry entry: String?) -> String? {
        guard let file = workspaceFile else { return nil }
        let entries = pending + (entry.map { [$0] } ?? [])
        guard !entries.isEmpty else { return nil }
        let path = runner.root + "/" + file
        // Every directory on the way a real directory: the file is the agent's to write, its place is not.
        var parent = (file as NSString).deletingLastPathComponent
        while !parent.isEmpty {
            var st = stat()
            guard lstat(runner.root + "/" + parent, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
            parent = (parent as NSString).deletingLastPathComponent
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink == 1 else { return nil }
        let size = lseek(fd, 0, SEEK_END)
        var text = entries.joined()
        if size > 0 {
            // Start on a line of its own.
            var last: UInt8 = 0
            if pread(fd, &last, 1, off_t(size - 1)) == 1, last != 0x0A { text = "\n" + text }
            text = "\n" + text
        }
        WriteAll.text(fd, text)
        return file
    }

    /// The kept iteration's entries are in its commit now.
    func committed() { pending = [] }
}
