import Crypto
import Foundation

/// `[gates] fresh_seeds` (the default): every candidate is confirmed on seeds drawn for it alone.
/// Listed seeds are known in advance (`proctor.toml`, `PROCTOR_SEED`), so code can behave
/// differently on each of them: an agent that tunes a noise offset per seed value, one seed at a
/// time, gets three lucky scores past the gate while the change does nothing on any other seed.
/// Fresh seeds come from a secret of the run (`RunState.seedKey`, in `.proctor/`, which no sandbox
/// sees) through SHA-256, so neither the seeds already revealed (an experiment sees its own) nor
/// anything in the workspace predicts the next candidate's. The same run and iteration give the
/// same seeds, so `--resume` measures what an uninterrupted run would.
enum FreshSeeds {
    /// A new secret: 32 bytes from the system's generator, as hex.
    static func newKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// `count` seeds for iteration `iteration`, each in 1...2^31-1 (every framework's seed range),
    /// distinct, and none in `avoiding` (the first seed).
    static func seeds(key: String, iteration: Int, count: Int, avoiding: Set<UInt64>) -> [UInt64] {
        var seeds: [UInt64] = []
        var draw = 0
        while seeds.count < count {
            let digest = SHA256.hash(data: Data("\(key):\(iteration):\(draw)".utf8))
            let word = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let seed = 1 + word % 2_147_483_647
            if !avoiding.contains(seed) && !seeds.contains(seed) { seeds.append(seed) }
            draw += 1
        }
        return seeds
    }
}
