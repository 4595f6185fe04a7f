//! Writing a phantom to disk in one of the [`OutputFormat`] layouts.
//!
//! Every file goes through the `mammo_io` writers, which write to a temporary name and rename, and the
//! index file of each layout (`phantom.json`, `Info.txt`, the CBIS-DDSM CSV) is written last: a
//! directory with its index is complete. All output is a function of the parameters alone (no dates,
//! no host names, no thread-dependent order), so equal parameters give byte-identical trees.

mod cbis;
mod mias;
mod phantom;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use dicom_core::VR;
use dicom_dictionary_std::tags;
use mammo_io::dicom::DicomWriteSpec;
use mammo_io::layouts::Label;

use crate::identity::{UidKind, fake_identity, uid};
use crate::{CaseSlot, GeneratedCase, OutputFormat, PhantomError, PhantomParams, PhantomSummary};

pub use cbis::{CBIS_CSV, CBIS_CSV_HEADER};
pub use mias::MIAS_INFO;

/// Generates the phantom described by `params` into `dir` in the given layout.
///
/// `dir` is created; it must not exist or be empty (a phantom is never mixed with other files).
/// `progress(done, total)` is called on the calling thread after each image. Images are generated on
/// all available cores; the output does not depend on how many.
pub fn write_phantom(
    dir: &Path,
    params: &PhantomParams,
    format: OutputFormat,
    progress: &dyn Fn(usize, usize),
) -> Result<PhantomSummary, PhantomError> {
    params.validate()?;
    if format == OutputFormat::Cbis {
        cbis::lesion_images(params)?;
    }
    check_empty(dir)?;
    // Built under `.NAME.partial-PID` and renamed when complete: a write that fails (a full disk) or a
    // kill leaves no half phantom in `dir` to block a rerun; a killed run's partial directory is removed
    // by the next one.
    let dest = if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        // A link to an (empty) directory: build beside its target, so the rename keeps the link.
        std::fs::canonicalize(dir).map_err(|e| PhantomError::Io { path: dir.to_path_buf(), source: e })?
    } else {
        dir.to_path_buf()
    };
    // rename(2) replaces an empty directory, which `check_empty` allowed.
    let summary = mammo_io::partial::build_dir(&dest, mammo_io::partial::Existing::EmptyOnly, |tmp| match format {
        OutputFormat::Dicom | OutputFormat::Png => phantom::write(tmp, params, format, progress),
        OutputFormat::Mias => mias::write(tmp, params, progress),
        OutputFormat::Cbis => cbis::write(tmp, params, progress),
    })?;
    Ok(PhantomSummary { dir: dir.to_path_buf(), ..summary })
}

/// `dir` must not exist or be an empty directory: a phantom never overwrites or mixes with other files.
fn check_empty(dir: &Path) -> Result<(), PhantomError> {
    if dir.exists() {
        let mut entries = dir.read_dir().map_err(|e| PhantomError::Io { path: dir.to_path_buf(), source: e })?;
        if entries.next().is_some() {
            return Err(PhantomError::OutputNotEmpty(dir.to_path_buf()));
        }
    }
    Ok(())
}

pub(crate) fn mkdir(dir: &Path) -> Result<(), PhantomError> {
    std::fs::create_dir_all(dir).map_err(|e| PhantomError::Io { path: dir.to_path_buf(), source: e })
}

