import Foundation
import ProctorSandbox
import XCTest

/// Issue 10: run as root, every sandbox's command is an unprivileged host user, so a file only
/// root may read, under a system path the preset mounts and no hide list names, stays unreadable;
/// the phases still write where they may, and the user's files keep their owner.
final class SandboxUserTests: XCTestCase {
    func testRootOnlyFileInAMountedSystemPathIsUnreadableInEveryPhase() throws {
        try requireProctorBinary()
        guard geteuid() == 0 else {
            throw XCTSkip("needs root: proctor runs its sandboxes as another user only when it runs as root")
        }
        // /etc is mounted read-only by every preset; this name is on no hide list.
        let secret = "/etc/proctor-test-root-only-\(getpid())"
        XCTAssertTrue(FileManager.default.createFile(atPath: secret, contents: Data("ROOT-ONLY-SECRET\n".utf8)))
        defer { unlink(secret) }
        XCTAssertEqual(chmod(secret, 0o600), 0)
        XCTAssertEqual(chown(secret, 0, 0), 0)
        let ws = try TestWorkspace()
        // The experiment writes an output only its owner may read: the evaluator must still read it.
        let experiment = try ws.exec(["sh", "-c", "umask 077; echo measured > outputs/private.txt; id -u; id -G; cat \(secret)"])
        XCTAssertEqual(experiment.status, 1, experiment.text)
        let user = try XCTUnwrap(try SandboxUser.forThisProcess(configured: nil))
        for (phase, command) in [("experiment", "true"), ("evaluator", "cat outputs/private.txt"),
                                 ("agent", "echo '# edited' >> train.py; echo note >> LOG.md")] {
            let out = try ws.exec(["sh", "-c", "\(command) && id -u && id -G && cat \(secret)"], phase: phase)
            XCTAssertFalse(out.stdout.contains("ROOT-ONLY-SECRET"), "\(phase) read the root-only file: \(out.text)")
            XCTAssertTrue(out.stderr.contains("Permission denied"), "\(phase): \(out.text)")
            XCTAssertEqual(out.status, 1, "\(phase): \(out.text)")
            // The uid, and no group but the user's own (root's supplementary groups are dropped).
            let lines = out.stdout.split(separator: "\n").map(String.init)
            XCTAssertEqual(Array(lines.suffix(2)), ["\(user.uid)", "\(user.gid)"], "\(phase): \(out.text)")
            if phase == "evaluator" { XCTAssertEqual(lines.first, "measured", out.text) }
        }
        // The writes reached the host, stored as the workspace's owner (root), not as the sandbox's user.
        XCTAssertEqual(ws.read("train.py"), "print('training')\n# edited\n")
        XCTAssertEqual(ws.read("LOG.md"), "notes\nnote\n")
        for rel in ["train.py", "LOG.md", "outputs/private.txt", "outputs"] {
            var st = stat()
            XCTAssertEqual(lstat(ws.path(rel), &st), 0, rel)
            XCTAssertEqual([st.st_uid, st.st_gid], [0, 0], "\(rel) changed owner")
        }
        // Each launch says whom it ran as.
        let sandboxes = ws.audit().filter { $0["kind"] as? String == "sandbox" }
        XCTAssertEqual(sandboxes.count, 4)
        for record in sandboxes {
            XCTAssertEqual((record["limits"] as? [String: String])?["user"], "setresuid+idmap \(user.uid):\(user.gid)", "\(record)")
        }
    }
}
