//! The GPUs burn's wgpu backend can use (`--features wgpu`): the adapters of the platform's graphics
//! API (Vulkan; Metal on Apple), how `--device wgpu:N` names one, and which one `--device auto` takes.
//!
//! `wgpu:N` is the N-th adapter in the API's enumeration order, the order `mammogan env` lists them
//! in. burn addresses adapters differently, as the k-th of a type (`DiscreteGpu(k)`, `Cpu`), counted
//! over the same enumeration of the same API, so [`burn_kind`] translates one into the other.
//!
//! A software adapter (Mesa's lavapipe/llvmpipe, SwiftShader, WARP) runs the GPU code path on the
//! CPU: right for testing that path, far slower than flex, so `auto` never takes one.

use serde::{Deserialize, Serialize};

/// What kind of device an adapter is (wgpu's `DeviceType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// A GPU of its own.
    Discrete,
    /// A GPU sharing the CPU's memory.
    Integrated,
    /// A GPU handed to a virtual machine.
    Virtual,
    /// A software rasteriser running on the CPU.
    Cpu,
    /// Whatever the driver did not classify.
    Other,
}

impl AdapterKind {
    /// The word `mammogan env` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Discrete => "discrete",
            AdapterKind::Integrated => "integrated",
            AdapterKind::Virtual => "virtual",
            AdapterKind::Cpu => "CPU",
            AdapterKind::Other => "other",
        }
    }
}

/// One adapter, as the graphics API reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adapter {
    /// Its position in the enumeration: the N of `--device wgpu:N`.
    pub index: usize,
    /// The device name (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// Discrete, integrated, ... or CPU (software).
    pub kind: AdapterKind,
    /// The driver's name (`NVIDIA`, `llvmpipe`).
    pub driver: String,
    /// The driver's version text (`560.35.03`, `Mesa 22.3.6 (LLVM 15.0.6)`).
    pub driver_info: String,
    /// The graphics API (`vulkan`, `metal`).
    pub api: String,
}

impl Adapter {
    /// Whether this adapter is a software rasteriser on the CPU. Also by name, for drivers that
    /// report one as `Other`.
    pub fn is_software(&self) -> bool {
        let name = format!("{} {}", self.name, self.driver).to_ascii_lowercase();
        self.kind == AdapterKind::Cpu
            || ["llvmpipe", "lavapipe", "swiftshader", "microsoft basic render"].iter().any(|s| name.contains(s))
    }

    /// For people: `wgpu:0 NVIDIA H200 (discrete, vulkan, NVIDIA 560.35.03)`.
    pub fn describe(&self) -> String {
        format!("wgpu:{} {}", self.index, self.summary())
    }

    /// The same without the index: what a run records.
    pub fn summary(&self) -> String {
        let driver = [self.driver.as_str(), self.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let soft = if self.is_software() && self.kind != AdapterKind::Cpu { ", software" } else { "" };
        format!("{} ({}{soft}, {}, {})", self.name, self.kind.as_str(), self.api, driver)
    }
}

/// The adapter `--device auto` takes: the first discrete GPU, else the first integrated one, else the
/// first other hardware adapter; never a software one.
pub fn auto_choice(adapters: &[Adapter]) -> Option<&Adapter> {
    let hardware = || adapters.iter().filter(|a| !a.is_software());
    hardware()
        .find(|a| a.kind == AdapterKind::Discrete)
        .or_else(|| hardware().find(|a| a.kind == AdapterKind::Integrated))
        .or_else(|| hardware().next())
}

/// How burn names adapter `index`: its kind and its position among the adapters of that kind
/// (burn's `Cpu` has no position: the first software adapter).
pub fn kind_position(adapters: &[Adapter], index: usize) -> Option<(AdapterKind, usize)> {
    let a = adapters.get(index)?;
    Some((a.kind, adapters[..index].iter().filter(|b| b.kind == a.kind).count()))
}

/// The adapters this machine offers, in enumeration order; empty without the `wgpu` feature, without
/// a Vulkan loader (`libvulkan.so.1`) or without a driver (ICD).
#[cfg(feature = "wgpu")]
pub fn adapters() -> Vec<Adapter> {
    let backend = primary_api();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    block_on(instance.enumerate_adapters(backend.into()))
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let info = a.get_info();
            Adapter {
                index,
                name: info.name,
                kind: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => AdapterKind::Discrete,
                    wgpu::DeviceType::IntegratedGpu => AdapterKind::Integrated,
                    wgpu::DeviceType::VirtualGpu => AdapterKind::Virtual,
                    wgpu::DeviceType::Cpu => AdapterKind::Cpu,
                    wgpu::DeviceType::Other => AdapterKind::Other,
                },
                driver: info.driver,
                driver_info: info.driver_info,
                api: info.backend.to_str().to_string(),
            }
        })
        .collect()
}

