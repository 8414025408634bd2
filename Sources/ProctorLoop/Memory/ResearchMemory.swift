import Crypto
import Foundation
import ProctorConfig

/// The knobs of the research memory (`[memory]` in `proctor.toml`, parsed by the caller).
public struct MemoryOptions: Sendable, Equatable {
    /// The evaluator's direction: whether a higher score is better.
    public var maximize: Bool
    /// How many near-misses `near_misses.md` keeps (`[memory] near_misses`).
    public var nearMisses: Int
    /// Consecutive iterations without a keep after which `plateau` holds (`[memory] plateau_after`).
    public var plateauAfter: Int
    /// Trials after which a category none of whose trials beat the best on any seed is confidently bad.
    public var confidentTrials: Int

    public init(maximize: Bool, nearMisses: Int = 3, plateauAfter: Int = 15, confidentTrials: Int = 3) {
        self.maximize = maximize
        self.nearMisses = nearMisses
        self.plateauAfter = plateauAfter
        self.confidentTrials = confidentTrials
    }
}

/// What the memory may show of one finished iteration. Everything else in a `RunRecord` stays out by
/// construction: `reason` and `violations` can quote the evaluator (and through it held-out data),
/// `measurements` can hold anything the evaluator printed (a future `sealed` score among them), so
/// this type has no field for them and nothing rendered from it can contain them.
public struct Trial: Sendable, Equatable {
    /// The iteration number and how it ended.
    public var iteration: Int
    public var status: IterationStatus
    /// The agent's description on one line, control characters escaped (`Ledger.clean`).
    public var description: String
    /// The mean over the seeds measured; nil when nothing was scored.
    public var score: Double?
    /// The best score when the iteration started; nil for the baseline.
    public var bestBefore: Double?
    /// Every seed's score that was measured, in order.
    public var seedScores: [Double]
    /// The changed files and line counts (`RunRecord.diff`).
    public var files: [String]
    /// How many more files changed than `files` lists (`DiffStats.filesOmitted`).
    public var filesOmitted = 0
    public var added: Int
    public var removed: Int

    /// The record's safe part.
    public init(_ record: RunRecord) {
        iteration = record.iteration
        status = record.status
        description = Ledger.clean(record.description)
        score = record.score
        bestBefore = record.bestBefore
        seedScores = record.scores.compactMap(\.score)
        files = (record.diff?.files ?? []).map(Ledger.clean)
        filesOmitted = record.diff?.filesOmitted ?? 0
        added = record.diff?.added ?? 0
        removed = record.diff?.removed ?? 0
    }

    /// Whether the experiment ran (a rejected proposal did not: it is not a trial of its categories).
    var ran: Bool { status != .rejected }
}

/// How the memory judges a category of change.
public enum CategoryVerdict: String, Sendable, CaseIterable {
    /// Kept at least once, or some seed of some trial scored better than the best before it.
    case promising
    /// Neither promising nor confidently bad: too few trials, or all below the best on every seed so far.
    case ambiguous
    /// At least `confidentTrials` trials, never kept, and no seed of any of them better than the best before it.
    case confidentlyBad = "confidently bad"
}

/// The research memory of one run: an in-memory summary of the finished iterations, fed one at a time
/// (`add(_:patch:)`, O(size of the patch)), from which proctor renders the files agents read
/// (`learningsMarkdown()`, `nearMissesMarkdown()`, `doNotRetryMarkdown(userLines:)`) and the LOG.md
/// entry of each iteration (`logEntry(for:)`). Deterministic: the same records and patches in the
/// same order give the same bytes. `MemoryStore` writes the files and rebuilds this at `--resume`.
///
/// Definitions (scores may be ±inf; nothing here produces NaN):
/// - *gain* of a score over a reference: `score - reference` when maximizing, `reference - score`
///   when minimizing, so positive is better; equal infinities gain 0.
/// - *effect* of a trial: the gain of its score (the mean over its seeds) over `bestBefore`. A trial
///   without a score (crash, timeout) has none. *Best effect*: the largest; *mean effect*: the mean of
///   the finite effects, or ±inf when there are infinite ones of one sign only.
/// - *better on a seed*: some seed score of the trial has a positive gain over `bestBefore`.
/// - A *trial* of a category: an iteration that ran (any status but `rejected`) whose patch has that
///   category (`Categories.of`). A patch with several categories is a trial of each. An iteration
///   whose patch was already measured and that has no score is a skipped *duplicate*, not a trial.
/// - *near-miss*: a `discard` with a score, ranked by its distance to the current best (the gain of
///   the best over it; smallest first, ties by iteration).
/// - *exhausted*: confidently bad, or a `# mutate:` integer parameter of at most 256 values every one
///   of which has been tried, or was the starting value, since the parameter was last kept, with no
///   keep (a float range is continuous: only the first rule applies to it).
public struct ResearchMemory: Sendable {
    /// The run whose records this memory takes (`RunRecord.run`).
    public let run: String
    /// Direction, near-miss count, plateau length, confidence threshold.
    public let options: MemoryOptions
    /// The best score so far: the last keep's score (the baseline's first), or the first `bestBefore` seen.
    public private(set) var best: Double?
    /// Iterations added so far.
    public private(set) var iterations = 0
    /// Consecutive iterations since the last keep (the baseline counts as a keep).
    public private(set) var iterationsWithoutKeep = 0