/// Runs `job(0..n)` on worker threads and returns the results in index order. The first error stops
/// the remaining jobs and is returned. `progress` runs on the calling thread (it need not be `Sync`).
pub(crate) fn parallel<T: Send>(
    n: usize,
    job: &(dyn Fn(usize) -> Result<T, PhantomError> + Sync),
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<T>, PhantomError> {
    let threads = std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1).min(n).max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut first_error = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, failed) = (&next, &failed);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = job(i);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (i, r) in rx {
            match r {
                Ok(v) => {
                    results[i] = Some(v);
                    done += 1;
                    progress(done, n);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(results.into_iter().map(|r| r.expect("every job reported")).collect())
}

/// The DICOM attributes of a phantom image: identity (fake), geometry, view, and a window over the
/// breast. `series_n` / `instance_n` distinguish the files of one image (full image, crop, mask).
pub(crate) fn dicom_spec(
    params: &PhantomParams,
    index: usize,
    slot: &CaseSlot,
    (series_n, instance_n): (u32, u32),
    bits_stored: u16,
    monochrome1: bool,
    window: Option<(f64, f64)>,
) -> DicomWriteSpec {
    let id = fake_identity(slot.patient);
    let side = slot.laterality.letter();
    let view = match slot.view {
        mammo_io::View::MLO => "MLO",
        _ => "CC",
    };
    // Row direction then column direction, for the chest wall on the side of the breast.
    let orientation = match (slot.laterality, view) {
        (mammo_io::Laterality::Left, "CC") => "A\\R",
        (mammo_io::Laterality::Left, _) => "A\\FR",
        (_, "CC") => "P\\L",
        _ => "P\\FL",
    };
    let s = |tag, vr, v: &str| (tag, vr, v.to_string());
    let strings = vec![
        s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY"),
        s(tags::STUDY_DATE, VR::DA, &id.study_date),
        s(tags::SERIES_DATE, VR::DA, &id.study_date),
        s(tags::STUDY_TIME, VR::TM, "093000"),
        s(tags::ACCESSION_NUMBER, VR::SH, &id.accession_number),
        s(tags::MANUFACTURER, VR::LO, "MAMMOGAN"),
        s(tags::INSTITUTION_NAME, VR::LO, &id.institution),
        s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, &id.referring_physician),
        s(tags::SERIES_DESCRIPTION, VR::LO, &format!("{side} {view}")),
        s(tags::PATIENT_NAME, VR::PN, &id.patient_name),
        s(tags::PATIENT_ID, VR::LO, &id.patient_id),
        s(tags::PATIENT_BIRTH_DATE, VR::DA, &id.birth_date),
        s(tags::PATIENT_SEX, VR::CS, "F"),
        s(tags::BODY_PART_EXAMINED, VR::CS, "BREAST"),
        s(tags::VIEW_POSITION, VR::CS, view),
        s(tags::STUDY_ID, VR::SH, "1"),
        s(tags::SERIES_NUMBER, VR::IS, &series_n.to_string()),
        s(tags::INSTANCE_NUMBER, VR::IS, &instance_n.to_string()),
        s(tags::PATIENT_ORIENTATION, VR::CS, orientation),
        s(tags::IMAGE_LATERALITY, VR::CS, side),
        s(tags::PRESENTATION_INTENT_TYPE, VR::CS, "FOR PRESENTATION"),
        s(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"),
    ];
    DicomWriteSpec {
        sop_instance_uid: uid(params.seed, UidKind::Instance, index, instance_n),
        study_instance_uid: uid(params.seed, UidKind::Study, slot.patient, 1),
        series_instance_uid: uid(params.seed, UidKind::Series, index, series_n),
        strings,
        bits_stored,
        monochrome1,
        spacing_mm: Some(params.spacing_mm),
        window: window.map(|(c, w)| (c, w, "LINEAR")),
    }
}

/// A window (centre, width) covering the breast's values: mean ± 3 standard deviations, in whole numbers
/// (DS values must stay short).
pub(crate) fn breast_window(case: &GeneratedCase) -> (f64, f64) {
    let (mut n, mut sum, mut sq) = (0f64, 0f64, 0f64);
    for (&v, &m) in case.image.data.iter().zip(&case.breast_mask.data) {
        if m != 0 {
            let v = v as f64;
            n += 1.0;
            sum += v;
            sq += v * v;
        }
    }
    if n == 0.0 {
        return (1.0, 2.0);
    }
    let mean = sum / n;
    let sd = (sq / n - mean * mean).max(0.0).sqrt();
    (mean.round(), (6.0 * sd).round().max(2.0))
}

/// Counts the case labels of the written images.
pub(crate) fn summarise(
    dir: &Path,
    format: OutputFormat,
    labels: &[Label],
    skipped_normal: usize,
    files: usize,
) -> PhantomSummary {
    let n = |l: Label| labels.iter().filter(|&&x| x == l).count();
    PhantomSummary {
        dir: dir.to_path_buf(),
        format,
        images: labels.len(),
        normal: n(Label::Normal),
        benign: n(Label::Benign),
        malignant: n(Label::Malignant),
        skipped_normal,
        files,
    }
}
