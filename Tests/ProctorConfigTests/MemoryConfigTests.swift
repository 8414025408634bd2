import ProctorConfig
import XCTest

/// Issue 8's configuration: `[memory]`, `[[phases]]`, the sealed test set. Bad input names the
/// file, the line and the key.
final class MemoryConfigTests: XCTestCase {
    static let base = """
        [files]
        editable = ["train.py"]
        notes    = ["LOG.md"]
        locked   = ["prepare.py", "DO_NOT_RETRY.md"]
        hidden   = ["holdout/**"]

        [experiment]
        command = ["python3", "train.py"]

        [evaluator]
        command = ["python3", "prepare.py"]

        """

    func parse(_ extra: String, files: String = "") throws -> WorkspaceConfig {
        let text = Self.base.replacingOccurrences(of: "hidden   = [\"holdout/**\"]", with: "hidden   = [\"holdout/**\"]\n" + files) + extra
        return try WorkspaceConfig.parse(text, root: "/ws", file: "/ws/proctor.toml")
    }

    func assertError(_ extra: String, files: String = "", line: Int?, key: String, containing text: String,
                     file: StaticString = #filePath, at: UInt = #line) {
        XCTAssertThrowsError(try parse(extra, files: files), file: file, line: at) { error in
            guard let error = error as? ConfigError else { return XCTFail("\(error)", file: file, line: at) }
            XCTAssertEqual(error.key, key, "\(error)", file: file, line: at)
            XCTAssertEqual(error.line, line, "\(error)", file: file, line: at)
            XCTAssertTrue(error.message.contains(text), "\(error)", file: file, line: at)
        }
    }

    func testMemoryAndPhasesParse() throws {
        let config = try parse("""
            [memory]
            near_misses   = 5
            plateau_after = 10
            do_not_retry  = "DO_NOT_RETRY.md"

            [[phases]]
            name     = "explore"
            until    = 25
            strategy = "try different models"

            [[phases]]
            strategy = "refine"
            """)
        XCTAssertEqual(config.memory.nearMisses, 5)
        XCTAssertEqual(config.memory.plateauAfter, 10)
        XCTAssertEqual(config.memory.doNotRetry, "DO_NOT_RETRY.md")
        XCTAssertEqual(config.memory.synthesize, "rules")
        XCTAssertEqual(config.phases.map(\.name), ["explore", "phase 2"])
        XCTAssertEqual(config.phase(at: 25)?.phase.name, "explore")
        XCTAssertEqual(config.phase(at: 26)?.phase.strategy, "refine")
        XCTAssertEqual(config.phase(at: 1000)?.index, 1)
        let defaults = try parse("")
        XCTAssertEqual(defaults.memory, WorkspaceConfig.Memory())
        XCTAssertNil(defaults.phase(at: 1))
    }

    func testBadPhasesNameTheTableAndLine() {
        // The base is 12 lines; the second [[phases]] header is on line 17, its `until` on 18.
        let phases = """
            [[phases]]
            until    = 10
            strategy = "a"

            [[phases]]
            until    = 5
            strategy = "b"
            """
        assertError(phases, line: 18, key: "phases[2].until", containing: "in order")
        assertError("[[phases]]\nuntil = 3\n", line: 13, key: "phases[1].strategy", containing: "strategy text")
        assertError("[[phases]]\nstrategy = \"a\"\nsoon = 1\n", line: 15, key: "phases[1].soon", containing: "unknown key in [[phases]]")
        assertError("[[phases]]\nstrategy = \"a\"\n\n[[phases]]\nstrategy = \"b\"\n", line: 16,
                    key: "phases[2].until", containing: "no phase after one without `until`")
    }

    func testBadMemoryKeys() {
        assertError("[memory]\nplateau_after = 0\n", line: 14, key: "memory.plateau_after", containing: "from 1")
        assertError("[memory]\nsynthesize = \"agent\"\n", line: 14, key: "memory.synthesize", containing: "kind = \"http\"")
        assertError("[memory]\nsynthesize = \"magic\"\n", line: 14, key: "memory.synthesize", containing: "\"rules\", \"agent\"")
        assertError("[memory]\ndo_not_retry = \"NOTES.md\"\n", line: 14, key: "memory.do_not_retry", containing: "a locked file")
        assertError("[memory]\ndo_not_retry = \"../x\"\n", line: 14, key: "memory.do_not_retry", containing: "without \"..\"")
    }

