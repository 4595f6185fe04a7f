//! The SageMaker training contract through the binary, on a temporary `SAGEMAKER_BASE_DIR` tree:
//! `mammogan train` with no arguments reads hyperparameters.json (string values, SageMaker's own keys
//! ignored), trains on the `training` channel, writes the model to `model/`, prints METRIC lines that the
//! documented regexes read; failures land in `output/failure`; `checkpoints/` is resumed after SIGKILL
//! with the weights of an uninterrupted run, and SIGTERM saves a checkpoint without a failure.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{exe, run_ok, small_dataset, wait_for_checkpoint};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A SageMaker tree: config files, and `channel` holding `data` (if any).
fn sm_tree(base: &Path, hp: serde_json::Value, data: Option<&Path>) {
    let config = base.join("input/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("hyperparameters.json"), hp.to_string()).unwrap();
    let idc = serde_json::json!({"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}});
    std::fs::write(config.join("inputdataconfig.json"), idc.to_string()).unwrap();
    let rc = serde_json::json!({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"});
    std::fs::write(config.join("resourceconfig.json"), rc.to_string()).unwrap();
    if let Some(d) = data {
        copy_dir(d, &base.join("input/data/training"));
    }
}

/// Tiny settings, every value a string as SageMaker writes them.
fn tiny(steps: u32, model: &str) -> serde_json::Value {
    serde_json::json!({
        "train.steps": steps.to_string(),
        "train.batch_size": "8",
        "train.checkpoint_every": "2",
        "train.log_every": "1",
        "train.image_every": "2",
        "attribution.gen_channels": "4",
        "attribution.critic_channels": "4",
        "threads": "2",
        "model": model,
        "_tuning_objective_metric": "val.classifier.auc",
        "sagemaker_container_log_level": "20",
    })
}

fn sm_train(base: &Path) -> Command {
    let mut c = exe();
    c.arg("train").env("SAGEMAKER_BASE_DIR", base);
    c
}

/// What the documented regex `KEY=(-?[0-9.]+);` captures on each line, in order.
fn captures(stdout: &str, key: &str) -> Vec<f64> {
    let needle = format!(" {key}=");
    stdout
        .lines()
        .filter(|l| l.starts_with("METRIC "))
        .filter_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            let end = rest.find(';')?;
            let v = &rest[..end];
            assert!(v.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-'), "{l}");
            Some(v.parse().unwrap())
        })
        .collect()
}

/// Every entry under `dir`: path, size, modification time. SageMaker mounts FastFile channels read-only;
/// as root (CI) a read-only tree cannot be simulated with modes, so the tests check that a job changes
/// nothing under `input/` instead (tests/container/sagemaker mounts it read-only for real).
fn listing(dir: &Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), m.len(), m.modified().unwrap()));
        if m.is_dir() {
            out.extend(listing(&p));
        }
    }
    out.sort();
    out
}

fn hashes(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout).lines().filter(|l| l.contains("weights blake3")).map(|l| l.to_string()).collect()
}

#[test]
fn train_contract_writes_the_model_and_metric_lines() {
    let (tmp, _, ds) = small_dataset();
    let base = tmp.path().join("sm-ok");
    sm_tree(&base, tiny(4, "all"), Some(ds));
    // FastFile, as docs/sagemaker/create-training-job.json asks for.
    let idc =
        serde_json::json!({"training": {"TrainingInputMode": "FastFile", "S3DistributionType": "FullyReplicated"}});
    std::fs::write(base.join("input/config/inputdataconfig.json"), idc.to_string()).unwrap();
    let input = listing(&base.join("input"));
    let out = sm_train(&base).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!base.join("output/failure").exists());
    assert!(listing(&base.join("input")) == input, "the job wrote under input/ (read-only on SageMaker)");
    for f in [
        "model/model/model.json",
        "model/model/classifier.safetensors",
        "model/model/attribution.safetensors",
        "model/config.toml",
        "model/manifest.json",
        "model/eval/metrics.json",
        "checkpoints/config.toml",
    ] {
        assert!(base.join(f).is_file(), "{f} missing:\n{stdout}{stderr}");
    }
    let config = std::fs::read_to_string(base.join("model/config.toml")).unwrap();
    assert!(config.contains("steps = 4"), "{config}");
    // Per logged step, and one line per evaluation (val, test).
    let losses = captures(&stdout, "train.classifier.loss");
    assert_eq!(losses.len(), 4, "{stdout}");
    assert!(!captures(&stdout, "train.attribution.l1").is_empty() || stdout.contains("train.attribution."), "{stdout}");
    for key in ["val.classifier.auc", "test.classifier.auc"] {
        let v = captures(&stdout, key);
        assert_eq!(v.len(), 1, "{key}: {stdout}");
        assert!((0.0..=1.0).contains(&v[0]));
    }
    assert!(stdout.lines().any(|l| l.starts_with("METRIC split=test ")), "{stdout}");
    // The exported model is what explain loads.
    let (_, ph, _) = small_dataset();
    let image = std::fs::read_dir(ph.join("images")).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let ex = tmp.path().join("sm-explain");
    run_ok(&["explain", base.join("model").to_str().unwrap(), image.to_str().unwrap(), "--out", ex.to_str().unwrap()]);
}