    private var categories: [String: CategoryStats] = [:]
    private var discards: [NearMiss] = []
    private var measured: [String: Int] = [:]
    private var entries: [Int: String] = [:]

    /// An empty memory for run `run` (feed it the baseline's record first, then every iteration's).
    public init(run: String, options: MemoryOptions) {
        self.run = run
        self.options = options
    }

    // MARK: - Feeding

    /// Takes in one finished iteration: its record (only its `Trial` part is kept) and the patch that
    /// was measured (`Repository.diffText(against: best, paths:)` before the tree was restored), nil or
    /// empty when there was none. Call once per iteration, in ledger order, after the ledger row.
    public mutating func add(_ record: RunRecord, patch: String?) {
        precondition(record.run == run, "record of run \(record.run) fed to the memory of run \(run)")
        let trial = Trial(record)
        iterations += 1
        if best == nil { best = trial.bestBefore }
        let patch = patch ?? ""
        let key = patch.isEmpty ? nil : Self.patchKey(patch)
        let firstMeasured = key.flatMap { measured[$0] }
        let duplicate = firstMeasured != nil && trial.score == nil && trial.seedScores.isEmpty
        let kinds = trial.ran && !duplicate ? Categories.of(patch) : []

        for category in kinds {
            categories[category.name, default: CategoryStats(name: category.name)]
                .add(trial, category, maximize: options.maximize)
        }
        if let key, trial.ran, !duplicate, measured[key] == nil { measured[key] = trial.iteration }
        if trial.status == .discard, let score = trial.score, !score.isNaN {
            discards.append(
                NearMiss(
                    iteration: trial.iteration, score: score, description: trial.description,
                    patch: patch.isEmpty ? nil : patch))
            if discards.count > 4 * max(options.nearMisses, 1) { pruneDiscards() }
        }
        let gain = trial.score.flatMap { score in trial.bestBefore.map { Self.gain(score, over: $0, options.maximize) }
        }
        if trial.status == .keep, let score = trial.score {
            best = score
            iterationsWithoutKeep = 0
        } else {
            iterationsWithoutKeep += 1
        }
        entries[trial.iteration] = logEntry(
            trial, gain: gain, duplicateOf: duplicate ? firstMeasured : nil,
            takeaway: kinds.compactMap { kind in categories[kind.name].map { line($0) } })
    }

    // MARK: - Questions the loop asks

    /// The first iteration of this run that measured exactly this patch (after `normalizedPatch`),
    /// or nil. Ask before running a proposal: a hit is recorded as `discard` with reason
    /// `duplicate of iteration N` and not run. Empty patches are never duplicates.
    public func duplicate(of patch: String) -> Int? {
        patch.isEmpty ? nil : measured[Self.patchKey(patch)]
    }

    /// Whether `plateauAfter` consecutive iterations passed without a keep.
    public var plateau: Bool { iterationsWithoutKeep >= options.plateauAfter }

