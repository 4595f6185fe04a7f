//! Choosing where tensors live: the pure-Rust `flex` CPU backend, CUDA when built with
//! `--features cuda`, or any GPU through burn's wgpu backend (Vulkan; Metal on Apple) when built with
//! `--features wgpu`.
//!
//! On flex, results are bit-identical from run to run *and across thread counts*: the parallel kernels
//! split work over output elements (batch, tiles, rows), never a floating-point sum over threads (our
//! own kernels in `kernels/` add per-sample parts in sample order), so the thread count changes speed,
//! not numbers (the tests check 1 vs 2 threads). CUDA and wgpu kernels make no such promise (see
//! README, GPU: what `tests/gpu/run` measured on wgpu).
//!
//! `auto` prefers CUDA, then a hardware wgpu adapter, then the CPU, and logs which it took and why; a
//! software adapter (lavapipe) is never taken by `auto`, only by name (`wgpu:N`).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// What a run used, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `"flex"` (CPU), `"cuda"` or `"wgpu"`.
    pub backend: String,
    /// The GPU index (0 on CPU): the CUDA ordinal, or the N of `wgpu:N`.
    pub index: usize,
    /// The wgpu adapter in words (`NVIDIA H200 (discrete, vulkan, NVIDIA 560.35.03)`); None otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// CPU worker threads of the flex backend (the rayon pool); for CUDA, the host threads.
    pub threads: usize,
    /// Whether runs on this device are bit-reproducible (flex: yes; CUDA and wgpu: not promised).
    pub deterministic: bool,
    /// Why `auto` chose this device (None when the device was named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// For people: "flex (CPU), 2 threads, bit-reproducible" or "cuda:0, not bit-reproducible".
impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.backend.as_str() {
            "flex" => write!(f, "flex (CPU), {} threads", self.threads)?,
            other => write!(f, "{other}:{}", self.index)?,
        }
        if let Some(a) = &self.adapter {
            write!(f, " {a}")?;
        }
        f.write_str(if self.deterministic { ", bit-reproducible" } else { ", not bit-reproducible" })?;
        if let Some(r) = &self.reason {
            write!(f, " (auto: {r})")?;
        }
        Ok(())
    }
}

/// Parses `"auto"`, `"cpu"`, `"cuda[:N]"` or `"wgpu[:N]"` (also `"vulkan[:N]"`) and returns the
/// device with autodiff enabled.
///
/// `auto` takes CUDA device 0 when the binary was built with `cuda` and a GPU answers, else the first
/// hardware wgpu adapter when built with `wgpu` ([`crate::gpu::auto_choice`]), else the CPU; it logs
/// its choice and [`DeviceInfo::reason`] says why. `threads` sizes the CPU worker pool (0 = one per
/// core); the pool is process-wide, so only the first call in a process sets it and
/// [`DeviceInfo::threads`] says what it is.
pub fn select_device(spec: &str, threads: usize) -> Result<(Device, DeviceInfo)> {
    let spec = spec.trim().to_ascii_lowercase();
    let threads = init_thread_pool(threads);
    let cpu = || {
        (
            Device::flex().autodiff(),
            DeviceInfo { backend: "flex".into(), index: 0, adapter: None, threads, deterministic: true, reason: None },
        )
    };
    let (name, index) = match spec.split_once(':') {
        Some((name, n)) => {
            let n = n.parse::<usize>().map_err(|_| {
                NnError::Device(format!("device {spec:?}: expected {name}:N with N a GPU index (see `mammogan env`)"))
            })?;
            (name, Some(n))
        }
        None => (spec.as_str(), None),
    };
    match (name, index) {
        ("cpu" | "flex", None) => Ok(cpu()),
        ("auto", None) => {
            let (device, mut info, reason) = auto(threads, cpu);
            tracing::info!("--device auto: {} because {reason}", info.backend);
            info.reason = Some(reason);
            Ok((device, info))
        }
        ("cuda", n) => cuda_device(n.unwrap_or(0), threads),
        ("wgpu" | "vulkan", n) => wgpu_device(&crate::gpu::adapters(), n, threads),
        _ => Err(NnError::Device(format!("unknown device {spec:?}: use auto, cpu, cuda[:N] or wgpu[:N]"))),
    }
}

