/// `[executor]`: where each measurement (one seed's experiment, then its evaluator) runs. `local`
/// (the default) launches both on this machine; `slurm` submits them as one Slurm job whose script
/// runs the same launcher with the same plans on a compute node (issue 14).
public struct ExecutorSettings: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        case local, slurm
    }

    public var kind: Kind = .local
    /// `sbatch --partition`, `--account`, `--qos`; nil leaves the cluster's default.
    public var partition: String? = nil
    public var account: String? = nil
    public var qos: String? = nil
    /// `sbatch --cpus-per-task` (the experiment's CPU count on the node).
    public var cpusPerTask: Int = 1
    /// Added to the experiment's and the evaluator's timeouts for `sbatch --time`: the job's start,
    /// the launcher's set-up and the grace periods fit in it, and the launcher's own limits end the
    /// commands first.
    public var timeMarginMs: Int64 = 120_000
    /// More `sbatch` options, one per element, passed as written (`["--constraint=a100"]`).
    public var extraArgs: [String] = []

    public init() {}

    /// The `[executor]` table (missing: every key takes its default).
    static func read(_ table: inout TableReader) throws -> ExecutorSettings {
        var settings = ExecutorSettings()
        if let kind = try table.string("kind", oneOf: Kind.allCases.map(\.rawValue)) { settings.kind = Kind(rawValue: kind)! }
        for key in ["partition", "account", "qos"] {
            guard let value = try table.string(key) else { continue }
            // A name Slurm accepts: an option's value, never a second option or an empty one.
            guard !value.isEmpty, !value.hasPrefix("-"),
                  value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.,".contains($0)) }) else {
                throw table.error(key, "expected a Slurm \(key) name (letters, digits, - _ . ,), got \"\(value)\"")
            }
            switch key {
            case "partition": settings.partition = value
            case "account": settings.account = value
            default: settings.qos = value
            }
        }
        if let cpus = try table.int("cpus_per_task", min: 1, max: 4096) { settings.cpusPerTask = cpus }
        if let margin = try table.duration("time_margin") { settings.timeMarginMs = margin }
        if let extra = try table.strings("extra_args") {
            // `--` alone ends sbatch's options: the next word (proctor's own --job-name=...) would be
            // taken for the script, and every option after it dropped.
            for arg in extra where !arg.hasPrefix("--") || arg.prefix(while: { $0 != "=" }).count <= 2 || arg.contains("\n") || arg.contains("\0") {
                throw table.error("extra_args", "expected sbatch long options such as \"--constraint=a100\", got \"\(arg)\"")
            }
            // Options proctor sets itself: given twice, the cluster would take one of the two silently
            // (later ones win: `--requeue` would undo `--no-requeue`, `--export=ALL` hand the job the
            // supervisor's environment, its API keys included). sbatch takes any unambiguous
            // abbreviation of a long option, so a prefix of one of these is one of these.
            let owned = ["--job-name", "--dependency", "--output", "--error", "--time", "--mem", "--cpus-per-task",
                         "--gres", "--partition", "--account", "--qos", "--parsable", "--comment", "--chdir", "--wrap",
                         "--export", "--export-file", "--get-user-env", "--requeue", "--no-requeue"]
            // Options that change what one measurement is: several copies of it (`--array`), another
            // user or image, burst-buffer scripts, a blocking or dry-run submission, #PBS lines read
            // as options, signals before the time limit (the launcher's own timeouts end a
            // measurement; a signal to the job's processes is a stop or, SIGUSR1, a freeze).
            let refused = ["--array", "--uid", "--gid", "--container", "--bb", "--bbf", "--wait", "--test-only",
                           "--ignore-pbs", "--signal"]
            for arg in extra {
                let name = String(arg.prefix { $0 != "=" })
                let abbreviated = { (option: String) in name == option ? "" : " (\(option), abbreviated)" }
                if let option = owned.first(where: { $0.hasPrefix(name) && name.count > 2 }) {
                    throw table.error("extra_args", "\(name)\(abbreviated(option)) is set by proctor (use partition, account, qos, cpus_per_task, or the experiment's budgets)")
                }
                if let option = refused.first(where: { $0.hasPrefix(name) && name.count > 2 }) {
                    throw table.error("extra_args", "\(name)\(abbreviated(option)) changes what one measurement is: proctor submits one job per measurement, as the submitting user, ended by the budgets of proctor.toml")
                }
            }
            // An option with a value written as two words (`--mail-user`, then nothing) took
            // proctor's next option (`--job-name=...`) for its value: the one-job-per-workspace
            // lock and the lookup of a job by its comment were lost. A value goes after `=`; bare,
            // only the flags that take none.
            let flags = ["--exclusive", "--contiguous", "--hold", "--overcommit", "--oversubscribe", "--spread-job",
                         "--use-min-nodes", "--reboot", "--no-kill", "--quiet", "--verbose"]
            if let bare = extra.first(where: { !$0.contains("=") && !flags.contains($0) }) {
                throw table.error("extra_args", "\(bare) without a value: write options that take one as \"\(bare)=VALUE\" (bare, only \(flags.joined(separator: ", ")))")
            }
            settings.extraArgs = extra
        }
        try table.finish()
        return settings
    }
}
