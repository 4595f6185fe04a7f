//! A plain table for data that follows none of the public layouts: `dataset.csv` (or, when there is none,
//! the single `*.csv` in the directory) with the columns `path,label,patient_id[,mask_path]`.
//!
//! - `path`, `mask_path`: relative to the CSV's directory (absolute paths are taken as they are);
//! - `label`: `normal`, `benign`, `malignant` in any case, or `0`, `1`, `2`;
//! - `patient_id`: any non-empty key; images of one woman must share it so splits keep her together;
//! - `mask_path` (optional column, may be empty): a mask image (non-zero = lesion) at the image's size.
//!   A benign or malignant row without one becomes a case with that label and no lesion geometry; a
//!   mask on a normal row is ignored with a warning.
//! - optional `laterality` (`L`/`R`) and `view` (`CC`/`MLO`...) columns are read when present.
//!
//! Several rows with the same `path` are several lesions of one image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Case, Label, Lesion, MaskSource, col, existing, find_table, open_csv};
use crate::error::{IoError, Result};
use crate::image::{Laterality, View};

/// The table's preferred file name.
const TABLE_NAME: &str = "dataset.csv";

pub(super) fn load(dir: &Path) -> Result<Vec<Case>> {
    let table = find_table(dir, TABLE_NAME, "a table with columns path,label,patient_id")?;
    let base = table.parent().unwrap_or(dir).to_path_buf();
    let (headers, rows) = open_csv(&table, b',', &["path", "label", "patient_id"])?;
    let has = |name: &str| headers.iter().any(|h| h == name);
    let (has_mask, has_lat, has_view) = (has("mask_path"), has("laterality"), has("view"));

    let mut cases: BTreeMap<PathBuf, Case> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let line = i + 2;
        if row.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let bad = |msg: String| IoError::format(&table, format!("row {line}: {msg}"));
        let rel = col(&headers, row, "path");
        if rel.is_empty() {
            return Err(bad("empty path".into()));
        }
        let label_text = col(&headers, row, "label");
        let label = Label::parse(label_text)
            .ok_or_else(|| bad(format!("bad label '{label_text}' (normal, benign, malignant or 0, 1, 2)")))?;
        let patient = col(&headers, row, "patient_id");
        if patient.is_empty() {
            return Err(bad("empty patient_id".into()));
        }
        let laterality =
            if has_lat { optional(&table, line, row, &headers, "laterality", Laterality::parse)? } else { None };
        let view = if has_view { optional(&table, line, row, &headers, "view", View::parse)? } else { None };
        let image = existing(&table, base.join(rel))?;
        let mask_rel = if has_mask { col(&headers, row, "mask_path") } else { "" };
        let lesion = match (label, mask_rel.is_empty()) {
            (_, true) => None,
            (Label::Normal, false) => {
                tracing::warn!("{}: row {line}: mask_path given for a normal image; ignored", table.display());
                None
            }
            (_, false) => Some(Lesion {
                label,
                kind: "lesion".into(),
                mask: MaskSource::File { path: existing(&table, base.join(mask_rel))? },
                feature_mask: None,
            }),
        };
        match cases.get_mut(&image) {
            Some(case) => {
                if case.patient != patient {
                    return Err(bad(format!(
                        "{rel} is listed again with patient_id '{patient}' (earlier '{}')",
                        case.patient
                    )));
                }
                case.label = case.label.max(label);
                case.lesions.extend(lesion);
                case.laterality = case.laterality.or(laterality);
                case.view = case.view.or(view);
            }
            None => {
                cases.insert(
                    image.clone(),
                    Case {
                        image,
                        patient: patient.to_string(),
                        label,
                        lesions: lesion.into_iter().collect(),
                        laterality,
                        view,
                        spacing_mm: None,
                    },
                );
            }
        }
    }
    Ok(cases.into_values().collect())
}

