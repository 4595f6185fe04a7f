//! `mammogan env`: the questions every ML practitioner asks of a machine, each with a verdict (OK,
//! WARN, FAIL), what was found, and a fix.
//!
//! The checks are pure functions of the [`Environment`] and [`BuildInfo`], so each verdict can be
//! tested with a made-up machine (a 64-core host with a 2-CPU quota, a GPU with the CPU build).

use serde::Serialize;

use crate::build_info::BuildInfo;
use crate::environment::Environment;

/// The oldest CUDA the driver must support for the `cuda` build: the CUDA image pins cudarc to the
/// 12.6 API (`CUDARC_CUDA_VERSION=12060` in `Dockerfile.cuda`) and its kernels are PTX that the driver
/// compiles, so a driver for CUDA 12.0-12.5 could not load them (Linux driver >= 560.28.03).
pub const MIN_CUDA: (u32, u32) = (12, 6);
/// Below this much memory, training at default sizes risks running out.
pub const MIN_MEMORY_BYTES: u64 = 2 << 30;

/// A verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// Works, but slower or less reproducible than it could be.
    Warn,
    /// Will not work as intended.
    Fail,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        })
    }
}

/// One question, answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// A short stable id (`cpu_threads`, `cgroup`, `gpu`, ...).
    pub id: &'static str,
    /// The question it answers.
    pub question: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub finding: String,
    /// What to do (None when nothing is needed).
    pub fix: Option<String>,
}

fn check(id: &'static str, question: &'static str, verdict: Verdict, finding: String, fix: Option<String>) -> Check {
    Check { id, question, verdict, finding, fix }
}

/// The thread count a run with `--threads 0` gets: `RAYON_NUM_THREADS` if set, else one per usable CPU.
pub fn default_threads(env: &Environment) -> usize {
    env.env_vars
        .get("RAYON_NUM_THREADS")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(env.cores_available)
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split('.');
    Some((it.next()?.trim().parse().ok()?, it.next().unwrap_or("0").trim().parse().ok()?))
}

