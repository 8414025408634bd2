import Foundation
import ProctorTestSupport
import XCTest

@testable import ProctorAgents

/// The built-in `search` agent, judged by the files it leaves on disk and the ledger of a real run.
final class SearchAgentTests: XCTestCase {
    /// Every marker kind: numbers on both scales, a quoted and a bare choice, both bool spellings.
    static let train = """
        import os

        LR = 0.1  # mutate: float 0.001..1.0 log
        DROPOUT = 0.5  # mutate: float 0.0..0.9 linear
        LEAVES = 16  # mutate: int 2..256 log
        DEPTH = 3  # mutate: int 1..6 linear
        BOOSTING = "gbdt"  # mutate: choice gbdt|dart|goss
        ACTIVATION = relu  # mutate: choice relu|gelu
        USE_BIAS = True  # mutate: bool
        shuffle = false  # mutate: bool

        print(LR, DROPOUT, LEAVES, DEPTH, BOOSTING, ACTIVATION, USE_BIAS, shuffle)

        """

    /// The allowed literals, written independently of the agent's parser.
    static func isAllowed(_ name: String, _ literal: String) -> Bool {
        func number(_ low: Double, _ high: Double) -> Bool {
            guard let x = Double(literal) else { return false }
            return x >= low && x <= high && (literal.contains(".") || literal.contains("e"))
        }
        func integer(_ low: Int, _ high: Int) -> Bool { Int(literal).map { $0 >= low && $0 <= high } ?? false }
        switch name {
        case "LR": return number(0.001, 1.0)
        case "DROPOUT": return number(0.0, 0.9)
        case "LEAVES": return integer(2, 256)
        case "DEPTH": return integer(1, 6)
        case "BOOSTING": return ["\"gbdt\"", "\"dart\"", "\"goss\""].contains(literal)
        case "ACTIVATION": return ["relu", "gelu"].contains(literal)
        case "USE_BIAS": return ["True", "False"].contains(literal)
        case "shuffle": return ["true", "false"].contains(literal)
        default: return false
        }
    }

    static let names = ["LR", "DROPOUT", "LEAVES", "DEPTH", "BOOSTING", "ACTIVATION", "USE_BIAS", "shuffle"]

