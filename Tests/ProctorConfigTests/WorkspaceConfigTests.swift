import Foundation
import ProctorConfig
import XCTest

final class WorkspaceConfigTests: XCTestCase {
    let full = """
        [files]
        editable = ["train.py"]
        notes    = ["LOG.md", "LEARNING.md"]
        locked   = ["prepare.py"]
        hidden   = ["holdout/**"]
        outputs  = ["outputs/"]

        [experiment]
        command  = ["python3", "train.py"]
        timeout  = "5m"
        cpu_time = "10m"
        memory   = "4GiB"
        pids     = 256
        max_file_size = "256MiB"
        max_output_bytes = "1GiB"
        network  = false
        env      = ["PATH", "HOME", "LANG"]
        seeds    = [42]

        [evaluator]
        command   = ["python3", "prepare.py", "--score"]
        timeout   = "2m"
        metric    = "auc"
        direction = "maximize"

        [limits]
        features   = 200
        trees      = 500
        diff_lines = 400

        [gates]
        min_improvement = 0.0005
        confirm_seeds   = [17, 73]

        [agent]
        kind = "mutate"
        """

    func parse(_ text: String) throws -> WorkspaceConfig {
        try WorkspaceConfig.parse(text, root: "/ws", file: "/ws/proctor.toml")
    }

    func testContractExampleParses() throws {
        let config = try parse(full)
        XCTAssertEqual(config.files.outputs, ["outputs"])
        XCTAssertEqual(config.experiment.timeoutMs, 300_000)
        XCTAssertEqual(config.experiment.cpuTimeMs, 600_000)
        XCTAssertEqual(config.experiment.memoryBytes, 4 << 30)
        XCTAssertEqual(config.experiment.maxOutputBytes, 1 << 30)
        XCTAssertEqual(config.experiment.seeds, [42])
        XCTAssertEqual(config.evaluator.metric, "auc")
        XCTAssertTrue(config.evaluator.maximize)
        XCTAssertEqual(config.limits.trees, 500)
        XCTAssertEqual(config.gates.confirmSeeds, [17, 73])
        XCTAssertEqual(config.gates.minImprovement, 0.0005)
        XCTAssertTrue(config.gates.freshSeeds, "fresh confirmation seeds unless the file says otherwise")
        let listed = try parse(full.replacingOccurrences(of: "confirm_seeds   = [17, 73]", with: "confirm_seeds   = [17, 73]\nfresh_seeds = false"))
        XCTAssertFalse(listed.gates.freshSeeds)
        assertError(full.replacingOccurrences(of: "confirm_seeds   = [17, 73]", with: "confirm_seeds   = [17, 73]\nfresh_seeds = \"no\""),
                    line: 34, key: "gates.fresh_seeds", contains: "true or false")
    }

    /// Issue 10: where an iteration can change anything, and which ignored paths are the user's.
    func testWritableRootsAndTheUsersIgnoredPaths() throws {
        let files = { (editable: String, notes: String) in
            try self.parse(self.full.replacingOccurrences(of: "editable = [\"train.py\"]", with: "editable = \(editable)")
                .replacingOccurrences(of: "notes    = [\"LOG.md\", \"LEARNING.md\"]", with: "notes = \(notes)"))
        }
        let plain = try files("[\"train.py\", \"src/*.py\", \"src/deep/x.py\"]", "[\"LOG.md\"]")
        XCTAssertEqual(plain.agentWritableRoots, ["LOG.md", "prepare.py", "src", "train.py"], "the locked file too")
        XCTAssertTrue(plain.isUsersIgnoredPath("wandb"))
        XCTAssertTrue(plain.isUsersIgnoredPath("data/big.bin"))
        XCTAssertTrue(plain.isUsersIgnoredPath("src/debug.log"), "no glob can match it: no sandbox can create it")
        XCTAssertFalse(plain.isUsersIgnoredPath("src"), "a glob can match beneath it")
        let directory = try files("[\"src/\"]", "[\"LOG.md\"]")
        XCTAssertFalse(directory.isUsersIgnoredPath("src/debug.log"), "beneath an editable directory")
        let anywhere = try files("[\"**/*.py\"]", "[\"LOG.md\"]")
        XCTAssertNil(anywhere.agentWritableRoots, "a glob that can match anywhere")
        XCTAssertFalse(anywhere.isUsersIgnoredPath(".venv"))
    }

