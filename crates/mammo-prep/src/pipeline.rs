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
    // Not `exists()`, which follows links: a dangling link as OUT would be replaced by the rename.
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
    let outputs = process_all(&cases, params, progress)?;

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| PrepError::io(parent, e))?;
    // `.NAME.partial-PID`; those a killed run left are removed first.
    mammo_io::partial::remove_stale(out);
    let tmp = mammo_io::partial::partial_dir(out);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| PrepError::io(&tmp, e))?;
    let result = write_dataset(format, input, &tmp, &cases, outputs, params).and_then(|info| {
        std::fs::rename(&tmp, out).map_err(|e| PrepError::io(out, e))?;
        Ok(info)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn process_all(
    cases: &[Case],
    params: &PrepParams,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<CaseOutput>> {
    let threads = if params.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        params.threads
    }
    .min(cases.len().max(1));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Result<CaseOutput>>>> = cases.iter().map(|_| Mutex::new(None)).collect();
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cases.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = prepare_case(&cases[i], i, params);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *slots[i].lock().unwrap() = Some(r);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, cases.len());
                }
            });
        }
    });
    // The first error in input order, so the message does not depend on thread timing. Workers take
    // cases in order and finish what they take, so every case before a failed one was processed.
    let mut out = Vec::with_capacity(cases.len());
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

fn write_dataset(
    format: Format,
    input: &Path,
    dir: &Path,
    cases: &[Case],
    outputs: Vec<CaseOutput>,
    params: &PrepParams,
) -> Result<DatasetInfo> {
    // How patients and files are named: keyed pseudonyms (or the paths as they are, if asked).
    let namer = Namer::new(params.key.clone(), format, params.keep_paths);
    // Patients, their worst label (over all images, lesions or not), and the split.
    let mut patient_label: BTreeMap<String, Label> = BTreeMap::new();
    for c in cases {
        let e = patient_label.entry(split_key(format, &c.patient)).or_insert(Label::Normal);
        *e = (*e).max(c.label);
    }
    let splits = split::assign(&patient_label, params.split, params.seed);

    let s2 = params.patch.size * params.patch.size;
    let total: usize = outputs.iter().map(|o| o.patches.len()).sum();
    if total == 0 {
        return Err(PrepError::invalid(input, "no patch could be cut (are the images empty or smaller than a patch?)"));
    }
    let mut pixels = Vec::with_capacity(total * s2 * 2);
    let mut masks = Vec::with_capacity(total * s2);
    let mut rows = Vec::with_capacity(total);
    let mut input_files: Vec<PathBuf> = Vec::new();
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (case, out) in cases.iter().zip(outputs) {
        let patient_id = namer.patient(&case.patient);
        let split = splits[&split_key(format, &case.patient)];
        input_files.extend(out.inputs);
        for (p, [x, y, w, h]) in out.patches {
            for v in &p.pixels {
                pixels.extend_from_slice(&((v * 65535.0).round() as u16).to_le_bytes());
            }
            masks.extend_from_slice(&p.mask);
            *counts.entry(split.as_str().into()).or_default().entry(p.label.as_str().into()).or_default() += 1;
            rows.push(IndexRow {
                id: rows.len(),
                patient_id: patient_id.clone(),
                split,
                label: p.label,
                source: namer.path(input, &case.image),
                x,
                y,
                w,
                h,
            });
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

    // Every input: images, mask files, and the layout's tables and annotations.
    input_files.extend(metadata_files(input)?);
    input_files.sort();
    input_files.dedup();
    let mut inputs = input_files
        .iter()
        .map(|p| dataset::hash_file(p).map(|(bytes, blake3)| HashedFile { path: namer.path(input, p), bytes, blake3 }))
        .collect::<Result<Vec<_>>>()?;
    // Listed by the written name, so the order does not tell how the original names sort.
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    let outputs = [dataset::INDEX_CSV, dataset::PATCHES_FILE, dataset::MASKS_FILE]
        .iter()
        .map(|n| {
            dataset::hash_file(&dir.join(n)).map(|(bytes, blake3)| HashedFile { path: n.to_string(), bytes, blake3 })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut patients: BTreeMap<String, usize> = BTreeMap::new();
    for s in splits.values() {
        *patients.entry(s.as_str().into()).or_default() += 1;
    }
    for s in Split::ALL {
        patients.entry(s.as_str().into()).or_default();
    }
    let info = DatasetInfo {
        format_version: dataset::DATASET_FORMAT_VERSION,
        created_by: format!("mammogan {}", env!("CARGO_PKG_VERSION")),
        source_format: format.name().into(),
        params: serde_json::to_value(params).expect("params serialise"),
        patch_size: params.patch.size,
        spacing_mm: params.spacing_mm,
        patches: rows.len(),
        counts,
        patients,
        images: cases.len(),
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
