//! `prepare`: a dataset layout in, a DATASET directory out.
//!
//! Per image: decode -> density values (modality LUT, MONOCHROME1 inverted) -> resample to the target
//! spacing -> breast mask (Otsu + largest component) -> blank everything outside it (labels, markers) ->
//! chest wall to the left -> normalise -> patches. Lesion and feature masks follow every geometric step.
//! Images are processed on worker threads but results are gathered in input order, so the output does
//! not depend on scheduling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mammo_io::GrayImage;
use mammo_io::layouts::{self, Case, Format, Label};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::dataset::{self, DatasetInfo, HashedFile, IndexRow};
use crate::error::{PrepError, Result};
use crate::image_prep::PreparedImage;
use crate::patch::{self, PatchParams, Prepared};
use crate::pseudonym::{Namer, PseudonymKey};
use crate::split::{self, Split, SplitFractions};

/// Every parameter of preparation; recorded in `dataset.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepParams {
    /// Target pixel spacing in mm.
    pub spacing_mm: f64,
    /// Spacing assumed for images that carry none and whose layout defines none (with a warning).
    pub default_spacing_mm: f64,
    pub patch: PatchParams,
    pub split: SplitFractions,
    pub seed: u64,
    /// Worker threads (0 = all cores). Does not change the output.
    #[serde(skip)]
    pub threads: usize,
    /// Write input paths as they are (relative to the input) instead of pseudonymised: for
    /// de-identified data whose rows must be traced back by eye. Recorded in `dataset.json`.
    #[serde(default)]
    pub keep_paths: bool,
    /// The secret key of patient and path pseudonyms ([`crate::pseudonym`]); never written. The
    /// default is a random key of this process, which nobody can use later: callers that must map the
    /// dataset back to its input (the binary) pass the project's key from [`crate::key_file`].
    #[serde(skip)]
    pub key: PseudonymKey,
}

impl Default for PrepParams {
    fn default() -> Self {
        PrepParams {
            spacing_mm: 0.4,
            default_spacing_mm: 0.1,
            patch: PatchParams::default(),
            split: SplitFractions::default(),
            seed: 0,
            threads: 0,
            keep_paths: false,
            key: PseudonymKey::default(),
        }
    }
}

/// What one image contributes.
struct CaseOutput {
    patches: Vec<(patch::Patch, [i64; 4])>,
    inputs: Vec<PathBuf>,
}

/// Prepares `input` (in `format`) into the new directory `out`. The directory is built under a temporary
/// name and renamed at the end: an error or a kill leaves no half-written dataset behind.
pub fn prepare(
    format: Format,
    input: &Path,
    out: &Path,
    params: &PrepParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<DatasetInfo> {
    let plan = Plan::load(format, input, out, params)?;
    let all: Vec<usize> = (0..plan.cases.len()).collect();
    let records = plan.records(&all, params, progress)?;
    let metadata = plan.metadata()?;
    build_dir(out, |tmp| write_records(tmp, input, records, &metadata, &plan.summary(params), params.patch.size))
}

/// Builds the new directory `out` through `write` into a partial sibling, synced and renamed when
/// complete ([`mammo_io::partial::build_dir`]): an error or a kill leaves nothing that looks done.
pub(crate) fn build_dir<T>(out: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    // Not `exists()`, which follows links: a dangling link as OUT would be replaced by the rename.
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(PrepError::invalid(out, "output already exists; choose a new path or remove it first"));
    }
    mammo_io::partial::build_dir(out, mammo_io::partial::Existing::EmptyOnly, write)
}

/// What every process preparing (part of) one input computes identically from the layout's tables,
/// without reading a pixel: the cases in input order, the patient split, the names.
pub(crate) struct Plan {
    pub format: Format,
    pub input: PathBuf,
    pub cases: Vec<Case>,
    pub namer: Namer,
    /// split_key -> split, over every patient of the input (so no shard count changes it).
    pub splits: BTreeMap<String, Split>,
}

/// The dataset-wide facts a DATASET records beside its rows: the same for every shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub created_by: String,
    pub source_format: String,
    pub params: serde_json::Value,
    pub spacing_mm: f64,
    pub images: usize,
    /// split -> number of patients.
    pub patients: BTreeMap<String, usize>,
}