#[test]
fn raw_channel_data_is_prepared_with_the_format_hyperparameter() {
    let (tmp, ph, _) = small_dataset();
    let base = tmp.path().join("sm-raw");
    let mut hp = tiny(2, "classifier");
    hp["prepare.patch_size"] = "32".into();
    sm_tree(&base, hp.clone(), Some(ph));
    // Without `format`: a failure naming it.
    let mut no_format = hp.clone();
    no_format.as_object_mut().unwrap().remove("format");
    std::fs::write(base.join("input/config/hyperparameters.json"), no_format.to_string()).unwrap();
    let out = sm_train(&base).output().unwrap();
    assert!(!out.status.success());
    let failure = std::fs::read_to_string(base.join("output/failure")).unwrap();
    assert!(failure.contains("format") && failure.contains("dataset.json"), "{failure}");
    std::fs::remove_file(base.join("output/failure")).unwrap();

    hp["format"] = "phantom".into();
    std::fs::write(base.join("input/config/hyperparameters.json"), hp.to_string()).unwrap();
    let out = sm_train(&base).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(base.join("output/dataset/dataset.json").is_file());
    assert!(base.join("model/model/classifier.safetensors").is_file());
    assert!(!base.join("model/model/attribution.safetensors").exists(), "model=classifier trains only it");
}

#[test]
fn failures_write_a_one_line_reason_and_exit_non_zero() {
    let (tmp, _, ds) = small_dataset();
    let cases: Vec<(&str, serde_json::Value, bool, &str)> = vec![
        ("bad-value", serde_json::json!({"train.steps": "many"}), true, "train.steps"),
        ("unknown-config-key", serde_json::json!({"train.stepz": "3"}), true, "train.stepz"),
        ("no-channel", serde_json::json!({"train.steps": "2"}), false, "channel"),
    ];
    for (name, hp, with_data, needle) in cases {
        let base = tmp.path().join(format!("sm-fail-{name}"));
        sm_tree(&base, hp, with_data.then_some(ds.as_path()));
        let out = sm_train(&base).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let failure = std::fs::read_to_string(base.join("output/failure")).unwrap();
        assert!(failure.contains(needle), "{name}: {failure}");
        assert_eq!(failure.lines().count(), 1, "{name}: {failure}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(!base.join("model/model").exists(), "{name}");
    }
    // Several hosts: refused.
    let base = tmp.path().join("sm-fail-hosts");
    sm_tree(&base, tiny(2, "classifier"), Some(ds));
    std::fs::write(
        base.join("input/config/resourceconfig.json"),
        r#"{"current_host":"algo-1","hosts":["algo-1","algo-2"]}"#,
    )
    .unwrap();
    let out = sm_train(&base).output().unwrap();
    assert!(!out.status.success());
    assert!(std::fs::read_to_string(base.join("output/failure")).unwrap().contains("instance_count=1"));
    // Outside SageMaker mode, `train` without --data/--out says what it needs.
    let out = exe().arg("train").env_remove("SAGEMAKER_BASE_DIR").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
}

#[test]
fn checkpoints_resume_after_sigkill_and_sigterm_is_no_failure() {
    let (tmp, _, ds) = small_dataset();
    let full = tmp.path().join("sm-full");
    sm_tree(&full, tiny(40, "attribution"), Some(ds));
    let reference = sm_train(&full).output().unwrap();
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));

    let killed = tmp.path().join("sm-killed");
    sm_tree(&killed, tiny(40, "attribution"), Some(ds));
    let mut child = sm_train(&killed).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_checkpoint(&killed.join("checkpoints/checkpoints"), "attribution", &mut child);
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(!killed.join("model/model").exists());
    // A restarted job: same hyperparameters, checkpoints/ restored.
    let resumed = sm_train(&killed).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("resuming"));
    assert!(!hashes(&reference.stdout).is_empty());
    assert_eq!(hashes(&resumed.stdout), hashes(&reference.stdout), "resume must reproduce the weights");
    assert_eq!(
        std::fs::read(killed.join("model/model/attribution.safetensors")).unwrap(),
        std::fs::read(full.join("model/model/attribution.safetensors")).unwrap()
    );

    // Other hyperparameters on the same checkpoints: refused, not mixed.
    std::fs::write(killed.join("input/config/hyperparameters.json"), tiny(50, "attribution").to_string()).unwrap();
    let out = sm_train(&killed).output().unwrap();
    assert!(!out.status.success());
    assert!(std::fs::read_to_string(killed.join("output/failure")).unwrap().contains("another config"));

    // SIGTERM (StopTrainingJob, spot interruption): a checkpoint, a non-zero exit, no failure file.
    let term = tmp.path().join("sm-term");
    sm_tree(&term, tiny(400, "attribution"), Some(ds));
    let mut child = sm_train(&term).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_checkpoint(&term.join("checkpoints/checkpoints"), "attribution", &mut child);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!term.join("output/failure").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(term.join("checkpoints/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["outcome"]["status"], "killed");
}