    /// The hint for the agent's next prompt when on a plateau, nil otherwise.
    public var plateauHint: String? {
        guard plateau else { return nil }
        let near = topNearMisses().map { "iteration \($0.iteration)" }
        var hint =
            "No experiment was kept in the last \(iterationsWithoutKeep) iterations: small variations of the "
            + "same ideas have stopped paying. Try something fundamentally different (another model, loss, feature "
            + "representation or training scheme) rather than another nearby value"
        if near.count >= 2 {
            hint +=
                ", or combine the near-misses (\(near.joined(separator: ", ")); their full diffs are in "
                + "near_misses.md)"
        }
        return hint + ". See do_not_retry.md for what is exhausted."
    }

    /// The verdict on `category` (a name from `Categories.of`), nil when it was never tried.
    public func verdict(_ category: String) -> CategoryVerdict? {
        categories[category].map { $0.verdict(options) }
    }

    /// The values of `category` tried since it was last kept, none of which was kept, distinct and
    /// sorted: what the mutate agent should not draw again. Empty for an unknown category.
    public func exhaustedValues(_ category: String) -> [String] {
        guard let stats = categories[category] else { return [] }
        return Array(stats.triedSinceKeep.subtracting(stats.keptValues)).sorted()
    }

    /// The names of the exhausted categories (see the type's definitions), sorted.
    public var exhaustedCategories: [String] {
        categories.values.filter { $0.exhaustion(options) != nil }.map(\.name).sorted()
    }

    /// The near-misses (`nearMisses` at most, closest first) whose patch is known, with the agent's
    /// description (one cleaned line), for the prompt and the mutate agent.
    public func nearMissNotes() -> [(iteration: Int, score: Double, description: String, patch: String)] {
        topNearMisses().compactMap { miss in miss.patch.map { (miss.iteration, miss.score, miss.description, $0) } }
    }

    /// Every category tried so far, sorted.
    public var categoryNames: [String] { categories.keys.sorted() }

    /// The near-misses (`nearMisses` at most, closest first) whose patch is known, for re-applying.
    public func nearMissPatches() -> [(iteration: Int, score: Double, patch: String)] {
        topNearMisses().compactMap { miss in miss.patch.map { (miss.iteration, miss.score, $0) } }
    }

    // MARK: - Renders

    /// `learnings.md`: one line per category, grouped by verdict (promising, ambiguous, confidently
    /// bad), each group by best effect then name.
    public func learningsMarkdown() -> String {
        var text = "# Learnings\n\n"
        text +=
            "Written by proctor from the ledger of run \(MemoryText.code(run)) after \(iterations) iterations "
            + "(best score \(MemoryText.number(best)), \(options.maximize ? "higher" : "lower") is better); "
            + "rewritten every iteration.\n"
        text +=
            "Effect: a trial's score minus the best score before it, signed so that positive is better. "
            + "Confidently bad: tried at least \(options.confidentTrials) times, never kept, never better than the best "
            + "on any seed. Promising: kept, or better than the best on some seed. Ambiguous: the rest.\n"
        let grouped = Dictionary(grouping: categories.values) { $0.verdict(options) }
        for verdict in CategoryVerdict.allCases {
            text += "\n## \(verdict.rawValue.prefix(1).uppercased() + verdict.rawValue.dropFirst())\n\n"
            let stats = (grouped[verdict] ?? []).sorted {
                let (a, b) = ($0.bestEffect ?? -.infinity, $1.bestEffect ?? -.infinity)
                return a != b ? a > b : $0.name < $1.name
            }
            if stats.isEmpty { text += "(none)\n" }
            for category in stats { text += "- " + line(category) + "\n" }
        }
        return text
    }

    /// `near_misses.md`: the `nearMisses` discarded candidates closest to the current best, each with
    /// its score, distance and full diff (in a fence no line of the diff can close).
    public func nearMissesMarkdown() -> String {
        var text = "# Near-misses\n\n"
        text +=
            "Written by proctor: the \(options.nearMisses) discarded experiments of run \(MemoryText.code(run)) "
            + "closest to the best score (\(MemoryText.number(best))), closest first, with their full diffs against "
            + "the best of their time (they may need adapting to apply now).\n"
        let top = topNearMisses()
        if top.isEmpty { text += "\n(none yet)\n" }
        for miss in top {
            let distance = best.map { Self.gain($0, over: miss.score, options.maximize) }
            text +=
                "\n## Iteration \(miss.iteration): score \(MemoryText.number(miss.score))"
                + " (\(MemoryText.signed(distance.map { -$0 })) from the best)\n\n"
            text += "Hypothesis: \(MemoryText.code(miss.description))\n\n"
            if let patch = miss.patch {
                text += MemoryText.fenced(patch, info: "diff")
            } else {
                text += "(diff not stored)\n"
            }
        }
        return text
    }

