/// Which step of an iteration a sandboxed command belongs to; each sees a different view.
public enum Phase: String, Sendable, CaseIterable, Codable {
    /// The agent-edited script: reads the workspace (not `hidden`), writes only `outputs`.
    case experiment
    /// The locked scorer: reads the pinned locked files, `hidden` and `outputs`; writes only scratch.
    case evaluator
    /// A command agent: writes only `editable` and `notes`, never sees `hidden`.
    case agent
}
