//! Checkpoints: `RUN/checkpoints/<model>/step-000100/`, written so that a kill at any instant leaves
//! either the previous checkpoints alone or a new complete one.
//!
//! A checkpoint is built in a hidden sibling (`.step-000100.partial-<pid>`), every file and the
//! directory are fsynced, and only then is it renamed to its final name, through
//! [`mammo_io::partial::build_dir`] like every directory we write; `state.json`, written last, lists the
//! BLAKE3 of every other file, and [`latest`] skips any directory whose files do not match it. So a
//! directory named `step-*` is complete by construction, and is checked anyway. A kill between the two
//! renames of writing a step again leaves only `.step-000100.old-<pid>`, which [`latest`] puts back.
//!
//! What a checkpoint holds is everything a fresh process needs to continue bit-identically: weights
//! (safetensors), Adam moments (burn's optimizer record, burnpack), and the step. The random draws need
//! no saved state: they are derived from (seed, model, step) (see `rng.rs`).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore, burn_pack};
use burn::tensor::Bytes;
use mammo_io::partial::Existing;
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// The directory under RUN that holds checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The file, written last, that lists a checkpoint's other files and their hashes.
pub const STATE_FILE: &str = "state.json";
/// Bumped on any incompatible change to a checkpoint's files.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`CHECKPOINT_FORMAT_VERSION`].
    pub format_version: u32,
    /// The model (`classifier`, `attribution`).
    pub model: String,
    /// Steps done.
    pub step: u64,
    /// Steps the run was configured for.
    pub total_steps: u64,
    /// The run's seed (a resume checks it).
    pub seed: u64,
    /// BLAKE3 of the resolved config TOML (a resume checks it: continuing under another config would
    /// not reproduce anything).
    pub config_hash: String,
    /// Every other file of the checkpoint with its BLAKE3.
    pub files: Vec<(String, String)>,
}

/// A complete checkpoint found on disk.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Its `state.json`.
    pub state: CheckpointState,
}

impl Checkpoint {
    /// Reads one of its files.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(name);
        std::fs::read(&path).map_err(|e| NnError::io(&path, e))
    }
}

/// `RUN/checkpoints/<model>`.
pub fn model_dir(run_dir: &Path, model: &str) -> PathBuf {
    run_dir.join(CHECKPOINTS_DIR).join(model)
}

/// `RUN/checkpoints/<model>/step-000100`.
pub fn checkpoint_dir(run_dir: &Path, model: &str, step: u64) -> PathBuf {
    model_dir(run_dir, model).join(format!("step-{step:06}"))
}

/// Writes a checkpoint atomically and returns its directory. `files` are (name, bytes).
pub fn write(run_dir: &Path, state: &CheckpointState, files: &[(&str, Vec<u8>)]) -> Result<PathBuf> {
    let dest = checkpoint_dir(run_dir, &state.model, state.step);
    // Re-writing a step (a resume that saves the step it started from) replaces it whole.
    mammo_io::partial::build_dir(&dest, Existing::Replace, |tmp| {
        let mut state = state.clone();
        state.files.clear();
        for (file, bytes) in files {
            write_file(&tmp.join(file), bytes)?;
            state.files.push((file.to_string(), blake3::hash(bytes).to_hex().to_string()));
        }
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        write_file(&tmp.join(STATE_FILE), &json)
    })?;
    Ok(dest)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| NnError::io(path, e))
}

/// Finishes or undoes the checkpoint writes of `model` that a kill interrupted (see
/// [`mammo_io::partial::recover`]): an old copy of a step being written again is put back where the
/// kill left none, partial ones are removed. [`latest`] runs it first, so a resume sees every complete
/// checkpoint; call nothing else that writes this model's checkpoints meanwhile.
pub fn recover(run_dir: &Path, model: &str) -> Result<()> {
    mammo_io::partial::recover(&model_dir(run_dir, model))?;
    Ok(())
}