/// Answers every question for a run that would use `threads` CPU workers.
pub fn checks(env: &Environment, build: &BuildInfo, threads: usize) -> Vec<Check> {
    let mut out = Vec::new();

    // Threads vs cores vs quota: the classic container mistake is a thread per host core on a quota of a few.
    let quota = env.cgroup_cpu_limit.as_ref().map(|l| l.cpus);
    let usable = env.cores_available.max(1);
    let quota_text = quota.map(|q| format!(", cgroup CPU quota {q:.2} CPUs")).unwrap_or_default();
    let what = format!("{threads} threads; {usable} usable CPUs of {} online{quota_text}", env.cores_online);
    let q = "Am I using all the CPU I have (threads vs cores vs cgroup quota)?";
    out.push(if threads > usable {
        let why = match quota {
            Some(q) if (threads as f64) > q.ceil() => {
                "more threads than the cgroup's CPU quota: they take turns and every step waits for the slowest"
            }
            _ if usable < env.cores_online => {
                "more threads than the CPUs this process may use (affinity/cpuset): threads time-share cores"
            }
            _ => "more threads than CPUs: threads time-share cores",
        };
        check(
            "cpu_threads",
            q,
            Verdict::Warn,
            format!("{what}: {why}"),
            Some(format!("run with --threads {usable} (or RAYON_NUM_THREADS={usable})")),
        )
    } else if threads < usable {
        check(
            "cpu_threads",
            q,
            Verdict::Warn,
            format!("{what}: {} CPUs stay idle", usable - threads),
            Some("run with --threads 0 (one per usable CPU) and unset RAYON_NUM_THREADS".into()),
        )
    } else {
        check("cpu_threads", q, Verdict::Ok, what, None)
    });

    let q = "Is there a cgroup (container) CPU or memory limit?";
    let mem =
        env.cgroup_memory_limit_bytes.map(|m| format!("memory limit {}", gib(m))).unwrap_or("no memory limit".into());
    out.push(match &env.cgroup_cpu_limit {
        Some(l) if l.cpus < 1.0 => check(
            "cgroup",
            q,
            Verdict::Warn,
            format!(
                "cgroup {}: CPU quota {:.2} CPUs ({}), {mem}: less than one CPU",
                env.cgroup_version, l.cpus, l.source
            ),
            Some("raise the quota (docker run --cpus, Kubernetes resources.limits.cpu, systemd CPUQuota=)".into()),
        ),
        Some(l) => check(
            "cgroup",
            q,
            Verdict::Ok,
            format!("cgroup {}: CPU quota {:.2} CPUs ({}), {mem}", env.cgroup_version, l.cpus, l.source),
            None,
        ),
        None => check("cgroup", q, Verdict::Ok, format!("cgroup {}: no CPU quota, {mem}", env.cgroup_version), None),
    });

    let q = "Am I using the GPU I have?";
    let gpus: Vec<String> = env.gpus.iter().map(|g| g.name.clone()).collect();
    // A hardware adapter the wgpu build would use (`auto` never takes a software one).
    let wgpu_gpu = env.vulkan_adapters.iter().find(|a| build.has_wgpu() && !a.is_software());
    out.push(match (env.gpus.is_empty(), build.has_cuda()) {
        (_, false) if wgpu_gpu.is_some() => check(
            "gpu",
            q,
            Verdict::Ok,
            format!("wgpu build with a hardware adapter: {}", wgpu_gpu.map(|a| a.describe()).unwrap_or_default()),
            None,
        ),
        (true, false) => check("gpu", q, Verdict::Ok, "no GPU visible; CPU runs use flex".into(), None),
        (false, false) if build.has_wgpu() => check(
            "gpu",
            q,
            Verdict::Warn,
            format!("GPU present ({}) but Vulkan offers no hardware adapter for it", list(&gpus)),
            Some("see the Vulkan check below".into()),
        ),
        (false, false) => check(
            "gpu",
            q,
            Verdict::Warn,
            format!("GPU present ({}) but this is the CPU build", list(&gpus)),
            Some(
                "build with `cargo build --release --features wgpu` (Vulkan, builds offline) or `--features cuda` \
                 (needs internet at build time), or use the CUDA image"
                    .into(),
            ),
        ),
        (true, true) => check(
            "gpu",
            q,
            Verdict::Fail,
            "the CUDA build sees no GPU (nvidia-smi finds none): runs fall back to the CPU".into(),
            Some("install the NVIDIA driver; in a container pass --gpus all (NVIDIA container toolkit)".into()),
        ),
        (false, true) => check("gpu", q, Verdict::Ok, format!("CUDA build with GPU(s): {}", list(&gpus)), None),
    });

    if build.has_wgpu() {
        out.push(vulkan_check(env));
    }

    let q = "Does the driver support the CUDA runtime this build needs?";
    out.push(if !build.has_cuda() {
        check("cuda_driver", q, Verdict::Ok, "no CUDA in this build: no CUDA libraries needed".into(), None)
    } else {
        let need = format!("{}.{}", MIN_CUDA.0, MIN_CUDA.1);
        match env.cuda_driver_version.as_deref().and_then(parse_version) {
            Some(v) if v >= MIN_CUDA => check(
                "cuda_driver",
                q,
                Verdict::Ok,
                format!("driver supports CUDA {}.{} (needs {need})", v.0, v.1),
                None,
            ),
            Some(v) => check(
                "cuda_driver",
                q,
                Verdict::Fail,
                format!("driver supports CUDA {}.{}, this build needs {need}", v.0, v.1),
                Some(format!("update the NVIDIA driver to one for CUDA {need} or newer")),
            ),
            None => check(
                "cuda_driver",
                q,
                Verdict::Fail,
                "no NVIDIA driver answered (nvidia-smi)".into(),
                Some("install the NVIDIA driver (and libnvrtc) or use the CPU build".into()),
            ),
        }
    });

    let q = "Does the binary's SIMD match this CPU?";
    let missing: Vec<String> = env.simd_compiled.iter().filter(|f| !env.simd_available.contains(f)).cloned().collect();
    let finding = format!(
        "CPU offers {}; binary compiled for {}; the matrix and element kernels pick AVX2/FMA/AVX-512 at run \
         time, so CPUs with other SIMD may differ in the last bits",
        list(&env.simd_available),
        list(&env.simd_compiled)
    );
    out.push(if missing.is_empty() {
        check("simd", q, Verdict::Ok, finding, None)
    } else {
        check(
            "simd",
            q,
            Verdict::Fail,
            format!("binary compiled for {} which this CPU lacks; {finding}", list(&missing)),
            Some("rebuild without -C target-cpu=native (or for this CPU)".into()),
        )
    });

    let q = "Is there enough memory?";
    let limit = match (env.memory_total_bytes, env.cgroup_memory_limit_bytes) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    };
    out.push(match limit {
        Some(m) if m < MIN_MEMORY_BYTES => check(
            "memory",
            q,
            Verdict::Warn,
            format!("{} available to this process", gib(m)),
            Some(format!("give it at least {} (docker run --memory) or lower train.batch_size", gib(MIN_MEMORY_BYTES))),
        ),
        Some(m) => check("memory", q, Verdict::Ok, format!("{} available to this process", gib(m)), None),
        None => check("memory", q, Verdict::Warn, "unknown (no /proc/meminfo)".into(), None),
    });

    let q = "Which backend and device will a run use?";
    let finding = if build.has_cuda() && !env.gpus.is_empty() {
        format!("--device auto: cuda:0 ({}); results equivalent within tolerance, not bit-exact", env.gpus[0].name)
    } else if let Some(a) = wgpu_gpu {
        format!("--device auto: {}; results equivalent within tolerance, not bit-exact", a.describe())
    } else {
        format!(
            "--device auto: flex (CPU) with {threads} threads; bit-exact results for the same config, seed and data"
        )
    };
    out.push(check("backend", q, Verdict::Ok, finding, None));

    let q = "Can a run name the container image it ran in?";
    let c = &env.container;
    out.push(if !c.detected {
        check("container", q, Verdict::Ok, "not in a container".into(), None)
    } else if c.image_name.is_none() {
        check(
            "container",
            q,
            Verdict::Warn,
            format!("in a container ({}) without image labels", c.runtime.as_deref().unwrap_or("unknown")),
            Some(
                "set MAMMOGAN_IMAGE_NAME, MAMMOGAN_IMAGE_VERSION and MAMMOGAN_IMAGE_REVISION in the image (ENV) so \
                 manifests name it"
                    .into(),
            ),
        )
    } else {
        let name = [&c.image_name, &c.image_version, &c.image_revision]
            .iter()
            .filter_map(|v| v.as_deref())
            .collect::<Vec<_>>()
            .join(" ");
        check("container", q, Verdict::Ok, format!("{}: {name}", c.runtime.as_deref().unwrap_or("container")), None)
    });

    let q = "Which environment variables change numerics or speed?";
    let set: Vec<String> = env.env_vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push(check("env_vars", q, Verdict::Ok, if set.is_empty() { "none set".into() } else { set.join(" ") }, None));
    out
}

