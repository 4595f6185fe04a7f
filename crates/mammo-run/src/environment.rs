//! The fingerprint of the machine a run used: what can change a run's numbers or its speed.
//!
//! Read from `/proc` and `/sys` (Linux), `std::arch` feature detection and, where present,
//! `nvidia-smi` and the Vulkan loader (wgpu build). Everything is optional: a field that cannot be read is `None`, never an error.
//! Privacy: the host name is only stored as a keyed BLAKE3 hash; environment values that are paths
//! keep only their file names.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::{self, CpuLimit};

/// The environment of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// `linux`, `macos`, ...
    pub os: String,
    /// The distribution (`PRETTY_NAME` of `/etc/os-release`).
    pub os_release: Option<String>,
    /// The kernel release.
    pub kernel: Option<String>,
    /// The CPU architecture.
    pub arch: String,
    /// The CPU model name.
    pub cpu_model: Option<String>,
    /// SIMD features this CPU offers (of sse2, sse4.2, avx, avx2, fma, avx512f, neon).
    pub simd_available: Vec<String>,
    /// SIMD features the binary was compiled for (see [`crate::BuildInfo::simd_compiled`]).
    pub simd_compiled: Vec<String>,
    /// Logical CPUs of the machine.
    pub cores_online: usize,
    /// CPUs this process may use (affinity and cgroup quota, as `std::thread::available_parallelism`).
    pub cores_available: usize,
    /// The cgroup's CPU quota, if any.
    pub cgroup_cpu_limit: Option<CpuLimit>,
    /// The cgroup version (`v1`, `v2`, `none`).
    pub cgroup_version: String,
    /// Worker threads the run actually used (None outside a run).
    pub threads_used: Option<usize>,
    /// Physical memory in bytes.
    pub memory_total_bytes: Option<u64>,
    /// The cgroup's memory limit in bytes.
    pub cgroup_memory_limit_bytes: Option<u64>,
    /// The GPUs `nvidia-smi` reports (empty: none, or no driver).
    pub gpus: Vec<Gpu>,
    /// The highest CUDA version the driver supports (`nvidia-smi`), if any.
    pub cuda_driver_version: Option<String>,
    /// The Vulkan (Metal) adapters of the wgpu build (empty in other builds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vulkan_adapters: Vec<crate::vulkan::GpuAdapter>,
    /// The container, if this runs in one.
    pub container: Container,
    /// Environment variables that change numerics or speed (thread counts, allocator, CUDA flags).
    pub env_vars: BTreeMap<String, String>,
    /// Keyed BLAKE3 of the host name (16 hex digits): tells machines apart without naming them.
    pub host_hash: String,
}

/// One GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// The model name.
    pub name: String,
    /// The driver version.
    pub driver: String,
    /// Memory in MiB.
    pub memory_mib: Option<u64>,
    /// Compute capability, e.g. "9.0".
    pub compute_capability: Option<String>,
}

/// Whether and in what this runs as a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Whether a container was detected.
    pub detected: bool,
    /// `docker`, `podman`, `kubernetes`, `containerd`, `lxc` or the `container` variable's value.
    pub runtime: Option<String>,
    /// The image's name (`MAMMOGAN_IMAGE_NAME` or the OCI label `org.opencontainers.image.title`).
    pub image_name: Option<String>,
    /// The image's version (`MAMMOGAN_IMAGE_VERSION` / `org.opencontainers.image.version`).
    pub image_version: Option<String>,
    /// The image's source revision (`MAMMOGAN_IMAGE_REVISION` / `org.opencontainers.image.revision`).
    pub image_revision: Option<String>,
}

