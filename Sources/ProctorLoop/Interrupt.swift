import Foundation
import ProctorSandbox

/// SIGINT/SIGTERM: finish or abort the current iteration cleanly instead of dying mid-write.
public enum Interrupt {
    nonisolated(unsafe) static var flag: sig_atomic_t = 0

    public static var requested: Bool { flag != 0 }

    static func install() {
        let handler: @convention(c) (Int32) -> Void = { _ in
            Interrupt.flag = 1
            ActiveSandbox.stop()
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
    }
}
