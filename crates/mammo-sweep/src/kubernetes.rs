//! The Kubernetes route: one Indexed Job whose pod K trains and evaluates the K-th pending trial, by
//! running `mammogan sweep trial DIR --pending LIST --index-env JOB_COMPLETION_INDEX` in the image.
//!
//! The volume: one PersistentVolumeClaim holding the DATASET and the sweep directory, mounted in the
//! pod at the path where this machine sees the same volume (`--pvc-path`, e.g. an NFS share mounted
//! at /shared here and bound to the PVC there). DIR and the DATASET must be under it, so every path
//! `sweep.json` and the pending list record holds inside the pod unchanged, as for Slurm.
//!
//! ```text
//! DIR/kubernetes/job.yaml                the manifest last written
//! DIR/kubernetes/<job>.pending.txt       the trial ids, line K+1 for index K (one list per job, so a
//!                                        re-run never renumbers the trials of a job still running)
//! DIR/kubernetes/submitted.txt           the jobs applied from this directory
//! ```

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::submit;
use crate::trials::{SweepError, err, write_atomic};
use crate::yaml::to_yaml;

/// The non-root user of the mammogan images (`USER 65532:65532` in the Dockerfile).
pub const IMAGE_USER: (u32, u32) = (65532, 65532);
/// The container's name (podFailurePolicy's exit-code rule names it).
const CONTAINER: &str = "trial";
/// Retries of an index whose pod was killed (node lost, out of memory), on top of the first attempt.
const BACKOFF_PER_INDEX: u32 = 1;
/// Finished Jobs (and their pods) are deleted after a week; the trials' files stay on the volume.
const TTL_AFTER_FINISHED_S: u64 = 7 * 24 * 3600;

/// What the Job asks of the cluster.
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    /// The image every pod runs (required), e.g. `registry.example.org/mammogan:cpu`.
    pub image: Option<String>,
    /// The PersistentVolumeClaim holding DIR and the DATASET (required).
    pub pvc: Option<String>,
    /// Where this machine sees the claim's volume; the pod mounts it at the same path (required).
    pub pvc_path: Option<PathBuf>,
    pub cpus_per_task: usize,
    /// Memory request and limit per pod, a Kubernetes quantity (`8Gi`).
    pub memory: Option<String>,
    /// `gpu` or `gpu:N`: N `nvidia.com/gpu` per pod.
    pub gres: Option<String>,
    /// Pods at once (the Job's parallelism); all at once when absent.
    pub max_parallel: Option<usize>,
    /// The pod's uid and gid (default: the owner of DIR when not root, else the image's user).
    pub run_as: Option<(u32, u32)>,
}

/// `UID:GID` as `--run-as` takes it.
pub fn parse_run_as(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("--run-as '{s}': give UID:GID, two numbers, e.g. 1000:1000");
    let (u, g) = s.split_once(':').ok_or_else(bad)?;
    Ok((u.trim().parse().map_err(|_| bad())?, g.trim().parse().map_err(|_| bad())?))
}

fn utf8<'a>(option: &str, p: &'a Path) -> Result<&'a str, String> {
    p.to_str().ok_or_else(|| format!("{option} {}: not valid UTF-8, which a manifest cannot hold", p.display()))
}

/// A DNS-1123 subdomain (a PVC's name).
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes quantity as a memory size: digits, an optional fraction, an optional suffix.
fn memory_quantity(s: &str) -> bool {
    let digits_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    number.parse::<f64>().is_ok_and(|v| v > 0.0)
        && !number.starts_with('.')
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"].contains(&suffix)
}

