import Foundation
@testable import ProctorLoop
import ProctorSandbox
import XCTest

/// Issue 13: the experiment's peak GPU memory in runs.jsonl, as `peak_gpu_mem_mb`.
final class GPURecordTests: XCTestCase {
    private func record(gpu: Int?) -> RunRecord {
        var record = RunRecord(time: Date(timeIntervalSince1970: 0), run: "r", iteration: 1, status: .keep, reason: nil, agentReason: nil,
                               description: "d", commit: "c", parent: "p", score: 0.5, bestBefore: nil, scores: [], diff: nil,
                               measurements: [:], limits: [:], durations: [:], agent: "mutate", usage: nil, violations: [])
        record.peakGpuMemMB = gpu
        return record
    }

    func testPeakGPUMemoryIsRecordedUnderItsKeyAndAbsentWithoutAGPU() throws {
        let with = String(decoding: try JSONLines.encoder().encode(record(gpu: 700)), as: UTF8.self)
        XCTAssertTrue(with.contains("\"peak_gpu_mem_mb\":700"), with)
        XCTAssertTrue(with.contains("\"agent\":\"mutate\""), "the other keys as before: \(with)")
        let back = try JSONDecoder().decode(RunRecord.self, from: Data(with.utf8).replacingTime())
        XCTAssertEqual(back.peakGpuMemMB, 700)
        let without = String(decoding: try JSONLines.encoder().encode(record(gpu: nil)), as: UTF8.self)
        XCTAssertFalse(without.contains("gpu"), without)
    }

    func testMeasurementKeepsTheHighestPeakOverSeeds() {
        var first = Measurement()
        first.peakGPUBytes = 300 << 20
        var second = Measurement()
        second.peakGPUBytes = 200 << 20
        XCTAssertEqual(first.merged(with: second).peakGPUBytes, 300 << 20)
        XCTAssertNil(Measurement().merged(with: Measurement()).peakGPUBytes)
    }
}

private extension Data {
    /// The record's time as the decoder of this test reads it (a number).
    func replacingTime() -> Data {
        let text = String(decoding: self, as: UTF8.self)
        guard let range = text.range(of: #""time":"[^"]*""#, options: .regularExpression) else { return self }
        return Data(text.replacingCharacters(in: range, with: "\"time\":0").utf8)
    }
}
