import Foundation
import ProctorTestSupport
import XCTest

/// Real Python environments laid out in a throwaway home-like directory (`<tmp>/home/me`) next to
/// secrets that no sandbox may see: made with `python3 -m venv`, `uv venv`, or laid out as conda does.
final class PythonHome {
    let root: String
    /// The home directory: `HOME` of the children that use it.
    let home: String
    /// The base interpreter every environment is made from (a system one, seen by every sandbox).
    static let basePython = "/usr/bin/python3"

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/proctor-pyhome-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw NSError(domain: "mkdtemp", code: Int(errno)) }
        root = URL(fileURLWithPath: String(cString: made)).resolvingSymlinksInPath().path
        home = root + "/home/me"
        // Readable by the sandbox's user when proctor runs as root, as a home on Debian is (0755).
        chmod(root, 0o755)
        try write(".ssh/id_ed25519", "SECRET-SSH-KEY\n")
        try write(".bash_history", "export API_KEY=SECRET-HISTORY\n")
        try write("notes/private.txt", "SECRET-NOTES\n")
    }

    deinit { _ = try? runChild(["/bin/rm", "-rf", root]) }

    func write(_ rel: String, _ text: String) throws {
        let url = URL(fileURLWithPath: home + "/" + rel)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    /// A Python installation as `PythonEnvironment` recognises one, at `rel` under the home: its
    /// standard library's landmark and `bin/python3.12` (a stand-in, never run). Returns its prefix.
    func installation(_ rel: String) throws -> String {
        let prefix = home + "/" + rel
        try write(rel + "/lib/python3.12/os.py", "")
        try FileManager.default.createDirectory(atPath: prefix + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: prefix + "/bin/python3.12")
        return prefix
    }

    /// Skips (or, in CI, fails) when the base interpreter cannot make venvs.
    static func requireVenv() throws {
        let probe = try runChild([basePython, "-c", "import venv"])
        guard probe.status == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("\(basePython) has no venv module (.ci/setup installs python3-venv)") }
            throw XCTSkip("\(basePython) has no venv module")
        }
    }

    /// `python3 -m venv [--system-site-packages] DIR`; returns DIR.
    @discardableResult
    static func venv(_ dir: String, systemSitePackages: Bool = false) throws -> String {
        try requireVenv()
        let args = [basePython, "-m", "venv", "--without-pip"] + (systemSitePackages ? ["--system-site-packages"] : []) + [dir]
        let made = try runChild(args, deadline: 60)
        XCTAssertEqual(made.status, 0, made.text)
        return dir
    }

    /// `uv venv --python /usr/bin/python3 DIR`. uv is installed by .ci/setup with pip: in CI a missing
    /// uv fails; elsewhere the test is skipped with the reason.
    static func uvVenv(_ dir: String) throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { String($0) + "/uv" }
        let uv = (path + ["/usr/local/bin/uv", "/usr/bin/uv", NSHomeDirectory() + "/.local/bin/uv"]).first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        guard let uv else {
            let why = "uv is not installed (.ci/setup installs it with pip: python3 -m pip install uv)"
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail(why) }
            throw XCTSkip(why)
        }
        var env = ProcessInfo.processInfo.environment
        env["UV_NO_CACHE"] = "1"
        env["UV_PYTHON_DOWNLOADS"] = "never"
        let made = try runChild([uv, "venv", "--python", basePython, dir], environment: env, deadline: 60)
        XCTAssertEqual(made.status, 0, made.text)
        return dir
    }

    /// A conda-style prefix as the test lays it out (no conda is installed here): `conda-meta/`, a
    /// copy of the base interpreter as `bin/python3.X` with `python3` and `python` linking to it, the
    /// standard library linked in from the base, and the environment's own package directory, which
    /// holds `condamarker.py`. Returns the prefix.
    static func condaPrefix(_ prefix: String) throws -> String {
        let fm = FileManager.default
        let real = try XCTUnwrap(URL(fileURLWithPath: basePython).resolvingSymlinksInPath().path as String?)
        let version = URL(fileURLWithPath: real).lastPathComponent  // python3.11
        for dir in ["conda-meta", "bin", "lib/" + version] {
            try fm.createDirectory(atPath: prefix + "/" + dir, withIntermediateDirectories: true)
        }
        try Data("{}".utf8).write(to: URL(fileURLWithPath: prefix + "/conda-meta/history.json"))
        try fm.copyItem(atPath: real, toPath: prefix + "/bin/" + version)
        try fm.createSymbolicLink(atPath: prefix + "/bin/python3", withDestinationPath: version)
        try fm.createSymbolicLink(atPath: prefix + "/bin/python", withDestinationPath: version)
        let stdlib = URL(fileURLWithPath: real).deletingLastPathComponent().deletingLastPathComponent().path + "/lib/" + version
        for name in try fm.contentsOfDirectory(atPath: stdlib) where name != "site-packages" && name != "dist-packages" {
            try fm.createSymbolicLink(atPath: prefix + "/lib/" + version + "/" + name, withDestinationPath: stdlib + "/" + name)
        }
        // Where this interpreter looks for packages under its own prefix (site-packages, or
        // dist-packages for Debian's build): asked, not guessed.
        let asked = try runChild([prefix + "/bin/python3", "-c", "import site; print(site.getsitepackages()[-1])"])
        XCTAssertEqual(asked.status, 0, asked.text)
        let packages = asked.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(packages.hasPrefix(prefix + "/"), packages)
        try fm.createDirectory(atPath: packages, withIntermediateDirectories: true)
        try Data("where = 'conda'\n".utf8).write(to: URL(fileURLWithPath: packages + "/condamarker.py"))
        return prefix
    }

    /// The package directory of an environment (`lib/python3.X/site-packages`).
    static func sitePackages(_ prefix: String) throws -> String {
        let lib = prefix + "/lib"
        let version = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: lib).first { $0.hasPrefix("python3") })
        return lib + "/" + version + "/site-packages"
    }
}