/// The steps of the `step-*` directories of a model, newest first (complete or not).
fn steps_on_disk(run_dir: &Path, model: &str) -> Result<Vec<u64>> {
    let dir = model_dir(run_dir, model);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NnError::io(&dir, e)),
    };
    let mut steps: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    steps.sort_unstable_by(|a, b| b.cmp(a));
    Ok(steps)
}

/// Opens and verifies the checkpoint of `step`: its state parses, names this model and step, and every
/// file it lists has the recorded hash.
pub fn open(run_dir: &Path, model: &str, step: u64) -> Result<Checkpoint> {
    let dir = checkpoint_dir(run_dir, model, step);
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read(&state_path).map_err(|e| NnError::io(&state_path, e))?;
    let state: CheckpointState = serde_json::from_slice(&text)
        .map_err(|e| NnError::invalid(&state_path, format!("not a valid checkpoint state: {e}")))?;
    if state.format_version != CHECKPOINT_FORMAT_VERSION || state.model != model || state.step != step {
        return Err(NnError::invalid(
            &state_path,
            format!(
                "describes {} step {} (format {}), expected {model} step {step} (format {CHECKPOINT_FORMAT_VERSION})",
                state.model, state.step, state.format_version
            ),
        ));
    }
    for (file, hash) in &state.files {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| NnError::io(&path, e))?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(NnError::invalid(&path, "content differs from the hash in state.json"));
        }
    }
    Ok(Checkpoint { dir, state })
}

/// The newest checkpoint of `model` that verifies, if any, after [`recover`]. Damaged ones are skipped
/// with a warning.
pub fn latest(run_dir: &Path, model: &str) -> Result<Option<Checkpoint>> {
    recover(run_dir, model)?;
    for step in steps_on_disk(run_dir, model)? {
        match open(run_dir, model, step) {
            Ok(c) => return Ok(Some(c)),
            Err(e) => tracing::warn!("skipping checkpoint: {e}"),
        }
    }
    Ok(None)
}

/// Deletes all but the newest `keep` checkpoints of `model` (0 = keep all).
pub fn prune(run_dir: &Path, model: &str, keep: usize) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    for step in steps_on_disk(run_dir, model)?.into_iter().skip(keep) {
        let dir = checkpoint_dir(run_dir, model, step);
        std::fs::remove_dir_all(&dir).map_err(|e| NnError::io(&dir, e))?;
    }
    Ok(())
}

/// A module's weights as safetensors bytes (named by their module paths; no timestamp, so the same
/// weights always give the same bytes).
pub fn weights_to_bytes<M: Module>(module: &M) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None).clear_metadata().metadata("producer", "mammogan");
    module.save_into(&mut store).map_err(|e| NnError::Data(format!("cannot serialize weights: {e}")))?;
    store.get_bytes().map_err(|e| NnError::Data(format!("cannot serialize weights: {e}")))
}

/// Loads safetensors bytes into a module of the same architecture (every tensor must match).
pub fn weights_from_bytes<M: Module>(module: &mut M, bytes: Vec<u8>, source: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes));
    let result = module.load_from(&mut store).map_err(|e| NnError::invalid(source, e.to_string()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(NnError::invalid(
            source,
            format!(
                "weights do not fit the model: missing {:?}, unused {:?}, errors {:?}",
                result.missing, result.unused, result.errors
            ),
        ));
    }
    Ok(())
}

/// An optimizer's state (Adam moments and step counts) as burnpack bytes, in a canonical order.
///
/// burn writes the per-parameter states in hash-map order, which differs from process to process;
/// re-packing them sorted by name makes equal states give equal bytes, so checkpoint hashes can be
/// compared between runs.
pub fn optimizer_to_bytes(optim: &ModuleOptimizer) -> Result<Vec<u8>> {
    let err = |e: &dyn std::fmt::Display| NnError::Data(format!("cannot serialize optimizer state: {e}"));
    let bytes = optim.into_bytes().map_err(|e| err(&e))?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| err(&e))?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut tensors = reader.into_tensors().map_err(|e| err(&e))?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    Ok(writer.into_bytes().map_err(|e| err(&e))?.to_vec())
}