/// Variables recorded exactly by name, and by prefix: the ones that change thread counts, the
/// allocator, or GPU numerics.
const ENV_EXACT: &[&str] =
    &["LD_PRELOAD", "GLIBC_TUNABLES", "RUST_MIN_STACK", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"];
const ENV_PREFIXES: &[&str] = &[
    "RAYON_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "GOMP_",
    "MALLOC_",
    "_RJEM_",
    "JEMALLOC_",
    "MIMALLOC_",
    "CUDA_",
    "CUBLAS_",
    "CUDNN_",
    "NVIDIA_TF32",
    "CUBECL_",
    "BURN_",
    "WGPU_",
    "VK_",
];

impl Environment {
    /// Fingerprints this machine. `threads_used` is the size of the run's worker pool, if any.
    pub fn detect(threads_used: Option<usize>) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores_available = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let processors = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let limits = cgroup::limits();
        let (gpus, cuda_driver_version) = nvidia_smi();
        Environment {
            os: std::env::consts::OS.to_string(),
            os_release: os_release(),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            arch: std::env::consts::ARCH.to_string(),
            cpu_model: cpu_model(&cpuinfo),
            simd_available: simd_available(),
            simd_compiled: crate::build_info::simd_compiled(),
            cores_online: if processors > 0 { processors } else { cores_available },
            cores_available,
            cgroup_cpu_limit: limits.cpu,
            cgroup_version: limits.version,
            threads_used,
            memory_total_bytes: meminfo_kib("MemTotal").map(|k| k * 1024),
            cgroup_memory_limit_bytes: limits.memory_bytes,
            gpus,
            cuda_driver_version,
            vulkan_adapters: crate::vulkan::adapters(),
            container: container(),
            env_vars: numeric_env_vars(std::env::vars()),
            host_hash: host_hash(),
        }
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The SIMD features this CPU offers, detected at run time.
pub fn simd_available() -> Vec<String> {
    #[allow(unused_mut)]
    let mut v: Vec<String> = Vec::new();
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        macro_rules! check {
            ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { v.push($f.to_string()); } )* };
        }
        check!("sse2", "sse4.2", "avx", "avx2", "fma", "avx512f");
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push("neon".to_string());
        }
    }
    v
}

/// A value of `/proc/meminfo` in KiB.
fn meminfo_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The memory this process may still take, in bytes: the machine's available memory (MemAvailable),
/// or less when the process's cgroup limit minus what it already holds is lower (a container's
/// limit, not the host's memory, is what gets it killed). None where neither is known.
pub fn available_memory_bytes() -> Option<u64> {
    let host = meminfo_kib("MemAvailable").map(|k| k * 1024);
    let resident = std::fs::read_to_string("/proc/self/status").ok().and_then(|t| {
        t.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    });
    let cgroup = crate::cgroup::limits().memory_bytes.map(|l| l.saturating_sub(resident.unwrap_or(0) * 1024));
    match (host, cgroup) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    }
}

/// The peak resident memory of this process so far (VmHWM), in bytes.
pub fn peak_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|k| k * 1024)
}

