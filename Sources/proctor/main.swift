import ArgumentParser
import ProctorConfig

struct Proctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Supervise an untrusted research agent.")
}
Proctor.main()
