import XCTest

final class LoopTestsPlaceholder: XCTestCase {}
