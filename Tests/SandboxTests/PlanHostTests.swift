import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// Plan decisions that depend on the host: merged-/usr aliases (a system directory that is a symlink
/// into another mounted one becomes the same symlink; anything else stays a read-only bind) and the
/// `[sandbox] hide` paths.
final class PlanHostTests: XCTestCase {
    private func host(_ links: [String: String], missing: Set<String> = []) -> HostFacts {
        HostFacts(environment: [:], exists: { !missing.contains($0) }, workspaceEntries: { [] },
                  interpreter: { _ in nil }, symlinkTarget: { links[$0] })
    }

    private let system = ["/usr", "/bin", "/lib64", "/etc", "/opt"]

    func testMergedUsrLinksAreRecreated() {
        let h = host(["/bin": "usr/bin", "/lib64": "/usr/lib64"])
        XCTAssertEqual(LaunchPlan.systemAlias("/bin", system: system, host: h), "usr/bin")
        XCTAssertEqual(LaunchPlan.systemAlias("/lib64", system: system, host: h), "/usr/lib64")
        XCTAssertNil(LaunchPlan.systemAlias("/usr", system: system, host: h))
    }

    func testLinksOutsideTheSystemDirectoriesStayBinds() {
        // A link to a place no other system entry mounts would dangle (or expose it): bind it.
        XCTAssertNil(LaunchPlan.systemAlias("/opt", system: system, host: host(["/opt": "/srv/opt"])))
        XCTAssertNil(LaunchPlan.systemAlias("/bin", system: system, host: host(["/bin": "../../home/x/bin"])))
        // The target directory is itself a link, or missing: no alias.
        XCTAssertNil(LaunchPlan.systemAlias("/bin", system: system, host: host(["/bin": "usr/bin", "/usr": "/nix/usr"])))
        XCTAssertNil(LaunchPlan.systemAlias("/bin", system: system, host: host(["/bin": "usr/bin"], missing: ["/usr"])))
        // A link to itself or its own subdirectory is not covered by another entry.
        XCTAssertNil(LaunchPlan.systemAlias("/bin", system: system, host: host(["/bin": "bin/x"])))
    }

    func testTheAliasIsALauncherArgument() {
        var plan = LaunchPlan(phase: .experiment, workingDirectory: "/ws", timeoutMs: 1000, graceMs: 100, command: ["true"])
        plan.mounts = [.readOnly(source: "/usr", target: "/usr", optional: true), .symlink(target: "usr/bin", at: "/bin")]
        plan.filterCache = "/ws/.proctor/cache"
        let args = plan.arguments
        XCTAssertEqual(Array(args.prefix(6)), ["--ro-try", "/usr", "/usr", "--symlink", "usr/bin", "/bin"])
        XCTAssertTrue(args.joined(separator: " ").contains("--filter-cache /ws/.proctor/cache --audit-writes --"))
    }

    func testSitePackagesPlaceholderCoversEveryPackageDirectory() {
        let existing: Set<String> = [
            "/opt/py/lib/python3.11/site-packages", "/opt/py/lib/python3.11/site-packages/sklearn/datasets/data",
            "/usr/lib/python3/dist-packages", "/usr/lib/python3/dist-packages/sklearn/datasets/data",
            "/usr/local/lib/python3.11/dist-packages", "/srv/raw",
        ]
        let h = HostFacts(environment: [:], exists: { existing.contains($0) }, workspaceEntries: { [] },
                          interpreter: { _ in nil },
                          directoryEntries: { dir in
                              ["/opt/py/lib": ["python3.11", "pkgconfig"], "/usr/local/lib": ["python3.11"]][dir] ?? [] })
        let hides = LaunchPlan.hostHides(["{site-packages}/sklearn/datasets/data", "/srv/raw", "/srv/missing"],
                                         packageRoots: ["/opt/py"], host: h)
        XCTAssertEqual(hides, ["/opt/py/lib/python3.11/site-packages/sklearn/datasets/data",
                               "/usr/lib/python3/dist-packages/sklearn/datasets/data", "/srv/raw"])
    }