/// Keyed BLAKE3 of the host name, 16 hex digits.
pub fn host_hash() -> String {
    let name = read_trim("/proc/sys/kernel/hostname")
        .or_else(|| read_trim("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let h = blake3::keyed_hash(blake3::hash(b"mammogan-host-v1").as_bytes(), name.as_bytes());
    h.to_hex()[..16].to_string()
}

/// The variables of [`ENV_EXACT`] and [`ENV_PREFIXES`]; path-like values keep only file names, so a
/// home directory (and the user name in it) never reaches a manifest.
pub fn numeric_env_vars(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter(|(k, _)| ENV_EXACT.contains(&k.as_str()) || ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| {
            let v = if v.contains('/') {
                v.split([':', ' '])
                    .filter(|s| !s.is_empty())
                    .map(|s| if s.contains('/') { s.rsplit('/').next().unwrap_or("").to_string() } else { s.into() })
                    .collect::<Vec<_>>()
                    .join(":")
            } else {
                v
            };
            (k, v)
        })
        .collect()
}

fn container() -> Container {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cgroup1 = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    let runtime = if std::path::Path::new("/.dockerenv").exists() {
        Some("docker".to_string())
    } else if std::path::Path::new("/run/.containerenv").exists() {
        Some("podman".to_string())
    } else if env("KUBERNETES_SERVICE_HOST").is_some() || cgroup1.contains("kubepods") {
        Some("kubernetes".to_string())
    } else if let Some(c) = env("container") {
        Some(c)
    } else if cgroup1.contains("docker") {
        Some("docker".to_string())
    } else if cgroup1.contains("containerd") {
        Some("containerd".to_string())
    } else if cgroup1.contains("lxc") {
        Some("lxc".to_string())
    } else {
        None
    };
    Container {
        detected: runtime.is_some(),
        runtime,
        image_name: env("MAMMOGAN_IMAGE_NAME").or_else(|| env("org.opencontainers.image.title")),
        image_version: env("MAMMOGAN_IMAGE_VERSION").or_else(|| env("org.opencontainers.image.version")),
        image_revision: env("MAMMOGAN_IMAGE_REVISION").or_else(|| env("org.opencontainers.image.revision")),
    }
}

/// Runs a command with a deadline (a wedged driver can make `nvidia-smi` hang).
fn run_with_timeout(program: &str, args: &[&str], limit: Duration) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                use std::io::Read;
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return status.success().then_some(out);
            }
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// GPUs and the driver's CUDA version from `nvidia-smi`; nothing when it is absent or fails.
fn nvidia_smi() -> (Vec<Gpu>, Option<String>) {
    let limit = Duration::from_secs(5);
    let query = "--query-gpu=name,driver_version,memory.total,compute_cap";
    let Some(csv) = run_with_timeout("nvidia-smi", &[query, "--format=csv,noheader,nounits"], limit) else {
        return (Vec::new(), None);
    };
    let gpus = parse_gpus(&csv);
    let cuda = run_with_timeout("nvidia-smi", &[], limit).and_then(|t| parse_cuda_version(&t));
    (gpus, cuda)
}

fn parse_gpus(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let get = |i: usize| f.get(i).map(|s| s.to_string()).filter(|s| !s.is_empty() && !s.starts_with('['));
            Gpu {
                name: get(0).unwrap_or_default(),
                driver: get(1).unwrap_or_default(),
                memory_mib: get(2).and_then(|s| s.parse().ok()),
                compute_capability: get(3),
            }
        })
        .collect()
}

fn parse_cuda_version(text: &str) -> Option<String> {
    let i = text.find("CUDA Version:")?;
    text[i + "CUDA Version:".len()..].split_whitespace().next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_vars_are_filtered_and_paths_reduced_to_file_names() {
        let vars = [
            ("RAYON_NUM_THREADS", "2"),
            ("LD_PRELOAD", "/home/alice/lib/libjemalloc.so.2"),
            ("HOME", "/home/alice"),
            ("USER", "alice"),
            ("CUDA_VISIBLE_DEVICES", "0,1"),
            ("MALLOC_ARENA_MAX", "2"),
        ];
        let got = numeric_env_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got["LD_PRELOAD"], "libjemalloc.so.2");
        assert!(!format!("{got:?}").contains("alice"));
    }

    #[test]
    fn nvidia_smi_output_is_parsed() {
        let gpus = parse_gpus("NVIDIA H100 80GB HBM3, 550.54.15, 81559, 9.0\n");
        assert_eq!(gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(gpus[0].memory_mib, Some(81559));
        assert_eq!(gpus[0].compute_capability.as_deref(), Some("9.0"));
        let head = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |";
        assert_eq!(parse_cuda_version(head).as_deref(), Some("12.4"));
    }

    #[test]
    fn this_machine_is_fingerprinted_without_its_name() {
        let e = Environment::detect(Some(2));
        assert!(e.cores_available >= 1 && e.cores_online >= 1);
        assert_eq!(e.host_hash.len(), 16);
        let name = read_trim("/proc/sys/kernel/hostname").unwrap_or_default();
        let json = serde_json::to_string(&e).unwrap();
        if name.len() > 3 {
            assert!(!json.contains(&name), "the host name leaked: {json}");
        }
        assert!(peak_memory_bytes().unwrap_or(1) > 0);
    }
}
