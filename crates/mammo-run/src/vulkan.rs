//! The graphics adapters the wgpu build can run on (Vulkan; Metal on Apple), for the doctor and the
//! manifest. Empty without the `wgpu` feature, without a Vulkan loader or without a driver (ICD).
//!
//! The same enumeration as `mammo_nn::gpu` (this crate does not depend on the one that knows burn),
//! so index N here is `--device wgpu:N` there.

use serde::{Deserialize, Serialize};

/// One adapter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuAdapter {
    /// The N of `--device wgpu:N`.
    pub index: usize,
    /// The device name (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` (software) or `other`.
    pub kind: String,
    /// The driver's name (`NVIDIA`, `llvmpipe`).
    pub driver: String,
    /// The driver's version text (`560.35.03`, `Mesa 22.3.6 (LLVM 15.0.6)`).
    pub driver_info: String,
    /// The graphics API (`vulkan`, `metal`).
    pub api: String,
}

impl GpuAdapter {
    /// A software rasteriser on the CPU (lavapipe, llvmpipe, SwiftShader, WARP): what a container
    /// without the GPU's Vulkan driver falls back to.
    pub fn is_software(&self) -> bool {
        let name = format!("{} {}", self.name, self.driver).to_ascii_lowercase();
        self.kind == "cpu"
            || ["llvmpipe", "lavapipe", "swiftshader", "microsoft basic render"].iter().any(|s| name.contains(s))
    }

    /// `wgpu:0 NVIDIA H200 (discrete, vulkan, driver NVIDIA 560.35.03)`.
    pub fn describe(&self) -> String {
        let kind = if self.kind == "cpu" { "CPU" } else { self.kind.as_str() };
        let driver = format!("{} {}", self.driver, self.driver_info);
        format!("wgpu:{} {} ({kind}, {}, driver {})", self.index, self.name, self.api, driver.trim())
    }
}

/// This machine's adapters, in enumeration order.
#[cfg(feature = "wgpu")]
pub fn adapters() -> Vec<GpuAdapter> {
    let backend = if cfg!(target_vendor = "apple") { wgpu::Backend::Metal } else { wgpu::Backend::Vulkan };
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    block_on(instance.enumerate_adapters(backend.into()))
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let info = a.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete",
                wgpu::DeviceType::IntegratedGpu => "integrated",
                wgpu::DeviceType::VirtualGpu => "virtual",
                wgpu::DeviceType::Cpu => "cpu",
                wgpu::DeviceType::Other => "other",
            };
            GpuAdapter {
                index,
                name: info.name,
                kind: kind.into(),
                driver: info.driver,
                driver_info: info.driver_info,
                api: info.backend.to_str().into(),
            }
        })
        .collect()
}

/// Without the `wgpu` feature there is nothing to ask.
#[cfg(not(feature = "wgpu"))]
pub fn adapters() -> Vec<GpuAdapter> {
    Vec::new()
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
