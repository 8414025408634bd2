import XCTest

final class AgentTestsPlaceholder: XCTestCase {}
