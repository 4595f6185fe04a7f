//! Choosing where tensors live: the pure-Rust `flex` CPU backend, or CUDA when built with
//! `--features cuda`.
//!
//! On flex, results are bit-identical from run to run *and across thread counts*: the parallel kernels
//! split work over output elements (batch, tiles, rows), never a floating-point sum over threads (our
//! own kernels in `kernels/` add per-sample parts in sample order), so the thread count changes speed,
//! not numbers (the tests check 1 vs 2 threads). CUDA kernels make no such promise.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// What a run used, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `"flex"` (CPU) or `"cuda"`.
    pub backend: String,
    /// The GPU index (0 on CPU).
    pub index: usize,
    /// CPU worker threads of the flex backend (the rayon pool); for CUDA, the host threads.
    pub threads: usize,
    /// Whether runs on this device are bit-reproducible (flex: yes; CUDA: not promised).
    pub deterministic: bool,
}

/// For people: "flex (CPU), 2 threads, bit-reproducible" or "cuda:0, not bit-reproducible".
impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.backend.as_str() {
            "flex" => write!(f, "flex (CPU), {} threads", self.threads)?,
            other => write!(f, "{other}:{}", self.index)?,
        }
        f.write_str(if self.deterministic { ", bit-reproducible" } else { ", not bit-reproducible" })
    }
}

/// Parses `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"` and returns the device with autodiff enabled.
///
/// `auto` takes CUDA device 0 when the binary was built with the `cuda` feature and a GPU answers,
/// else the CPU. `threads` sizes the CPU worker pool (0 = one per core); the pool is process-wide,
/// so only the first call in a process sets it and [`DeviceInfo::threads`] says what it is.
pub fn select_device(spec: &str, threads: usize) -> Result<(Device, DeviceInfo)> {
    let spec = spec.trim().to_ascii_lowercase();
    let threads = init_thread_pool(threads);
    let cpu =
        || (Device::flex().autodiff(), DeviceInfo { backend: "flex".into(), index: 0, threads, deterministic: true });
    match spec.as_str() {
        "cpu" | "flex" => Ok(cpu()),
        "auto" => Ok(cuda_device(0, threads).unwrap_or_else(|_| cpu())),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| NnError::Device(format!("device {spec:?}: expected cuda:N with N a GPU index")))?,
            };
            cuda_device(index, threads)
        }
        _ => Err(NnError::Device(format!("unknown device {spec:?}: use auto, cpu, cuda or cuda:N"))),
    }
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
            Ok((device.autodiff(), DeviceInfo { backend: "cuda".into(), index, threads, deterministic: false }))
        }
        _ => Err(NnError::Device(format!("CUDA device {index} is not usable (no GPU, driver or libnvrtc)"))),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: usize, _threads: usize) -> Result<(Device, DeviceInfo)> {
    Err(NnError::Device("this build has no CUDA support: rebuild with `--features cuda`".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_info_reads_as_words() {
        let cpu = DeviceInfo { backend: "flex".into(), index: 0, threads: 2, deterministic: true };
        assert_eq!(cpu.to_string(), "flex (CPU), 2 threads, bit-reproducible");
        let gpu = DeviceInfo { backend: "cuda".into(), index: 1, threads: 4, deterministic: false };
        assert_eq!(gpu.to_string(), "cuda:1, not bit-reproducible");
    }

    #[test]
    fn parses_specs() {
        let (_, info) = select_device("cpu", 0).unwrap();
        assert_eq!(info.backend, "flex");
        assert!(info.threads >= 1);
        let (_, info) = select_device("auto", 0).unwrap();
        assert!(info.backend == "flex" || info.backend == "cuda");
        assert!(select_device("tpu", 0).unwrap_err().to_string().contains("tpu"));
        assert!(select_device("cuda:x", 0).is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(select_device("cuda:0", 0).unwrap_err().to_string().contains("--features cuda"));
    }
}
