import ArgumentParser
import ProctorConfig

/// `proctor run --executor local|slurm`.
extension ExecutorSettings.Kind: ExpressibleByArgument {}