/// `--gres gpu[:N]` as a number of GPUs.
fn gpus(gres: &str) -> Result<u32, String> {
    let bad = || format!("--gres '{gres}': on Kubernetes only gpu or gpu:N (N nvidia.com/gpu per pod)");
    match gres.split_once(':') {
        None if gres == "gpu" => Ok(1),
        Some(("gpu", n)) => n.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The Job `name` for `count` pending trials listed in `list`. `dir` and `inputs` (what the trials
/// read, named as their options: see `Settings::inputs`) are the absolute paths recorded in sweep.json.
/// Every option is checked here; an error is one line naming it.
pub fn manifest(
    dir: &Path,
    inputs: &[(&str, &Path)],
    list: &Path,
    name: &str,
    count: usize,
    o: &KubeOptions,
    run_as: (u32, u32),
) -> Result<Value, String> {
    let image = o
        .image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .ok_or("--image: required with --on kubernetes (the image every pod runs, e.g. REGISTRY/mammogan:cpu)")?;
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("--image '{image}': an image reference has no spaces"));
    }
    let pvc = o.pvc.as_deref().ok_or(
        "--pvc: required with --on kubernetes (the PersistentVolumeClaim holding the sweep directory and the DATASET)",
    )?;
    if !dns_subdomain(pvc) {
        return Err(format!("--pvc '{pvc}': not a claim name (lowercase letters, digits, '-' and '.')"));
    }
    let mount = o.pvc_path.as_deref().ok_or(
        "--pvc-path: required with --on kubernetes (where this machine sees the claim's volume; the pods mount it there)",
    )?;
    let mount_s = utf8("--pvc-path", mount)?;
    if !mount.is_absolute() || mount.parent().is_none() || mount_s.contains(':') {
        return Err(format!("--pvc-path {mount_s}: must be an absolute directory other than /, without ':'"));
    }
    for &(what, p) in [("the sweep directory", dir)].iter().chain(inputs) {
        if !p.starts_with(mount) {
            return Err(format!(
                "--pvc-path {mount_s}: {what} {} is not under it, so the pods could not see it",
                p.display()
            ));
        }
    }
    if run_as.0 == 0 {
        return Err(format!("--run-as {}:{}: the pods run as a user other than root", run_as.0, run_as.1));
    }
    let cpus = o.cpus_per_task.max(1).to_string();
    let mut requests = json!({ "cpu": cpus });
    let mut limits = json!({ "cpu": cpus });
    if let Some(m) = &o.memory {
        if !memory_quantity(m) {
            return Err(format!("--memory '{m}': a Kubernetes quantity such as 8Gi or 512Mi"));
        }
        requests["memory"] = json!(m);
        limits["memory"] = json!(m);
    }
    if let Some(g) = &o.gres {
        // Extended resources are requested by their limit alone (the request defaults to it).
        limits["nvidia.com/gpu"] = json!(gpus(g)?.to_string());
    }
    if count == 0 {
        return Err("no pending trial: nothing to run".into());
    }
    let parallelism = o.max_parallel.filter(|&p| p > 0).unwrap_or(count).min(count);
    let labels = json!({
        "app.kubernetes.io/name": "mammogan",
        "app.kubernetes.io/component": "sweep",
        "app.kubernetes.io/instance": name,
    });
    let args = [
        "--quiet",
        "sweep",
        "trial",
        utf8("the sweep directory", dir)?,
        "--pending",
        utf8("the pending list", list)?,
        "--index-env",
        "JOB_COMPLETION_INDEX",
        "--threads",
        &cpus,
    ];
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": parallelism,
            "backoffLimitPerIndex": BACKOFF_PER_INDEX,
            // No maxFailedIndexes: in a search some trials fail (a learning rate that diverges), and
            // the others must still run; `sweep status` lists the failed ones, a re-run retries them.
            "podFailurePolicy": { "rules": [
                // Preemption, eviction, a drained node: not the trial's fault, not counted.
                { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
                // Exit 1 is mammogan reporting an error (written to the trial's `failed`): a trial is
                // a function of its config and data, so the same attempt again fails the same way.
                // A kill (out of memory, 137) is retried, up to backoffLimitPerIndex.
                { "action": "FailIndex",
                  "onExitCodes": { "containerName": CONTAINER, "operator": "In", "values": [1] } },
            ] },
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "restartPolicy": "Never",
                    // The Pod Security Standard "restricted": non-root, no privilege escalation, no
                    // capabilities, the runtime's seccomp profile.
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": run_as.0,
                        "runAsGroup": run_as.1,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": CONTAINER,
                        "image": image,
                        "command": ["mammogan"],
                        "args": args,
                        "resources": { "requests": requests, "limits": limits },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [{ "name": "sweep", "mountPath": mount_s }],
                    }],
                    "volumes": [{ "name": "sweep", "persistentVolumeClaim": { "claimName": pvc } }],
                },
            },
        },
    }))
}

/// The uid:gid the pods run as: `--run-as`, else the owner of DIR (so the files the trials write
/// belong to whoever owns the sweep, as on Slurm), else, when root owns DIR, the image's user.
pub fn default_run_as(dir: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        Ok(m) if m.uid() != 0 => (m.uid(), m.gid()),
        _ => IMAGE_USER,
    }
}

