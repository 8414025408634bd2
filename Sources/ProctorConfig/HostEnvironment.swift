#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One variable of the process environment. `ProcessInfo.processInfo.environment` copies the
/// whole environment into a dictionary on every call; start-up paths that need one name use this.
public func hostEnvironment(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}