/// `auto`'s choice and the reason, in words.
fn auto(threads: usize, cpu: impl Fn() -> (Device, DeviceInfo)) -> (Device, DeviceInfo, String) {
    let cuda = match cuda_device(0, threads) {
        Ok((device, info)) => return (device, info, "a CUDA GPU answered".into()),
        Err(e) => e.to_string(),
    };
    let adapters = crate::gpu::adapters();
    let wgpu = match crate::gpu::auto_choice(&adapters) {
        Some(a) => match wgpu_device(&adapters, Some(a.index), threads) {
            Ok((device, info)) => {
                return (device, info, format!("no CUDA ({cuda}); {} is a hardware adapter", a.name));
            }
            Err(e) => e.to_string(),
        },
        None if !cfg!(feature = "wgpu") => "this build has no wgpu support".into(),
        None if adapters.is_empty() => "no Vulkan adapter".into(),
        None => format!(
            "only software Vulkan adapters ({}), which auto never takes: name one with --device wgpu:N",
            adapters.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    let (device, info) = cpu();
    (device, info, format!("no CUDA ({cuda}); no wgpu GPU ({wgpu})"))
}

/// Runs `work` on a thread of rayon's global pool (inline when called from one) and returns its result.
///
/// The flex kernels are parallel iterators. Started from a thread outside the pool, each one hands its
/// job to the pool through a futex wake-up and puts the caller to sleep until a worker wakes it again:
/// a step of the classifier runs a few hundred of them, and at one thread the hand-overs (system
/// calls, scheduler switches, the wake-up latency) were about a tenth of its time. Called from a worker,
/// a parallel iterator starts on that worker at once and the other workers steal from it. Wrap whole
/// units of tensor work (a training step, a batch of tiles), not code that waits on other threads:
/// a worker blocked on a lock or a channel is one the pool cannot use.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Builds rayon's global pool once; later calls keep the first pool. Returns the pool's size.
fn init_thread_pool(threads: usize) -> usize {
    // An error only means a pool exists already (an earlier call, or another library): keep it.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    rayon::current_num_threads()
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize, threads: usize) -> Result<(Device, DeviceInfo)> {
    let device = Device::cuda(index);
    // CUDA devices initialise lazily and panic when no driver or GPU answers: probe once, here,
    // so the error is one clear line rather than a panic in the middle of training.
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = burn::tensor::Tensor::<1>::from_floats([1.0f32, 2.0], &device);
        t.sum().into_scalar::<f32>()
    }));
    match probe {
        Ok(v) if v == 3.0 => {
            let info = DeviceInfo {
                backend: "cuda".into(),
                index,
                adapter: None,
                threads,
                deterministic: false,
                reason: None,
            };
            Ok((device.autodiff(), info))
        }
        _ => Err(NnError::Device(format!("CUDA device {index} is not usable (no GPU, driver or libnvrtc)"))),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize, _threads: usize) -> Result<(Device, DeviceInfo)> {
    Err(NnError::Device("this build has no CUDA support: rebuild with `--features cuda`".into()))
}

/// Adapter `index` of `adapters` (default: what `auto` would take, else the first), probed with a
/// small sum so that a missing driver is one clear error rather than a panic mid-training.
#[cfg(feature = "wgpu")]
fn wgpu_device(adapters: &[crate::gpu::Adapter], index: Option<usize>, threads: usize) -> Result<(Device, DeviceInfo)> {
    let Some(adapter) =
        index.map_or_else(|| crate::gpu::auto_choice(adapters).or(adapters.first()), |i| adapters.get(i))
    else {
        let have = if adapters.is_empty() {
            "no Vulkan adapter (no loader libvulkan.so.1 or no driver ICD; `mammogan env` says which)".to_string()
        } else {
            format!("adapters wgpu:0 to wgpu:{}", adapters.len() - 1)
        };
        return Err(NnError::Device(format!("wgpu device {}: this machine has {have}", index.unwrap_or(0))));
    };
    let Some(kind) = crate::gpu::burn_kind(adapters, adapter.index) else {
        return Err(NnError::Device(format!("wgpu:{} ({}) cannot be addressed by burn", adapter.index, adapter.name)));
    };
    let device = Device::wgpu(kind);
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = burn::tensor::Tensor::<1>::from_floats([1.0f32, 2.0], &device);
        t.sum().into_scalar::<f32>()
    }));
    match probe {
        Ok(v) if v == 3.0 => Ok((
            device.autodiff(),
            DeviceInfo {
                backend: "wgpu".into(),
                index: adapter.index,
                adapter: Some(adapter.summary()),
                threads,
                deterministic: false,
                reason: None,
            },
        )),
        _ => Err(NnError::Device(format!("wgpu:{} ({}) is not usable", adapter.index, adapter.name))),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_: &[crate::gpu::Adapter], _: Option<usize>, _: usize) -> Result<(Device, DeviceInfo)> {
    Err(NnError::Device("this build has no wgpu (Vulkan) support: rebuild with `--features wgpu`".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_info_reads_as_words() {
        let cpu = DeviceInfo {
            backend: "flex".into(),
            index: 0,
            adapter: None,
            threads: 2,
            deterministic: true,
            reason: None,
        };
        assert_eq!(cpu.to_string(), "flex (CPU), 2 threads, bit-reproducible");
        let gpu = DeviceInfo { backend: "cuda".into(), index: 1, threads: 4, deterministic: false, ..cpu.clone() };
        assert_eq!(gpu.to_string(), "cuda:1, not bit-reproducible");
        let wgpu = DeviceInfo {
            backend: "wgpu".into(),
            adapter: Some("NVIDIA H200 (discrete, vulkan, NVIDIA 560.35.03)".into()),
            reason: Some("no CUDA".into()),
            ..gpu
        };
        assert_eq!(
            wgpu.to_string(),
            "wgpu:1 NVIDIA H200 (discrete, vulkan, NVIDIA 560.35.03), not bit-reproducible (auto: no CUDA)"
        );
    }

    #[test]
    fn parses_specs() {
        let (_, info) = select_device("cpu", 0).unwrap();
        assert_eq!(info.backend, "flex");
        assert!(info.threads >= 1);
        let (_, info) = select_device("auto", 0).unwrap();
        assert!(info.reason.is_some());
        // A software adapter is never auto's choice.
        assert!(!info.adapter.is_some_and(|a| a.contains("(CPU,")));
        assert!(select_device("tpu", 0).unwrap_err().to_string().contains("tpu"));
        assert!(select_device("cuda:x", 0).is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(select_device("cuda:0", 0).unwrap_err().to_string().contains("--features cuda"));
        #[cfg(not(feature = "wgpu"))]
        assert!(select_device("wgpu:0", 0).unwrap_err().to_string().contains("--features wgpu"));
        assert!(select_device("wgpu:x", 0).unwrap_err().to_string().contains("wgpu:N"));
    }
}
