import Foundation
import ProctorConfig
@testable import ProctorLoop
import ProctorSandbox
import ProctorTestSupport
import XCTest

/// Issue 13: a real `proctor run` loop (the Runner in this process, so that the test can present a
/// GPU: stand-in nodes, and NVML as the stub library `StubNVML`) records the experiment's peak GPU
/// memory as `peak_gpu_mem_mb` in each runs.jsonl record, and a candidate over `gpu_memory` is a
/// crash whose reason names the cap.
final class GPURunTests: XCTestCase {
    func testPeakGPUMemoryInRunsJsonlAndTheCapEndsTheIteration() throws {
        let ws = try LoopWorkspace()
        let stub = try StubNVML()
        try stub.script("gpuhog \(300 << 20) 50\n")
        useMachineLockInProcess(ws.machineLock)

        func runner(iterations: Int, resume: Bool, cap: Int64?) throws -> Runner {
            var env = try SandboxEnvironment.load(workspace: ws.root)
            let nvml = try NVML(library: stub.library)
            env.nvml = { nvml }
            env.gpus = { StubNVML.oneGPU }
            env.config.experiment.gpus = .count(1)
            env.config.experiment.gpuMemoryBytes = cap
            // The experiment holds "GPU memory" (a process the stub reports) while it trains.
            env.config.experiment.command = ["/bin/sh", "-c", "cp /bin/sleep /tmp/gpuhog && /tmp/gpuhog 0.6 && exec \"$@\"", "sh"]
                + env.config.experiment.command
            return try Runner(env: env, agentKind: "mutate", options: RunOptions(iterations: iterations, resume: resume, wait: false),
                              progress: Progress(total: iterations))
        }
        _ = try runner(iterations: 1, resume: false, cap: nil).run()
        let records = ws.records
        XCTAssertEqual(records.count, 2, "baseline and one iteration: \(records)")
        for record in records { XCTAssertEqual(record["peak_gpu_mem_mb"] as? Int, 300, "\(record)") }
        XCTAssertEqual(ws.rows.map(\.peakGPUMemMB), ["300", "300"], "the ledger's column too")
        // GPU time: 50% of the SMs for about 0.6 s a seed, sampled every 200 ms (a process's first
        // sample only starts its clock): at most 0.3 GPU-seconds a seed, and more than nothing.
        for record in records {
            let seeds = Double((record["scores"] as? [Any])?.count ?? 0)
            let seconds = try XCTUnwrap(record["gpu_seconds"] as? Double, "\(record)")
            XCTAssertGreaterThan(seconds, 0.05 * seeds, "\(record)")
            XCTAssertLessThanOrEqual(seconds, 0.35 * seeds, "\(record)")
        }

        _ = try runner(iterations: 1, resume: true, cap: 200 << 20).run()
        let capped = try XCTUnwrap(ws.records.last)
        XCTAssertEqual(capped["status"] as? String, "crash", "\(capped)")
        XCTAssertTrue((capped["reason"] as? String)?.contains("gpu_memory limit: GPU memory 300 MiB over the cap of 200 MiB") ?? false,
                      "\(capped)")
        let limits = ws.jsonLines(".proctor/audit.jsonl").filter { ($0["detail"] as? String)?.hasPrefix("gpu_memory: ") == true }
        XCTAssertEqual(limits.count, 1)
        XCTAssertEqual(limits.first?["kind"] as? String, "limit")
        XCTAssertEqual(limits.first?["iteration"] as? Int, capped["iteration"] as? Int)
    }

    /// A ledger from before `peak_gpu_mem_mb` (or before `sealed` too) is read by its own header's
    /// names, and gets the columns, empty, in one atomic rewrite when a run opens it.
    func testOlderLedgersGetTheNewColumns() throws {
        for (header, row) in [("iteration\tcommit\tscore\tsealed\tstatus\tseconds\tpeak_mem_mb\tfeatures\ttrees\tdescription",
                               "0\tabc\t0.5\t0.6\tkeep\t1.0\t12\t5\t50\tbaseline"),
                              ("iteration\tcommit\tscore\tstatus\tseconds\tpeak_mem_mb\tfeatures\ttrees\tdescription",
                               "0\tabc\t0.5\tkeep\t1.0\t12\t5\t50\tbaseline")] {
            let dir = NSTemporaryDirectory() + "/proctor-ledger-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try Data((header + "\n" + row + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/results.tsv"))
            let before = try XCTUnwrap(Ledger.rows(in: dir).first)
            XCTAssertEqual([before.peakMemMB, before.features, before.trees], [12, 5, 50])
            XCTAssertNil(before.peakGPUMemMB)
            XCTAssertEqual(before.description, "baseline")
            _ = try Ledger(directory: dir)
            let text = try String(contentsOfFile: dir + "/results.tsv", encoding: .utf8)
            let lines = text.split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.first, LedgerRow.header.joined(separator: "\t"))
            XCTAssertEqual(lines.last, header.contains("sealed") ? "0\tabc\t0.5\t0.6\tkeep\t1.0\t12\t\t5\t50\tbaseline"
                                                                 : "0\tabc\t0.5\t\tkeep\t1.0\t12\t\t5\t50\tbaseline")
            XCTAssertEqual(Ledger.rows(in: dir).first, before)
        }
    }
}
