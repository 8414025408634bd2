import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

/// What the agent is shown for its proposal: program.md, the goal, the recent history (never the
/// evaluator's words), the editable files, and the runtime's memory around the loop.
extension Runner {
    func agentContext(_ iteration: Int, memory: AgentMemory) throws -> AgentContext {
        let editable = config.files.editable.map(Glob.init)
        var files: [String: String] = [:]
        var notes: [String] = []
        let noteGlobs = config.files.notes.map(Glob.init)
        // Never the hidden labels, the locked evaluator or the config, however broad the globs: these
        // files are the prompt of an http agent (sent to a remote model) and what it may rewrite.
        let listed = FileTree.regularFiles(under: root, skipping: config.files.outputs) { rel in
            !config.isOffLimitsToAgents(rel) && (editable.contains { $0.matches(rel) } || noteGlobs.contains { $0.matches(rel) })
        }
        for rel in listed {
            if editable.contains(where: { $0.matches(rel) }) {
                files[rel] = (try? String(contentsOfFile: root + "/" + rel, encoding: .utf8)) ?? ""
            }
            if noteGlobs.contains(where: { $0.matches(rel) }) { notes.append(rel) }
        }
        for pattern in config.files.notes where !pattern.contains(where: { "*?[".contains($0) }) && !notes.contains(pattern)
            && !config.isOffLimitsToAgents(pattern) {
            notes.append(pattern)
        }
        let history = Ledger.rows(in: root + "/.proctor").suffix(50).map {
            HistoryEntry(iteration: $0.iteration, status: $0.status.rawValue, score: $0.score,
                         description: SessionAgent.agentVisibleHistory($0.description))
        }
        try? FileManager.default.createDirectory(atPath: root + "/.proctor/logs/" + state.run, withIntermediateDirectories: true)
        let program = (try? String(contentsOfFile: root + "/program.md", encoding: .utf8)) ?? ""
        var seed = UInt64(iteration) &* 0x9E37_79B9_7F4A_7C15
        for byte in state.run.utf8 { seed = (seed ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return AgentContext(workspace: root, program: program, editableFiles: files, notesFiles: notes.sorted(),
                            metric: config.evaluator.metric, maximize: config.evaluator.maximize,
                            bestScore: state.bestScore, history: Array(history), iteration: iteration, seed: seed,
                            maxDiffLines: config.limits.diffLines, memory: memory,
                            transcript: root + "/.proctor/" + transcriptPath(iteration))
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
