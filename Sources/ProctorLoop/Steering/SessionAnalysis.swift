import Foundation
import ProctorSandbox

extension AnalysisStore {
    /// A session agent's `proctor analyze`, run now (the caller holds the run's locks), as the
    /// reply the agent gets: the summary, the analysis number and the command's exit status.
    func sessionReply(_ command: [String], env: SandboxEnvironment, audit: AuditLog?, run: String) -> SessionProtocol.Reply {
        do {
            let record = try self.run(command: command, env: env, audit: audit, run: run, iteration: nil, origin: "session")
            return .init(accepted: true, message: summary(of: record), analysis: record.number, exitStatus: record.status)
        } catch {
            return .init(accepted: false, message: "refused: \(error)")
        }
    }
}
