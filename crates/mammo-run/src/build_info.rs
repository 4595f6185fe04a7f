//! What this binary is: embedded at build time by `build.rs`, so a manifest names the exact code.

use serde::{Deserialize, Serialize};

/// `mammogan --version`: the version with the commit it was built from.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MAMMOGAN_GIT_COMMIT"),
    ", dirty: ",
    env!("MAMMOGAN_GIT_DIRTY"),
    ", ",
    env!("MAMMOGAN_BUILD_PROFILE"),
    ", ",
    env!("MAMMOGAN_RUSTC_VERSION"),
    ")"
);

/// Code and build facts of the running binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The mammogan version (the workspace version).
    pub version: String,
    /// The git commit the binary was built from, or "unknown" (no `.git`, e.g. a container build).
    pub git_commit: String,
    /// "true" when tracked files differed from the commit at build time, "false", or "unknown".
    pub git_dirty: String,
    /// The cargo profile: "release" or "debug".
    pub profile: String,
    /// The optimisation level.
    pub opt_level: String,
    /// The target triple.
    pub target: String,
    /// `rustc --version` of the compiler.
    pub rustc: String,
    /// BLAKE3 of `Cargo.lock`: equal hashes mean equal dependency versions.
    pub cargo_lock_blake3: String,
    /// Enabled cargo features of mammogan (`cuda`, `wgpu`).
    pub features: Vec<String>,
    /// Backends compiled in: always `flex` (CPU), plus `cuda` and `wgpu` with their features.
    pub backends: Vec<String>,
    /// The SIMD features the whole binary was compiled for (`-C target-feature` / `target-cpu`).
    /// The matrix and element kernels (mammo-nn's, gemm, macerator) additionally pick AVX2/FMA/AVX-512 at run time.
    pub simd_compiled: Vec<String>,
}

impl BuildInfo {
    /// The facts of this binary.
    pub fn current() -> Self {
        let features: Vec<String> = [("cuda", cfg!(feature = "cuda")), ("wgpu", cfg!(feature = "wgpu"))]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(f, _)| f.to_string())
            .collect();
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("MAMMOGAN_GIT_COMMIT").to_string(),
            git_dirty: env!("MAMMOGAN_GIT_DIRTY").to_string(),
            profile: env!("MAMMOGAN_BUILD_PROFILE").to_string(),
            opt_level: env!("MAMMOGAN_OPT_LEVEL").to_string(),
            target: env!("MAMMOGAN_BUILD_TARGET").to_string(),
            rustc: env!("MAMMOGAN_RUSTC_VERSION").to_string(),
            cargo_lock_blake3: env!("MAMMOGAN_CARGO_LOCK_BLAKE3").to_string(),
            backends: std::iter::once("flex".to_string()).chain(features.iter().cloned()).collect(),
            features,
            simd_compiled: simd_compiled(),
        }
    }

    /// Whether the CUDA backend is compiled in.
    pub fn has_cuda(&self) -> bool {
        self.backends.iter().any(|b| b == "cuda")
    }

    /// Whether burn's wgpu (Vulkan) backend is compiled in.
    pub fn has_wgpu(&self) -> bool {
        self.backends.iter().any(|b| b == "wgpu")
    }
}

/// The SIMD target features this binary was compiled with.
pub fn simd_compiled() -> Vec<String> {
    let mut v = Vec::new();
    macro_rules! check {
        ($($f:tt),*) => { $( if cfg!(target_feature = $f) { v.push($f.to_string()); } )* };
    }
    check!("sse2", "sse4.2", "avx", "avx2", "fma", "avx512f", "neon");
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_facts_are_present() {
        let b = super::BuildInfo::current();
        assert!(!b.git_commit.is_empty() && !b.rustc.is_empty());
        assert!(["true", "false", "unknown"].contains(&b.git_dirty.as_str()));
        assert!(b.backends.contains(&"flex".to_string()));
    }
}
