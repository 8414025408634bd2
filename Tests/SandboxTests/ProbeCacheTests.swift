import Foundation
import XCTest

@testable import ProctorSandbox

/// The interpreter probe's cache across processes: used when nothing changed, never when it is
/// not the user's own, and dropped when the shim, its version files or the interpreter change.
final class ProbeCacheTests: XCTestCase {
    private var root = ""
    private var shim = ""
    private var real = ""
    private var counter = ""
    private var cacheDir = ""

    override func setUpWithError() throws {
        root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("proctor-probe-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/shims", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/prefix/bin", withIntermediateDirectories: true)
        try makeInstallation(root + "/prefix")
        // The "real interpreter": any ELF executable will do, the probe never runs it.
        real = root + "/prefix/bin/python3.11"
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: real)
        counter = root + "/probes"
        shim = root + "/shims/python3"
        try writeShim(printing: real)
        cacheDir = root + "/cache"
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    /// What makes a prefix a Python installation to `PythonEnvironment`: its standard library.
    private func makeInstallation(_ prefix: String) throws {
        try FileManager.default.createDirectory(atPath: prefix + "/lib/python3.11", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: prefix + "/lib/python3.11/os.py", contents: Data())
    }

    /// A pyenv-like shim: a script that prints the real interpreter and counts its runs.
    private func writeShim(printing path: String) throws {
        try "#!/bin/sh\necho x >> '\(counter)'\necho '\(path)'\n".write(toFile: shim, atomically: false, encoding: .utf8)
        chmod(shim, 0o755)
    }

    private var probes: Int {
        ((try? String(contentsOfFile: counter, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    private func probe(_ cache: ProbeCache? = nil, environment: [String: String]? = nil) -> (prefix: String, bin: String)? {
        let query = InterpreterQuery(command: "python3", sandboxPath: root + "/shims:/usr/bin:/bin",
                                     environment: environment ?? ["HOME": root, "PYENV_ROOT": root + "/pyenv"],
                                     workspace: root + "/ws", visible: ["/usr", "/bin"], key: "[experiment] command",
                                     envKey: "[experiment] env", file: root + "/ws/proctor.toml")
        guard let found = try? PythonEnvironment.resolve(query, probeCache: cache ?? ProbeCache(directory: cacheDir)),
            let prefix = found.prefix, let bin = found.bin
        else { return nil }
        return (prefix, bin)
    }

    func testSecondProbeComesFromTheCache() throws {
        let first = probe()
        XCTAssertEqual(first?.prefix, root + "/prefix")
        XCTAssertEqual(first?.bin, root + "/prefix/bin")
        XCTAssertEqual(probes, 1)
        let second = probe()
        XCTAssertEqual(second?.prefix, first?.prefix)
        XCTAssertEqual(second?.bin, first?.bin)
        XCTAssertEqual(probes, 1, "the shim ran again")
        var st = stat()
        XCTAssertEqual(lstat(cacheDir, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        XCTAssertEqual(lstat(cacheDir + "/" + ProbeCache.fileName, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testVersionFileOrShimChangeProbesAgain() throws {
        _ = probe()
        try FileManager.default.createDirectory(atPath: root + "/pyenv", withIntermediateDirectories: true)
        try "3.12.0\n".write(toFile: root + "/pyenv/version", atomically: false, encoding: .utf8)  // `pyenv global`
        _ = probe()
        XCTAssertEqual(probes, 2)
        _ = probe()
        XCTAssertEqual(probes, 2)
        try writeShim(printing: real)  // `pyenv rehash`
        _ = probe()
        XCTAssertEqual(probes, 3)
    }

    func testUninstalledInterpreterProbesAgain() throws {
        _ = probe()
        try FileManager.default.removeItem(atPath: real)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: root + "/prefix/bin/python3.12")
        try writeShim(printing: root + "/prefix/bin/python3.12")
        _ = probe()
        XCTAssertEqual(probes, 2)
    }

    func testOtherEnvironmentIsAnotherEntry() throws {
        _ = probe()
        _ = probe(environment: ["HOME": root, "PYENV_VERSION": "3.10.1"])
        XCTAssertEqual(probes, 2)
    }

    func testExpiredEntryProbesAgain() throws {
        _ = probe(ProbeCache(directory: cacheDir, maxAgeSeconds: 0))
        _ = probe(ProbeCache(directory: cacheDir, maxAgeSeconds: 0))
        XCTAssertEqual(probes, 2)
    }

    /// A cache that someone else could have written is never believed.
    func testCacheNotOwnedOrOpenToOthersIsIgnored() throws {
        _ = probe()
        let file = cacheDir + "/" + ProbeCache.fileName
        // A planted answer: the cache would now mount this directory into sandboxes.
        let planted = root + "/secret/bin/python3"
        try FileManager.default.createDirectory(atPath: root + "/secret/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: planted)
        try makeInstallation(root + "/secret")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        var entries = try XCTUnwrap(json["entries"] as? [[String: Any]])
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries[0]["executable"] as? String, real)
        entries[0]["executable"] = planted
        json["entries"] = entries
        let text = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        try text.write(toFile: file, atomically: false, encoding: .utf8)
        chmod(file, 0o600)
        XCTAssertEqual(probe()?.prefix, root + "/secret", "the user's own cache is believed")
        XCTAssertEqual(probes, 1)

        chmod(file, 0o666)  // writable by others
        XCTAssertEqual(probe()?.prefix, root + "/prefix")
        XCTAssertEqual(probes, 2)

        try text.write(toFile: file, atomically: false, encoding: .utf8)
        chmod(file, 0o600)
        chmod(cacheDir, 0o777)  // a directory others can write to
        XCTAssertEqual(probe()?.prefix, root + "/prefix")
        XCTAssertEqual(probes, 3)
        chmod(cacheDir, 0o700)

        if geteuid() == 0 {
            try text.write(toFile: file, atomically: false, encoding: .utf8)
            chmod(file, 0o600)
            XCTAssertEqual(chown(file, 65534, 65534), 0)  // another user's file
            XCTAssertEqual(probe()?.prefix, root + "/prefix")
            XCTAssertEqual(probes, 4)
        }

        // A symlink in place of the directory is not followed.
        let elsewhere = root + "/elsewhere"
        try FileManager.default.moveItem(atPath: cacheDir, toPath: elsewhere)
        try FileManager.default.createSymbolicLink(atPath: cacheDir, withDestinationPath: elsewhere)
        let before = probes
        XCTAssertEqual(probe()?.prefix, root + "/prefix")
        XCTAssertEqual(probes, before + 1)
    }

    func testNoCacheDirectoryStillProbes() {
        XCTAssertEqual(probe(ProbeCache(directory: root + "/missing/parent/cache"))?.prefix, root + "/prefix")
        XCTAssertEqual(probe(ProbeCache(directory: root + "/missing/parent/cache"))?.prefix, root + "/prefix")
        XCTAssertEqual(probes, 2)
    }
}
