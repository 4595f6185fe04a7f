//! VinDr-Mammo as PhysioNet distributes it:
//!
//! - `images/<study_id>/<image_id>.dicom` (`.dcm` is accepted too);
//! - `breast-level_annotations.csv`: `study_id,series_id,image_id,laterality,view_position,height,width,
//!   breast_birads,breast_density,split`, one row per image, `breast_birads` like `BI-RADS 4`;
//! - `finding_annotations.csv`: the same columns plus `finding_categories` (a Python list such as
//!   `['Mass']`, `['Suspicious Calcification', 'Mass']` or `['No Finding']`), `finding_birads` and the box
//!   `xmin,ymin,xmax,ymax` in top-left pixel coordinates (empty for `No Finding`), one row per finding.
//!
//! Either table may be missing (the finding table alone lists every image too); images are the union.
//! Each box is a [`MaskSource::Rect`] labelled from its `finding_birads` (the breast's when empty).
//! BI-RADS 1 is normal, 2-3 benign, 4-5 malignant. An image with findings takes its worst finding's label,
//! one without findings its `breast_birads`. The `split` column is ignored (splits are made per patient
//! downstream). Patient = `study_id`: VinDr-Mammo has one study per woman.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Case, Label, Lesion, MaskSource, col, open_csv};
use crate::error::{IoError, Result};
use crate::image::{Laterality, View};

const BREAST_TABLE: &str = "breast-level_annotations.csv";
const FINDING_TABLE: &str = "finding_annotations.csv";
const IMAGES: &str = "images";

struct Image {
    study: String,
    laterality: Option<Laterality>,
    view: Option<View>,
    breast_label: Label,
    /// Worst finding label, including findings whose box is unusable.
    finding_label: Option<Label>,
    lesions: Vec<Lesion>,
    /// The table and row that first named the image, for the missing-file error.
    source: (PathBuf, usize),
}

pub(super) fn load(dir: &Path) -> Result<Vec<Case>> {
    let breast = dir.join(BREAST_TABLE);
    let finding = dir.join(FINDING_TABLE);
    if !breast.is_file() && !finding.is_file() {
        return Err(IoError::format(
            dir,
            format!("neither {BREAST_TABLE} nor {FINDING_TABLE} found (VinDr-Mammo layout)"),
        ));
    }
    let mut images: BTreeMap<String, Image> = BTreeMap::new();
    const COMMON: [&str; 5] = ["study_id", "image_id", "laterality", "view_position", "breast_birads"];

    if breast.is_file() {
        let (headers, rows) = open_csv(&breast, b',', &COMMON)?;
        for (i, row) in rows.iter().enumerate() {
            if row.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            image_entry(&mut images, &breast, i + 2, &headers, row)?;
        }
    }
    if finding.is_file() {
        let mut required = COMMON.to_vec();
        required.extend(["finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax"]);
        let (headers, rows) = open_csv(&finding, b',', &required)?;
        for (i, row) in rows.iter().enumerate() {
            if row.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let line = i + 2;
            let bad = |msg: String| IoError::format(&finding, format!("row {line}: {msg}"));
            let image = image_entry(&mut images, &finding, line, &headers, row)?;
            let categories = parse_categories(col(&headers, row, "finding_categories"));
            if categories.iter().all(|c| c.eq_ignore_ascii_case("No Finding")) {
                continue;
            }
            let fb = col(&headers, row, "finding_birads");
            let label = if fb.is_empty() {
                image.breast_label
            } else {
                birads_label(fb).ok_or_else(|| bad(format!("bad finding_birads '{fb}' (BI-RADS 1-5)")))?
            };
            image.finding_label = Some(image.finding_label.map_or(label, |l| l.max(label)));
            let b: Vec<&str> = ["xmin", "ymin", "xmax", "ymax"].iter().map(|c| col(&headers, row, c)).collect();
            if b.iter().all(|v| v.is_empty()) {
                tracing::warn!("{}: row {line}: finding {categories:?} has no box; lesion skipped", finding.display());
                continue;
            }
            let mut v = [0.0f64; 4];
            for (k, name) in ["xmin", "ymin", "xmax", "ymax"].iter().enumerate() {
                v[k] = b[k]
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(format!("bad {name} '{}'", b[k])))?;
            }
            if v[2] <= v[0] || v[3] <= v[1] {
                return Err(bad(format!("empty box ({}, {}) - ({}, {})", v[0], v[1], v[2], v[3])));
            }
            if label == Label::Normal {
                tracing::warn!("{}: row {line}: finding with BI-RADS 1; lesion skipped", finding.display());
                continue;
            }
            image.lesions.push(Lesion {
                label,
                kind: kind_of(&categories),
                mask: MaskSource::Rect { x0: v[0], y0: v[1], x1: v[2], y1: v[3] },
                feature_mask: None,
            });
        }
    }

    let image_dir = dir.join(IMAGES);
    let mut cases = Vec::with_capacity(images.len());
    for (image_id, im) in images {
        let stem = image_dir.join(&im.study).join(&image_id);
        let path = ["dicom", "dcm", "DICOM", "DCM"].iter().map(|e| stem.with_extension(e)).find(|p| p.is_file());
        let Some(path) = path else {
            return Err(IoError::format(
                &im.source.0,
                format!("row {}: referenced file {}.dicom does not exist", im.source.1, stem.display()),
            ));
        };
        cases.push(Case {
            image: path,
            patient: im.study,
            label: im.finding_label.unwrap_or(im.breast_label),
            lesions: im.lesions,
            laterality: im.laterality,
            view: im.view,
            spacing_mm: None,
        });
    }
    Ok(cases)
}

