import Foundation
import ProctorSandbox
import ProctorConfig

/// Progress of a run on stderr-free stdout: an updating status line on a terminal, plain lines otherwise.
public final class Progress: @unchecked Sendable {
    private let isTerminal: Bool
    private let lock = NSLock()
    private var ticker: DispatchSourceTimer?
    private var current = ""
    private var phaseStart = Date()
    private var budgetMs: Int64 = 0
    public var total: Int?

    public init(total: Int?) {
        self.total = total
        isTerminal = isatty(1) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    /// A plain line (clears the status line first on a terminal). Whatever it quotes is shown
    /// escaped (`displayEscaped`): a warning that listed the editable files printed a file name's
    /// C1 escape sequence raw into the operator's terminal.
    public func line(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        stopTicker()
        write((isTerminal ? "\r\u{1B}[K" : "") + text.displayEscaped() + "\n")
    }

    /// The iteration entered a phase with a wall-clock budget.
    public func phase(_ iteration: Int, _ name: String, budgetMs: Int64) {
        lock.lock()
        defer { lock.unlock() }
        current = "[\(label(iteration))] \(name)"
        phaseStart = Date()
        self.budgetMs = budgetMs
        guard isTerminal else { return }
        stopTicker()
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now(), repeating: .milliseconds(250))
        timer.setEventHandler { [weak self] in self?.tick() }
        ticker = timer
        timer.resume()
    }

    /// An iteration ended.
    public func finished(_ iteration: Int, status: IterationStatus, score: Double?, best: Double,
                         seconds: Double, description: String) {
        let scoreText = score.map { format($0) } ?? "-"
        line("[\(label(iteration))] \(status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) score \(scoreText)  best \(format(best))  \(String(format: "%.1fs", seconds))  \(description)")
    }

    private func tick() {
        lock.lock()
        defer { lock.unlock() }
        let elapsed = Date().timeIntervalSince(phaseStart)
        write("\r\u{1B}[K\(current) \(String(format: "%.1fs", elapsed)) / \(String(format: "%.0fs", Double(budgetMs) / 1000))")
    }

    private func stopTicker() {
        ticker?.cancel()
        ticker = nil
    }

    private func label(_ iteration: Int) -> String {
        total.map { "\(iteration)/\($0)" } ?? "\(iteration)"
    }

    private func write(_ text: String) {
        Console.out(text)
    }
}