/// An optional column parsed with `parse`: empty is `None`, an unknown value an error.
fn optional<T>(
    table: &Path,
    line: usize,
    row: &csv::StringRecord,
    headers: &csv::StringRecord,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>> {
    let v = col(headers, row, name);
    if v.is_empty() {
        return Ok(None);
    }
    parse(v).map(Some).ok_or_else(|| IoError::format(table, format!("row {line}: bad {name} '{v}'")))
}

#[cfg(test)]
mod tests {
    use super::super::{Format, load as load_layout, mask::rasterize};
    use super::*;
    use crate::image::GrayImage;

    fn png(path: &Path, mask: Option<(usize, usize, usize, usize)>) {
        let mut img = GrayImage::<u16>::new(64, 48);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = (i % 977) as u16;
        }
        if let Some((x0, y0, x1, y1)) = mask {
            img.data.fill(0);
            for y in y0..y1 {
                for x in x0..x1 {
                    img.set(x, y, 255);
                }
            }
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        crate::png_io::write_png16(path, &img).unwrap();
    }

    #[test]
    fn an_unterminated_quote_is_reported_at_its_line_not_as_a_bad_label() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("a.png"), None);
        let table = dir.path().join("dataset.csv");
        std::fs::write(&table, "path,label,patient_id\na.png,benign,p1\n\"a.png,malignant,p2\na.png,normal,p3\n")
            .unwrap();
        let e = load_layout(Format::Csv, dir.path()).unwrap_err().to_string();
        assert_eq!(e, format!("{}: unterminated quote (\") opened at line 3", table.display()));
    }

    #[test]
    fn reads_labels_patients_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        png(&d.join("img/a.png"), None);
        png(&d.join("img/b.png"), None);
        png(&d.join("img/c.png"), None);
        png(&d.join("img/d.png"), None);
        png(&d.join("masks/a.png"), Some((10, 10, 20, 20)));
        std::fs::write(
            d.join("dataset.csv"),
            "path,label,patient_id,mask_path\r\n\
             img/a.png,Malignant,p1,masks/a.png\r\n\
             img/b.png,normal,p1,\r\n\
             img/c.png,1,p2,\r\n\
             img/d.png,0,p3,masks/a.png\r\n",
        )
        .unwrap();
        std::fs::write(d.join("other.csv"), "x\n").unwrap();
        let cases = load_layout(Format::Csv, d).unwrap();
        assert_eq!(cases.len(), 4);
        let a = &cases[0];
        assert!(a.image.ends_with("img/a.png"));
        assert_eq!((a.label, a.patient.as_str()), (Label::Malignant, "p1"));
        assert_eq!(a.lesions.len(), 1);
        let m = rasterize(&a.lesions[0].mask, 64, 48).unwrap();
        assert_eq!((m.get(15, 15), m.get(25, 15)), (1, 0));
        assert_eq!((cases[1].label, cases[1].lesions.len()), (Label::Normal, 0));
        // A benign row without mask keeps its label.
        assert_eq!((cases[2].label, cases[2].lesions.len(), cases[2].patient.as_str()), (Label::Benign, 0, "p2"));
        // A mask on a normal row is ignored.
        assert_eq!((cases[3].label, cases[3].lesions.len()), (Label::Normal, 0));
    }

    #[test]
    fn single_csv_without_mask_column_and_optional_columns() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        png(&d.join("x.png"), None);
        std::fs::write(d.join("list.csv"), "patient_id,path,label,laterality,view\nw1,x.png,BENIGN,L,MLO\n").unwrap();
        let cases = load(d).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].label, Label::Benign);
        assert_eq!((cases[0].laterality, cases[0].view), (Some(Laterality::Left), Some(View::MLO)));
    }

    #[test]
    fn bad_inputs_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Empty directory.
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("dataset.csv") && !e.contains('\n'), "{e}");
        // Missing column.
        std::fs::write(d.join("dataset.csv"), "path,label\na.png,normal\n").unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("patient_id") && e.contains("dataset.csv"), "{e}");
        // Missing referenced file.
        std::fs::write(d.join("dataset.csv"), "path,label,patient_id\nnope.png,normal,p\n").unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("nope.png") && e.contains("dataset.csv"), "{e}");
        // Bad label.
        png(&d.join("a.png"), None);
        std::fs::write(d.join("dataset.csv"), "path,label,patient_id\na.png,suspicious,p\n").unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("suspicious") && e.contains("row 2"), "{e}");
        // Missing mask file.
        std::fs::write(d.join("dataset.csv"), "path,label,patient_id,mask_path\na.png,2,p,m.png\n").unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("m.png"), "{e}");
        // Two candidate tables and no dataset.csv.
        std::fs::remove_file(d.join("dataset.csv")).unwrap();
        std::fs::write(d.join("a.csv"), "x\n").unwrap();
        std::fs::write(d.join("b.csv"), "x\n").unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("a.csv") && e.contains("b.csv"), "{e}");
    }
}
