import Foundation
import XCTest

@testable import ProctorLoop

/// Issue 9, first item: what an agent may read of a failed iteration is decided by the reason's
/// type, not by how its text starts. Each reason has two renderings: the ledger's (byte for byte what
/// the stages wrote before the type existed) and the agent's (never the evaluator's words).
final class FailureReasonTests: XCTestCase {
    static let marker = "EVALUATOR-WORDS-7d1f HOLDOUT 0.42"

    /// One reason of every case, each with the ledger text the stages wrote before the type existed.
    /// The switch in `covered` has no default: a new case does not compile until it is listed here.
    static func everyCase(_ words: EvaluatorWords) -> [(FailureReason, String)] {
        [
            (.agentRejected("the answer changes nothing"), "the answer changes nothing"),
            (.agentFailed("agent command: exited with status 3"), "agent command: exited with status 3"),
            (.lockedFilesChanged(["evaluate.py", "data/x.csv"]), "locked file changed: evaluate.py, data/x.csv"),
            (.violations(["a.py: not editable", "b.py: too long"]), "a.py: not editable; b.py: too long"),
            (.noChange, "no change"),
            (.duplicate(of: 7), "duplicate of iteration 7"),
            (.ranWhileFrozen, "the session agent ran (or ended) while it was frozen for its experiment"),
            (.inputsMoved(["train.py", "lib.py"]), "changed while the experiment ran: train.py, lib.py"),
            (.experiment("timed out after 30s"), "experiment: timed out after 30s"),
            (.experiment("exited with status 1; log /w/.proctor/logs/r/3-7-experiment.log"),
             "experiment: exited with status 1; log /w/.proctor/logs/r/3-7-experiment.log"),
            (.specialOutputs(["outputs/link", "outputs/fifo"]), "the outputs hold links or special files: outputs/link, outputs/fifo"),
            (.evaluator(words), "evaluator: " + marker),
            (.confirmation(.evaluator(words)), "confirmation: evaluator: " + marker),
            (.confirmation(.experiment("timed out after 30s")), "confirmation: experiment: timed out after 30s"),
            (.confirmation(.confirmation(.evaluator(words))), "confirmation: confirmation: evaluator: " + marker),
            (.overLimit("features 12 over the limit 10"), "features 12 over the limit 10"),
            (.meanDoesNotBeat, "mean over seeds does not beat the best"),
            (.stale(proposedOn: "1a2b3c4d5e6f"), "stale: proposed on 1a2b3c4d5e6f, the best moved since and the change does not apply to it"),
            (.ignoresSeed(seeds: [42, 17], baselineSpread: 0.25),
             "the score ignores PROCTOR_SEED (identical over seeds 42,17, the baseline's varied by 0.25)"),
            (.confirmationDoesNotBeat, "mean over the confirmation seeds does not beat the best's"),
            (.interrupted, "interrupted"),
            (.supervisorStopped, "supervisor stopped"),
            (.notRun, "not run"),
        ]
    }

    /// Which case a reason is; exhaustive on purpose (no default).
    static func covered(_ reason: FailureReason) -> String {
        switch reason {
        case .agentRejected: "agentRejected"
        case .agentFailed: "agentFailed"
        case .lockedFilesChanged: "lockedFilesChanged"
        case .violations: "violations"
        case .noChange: "noChange"
        case .duplicate: "duplicate"
        case .ranWhileFrozen: "ranWhileFrozen"
        case .inputsMoved: "inputsMoved"
        case .experiment: "experiment"
        case .specialOutputs: "specialOutputs"
        case .evaluator: "evaluator"
        case .confirmation: "confirmation"
        case .overLimit: "overLimit"
        case .meanDoesNotBeat: "meanDoesNotBeat"
        case .confirmationDoesNotBeat: "confirmationDoesNotBeat"
        case .stale: "stale"
        case .ignoresSeed: "ignoresSeed"
        case .interrupted: "interrupted"
        case .supervisorStopped: "supervisorStopped"
        case .notRun: "notRun"
        }
    }