    /// `do_not_retry.md`: the exhausted categories with their trial counts, then the user's own lines
    /// (from the locked file the configuration names; each made one safe line).
    public func doNotRetryMarkdown(userLines: [String]) -> String {
        var text = "# Do not retry\n\n"
        text +=
            "Written by proctor from the ledger of run \(MemoryText.code(run)): categories of change that are "
            + "exhausted.\n\n"
        let exhausted = categories.values.compactMap { stats in stats.exhaustion(options).map { (stats.name, $0) } }
            .sorted { $0.0 < $1.0 }
        if exhausted.isEmpty { text += "(none yet)\n" }
        for (name, why) in exhausted { text += "- \(MemoryText.code(name)): \(why)\n" }
        let user = userLines.map(Ledger.clean).filter { !$0.allSatisfy(\.isWhitespace) }
        if !user.isEmpty {
            text += "\n## From the user\n\n"
            for line in user { text += "- " + MemoryText.escaped(line) + "\n" }
        }
        return text
    }

    /// The LOG.md entry proctor writes for `iteration` (hypothesis, change, result, takeaway), nil
    /// for an iteration not added. Ends with a newline; entries are meant to be appended in order.
    public func logEntry(for iteration: Int) -> String? { entries[iteration] }

    // MARK: - Patches

    /// The form two patches are compared in: `\r\n` as `\n`, trailing whitespace-only lines dropped,
    /// and the function context after a hunk header's second `@@` removed (it depends on git's diff
    /// driver, not on the change). Everything else counts, `index` lines included: their blob ids pin
    /// the file before and after, so the same edit on a different base is a different experiment.
    public static func normalizedPatch(_ patch: String) -> String {
        var lines = patch.replacingOccurrences(of: "\r\n", with: "\n").split(
            separator: "\n", omittingEmptySubsequences: false)
        while let last = lines.last, last.allSatisfy(\.isWhitespace) { lines.removeLast() }
        return lines.map { line -> Substring in
            guard line.hasPrefix("@@ "), let close = line.dropFirst(3).range(of: " @@") else { return line }
            return line[..<close.upperBound]
        }.joined(separator: "\n") + "\n"
    }

    static func patchKey(_ patch: String) -> String {
        SHA256.hash(data: Data(normalizedPatch(patch).utf8)).map { String(format: "%02x", $0) }.joined()
    }

    // MARK: - Internals

    /// `score - reference`, signed so that positive is better; 0 for equal infinities (never NaN).
    static func gain(_ score: Double, over reference: Double, _ maximize: Bool) -> Double {
        if score == reference { return 0 }
        let gain = maximize ? score - reference : reference - score
        return gain.isNaN ? 0 : gain
    }

    /// Drops the discards that can never be near misses again, so that a night of iterations does not
    /// keep every discarded patch (the soak bench saw the supervisor grow 2.3 KB an iteration). Ranked
    /// by distance to the best, which orders them by score whatever the best (ties: the earlier); with
    /// an infinite or no best every finite one ties, and the earliest win. So the `nearMisses` best
    /// scores and the `nearMisses` earliest are all that `topNearMisses` can ever pick.
    private mutating func pruneDiscards() {
        let keep = options.nearMisses
        let better = { (a: NearMiss, b: NearMiss) -> Bool in
            a.score == b.score ? a.iteration < b.iteration : (self.options.maximize ? a.score > b.score : a.score < b.score)
        }
        let kept = Set(discards.sorted(by: better).prefix(keep).map(\.iteration) + discards.prefix(keep).map(\.iteration))
        discards.removeAll { !kept.contains($0.iteration) }
    }

    private func topNearMisses() -> [NearMiss] {
        guard options.nearMisses > 0 else { return [] }
        let distance = { (miss: NearMiss) in
            self.best.map { Self.gain($0, over: miss.score, self.options.maximize) } ?? 0
        }
        var top: [(Double, NearMiss)] = []
        for miss in discards {
            let entry = (distance(miss), miss)
            // Insertion into a list of at most `nearMisses`: O(discards × nearMisses), no full sort.
            let at =
                top.firstIndex { $0.0 > entry.0 || ($0.0 == entry.0 && $0.1.iteration > miss.iteration) } ?? top.count
            if at < options.nearMisses {
                top.insert(entry, at: at)
                if top.count > options.nearMisses { top.removeLast() }
            }
        }
        return top.map(\.1)
    }