/// Checks the options before anything is written (the sweep directory included).
pub fn check(dir: &Path, inputs: &[(&str, &Path)], o: &KubeOptions) -> Result<(), SweepError> {
    let run_as = o.run_as.unwrap_or_else(|| default_run_as(dir));
    let list = dir.join("kubernetes").join("check.pending.txt");
    manifest(dir, inputs, &list, "check", 1, o, run_as).map(|_| ()).map_err(|m| err(dir, m))
}

/// Writes the pending list and `DIR/kubernetes/job.yaml`; returns the manifest's path and the Job's name.
pub fn write(
    dir: &Path,
    pending: &[String],
    inputs: &[(&str, &Path)],
    o: &KubeOptions,
) -> Result<(PathBuf, String), SweepError> {
    let kdir = dir.join("kubernetes");
    let name = format!("mammogan-sweep-{}-{}", submit::dir_tag(dir), submit::next_number(&kdir));
    let list = kdir.join(format!("{name}.pending.txt"));
    let run_as = o.run_as.unwrap_or_else(|| default_run_as(dir));
    // Checked before anything is written.
    let job = manifest(dir, inputs, &list, &name, pending.len(), o, run_as).map_err(|m| err(dir, m))?;
    std::fs::create_dir_all(&kdir).map_err(|e| err(&kdir, e.to_string()))?;
    write_atomic(&list, (pending.join("\n") + "\n").as_bytes())?;
    let path = kdir.join("job.yaml");
    let header = "# Written by `mammogan sweep run --on kubernetes`: an Indexed Job, pod K = the trial on line K+1\n\
                  # of its pending list. Apply with: kubectl apply -f job.yaml\n";
    write_atomic(&path, format!("{header}{}", to_yaml(&job)).as_bytes())?;
    Ok((path, name))
}

/// Whether `kubectl` is installed and has a current context.
pub fn kubectl_configured() -> bool {
    submit::succeeds("kubectl", &["config", "current-context"])
}

/// `kubectl apply -f job.yaml`, then the Job recorded in `submitted.txt`.
pub fn apply(dir: &Path, job_yaml: &Path, name: &str) -> Result<(), SweepError> {
    submit::run("kubectl", &["apply", "-f", &job_yaml.to_string_lossy()], job_yaml)?;
    submit::record(&dir.join("kubernetes"), name)
}

