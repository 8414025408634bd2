import ProctorConfig
import XCTest

final class GlobTests: XCTestCase {
    private func assertMatches(_ pattern: String, _ yes: [String], _ no: [String], line: UInt = #line) {
        let glob = Glob(pattern)
        for path in yes { XCTAssertTrue(glob.matches(path), "\(pattern) should match \(path)", line: line) }
        for path in no { XCTAssertFalse(glob.matches(path), "\(pattern) should not match \(path)", line: line) }
    }

    /// Issue 10: the walks enter only directories where a glob could match something beneath.
    func testCouldMatchBeneath() {
        let cases: [(String, String, Bool)] = [
            ("train.py", "corpus", false), ("*.py", "corpus", false), ("*", "corpus", false),
            ("src/*.py", "src", true), ("src/*.py", "lib", false), ("src/*.py", "src/sub", false),
            ("**/*.py", "corpus/0001", true), ("data/**", "data", true), ("data/", "data", true),
            ("src/**/x.py", "src/a/b", true), ("s?c/*.py", "src", true), ("src", "src", false),
        ]
        for (pattern, directory, expected) in cases {
            XCTAssertEqual(Glob(pattern).couldMatchBeneath(directory), expected, "\(pattern) beneath \(directory)")
        }
    }

    func testPlainNameMatchesOnlyAtRoot() {
        assertMatches("train.py", ["train.py", "./train.py"], ["src/train.py", "train.pyc", "train", "xtrain.py"])
        assertMatches("./train.py", ["train.py"], ["a/train.py"])
    }

    func testStarAndQuestionStayInOneSegment() {
        assertMatches("*.py", ["a.py", ".py", "train.py"], ["src/a.py", "a.pyc", "a/b.py"])
        assertMatches("src/*.py", ["src/a.py", "src/.hidden.py"], ["src/sub/a.py", "a.py", "src.py"])
        assertMatches("model?.py", ["model1.py", "modelx.py"], ["model.py", "model12.py", "model/.py"])
        assertMatches("a*b*c", ["abc", "aXbYc", "abbbc"], ["ab", "a/b/c", "acb"])
    }

    func testCharacterClasses() {
        assertMatches("run[0-9].log", ["run0.log", "run7.log"], ["runx.log", "run10.log", "run/.log"])
        assertMatches("[abc].txt", ["a.txt", "c.txt"], ["d.txt", "ab.txt"])
        assertMatches("[!abc].txt", ["d.txt", "z.txt"], ["a.txt"])
        assertMatches("[^a]", ["b"], ["a"])
        assertMatches("[]x]", ["]", "x"], ["y"])
        assertMatches("[a-]", ["a", "-"], ["b"])
        // An unclosed `[` is a literal.
        assertMatches("a[b", ["a[b"], ["ab"])
        assertMatches("\\*.py", ["*.py"], ["a.py"])
    }

    func testDoubleStarMatchesZeroOrMoreSegments() {
        assertMatches("holdout/**", ["holdout", "holdout/a", "holdout/a/b/c.csv"], ["holdoutx", "x/holdout/a"])
        assertMatches("**/*.py", ["a.py", "x/a.py", "x/y/z/a.py"], ["a.txt", "x/a.pyc"])
        assertMatches("a/**/b", ["a/b", "a/x/b", "a/x/y/b"], ["a/x/c", "b", "a/bb"])
        assertMatches("**", ["a", "a/b/c"], [])
        assertMatches("a/**/**/b", ["a/b", "a/x/y/b"], ["a"])
        // `**` inside a segment is two single-segment stars.
        assertMatches("a**b", ["ab", "axxb"], ["a/b"])
    }

    func testTrailingSlashMeansDirectoryAndEverythingBeneath() {
        assertMatches(
            "outputs/", ["outputs", "outputs/", "outputs/model.bin", "outputs/a/b"], ["outputsx", "a/outputs/x"])
        assertMatches("data/*/", ["data/x", "data/x/y.csv"], ["data"])
    }

    func testDotDotNeverMatches() {
        assertMatches("src/**", ["src/a"], ["src/../secret", "src/a/../../x"])
        assertMatches("**", ["a"], ["..", "../x"])
    }

    func testEmptyPatternMatchesNothing() {
        assertMatches("", [], ["", "a"])
        assertMatches("./", [], ["a"])
    }

    func testNoExponentialBlowUp() {
        let name = String(repeating: "a", count: 4000) + "b"
        let pattern = String(repeating: "a*", count: 60) + "c"
        let deep = Array(repeating: "a", count: 2000).joined(separator: "/")
        let start = ContinuousClock.now
        XCTAssertFalse(Glob(pattern).matches(name))
        XCTAssertFalse(Glob(Array(repeating: "**/a", count: 50).joined(separator: "/") + "/b").matches(deep))
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
    }

    func testLiteralPrefix() {
        XCTAssertEqual(Glob("holdout/**").literalPrefix, "holdout")
        XCTAssertEqual(Glob("src/*.py").literalPrefix, "src")
        XCTAssertEqual(Glob("./train.py").literalPrefix, "train.py")
        XCTAssertEqual(Glob("*.py").literalPrefix, "")
        XCTAssertEqual(Glob("outputs/").literalPrefix, "outputs")
        XCTAssertEqual(Glob("a/b[0-9]/c").literalPrefix, "a")
        XCTAssertTrue(Glob("a/b.py").isLiteral)
        XCTAssertFalse(Glob("outputs/").isLiteral)
    }

    func testHashableAndPattern() {
        XCTAssertEqual(Glob("a/*"), Glob("a/*"))
        XCTAssertEqual(Set([Glob("a"), Glob("a"), Glob("b")]).count, 2)
        XCTAssertEqual(Glob("./x/").pattern, "./x/")
    }
}
