//! The CPU and memory limits of the cgroup this process runs in (v1 and v2).
//!
//! A container given "2 CPUs" on a 64-core host still sees 64 cores in `/proc/cpuinfo`; only the
//! cgroup's quota says how much CPU time it may use. Running 64 threads on a quota of 2 is the classic
//! container mistake, so the doctor needs the quota, not the core count. The limit of a cgroup is the
//! smallest along its path to the root, so every ancestor is read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A CPU quota: `quota / period` CPUs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuLimit {
    /// The CPUs the quota amounts to (e.g. 0.5).
    pub cpus: f64,
    /// Which file said so (`cpu.max` for v2, `cpu.cfs_quota_us` for v1), relative to the cgroup mount.
    pub source: String,
}

/// The limits found (None: unlimited or unknown).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// The CPU quota.
    pub cpu: Option<CpuLimit>,
    /// The memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// "v1", "v2", or "none".
    pub version: String,
}

/// The limits of this process's cgroups.
pub fn limits() -> Limits {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    limits_from(&cgroup, &mountinfo, Path::new("/"))
}

/// A cgroup hierarchy mounted at `mount` whose root is `root` in the cgroup tree.
struct Mount {
    point: PathBuf,
    root: String,
    v2: bool,
    options: String,
}

fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - fstype source super-options
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let fstype = *r.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                point: PathBuf::from(unescape(l.get(4)?)),
                root: unescape(l.get(3)?),
                v2: fstype == "cgroup2",
                options: r.get(2).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The directories from `mount/path` up to `mount` (the cgroup and its ancestors).
fn chain(m: &Mount, path: &str, sysroot: &Path) -> Vec<PathBuf> {
    // In a cgroup namespace the path is relative to the namespace root, which is the mount's root.
    let rel = if m.root != "/" && path.starts_with(&m.root) { &path[m.root.len()..] } else { path };
    let base = sysroot.join(m.point.strip_prefix("/").unwrap_or(&m.point));
    let mut dirs = Vec::new();
    let mut p = base.join(rel.trim_start_matches('/'));
    loop {
        dirs.push(p.clone());
        if p == base || !p.pop() || !p.starts_with(&base) {
            break;
        }
    }
    dirs
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// The limits from the contents of `/proc/self/cgroup` and `/proc/self/mountinfo`, with the files
/// read under `sysroot` (`/` on a real system; a temporary tree in tests).
pub fn limits_from(cgroup: &str, mountinfo: &str, sysroot: &Path) -> Limits {
    let mounts = mounts(mountinfo);
    let mut out = Limits { version: "none".into(), ..Limits::default() };
    let min_cpu = |a: Option<CpuLimit>, b: CpuLimit| match a {
        Some(a) if a.cpus <= b.cpus => Some(a),
        _ => Some(b),
    };
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            let Some(m) = mounts.iter().find(|m| m.v2) else { continue };
            for dir in chain(m, path, sysroot) {
                if let Some(max) = read(&dir.join("cpu.max")) {
                    let mut f = max.split_whitespace();
                    if let (Some(q), Some(p)) = (f.next(), f.next())
                        && let (Ok(q), Ok(p)) = (q.parse::<f64>(), p.parse::<f64>())
                        && p > 0.0
                    {
                        let source = format!("{}/cpu.max", rel_to(&dir, sysroot));
                        out.cpu = min_cpu(out.cpu.take(), CpuLimit { cpus: q / p, source });
                        out.version = "v2".into();
                    }
                }
                if let Some(mem) = read(&dir.join("memory.max")).and_then(|s| s.parse::<u64>().ok()) {
                    out.memory_bytes = Some(out.memory_bytes.map_or(mem, |m| m.min(mem)));
                    out.version = "v2".into();
                }
            }
            if out.version == "none" && !mounts.iter().any(|m| !m.v2) {
                out.version = "v2".into();
            }
            continue;
        }
        let names: Vec<&str> = controllers.split(',').collect();
        let mount_for = |c: &str| mounts.iter().find(|m| !m.v2 && m.options.split(',').any(|o| o == c));
        if names.contains(&"cpu")
            && let Some(m) = mount_for("cpu")
        {
            out.version = "v1".into();
            for dir in chain(m, path, sysroot) {
                let quota = read(&dir.join("cpu.cfs_quota_us")).and_then(|s| s.parse::<i64>().ok());
                let period = read(&dir.join("cpu.cfs_period_us")).and_then(|s| s.parse::<i64>().ok());
                if let (Some(q), Some(p)) = (quota, period)
                    && q > 0
                    && p > 0
                {
                    let source = format!("{}/cpu.cfs_quota_us", rel_to(&dir, sysroot));
                    out.cpu = min_cpu(out.cpu.take(), CpuLimit { cpus: q as f64 / p as f64, source });
                }
            }
        }
        if names.contains(&"memory")
            && let Some(m) = mount_for("memory")
        {
            out.version = "v1".into();
            for dir in chain(m, path, sysroot) {
                // v1 reports "unlimited" as a huge page-aligned number.
                if let Some(mem) = read(&dir.join("memory.limit_in_bytes")).and_then(|s| s.parse::<u64>().ok())
                    && mem < (1u64 << 62)
                {
                    out.memory_bytes = Some(out.memory_bytes.map_or(mem, |m| m.min(mem)));
                }
            }
        }
    }
    out
}