    func testNoPackageDirectoryListingWithoutThePlaceholder() {
        final class Calls: @unchecked Sendable { var listed: [String] = [] }
        let calls = Calls()
        let h = HostFacts(environment: [:], exists: { _ in true }, workspaceEntries: { [] },
                          interpreter: { _ in nil }, directoryEntries: { calls.listed.append($0); return [] })
        XCTAssertEqual(LaunchPlan.hostHides(["/srv/raw"], packageRoots: ["/opt/py"], host: h), ["/srv/raw"])
        XCTAssertEqual(LaunchPlan.hostHides([], packageRoots: ["/opt/py"], host: h), [])
        XCTAssertEqual(calls.listed, [], "a launch without {site-packages} lists no directory")
    }

    func testPlainNotesNamesNeedNoWalkOfTheWorkspace() throws {
        final class Calls: @unchecked Sendable { var walks = 0 }
        let calls = Calls()
        let present: Set<String> = ["/ws/LOG.md", "/ws/notes/a.md"]
        let h = HostFacts(environment: [:], exists: { present.contains($0) },
                          workspaceEntries: { calls.walks += 1; return ["LOG.md", "notes", "notes/a.md", "train.py"] },
                          interpreter: { _ in nil })
        var config = WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml")
        config.files.editable = ["train.py"]
        config.files.notes = ["LOG.md", "LEARNING.md"]
        XCTAssertEqual(LaunchPlan.notesPaths(config, host: h), ["LOG.md"], "a missing name is no path to hide")
        XCTAssertEqual(calls.walks, 0, "plain names are checked one by one, the workspace is not walked")
        config.files.notes = ["notes/*.md"]
        XCTAssertEqual(LaunchPlan.notesPaths(config, host: h), ["notes/a.md"])
        XCTAssertEqual(calls.walks, 1, "a wildcard needs the walk")
        // A notes directory is one hide, whatever the agent wrote into it; one holding an editable
        // file is hidden file by file, the editable one left visible.
        let many = HostFacts(environment: [:], exists: { _ in true },
                             workspaceEntries: { ["notes", "notes/deep", "notes/deep/b.md"] + (1...300).map { "notes/n\($0).md" } + ["train.py"] },
                             interpreter: { _ in nil })
        config.files.notes = ["notes/"]
        XCTAssertEqual(LaunchPlan.notesPaths(config, host: many), ["notes"])
        config.files.notes = ["notes/**"]
        XCTAssertEqual(LaunchPlan.notesPaths(config, host: many), ["notes"])
        config.files.editable = ["train.py", "notes/deep/b.md"]
        XCTAssertEqual(LaunchPlan.notesPaths(config, host: many).count, 300)
        XCTAssertFalse(LaunchPlan.notesPaths(config, host: many).contains { $0 == "notes" || $0.hasPrefix("notes/deep") },
                       "a directory above an editable file is never hidden (it hid the file)")
        config.files.editable = ["train.py"]
        let linked = HostFacts(environment: [:], exists: { _ in true }, workspaceEntries: { [] },
                               interpreter: { _ in nil }, symlinkTarget: { $0 == "/ws/docs" ? "/elsewhere" : nil })
        config.files.notes = ["docs/LOG.md", "LOG.md"]
        XCTAssertEqual(LaunchPlan.notesPaths(config, host: linked), ["LOG.md"], "never a path through a symlinked directory")
    }

    func testPinnedCopyIsBoundByTheShallowestDirectoryNothingElseIsMountedIn() {
        let locked = ["prepare.py", "data", "data/a.csv", "data/b/c.csv", "eval/metric.py", "out/ref.csv", "holdout/x.py"]
        XCTAssertEqual(LaunchPlan.pinnedBinds(locked, elsewhere: ["holdout", "out/run"]),
                       ["prepare.py", "data", "eval", "out/ref.csv", "holdout/x.py"],
                       "one bind for data/ and eval/; entry by entry where a hidden path or an output shares the directory")
    }
}