    /// One category's learnings line (also the takeaway of the iterations that tried it).
    private func line(_ stats: CategoryStats) -> String {
        var text =
            "\(MemoryText.code(stats.name)) \(stats.verdict(options).rawValue): tried \(stats.tried), kept \(stats.kept)"
        text +=
            ", best effect \(MemoryText.signed(stats.bestEffect)), mean effect \(MemoryText.signed(stats.meanEffect))"
        if stats.unscored > 0 { text += " (\(stats.unscored) without a score)" }
        let shown = stats.values.suffix(CategoryStats.valuesShown)
        if !shown.isEmpty {
            let earlier = stats.values.count - shown.count
            text += "; values tried" + (earlier > 0 ? " (last \(shown.count) of \(stats.values.count))" : "") + ": "
            text += shown.map { "\(MemoryText.code($0.value)) \($0.status.rawValue) \(MemoryText.number($0.score))" }
                .joined(separator: ", ")
        }
        return text
    }

    /// How many changed files a log entry names before it counts the rest.
    static let filesListed = 20

    private func logEntry(_ trial: Trial, gain: Double?, duplicateOf: Int?, takeaway: [String]) -> String {
        var text = "## Iteration \(trial.iteration) (proctor)\n\n"
        text += "- hypothesis: \(MemoryText.code(trial.description))\n"
        // The first files and a count: a rejection of thousands of files would otherwise write
        // every path into the log agents read and the workspace's LOG.md commits.
        let listed = trial.files.prefix(ResearchMemory.filesListed).map(MemoryText.code).joined(separator: ", ")
        let more = trial.files.count + trial.filesOmitted - ResearchMemory.filesListed
        let change = trial.files.isEmpty ? "no files" : listed + (more > 0 ? ", and \(more) more files" : "")
        text += "- change: \(change), +\(trial.added) -\(trial.removed) lines\n"
        var result = "\(trial.status.rawValue), score \(MemoryText.number(trial.score))"
        if trial.score != nil, trial.bestBefore != nil {
            result += ", \(MemoryText.signed(gain)) vs the best \(MemoryText.number(trial.bestBefore))"
        }
        if let duplicateOf { result += ", not run: the same diff as iteration \(duplicateOf)" }
        text += "- result: \(result)\n"
        text +=
            "- takeaway: "
            + (takeaway.isEmpty
                ? "no category of change learned from this iteration" : takeaway.joined(separator: "; ")) + "\n"
        return text
    }
}

/// A discarded, scored candidate.
private struct NearMiss: Sendable {
    var iteration: Int
    var score: Double
    var description: String
    var patch: String?
}

/// Running totals of one category.
private struct CategoryStats: Sendable {
    static let valuesShown = 12

    let name: String
    var mutate: MutateRange?
    var tried = 0
    var kept = 0
    var unscored = 0
    /// Trials with some seed better than the best before them.
    var betterOnSeed = 0
    var bestEffect: Double?
    var finiteSum = 0.0
    var finiteCount = 0
    var positiveInfinite = 0
    var negativeInfinite = 0
    /// Each trial's value, in order.
    var values: [(value: String, status: IterationStatus, score: Double?)] = []
    var keptValues: Set<String> = []
    /// New values tried since the category was last kept, and the values the patches started from.
    var triedSinceKeep: Set<String> = []
    var startValuesSinceKeep: Set<String> = []

    init(name: String) { self.name = name }