/// What one case contributes to a DATASET: its `index.csv` rows (ids assigned when written), the
/// bytes of its patches and masks, and the input files it read, hashed and named.
#[derive(Debug, Default)]
pub(crate) struct CaseRecord {
    pub rows: Vec<IndexRow>,
    pub pixels: Vec<u8>,
    pub masks: Vec<u8>,
    pub inputs: Vec<HashedFile>,
}

impl Plan {
    pub fn load(format: Format, input: &Path, out: &Path, params: &PrepParams) -> Result<Plan> {
        if std::fs::symlink_metadata(out).is_ok() {
            return Err(PrepError::invalid(out, "output already exists; choose a new path or remove it first"));
        }
        if let Some(problem) = params.problem() {
            return Err(PrepError::invalid(out, problem));
        }
        let cases = layouts::load(format, input)?;
        if let Some(problem) = params.output_size_problem(&cases) {
            return Err(PrepError::invalid(input, problem));
        }
        // Patients, their worst label (over all images, lesions or not), and the split.
        let mut patient_label: BTreeMap<String, Label> = BTreeMap::new();
        for c in &cases {
            let e = patient_label.entry(split_key(format, &c.patient)).or_insert(Label::Normal);
            *e = (*e).max(c.label);
        }
        let splits = split::assign(&patient_label, params.split, params.seed);
        // How patients and files are named: keyed pseudonyms (or the paths as they are, if asked).
        let namer = Namer::new(params.key.clone(), format, params.keep_paths);
        Ok(Plan { format, input: input.to_path_buf(), cases, namer, splits })
    }

    pub fn summary(&self, params: &PrepParams) -> Summary {
        let mut patients: BTreeMap<String, usize> = BTreeMap::new();
        for s in self.splits.values() {
            *patients.entry(s.as_str().into()).or_default() += 1;
        }
        for s in Split::ALL {
            patients.entry(s.as_str().into()).or_default();
        }
        Summary {
            created_by: format!("mammogan {}", env!("CARGO_PKG_VERSION")),
            source_format: self.format.name().into(),
            params: serde_json::to_value(params).expect("params serialise"),
            spacing_mm: params.spacing_mm,
            images: self.cases.len(),
            patients,
        }
    }

    /// Processes the cases at `indices` (ascending) into their records.
    pub fn records(
        &self,
        indices: &[usize],
        params: &PrepParams,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<CaseRecord>> {
        let outputs = process_all(&self.cases, indices, params, progress)?;
        indices.iter().zip(outputs).map(|(&i, out)| self.record(&self.cases[i], out)).collect()
    }

    fn record(&self, case: &Case, out: CaseOutput) -> Result<CaseRecord> {
        let patient_id = self.namer.patient(&case.patient);
        let split = self.splits[&split_key(self.format, &case.patient)];
        let mut rec = CaseRecord::default();
        for (p, [x, y, w, h]) in out.patches {
            for v in &p.pixels {
                rec.pixels.extend_from_slice(&((v * 65535.0).round() as u16).to_le_bytes());
            }
            rec.masks.extend_from_slice(&p.mask);
            rec.rows.push(IndexRow {
                id: 0,
                patient_id: patient_id.clone(),
                split,
                label: p.label,
                source: self.namer.path(&self.input, &case.image),
                x,
                y,
                w,
                h,
            });
        }
        rec.inputs = self.hash_inputs(out.inputs)?;
        Ok(rec)
    }

    /// `files` hashed and named as `dataset.json` lists them.
    fn hash_inputs(&self, mut files: Vec<PathBuf>) -> Result<Vec<HashedFile>> {
        files.sort();
        files.dedup();
        files
            .iter()
            .map(|p| {
                dataset::hash_file(p).map(|(bytes, blake3)| HashedFile {
                    path: self.namer.path(&self.input, p),
                    bytes,
                    blake3,
                })
            })
            .collect()
    }

    /// The layout's own files (tables, annotations), hashed and named.
    pub fn metadata(&self) -> Result<Vec<HashedFile>> {
        self.hash_inputs(metadata_files(&self.input)?)
    }

    /// The shard (of `of`) that prepares `case`: from its keyed patient pseudonym, so a woman's images
    /// stay together and nothing about the patient is exposed by the assignment.
    pub fn shard_of(&self, case: &Case, of: u32) -> u32 {
        let pseudonym = self.namer.patient(&case.patient);
        let h = blake3::hash(pseudonym.as_bytes());
        let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        (v % of as u64) as u32
    }
}

fn process_all(
    cases: &[Case],
    indices: &[usize],
    params: &PrepParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<CaseOutput>> {
    let threads = if params.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        params.threads
    }
    .min(indices.len().max(1));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<CaseOutput>>>> = indices.iter().map(|_| Mutex::new(None)).collect();
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= indices.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    // The case's index in the whole input seeds its draws, so a shard cuts the
                    // same patches as the unsharded run.
                    let i = indices[k];
                    let r = prepare_case(&cases[i], i, params);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *slots[k].lock().unwrap() = Some(r);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, indices.len());
                }
            });
        }
    });
    // The first error in input order, so the message does not depend on thread timing. Workers take
    // cases in order and finish what they take, so every case before a failed one was processed.
    let mut out = Vec::with_capacity(indices.len());
    for (i, slot) in slots.into_iter().enumerate() {
        match slot.into_inner().unwrap() {
            Some(result) => out.push(result?),
            None => unreachable!("case {i} skipped although no earlier case failed"),
        }
    }
    Ok(out)
}