    /// A record's lists are bounded in length as in count: a hundred violations quoting
    /// 3,700-byte paths wrote 0.6 MB into one record.
    func testListedItemsAreCutToALength() {
        let long = "notes/" + String(repeating: "D", count: 3_700) + ": new file outside the editable and notes files [new-file]"
        let listed = FailureReason.counted(Array(repeating: long, count: 150), atMost: 100)
        XCTAssertEqual(listed.count, 101)
        XCTAssertEqual(listed[0].unicodeScalars.count, FailureReason.itemScalars + 3)
        XCTAssertTrue(listed[0].hasSuffix("..."))
        XCTAssertEqual(listed.last, "and 50 more (each in the audit log)")
        XCTAssertEqual(FailureReason.counted(["short"], atMost: 100), ["short"])
    }

    func testEveryCaseIsListed() {
        let listed = Set(Self.everyCase(EvaluatorWords(Self.marker)).map { Self.covered($0.0) })
        XCTAssertEqual(listed.count, 20, "every case of FailureReason has a sample: \(listed.sorted())")
    }

    /// The ledger keeps exactly today's strings: results.tsv, runs.jsonl's `reason` and every test
    /// that reads them stay byte-identical.
    func testLedgerTextIsTodaysString() {
        for (reason, golden) in Self.everyCase(EvaluatorWords(Self.marker)) {
            XCTAssertEqual(reason.ledgerText, golden, "\(Self.covered(reason))")
        }
    }

    /// No case's agent rendering holds the evaluator's words, wrapped or not; the ones that carry
    /// them say the fixed sentence instead, and the operator's rendering keeps them.
    func testAgentTextNeverHoldsTheEvaluatorsWords() {
        for (reason, _) in Self.everyCase(EvaluatorWords(Self.marker)) {
            XCTAssertFalse(reason.agentText.contains(Self.marker), "\(Self.covered(reason)): \(reason.agentText)")
            XCTAssertFalse(reason.agentText.contains("HOLDOUT"), "\(Self.covered(reason)): \(reason.agentText)")
            if reason.ledgerText.contains(Self.marker) {
                XCTAssertTrue(reason.agentText.hasSuffix(FailureReason.evaluatorHidden), reason.agentText)
            } else {
                XCTAssertEqual(reason.agentText, reason.ledgerText, "only the evaluator's words are hidden")
            }
        }
        XCTAssertEqual(FailureReason.confirmation(.evaluator(EvaluatorWords(Self.marker))).agentText,
                       "confirmation: " + FailureReason.evaluatorHidden)
        // An evaluator message worded any way at all (the old filter looked for an "evaluator" prefix).
        let unprefixed = FailureReason.evaluator(EvaluatorWords("HOLDOUT label=1 on row 3"))
        XCTAssertEqual(unprefixed.agentText, FailureReason.evaluatorHidden)
        // Nor does interpolating the words or a reason that holds them (reflection) render them.
        let words = EvaluatorWords(Self.marker)
        for text in ["\(words)", String(reflecting: words), "\(FailureReason.confirmation(.evaluator(words)))"] {
            XCTAssertFalse(text.contains(Self.marker), text)
        }
        var dumped = ""
        dump(FailureReason.evaluator(words), to: &dumped)
        XCTAssertFalse(dumped.contains(Self.marker), dumped)
    }

    /// An agent's own words are its own, even when they begin like an evaluator's reason (a path
    /// named `evaluator…`): the type, not the spelling, decides.
    func testAgentWordsThatLookLikeTheEvaluatorsAreShown() {
        XCTAssertEqual(FailureReason.agentRejected("evaluator_notes.md does not exist").agentText,
                       "evaluator_notes.md does not exist")
    }

    // MARK: - The history of a prompt