    mutating func add(_ trial: Trial, _ category: ChangeCategory, maximize: Bool) {
        tried += 1
        // The range in force: each trial's starting tree's (a keep's new marker is the next one's).
        mutate = category.mutate ?? mutate
        if trial.status == .keep {
            // The parameter now starts from the kept value: what was tried before is history.
            kept += 1
            triedSinceKeep = []
            startValuesSinceKeep = Set([category.value].compactMap { $0 })
            if let value = category.value { keptValues.insert(value) }
        } else {
            if let value = category.value { triedSinceKeep.insert(value) }
            if let old = category.oldValue { startValuesSinceKeep.insert(old) }
        }
        if let value = category.value { values.append((value, trial.status, trial.score)) }
        if let best = trial.bestBefore,
            trial.seedScores.contains(where: { ResearchMemory.gain($0, over: best, maximize) > 0 })
                || (trial.score.map { ResearchMemory.gain($0, over: best, maximize) > 0 } ?? false)
        {
            betterOnSeed += 1
        }
        guard let score = trial.score, let before = trial.bestBefore else {
            unscored += trial.score == nil ? 1 : 0
            return
        }
        let effect = ResearchMemory.gain(score, over: before, maximize)
        bestEffect = max(bestEffect ?? effect, effect)
        if effect == .infinity {
            positiveInfinite += 1
        } else if effect == -.infinity {
            negativeInfinite += 1
        } else {
            finiteSum += effect
            finiteCount += 1
        }
    }

    var meanEffect: Double? {
        switch (positiveInfinite > 0, negativeInfinite > 0) {
        case (true, false): return .infinity
        case (false, true): return -.infinity
        case (true, true): return nil
        case (false, false): return finiteCount > 0 ? finiteSum / Double(finiteCount) : nil
        }
    }

    func verdict(_ options: MemoryOptions) -> CategoryVerdict {
        if kept > 0 || betterOnSeed > 0 { return .promising }
        return tried >= options.confidentTrials ? .confidentlyBad : .ambiguous
    }

    /// Why the category is exhausted, nil when it is not.
    func exhaustion(_ options: MemoryOptions) -> String? {
        if verdict(options) == .confidentlyBad {
            return "confidently bad: \(tried) trials, none kept, none better than the best on any seed"
        }
        if !triedSinceKeep.isEmpty, let grid = mutate?.grid(), !grid.isEmpty,
            Set(grid).isSubset(of: triedSinceKeep.union(startValuesSinceKeep))
        {
            let range = "\(grid.first!)..\(grid.last!)"
            return "every value of \(range) tried since it was last kept, none kept (\(tried) trials in all)"
        }
        return nil
    }
}

/// Text that agents read: every piece that came from an agent or a file is one line, control
/// characters escaped, and put where markdown cannot act on it.
enum MemoryText {
    /// An inline code span: markdown inside it is inert; backticks become `'` so it cannot be closed early.
    static func code(_ text: String) -> String {
        "`" + Ledger.clean(text).replacingOccurrences(of: "`", with: "'") + "`"
    }

    /// Plain text with markdown's active characters backslash-escaped (for the user's own lines).
    static func escaped(_ text: String) -> String {
        var out = ""
        for character in Ledger.clean(text) {
            if "\\`*_[]<>#|!".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }

    /// `text` in a fenced block whose fence is longer than any run of backticks in it, what
    /// `rewritesDisplay` names but newline and tab escaped as `\xNN` (`\uNNNN` above): a diff
    /// with a bidi override reads otherwise than it runs (Trojan Source), in the near misses a
    /// human re-applies.
    static func fenced(_ text: String, info: String) -> String {
        var longest = 0
        var run = 0
        var body = ""
        for scalar in text.unicodeScalars {
            run = scalar == "`" ? run + 1 : 0
            longest = max(longest, run)
            if scalar == "\n" || scalar == "\t" {
                body.unicodeScalars.append(scalar)
            } else if scalar.rewritesDisplay {
                body +=
                    scalar.value < 0x100
                    ? String(format: "\\x%02x", scalar.value) : String(format: "\\u%04x", scalar.value)
            } else {
                body.unicodeScalars.append(scalar)
            }
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        if !body.endsWithLineFeed { body += "\n" }
        return fence + info + "\n" + body + fence + "\n"
    }

    /// A score: six significant digits, `inf`/`-inf`, `none` when absent.
    static func number(_ value: Double?) -> String {
        guard let value else { return "none" }
        if value.isNaN { return "none" }
        if value.isInfinite { return value > 0 ? "inf" : "-inf" }
        return String(format: "%.6g", value)
    }

    /// An effect with its sign (`+0.0012`, `-inf`).
    static func signed(_ value: Double?) -> String {
        guard let value, !value.isNaN else { return "none" }
        return (value >= 0 ? "+" : "") + number(value)
    }
}