/// What `sweep status` says about the Kubernetes route: the manifest written, the Jobs applied and,
/// when kubectl works, what it says of the last one. `None` when this route was never used.
pub fn status(dir: &Path) -> Option<String> {
    let kdir = dir.join("kubernetes");
    let manifest = kdir.join("job.yaml");
    let text = std::fs::read_to_string(&manifest).ok()?;
    // metadata.name: the first two-space `name:` line (labels sort before it and sit deeper).
    let written = text
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .and_then(|v| serde_json::from_str::<String>(v).ok())
        .unwrap_or_default();
    let applied = submit::submitted(&kdir);
    let mut s = format!("kubernetes: {} written for job {written}", manifest.display());
    match applied.last() {
        None => s += "; not applied (kubectl apply -f it)",
        Some(last) => {
            s += &format!("; applied: {}", applied.join(", "));
            if kubectl_configured()
                && let Ok(out) = submit::run("kubectl", &["get", "job", last, "--request-timeout=10s"], &manifest)
            {
                s += &format!("\nkubectl get job {last}:\n{}", out.trim_end());
            }
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> KubeOptions {
        KubeOptions {
            image: Some("registry.example.org/mammogan:cpu".into()),
            pvc: Some("mammogan-data".into()),
            pvc_path: Some("/shared".into()),
            cpus_per_task: 2,
            memory: Some("4Gi".into()),
            gres: Some("gpu:2".into()),
            max_parallel: Some(3),
            run_as: None,
        }
    }

    fn build(o: &KubeOptions) -> Result<Value, String> {
        let dir = Path::new("/shared/sweeps/s1");
        let inputs = [("the DATASET (--data)", Path::new("/shared/ds"))];
        manifest(dir, &inputs, &dir.join("kubernetes/j.pending.txt"), "j", 4, o, (1000, 1000))
    }

    #[test]
    fn an_indexed_job_with_what_was_asked() {
        let j = build(&options()).unwrap();
        let spec = &j["spec"];
        assert_eq!(j["apiVersion"], "batch/v1");
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(spec["completions"], 4);
        assert_eq!(spec["parallelism"], 3);
        assert_eq!(spec["backoffLimitPerIndex"], 1);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 1000);
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example.org/mammogan:cpu");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["resources"]["limits"], json!({"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "2"}));
        assert_eq!(c["resources"]["requests"], json!({"cpu": "2", "memory": "4Gi"}));
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(
            args.join(" "),
            "--quiet sweep trial /shared/sweeps/s1 --pending /shared/sweeps/s1/kubernetes/j.pending.txt \
             --index-env JOB_COMPLETION_INDEX --threads 2"
        );
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/shared");
        assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], "mammogan-data");
        // The FailIndex rule names the container that exists.
        assert_eq!(spec["podFailurePolicy"]["rules"][1]["onExitCodes"]["containerName"], c["name"]);
        // Without --max-parallel every trial at once; parallelism never above completions.
        let all = build(&KubeOptions { max_parallel: None, gres: None, ..options() }).unwrap();
        assert_eq!(all["spec"]["parallelism"], 4);
        assert!(
            all["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu").is_none()
        );
    }

    #[test]
    fn bad_options_are_one_line_naming_the_option() {
        let cases: Vec<(KubeOptions, &str)> = vec![
            (KubeOptions { image: None, ..options() }, "--image: required"),
            (KubeOptions { pvc: None, ..options() }, "--pvc: required"),
            (KubeOptions { pvc: Some("My_Claim".into()), ..options() }, "--pvc 'My_Claim'"),
            (KubeOptions { pvc_path: None, ..options() }, "--pvc-path: required"),
            (
                KubeOptions { pvc_path: Some("/elsewhere".into()), ..options() },
                "the sweep directory /shared/sweeps/s1 is not under it",
            ),
            (
                KubeOptions { pvc_path: Some("/shared/sweeps".into()), ..options() },
                "the DATASET (--data) /shared/ds is not under it",
            ),
            (KubeOptions { pvc_path: Some("/".into()), ..options() }, "other than /"),
            (KubeOptions { memory: Some("4GB".into()), ..options() }, "--memory '4GB'"),
            (KubeOptions { gres: Some("mps:1".into()), ..options() }, "--gres 'mps:1'"),
        ];
        for (o, needle) in cases {
            let e = build(&o).unwrap_err();
            assert!(e.contains(needle) && !e.contains('\n'), "{needle}: {e}");
        }
        let dir = Path::new("/shared/s");
        // The images of `--images` must be on the volume too.
        let inputs = [("the DATASET (--data)", dir), ("the images (--images)", Path::new("/home/me/images"))];
        let e = manifest(dir, &inputs, dir, "j", 1, &options(), (1000, 1000)).unwrap_err();
        assert!(e.contains("the images (--images) /home/me/images is not under it"), "{e}");
        let e = manifest(dir, &[("the DATASET (--data)", dir)], dir, "j", 1, &options(), (0, 0)).unwrap_err();
        assert!(e.starts_with("--run-as 0:0"), "{e}");
        assert_eq!(parse_run_as("1000:100"), Ok((1000, 100)));
        assert!(parse_run_as("root").unwrap_err().starts_with("--run-as 'root'"));
        assert!(memory_quantity("512Mi") && memory_quantity("1.5Gi") && memory_quantity("1000000"));
        assert!(!memory_quantity("Gi") && !memory_quantity("-1Gi") && !memory_quantity("0"));
    }

    #[test]
    fn written_with_its_list_and_numbered_per_submission() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sweep");
        std::fs::create_dir_all(&dir).unwrap();
        let data = tmp.path().join("ds");
        let data = [("the DATASET (--data)", data.as_path())];
        let o = KubeOptions { pvc_path: Some(tmp.path().to_path_buf()), run_as: Some((1000, 1000)), ..options() };
        let pending = vec!["ta".to_string(), "tb".to_string()];
        let (path, name) = write(&dir, &pending, &data, &o).unwrap();
        assert!(name.ends_with("-1"), "{name}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("{name}.pending.txt")), "{text}");
        let list = std::fs::read_to_string(dir.join("kubernetes").join(format!("{name}.pending.txt"))).unwrap();
        assert_eq!(list, "ta\ntb\n");
        assert!(status(&dir).unwrap().contains(&format!("job {name}; not applied")));
        submit::record(&dir.join("kubernetes"), &name).unwrap();
        let (_, second) = write(&dir, &pending, &data, &o).unwrap();
        assert!(second.ends_with("-2"), "{second}");
        // A bad option writes nothing.
        let empty = tmp.path().join("other");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(write(&empty, &pending, &data, &KubeOptions { image: None, ..o }).is_err());
        assert!(!empty.join("kubernetes").exists());
    }
}
