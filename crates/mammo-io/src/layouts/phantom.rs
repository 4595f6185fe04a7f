//! The layout `mammogan phantom --format dicom|png` writes: images, one mask image per lesion and per
//! lesion's malignancy features, and `phantom.json` listing them with the exact ground truth.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Case, Label, Lesion, MaskSource, existing};
use crate::error::{IoError, Result};
use crate::image::{Laterality, View};

/// The manifest's file name inside a phantom directory.
pub const PHANTOM_MANIFEST: &str = "phantom.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhantomManifest {
    /// Layout version, bumped on incompatible change.
    pub version: u32,
    pub seed: u64,
    /// The generator's parameters, recorded verbatim for reproducibility.
    pub params: serde_json::Value,
    pub cases: Vec<PhantomCase>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhantomCase {
    /// Image path relative to the phantom directory.
    pub image: String,
    /// A synthetic patient key; left and right breasts of one synthetic woman share it.
    pub patient: String,
    pub laterality: Laterality,
    pub view: View,
    /// BI-RADS breast density category, `A`..`D`.
    pub density: String,
    pub spacing_mm: f64,
    pub lesions: Vec<PhantomLesion>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhantomLesion {
    pub label: Label,
    /// BI-RADS shape and margin descriptors, e.g. `irregular` / `spiculated`, `oval` / `circumscribed`.
    pub shape: String,
    pub margin: String,
    /// Centre in pixels (top-left origin) and diameter in millimetres.
    pub cx: f64,
    pub cy: f64,
    pub diameter_mm: f64,
    /// Peak contrast relative to the surrounding tissue (0.03 = 3 %).
    pub contrast: f64,
    /// Mask image paths relative to the phantom directory.
    pub mask: String,
    pub feature_mask: Option<String>,
}

pub(super) fn load(dir: &Path) -> Result<Vec<Case>> {
    let path = dir.join(PHANTOM_MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| IoError::io(&path, e))?;
    let manifest: PhantomManifest =
        serde_json::from_str(&text).map_err(|e| IoError::format(&path, format!("invalid phantom manifest: {e}")))?;
    if manifest.version != 1 {
        return Err(IoError::unsupported(
            &path,
            format!("phantom layout version {} (this build reads 1)", manifest.version),
        ));
    }
    let file = |rel: &str| -> Result<PathBuf> { existing(&path, dir.join(rel)) };
    manifest
        .cases
        .iter()
        .map(|c| {
            // The spacing decides the resampled size: a wrong one must stop here, naming the manifest.
            if let Some(problem) = crate::physical::spacing_problem(c.spacing_mm) {
                return Err(IoError::format(&path, format!("{}: {problem}", c.image)));
            }
            let lesions = c
                .lesions
                .iter()
                .map(|l| {
                    Ok(Lesion {
                        label: l.label,
                        kind: "mass".into(),
                        mask: MaskSource::File { path: file(&l.mask)? },
                        feature_mask: l
                            .feature_mask
                            .as_deref()
                            .map(|m| file(m).map(|path| MaskSource::File { path }))
                            .transpose()?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Case {
                image: file(&c.image)?,
                patient: c.patient.clone(),
                label: Case::label_from_lesions(&lesions),
                lesions,
                laterality: Some(c.laterality),
                view: Some(c.view),
                spacing_mm: Some(c.spacing_mm),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spacing_outside_the_sane_range_is_refused_naming_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let case = |spacing: &str| {
            format!(
                r#"{{"version":1,"seed":0,"params":{{}},"cases":[{{"image":"c0.png","patient":"p0","laterality":"L",
                "view":"CC","density":"B","spacing_mm":{spacing},"lesions":[]}}]}}"#
            )
        };
        for spacing in ["500", "0.0001", "-1"] {
            std::fs::write(tmp.path().join(PHANTOM_MANIFEST), case(spacing)).unwrap();
            let e = load(tmp.path()).unwrap_err().to_string();
            assert!(e.starts_with(&tmp.path().join(PHANTOM_MANIFEST).display().to_string()), "{e}");
            assert!(e.contains(&format!("c0.png: pixel spacing {spacing} mm is outside 0.01..=1 mm")), "{e}");
        }
        // A sane spacing passes the check (and then finds the image missing).
        std::fs::write(tmp.path().join(PHANTOM_MANIFEST), case("0.1")).unwrap();
        let e = load(tmp.path()).unwrap_err().to_string();
        assert!(!e.contains("pixel spacing"), "{e}");
    }
}