    func assertError(_ text: String, line: Int?, key: String, contains message: String,
                     file: StaticString = #filePath, lineNumber: UInt = #line) {
        XCTAssertThrowsError(try parse(text), file: file, line: lineNumber) { error in
            guard let error = error as? ConfigError else { return XCTFail("\(error)", file: file, line: lineNumber) }
            XCTAssertEqual(error.file, "/ws/proctor.toml", file: file, line: lineNumber)
            XCTAssertEqual(error.line, line, "\(error)", file: file, line: lineNumber)
            XCTAssertEqual(error.key, key, file: file, line: lineNumber)
            XCTAssertTrue(error.message.contains(message), error.message, file: file, line: lineNumber)
        }
    }

    func testUnknownKeyNamesFileLineAndKey() {
        assertError(full.replacingOccurrences(of: "cpu_time", with: "cpu_tme"), line: 11, key: "experiment.cpu_tme",
                    contains: "unknown key")
    }

    /// A CRLF proctor.toml: the error still names the line (the line finder split on the
    /// Character "\n", which a CRLF never is, so it found no line at all).
    func testCRLFConfigErrorsNameTheLine() {
        let crlf = full.replacingOccurrences(of: "cpu_time", with: "cpu_tme").replacingOccurrences(of: "\n", with: "\r\n")
        assertError(crlf, line: 11, key: "experiment.cpu_tme", contains: "unknown key")
    }

