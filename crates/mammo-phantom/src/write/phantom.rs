//! Our own layout (`mammo_io::layouts::Format::Phantom`):
//!
//! ```text
//! images/case-00000.dcm            (or .png: 16-bit, MONOCHROME2)
//! masks/case-00000-lesion1.png     8-bit, 0/255: body and spicules
//! masks/case-00000-lesion1-features.png   8-bit, 0/255: malignancy features (all zero if benign)
//! phantom.json                     PhantomManifest, written last
//! ```
//!
//! DICOM images rotate through four transfer syntaxes (explicit, implicit, deflated explicit VR little
//! endian, RLE lossless) and every fifth is MONOCHROME1 with inverted values, so that the readers'
//! every path is exercised by the default data.

use std::path::Path;

use mammo_io::dicom::{WriteSyntax, write_dicom};
use mammo_io::layouts::{Label, PHANTOM_MANIFEST, PhantomCase, PhantomManifest};
use mammo_io::{atomic, png_io};

use super::{breast_window, dicom_spec, mkdir, parallel, summarise};
use crate::{OutputFormat, PhantomError, PhantomParams, PhantomSummary, case_slot, generate_case};

/// The transfer syntax of image `index`.
pub(crate) fn syntax_of(index: usize) -> WriteSyntax {
    [
        WriteSyntax::ExplicitVrLittleEndian,
        WriteSyntax::ImplicitVrLittleEndian,
        WriteSyntax::DeflatedExplicitVrLittleEndian,
        WriteSyntax::RleLossless,
    ][index % 4]
}

/// Whether image `index` is stored MONOCHROME1 (DICOM only). Period 5 against the syntaxes' 4, so every
/// syntax meets both interpretations.
pub(crate) fn is_monochrome1(index: usize) -> bool {
    index % 5 == 2
}

pub(super) fn write(
    dir: &Path,
    params: &PhantomParams,
    format: OutputFormat,
    progress: &dyn Fn(usize, usize),
) -> Result<PhantomSummary, PhantomError> {
    mkdir(&dir.join("images"))?;
    mkdir(&dir.join("masks"))?;
    let job = |index: usize| -> Result<(PhantomCase, usize), PhantomError> {
        let case = generate_case(params, index);
        let mut meta = case.meta.clone();
        let stem = format!("case-{index:05}");
        let mut files = 1;
        meta.image = match format {
            OutputFormat::Png => {
                let rel = format!("images/{stem}.png");
                png_io::write_png16(&dir.join(&rel), &case.image)?;
                rel
            }
            _ => {
                let rel = format!("images/{stem}.dcm");
                let slot = case_slot(index);
                let mono1 = is_monochrome1(index);
                let full = (1u32 << params.bits_stored) - 1;
                let (c, w) = breast_window(&case);
                let (pixels, centre) = if mono1 {
                    (case.image.data.iter().map(|&v| (full - v as u32) as u16).collect(), full as f64 - c)
                } else {
                    (case.image.data.clone(), c)
                };
                let spec = dicom_spec(params, index, &slot, (1, 1), params.bits_stored, mono1, Some((centre, w)));
                write_dicom(&dir.join(&rel), case.image.width, case.image.height, &pixels, &spec, syntax_of(index))?;
                rel
            }
        };
        for (k, lesion) in meta.lesions.iter_mut().enumerate() {
            let mask = format!("masks/{stem}-lesion{}.png", k + 1);
            let features = format!("masks/{stem}-lesion{}-features.png", k + 1);
            png_io::write_png8(&dir.join(&mask), &case.lesion_masks[k])?;
            png_io::write_png8(&dir.join(&features), &case.feature_masks[k])?;
            lesion.mask = mask;
            lesion.feature_mask = Some(features);
            files += 2;
        }
        Ok((meta, files))
    };
    let results = parallel(params.cases, &job, progress)?;
    let files = results.iter().map(|r| r.1).sum::<usize>() + 1;
    let cases: Vec<PhantomCase> = results.into_iter().map(|r| r.0).collect();
    let labels: Vec<Label> = cases.iter().map(case_label_of).collect();
    let manifest = PhantomManifest {
        version: 1,
        seed: params.seed,
        params: serde_json::to_value(params).expect("parameters serialise"),
        cases,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    json.push(b'\n');
    atomic::write_bytes(&dir.join(PHANTOM_MANIFEST), &json)?;
    Ok(summarise(dir, format, &labels, 0, files))
}

/// The worst lesion label of a case (normal without lesions).
pub(crate) fn case_label_of(case: &PhantomCase) -> Label {
    case.lesions.iter().map(|l| l.label).max().unwrap_or(Label::Normal)
}
