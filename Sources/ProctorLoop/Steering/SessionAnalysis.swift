import Foundation
import ProctorSandbox

extension AnalysisStore {
    /// How many of a session agent's analyses keep their scratch outputs and whole log. Each is
    /// bounded (`max_output_bytes`, the launcher's stdio limit) but an agent can run them in a loop
    /// between experiments, so older ones keep only their record and the end of the log that their
    /// summary shows.
    public static let keptSessionAnalyses = 10

    /// A session agent's `proctor analyze`, run now (the caller holds the run's locks), as the
    /// reply the agent gets: the summary, the analysis number and the command's exit status.
    func sessionReply(_ command: [String], env: SandboxEnvironment, audit: AuditLog?, run: String) -> SessionProtocol.Reply {
        do {
            let record = try self.run(command: command, env: env, audit: audit, run: run, iteration: nil, origin: "session")
            pruneSessionAnalyses()
            return .init(accepted: true, message: summary(of: record), analysis: record.number, exitStatus: record.status)
        } catch {
            return .init(accepted: false, message: "refused: \(error)")
        }
    }

    /// Session analyses before the last `keptSessionAnalyses`: the scratch goes (links as links)
    /// and `output.log` becomes its last `summaryBytes` (and one), so their summaries read the same.
    /// Analyses a human asked for are never pruned.
    func pruneSessionAnalyses() {
        for record in records().filter({ $0.origin == "session" }).dropLast(Self.keptSessionAnalyses) {
            let scratch = scratchPath(record.number)
            guard access(scratch, F_OK) == 0 else { continue }
            FileTree.removeDirectory(scratch)
            // One byte more than `tail` reads: it then drops the same partial first line as before.
            let log = logPath(record.number)
            if let (end, size) = Self.lastBytes(of: log, Self.summaryBytes + 1), size > end.count, end.count == Self.summaryBytes + 1 {
                try? AtomicFile.write(Data(end), to: log)
            }
        }
    }
}
