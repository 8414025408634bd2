import XCTest

final class SandboxTestsPlaceholder: XCTestCase {}
