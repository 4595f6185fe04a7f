//! Sharded preparation: `prepare --shard I/N` prepares the patients of shard I into a SHARD directory,
//! and [`merge`] joins the N shards into the DATASET the unsharded `prepare` writes, byte for byte.
//!
//! *Invariant:* a shard holds, for each of its cases, exactly the record the unsharded run computes
//! for that case (the same case index seeds its draws, the split is assigned over every patient of the
//! input by each shard alike, names come from the same key), and the merge writes them in input order
//! through the one writer `prepare` uses ([`crate::pipeline::write_records`]). A patient's images all
//! go to one shard (by the keyed patient pseudonym), and which shard a case lands in changes no byte of
//! the result: N is free.
//!
//! ```text
//! SHARD/
//!   shard.json    which shard of how many, the input's and parameters' fingerprints, the dataset-wide
//!                 facts (patients per split, image count, the layout's hashed tables) and, per case of
//!                 this shard, its index in the input, its index.csv rows and hashed input files
//!   patches.u16   the shard's patches, in case order (the DATASET's format)
//!   masks.u8      their masks
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mammo_io::layouts::Format;
use serde::{Deserialize, Serialize};

use crate::dataset::{self, DatasetInfo, HashedFile, IndexRow};
use crate::error::{PrepError, Result};
use crate::pipeline::{self, CaseRecord, Plan, PrepParams, Summary};

/// Bumped on any incompatible change to the SHARD files.
pub const SHARD_FORMAT_VERSION: u32 = 1;
pub const SHARD_JSON: &str = "shard.json";
/// The most shards one input may be cut into (a Slurm array is at most this large on most sites).
pub const MAX_SHARDS: u32 = 100_000;

/// `I/N`: shard I (0-based, as `$SLURM_ARRAY_TASK_ID` and `$JOB_COMPLETION_INDEX` count) of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub index: u32,
    pub of: u32,
}