/// Without the `wgpu` feature there is nothing to ask.
#[cfg(not(feature = "wgpu"))]
pub fn adapters() -> Vec<Adapter> {
    Vec::new()
}

/// The API burn's `Auto` settles on where it has adapters: Metal on Apple, Vulkan elsewhere.
#[cfg(feature = "wgpu")]
fn primary_api() -> wgpu::Backend {
    if cfg!(target_vendor = "apple") { wgpu::Backend::Metal } else { wgpu::Backend::Vulkan }
}

/// Native adapter enumeration completes on the first poll; this waits properly in case it does not.
#[cfg(feature = "wgpu")]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// burn's device for adapter `index` (pure, given the enumeration).
#[cfg(feature = "wgpu")]
pub(crate) fn burn_kind(adapters: &[Adapter], index: usize) -> Option<burn::tensor::DeviceKind> {
    use burn::tensor::DeviceKind;
    Some(match kind_position(adapters, index)? {
        (AdapterKind::Discrete, k) => DeviceKind::DiscreteGpu(k),
        (AdapterKind::Integrated, k) => DeviceKind::IntegratedGpu(k),
        (AdapterKind::Virtual, k) => DeviceKind::VirtualGpu(k),
        (AdapterKind::Cpu, 0) => DeviceKind::Cpu,
        // burn names neither a second software adapter nor an unclassified one.
        (AdapterKind::Cpu | AdapterKind::Other, _) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: usize, name: &str, kind: AdapterKind) -> Adapter {
        Adapter {
            index,
            name: name.into(),
            kind,
            driver: String::new(),
            driver_info: String::new(),
            api: "vulkan".into(),
        }
    }

    #[test]
    fn auto_prefers_discrete_and_never_takes_software() {
        let lavapipe = adapter(0, "llvmpipe (LLVM 15.0.6, 256 bits)", AdapterKind::Cpu);
        assert_eq!(auto_choice(std::slice::from_ref(&lavapipe)), None);
        // Software by name even when the driver calls it `Other`.
        let other_soft = adapter(0, "SwiftShader Device", AdapterKind::Other);
        assert_eq!(auto_choice(&[other_soft]), None);
        let list = [
            lavapipe.clone(),
            adapter(1, "Intel UHD 770", AdapterKind::Integrated),
            adapter(2, "NVIDIA H200", AdapterKind::Discrete),
        ];
        assert_eq!(auto_choice(&list).unwrap().name, "NVIDIA H200");
        assert_eq!(auto_choice(&list[..2]).unwrap().name, "Intel UHD 770");
    }

    #[test]
    fn an_index_becomes_a_position_among_its_kind() {
        let list = [
            adapter(0, "A", AdapterKind::Discrete),
            adapter(1, "llvmpipe", AdapterKind::Cpu),
            adapter(2, "B", AdapterKind::Discrete),
            adapter(3, "C", AdapterKind::Integrated),
        ];
        assert_eq!(kind_position(&list, 2), Some((AdapterKind::Discrete, 1)));
        assert_eq!(kind_position(&list, 3), Some((AdapterKind::Integrated, 0)));
        assert_eq!(kind_position(&list, 1), Some((AdapterKind::Cpu, 0)));
        assert_eq!(kind_position(&list, 4), None);
    }

    #[test]
    fn describes_an_adapter_in_one_line() {
        let mut a = adapter(1, "llvmpipe (LLVM 15.0.6, 256 bits)", AdapterKind::Cpu);
        a.driver = "llvmpipe".into();
        a.driver_info = "Mesa 22.3.6 (LLVM 15.0.6)".into();
        assert_eq!(
            a.describe(),
            "wgpu:1 llvmpipe (LLVM 15.0.6, 256 bits) (CPU, vulkan, llvmpipe Mesa 22.3.6 (LLVM 15.0.6))"
        );
    }
}
