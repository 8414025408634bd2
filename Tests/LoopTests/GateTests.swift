import Foundation
import XCTest

@testable import ProctorLoop

/// Issue 3, steps 6-8: limits on what the evaluator measured, the multi-seed gate, keep as a commit on
/// `proctor/<run>`, revert to the last kept commit.
final class GateTests: XCTestCase {
    /// Great on seed 42, bad on the confirmation seeds: the mean does not beat the best, so no commit.
    func testWinOnOneSeedButNotOnTheMeanIsNotKept() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var BONUS 1; echo "SUMMARY: lucky seed" ;;
            2) set_var BONUS 2; echo "SUMMARY: exact everywhere" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "2"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2])
        let baseline = try XCTUnwrap(ws.row(0)?.score)
        XCTAssertEqual(baseline, 0.5, accuracy: 0.001)
        XCTAssertEqual(ws.record(0)?["scores"].flatMap { $0 as? [Any] }?.count, 3, "the baseline is measured on every seed")

        let lucky = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(lucky.status, "discard", lucky.fields.joined(separator: " "))
        XCTAssertEqual(lucky.commit, "")
        let record = try XCTUnwrap(ws.record(1))
        let scores = try XCTUnwrap(record["scores"] as? [[String: Any]])
        let seeds = scores.compactMap { ($0["seed"] as? NSNumber)?.intValue }
        XCTAssertEqual(seeds.count, 3, "confirmed on two seeds")
        XCTAssertEqual(seeds.first, 42)
        XCTAssertEqual(Set(seeds).count, 3)
        XCTAssertTrue(Set(seeds).isDisjoint(with: [17, 73]), "a candidate's confirmation seeds are fresh: \(seeds)")
        XCTAssertEqual(try XCTUnwrap(scores[0]["score"] as? Double), 1.0, accuracy: 0.001, "it won on seed 42")
        XCTAssertEqual(try XCTUnwrap(lucky.score), 0.2, accuracy: 0.001, "the ledger's score is the mean")
        XCTAssertEqual(try XCTUnwrap(record["score"] as? Double), 0.2, accuracy: 0.001)

        // The honest improvement right after is kept on top of the baseline, not of the lucky attempt.
        let honest = try XCTUnwrap(ws.row(2))
        XCTAssertEqual(honest.status, "keep")
        let branch = try XCTUnwrap(ws.branch)
        XCTAssertEqual(try ws.git(["rev-list", "--count", branch]), "2", "init + one keep")
        XCTAssertEqual(try ws.git(["log", "-1", "--format=%s", branch]), "exact everywhere")
        // Each candidate's are its own: the keep's are not the lucky attempt's, and its commit says which.
        let keptSeeds = (ws.record(2)?["scores"] as? [[String: Any]] ?? []).compactMap { ($0["seed"] as? NSNumber)?.intValue }
        XCTAssertEqual(keptSeeds.count, 3)
        XCTAssertTrue(Set(keptSeeds.dropFirst()).isDisjoint(with: seeds), "\(keptSeeds) against \(seeds)")
        XCTAssertTrue(try ws.git(["log", "-1", "--format=%b", branch]).contains("mean over seeds " + keptSeeds.map(String.init).joined(separator: ",")))
        XCTAssertEqual(try ws.git(["diff", "HEAD^", "HEAD", "--stat", "--format="]).contains("train.py"), true)
        XCTAssertFalse(try ws.git(["show", "HEAD:train.py"]).contains("BONUS = 1"))
        XCTAssertEqual(try ws.gitStatus(), "")
    }

    /// Code tuned to the seeds the workspace lists (exact on 42, 17 and 73, unchanged elsewhere: what
    /// an agent gets by tuning a noise offset per known seed) passes the first seed and the mean over
    /// all three, but its fresh confirmation seeds score like the best's: not kept. With
    /// `fresh_seeds = false` the same change is confirmed on 17 and 73 and kept, which is the hole.
    func testCodeTunedToTheListedSeedsIsNotKept() throws {
        for fresh in [true, false] {
            var spec = WorkspaceSpec()
            spec.agentScript = agentPrelude + "set_var BONUS 3; echo \"SUMMARY: tuned to the seeds\"\n"
            if !fresh { spec.minImprovement = "0.001\nfresh_seeds     = false" }
            let ws = try LoopWorkspace(spec)
            let result = try ws.run(["--iterations", "1"])
            XCTAssertEqual(result.status, 0, result.text)
            let row = try XCTUnwrap(ws.row(1))
            let seeds = (ws.record(1)?["scores"] as? [[String: Any]] ?? []).compactMap { ($0["seed"] as? NSNumber)?.intValue }
            XCTAssertEqual(seeds.count, 3, "confirmed: it beat the best on seed 42")
            if fresh {
                XCTAssertEqual(row.status, "discard", row.fields.joined(separator: " "))
                XCTAssertEqual(ws.record(1)?["reason"] as? String, "mean over the confirmation seeds does not beat the best's")
                XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "1", "nothing kept")
                XCTAssertTrue(Set(seeds).isDisjoint(with: [17, 73]))
            } else {
                XCTAssertEqual(row.status, "keep", row.fields.joined(separator: " "))
                XCTAssertEqual(seeds, [42, 17, 73])
            }
        }
    }

    /// Code that scores worse when it was written long before it is measured (a later run's
    /// baseline; it could carry its own writing time as well) made the next run's change that
    /// does nothing a keep: its baseline was sandbagged. The earlier run's score of the same commit
    /// sets the best instead, said and audited, and the comment-only change is not kept.
    func testASandbaggedBaselineDoesNotLowerTheNextRunsBest() throws {
        var spec = WorkspaceSpec()
        spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(
            of: "x = X\n", with: "x = X\nif time.time() - os.path.getmtime(__file__) > 600:\n    x = X - 0.3\n")
        spec.agentScript = agentPrelude + """
            if grep -q '^X = 0.6 ' train.py; then echo "# tidy" >> train.py; echo "SUMMARY: tidy up"
            else set_var X 0.6; echo "SUMMARY: x=0.6"; fi
            """
        let ws = try LoopWorkspace(spec)
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        XCTAssertEqual(ws.row(1)?.status, "keep")
        let kept = try XCTUnwrap(ws.row(1)?.score)
        XCTAssertEqual(kept, 0.9, accuracy: 0.001)
        // The next night: the kept code was written an hour ago.
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: ws.path("train.py"))
        let second = try ws.run(["--iterations", "1"])
        XCTAssertEqual(second.status, 0, second.text)
        XCTAssertEqual(try XCTUnwrap(ws.row(0)?.score), 0.6, accuracy: 0.001, "the ledger keeps what the baseline scored")
        XCTAssertTrue(second.text.contains("warning: the baseline scored ") && second.text.contains(", clearly below the ") && second.text.contains("this run's best starts from"), second.text)
        let tidy = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(tidy.description, "tidy up")
        XCTAssertEqual(tidy.status, "discard", tidy.fields.joined(separator: " "))
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "2", "init + the first run's keep: nothing new kept")
        XCTAssertEqual(ws.audit.filter { $0["rule"] as? String == "baseline-drop" }.count, 1, "one baseline-drop record")
    }

    /// The same sandbagging aimed at the seeds only baselines get (17 and 73, never a candidate's):
    /// two of three seeds worse by d lower the mean by 2d/3, under the three standard deviations
    /// (1.7d) of the baseline's own scores that the rule's margin was, so a red team's comment-only
    /// change was kept in run after run. The better measurement of the commit sets the best now,
    /// whatever the margin. And code that ignores those seeds (scoring as on 42) turned the seed
    /// check off for the run (a baseline spread of zero): the earlier measurement's spread holds.
    func testABaselineSandbaggedOnItsListedSeedsDoesNotLowerTheNextRunsBest() throws {
        // "squashed": the kept commit squashed onto another branch (the morning's merge) before
        // the next run, a new commit with the same files.
        for variant in ["worse", "seedless", "squashed"] {
            var spec = WorkspaceSpec()
            let bag = variant != "seedless" ? "if seed in (17, 73):\n    x = X - 0.3\n" : "if seed in (17, 73):\n    seed = 42\n"
            spec.train = WorkspaceSpec.defaultTrain.replacingOccurrences(of: "x = X\n", with: "x = X\n" + bag)
            spec.agentScript = agentPrelude + (variant != "seedless" ? """
                if grep -q '^X = 0.6 ' train.py; then echo "# tidy" >> train.py; echo "SUMMARY: tidy up"
                else set_var X 0.6; echo "SUMMARY: x=0.6"; fi
                """ : """
                if grep -q '^X = 0.6 ' train.py; then set_var X 0.7; sed 's/^seed = int(.*/seed = 42/' train.py > "$HOME/t" && cat "$HOME/t" > train.py; echo "SUMMARY: my seed"
                else set_var X 0.6; echo "SUMMARY: x=0.6"; fi
                """)
            let ws = try LoopWorkspace(spec)
            XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
            XCTAssertEqual(ws.row(1)?.status, "keep", variant)
            if variant == "squashed" {
                try ws.git(["checkout", "-q", "-b", "merged", ws.branch!])
                try ws.git(["reset", "-q", "--soft", "HEAD~1"])
                try ws.git(["-c", "user.name=me", "-c", "user.email=me@example.org", "commit", "-qm", "squashed: x=0.6"])
            }
            let second = try ws.run(["--iterations", "1"])
            XCTAssertEqual(second.status, 0, second.text)
            let next = try XCTUnwrap(ws.row(1), variant)
            if variant != "seedless" {
                XCTAssertEqual(try XCTUnwrap(ws.row(0)?.score), 0.7, accuracy: 0.001, "the ledger keeps what the baseline scored")
                XCTAssertEqual(next.description, "tidy up")
                XCTAssertEqual(next.status, "discard", next.fields.joined(separator: " "))
                // A third run: the last earlier measurement is the second run's sandbagged baseline;
                // the best of them all (the first run's keep) still sets the best.
                let third = try ws.run(["--iterations", "1"])
                XCTAssertEqual(third.status, 0, third.text)
                XCTAssertEqual(ws.row(1)?.status, "discard", ws.row(1)?.fields.joined(separator: " ") ?? "")
            } else {
                XCTAssertEqual(next.status, "rejected", next.fields.joined(separator: " "))
                XCTAssertTrue(next.description.hasPrefix("my seed [the score ignores PROCTOR_SEED (identical over seeds 42,"), next.description)
            }
            XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "2", "\(variant): init + the first run's keep: nothing new kept")
        }
    }

    /// Code that keeps seed 42 (whose scores the agent sees) and swaps every other seed for one it
    /// found lucky there gets past fresh seeds: its confirmation seeds score the same, where the
    /// baseline's varied. Rejected and audited as `seed`, naming the confirmation seeds.
    func testConfirmationSeedsSwappedForOneSeedAreRejected() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + "set_var BONUS 4; echo \"SUMMARY: my lucky seed\"\n"
        let ws = try LoopWorkspace(spec)
        XCTAssertEqual(try ws.run(["--iterations", "1"]).status, 0)
        let row = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(row.status, "rejected", row.fields.joined(separator: " "))
        let seeds = (ws.record(1)?["scores"] as? [[String: Any]] ?? []).compactMap { ($0["seed"] as? NSNumber)?.intValue }
        XCTAssertEqual(seeds.count, 3)
        XCTAssertTrue(row.description.contains("identical over seeds \(seeds[1]),\(seeds[2])"), row.description)
        XCTAssertEqual(ws.audit.filter { $0["kind"] as? String == "seed" }.first?["decision"] as? String, "rejected")
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "1", "nothing kept")
    }

    /// A `min_improvement` below the baseline's seed-to-seed deviation is said at the start, loudly;
    /// one above it is not (the evaluator's seeded noise here is at most 1e-5).
    func testAGateBelowTheSeedNoiseIsWarnedAbout() throws {
        for (minImprovement, warned) in [("0.000001", true), ("0.001", false)] {
            var spec = WorkspaceSpec()
            spec.minImprovement = minImprovement
            spec.agentScript = agentPrelude + "set_var X 0.5; echo \"SUMMARY: X\"\n"
            let ws = try LoopWorkspace(spec)
            let result = try ws.run(["--iterations", "1"])
            XCTAssertEqual(result.status, 0, result.text)
            XCTAssertEqual(result.stdout.contains("warning: [gates] min_improvement"), warned, result.stdout)
        }
    }

    /// A candidate that fixes its own seed (here: writes seed 1234 whatever PROCTOR_SEED says) scores
    /// the same on every seed while the baseline's scores varied: that is re-rolling the seed until
    /// noise looks like progress, so it is rejected and audited even though its mean wins.
    func testScoreThatIgnoresTheSeedIsRejected() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = fixedSeedAgent
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "1"])
        XCTAssertEqual(result.status, 0, result.text)
        let row = try XCTUnwrap(ws.row(1))
        XCTAssertEqual(row.status, "rejected", row.fields.joined(separator: " "))
        XCTAssertTrue(row.description.contains("PROCTOR_SEED"), row.description)
        let seedLines = ws.audit.filter { $0["kind"] as? String == "seed" }
        XCTAssertEqual(seedLines.first?["decision"] as? String, "rejected", "\(ws.audit.filter { $0["kind"] as? String != "sandbox" })")
        XCTAssertEqual(seedLines.first?["iteration"] as? Int, 1)
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "1", "nothing kept")
        XCTAssertEqual(try ws.gitStatus(), "")
    }

    /// Only the lucky seed, without a later keep: the branch stays at the init commit, the tree clean.
    func testLuckySeedAloneLeavesNoCommit() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + "set_var BONUS 1; echo \"SUMMARY: lucky seed\"\n"
        let ws = try LoopWorkspace(spec)
        let head = try ws.git(["rev-parse", "HEAD"])
        let before = ws.snapshot()
        let result = try ws.run(["--iterations", "1"])
        XCTAssertEqual(result.status, 0, result.text)
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "discard"])
        XCTAssertEqual(try ws.git(["rev-parse", ws.branch!]), head)
        XCTAssertEqual(ws.snapshot(), before)
        XCTAssertEqual(try ws.gitStatus(), "")
    }

    /// Trees or features over `[limits]` are rejected even though the score improved; the limits are the
    /// evaluator's measurements, including those of the confirmation seeds.
    func testMeasurementsOverTheLimitsAreRejected() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.69; set_var TREES 500; echo "SUMMARY: more trees" ;;
            2) set_var X 0.69; set_var FEATURES 50; echo "SUMMARY: more features" ;;
            3) set_var X 0.69; set_var GREEDY 1; echo "SUMMARY: more trees on other seeds" ;;
            4) set_var X 0.69; set_var TREES 100; echo "SUMMARY: at the cap" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let result = try ws.run(["--iterations", "4"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4])
        let baseline = try XCTUnwrap(ws.row(0)?.score)

        for (iteration, what) in [(1, "trees 500 over the limit 100"), (2, "features 50 over the limit 10"),
                                  (3, "trees 500 over the limit 100")] {
            let row = try XCTUnwrap(ws.row(iteration))
            XCTAssertEqual(row.status, "rejected", "iteration \(iteration): \(row.fields)")
            XCTAssertEqual(row.commit, "")
            XCTAssertTrue(row.description.contains(what), "iteration \(iteration): \(row.description)")
            XCTAssertGreaterThan(try XCTUnwrap(row.score), baseline + 0.1, "the score did improve")
            let audit = ws.audit.filter { $0["iteration"] as? Int == iteration && $0["kind"] as? String == "limit" }
            XCTAssertEqual(audit.count, 1, "iteration \(iteration): \(ws.audit.filter { $0["kind"] as? String != "sandbox" })")
            XCTAssertEqual(audit.first?["decision"] as? String, "rejected")
            XCTAssertTrue((audit.first?["detail"] as? String ?? "").contains(what), "\(audit)")
        }
        XCTAssertEqual(ws.row(1)?.trees, "500")
        XCTAssertEqual(ws.row(3)?.trees, "500", "the ledger shows the measurement that broke the limit")
        let atCap = try XCTUnwrap(ws.row(4))
        XCTAssertEqual(atCap.status, "keep", "at the cap is allowed: \(atCap.fields)")
        XCTAssertEqual(atCap.trees, "100")
        XCTAssertEqual(try ws.git(["rev-list", "--count", ws.branch!]), "2")
        XCTAssertEqual(try ws.gitStatus(), "")
    }

    /// Keep: a commit on `proctor/<run>` with the description, the score and the seeds; a discard or a
    /// change below min_improvement: no commit, the tree back at the last keep; no git hook ever runs.
    func testKeepCommitsAndDiscardReverts() throws {
        var spec = WorkspaceSpec()
        spec.agentScript = agentPrelude + """
            case "$i" in
            1) set_var X 0.5; echo "note 1" >> LOG.md; echo "SUMMARY: X to 0.5" ;;
            2) set_var X 0.5004; echo "SUMMARY: X to 0.5004 (below min_improvement)" ;;
            3) set_var X 0.69; echo "SUMMARY: X to 0.69" ;;
            4) set_var X 0.3; echo "note 4" >> LOG.md; echo "SUMMARY: X to 0.3 (worse)" ;;
            esac
            """
        let ws = try LoopWorkspace(spec)
        let initCommit = try ws.git(["rev-parse", "HEAD"])
        let initBranch = try ws.git(["symbolic-ref", "--short", "HEAD"])
        // Hooks that would leave a mark if git ran them.
        for hook in ["pre-commit", "post-commit", "commit-msg", "post-checkout", "reference-transaction"] {
            try ws.write(".git/hooks/\(hook)", "#!/bin/sh\ntouch \(ws.base)/hook-ran-\(hook)\n")
            chmod(ws.path(".git/hooks/\(hook)"), 0o755)
        }

        let result = try ws.run(["--iterations", "4"])
        XCTAssertEqual(result.status, 0, result.text)
        assertLedgerConsistent(ws, iterations: [0, 1, 2, 3, 4])
        XCTAssertEqual(ws.rows.map(\.status), ["keep", "keep", "discard", "keep", "discard"])
        XCTAssertTrue(result.stdout.contains("kept 2, discarded 2"), result.stdout)

        let run = try XCTUnwrap(ws.runID)
        let branch = try XCTUnwrap(ws.branch)
        XCTAssertEqual(branch, "proctor/" + run)
        XCTAssertEqual(try ws.git(["symbolic-ref", "--short", "HEAD"]), branch)
        XCTAssertEqual(try ws.git(["rev-parse", initBranch]), initCommit, "the original branch is untouched")
        let commits = try ws.git(["rev-list", branch]).split(separator: "\n").map(String.init)
        XCTAssertEqual(commits.count, 3, "init + two keeps")
        XCTAssertEqual(commits.last, initCommit)

        // Each kept row names its commit; each commit message has the description, score and seeds.
        for (iteration, commit, description) in [(1, commits[1], "X to 0.5"), (3, commits[0], "X to 0.69")] {
            let row = try XCTUnwrap(ws.row(iteration))
            XCTAssertFalse(row.commit.isEmpty)
            XCTAssertTrue(commit.hasPrefix(row.commit), "row \(row.commit) vs commit \(commit)")
            let message = try ws.git(["log", "-1", "--format=%B", commit])
            XCTAssertTrue(message.hasPrefix(description), message)
            XCTAssertTrue(message.contains("proctor-run: \(run)"), message)
            XCTAssertTrue(message.contains("proctor-iteration: \(iteration)"), message)
            let score = try XCTUnwrap(row.score)
            XCTAssertTrue(message.contains("proctor-score: score=\(String(format: "%.6g", score))"), "\(score): \(message)")
            let seeds = (ws.record(iteration)?["scores"] as? [[String: Any]] ?? []).compactMap { ($0["seed"] as? NSNumber)?.intValue }
            XCTAssertEqual(seeds.count, 3)
            XCTAssertTrue(message.contains("mean over seeds " + seeds.map(String.init).joined(separator: ",")), message)
            XCTAssertEqual(ws.record(iteration)?["commit"] as? String, commit)
        }
        XCTAssertEqual(try ws.git(["show", "--name-only", "--format=", commits[1]]).split(separator: "\n").sorted(),
                       ["LOG.md", "train.py"])
        XCTAssertEqual(try ws.git(["show", "--name-only", "--format=", commits[0]]), "LOG.md\ntrain.py", "the change and proctor's log")

        // The discarded iterations left nothing: no commit, the tree is the last keep exactly.
        for iteration in [2, 4] { XCTAssertEqual(ws.row(iteration)?.commit, "") }
        XCTAssertEqual(try XCTUnwrap(ws.record(2)?["scores"] as? [Any]).count, 1,
                       "below min_improvement on the first seed: not confirmed")
        XCTAssertEqual(try ws.gitStatus(), "")
        XCTAssertEqual(try ws.ignoredLeftovers(), [])
        XCTAssertTrue(ws.read("train.py")!.contains("X = 0.69  # mutate"))
        XCTAssertEqual(agentNotes(ws.read("LOG.md")), "# notes\nnote 1\n")
        XCTAssertEqual(ws.read("LOG.md")?.components(separatedBy: "(proctor)\n").count, 4, "entries 1-3 in the last keep")
        XCTAssertEqual(try ws.git(["diff", "--stat", branch]), "")

        let state = try XCTUnwrap(ws.state)
        XCTAssertEqual(state["bestCommit"] as? String ?? state["best_commit"] as? String, commits[0])
        let status = try ws.proctor(["status", "--workspace", ws.root])
        XCTAssertEqual(status.status, 0, status.text)
        XCTAssertTrue(status.stdout.contains("lock: free"), status.stdout)
        XCTAssertTrue(status.stdout.contains("keep 2"), status.stdout)

        let hooks = try FileManager.default.contentsOfDirectory(atPath: ws.base).filter { $0.hasPrefix("hook-ran") }
        XCTAssertEqual(hooks, [], "git hooks ran")
    }
}

/// The gate's arithmetic on its own.
final class GateMeanTests: XCTestCase {
    func testMeanOfHugeFiniteScoresStaysFinite() {
        XCTAssertEqual(Gate.mean([1e308, 1e308]), 1e308)
        XCTAssertEqual(Gate.mean([0.25, 0.75]), 0.5)
        XCTAssertEqual(Gate.mean([]), 0)
    }
}