impl ShardSpec {
    /// Parses `I/N`, refusing I >= N, N = 0 and N over [`MAX_SHARDS`] with the reason.
    pub fn parse(text: &str) -> std::result::Result<ShardSpec, String> {
        let bad = || format!("--shard {text}: expected I/N, shard I (counted from 0) of N, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let of: u32 = n.trim().parse().map_err(|_| bad())?;
        if of == 0 || of > MAX_SHARDS {
            return Err(format!("--shard {text}: N must be in 1..={MAX_SHARDS}"));
        }
        if index >= of {
            return Err(format!(
                "--shard {text}: I must be below N (shards are counted from 0: 0/{of} .. {}/{of})",
                of - 1
            ));
        }
        Ok(ShardSpec { index, of })
    }

    /// Whether item `position` of a list belongs to this shard (round robin, for lists without
    /// patients, such as images to score).
    pub fn holds_position(&self, position: usize) -> bool {
        position % self.of as usize == self.index as usize
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

/// One case of a shard: its index in the input and what it contributes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ShardCase {
    index: usize,
    rows: Vec<IndexRow>,
    inputs: Vec<HashedFile>,
}

/// `shard.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ShardInfo {
    format_version: u32,
    shard: ShardSpec,
    /// A fingerprint of the input's case list (named as the dataset names files, so it reveals no
    /// path): shards of different inputs have different ones.
    input_id: String,
    /// The pseudonym key's id ([`crate::PseudonymKey::id`]), never the key.
    key_id: String,
    patch_size: usize,
    summary: Summary,
    metadata: Vec<HashedFile>,
    cases: Vec<ShardCase>,
}

/// Prepares the cases of the patients of shard `spec` of `input` into the new SHARD directory `out`
/// (built as a partial directory and renamed).
pub fn prepare_shard(
    format: Format,
    input: &Path,
    out: &Path,
    params: &PrepParams,
    spec: ShardSpec,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ShardSummary> {
    let plan = Plan::load(format, input, out, params)?;
    let indices: Vec<usize> =
        (0..plan.cases.len()).filter(|&i| plan.shard_of(&plan.cases[i], spec.of) == spec.index).collect();
    let records = plan.records(&indices, params, progress)?;
    let info = ShardInfo {
        format_version: SHARD_FORMAT_VERSION,
        shard: spec,
        input_id: input_id(&plan),
        key_id: plan.namer.key_id(),
        patch_size: params.patch.size,
        summary: plan.summary(params),
        metadata: plan.metadata()?,
        cases: Vec::new(),
    };
    pipeline::build_dir(out, |dir| write_shard(dir, info, &indices, records))
}

/// What a shard holds, for the command's message.
#[derive(Clone, Debug)]
pub struct ShardSummary {
    pub spec: ShardSpec,
    pub images: usize,
    pub images_total: usize,
    pub patches: usize,
}

fn write_shard(dir: &Path, mut info: ShardInfo, indices: &[usize], records: Vec<CaseRecord>) -> Result<ShardSummary> {
    let mut pixels = Vec::new();
    let mut masks = Vec::new();
    for (&index, rec) in indices.iter().zip(records) {
        pixels.extend_from_slice(&rec.pixels);
        masks.extend_from_slice(&rec.masks);
        info.cases.push(ShardCase { index, rows: rec.rows, inputs: rec.inputs });
    }
    let write = |name: &str, bytes: &[u8]| -> Result<()> { Ok(mammo_io::atomic::write_bytes(&dir.join(name), bytes)?) };
    write(dataset::PATCHES_FILE, &pixels)?;
    write(dataset::MASKS_FILE, &masks)?;
    write(SHARD_JSON, &serde_json::to_vec(&info).expect("shard info serialises"))?;
    Ok(ShardSummary {
        spec: info.shard,
        images: info.cases.len(),
        images_total: info.summary.images,
        patches: info.cases.iter().map(|c| c.rows.len()).sum(),
    })
}

/// The fingerprint of the case list: each case's written image name, its patient's split key and label.
fn input_id(plan: &Plan) -> String {
    let mut h = blake3::Hasher::new();
    h.update(plan.format.name().as_bytes());
    h.update(b"\0");
    for case in &plan.cases {
        h.update(plan.namer.path(&plan.input, &case.image).as_bytes());
        h.update(b"\0");
        h.update(plan.namer.patient(&case.patient).as_bytes());
        h.update(b"\0");
        h.update(case.label.as_str().as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..32].to_string()
}

/// A shard read back: its `shard.json` and its directory.
struct Loaded {
    dir: PathBuf,
    info: ShardInfo,
}

fn load(dir: &Path) -> Result<Loaded> {
    let path = dir.join(SHARD_JSON);
    let text = std::fs::read(&path).map_err(|e| PrepError::io(&path, e))?;
    let info: ShardInfo = serde_json::from_slice(&text)
        .map_err(|e| PrepError::invalid(&path, format!("not a shard written by prepare --shard: {e}")))?;
    if info.format_version != SHARD_FORMAT_VERSION {
        return Err(PrepError::invalid(
            &path,
            format!("shard format {} (this build reads {SHARD_FORMAT_VERSION})", info.format_version),
        ));
    }
    Ok(Loaded { dir: dir.to_path_buf(), info })
}

/// Merges the shards `dirs` (all N of one input, in any order) into the new DATASET `out`, the same
/// bytes as the unsharded `prepare`. Refused, naming the shard and the reason, before anything is
/// written: a missing or repeated shard, shards of different inputs, parameters, keys or builds, a
/// shard whose files do not match its `shard.json`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<DatasetInfo> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(PrepError::invalid(out, "output already exists; choose a new path or remove it first"));
    }
    let Some(first_dir) = dirs.first() else {
        return Err(PrepError::invalid(out, "no shard given to merge"));
    };
    let shards = dirs.iter().map(|d| load(d)).collect::<Result<Vec<_>>>()?;
    let first = &shards[0];
    for s in &shards[1..] {
        let differs = |what: &str| {
            PrepError::invalid(
                s.dir.join(SHARD_JSON),
                format!("{what} differ from those of {}; all shards must come from one prepare", first.dir.display()),
            )
        };
        let (a, b) = (&first.info, &s.info);
        if a.shard.of != b.shard.of {
            return Err(PrepError::invalid(
                s.dir.join(SHARD_JSON),
                format!(
                    "is shard {} but {} is shard {}: different shard counts",
                    b.shard,
                    first.dir.display(),
                    a.shard
                ),
            ));
        }
        if a.summary.created_by != b.summary.created_by {
            return Err(differs("the mammogan versions"));
        }
        if a.summary.params != b.summary.params || a.patch_size != b.patch_size {
            return Err(differs("the preparation parameters"));
        }
        if a.key_id != b.key_id {
            return Err(differs("the pseudonym keys"));
        }
        if a.input_id != b.input_id || a.metadata != b.metadata || a.summary != b.summary {
            return Err(differs("the inputs"));
        }
    }
    let of = first.info.shard.of;
    let mut by_index: BTreeMap<u32, &Loaded> = BTreeMap::new();
    for s in &shards {
        if let Some(other) = by_index.insert(s.info.shard.index, s) {
            return Err(PrepError::invalid(
                &s.dir,
                format!("shard {} given twice (also {})", s.info.shard, other.dir.display()),
            ));
        }
    }
    let missing: Vec<String> = (0..of).filter(|i| !by_index.contains_key(i)).map(|i| format!("{i}/{of}")).collect();
    if !missing.is_empty() {
        return Err(PrepError::invalid(first_dir, format!("shards missing: {}", missing.join(", "))));
    }

    // Every case of the input exactly once, then the records in input order.
    let images = first.info.summary.images;
    let mut slots: Vec<Option<CaseRecord>> = (0..images).map(|_| None).collect();
    for s in by_index.values() {
        for (index, rec) in read_records(s)? {
            match slots.get_mut(index) {
                Some(slot @ None) => *slot = Some(rec),
                Some(Some(_)) => {
                    return Err(PrepError::invalid(&s.dir, format!("case {index} is also in another shard")));
                }
                None => return Err(PrepError::invalid(&s.dir, format!("case {index} is beyond the input's {images}"))),
            }
        }
    }
    if let Some(i) = slots.iter().position(Option::is_none) {
        return Err(PrepError::invalid(first_dir, format!("case {i} of the input is in no shard")));
    }
    let records: Vec<CaseRecord> = slots.into_iter().flatten().collect();
    let info = &first.info;
    pipeline::build_dir(out, |dir| {
        pipeline::write_records(dir, first_dir, records, &info.metadata, &info.summary, info.patch_size)
    })
}

/// A shard's cases with their patch and mask bytes, checking the files hold exactly what
/// `shard.json` lists.
fn read_records(s: &Loaded) -> Result<Vec<(usize, CaseRecord)>> {
    let s2 = s.info.patch_size * s.info.patch_size;
    let patches: usize = s.info.cases.iter().map(|c| c.rows.len()).sum();
    let read = |name: &str, per_patch: usize| -> Result<Vec<u8>> {
        let p = s.dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| PrepError::io(&p, e))?;
        if bytes.len() != patches * per_patch {
            return Err(PrepError::invalid(
                &p,
                format!(
                    "holds {} bytes, the {patches} patches of shard.json need {}",
                    bytes.len(),
                    patches * per_patch
                ),
            ));
        }
        Ok(bytes)
    };
    let pixels = read(dataset::PATCHES_FILE, 2 * s2)?;
    let masks = read(dataset::MASKS_FILE, s2)?;
    let mut at = 0;
    Ok(s.info
        .cases
        .iter()
        .map(|c| {
            let n = c.rows.len();
            let rec = CaseRecord {
                rows: c.rows.clone(),
                pixels: pixels[at * 2 * s2..(at + n) * 2 * s2].to_vec(),
                masks: masks[at * s2..(at + n) * s2].to_vec(),
                inputs: c.inputs.clone(),
            };
            at += n;
            (c.index, rec)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_are_parsed_and_out_of_range_ones_refused() {
        assert_eq!(ShardSpec::parse("0/1"), Ok(ShardSpec { index: 0, of: 1 }));
        assert_eq!(ShardSpec::parse("2/3"), Ok(ShardSpec { index: 2, of: 3 }));
        for bad in ["3/3", "0/0", "1", "-1/2", "a/b", "1/2/3", "0/100001"] {
            assert!(ShardSpec::parse(bad).is_err(), "{bad}");
        }
        assert!(ShardSpec::parse("3/3").unwrap_err().contains("I must be below N"));
        let s = ShardSpec { index: 1, of: 3 };
        assert_eq!((0..7).filter(|&p| s.holds_position(p)).collect::<Vec<_>>(), [1, 4]);
    }
}
