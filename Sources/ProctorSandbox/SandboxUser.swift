import Foundation

/// The unprivileged host user a sandboxed command runs as when proctor runs as root (issue 10).
/// Root's processes read every file whose owner is root, with or without capabilities, so a
/// root-only file under a mounted system path (`/etc/kubernetes/admin.conf`, a network manager's
/// saved passwords) would reach an experiment that no hide list names; as this user, the kernel's
/// own permission checks refuse it. The launcher switches to it (`--user`) and idmaps the binds of
/// the workspace, the agent's home and the session socket (`--map-owner`), so the command writes
/// the outputs and the editable files while they stay the user's on disk.
public struct SandboxUser: Sendable, Equatable {
    public var name: String
    public var uid: UInt32
    public var gid: UInt32

    /// The system user proctor creates on first use when `[sandbox] user` is not set.
    public static let defaultName = "proctor-sandbox"

    /// The user for this process's sandboxes: nil when proctor is not root (they run as its own
    /// unprivileged uid already); else `[sandbox] user`, or `proctor-sandbox`, created when missing.
    public static func forThisProcess(configured: String?) throws -> SandboxUser? {
        guard geteuid() == 0 else { return nil }
        let name = configured ?? defaultName
        if let user = try lookup(name) { return user }
        guard configured == nil else {
            throw SandboxError(.badPlan, "[sandbox] user \"\(name)\" does not exist on this host")
        }
        let created = create(name)
        // Another proctor may have created it meanwhile: what counts is that it exists now.
        guard let user = try lookup(name) else {
            throw SandboxError(.notInstalled, "proctor runs as root and needs the unprivileged system user \"\(name)\" to run sandboxes as, but could not create it (\(created ?? "useradd failed")); create it (useradd --system --user-group --no-create-home --shell /usr/sbin/nologin \(name)) or set [sandbox] user")
        }
        if created == nil {
            Console.err("proctor: created the system user \(name) (uid \(user.uid), gid \(user.gid)): proctor runs as root, and its sandboxes run as this user so that files only root may read stay unreadable\n")
        }
        return user
    }

    /// The user named `name`; nil when there is none; an error when it is root or in root's group.
    static func lookup(_ name: String) throws -> SandboxUser? {
        guard let entry = getpwnam(name) else { return nil }
        let (uid, gid) = (entry.pointee.pw_uid, entry.pointee.pw_gid)
        guard uid != 0, gid != 0 else {
            throw SandboxError(.badPlan, "the sandbox's user \"\(name)\" is root or in root's group; it must be unprivileged")
        }
        return SandboxUser(name: name, uid: uid, gid: gid)
    }

    /// Runs useradd; nil on success, else what went wrong.
    private static func create(_ name: String) -> String? {
        let candidates = ["/usr/sbin/useradd", "/sbin/useradd", "/usr/bin/useradd"]
        let useradd = candidates.first { access($0, X_OK) == 0 }
        guard let useradd else { return "no useradd on this host" }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: useradd)
        // No home, no login: nothing but sandboxed commands ever runs as it.
        process.arguments = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                             "--shell", "/usr/sbin/nologin", "--comment", "proctor sandboxes", name]
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        do { try process.run() } catch { return "\(useradd): \(error)" }
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return process.terminationStatus == 0 ? nil
            : "\(useradd) exited \(process.terminationStatus): \(text.trimmingCharacters(in: .whitespacesAndNewlines))"
    }
}