    func testWrongTypeAndImpossibleValues() throws {
        assertError(full.replacingOccurrences(of: "pids     = 256", with: "pids = \"many\""), line: 13,
                    key: "experiment.pids", contains: "expected an integer")
        assertError(full.replacingOccurrences(of: "timeout  = \"5m\"", with: "timeout = \"5 minutes\""), line: 10,
                    key: "experiment.timeout", contains: "duration")
        assertError(full.replacingOccurrences(of: "timeout  = \"5m\"", with: "timeout = \"9223372036854775s\""), line: 10,
                    key: "experiment.timeout", contains: "up to a year")
        assertError(full.replacingOccurrences(of: "timeout  = \"5m\"", with: "timeout = \"8761h\""), line: 10,
                    key: "experiment.timeout", contains: "up to a year")
        assertError(full.replacingOccurrences(of: "outputs  = [\"outputs/\"]", with: "outputs  = [\"o\\n*\"]"), line: 6,
                    key: "files.outputs", contains: "control characters")
        assertError(full.replacingOccurrences(of: "command  = [\"python3\", \"train.py\"]", with: "command  = [\"\"]"), line: 9,
                    key: "experiment.command", contains: "the program first")
        // An inline table and dotted keys: the line that holds the key.
        let noLimits = full.replacingOccurrences(of: "[limits]\nfeatures   = 200\ntrees      = 500\ndiff_lines = 400\n", with: "")
        XCTAssertNotEqual(noLimits, full)
        assertError("limits = { trees = 5, features = 0 }\n" + noLimits, line: 1, key: "limits.features", contains: "expected an integer")
        assertError("limits.trees = 5\nlimits.features = 0\n" + noLimits, line: 2, key: "limits.features", contains: "expected an integer")
        // home_files: a file below the agent's home, not the home itself.
        let lines = full.split(separator: "\n", omittingEmptySubsequences: false).count
        for target in ["\".\"", "\"\"", "\"a/./b\"", "\"x\\n\"", "\".x/\"", "\".x//y\""] {
            assertError(full + "\n[agent.home_files]\n\"/etc/hostname\" = \(target)\n", line: lines + 2,
                        key: "agent.home_files./etc/hostname", contains: "a file path below the agent's home")
        }
        // A memory limit no program starts in ("1B", "512KiB"): the baseline was killed.
        for size in ["\"1B\"", "\"512KiB\"", "\"7MiB\""] {
            assertError(full + "\nmemory = \(size)\n", line: lines + 1, key: "agent.memory", contains: "expected at least 8MiB")
        }
        // base_url: a space, a line break or no host made every iteration a crash.
        for url in ["\"http://x\\r\\nHost: evil\"", "\"http:// \"", "\"https://\"", "\"http://:80/v1\"", "\"ftp://x\""] {
            assertError(full + "\nmodel = \"m\"\nbase_url = \(url)\n", line: lines + 2,
                        key: "agent.base_url", contains: "expected an http:// or https:// URL")
        }
        XCTAssertEqual(try parse(full + "\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:8080/v1\"\n").agent.baseURL,
                       "http://127.0.0.1:8080/v1")
        // A missing source (every iteration crashed copying it) and targets inside one another (the
        // run stopped with a raw "file exists" error) are refused here.
        let missing = try parse(full + "\n[agent.home_files]\n\"/nonexistent-hf\" = \"x\"\n").missingHomeFile()
        XCTAssertEqual(missing?.line, lines + 2, "\(String(describing: missing))")
        XCTAssertEqual(missing?.key, "agent.home_files./nonexistent-hf")
        XCTAssertTrue(missing?.message.contains("expected an existing host file") == true, "\(String(describing: missing))")
        XCTAssertNil(try parse(full + "\n[agent.home_files]\n\"/etc/hostname\" = \"x\"\n").missingHomeFile())
        // A directory was copied whole into every agent's home.
        let directory = try parse(full + "\n[agent.home_files]\n\"/etc\" = \"x\"\n").missingHomeFile()
        XCTAssertEqual(directory?.key, "agent.home_files./etc")
        XCTAssertTrue(directory?.message.contains("is a directory") == true, "\(String(describing: directory))")
        XCTAssertThrowsError(try parse(full + "\n[agent.home_files]\n\"/etc/hostname\" = \"x\"\n\"/etc/os-release\" = \"x/y\"\n")) { error in
            XCTAssertTrue("\(error)".contains("collides with"), "\(error)")
        }
        XCTAssertThrowsError(try parse(full + "\n[agent.home_files]\n\"/etc/hostname\" = \".c\"\n\"/etc/os-release\" = \".c\"\n"))
        XCTAssertEqual(try parse(full + "\n[agent.home_files]\n\"/etc/hostname\" = \".x\"\n\"/etc/os-release\" = \".xy/z\"\n").agent.homeFiles.count, 2)
        // A seed twice gives one deterministic score twice: the multi-seed gate would mean nothing.
        assertError(full.replacingOccurrences(of: "seeds    = [42]", with: "seeds    = [42, 42]"), line: 18,
                    key: "experiment.seeds", contains: "seed 42 is listed twice")
        assertError(full.replacingOccurrences(of: "confirm_seeds   = [17, 73]", with: "confirm_seeds   = [17, 42]"), line: 33,
                    key: "gates.confirm_seeds", contains: "seed 42 is also in [experiment] seeds")
        assertError(full.replacingOccurrences(of: "confirm_seeds   = [17, 73]", with: "confirm_seeds   = [17, 17]"), line: 33,
                    key: "gates.confirm_seeds", contains: "seed 17 is listed twice")
        assertError(full.replacingOccurrences(of: "memory   = \"4GiB\"", with: "memory = \"4G\""), line: 12,
                    key: "experiment.memory", contains: "size")
        assertError(full.replacingOccurrences(of: "\"maximize\"", with: "\"up\""), line: 24,
                    key: "evaluator.direction", contains: "maximize")
        assertError(full.replacingOccurrences(of: "hidden   = [\"holdout/**\"]", with: "hidden = [\"../etc\"]"), line: 5,
                    key: "files.hidden", contains: "..")
        assertError(full.replacingOccurrences(of: "[agent]", with: "[agnet]"), line: 35, key: "agnet",
                    contains: "unknown key")
        assertError(full.replacingOccurrences(of: "kind = \"mutate\"", with: "kind = \"command\""), line: 35,
                    key: "agent.command", contains: "needs a command")
    }