    /// NAME -> literal of the marker lines; fails on any other line that changed.
    func configuration(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String: String] {
        var values: [String: String] = [:]
        let original = Self.train.split(separator: "\n", omittingEmptySubsequences: false)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, original.count, file: file, line: line)
        for (old, new) in zip(original, lines) {
            guard let name = Self.names.first(where: { old.hasPrefix($0 + " = ") }) else {
                XCTAssertEqual(old, new, "a line without a marker changed", file: file, line: line)
                continue
            }
            // Only the value between " = " and the comment changes.
            let comment = old[old.firstIndex(of: "#")!...]
            XCTAssertTrue(new.hasPrefix(name + " = ") && new.hasSuffix("  " + comment), String(new), file: file, line: line)
            values[name] = String(new.dropFirst(name.count + 3).prefix(while: { $0 != " " }))
        }
        return values
    }

    /// A noisy score of a configuration (two "seeds"), larger is better, -inf in a corner.
    static func scores(_ config: [String: String], iteration: Int) -> [Double] {
        let lr = Double(config["LR"] ?? "") ?? 0
        let dropout = Double(config["DROPOUT"] ?? "") ?? 0
        if config["BOOSTING"] == "\"goss\"" && dropout > 0.8 { return [-Double.infinity] }
        let base = -pow(log10(lr) + 2, 2) - pow(dropout - 0.3, 2) + (config["USE_BIAS"] == "True" ? 0.2 : 0)
        return [base + 0.01 * Double(iteration % 3), base - 0.01 * Double(iteration % 2)]
    }

    /// A simulated run: each proposal is measured, recorded as the ledger would, and reverted (the
    /// file goes back to the baseline: nothing is kept). Returns the configurations proposed.
    func simulate(_ strategy: String, iterations: Int, from start: [MeasuredIteration] = [], ws: TestWorkspace,
                  runSeed: UInt64 = 99) throws -> (configs: [[String: String]], measured: [MeasuredIteration]) {
        let agent = try XCTUnwrap(SearchAgent(strategy: strategy))
        var measured = start.isEmpty
            ? [MeasuredIteration(iteration: 0, status: "keep", description: "baseline", seedScores: [-1.0, -1.02], agent: "search")] : start
        var configs: [[String: String]] = []
        let first = measured.count
        for iteration in first..<(first + iterations) {
            var context = ws.context(seed: UInt64(iteration) &* 7919, iteration: iteration)
            context.runSeed = runSeed
            context.measured = measured
            let proposal = try agent.propose(context)
            let config = configuration(try XCTUnwrap(ws.read("train.py")))
            configs.append(config)
            XCTAssertTrue(proposal.description.hasPrefix("search \(strategy): "), proposal.description)
            measured.append(MeasuredIteration(iteration: iteration, status: "discard", description: proposal.description,
                                              seedScores: Self.scores(config, iteration: iteration), agent: "search"))
            try Self.train.write(toFile: ws.root + "/train.py", atomically: false, encoding: .utf8)
        }
        return (configs, measured)
    }

    func workspace() throws -> TestWorkspace {
        try TestWorkspace(files: ["train.py": Self.train, "program.md": "Tune.\n"])
    }

    /// The baseline's configuration is read from its files once per file, not once per knob
    /// (3,000 knobs in one file cost 9 s of the supervisor's a proposal).
    func testTheBaselineOfThousandsOfKnobsIsReadInLinearTime() throws {
        let text = (0..<3_000).map { "K\($0) = \($0 % 7)  # mutate: int 0..9\n" }.joined()
        let ws = try TestWorkspace(files: ["train.py": text, "program.md": "Tune.\n"])
        var context = ws.context()
        context.baselineFiles = ["train.py": text]
        let knobs = try MarkedFiles(context, WorkspaceFiles(context)).knobs.filter(\.isMovable)
        XCTAssertEqual(knobs.count, 3_000)
        let started = Date()
        XCTAssertEqual(SearchAgent.baselineLiterals(context, space: SearchSpace(knobs: knobs)), knobs.map(\.literal))
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
    }

    func testProposalsStayInsideEachRangeAndKindAndNeverRepeat() throws {
        for strategy in SearchAgent.strategies {
            let ws = try workspace()
            let (configs, _) = try simulate(strategy, iterations: 40, ws: ws)
            var seen: Set<[String]> = [Self.names.map { configuration(Self.train)[$0]! }]
            for config in configs {
                XCTAssertEqual(Set(config.keys), Set(Self.names))
                for (name, literal) in config {
                    XCTAssertTrue(Self.isAllowed(name, literal), "\(strategy): \(name) = \(literal)")
                }
                let key = Self.names.map { config[$0]! }
                XCTAssertFalse(seen.contains(key), "\(strategy) proposed a measured configuration again: \(key)")
                seen.insert(key)
            }
            // Every kind actually moves.
            for name in Self.names {
                XCTAssertGreaterThan(Set(configs.map { $0[name]! }).count, 1, "\(strategy) never moved \(name)")
            }
        }
    }

    /// The observations are the search's history in the order it was measured, the baseline first
    /// (the files still hold its configuration): which proposal beat the best before it depends on it.
    func testObservationsStartWithTheBaseline() throws {
        let ws = try workspace()
        let (_, measured) = try simulate("tpe", iterations: 3, ws: ws)
        var context = ws.context(seed: 1, iteration: 4)
        context.measured = measured
        let marked = try MarkedFiles(context, WorkspaceFiles(context))
        let knobs = marked.knobs.filter(\.isMovable)
        let space = SearchSpace(knobs: knobs)
        let (observations, _) = SearchAgent.observations(context, space: space, labels: knobs.map(\.label))
        XCTAssertEqual(observations.count, 4)
        XCTAssertEqual(space.literals(observations[0].point), knobs.map(\.literal))
        XCTAssertEqual(observations[0].seeds, 2)
        let proposed = measured.dropFirst().map { SearchAgent.parse($0.description, labels: knobs.map(\.label),
                                                                    current: knobs.map(\.literal))! }
        XCTAssertEqual(observations.dropFirst().map { space.literals($0.point) }, proposed)

        // Once a proposal was kept the files hold it; the run's base commit still names the baseline.
        var kept = measured
        kept[2].status = "keep"
        var moved = ws.context(seed: 1, iteration: 4)
        moved.measured = kept
        var text = Self.train
        for (knob, literal) in zip(knobs, proposed[1]) {
            text = text.replacingOccurrences(of: knob.line, with: knob.line.replacingOccurrences(of: " = \(knob.literal) ", with: " = \(literal) "))
        }
        try text.write(toFile: ws.root + "/train.py", atomically: false, encoding: .utf8)
        let movedKnobs = try MarkedFiles(moved, WorkspaceFiles(moved)).knobs.filter(\.isMovable)
        XCTAssertEqual(movedKnobs.map(\.literal), proposed[1])
        let labels = knobs.map(\.label)
        let before = SearchAgent.observations(moved, space: SearchSpace(knobs: movedKnobs), labels: labels).0
        XCTAssertEqual(before.map { space.literals($0.point) }, proposed, "without the baseline's files, the baseline is unknown")
        moved.baselineFiles = ["train.py": Self.train]
        let after = SearchAgent.observations(moved, space: SearchSpace(knobs: movedKnobs), labels: labels).0
        XCTAssertEqual(after.map { space.literals($0.point) }, [knobs.map(\.literal)] + proposed)
        XCTAssertEqual(after[0].seeds, 2)
    }

    /// An interrupted run resumed from its ledger makes the same next proposals as one that never stopped.
    func testResumeFromTheLedgerContinuesTheSameSearch() throws {
        for strategy in SearchAgent.strategies {
            let straight = try workspace()
            let whole = try simulate(strategy, iterations: 20, ws: straight)
            let first = try workspace()
            let part = try simulate(strategy, iterations: 12, ws: first)
            // The resumed process starts afresh: a new workspace copy, a new agent, the ledger's records.
            let resumedWS = try workspace()
            let rest = try simulate(strategy, iterations: 8, from: part.measured, ws: resumedWS)
            XCTAssertEqual(part.configs + rest.configs, whole.configs, strategy)
            // And the model did look at the scores: another ledger gives other proposals.
            var other = part.measured
            for index in other.indices.dropFirst() { other[index].seedScores = other[index].seedScores.map { -$0 } }
            let changed = try simulate(strategy, iterations: 8, from: other, ws: try workspace())
            if strategy != "random" { XCTAssertNotEqual(changed.configs, rest.configs, strategy) }
        }
    }

    func testChoiceAndBoolMarkersAreRewrittenInTheirOwnSpelling() throws {
        let ws = try workspace()
        var rng = SplitMix64(seed: 5)
        let lines = Self.train.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let boosting = try XCTUnwrap(Knob(path: "train.py", lineIndex: 6, line: lines[6]))
        XCTAssertEqual(boosting.kind, .choice)
        XCTAssertEqual(boosting.options, ["gbdt", "dart", "goss"])
        XCTAssertEqual(boosting.quote, "\"")
        let moved = try XCTUnwrap(boosting.perturbed(&rng))
        XCTAssertTrue(["\"dart\"", "\"goss\""].contains(moved), moved)
        let bias = try XCTUnwrap(Knob(path: "train.py", lineIndex: 8, line: lines[8]))
        XCTAssertEqual(bias.kind, .bool)
        XCTAssertEqual(bias.perturbed(&rng), "False")
        let shuffle = try XCTUnwrap(Knob(path: "train.py", lineIndex: 9, line: lines[9]))
        XCTAssertEqual(shuffle.perturbed(&rng), "true")
        // The mutate agent moves them too, keeping quotes and spelling (checked by `configuration`).
        for iteration in 1...30 {
            _ = try MutateAgent().propose(ws.context(seed: 3, iteration: iteration))
            for (name, literal) in configuration(try XCTUnwrap(ws.read("train.py"))) {
                XCTAssertTrue(Self.isAllowed(name, literal), "mutate: \(name) = \(literal)")
            }
        }
    }

    func testMalformedMarkersNameTheFileAndLine() throws {
        let bad = [
            "MODE = \"a\"  # mutate: choice a",  // one option
            "MODE = \"d\"  # mutate: choice a|b|c",  // not an option
            "MODE = a  # mutate: choice a||b",  // empty option
            "MODE = \"a  # mutate: choice a|b",  // unclosed quote
            "FLAG = yes  # mutate: bool",  // not a bool
            "FLAG = True  # mutate: bool 0..1",  // bool takes nothing
            "X = 0.5  # mutate: number 0..1",  // unknown kind
            "X = 0.5  # mutate: float 1..0 linear",  // empty range
            // Values no literal can hold (these trapped the supervisor on its next proposal).
            "N = 5  # mutate: int 1..1e300",  // an int range beyond 2^53
            "N = 10000000000000000000000  # mutate: int 1e22..1e23",
            "N = 5  # mutate: int 1..9007199254740993",  // 2^53 + 1: 2^53 itself as a Double
            "N = -9007199254740993  # mutate: int -9007199254740993..0",
            "X = 5e-324  # mutate: float 0.0..1e-323 linear",  // a float below 1e-300
            "X = 1.0  # mutate: float 1..1e308 log",  // a float above 1e300
            "X = 0.5  # mutate: float 1e-400..1 linear",  // reads as 0, not what it says
            // A `#` the program reads as a comment: the marker after one, an option holding one.
            "X = 5  # tuned # mutate: int 1..10",
            "K = a  # mutate: choice a|b#c",
            "S = \"x#y\"  # mutate: choice x|y",  // was silently no marker
            // A value its own range leaves out: the search could never propose it again.
            "N = 11  # mutate: int 1..10",
            "X = 0.9  # mutate: float 0.001..0.5 log",
            // Which ints an int range of fractional bounds holds was each agent's guess.
            "N = 21  # mutate: int 20.5..800 log",
            "N = 21  # mutate: int 1..30.25",
        ]
        for line in bad {
            let ws = try TestWorkspace(files: ["train.py": "import os\n\n" + line + "\n"])
            for agent in [SearchAgent(strategy: "tpe")! as Agent, MutateAgent()] {
                XCTAssertThrowsError(try agent.propose(ws.context())) { error in
                    guard case AgentError.failed(let reason) = error else { return XCTFail("\(error)") }
                    XCTAssertTrue(reason.hasPrefix("train.py:3: cannot read the mutate marker"), reason)
                }
            }
            XCTAssertEqual(ws.read("train.py"), "import os\n\n" + line + "\n")
        }
        // An error about a marker of 100,000 options is a line, not a megabyte, and says it was cut.
        let options = (0..<100_000).map { "o\($0)" }.joined(separator: "|")
        let huge = try TestWorkspace(files: ["train.py": "import os\n\nMODE = zz  # mutate: choice \(options)\n"])
        XCTAssertThrowsError(try MutateAgent().propose(huge.context())) { error in
            guard case AgentError.failed(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertLessThan(reason.utf8.count, 1000)
            XCTAssertTrue(reason.hasPrefix("train.py:3: cannot read the mutate marker (the value zz is not one of the options o0|o1|") && reason.hasSuffix("..."), reason)
        }
        // A marker commented out is no knob (and no error).
        let commented = try TestWorkspace(files: ["train.py": "import os\n# X = 5  # mutate: int 1..10\nY = 1  # mutate: int 1..3\n"])
        XCTAssertEqual(try MarkedFiles(commented.context(), WorkspaceFiles(commented.context())).knobs.map(\.name), ["Y"])
        XCTAssertNil(SearchAgent(strategy: "bayes"))
    }

    /// A tab is blank wherever Python takes one: `#<TAB>mutate:` was no marker at all (its knob
    /// left out without a word, a reversed range not refused), and a tab around `=` was refused.
    func testTabsAreBlankInAMarkerLine() throws {
        XCTAssertThrowsError(try Knob(path: "train.py", lineIndex: 0, line: "A = 1  #\tmutate: int 9..5"))
        let tabbed = try XCTUnwrap(try Knob(path: "train.py", lineIndex: 0, line: "A\t=\t2\t#\tmutate:\tint 1..5"))
        XCTAssertEqual([tabbed.name, tabbed.literal], ["A", "2"])
        XCTAssertEqual([tabbed.low, tabbed.high], [1, 5])
    }

    /// A configuration is known by its values, not by how the file spells them: `N = +3` and the
    /// search's `N=3` are one configuration (it measured the baseline again as a new one).
    func testAConfigurationIsKnownByItsValuesNotItsSpelling() throws {
        let train = "N = +3  # mutate: int 1..3\nU = True  # mutate: bool\n"
        let ws = try TestWorkspace(files: ["train.py": train, "program.md": "Tune.\n"])
        let agent = try XCTUnwrap(SearchAgent(strategy: "tpe"))
        var measured = [MeasuredIteration(iteration: 0, status: "keep", description: "baseline", seedScores: [1.0], agent: "search")]
        var proposed: [String] = []
        for iteration in 1...6 {
            var context = ws.context(seed: UInt64(iteration), iteration: iteration)
            context.measured = measured
            context.baselineFiles = ["train.py": train]
            do {
                let proposal = try agent.propose(context)
                proposed.append(String(proposal.description.dropFirst("search tpe: ".count)))
                measured.append(MeasuredIteration(iteration: iteration, status: "discard", description: proposal.description,
                                                  seedScores: [0.5], agent: "search"))
                try train.write(toFile: ws.root + "/train.py", atomically: false, encoding: .utf8)
            } catch let ended as AgentEnded {
                XCTAssertEqual(iteration, 6, "\(proposed)")
                XCTAssertTrue(ended.reason.contains("all 6 configurations of the `# mutate:` knobs were measured"), ended.reason)
            }
        }
        XCTAssertEqual(Set(proposed), ["N=1 U=True", "N=2 U=True", "N=1 U=False", "N=2 U=False", "N=3 U=False"])
        XCTAssertEqual(proposed.count, 5)
    }

    /// The last configurations of a small space are found by listing it, not left to random draws:
    /// with 2 of 400 values left the run ended, claiming the space was exhausted.
    func testTheLastConfigurationsOfASmallSpaceAreProposed() throws {
        let ws = try TestWorkspace(files: ["train.py": "N = 1  # mutate: int 1..400\n", "program.md": "Tune.\n"])
        let agent = try XCTUnwrap(SearchAgent(strategy: "random"))
        var measured = [MeasuredIteration(iteration: 0, status: "keep", description: "baseline", seedScores: [1.0], agent: "search")]
        for value in 2...398 {
            measured.append(MeasuredIteration(iteration: value - 1, status: "discard", description: "search random: N=\(value)",
                                              seedScores: [0.5], agent: "search"))
        }
        var last: [String] = []
        for iteration in 398...400 {
            var context = ws.context(seed: UInt64(iteration), iteration: iteration)
            context.measured = measured
            do {
                let proposal = try agent.propose(context)
                last.append(proposal.description)
                measured.append(MeasuredIteration(iteration: iteration, status: "discard", description: proposal.description,
                                                  seedScores: [0.5], agent: "search"))
                try "N = 1  # mutate: int 1..400\n".write(toFile: ws.root + "/train.py", atomically: false, encoding: .utf8)
            } catch let ended as AgentEnded {
                XCTAssertEqual(iteration, 400, "\(last)")
                XCTAssertTrue(ended.reason.contains("all 400 configurations"), ended.reason)
            }
        }
        XCTAssertEqual(Set(last), ["search random: N=399", "search random: N=400"])
    }

    /// Each proposal rewrites every knob's line: a `[limits] diff_lines` below twice the marked
    /// lines rejected every broad proposal. The search refuses to start, saying what to raise.
    func testDiffLinesBelowAWholeConfigurationIsRefusedAtTheStart() throws {
        let ws = try workspace()
        var context = ws.context()
        context.maxDiffLines = 15
        XCTAssertThrowsError(try SearchAgent(strategy: "tpe")!.check(context)) { error in
            guard case AgentError.failed(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("sets all 8 knobs, 16 changed lines") && reason.contains("raise diff_lines to 16"), reason)
        }
        context.maxDiffLines = 16
        XCTAssertEqual(try SearchAgent(strategy: "tpe")!.check(context), [])
        context.maxDiffLines = 2
        XCTAssertEqual(try MutateAgent().check(context), [], "mutate moves one or two knobs: not its concern")
    }

    /// A marker inside a string in triple quotes (a docstring showing the grammar, even a broken
    /// example) is text: no knob to move, no error; the knobs around it still are.
    func testMarkersInsideDocstringsAreText() throws {
        let train = ##"""
            """Tuning notes. Mark a constant like this:

                LR = 0.1  # mutate: float 0.001..1.0 log
            or like this (wrong): N = 5  # mutate: int 9..1
            """
            X = 5  # mutate: int 1..10
            QUOTES = "\"\"\"" + '#'  # a string holding a triple quote opens nothing
            def f():
                '''One line.'''
                return '''X = 1  # mutate: int oops'''
            HELP = '''
            Y = 2  # mutate: int 1..3
            '''
            Y = 1  # mutate: int 1..3
            """Z = 1  # mutate: bool"""
            Z = True  # mutate: bool

            """##
        let ws = try TestWorkspace(files: ["train.py": train])
        let marked = try MarkedFiles(ws.context(), WorkspaceFiles(ws.context()))
        XCTAssertEqual(marked.knobs.map { "\($0.name)@\($0.lineIndex + 1)" }, ["X@6", "Y@14", "Z@16"])
        for agent in [SearchAgent(strategy: "tpe")! as Agent, MutateAgent()] {
            let before = try XCTUnwrap(ws.read("train.py"))
            _ = try agent.propose(ws.context(iteration: 1))
            let after = try XCTUnwrap(ws.read("train.py"))
            let changed = zip(before.split(separator: "\n", omittingEmptySubsequences: false), after.split(separator: "\n", omittingEmptySubsequences: false))
                .enumerated().filter { $0.element.0 != $0.element.1 }.map { $0.offset + 1 }
            XCTAssertFalse(changed.isEmpty)
            XCTAssertTrue(Set(changed).isSubset(of: [6, 14, 16]), "\(changed)")
            try before.write(toFile: ws.root + "/train.py", atomically: false, encoding: .utf8)
        }
    }

    /// Knobs sharing a name (in the `if` and `else` branches of one file, and in a file whose path
    /// holds a space and `=`) each get a label of their own that reads back as one word, so the
    /// search reads back what it measured and moves on (before, the two `train.py:BATCH` labels
    /// mixed up their values and the same configuration was proposed again and again).
    func testKnobsSharingANameEachReadBackTheirOwnValue() throws {
        let train = "import os\nif os.environ.get('BIG'):\n    BATCH = 64  # mutate: int 16..256 log\nelse:\n    BATCH = 32  # mutate: int 8..128 log\n"
        let other = "BATCH = 4  # mutate: int 1..9 linear\nLR = 0.1  # mutate: float 0.01..1.0 log\n"
        let files = ["train.py": train, "my conf=1.py": other]
        let ws = try TestWorkspace(files: files.merging(["program.md": "Maximize.\n"]) { $1 })
        let editable = ["train.py", "my conf=1.py"]
        let agent = try XCTUnwrap(SearchAgent(strategy: "tpe"))
        var measured = [MeasuredIteration(iteration: 0, status: "keep", description: "baseline", seedScores: [0.5], agent: "search")]
        var proposed: Set<[String]> = []
        for iteration in 1...12 {
            var context = ws.context(editable: editable, seed: UInt64(iteration), iteration: iteration)
            context.measured = measured
            let before = try MarkedFiles(context, WorkspaceFiles(context)).knobs
            XCTAssertEqual(before.map(\.label), ["my%20conf%3D1.py:BATCH", "LR", "train.py:3:BATCH", "train.py:5:BATCH"])
            let description = try agent.propose(context).description
            let after = ws.context(editable: editable)
            let literals = try MarkedFiles(after, WorkspaceFiles(after)).knobs.map(\.literal)
            XCTAssertEqual(SearchAgent.parse(description, labels: before.map(\.label), current: before.map(\.literal)), literals, description)
            XCTAssertTrue(proposed.insert(literals).inserted, "proposed twice: \(description)")
            measured.append(MeasuredIteration(iteration: iteration, status: "discard", description: description,
                                              seedScores: [Double(iteration % 5) / 10], agent: "search"))
            for (path, text) in files { try text.write(toFile: ws.root + "/" + path, atomically: false, encoding: .utf8) }
        }
    }

    /// Only the search's own rows say what configuration was measured: another agent's summary that
    /// reads like one (a command agent's `search tpe: X=6` over files that held X = 2) is not
    /// believed, or X = 6 would never be measured and X = 2's score would be filed under it.
    func testAnotherAgentsDescriptionIsNotTakenForAConfiguration() throws {
        let ws = try TestWorkspace(files: ["train.py": "X = 2  # mutate: int 1..6\n", "program.md": "Maximize.\n"])
        var context = ws.context()
        context.measured = [
            MeasuredIteration(iteration: 0, status: "keep", description: "baseline", seedScores: [0.5], agent: "command"),
            MeasuredIteration(iteration: 1, status: "discard", description: "search tpe: X=6", seedScores: [0.9], agent: "command"),
        ]
        let knobs = try MarkedFiles(context, WorkspaceFiles(context)).knobs
        let space = SearchSpace(knobs: knobs)
        let (observations, measured) = SearchAgent.observations(context, space: space, labels: knobs.map(\.label))
        XCTAssertFalse(measured.contains(space.key(["6"])))
        XCTAssertEqual(observations.map { space.literals($0.point) }, [["2"]])
        context.measured[1].agent = SearchAgent.kind
        XCTAssertTrue(SearchAgent.observations(context, space: space, labels: knobs.map(\.label)).1.contains(space.key(["6"])))
    }

    /// A file with Windows line endings keeps its markers (as Swift characters `\r\n` is one, and a
    /// split on `\n` saw one line: no knobs, or a marker error quoting the whole file) and its endings.
    func testACRLFFileKeepsItsMarkersAndLineEndings() throws {
        let text = "import os\r\n# tuned knobs\r\nX = 5  # mutate: int 1..10\r\nMODE = \"a\"  # mutate: choice a|b\r\nprint(X, MODE)\r\n"
        let ws = try TestWorkspace(files: ["train.py": text, "program.md": "Maximize.\n"])
        for agent in [SearchAgent(strategy: "tpe")! as Agent, MutateAgent()] {
            try text.write(toFile: ws.root + "/train.py", atomically: false, encoding: .utf8)
            _ = try agent.propose(ws.context())
            let after = try XCTUnwrap(ws.read("train.py"))
            XCTAssertNotEqual(after, text)
            let lines = after.components(separatedBy: "\r\n")
            XCTAssertEqual(lines.count, 6, after)
            XCTAssertFalse(lines.contains { $0.contains("\n") || $0.contains("\r") }, after)
            XCTAssertEqual([lines[0], lines[1], lines[4], lines[5]], ["import os", "# tuned knobs", "print(X, MODE)", ""])
            XCTAssertTrue(lines[2].hasSuffix("  # mutate: int 1..10") && lines[3].hasSuffix("  # mutate: choice a|b"), after)
        }
    }

    /// Once every configuration was measured the run ends cleanly (exit 0, no crash rows, a line
    /// saying why), serially and under `--parallel`; before, each further iteration was a crash
    /// row until five in a row failed the run.
    func testAnExhaustedSpaceEndsTheRunCleanly() throws {
        let train = """
            import os

            MODE = "a"  # mutate: choice a|b
            FLAG = False  # mutate: bool
            X = 0.2 + (0.3 if MODE == "b" else 0.0) + (0.1 if FLAG else 0.0)
            with open(os.path.join(os.environ["PROCTOR_OUTPUTS"], "pred.txt"), "w") as f:
                f.write(repr(X) + "\\n")

            """
        for parallel in [1, 2] {
            let ws = try LoopWorkspace(agent: "[agent]\nkind = \"search\"", train: train)
            let outcome = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "8", "--parallel", String(parallel)],
                                         environment: ["PROCTOR_MACHINE_SLOTS": "2"])
            XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
            XCTAssertTrue((outcome.stdout + outcome.stderr).contains("all 4 configurations of the `# mutate:` knobs were measured"), ws.describe(outcome))
            let records = ws.records()
            XCTAssertEqual(records.count, 4, ws.describe(outcome))
            XCTAssertEqual(Set(records.dropFirst().map { $0["status"] as? String }).subtracting(["keep", "discard"]), [], ws.describe(outcome))
            let configurations = records.dropFirst().map { $0["description"] as? String ?? "" }
            XCTAssertEqual(Set(configurations).count, 3, "\(configurations)")
        }
    }

    /// A marker the user mistyped refuses the run before the baseline (exit 125, the file and line
    /// named, nothing measured or recorded), for both built-in agents; before, the baseline ran and
    /// every iteration was a crash row until five in a row failed the run. No marker at all is said
    /// at the start, as a warning.
    func testAnUnreadableMarkerRefusesTheRunBeforeTheBaseline() throws {
        for (agent, train, expected) in [
            ("search", LoopWorkspace.train("0.2", extra: "MODE = \"d\"  # mutate: choice a|b|c\n"), "train.py:4: cannot read the mutate marker"),
            ("mutate", LoopWorkspace.train("0.2", extra: "Y = 0.5  # mutate: float 1e-400..1 linear\n"),
             "train.py:4: cannot read the mutate marker (1e-400 is too small to be told from 0"),
        ] {
            let ws = try LoopWorkspace(agent: "[agent]\nkind = \"\(agent)\"", train: train)
            let outcome = try ws.run(iterations: 2)
            XCTAssertEqual(outcome.status, 125, ws.describe(outcome))
            XCTAssertTrue(outcome.stderr.contains("the \(agent) agent cannot start: \(expected)"), ws.describe(outcome))
            XCTAssertEqual(ws.records().count, 0, ws.describe(outcome))
        }
        let bare = try LoopWorkspace(agent: "[agent]\nkind = \"search\"",
                                     train: LoopWorkspace.train("0.2").replacingOccurrences(of: "  # mutate: float 0.0..1.0 linear", with: ""))
        let outcome = try bare.run(iterations: 1)
        XCTAssertTrue((outcome.stdout + outcome.stderr).contains(
            "warning: the search agent: no `# mutate:` markers in the editable files (train.py): every proposal will fail"), bare.describe(outcome))
    }

    /// A knob whose range holds no number of four significant digits (0.99991..0.99999): each
    /// proposal is written with five, inside the range, until all nine were measured. Before, every
    /// proposal wrote 1.0 or 0.9999, outside the range, and once one was kept every later proposal
    /// was a crash row (`cannot read the mutate marker`).
    func testANarrowRangeIsWrittenWithTheDigitsItNeeds() throws {
        let train = LoopWorkspace.train("0.99995").replacingOccurrences(of: "# mutate: float 0.0..1.0 linear", with: "# mutate: float 0.99991..0.99999 linear")
            .replacingOccurrences(of: "f.write(repr(X)", with: "f.write(repr(0.7 * (X - 0.99991) / 0.00008)")
        let ws = try LoopWorkspace(agent: "[agent]\nkind = \"search\"", train: train)
        let outcome = try ws.run(iterations: 12)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue((outcome.stdout + outcome.stderr).contains("the space of the `# mutate:` knobs is as good as exhausted"), ws.describe(outcome))
        let records = ws.records()
        XCTAssertEqual(Set(records.dropFirst().map { $0["status"] as? String }).subtracting(["keep", "discard"]), [], ws.describe(outcome))
        let literals = records.dropFirst().compactMap { ($0["description"] as? String)?.split(separator: "=").last.map(String.init) }
        XCTAssertEqual(Set(literals), ["0.99991", "0.99992", "0.99993", "0.99994", "0.99996", "0.99997", "0.99998", "0.99999"], ws.describe(outcome))
        XCTAssertEqual(try XCTUnwrap(ws.read("train.py")).contains("X = 0.99999  # mutate"), true)
    }

    /// A search description names every knob however many there are (cut at the 300 characters
    /// other agents' descriptions get, the knobs after the cut read back as their current values:
    /// a wrong history and configurations proposed twice); the ledger's table still shows 300.
    func testADescriptionOfManyKnobsIsRecordedInFull() throws {
        let names = (1...30).map { String(format: "HYPERPARAMETER_NUMBER_%02d", $0) }
        let knobs = names.map { "\($0) = 0.5  # mutate: float 0.0..1.0 linear\n" }.joined()
        let ws = try LoopWorkspace(agent: "[agent]\nkind = \"search\"", train: LoopWorkspace.train("0.2", extra: knobs))
        let outcome = try ws.run(iterations: 2)
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        let records = ws.records()
        XCTAssertEqual(records.count, 3, ws.describe(outcome))
        for record in records.dropFirst() {
            let description = try XCTUnwrap(record["description"] as? String)
            XCTAssertGreaterThan(description.unicodeScalars.count, 300)
            for name in ["X"] + names { XCTAssertTrue(description.contains(" \(name)="), "\(name) missing: \(description)") }
        }
    }

    func testNoiseModelShrinksSingleSeedsTowardsTheMean() {
        // Three configurations on three seeds each (noise sd ~0.1), one lucky single seed.
        let values = NoiseModel.shrunkMeans([[1.0, 1.1, 0.9], [0.5, 0.6, 0.4], [0.0, 0.1, -0.1], [1.2]])
        XCTAssertEqual(values[0], 1.0, accuracy: 0.05)
        XCTAssertLessThan(values[3], 1.2)
        XCTAssertGreaterThan(values[3], 0.5)
        // Without seed-to-seed information, the means as they are.
        XCTAssertEqual(NoiseModel.shrunkMeans([[1.0], [2.0]]), [1.0, 2.0])
    }

    /// `--parallel 2`: a candidate whose best moved while it was measured was merged with the new
    /// best's change and measured again under its own description, naming a configuration that was
    /// never measured (a red-team helper's find: `A=8 B=9 C=6` recorded with the score and commit of
    /// `A=8 B=9 C=9`). The score here is A+B+C, so every scored record must add up to what its
    /// description says, and every kept commit must hold it.
    func testParallelRecordsEveryConfigurationAsMeasured() throws {
        let knobs = ["A", "B", "C"].map { "\($0) = 1  # mutate: int 1..9" }.joined(separator: "\nPAD = 0\nPAD = 1\nPAD = 2\n")
        let train = "import os, time\n" + knobs + "\ntime.sleep(0.4)\n"
            + "with open(os.path.join(os.environ[\"PROCTOR_OUTPUTS\"], \"pred.txt\"), \"w\") as f:\n    f.write(str(A + B + C) + \"\\n\")\n"
        let prepare = "import json, os\n"
            + "print(json.dumps({\"score\": float(open(os.path.join(os.environ.get(\"PROCTOR_OUTPUTS\", \"outputs\"), \"pred.txt\")).read())}))\n"
        let ws = try LoopWorkspace(agent: "[agent]\nkind = \"search\"", prepare: prepare, train: train)
        let outcome = try ws.proctor(["run", "--workspace", ws.root, "--iterations", "14", "--parallel", "2"],
                                     environment: ["PROCTOR_MACHINE_SLOTS": "2"])
        XCTAssertEqual(outcome.status, 0, ws.describe(outcome))
        XCTAssertTrue(outcome.stdout.contains("restated on it"), "no candidate's best moved: \(outcome.stdout)")
        func values(_ description: String) -> [String: Int] {
            var values: [String: Int] = [:]
            for word in description.split(separator: " ") {
                let parts = word.split(separator: "=")
                if parts.count == 2 { values[String(parts[0])] = Int(parts[1]) ?? -1 }
            }
            return values
        }
        for record in ws.records().dropFirst() where record["agent"] as? String == "search" {
            guard let score = record["score"] as? Double else { continue }
            let described = values(record["description"] as? String ?? "")
            XCTAssertEqual(described.count, 3, "\(record)")
            XCTAssertEqual(Double(described.values.reduce(0, +)), score, "iteration \(record["iteration"] ?? ""): \(record["description"] ?? "")")
            if record["status"] as? String == "keep", let commit = record["commit"] as? String {
                let file = try runChild(["/usr/bin/git", "-C", ws.root, "show", commit + ":train.py"], environment: [:], deadline: 30).stdout
                for (name, value) in described { XCTAssertTrue(file.contains("\(name) = \(value)  #"), "\(commit): \(name)=\(value)") }
            }
            // Its change is its configuration: the forced log's entries of earlier keeps (LOG.md, a
            // notes file) are not put back to the candidate's base.
            XCTAssertEqual((record["diff"] as? [String: Any])?["files"] as? [String], ["train.py"], "\(record)")
        }
        let log = try runChild(["/usr/bin/git", "-C", ws.root, "show", "HEAD:LOG.md"], environment: [:], deadline: 30).stdout
        for record in ws.records().dropFirst() where record["status"] as? String == "keep" {
            XCTAssertTrue(log.contains("## Iteration \(record["iteration"] as? Int ?? -1) "), "the branch's LOG.md lost a keep's entry: \(log)")
        }
    }

    /// Through the real loop: `kind = "search"` runs, is interrupted, and `--resume` continues; each
    /// iteration's proposal, before and after the resume, is exactly what the agent makes of the
    /// ledger's records before it and the files at the best kept commit.
    func testRealRunAndResumeProposeFromTheLedger() throws {
        let ws = try LoopWorkspace(
            agent: "[agent]\nkind = \"search\"\nstrategy = \"tpe\"",
            train: LoopWorkspace.train("0.2", extra: "MODE = \"a\"  # mutate: choice a|b|c\nFLAG = False  # mutate: bool\n"))
        let first = try ws.run(iterations: 3)
        XCTAssertEqual(first.status, 0, ws.describe(first))
        let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "3"])
        XCTAssertEqual(resumed.status, 0, ws.describe(resumed))
        let records = ws.records()
        XCTAssertEqual(records.map { $0["iteration"] as? Int }, [0, 1, 2, 3, 4, 5, 6])
        let agent = try XCTUnwrap(SearchAgent(strategy: "tpe"))
        var seen: Set<String> = []
        // The run's base commit: the baseline's row names it.
        let base = try XCTUnwrap(records[0]["commit"] as? String)
        let baseline = try runChild(["/usr/bin/git", "-C", ws.root, "show", base + ":train.py"], environment: [:], deadline: 30).stdout
        XCTAssertTrue(baseline.contains("MODE = \"a\""), baseline)
        for index in 1..<records.count {
            let before = records[..<index]
            let measured = before.map { record in
                MeasuredIteration(
                    iteration: record["iteration"] as! Int, status: record["status"] as! String,
                    description: record["description"] as! String,
                    seedScores: (record["scores"] as? [[String: Any]] ?? []).compactMap { $0["score"] as? Double },
                    agent: record["agent"] as! String)
            }
            let kept = try XCTUnwrap(before.last { $0["status"] as? String == "keep" }?["commit"] as? String)
            let show = try runChild(["/usr/bin/git", "-C", ws.root, "show", kept + ":train.py"], environment: [:], deadline: 30)
            let replay = try TestWorkspace(files: ["train.py": show.stdout])
            let run = try XCTUnwrap(records[index]["run"] as? String)
            var context = replay.context(seed: Self.loopSeed(run: run, iteration: index), iteration: index)
            context.runSeed = Self.loopRunSeed(run)
            context.measured = measured
            context.baselineFiles = ["train.py": baseline]
            context.maximize = true
            let proposal = try agent.propose(context)
            XCTAssertEqual(proposal.description, records[index]["description"] as? String, "iteration \(index)")
            XCTAssertTrue(seen.insert(proposal.description).inserted, "proposed twice: \(proposal.description)")
        }
    }

    /// The seeds `Runner.agentContext` derives from the run id (AgentView.swift).
    /// `[agent] seed`: two runs of one workspace with the same seed propose the same configurations
    /// (the runs' ids differ), and another seed proposes others; `--resume` draws from it too.
    func testAFixedSeedRepeatsTheSearch() throws {
        var runs: Set<String> = []
        func proposals(_ seed: Int, resume: Bool = false) throws -> [String] {
            let ws = try LoopWorkspace(
                agent: "[agent]\nkind = \"search\"\nseed = \(seed)",
                train: LoopWorkspace.train("0.2", extra: "MODE = \"a\"  # mutate: choice a|b|c\nFLAG = False  # mutate: bool\n"))
            let first = try ws.run(iterations: resume ? 2 : 4)
            XCTAssertEqual(first.status, 0, ws.describe(first))
            if resume {
                let resumed = try ws.proctor(["run", "--workspace", ws.root, "--resume", "--iterations", "2"])
                XCTAssertEqual(resumed.status, 0, ws.describe(resumed))
            }
            let records = ws.records()
            let run = Set(records.compactMap { $0["run"] as? String })
            XCTAssertEqual(run.count, 1)
            XCTAssertTrue(runs.insert(run.first ?? "").inserted, "the same run id twice: \(run)")
            return records.dropFirst().compactMap { $0["description"] as? String }
        }
        let seven = try proposals(7)
        XCTAssertEqual(seven.count, 4)
        XCTAssertEqual(try proposals(7), seven)
        XCTAssertEqual(try proposals(7, resume: true), seven)
        XCTAssertNotEqual(try proposals(8), seven)
    }

    static func loopSeed(run: String, iteration: Int) -> UInt64 {
        var seed = UInt64(iteration) &* 0x9E37_79B9_7F4A_7C15
        for byte in run.utf8 { seed = (seed ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return seed
    }

    static func loopRunSeed(_ run: String) -> UInt64 {
        var seed: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in run.utf8 { seed = (seed ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return seed
    }
}