    static func record(_ status: IterationStatus, reason: FailureReason?, description: String = "set x") -> RunRecord {
        RunRecord(time: Date(), run: "r", iteration: 3, status: status, reason: reason?.ledgerText, agentReason: reason?.agentText,
                  description: description, commit: nil, parent: "p", score: 0.123456789, bestBefore: nil, scores: [],
                  diff: nil, measurements: [:], limits: [:], durations: [:], agent: "http", usage: nil, violations: [])
    }

    /// The history line is the record's description and its `agentReason`, in the ledger's shape.
    func testHistoryComesFromTheRecordsAgentReason() {
        let crash = Runner.historyEntry(Self.record(.crash, reason: .confirmation(.evaluator(EvaluatorWords(Self.marker)))))
        XCTAssertEqual(crash.description, "set x [confirmation: \(FailureReason.evaluatorHidden)]")
        XCTAssertEqual(crash.status, "crash")
        XCTAssertEqual(crash.score, 0.123457, "the ledger's six decimals")
        let rejected = Runner.historyEntry(Self.record(.rejected, reason: .lockedFilesChanged(["evaluate.py"])))
        XCTAssertEqual(rejected.description, "set x [locked file changed: evaluate.py]")
        // A keep or discard shows no reason, as its row does.
        XCTAssertEqual(Runner.historyEntry(Self.record(.discard, reason: .noChange)).description, "set x")
        // The agent's description quoting an evaluator marker is its own text and stays.
        let quoting = Runner.historyEntry(Self.record(.rejected, reason: .noChange, description: "x [evaluator: mine]"))
        XCTAssertEqual(quoting.description, "x [evaluator: mine] [no change]")
    }

    /// Records written before `agentReason` existed (a run resumed across the upgrade) fall back to
    /// the old cut of the ledger's text.
    func testLegacyRecordsAreCutAtTheEvaluatorsMarker() {
        for reason in [FailureReason.evaluator(EvaluatorWords(Self.marker)), .confirmation(.evaluator(EvaluatorWords(Self.marker)))] {
            var legacy = Self.record(.crash, reason: reason)
            legacy.agentReason = nil
            let entry = Runner.historyEntry(legacy)
            XCTAssertFalse(entry.description.contains(Self.marker), entry.description)
            XCTAssertEqual(entry.description, "set x [\(FailureReason.evaluatorHidden)]")
        }
        var old = Self.record(.rejected, reason: .noChange)
        old.agentReason = nil
        XCTAssertEqual(Runner.historyEntry(old).description, "set x [no change]")
    }

    /// A reason names at most twenty paths or violations and counts the rest, in both renderings;
    /// twenty are listed as they always were.
    func testLongListsAreCountedPastTwenty() {
        let twenty = (1...20).map { "f\($0).py" }
        XCTAssertEqual(FailureReason.inputsMoved(twenty).ledgerText, "changed while the experiment ran: " + twenty.joined(separator: ", "))
        let many = (1...25).map { "f\($0).py" }
        let listed = many.prefix(20).joined(separator: ", ") + ", and 5 more (each in the audit log)"
        for reason in [FailureReason.lockedFilesChanged(many), .inputsMoved(many), .specialOutputs(many)] {
            XCTAssertTrue(reason.ledgerText.hasSuffix(": " + listed), reason.ledgerText)
            XCTAssertEqual(reason.agentText, reason.ledgerText)
        }
        XCTAssertEqual(FailureReason.violations(many).ledgerText, many.prefix(20).joined(separator: "; ") + "; and 5 more (each in the audit log)")
    }

    /// `agentReason` is written to runs.jsonl next to `reason`, under that key.
    func testRecordCarriesBothRenderings() throws {
        let record = Self.record(.crash, reason: .evaluator(EvaluatorWords(Self.marker)))
        let line = String(decoding: try JSONEncoder().encode(record), as: UTF8.self)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(object["reason"] as? String, "evaluator: " + Self.marker)
        XCTAssertEqual(object["agentReason"] as? String, FailureReason.evaluatorHidden)
    }
}