    /// Issue 15: `[agent] strategy` picks the search agent's optimizer; anything else names its line.
    func testSearchStrategy() throws {
        XCTAssertEqual(try parse(full).agent.strategy, "tpe", "the default")
        let search = try parse(full.replacingOccurrences(of: "kind = \"mutate\"", with: "kind = \"search\"\nstrategy = \"cmaes\""))
        XCTAssertEqual(search.agent.kind, "search")
        XCTAssertEqual(search.agent.strategy, "cmaes")
        assertError(full.replacingOccurrences(of: "kind = \"mutate\"", with: "kind = \"search\"\nstrategy = \"bayes\""),
                    line: 37, key: "agent.strategy", contains: "expected one of \"tpe\", \"cmaes\", \"random\"")
        // `seed`: none by default (the run id seeds the draws); a number repeats a search.
        XCTAssertNil(try parse(full).agent.seed)
        XCTAssertEqual(try parse(full.replacingOccurrences(of: "kind = \"mutate\"", with: "kind = \"search\"\nseed = 3")).agent.seed, 3)
        for bad in ["-1", "1.5", "\"3\""] {
            assertError(full.replacingOccurrences(of: "kind = \"mutate\"", with: "kind = \"search\"\nseed = \(bad)"),
                        line: 37, key: "agent.seed", contains: "expected an integer")
        }
    }

    func testSandboxHideTakesHostPathsAndTheSitePackagesPlaceholder() throws {
        let config = try parse(full + "\n[sandbox]\nhide = [\"/srv/raw\", \"{site-packages}/sklearn/datasets/data\"]\n")
        XCTAssertEqual(config.sandbox.hide, ["/srv/raw", "{site-packages}/sklearn/datasets/data"])
        let line = full.split(separator: "\n", omittingEmptySubsequences: false).count + 2
        for bad in ["relative/path", "{site-packages}/../etc", "{site-packages}//abs", "{site-packages}/", "/srv/../etc"] {
            assertError(full + "\n[sandbox]\nhide = [\"\(bad)\"]\n", line: line, key: "sandbox.hide",
                        contains: "{site-packages}")
        }
        // The root hid everything, and the launcher failed without naming the key (issue 10's fuzzer).
        for root in ["/", "//", "///"] {
            assertError(full + "\n[sandbox]\nhide = [\"\(root)\"]\n", line: line, key: "sandbox.hide", contains: "hides everything")
        }
    }

    /// The sandbox builds its own /tmp, /dev and /proc over the host's: a `read_only` path there was
    /// silently invisible inside (covered), a `hide` there failed the baseline mid-run with no key.
    func testPathsInTheSandboxsOwnDirectoriesAreRefused() throws {
        let line = full.split(separator: "\n", omittingEmptySubsequences: false).count + 2
        for own in ["/tmp", "/tmp/models", "//tmp/x", "/dev/shm", "/proc/self"] {
            assertError(full + "\n[sandbox]\nread_only = [\"\(own)\"]\n", line: line, key: "sandbox.read_only", contains: "outside /")
            assertError(full + "\n[sandbox]\nhide = [\"\(own)\"]\n", line: line, key: "sandbox.hide", contains: "outside /")
        }
        assertError(full.replacingOccurrences(of: "kind = \"mutate\"", with: "kind = \"mutate\"\nread_only = [\"/tmp/cli\"]"),
                    line: 37, key: "agent.read_only", contains: "outside /tmp")
        // Near misses are fine.
        let config = try parse(full + "\n[sandbox]\nread_only = [\"/var/tmp/m\", \"/tmpdata\", \"/srv/dev\"]\nhide = [\"/devices\"]\n")
        XCTAssertEqual(config.sandbox.readOnly, ["/var/tmp/m", "/tmpdata", "/srv/dev"])
    }

