/// The batch script of one measurement job: the experiment's launch, then (if it exited 0 and left
/// only regular files and directories in the outputs) the evaluator's, each with the exact
/// `proctor-sandbox` arguments a local launch passes (`LaunchPlan.arguments`), each launch's report
/// and exit status written to files in the job's directory, which proctor reads back (`SlurmJob`).
///
/// Every value in the script (paths, the plans' arguments: commands, environment values, mounts)
/// is single-quoted by `quote`: the shell treats none of it as code, whatever it holds. The
/// agent's words (the description) never reach the script at all.
public enum SlurmJobScript {
    /// One launch in the script: its plan, and where its stdout and stderr go (the run's logs).
    public struct Launch {
        public var plan: LaunchPlan
        public var stdout: String
        public var stderr: String

        public init(plan: LaunchPlan, stdout: String, stderr: String) {
            self.plan = plan
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    /// `value` as one single-quoted shell word: `'` becomes `'\''`; nothing inside is expanded.
    public static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The script; throws for a value the launcher could not receive anyway (a NUL byte).
    public static func text(launcher: String, directory: String, experiment: Launch, evaluator: Launch,
                            outputs: [String]) throws -> String {
        let words = [launcher, directory, experiment.stdout, experiment.stderr, evaluator.stdout, evaluator.stderr]
            + outputs + experiment.plan.arguments + evaluator.plan.arguments
        if words.contains(where: { $0.contains("\0") }) {
            throw SandboxError(.badPlan, "a launch argument holds a NUL byte; it cannot be passed to a Slurm job")
        }
        func launch(_ name: String, _ step: Launch) -> String {
            // As `Launcher.run` starts it: an empty environment, stdin from /dev/null, the report
            // on descriptor 3. No --parent-fd: the job's end (scancel, a time limit) signals the
            // launcher itself, which takes its sandbox with it. In the background, so that a signal
            // to the shell is passed on at once (`on_signal`); waited for until it is gone.
            let argv = ([launcher, "--report-fd", "3"] + step.plan.arguments).map(quote).joined(separator: " ")
            return """
            [ -z "$stop_signal" ] || stop_here
            /usr/bin/env -i \(argv) </dev/null >>\(quote(step.stdout)) 2>>\(quote(step.stderr)) 3>"$dir/\(name).report" &
            launcher=$!
            [ -z "$stop_signal" ] || kill -TERM "$launcher" 2>/dev/null
            until wait "$launcher"; rc=$?; ! kill -0 "$launcher" 2>/dev/null; do :; done
            launcher=
            [ -z "$stop_signal" ] || stop_here
            echo "$rc" >"$dir/\(name).status"
            """
        }
        let outputChecks = outputs.map { dir in
            """
            if ! found=$(find \(quote(dir)) ! -type f ! -type d -print -quit 2>&1) || [ -n "$found" ]; then
                echo "a link or special file in the outputs, or outputs it cannot list" >"$dir/evaluator.skipped"; exit 0
            fi
            """
        }.joined(separator: "\n")
        return """
        #!/bin/sh
        # Written by proctor for one measurement (issue 14): the experiment, then the evaluator, each
        # through proctor-sandbox with the plan a local launch would use. Every value is quoted.
        PATH=/usr/bin:/bin
        export PATH
        dir=\(quote(directory))
        echo "proctor measurement job ${SLURM_JOB_ID:-?} on $(hostname)"
        # A signal to this shell alone (`scancel --batch`) stops the measurement: it is passed on to
        # the launcher, which stops its sandbox, and the shell waits for it. A shell that died of it
        # would leave the launcher running on, unjudged, out of reach of the job's end where Slurm
        # finds a job's processes through their parents (proctrack/linuxproc).
        launcher= stop_signal=
        on_signal() { stop_signal=$1; [ -z "$launcher" ] || kill -TERM "$launcher" 2>/dev/null; }
        stop_here() { echo "proctor measurement job: SIG$stop_signal to its batch shell stopped the measurement" >&2; exit 1; }
        for signal in HUP INT QUIT ALRM TERM USR1 USR2; do trap "on_signal $signal" "$signal"; done
        \(launch("experiment", experiment))
        [ "$(cat "$dir/experiment.status")" = 0 ] || exit 0
        # The evaluator sees the hidden data: it never follows a link the experiment left (as locally),
        # and an outputs directory find cannot list (an experiment's chmod 0300) counts as one.
        \(outputChecks)
        \(launch("evaluator", evaluator))
        exit 0

        """
    }
}
