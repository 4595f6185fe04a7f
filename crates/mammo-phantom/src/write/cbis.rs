//! An imitation of CBIS-DDSM (Lee et al., 2017) as TCIA delivers it, mass training set only:
//!
//! ```text
//! CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/<StudyUID>/<SeriesUID>/1-1.dcm        full image
//! CBIS-DDSM/Mass-Training_P_00001_LEFT_CC_1/<StudyUID>/<SeriesUID2>/1-1.dcm      crop around lesion 1
//! CBIS-DDSM/Mass-Training_P_00001_LEFT_CC_1/<StudyUID>/<SeriesUID3>/1-2.dcm      ROI mask of lesion 1
//! mass_case_description_train_set.csv                                           written last
//! ```
//!
//! As in the real CSV, the paths in the table end in `000000.dcm` (full image, crop) and `000001.dcm`
//! (mask) while the files on disk are `1-1.dcm` and `1-2.dcm`: readers must map them by folder, as they
//! must for the real data. The ROI mask has the full image's size, values 0/255 (BitsStored 8). CBIS-DDSM
//! has no normal images, so normal phantom images are skipped. Patient `P_00001` is phantom woman 0.

use std::path::Path;

use mammo_io::dicom::{WriteSyntax, write_dicom};
use mammo_io::layouts::Label;
use mammo_io::{GrayImage, Laterality, View, atomic};
use rand::Rng;

use super::{breast_window, dicom_spec, mkdir, parallel, summarise};
use crate::identity::{UidKind, uid};
use crate::rng::{Purpose, stream};
use crate::{Density, OutputFormat, PhantomError, PhantomParams, PhantomSummary, case_label, case_slot, generate_case};

/// The case table's file name.
pub const CBIS_CSV: &str = "mass_case_description_train_set.csv";
/// The case table's header, exactly as in CBIS-DDSM's mass description files.
pub const CBIS_CSV_HEADER: &str = "patient_id,breast_density,left or right breast,image view,abnormality id,\
abnormality type,mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,\
ROI mask file path";
const ROOT: &str = "CBIS-DDSM";

/// The images this layout holds (those with a lesion); an error when there are none, checked before
/// anything is written.
pub(super) fn lesion_images(params: &PhantomParams) -> Result<Vec<usize>, PhantomError> {
    let indices: Vec<usize> = (0..params.cases).filter(|&i| case_label(params, i) != Label::Normal).collect();
    if indices.is_empty() {
        return Err(PhantomError::InvalidParams(format!(
            "the cbis layout holds lesion images only, and all {} images are normal; raise malignant_fraction \
             or benign_fraction, or generate more cases",
            params.cases
        )));
    }
    Ok(indices)
}