    /// A policy preset's `hide = ["/"]` failed in the launcher naming no file or key; `system` or
    /// `hide` under /tmp, /dev or /proc means nothing there; `system` of the root, or of nothing.
    func testAPolicyPresetRefusesTheRootAndTheSandboxsOwnDirectories() throws {
        let dir = NSTemporaryDirectory() + "proctor-policy-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (text, message) in [("hide = [\"/\"]\n", "hides everything"), ("system = [\"/usr\", \"/proc\"]\n", "outside /tmp"),
                                ("hide = [\"/tmp/x\"]\n", "outside /tmp"),
                                // Both started the run and failed its baseline (exit 1).
                                ("system = [\"/\", \"/bin\"]\n", "the whole host"), ("system = []\n", "programs run from")] {
            try text.write(toFile: dir + "/p.toml", atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try PolicyPreset.load(name: "p", from: dir)) { error in
                XCTAssertEqual((error as? ConfigError)?.line, 1, "\(error)")
                XCTAssertTrue("\(error)".contains(message), "\(error)")
            }
        }
        try "hide = [\"/etc/shadow\"]\n".write(toFile: dir + "/p.toml", atomically: true, encoding: .utf8)
        XCTAssertEqual(try PolicyPreset.load(name: "p", from: dir).hide, ["/etc/shadow"])
    }

    func testSyntaxErrorHasLine() {
        XCTAssertThrowsError(try parse("[files]\neditable = [\"a\"\n")) { error in
            XCTAssertNotNil((error as? ConfigError)?.line)
        }
    }

    /// Found by bench/fuzz.sh (issue 10): a `[` alone on a line made toml++ abort the process
    /// (an assertion in its key parser) instead of failing. Now a located error, and a `[` that
    /// opens a line inside a value's brackets or a multi-line string is still read as TOML.
    func testUnnamedTableHeaderIsALocatedErrorNotAnAbort() throws {
        let lines = full.split(separator: "\n", omittingEmptySubsequences: false).count
        for (header, found) in [("[", "the end of the line"), ("[ =x]", "\"=\""), ("[[#]]", "\"#\""), ("[.a]", "\".\"")] {
            XCTAssertThrowsError(try parse(full + "\n" + header + "\nkind = 1\n")) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.line, lines + 1, "\(error)")
                XCTAssertTrue(error.message.contains("table header needs a name") && error.message.contains(found), "\(error)")
            }
        }
        // toml++ also asserted on a "}" where an array expects a value.
        for array in ["editable = [}train.py\"]", "x = [1, }", "x = [\n}]", "x = [[1], {a = 1}, }]"] {
            XCTAssertThrowsError(try parse(full + "\n" + array + "\n")) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.line, array.contains("\n") ? lines + 2 : lines + 1, "\(error)")
                XCTAssertTrue(error.message.contains("expected a value or \"]\" in an array, got \"}\""), "\(error)")
            }
        }
        // A NUL escape was cut off silently by TOMLKit: outputs = ["a\u0000b"] meant "a".
        for nul in ["outputs_x = [\"a\\u0000b\"]", "k = \"\\U00000000\"", "k = \"\"\"\n\\u0000\"\"\""] {
            XCTAssertThrowsError(try parse(full + "\n" + nul + "\n")) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.line, nul.contains("\n") ? lines + 2 : lines + 1, "\(error)")
                XCTAssertTrue(error.message.contains("NUL character"), "\(error)")
            }
        }
        // A multi-line string's line that starts with `[` was taken for a table header: the unknown
        // key after it was named on the header's line.
        let string = "[[phases]]\nuntil = 3\nstrategy = \"\"\"\n[experiment]\nuntill = 1\n\"\"\"\nuntill = 3\n"
        XCTAssertThrowsError(try parse(full + "\n" + string)) { error in
            guard let error = error as? ConfigError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.line, lines + 7, "\(error)")
            XCTAssertEqual(error.key, "phases[1].untill", "\(error)")
        }
        // An escape TOML does not have was kept as written: metric = "a\qc" meant `a\qc`.
        for bad in ["k = \"a\\qc\"", "k = [\"x\", \"\\d+\"]", "k = \"\"\"\nline\\q\"\"\""] {
            XCTAssertThrowsError(try parse(full + "\n" + bad + "\n")) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.line, bad.contains("\n") ? lines + 2 : lines + 1, "\(bad): \(error)")
                XCTAssertTrue(error.message.contains("is no escape TOML has"), "\(error)")
            }
        }
        for fine in ["note = \"\"\"\nends with a backslash \\\n  and goes on\"\"\"\n", "note = \"tab\\t quote\\\" back\\\\ u\\u00e9\"\n",
                     "note = 'C:\\q literal'\n"] {
            XCTAssertThrowsError(try parse(full + "\n" + fine)) { error in
                XCTAssertTrue("\(error)".contains("unknown key"), "\(fine): \(error)")
            }
        }
        for fine in ["seeds_x = [\n[\n1]]\n", "note = \"\"\"\n[\n\"\"\"\n", "note = '''\n[\n'''\n", "note = \"[\" # [\n", "note = [{a = \"}\"}, {b = [1]}]\n", "note = \"\\\\u0000 \\u0001\"\n", "note = '\\u0000'\n"] {
            XCTAssertThrowsError(try parse(full + "\n" + fine)) { error in
                XCTAssertTrue("\(error)".contains("unknown key"), "\(fine): \(error)")
            }
        }
    }

    /// `notes = ["."]` named the workspace root as a notes file and the launcher failed with no file
    /// or key (issue 10's fuzzer): "." components are refused in every [files] list; "./x" is x.
    func testDotComponentsAreRefusedInFileLists() throws {
        for key in ["editable", "notes", "locked", "hidden"] {
            let line = full.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.hasPrefix(key) }! + 1
            for bad in [".", "./", "./.", "a/./b", "src/."] {
                let text = full.replacingOccurrences(
                    of: #"(?m)^\#(key)( *)= .*$"#, with: "\(key) = [\"\(bad)\"]", options: .regularExpression)
                assertError(text, line: line, key: "files.\(key)", contains: "without \".\" components")
            }
        }
        let dotted = full.replacingOccurrences(of: #"(?m)^notes( *)= .*$"#, with: #"notes = ["./LOG.md"]"#, options: .regularExpression)
        XCTAssertEqual(try parse(dotted).files.notes, ["LOG.md"])
    }

    /// A file that is not UTF-8 names the first line holding such bytes (it named no line).
    func testNotUTF8NamesTheLine() throws {
        let dir = NSTemporaryDirectory() + "proctor-utf8-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var bytes = Array(full.utf8)
        let third = bytes.indices.filter { bytes[$0] == 0x0A }[1] + 3
        bytes[third] = 0xFF
        FileManager.default.createFile(atPath: dir + "/proctor.toml", contents: Data(bytes))
        XCTAssertThrowsError(try WorkspaceConfig.load(workspace: dir)) { error in
            XCTAssertEqual((error as? ConfigError)?.line, 3, "\(error)")
            XCTAssertTrue("\(error)".contains("proctor.toml:3: not UTF-8"), "\(error)")
        }
    }

    /// A raw NUL byte in a comment cut the file short there (TOMLKit passes a C string): every
    /// table after it, `[sandbox] hide` included, was silently dropped and `check` said ok.
    func testARawNULByteIsAnErrorAtItsLine() {
        let text = full.replacingOccurrences(of: "cpu_time", with: "# note \u{0}\ncpu_time")
        XCTAssertThrowsError(try parse(text)) { error in
            XCTAssertEqual((error as? ConfigError)?.line, 11, "\(error)")
            XCTAssertTrue("\(error)".contains("NUL byte"), "\(error)")
        }
    }

    /// The outputs are emptied before every experiment: a directory that is the root, git's or proctor's
    /// state, or that holds (or lies in) files the other lists name is refused, naming the line.
    func testOutputsMustBeADirectoryOfTheirOwn() throws {
        for bad in [".", "./", "./.", "a/./b", "a//b", ".git", ".git/", ".proctor/logs", "holdout", "holdout/preds",
                    "prepare.py", "", "proctor.toml", "proctor.toml/x"] {
            assertError(full.replacingOccurrences(of: "outputs  = [\"outputs/\"]", with: "outputs  = [\"\(bad)\"]"),
                        line: 6, key: "files.outputs", contains: "expected")
        }
        // None (no score could come back), one twice, one inside another (moved aside twice: the
        // baseline failed after the run had begun).
        for (bad, message) in [("[]", "at least one directory"), ("[\"outputs/\", \"outputs\"]", "listed twice"),
                               ("[\"outputs/\", \"outputs/sub\"]", "one inside the other"), ("[\"a/b\", \"a\"]", "one inside the other")] {
            assertError(full.replacingOccurrences(of: "outputs  = [\"outputs/\"]", with: "outputs  = \(bad)"),
                        line: 6, key: "files.outputs", contains: message)
        }
        let config = try parse(full.replacingOccurrences(of: "outputs  = [\"outputs/\"]", with: "outputs  = [\"out/models/\", \"gitout\"]"))
        XCTAssertEqual(config.files.outputs, ["out/models", "gitout"])
    }

    func testMissingEvaluatorCommandIsAnError() {
        assertError(full.replacingOccurrences(of: "command   = [\"python3\", \"prepare.py\", \"--score\"]\n", with: ""),
                    line: 20, key: "evaluator.command", contains: "evaluator command")
        assertError(full.replacingOccurrences(of: "[\"python3\", \"prepare.py\", \"--score\"]", with: "[]"),
                    line: 21, key: "evaluator.command", contains: "evaluator command")
    }

    func testMissingCommandIsAnError() {
        assertError("[files]\neditable = [\"a\"]\n", line: nil, key: "experiment.command", contains: "experiment command")
    }
    /// A file named outright as the agent's that another list keeps from it: locked, it was dropped
    /// from what the agent edits without a word; hidden, the experiment could not read it (the
    /// baseline failed, a run begun). A glob that also matches a locked file stays allowed: the
    /// locked file is simply not the agent's.
    func testAnEditableFileThatIsAlsoLockedOrHiddenIsLocated() throws {
        let files = "editable = [\"train.py\"]"
        for (editable, other) in [("[\"train.py\", \"prepare.py\"]", "locked"), ("[\"train.py\", \"holdout/a.csv\"]", "hidden"),
                                  ("[\"train.py\", \"holdout\"]", "hidden")] {
            assertError(full.replacingOccurrences(of: files, with: "editable = \(editable)"), line: 2, key: "files.editable",
                        contains: "which is also \(other)")
        }
        assertError(full.replacingOccurrences(of: "notes    = [\"LOG.md\", \"LEARNING.md\"]", with: "notes = [\"LOG.md\", \"prepare.py\"]"),
                    line: 3, key: "files.notes", contains: "\"prepare.py\", which is also locked")
        assertError(full.replacingOccurrences(of: "hidden   = [\"holdout/**\"]", with: "hidden = [\"holdout\", \"train.py\"]"),
                    line: 2, key: "files.editable", contains: "\"train.py\", which is also hidden (\"train.py\")")
        // Proctor's own files named outright were dropped from the list without a word.
        for own in ["proctor.toml", ".git/hooks/pre-commit", ".proctor/state.json"] {
            assertError(full.replacingOccurrences(of: files, with: "editable = [\"train.py\", \"\(own)\"]"), line: 2, key: "files.editable",
                        contains: "\"\(own)\", which is proctor's own")
        }
        let glob = try parse(full.replacingOccurrences(of: files, with: "editable = [\"*.py\"]"))
        XCTAssertEqual(glob.files.editable, ["*.py"])
        XCTAssertNoThrow(try parse(full.replacingOccurrences(of: files, with: "editable = [\"holdout_tools.py\"]")))
    }

    /// proctor.toml as a link: every sandbox hides proctor.toml, and a link cannot be hidden (the
    /// launcher refused it at the baseline, exit 1). An editable file committed as a link: the agent
    /// was shown nothing to edit, and every proposal failed (the run refuses it, `StartTests`).
    func testProctorTomlOrAnEditableFileThatIsALinkIsRefused() throws {
        let dir = NSTemporaryDirectory() + "proctor-links-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/real.toml", contents: Data(full.utf8))
        try FileManager.default.createSymbolicLink(atPath: dir + "/proctor.toml", withDestinationPath: "real.toml")
        XCTAssertThrowsError(try WorkspaceConfig.load(workspace: dir)) { error in
            XCTAssertTrue("\(error)".hasSuffix("/proctor.toml: is a symbolic link (to real.toml): proctor reads the workspace's own proctor.toml, a regular file committed with it"), "\(error)")
        }
        try FileManager.default.removeItem(atPath: dir + "/proctor.toml")
        try FileManager.default.moveItem(atPath: dir + "/real.toml", toPath: dir + "/proctor.toml")
        let config = try WorkspaceConfig.load(workspace: dir)
        XCTAssertNil(config.linkedAgentFile { _ in nil })
        let linked = config.linkedAgentFile { $0 == "train.py" ? "real.py" : nil }
        XCTAssertEqual(linked?.key, "files.editable")
        XCTAssertEqual(linked?.line, 2)
        XCTAssertTrue(linked?.message.contains("train.py is committed as a symbolic link (to real.py)") ?? false, "\(String(describing: linked))")
        XCTAssertEqual(config.linkedAgentFile { $0 == "LEARNING.md" ? "/etc/passwd" : nil }?.key, "files.notes")
    }
}