/// The wgpu build's adapters, and why a GPU the machine has is missing from them. The usual cause:
/// a container started with `--gpus all` gets NVIDIA's compute libraries but not its Vulkan driver
/// (the ICD file `nvidia_icd.json` and `libGLX_nvidia.so.0`), which the NVIDIA Container Toolkit
/// mounts only for the `graphics` capability; Mesa's software adapter is then all Vulkan sees.
fn vulkan_check(env: &Environment) -> Check {
    let q = "Which Vulkan adapters can the wgpu build use?";
    let all: Vec<String> = env.vulkan_adapters.iter().map(|a| a.describe()).collect();
    let software_only = !all.is_empty() && env.vulkan_adapters.iter().all(|a| a.is_software());
    let gpus: Vec<String> = env.gpus.iter().map(|g| g.name.clone()).collect();
    let nvidia_fix = "run the container with -e NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics (or all): the \
                      NVIDIA Container Toolkit mounts the Vulkan ICD (nvidia_icd.json, libGLX_nvidia.so.0) only for \
                      `graphics`; without the toolkit, mount /usr/share/vulkan/icd.d/nvidia_icd.json and the \
                      driver's libGLX_nvidia.so.0 and libnvidia-*.so; the image needs libvulkan1";
    match (all.is_empty(), software_only, gpus.is_empty()) {
        (true, _, false) => check(
            "vulkan",
            q,
            Verdict::Fail,
            format!("GPU present ({}) but no Vulkan adapter at all (no loader libvulkan.so.1, or no ICD)", list(&gpus)),
            Some(nvidia_fix.into()),
        ),
        (true, _, true) => check(
            "vulkan",
            q,
            Verdict::Warn,
            "no Vulkan adapter (no loader libvulkan.so.1, or no driver ICD): --device wgpu fails, auto uses the CPU"
                .into(),
            Some(
                "install libvulkan1 and the GPU's Vulkan driver (Debian/Ubuntu: mesa-vulkan-drivers for AMD, Intel \
                 and the lavapipe software adapter); in a container pass --device /dev/dri (AMD, Intel)"
                    .into(),
            ),
        ),
        (false, true, false) => check(
            "vulkan",
            q,
            Verdict::Warn,
            format!(
                "GPU present ({}) but Vulkan sees only software adapters: {}; the container lacks the GPU's Vulkan \
                 driver (ICD), so auto uses the CPU",
                list(&gpus),
                all.join("; ")
            ),
            Some(nvidia_fix.into()),
        ),
        (false, true, true) => check(
            "vulkan",
            q,
            Verdict::Ok,
            format!(
                "software adapters only: {}; --device wgpu:N runs the GPU code path on the CPU (for tests), auto \
                 uses flex",
                all.join("; ")
            ),
            None,
        ),
        (false, false, _) => check("vulkan", q, Verdict::Ok, all.join("; "), None),
    }
}

