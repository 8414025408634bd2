import ProctorConfig
import ProctorLoop
import ProctorSandbox

/// The statuses `proctor` exits with for its own failures (README, `proctor exec` and `proctor run`),
/// and the one table from an error's code to them (issue 9). A command states only what a plain
/// failure means where it is; refusals and interrupts exit the same everywhere.
enum ExitStatus {
    /// Bad input or a refused start (a flag, a `proctor.toml` key, a dirty tree, the lock held), and
    /// proctor's own failure for every command but a run under way and `proctor experiment`.
    static let badInput: Int32 = 125
    /// Ctrl-C (SIGINT, SIGTERM).
    static let interrupted: Int32 = 130
    /// `proctor run` or `proctor session` broke on the way, after its start checks passed.
    static let runFailed: Int32 = 1
    /// `proctor experiment` could not reach its session (outside one, or the channel broke).
    static let noSession: Int32 = 2

    /// The status for `error`: a refusal or a held lock exits 125 and an interrupt 130 wherever they
    /// happen; any other failure (I/O, git, a plan, a run that broke) exits `failed`, what failing
    /// means where the command is: `badInput`, `runFailed` or `noSession`.
    static func of(_ error: Error, failed: Int32) -> Int32 {
        switch error {
        case let error as LoopError:
            switch error.code {
            case .refused: return badInput
            case .interrupted: return interrupted
            case .failed, .io: return failed
            }
        case let error as SandboxError:
            switch error.code {
            case .lockBusy, .interpreter, .slurmRequirement, .mountLimit, .hostSetting: return badInput
            case .badPlan, .notInstalled, .planted, .slurm, .io: return failed
            }
        case is ConfigError:
            return badInput  // `proctor.toml` against what the run finds (a locked name matching nothing)
        default:
            return failed
        }
    }
}