/// The image a row describes, created on first sight; the columns every table shares are checked here.
fn image_entry<'a>(
    images: &'a mut BTreeMap<String, Image>,
    table: &Path,
    line: usize,
    headers: &csv::StringRecord,
    row: &csv::StringRecord,
) -> Result<&'a mut Image> {
    let bad = |msg: String| IoError::format(table, format!("row {line}: {msg}"));
    let study = col(headers, row, "study_id");
    let image_id = col(headers, row, "image_id");
    for (name, v) in [("study_id", study), ("image_id", image_id)] {
        if v.is_empty() || v.contains(['/', '\\']) || v == ".." {
            return Err(bad(format!("bad {name} '{v}'")));
        }
    }
    let bb = col(headers, row, "breast_birads");
    let breast_label = birads_label(bb).ok_or_else(|| bad(format!("bad breast_birads '{bb}' (BI-RADS 1-5)")))?;
    let lat = col(headers, row, "laterality");
    let laterality = match lat {
        "" => None,
        _ => Some(Laterality::parse(lat).ok_or_else(|| bad(format!("bad laterality '{lat}'")))?),
    };
    let view = View::parse(col(headers, row, "view_position"));
    let image = images.entry(image_id.to_string()).or_insert_with(|| Image {
        study: study.to_string(),
        laterality,
        view,
        breast_label,
        finding_label: None,
        lesions: Vec::new(),
        source: (table.to_path_buf(), line),
    });
    if image.study != study {
        return Err(bad(format!("image {image_id} is listed with study {study} and study {}", image.study)));
    }
    Ok(image)
}

/// `BI-RADS 4` (or a bare `4`) to a label.
fn birads_label(s: &str) -> Option<Label> {
    let t = s.trim();
    let n = t.get(..7).filter(|p| p.eq_ignore_ascii_case("BI-RADS")).map_or(t, |_| t[7..].trim());
    match n.to_ascii_lowercase().as_str() {
        "1" => Some(Label::Normal),
        "2" | "3" => Some(Label::Benign),
        "4" | "4a" | "4b" | "4c" | "5" => Some(Label::Malignant),
        _ => None,
    }
}

/// `['Suspicious Calcification', 'Mass']` -> ["Suspicious Calcification", "Mass"].
fn parse_categories(s: &str) -> Vec<String> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|c| c.trim().trim_matches(|ch| ch == '\'' || ch == '"').trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

