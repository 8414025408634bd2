/// `strategy = "random"`: uniform draws over the space (each knob on its own scale), the baseline
/// a model-based strategy has to beat.
struct RandomStrategy: SearchStrategy {
    var designLength: Int { 0 }

    func candidates(_ space: SearchSpace, _ observations: [Observation], design: [[Double]], _ rng: inout SplitMix64) -> [[Double]] {
        (0..<64).map { _ in space.random(&rng) }
    }
}