/// The worst verdict of `checks`.
pub fn overall(checks: &[Check]) -> Verdict {
    checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::CpuLimit;
    use crate::environment::Gpu;
    use crate::vulkan::GpuAdapter;

    fn host(cores: usize, quota: Option<f64>) -> Environment {
        Environment {
            cores_online: cores,
            cores_available: quota.map_or(cores, |q| (q as usize).max(1)),
            cgroup_cpu_limit: quota.map(|cpus| CpuLimit { cpus, source: "/sys/fs/cgroup/cpu.max".into() }),
            cgroup_version: "v2".into(),
            memory_total_bytes: Some(16 << 30),
            simd_available: vec!["avx2".into(), "fma".into()],
            ..Environment::default()
        }
    }

    fn find<'a>(c: &'a [Check], id: &str) -> &'a Check {
        c.iter().find(|c| c.id == id).unwrap()
    }

    #[test]
    fn threads_beyond_the_quota_warn_with_the_fix() {
        let cpu = BuildInfo::current();
        let env = host(64, Some(2.0));
        let c = checks(&env, &cpu, 64);
        let t = find(&c, "cpu_threads");
        assert_eq!(t.verdict, Verdict::Warn);
        assert!(t.finding.contains("quota") && t.fix.as_deref().unwrap().contains("--threads 2"), "{t:?}");
        assert_eq!(find(&checks(&env, &cpu, 2), "cpu_threads").verdict, Verdict::Ok);
        assert_eq!(find(&checks(&host(8, None), &cpu, 2), "cpu_threads").verdict, Verdict::Warn);
        assert_eq!(find(&checks(&host(8, Some(0.5)), &cpu, 1), "cgroup").verdict, Verdict::Warn);
    }

    #[test]
    fn a_gpu_with_the_cpu_build_and_the_cuda_build_without_a_gpu() {
        let mut cpu = BuildInfo::current();
        cpu.backends = vec!["flex".into()];
        let mut env = host(8, None);
        env.gpus = vec![Gpu { name: "NVIDIA H100".into(), ..Gpu::default() }];
        let g = checks(&env, &cpu, 8);
        assert_eq!(find(&g, "gpu").verdict, Verdict::Warn);
        assert!(find(&g, "gpu").fix.as_deref().unwrap().contains("--features wgpu"));
        let mut cuda = cpu.clone();
        cuda.backends.push("cuda".into());
        env.cuda_driver_version = Some("11.8".into());
        assert_eq!(find(&checks(&env, &cuda, 8), "cuda_driver").verdict, Verdict::Fail);
        // 12.4 is too old for the 12.6 PTX the CUDA image's kernels are built as.
        env.cuda_driver_version = Some("12.4".into());
        assert_eq!(find(&checks(&env, &cuda, 8), "cuda_driver").verdict, Verdict::Fail);
        env.cuda_driver_version = Some("12.8".into());
        assert_eq!(overall(&checks(&env, &cuda, 8)), Verdict::Ok);
        env.gpus.clear();
        assert_eq!(find(&checks(&env, &cuda, 8), "gpu").verdict, Verdict::Fail);
    }

    #[test]
    fn vulkan_names_adapters_and_the_missing_nvidia_icd() {
        let mut wgpu = BuildInfo::current();
        wgpu.backends = vec!["flex".into(), "wgpu".into()];
        let lavapipe = GpuAdapter {
            index: 0,
            name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            kind: "cpu".into(),
            driver: "llvmpipe".into(),
            driver_info: "Mesa 22.3.6 (LLVM 15.0.6)".into(),
            api: "vulkan".into(),
        };
        let mut env = host(8, None);
        env.vulkan_adapters = vec![lavapipe.clone()];
        // A CPU machine with lavapipe: fine, and auto stays on flex.
        let c = checks(&env, &wgpu, 8);
        assert_eq!(find(&c, "vulkan").verdict, Verdict::Ok);
        assert!(
            find(&c, "vulkan").finding.contains("llvmpipe (LLVM 15.0.6, 256 bits) (CPU, vulkan, driver llvmpipe Mesa")
        );
        assert!(find(&c, "backend").finding.contains("flex"));
        // An NVIDIA GPU that Vulkan cannot see: the container lacks the ICD.
        env.gpus = vec![Gpu { name: "NVIDIA H200".into(), ..Gpu::default() }];
        let c = checks(&env, &wgpu, 8);
        assert_eq!(find(&c, "vulkan").verdict, Verdict::Warn);
        assert!(find(&c, "vulkan").fix.as_deref().unwrap().contains("NVIDIA_DRIVER_CAPABILITIES"));
        assert_eq!(find(&c, "gpu").verdict, Verdict::Warn);
        // With the ICD: the GPU is used, and auto takes it.
        let h200 = GpuAdapter {
            index: 1,
            name: "NVIDIA H200".into(),
            kind: "discrete".into(),
            driver: "NVIDIA".into(),
            driver_info: "560.35.03".into(),
            api: "vulkan".into(),
        };
        env.vulkan_adapters.push(h200);
        let c = checks(&env, &wgpu, 8);
        assert_eq!(overall(&c), Verdict::Ok);
        assert!(find(&c, "backend").finding.contains("wgpu:1 NVIDIA H200 (discrete, vulkan, driver NVIDIA 560.35.03)"));
        // No adapter at all with a GPU present fails; the CPU build asks nothing of Vulkan.
        env.vulkan_adapters.clear();
        assert_eq!(find(&checks(&env, &wgpu, 8), "vulkan").verdict, Verdict::Fail);
        let mut cpu = wgpu.clone();
        cpu.backends.truncate(1);
        assert!(checks(&env, &cpu, 8).iter().all(|c| c.id != "vulkan"));
    }

    #[test]
    fn simd_the_cpu_lacks_fails() {
        let mut env = host(8, None);
        env.simd_compiled = vec!["avx512f".into()];
        assert_eq!(find(&checks(&env, &BuildInfo::current(), 8), "simd").verdict, Verdict::Fail);
    }
}
