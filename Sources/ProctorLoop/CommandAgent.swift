import Foundation
import ProctorAgents
import ProctorConfig
import ProctorSandbox

/// `kind = "command"`: a coding CLI (Claude Code, Codex, aider, a script) run in the agent-phase
/// sandbox. It may write only `editable` and `notes` files, never sees `hidden` or `.git`, gets a
/// private home that is deleted afterwards, and the network only as `[agent] network` says (an
/// allowlist through the launcher's proxy, or the host's).
/// Whatever it leaves running dies with its PID namespace before the experiment starts.
public struct CommandAgent: Agent {
    let env: SandboxEnvironment
    let audit: AuditLog
    let run: String

    public init(env: SandboxEnvironment, audit: AuditLog, run: String) {
        self.env = env
        self.audit = audit
        self.run = run
    }

    public func propose(_ context: AgentContext) throws -> Proposal {
        let config = env.config
        let home = try CommandAgent.makeHome()
        defer {
            FileTree.removeDirectory(home)
        }
        try CommandAgent.populate(home: home, config: config)
        let prompt = CommandAgent.prompt(context)
        let promptFile = home + "/PROMPT.md"
        try Data(prompt.utf8).write(to: URL(fileURLWithPath: promptFile))
        let command = config.agent.command.map {
            $0.replacingOccurrences(of: "{prompt_file}", with: promptFile).replacingOccurrences(of: "{prompt}", with: prompt)
        }
        let output = home + "/.proctor-agent-output"
        // Read back through this descriptor, never the path: the home is the agent's to write, and
        // a link put there in place of the file would make proctor read a host file (a credentials
        // file) into the summary, hence into the ledger and the agent's next prompt.
        let fd = open(output, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AgentError.failed(reason: "cannot create the agent's output file") }
        defer { close(fd) }
        // The transcript: the agent's stderr as it runs, then its stdout (read back below), so a
        // user can read why it did what it did. Under .proctor/, which no sandbox sees.
        let transcript = context.transcript.flatMap { Transcript(path: $0) }
        transcript?.append("# agent command: \(config.agent.command.joined(separator: " "))\n# stderr\n")
        defer { transcript?.appendOutput(of: fd) }
        let result: SandboxResult
        do {
            result = try env.launch(phase: .agent, command: command, seed: context.seed, agentHome: home, audit: audit,
                                    context: AuditContext(run: run, iteration: context.iteration, config: config),
                                    stdout: fd, stderr: transcript?.fd ?? 2, adjust: { request in
                if let memory = context.memory.directory, let source = Transcript.memorySource(config.root) {
                    request.extraReadOnly.append((source, memory))
                }
            })
        } catch {
            throw AgentError.failed(reason: "agent sandbox: \(error)")
        }
        // Every denied write is already audited. An attempt on what decides or records the score
        // (the locked files, hidden data, git, proctor's state, the config) or on an existing
        // frozen file rejects the iteration, so that nothing else the agent changed runs. A new
        // name that was simply not created (the temporary file of an atomic save, which CLIs such
        // as Claude Code then retry as an in-place write) or a write outside the workspace is
        // contained and only audited. A flood of attempts (records dropped) also rejects.
        if let refused = CommandAgent.refusedWrites(result, config: config, run: run, iteration: context.iteration) {
            throw AgentError.rejected(reason: refused, paths: [])
        }
        // A budget hit anywhere in the agent's tree (a helper it started was OOM-killed) fails the
        // proposal even when the agent itself exits 0: what it left behind is not to be trusted.
        let budgets = result.limitsHit.filter { $0 != "stdio" }
        guard result.status == 0, budgets.isEmpty else { throw AgentError.failed(reason: "agent command: \(result.reason)") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        // The summary is one line near the end: the last 1 MiB is plenty, whatever the agent printed.
        let size = lseek(fd, 0, SEEK_END)
        var offset = max(0, size - (1 << 20))
        while offset < size {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
            offset += off_t(n)
        }
        let text = String(decoding: bytes, as: UTF8.self)
        return Proposal(description: Self.summary(of: text))
    }

    /// Copies `[agent.home_files]` into a fresh private home: each file's bytes, links followed (a
    /// copied link, as a dotfile manager leaves, pointed at a host path no sandbox shows), readable
    /// and writable by its owner alone (a credentials file).
    static func populate(home: String, config: WorkspaceConfig) throws {
        for (source, target) in config.agent.homeFiles.sorted(by: { $0.key < $1.key }) {
            let destination = home + "/" + target
            var info = stat()
            guard (try? FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent,
                                                             withIntermediateDirectories: true)) != nil,
                stat(source, &info) == 0, info.st_mode & S_IFMT == S_IFREG,
                let bytes = FileManager.default.contents(atPath: source),
                FileManager.default.createFile(atPath: destination, contents: bytes,
                                               attributes: [.posixPermissions: Int(info.st_mode & 0o700 | 0o600)])
            else {
                throw AgentError.failed(reason: "cannot copy [agent.home_files] \(source) into the agent's home")
            }
        }
    }

