// swift-tools-version:6.0
import PackageDescription

// Thin executable over library modules; the unsafe process work lives in C under sandbox/
// and runs as its own single-threaded executable (`proctor-sandbox`), so Swift never runs
// between fork and exec.
let package = Package(
    name: "Proctor",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "proctor", targets: ["proctor"]),
        .executable(name: "proctor-sandbox", targets: ["proctor-sandbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        // System libraries through pkg-config.
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CGit2", pkgConfig: "libgit2", providers: [.apt(["libgit2-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // NVML, loaded with dlopen when a phase has GPUs (Sources/CNVML/shim.h): no library to link.
        .systemLibrary(name: "CNVML"),
        // The launcher protocol (report records, options, limits), one header both sides compile:
        // the launcher includes it, Swift imports it as this module.
        .systemLibrary(name: "CLauncherProtocol", path: "sandbox/protocol"),

        // The launcher: namespaces, mounts, rlimits, cgroups, Landlock, seccomp, audit listener.
        .executableTarget(
            name: "proctor-sandbox",
            dependencies: ["CSeccomp"],
            path: "sandbox",
            exclude: ["README.md", "link-static.sh", "protocol"],
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Wno-unused-parameter"])],
            // Plain C: link it without the Swift runtime. SwiftPM links every executable through
            // swiftc, which otherwise adds swiftrt.o and libswiftCore (or, with
            // --static-swift-stdlib, the whole static runtime plus libstdc++): ~1.5 ms of start-up
            // per sandbox. "Embedded" is how the driver is told to add none of it. Then a static
            // PIE (libc and libseccomp inside; sandbox/link-static.sh says why and how).
            linkerSettings: [.unsafeFlags([
                "-no-static-stdlib", "-enable-experimental-feature", "Embedded",
                "-Xclang-linker", "-static-pie",
                "-Xclang-linker", "-fuse-ld=\(Context.packageDirectory)/sandbox/link-static.sh",
            ])]
        ),

        .target(
            name: "ProctorConfig",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]
        ),
        .target(
            name: "ProctorSandbox",
            dependencies: ["ProctorConfig", "CLauncherProtocol", "CNVML"]
        ),
        .target(
            name: "ProctorGit",
            dependencies: ["CGit2", "ProctorConfig"]
        ),
        .target(
            name: "ProctorLoop",
            dependencies: [
                "ProctorConfig", "ProctorSandbox", "ProctorGit", "ProctorAgents",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "ProctorAgents",
            dependencies: ["ProctorSandbox", "CCurl"]
        ),
        .target(
            name: "ProctorCommands",
            dependencies: [
                "ProctorConfig", "ProctorSandbox", "ProctorLoop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "proctor",
            dependencies: ["ProctorCommands"],
            exclude: ["link-as-needed.sh"],
            // libcurl (and the ~30 libraries it needs) is loaded only by the HTTP agent, on its first
            // request (Sources/CCurl/shim.h); this linker drops it from what every start-up loads.
            linkerSettings: [.unsafeFlags(["-Xclang-linker", "-fuse-ld=\(Context.packageDirectory)/Sources/proctor/link-as-needed.sh"])]
        ),

        // Locating the built binaries and running children with captured output, for the test targets.
        .target(name: "ProctorTestSupport", dependencies: ["ProctorSandbox"], path: "Tests/ProctorTestSupport"),
        .testTarget(name: "ProctorConfigTests", dependencies: ["ProctorConfig"]),
        .testTarget(name: "SandboxTests", dependencies: ["ProctorConfig", "ProctorSandbox", "ProctorTestSupport", "CLauncherProtocol"]),
        .testTarget(name: "GitTests", dependencies: ["ProctorGit"]),
        .testTarget(name: "LoopTests", dependencies: ["ProctorLoop", "ProctorGit", "ProctorConfig", "ProctorSandbox", "ProctorTestSupport"]),
        .testTarget(name: "AgentTests", dependencies: ["ProctorAgents", "ProctorTestSupport"]),
        .testTarget(name: "CLITests", dependencies: [
            "ProctorCommands", "ProctorConfig", "ProctorLoop", "ProctorSandbox",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
    ]
)
