@testable import ProctorConfig
@testable import ProctorSandbox
import XCTest

/// Issue 8: an analysis run's plan is the experiment's, except that its outputs come from a scratch
/// directory of its own (so it never writes what the evaluator reads) and the notes are readable.
final class AnalysisPlanTests: XCTestCase {
    private func request(_ phase: Phase, scratch: String?) -> LaunchRequest {
        var config = WorkspaceConfig(root: "/ws", file: "/ws/proctor.toml")
        config.files.editable = ["train.py"]
        config.files.notes = ["LOG.md"]
        config.files.hidden = ["holdout/**"]
        config.files.outputs = ["outputs", "runs/plots"]
        config.experiment.maxOutputBytes = 1 << 20
        let preset = PolicyPreset(name: "test", system: ["/usr"], hide: [], tmpSize: 1 << 20, shmSize: 0, nofile: 64,
                                  stdioLimit: 1 << 20, graceMs: 100, allowNetwork: false)
        var request = LaunchRequest(config: config, preset: preset, phase: phase, command: ["true"],
                                    pinnedDirectory: phase == .evaluator ? "/pinned" : nil)
        request.analysisScratch = scratch
        return request
    }

    private let host = HostFacts(environment: [:], exists: { _ in true }, workspaceEntries: { ["LOG.md", "train.py", "holdout"] },
                                 interpreter: { _ in nil })

    func testScratchIsBoundAtTheOutputsAndTheNotesAreShown() throws {
        let experiment = try LaunchPlan.compile(request(.experiment, scratch: nil), host: host)
        XCTAssertTrue(experiment.mounts.contains(.readWrite(source: "/ws/outputs", target: "/ws/outputs")))
        XCTAssertTrue(experiment.mounts.contains(.hide("/ws/LOG.md")), "an experiment sees the notes empty")

        let scratch = "/ws/.proctor/analysis/3/scratch"
        let analysis = try LaunchPlan.compile(request(.experiment, scratch: scratch), host: host)
        let writable = analysis.mounts.compactMap { mount -> [String]? in
            if case .readWrite(let source, let target) = mount { return [source, target] }
            return nil
        }
        XCTAssertEqual(writable, [[scratch + "/outputs", "/ws/outputs"], [scratch + "/runs/plots", "/ws/runs/plots"]],
                       "no bind of the real outputs")
        XCTAssertFalse(analysis.mounts.contains(.hide("/ws/LOG.md")))
        XCTAssertTrue(analysis.mounts.contains(.hide("/ws/holdout")), "hidden stays hidden")
        XCTAssertTrue(analysis.mounts.contains(.hide("/ws/.proctor")), "the scratch's own directory is invisible inside")
        XCTAssertEqual(analysis.outputLimits.map(\.0), [scratch + "/outputs", scratch + "/runs/plots"], "the cap is polled on the host")
        XCTAssertEqual(analysis.writable, ["/ws/outputs", "/ws/runs/plots"])
        XCTAssertTrue(analysis.environment.contains { $0 == ("PROCTOR_OUTPUTS", "/ws/outputs") })
    }

    func testScratchIsRefusedOutsideTheExperimentPhase() {
        for phase in [Phase.evaluator, .agent] {
            XCTAssertThrowsError(try LaunchPlan.compile(request(phase, scratch: "/s"), host: host)) { error in
                XCTAssertTrue("\(error)".contains("experiment phase only"), "\(error)")
            }
            XCTAssertNoThrow(try LaunchPlan.compile(request(phase, scratch: nil), host: host))
        }
    }
}