fn prepare_case(case: &Case, index: usize, params: &PrepParams) -> Result<CaseOutput> {
    let m = mammo_io::read_image(&case.image)?;
    let src_spacing = match (m.info.spacing_mm, case.spacing_mm) {
        (Some((row, col)), _) => (row + col) / 2.0,
        (None, Some(s)) => s,
        (None, None) => {
            tracing::warn!(
                "{}: no pixel spacing in the file or the layout; assuming {} mm",
                case.image.display(),
                params.default_spacing_mm
            );
            params.default_spacing_mm
        }
    };
    let prepared_image =
        PreparedImage::new(&m, src_spacing, params.spacing_mm).map_err(|e| PrepError::invalid(&case.image, e.0))?;
    let (sw, sh) = (m.width, m.height);
    drop(m);
    let (w, h) = (prepared_image.image.width, prepared_image.image.height);

    let mut inputs = vec![case.image.clone()];
    let mut lesions = Vec::new();
    for lesion in &case.lesions {
        let mut raster = |src: &layouts::MaskSource| -> Result<GrayImage<u8>> {
            if let layouts::MaskSource::File { path } = src {
                inputs.push(path.clone());
            }
            Ok(prepared_image.mask_from_source(&layouts::rasterize(src, sw, sh)?))
        };
        let mask = raster(&lesion.mask)?;
        let features = match &lesion.feature_mask {
            Some(f) => raster(f)?,
            None => GrayImage::new(w, h),
        };
        if mask.data.iter().all(|&v| v == 0) {
            tracing::warn!(
                "{}: a {} lesion mask is empty at {} mm; skipped",
                case.image.display(),
                lesion.label.as_str(),
                params.spacing_mm
            );
            continue;
        }
        lesions.push((lesion.label, mask, features));
    }
    let PreparedImage { ref image, ref breast, .. } = prepared_image;

    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(params.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let prepared = Prepared { image, breast, lesions: &lesions };
    let size = params.patch.size as i64;
    // An abnormal image whose lesion has no location (a label-only CSV row, a mini-MIAS line without
    // coordinates) yields no patch at all: its tissue cannot honestly be called normal.
    let mut patch_params = params.patch.clone();
    if case.label != Label::Normal && lesions.is_empty() {
        tracing::warn!(
            "{}: {} image without a lesion location; it contributes no patches",
            case.image.display(),
            case.label.as_str()
        );
        patch_params.normal_per_image = 0;
    }
    let patches = patch::extract(&prepared, &patch_params, &mut rng)
        .into_iter()
        .map(|p| {
            // Back to source-image pixel coordinates for the index.
            let bbox = prepared_image.box_to_source(p.x, p.y, size, size);
            (p, bbox)
        })
        .collect();
    Ok(CaseOutput { patches, inputs })
}

/// The order in which the split sees a patient: an unkeyed hash of the patient key that is never
/// written. The split (and so every patch) is then a function of the input, the parameters and the
/// seed alone, the same whichever pseudonym key names the patients; the written names come from
/// [`Namer::patient`].
fn split_key(format: Format, patient: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"mammogan-patient\0");
    h.update(format.name().as_bytes());
    h.update(b"\0");
    h.update(patient.as_bytes());
    format!("pt-{}", &h.finalize().to_hex()[..16])
}