/// Restores an optimizer's state saved by [`optimizer_to_bytes`].
pub fn optimizer_from_bytes(optim: ModuleOptimizer, bytes: Vec<u8>, source: &Path) -> Result<ModuleOptimizer> {
    optim.from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| NnError::invalid(source, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> CheckpointState {
        CheckpointState {
            format_version: CHECKPOINT_FORMAT_VERSION,
            model: "m".into(),
            step,
            total_steps: 10,
            seed: 1,
            config_hash: "x".into(),
            files: vec![],
        }
    }

    #[test]
    fn latest_skips_damaged_and_half_written_checkpoints() {
        let run = tempfile::tempdir().unwrap();
        write(run.path(), &state(2), &[("a.bin", vec![1, 2, 3])]).unwrap();
        let d4 = write(run.path(), &state(4), &[("a.bin", vec![4])]).unwrap();
        // A half-written one (as left by a kill) is hidden and ignored, and cleared by `latest`.
        let stale = model_dir(run.path(), "m").join(".step-000006.partial-4999999");
        std::fs::create_dir_all(&stale).unwrap();
        assert_eq!(latest(run.path(), "m").unwrap().unwrap().state.step, 4);
        // A damaged one is skipped.
        std::fs::write(d4.join("a.bin"), [9]).unwrap();
        let c = latest(run.path(), "m").unwrap().unwrap();
        assert_eq!(c.state.step, 2);
        assert_eq!(c.read("a.bin").unwrap(), vec![1, 2, 3]);
        // Re-writing a step replaces it whole.
        write(run.path(), &state(4), &[("a.bin", vec![5])]).unwrap();
        assert_eq!(latest(run.path(), "m").unwrap().unwrap().read("a.bin").unwrap(), vec![5]);
        assert!(!stale.exists());
        prune(run.path(), "m", 1).unwrap();
        assert!(open(run.path(), "m", 2).is_err());
        assert!(latest(run.path(), "nothing").unwrap().is_none());
    }

    /// A kill while writing a step again, on the layout training writes (`checkpoints/<model>/step-N`):
    /// between the two renames only the old copy exists, and `latest` (what a resume calls) puts it
    /// back; after them, the old copy is removed. (`/proc` tells a dead writer; without it nothing is
    /// touched.)
    #[test]
    fn latest_recovers_a_step_whose_rewrite_was_killed() {
        if !Path::new("/proc/self").exists() {
            return;
        }
        let run = tempfile::tempdir().unwrap();
        write(run.path(), &state(2), &[("a.bin", vec![2])]).unwrap();
        let d4 = write(run.path(), &state(4), &[("a.bin", vec![4])]).unwrap();
        assert_eq!(d4, run.path().join("checkpoints/m/step-000004"));
        let dir = model_dir(run.path(), "m");
        // Killed between the renames: step 4 moved aside, its new version complete but hidden.
        std::fs::rename(&d4, dir.join(".step-000004.old-4999999")).unwrap();
        std::fs::create_dir(dir.join(".step-000004.partial-4999999")).unwrap();
        std::fs::write(dir.join(".step-000004.partial-4999999/a.bin"), [5]).unwrap();
        let c = latest(run.path(), "m").unwrap().unwrap();
        assert_eq!((c.state.step, c.read("a.bin").unwrap()), (4, vec![4]));
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["step-000002", "step-000004"]);
        // Killed after them: the new step in place and the old copy left over, which goes.
        write(run.path(), &state(4), &[("a.bin", vec![6])]).unwrap();
        std::fs::create_dir(dir.join(".step-000004.old-4999998")).unwrap();
        assert_eq!(latest(run.path(), "m").unwrap().unwrap().read("a.bin").unwrap(), vec![6]);
        assert!(!dir.join(".step-000004.old-4999998").exists());
    }
}