/// `dir` as an absolute path on the real system (without the test sysroot).
fn rel_to(dir: &Path, sysroot: &Path) -> String {
    format!("/{}", dir.strip_prefix(sysroot).unwrap_or(dir).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_quota_of_a_nested_cgroup_and_its_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let cpu = tmp.path().join("sys/fs/cgroup/cpu");
        std::fs::create_dir_all(cpu.join("outer/inner")).unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        std::fs::write(cpu.join("cpu.cfs_period_us"), "100000\n").unwrap();
        std::fs::write(cpu.join("outer/cpu.cfs_quota_us"), "150000\n").unwrap();
        std::fs::write(cpu.join("outer/cpu.cfs_period_us"), "100000\n").unwrap();
        std::fs::write(cpu.join("outer/inner/cpu.cfs_quota_us"), "50000\n").unwrap();
        std::fs::write(cpu.join("outer/inner/cpu.cfs_period_us"), "100000\n").unwrap();
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu\n\
                         31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let cgroup = "4:memory:/\n1:cpu:/outer/inner\n0::/\n";
        let l = limits_from(cgroup, mountinfo, tmp.path());
        assert_eq!(l.version, "v1");
        let cpu = l.cpu.unwrap();
        assert_eq!(cpu.cpus, 0.5);
        assert_eq!(cpu.source, "/sys/fs/cgroup/cpu/outer/inner/cpu.cfs_quota_us");
        // The parent's tighter limit wins over the child's looser one.
        std::fs::write(tmp.path().join("sys/fs/cgroup/cpu/outer/cpu.cfs_quota_us"), "25000\n").unwrap();
        assert_eq!(limits_from(cgroup, mountinfo, tmp.path()).cpu.unwrap().cpus, 0.25);
    }

    #[test]
    fn v2_cpu_max_and_memory_max_and_unlimited() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(root.join("job")).unwrap();
        std::fs::write(root.join("job/cpu.max"), "200000 100000\n").unwrap();
        std::fs::write(root.join("job/memory.max"), "1073741824\n").unwrap();
        let mountinfo = "29 23 0:25 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = limits_from("0::/job\n", mountinfo, tmp.path());
        assert_eq!(l.version, "v2");
        assert_eq!(l.cpu.unwrap().cpus, 2.0);
        assert_eq!(l.memory_bytes, Some(1 << 30));
        std::fs::write(root.join("job/cpu.max"), "max 100000\n").unwrap();
        std::fs::write(root.join("job/memory.max"), "max\n").unwrap();
        let l = limits_from("0::/job\n", mountinfo, tmp.path());
        assert_eq!((l.cpu, l.memory_bytes), (None, None));
        // In a cgroup namespace the path is "/" and the mount is the container's own cgroup.
        let l = limits_from("0::/\n", "29 23 0:25 /job /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", tmp.path());
        assert_eq!(l.version, "v2");
    }
}