    /// A locked name that matches no pinned file, and a do-not-retry list that is not one, name their line.
    func testLockedNamesAndTheDoNotRetryListMustBeFiles() throws {
        let config = try parse("[memory]\ndo_not_retry = \"DO_NOT_RETRY.md\"\n")
        XCTAssertNil(config.missingLockedFile(pinned: ["prepare.py", "DO_NOT_RETRY.md"]))
        let missing = config.missingLockedFile(pinned: ["prepare.py"])
        XCTAssertEqual(missing?.key, "files.locked")
        XCTAssertEqual(missing?.line, 4)
        XCTAssertTrue(missing?.message.contains("\"DO_NOT_RETRY.md\" names none") == true, "\(String(describing: missing))")
        let globbed = try WorkspaceConfig.parse(Self.base.replacingOccurrences(of: "\"DO_NOT_RETRY.md\"]", with: "\"DONT*\", \"eval/\"]")
                                                + "[memory]\ndo_not_retry = \"DONT.md\"\n", root: "/ws", file: "/ws/proctor.toml")
        let list = globbed.missingLockedFile(pinned: ["prepare.py", "eval/a.py"])
        XCTAssertEqual(list?.key, "memory.do_not_retry")
        XCTAssertEqual(list?.line, 13)
        XCTAssertNil(globbed.missingLockedFile(pinned: ["prepare.py", "eval/a.py", "DONT.md"]))
        XCTAssertEqual(globbed.missingLockedFile(pinned: ["prepare.py", "DONT.md"])?.message.contains("\"eval/\" names none"), true)
    }

    /// `read_only` paths this host lacks are not mounted; each is a warning naming its line.
    func testMissingReadOnlyPathsAreWarnings() throws {
        let config = try parse("[sandbox]\nread_only = [\"/etc\", \"/nonexistent-ro-5e1\"]\n[agent]\nkind = \"command\"\ncommand = [\"true\"]\nread_only = [\"/nonexistent-ro-5e2\"]\n")
        XCTAssertEqual(config.missingReadOnlyPaths(), [
            "/ws/proctor.toml:14: sandbox.read_only: /nonexistent-ro-5e1 does not exist on this host; it is not mounted",
            "/ws/proctor.toml:18: agent.read_only: /nonexistent-ro-5e2 does not exist on this host; it is not mounted"])
        XCTAssertEqual(try parse("[sandbox]\nread_only = [\"/etc\"]\n").missingReadOnlyPaths(), [])
    }

    func testSealedSetAndCommandNeedEachOther() {
        assertError("", files: "sealed = [\"sealed/**\"]", line: 6, key: "files.sealed", containing: "sealed_command")
        XCTAssertThrowsError(try WorkspaceConfig.parse(
            Self.base.replacingOccurrences(of: "command = [\"python3\", \"prepare.py\"]",
                                           with: "command = [\"python3\", \"prepare.py\"]\nsealed_command = [\"python3\", \"s.py\"]"),
            root: "/ws", file: "/ws/proctor.toml")) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "evaluator.sealed_command", "\(error)")
        }
        let overlapping = Self.base.replacingOccurrences(of: "hidden   = [\"holdout/**\"]", with: "hidden   = [\"holdout/**\"]\nsealed = [\"holdout/**\"]")
            .replacingOccurrences(of: "command = [\"python3\", \"prepare.py\"]",
                                  with: "command = [\"python3\", \"prepare.py\"]\nsealed_command = [\"python3\", \"s.py\"]")
        XCTAssertThrowsError(try WorkspaceConfig.parse(overlapping, root: "/ws", file: "/ws/proctor.toml")) { error in
            XCTAssertEqual((error as? ConfigError)?.line, 6, "\(error)")
            XCTAssertTrue((error as? ConfigError)?.message.contains("overlaps \"holdout/**\"") == true, "\(error)")
        }
    }

    func testSealedFilesAreOffLimitsAndTheSealedViewSwapsTheSets() throws {
        let text = Self.base.replacingOccurrences(of: "hidden   = [\"holdout/**\"]", with: "hidden   = [\"holdout/**\"]\nsealed = [\"sealed/**\"]")
            .replacingOccurrences(of: "command = [\"python3\", \"prepare.py\"]",
                                  with: "command = [\"python3\", \"prepare.py\"]\nsealed_command = [\"python3\", \"s.py\"]")
        let config = try WorkspaceConfig.parse(text, root: "/ws", file: "/ws/proctor.toml")
        XCTAssertTrue(config.isOffLimitsToAgents("sealed/labels.csv"))
        XCTAssertTrue(config.hiddenPrefixes.contains("sealed/"))
        let view = config.sealedEvaluatorView
        XCTAssertEqual(view.files.hidden, ["sealed/**"])
        XCTAssertEqual(view.files.sealed, [])
        XCTAssertEqual(view.evaluator.command, ["python3", "s.py"])
    }
}