fn kind_of(categories: &[String]) -> String {
    let kinds: Vec<String> = categories
        .iter()
        .filter(|c| !c.eq_ignore_ascii_case("No Finding"))
        .map(|c| match c.to_ascii_lowercase().as_str() {
            "suspicious calcification" => "calcification".to_string(),
            other => other.to_string(),
        })
        .collect();
    if kinds.is_empty() { "finding".into() } else { kinds.join("+") }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, load as load_layout, mask::rasterize};
    use super::*;
    use crate::dicom::{DicomWriteSpec, WriteSyntax, write_dicom};

    const BREAST: &str = "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split\n\
        s1,se1,i1,L,CC,48,64,BI-RADS 4,DENSITY C,training\n\
        s1,se1,i2,R,MLO,48,64,BI-RADS 1,DENSITY C,training\n\
        s2,se2,i3,R,CC,48,64,BI-RADS 3,DENSITY B,test\n";
    const FINDING: &str = "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,finding_categories,finding_birads,xmin,ymin,xmax,ymax,split\n\
        s1,se1,i1,L,CC,48,64,BI-RADS 4,DENSITY C,['Mass'],BI-RADS 4,10.5,12.0,30.25,20.0,training\n\
        s1,se1,i1,L,CC,48,64,BI-RADS 4,DENSITY C,\"['Suspicious Calcification', 'Mass']\",BI-RADS 3,40,30,50,40,training\n\
        s1,se1,i2,R,MLO,48,64,BI-RADS 1,DENSITY C,['No Finding'],,,,,,training\n\
        s2,se2,i3,R,CC,48,64,BI-RADS 3,DENSITY B,['No Finding'],,,,,,test\n";

    fn fixture(d: &Path) {
        let pixels: Vec<u16> = (0..64 * 48).map(|i| (i % 4000) as u16).collect();
        for (study, image, ext) in [("s1", "i1", "dicom"), ("s1", "i2", "dicom"), ("s2", "i3", "dcm")] {
            let dir = d.join(IMAGES).join(study);
            std::fs::create_dir_all(&dir).unwrap();
            let spec = DicomWriteSpec {
                sop_instance_uid: format!("1.2.{image}"),
                study_instance_uid: "1.2".into(),
                series_instance_uid: "1.2.3".into(),
                bits_stored: 12,
                ..Default::default()
            };
            let path = dir.join(format!("{image}.{ext}"));
            write_dicom(&path, 64, 48, &pixels, &spec, WriteSyntax::ExplicitVrLittleEndian).unwrap();
        }
        std::fs::write(d.join(BREAST_TABLE), BREAST).unwrap();
        std::fs::write(d.join(FINDING_TABLE), FINDING).unwrap();
    }

    #[test]
    fn reads_both_tables_and_boxes() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let cases = load_layout(Format::Vindr, dir.path()).unwrap();
        assert_eq!(cases.len(), 3);
        let a = &cases[0];
        assert!(a.image.ends_with("images/s1/i1.dicom"));
        assert_eq!((a.label, a.patient.as_str()), (Label::Malignant, "s1"));
        assert_eq!((a.laterality, a.view), (Some(Laterality::Left), Some(View::CC)));
        assert_eq!(a.lesions.len(), 2);
        assert_eq!((a.lesions[0].kind.as_str(), a.lesions[0].label), ("mass", Label::Malignant));
        assert_eq!(a.lesions[0].mask, MaskSource::Rect { x0: 10.5, y0: 12.0, x1: 30.25, y1: 20.0 });
        let m = rasterize(&a.lesions[0].mask, 64, 48).unwrap();
        assert_eq!((m.get(20, 15), m.get(20, 25), m.get(35, 15)), (1, 0, 0));
        assert_eq!((a.lesions[1].kind.as_str(), a.lesions[1].label), ("calcification+mass", Label::Benign));

        let b = &cases[1];
        assert_eq!((b.label, b.lesions.len(), b.view), (Label::Normal, 0, Some(View::MLO)));
        let c = &cases[2];
        assert!(c.image.ends_with("images/s2/i3.dcm"));
        assert_eq!((c.label, c.patient.as_str(), c.lesions.len()), (Label::Benign, "s2", 0));

        // The finding table alone is enough.
        std::fs::remove_file(dir.path().join(BREAST_TABLE)).unwrap();
        assert_eq!(load(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn bad_inputs_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains(FINDING_TABLE) && !e.contains('\n'), "{e}");

        fixture(d);
        std::fs::write(d.join(FINDING_TABLE), FINDING.replace("xmax", "x_max")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("'xmax'") && e.contains(FINDING_TABLE), "{e}");

        std::fs::write(d.join(FINDING_TABLE), FINDING).unwrap();
        std::fs::write(d.join(BREAST_TABLE), BREAST.replace("i3", "i9")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("i9.dicom") && e.contains(BREAST_TABLE) && e.contains("row 4"), "{e}");

        std::fs::write(d.join(BREAST_TABLE), BREAST).unwrap();
        std::fs::write(d.join(FINDING_TABLE), FINDING.replace("10.5", "ten")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("bad xmin 'ten'") && e.contains("row 2"), "{e}");

        std::fs::write(d.join(FINDING_TABLE), FINDING.replace(",BI-RADS 3,40", ",BI-RADS 9,40")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("BI-RADS 9") && e.contains("row 3"), "{e}");
    }
}