pub(super) fn write(
    dir: &Path,
    params: &PhantomParams,
    progress: &dyn Fn(usize, usize),
) -> Result<PhantomSummary, PhantomError> {
    let indices = lesion_images(params)?;
    let job = |j: usize| -> Result<(Vec<String>, Label, usize), PhantomError> {
        let index = indices[j];
        let case = generate_case(params, index);
        let slot = case_slot(index);
        let side = if slot.laterality == Laterality::Left { "LEFT" } else { "RIGHT" };
        let view = if slot.view == View::MLO { "MLO" } else { "CC" };
        let patient_id = format!("P_{:05}", slot.patient + 1);
        let folder = format!("Mass-Training_{patient_id}_{side}_{view}");
        let study = uid(params.seed, UidKind::Study, slot.patient, 1);
        let series = |n: u32| uid(params.seed, UidKind::Series, index, n);
        let (w, h) = (case.image.width, case.image.height);

        let full_rel = format!("{folder}/{study}/{}", series(1));
        let full_dir = dir.join(ROOT).join(&full_rel);
        mkdir(&full_dir)?;
        let spec = dicom_spec(params, index, &slot, (1, 1), params.bits_stored, false, Some(breast_window(&case)));
        let syntax =
            if index % 2 == 0 { WriteSyntax::ExplicitVrLittleEndian } else { WriteSyntax::ImplicitVrLittleEndian };
        write_dicom(&full_dir.join("1-1.dcm"), w, h, &case.image.data, &spec, syntax)?;
        let mut files = 1;

        let density = Density::parse(&case.meta.density).map_or(2, Density::number);
        let mut rows = Vec::new();
        for (k, lesion) in case.meta.lesions.iter().enumerate() {
            let id = k as u32 + 1;
            let roi = format!("{folder}_{id}");
            let crop_rel = format!("{roi}/{study}/{}", series(2 * id));
            let mask_rel = format!("{roi}/{study}/{}", series(2 * id + 1));
            let (crop_dir, mask_dir) = (dir.join(ROOT).join(&crop_rel), dir.join(ROOT).join(&mask_rel));
            mkdir(&crop_dir)?;
            mkdir(&mask_dir)?;

            let mask = &case.lesion_masks[k];
            let (x0, y0, x1, y1) = crop_box(mask);
            let crop: Vec<u16> =
                (y0..y1).flat_map(|y| case.image.data[y * w + x0..y * w + x1].iter().copied()).collect();
            let spec = dicom_spec(params, index, &slot, (2 * id, 2 * id), params.bits_stored, false, None);
            write_dicom(&crop_dir.join("1-1.dcm"), x1 - x0, y1 - y0, &crop, &spec, syntax)?;
            let roi_pixels: Vec<u16> = mask.data.iter().map(|&m| if m != 0 { 255 } else { 0 }).collect();
            let spec = dicom_spec(params, index, &slot, (2 * id + 1, 2 * id + 1), 8, false, None);
            write_dicom(&mask_dir.join("1-2.dcm"), w, h, &roi_pixels, &spec, WriteSyntax::ExplicitVrLittleEndian)?;
            files += 2;

            let mut rng = stream(params.seed, Purpose::Cbis, index as u64, id as u64);
            let u: f64 = rng.random();
            let (pathology, assessment) = match lesion.label {
                Label::Malignant => ("MALIGNANT", if u < 0.4 { 4 } else { 5 }),
                _ => (
                    "BENIGN",
                    if u < 0.3 {
                        2
                    } else if u < 0.8 {
                        3
                    } else {
                        4
                    },
                ),
            };
            rows.push(
                [
                    patient_id.clone(),
                    density.to_string(),
                    side.into(),
                    view.into(),
                    id.to_string(),
                    "mass".into(),
                    lesion.shape.to_ascii_uppercase(),
                    lesion.margin.to_ascii_uppercase(),
                    assessment.to_string(),
                    pathology.into(),
                    subtlety(params, lesion.contrast, lesion.diameter_mm).to_string(),
                    format!("{full_rel}/000000.dcm"),
                    format!("{crop_rel}/000000.dcm"),
                    format!("{mask_rel}/000001.dcm"),
                ]
                .join(","),
            );
        }
        Ok((rows, super::phantom::case_label_of(&case.meta), files))
    };
    let results = parallel(indices.len(), &job, progress)?;
    let mut csv = String::from(CBIS_CSV_HEADER);
    csv.push('\n');
    for (rows, _, _) in &results {
        for r in rows {
            csv.push_str(r);
            csv.push('\n');
        }
    }
    atomic::write_bytes(&dir.join(CBIS_CSV), csv.as_bytes())?;
    let labels: Vec<Label> = results.iter().map(|r| r.1).collect();
    let files = results.iter().map(|r| r.2).sum::<usize>() + 1;
    Ok(summarise(dir, OutputFormat::Cbis, &labels, params.cases - indices.len(), files))
}

/// The lesion's bounding box widened by a fifth of its size (at least 8 pixels) on every side, clipped to
/// the image: (x0, y0, x1, y1), exclusive ends.
fn crop_box(mask: &GrayImage<u8>) -> (usize, usize, usize, usize) {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..mask.height {
        for x in 0..mask.width {
            if mask.data[y * mask.width + x] != 0 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
            }
        }
    }
    if x0 > x1 {
        return (0, 0, mask.width, mask.height);
    }
    let pad = ((x1 - x0).max(y1 - y0) / 5).max(8);
    (x0.saturating_sub(pad), y0.saturating_sub(pad), (x1 + pad).min(mask.width), (y1 + pad).min(mask.height))
}

/// CBIS-DDSM's subtlety rating, 1 (subtle) to 5 (obvious), from contrast and size relative to the largest
/// the parameters allow.
fn subtlety(params: &PhantomParams, contrast: f64, diameter_mm: f64) -> u8 {
    let max_contrast = params.lesion_contrast * (1.0 + params.contrast_jitter);
    let c = if max_contrast > 0.0 { contrast / max_contrast } else { 0.0 };
    let d = diameter_mm / params.max_diameter_mm;
    (1.0 + (4.0 * (0.5 * c + 0.5 * d)).round()).clamp(1.0, 5.0) as u8
}
