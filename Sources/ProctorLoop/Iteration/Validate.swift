import Foundation
import ProctorConfig
import ProctorGit
import ProctorSandbox

extension Iteration {
    /// 3. Validate: locked files must still match their pins, then the diff against the last kept
    /// commit must follow the policy. Nothing runs before this passes.
    func validate() throws -> IterationEnd? {
        runner.restoreOwnerAccess()
        let tampered = try runner.tamperedLockedFiles()
        if !tampered.isEmpty {
            return ends(.rejected, reason: .lockedFilesChanged(tampered),
                        violations: tampered.map { "\($0): tamper" },
                        audit: tampered.map { rejection(phase: .validate, kind: .tamper, path: $0, rule: .locked,
                                                        detail: "differs from its pin") })
        }
        let policy = runner.diffPolicy
        let violations: [Violation]
        do {
            changes = try runner.repo.loopStatus(against: best, config: runner.config, scoped: true, policy: policy)
            stats = DiffStats(changes)
            violations = try runner.repo.violations(changes, of: best, policy: policy)
        } catch {
            // A tree that changed while it was read (a walk that found a directory moved) is the
            // doing of a session agent that ran while frozen: its iteration, not the run, ends.
            if let ran = ranWhileFrozen() { return ran }
            throw error
        }
        // Ctrl-C while a large change was looked at (a minute for thousands of files): abandoned
        // now, not recorded and the interrupt lost.
        if runner.stop.requested { return .abandoned }
        // What was just read may have been changed under the reading: rejected at once, and
        // audited, whatever else the validation found.
        if let ran = ranWhileFrozen() { return ran }
        if !violations.isEmpty {
            return ends(.rejected, reason: .violations(violations.map(\.description)),
                        violations: violations.map(\.description),
                        audit: violations.map { rejection(phase: .validate, kind: .diff, path: $0.path,
                                                          rule: AuditRule(rawValue: $0.rule.rawValue), detail: $0.message) })
        }
        if changes.isEmpty {
            return ends(.discard, reason: .noChange, description: proposal.description + " (no change)")
        }
        // The exact change, kept for the memory (near misses are re-appliable); one already
        // measured in this run is not measured again.
        // Notes never affect the score: they are neither a category of change nor make a proposal new.
        patch = try codePatch()
        if let first = patch.flatMap({ runner.memory?.duplicate(of: $0) }) {
            return ends(.discard, reason: .duplicate(of: first),
                        description: proposal.description + " (duplicate of iteration \(first))")
        }
        validated = runner.fingerprint(changes)
        return nil
    }

    /// The change to everything but the notes, as a unified diff against `best`; nil for none.
    func codePatch() throws -> String? {
        let policy = runner.diffPolicy
        let code = Set(changes.flatMap { [$0.path, $0.oldPath] }.filter { path in !path.isEmpty && !policy.isNotes(path) })
        return code.isEmpty ? nil : try runner.repo.diffText(against: best, paths: code.sorted())
    }

    /// A session agent frozen for this iteration that ran anyway (a timer's SIGCONT): `rejected`,
    /// audited as `session-freeze`; nil when it stayed frozen (or there is none).
    func ranWhileFrozen() -> IterationEnd? {
        guard let sandbox = runner.sessionSandbox, sandbox.ranWhileFrozen() else { return nil }
        // Killed before the revert that follows: awake, it raced it (a link put back where the
        // revert was writing, through which a host file was written).
        sandbox.killEverything()
        let reason = Runner.ranWhileFrozen
        return ends(.rejected, reason: .ranWhileFrozen, violations: [reason],
                    audit: [rejection(phase: .validate, kind: .tamper, rule: .sessionFreeze, detail: reason)])
    }

    /// Re-validation while the candidate is measured and kept: a session agent keeps running
    /// meanwhile, and whatever it changes after asking must not be kept under this score.
    func inputsMoved() throws -> IterationEnd? {
        if inSlot { return nil }
        // A frozen session agent that ran anyway (a timer's SIGCONT) may have shown the
        // experiment other bytes and put the validated ones back: the fingerprint cannot tell.
        if let ran = ranWhileFrozen() { return ran }
        let moved = try runner.movedPaths(since: validated, against: best)
        guard !moved.isEmpty else { return nil }
        return ends(.rejected, reason: .inputsMoved(moved),
                    violations: moved.map { "\($0): changed while the experiment ran" },
                    audit: moved.map { rejection(phase: .validate, kind: .tamper, path: $0, rule: .experimentInput,
                                                 detail: "changed while the experiment ran") })
    }
}

extension Runner {
    /// Gives the owner back read and write on every file, and search on every directory, of the
    /// agent's writable places (the supervisor owns them: the agent's writes are its user's), and
    /// takes write away from the group and others. An agent's `chmod 000 train.py` (or a 0777
    /// umask) left a file libgit2 could not read and a revert could not write: as a user, the run
    /// stopped; a `chmod 666` let every local user change the next candidate. Only agents that run
    /// in a sandbox (a command agent, a session's) write there themselves; none runs now (it
    /// ended, or is frozen).
    func restoreOwnerAccess() {
        guard sessionCommand != nil || agentName == "command",
            let plan = try? env.compilePlan(phase: .agent, command: ["true"], seed: nil)
        else { return }
        // What the mode should be; nil for a link or a special file (the validation refuses it).
        func mended(_ mode: mode_t) -> mode_t? {
            let owner: mode_t = mode & S_IFMT == S_IFDIR ? 0o700 : mode & S_IFMT == S_IFREG ? 0o600 : 0
            guard owner != 0 else { return nil }
            let mended = ((mode & 0o7777) | owner) & ~0o022
            return mended != mode & 0o7777 ? mended : nil
        }
        for place in plan.writable {
            var info = stat()
            guard lstat(place, &info) == 0 else { continue }
            // Each change through the directory the walk read it from and without following a
            // link: an agent that keeps running while it should be frozen swaps what the walk is
            // about to reach for a link onto the host (its modes were changed, as root).
            if let mode = mended(info.st_mode) { fchmodat(AT_FDCWD, place, mode, AT_SYMLINK_NOFOLLOW) }
            // The walk gives each directory its owner's bits back before reading it.
            if info.st_mode & S_IFMT == S_IFDIR {
                try? FileTree.walk(place, removing: false) { entry in
                    if let mode = mended(entry.mode) { entry.chmod(mode) }
                }
            }
        }
    }
}

extension DiffStats {
    /// The paths and line counts of `changes`, the list bounded: an agent's 12,000 new files of
    /// 4,000-byte names wrote 48 MB into each record (and every `status` and report read them).
    init(_ changes: [Change]) {
        let paths = changes.map(\.path)
        self.init(files: paths.prefix(Self.filesListed).map { $0.prefix(scalars: Self.pathScalars) },
                  added: changes.reduce(0) { $0 + $1.addedLines }, removed: changes.reduce(0) { $0 + $1.removedLines },
                  filesOmitted: paths.count > Self.filesListed ? paths.count - Self.filesListed : nil)
    }
}