    /// Why the agent's denied writes reject its proposal, or nil when they were all harmless.
    static func refusedWrites(_ result: SandboxResult, config: WorkspaceConfig, run: String, iteration: Int) -> String? {
        guard result.deniedWrites > 0 else { return nil }
        let rules = AuditContext(run: run, iteration: iteration, config: config)
        let root = config.root + "/"
        let serious = result.deniedPaths.filter { path in
            switch rules.rule(for: path) {
            case "locked", "hidden", "git", "proctor-state", "config": return true
            case "frozen":
                var st = stat()
                return lstat(path, &st) == 0  // an existing file, not a new name
            default: return false
            }
        }
        guard !serious.isEmpty || result.droppedRecords > 0 else { return nil }
        let named = serious.prefix(8).map { $0.hasPrefix(root) ? String($0.dropFirst(root.count)) : $0 }
        if named.isEmpty { return "the agent flooded the sandbox with \(result.deniedWrites) denied writes (see the audit)" }
        return "the agent tried to write where it may not: \(named.joined(separator: ", "))"
            + (serious.count > named.count ? " and \(serious.count - named.count) more (see the audit)" : "")
    }

    /// The prompt of a coding CLI. Not the http agent's: that one asks for FILE blocks or a diff
    /// in the answer and says the model cannot run anything, while a CLI edits the files itself
    /// and only its changes to the working tree count.
    static func prompt(_ context: AgentContext) -> String {
        let editable = context.editableFiles.keys.sorted()
        let notes = context.notesFiles.sorted()
        let system = """
            You are the research agent of Proctor, a supervisor that runs machine-learning experiments. \
            This turn you make ONE change by editing files in the current directory. When you are done, \
            Proctor validates your edits, runs the experiment in a sandbox, scores it with a locked \
            evaluator, and keeps the change only if the score improves; otherwise it is reverted.

            Rules:
            - Edit only these files, in place: \(editable.joined(separator: ", ")).\(notes.isEmpty ? "" : "\n- You may also write these notes files (they never affect the score): \(notes.joined(separator: ", ")).")
            - Write files in place: creating, renaming or deleting files is refused, and so is a save \
            that writes a temporary file and renames it over the original.
            - Any write anywhere else (the evaluator, its data, proctor.toml, .git, outside the \
            workspace) is blocked, recorded, and gets the whole turn rejected.
            - Change at most \(context.maxDiffLines) lines in total (added plus removed lines).
            - Do not run the experiment yourself; Proctor does, after you finish.
            - Make one focused change you expect to improve the metric; do not try to game the evaluator.
            - Finish by printing one line: SUMMARY: <what you changed and why>
            """
        let user = AgentPrompt.user(context).replacingOccurrences(
            of: "Propose your next change in the answer format.",
            with: "Make your change now by editing the files, then print the SUMMARY line.")
        return system + "\n\n" + user
    }

    /// The agent's `SUMMARY:` line, else its last non-empty line, at most the 300 characters of a description.
    static func summary(of text: String) -> String {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        if let line = lines.last(where: { $0.uppercased().hasPrefix("SUMMARY:") }) {
            return line.dropFirst("SUMMARY:".count).trimmingCharacters(in: .whitespaces).prefix(scalars: 300)
        }
        return (lines.last(where: { !$0.isEmpty }) ?? "command agent change").prefix(scalars: 300)
    }

    /// A private home outside the workspace and outside /tmp (the sandbox mounts its own /tmp over it).
    static func makeHome() throws -> String {
        do {
            return try ScratchDirectory.make(in: ScratchDirectory.agentBase, prefix: "proctor-agent")
        } catch {
            throw AgentError.failed(reason: "\(error)")
        }
    }
}