pub use crate::pseudonym::relative;

/// Writes the DATASET files into `dir` from the records of every case, in input order, and the
/// layout's `metadata` files: the one writer of both `prepare` and `dataset merge`, so the two give the
/// same bytes. `origin` names the input (or the shards) in an error.
pub(crate) fn write_records(
    dir: &Path,
    origin: &Path,
    records: Vec<CaseRecord>,
    metadata: &[HashedFile],
    summary: &Summary,
    patch_size: usize,
) -> Result<DatasetInfo> {
    let total: usize = records.iter().map(|r| r.rows.len()).sum();
    if total == 0 {
        return Err(PrepError::invalid(
            origin,
            "no patch could be cut (are the images empty or smaller than a patch?)",
        ));
    }
    let s2 = patch_size * patch_size;
    let mut pixels = Vec::with_capacity(total * s2 * 2);
    let mut masks = Vec::with_capacity(total * s2);
    let mut rows = Vec::with_capacity(total);
    let mut inputs: Vec<HashedFile> = metadata.to_vec();
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for rec in records {
        pixels.extend_from_slice(&rec.pixels);
        masks.extend_from_slice(&rec.masks);
        inputs.extend(rec.inputs);
        for mut row in rec.rows {
            *counts.entry(row.split.as_str().into()).or_default().entry(row.label.as_str().into()).or_default() += 1;
            row.id = rows.len();
            rows.push(row);
        }
    }

    let write = |name: &str, bytes: &[u8]| -> Result<()> { Ok(mammo_io::atomic::write_bytes(&dir.join(name), bytes)?) };
    let mut index = csv::Writer::from_writer(Vec::new());
    for r in &rows {
        index.serialize(r).map_err(|e| PrepError::invalid(dir.join(dataset::INDEX_CSV), e.to_string()))?;
    }
    write(dataset::INDEX_CSV, &index.into_inner().map_err(|e| PrepError::invalid(dir, e.to_string()))?)?;
    write(dataset::PATCHES_FILE, &pixels)?;
    write(dataset::MASKS_FILE, &masks)?;

    // Every input once (a file read by two images, a table): listed by the written name, so the
    // order does not tell how the original names sort.
    inputs.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.blake3.cmp(&b.blake3)));
    inputs.dedup();
    let outputs = [dataset::INDEX_CSV, dataset::PATCHES_FILE, dataset::MASKS_FILE]
        .iter()
        .map(|n| {
            dataset::hash_file(&dir.join(n)).map(|(bytes, blake3)| HashedFile { path: n.to_string(), bytes, blake3 })
        })
        .collect::<Result<Vec<_>>>()?;
    let info = DatasetInfo {
        format_version: dataset::DATASET_FORMAT_VERSION,
        created_by: summary.created_by.clone(),
        source_format: summary.source_format.clone(),
        params: summary.params.clone(),
        patch_size,
        spacing_mm: summary.spacing_mm,
        patches: rows.len(),
        counts,
        patients: summary.patients.clone(),
        images: summary.images,
        content_hash: dataset::content_hash(&outputs),
        inputs,
        outputs,
    };
    let json = serde_json::to_vec_pretty(&info).expect("info serialises");
    write(dataset::DATASET_JSON, &json)?;
    Ok(info)
}

/// The layout's own files (tables, annotations, manifests) under `dir`: every regular file that is not
/// an image (special files and link loops are skipped: [`crate::input_walk`]).
fn metadata_files(dir: &Path) -> Result<Vec<PathBuf>> {
    const IMAGE_EXT: [&str; 5] = ["dcm", "dicom", "png", "pgm", ""];
    let mut out = crate::input_walk::regular_files(dir)?;
    out.retain(|path| {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        !IMAGE_EXT.contains(&ext.as_str())
    });
    Ok(out)
}
