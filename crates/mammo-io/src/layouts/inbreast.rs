//! INbreast as its release folder holds it:
//!
//! - `AllDICOMs/<FileName>_<PatientHash>_MG_<L|R>_<CC|MLO>_ANON.dcm`, e.g.
//!   `20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm`;
//! - `AllXML/<FileName>.xml`: OsiriX ROI exports (XML plists): `Images[0].ROIs[]`, each with a `Name`
//!   (`Mass`, `Calcification`, `Cluster`, `Spiculated Region`...) and `Point_px`, strings `(x, y)` in
//!   top-left pixel coordinates. An outline of three or more points becomes a [`MaskSource::Polygon`], a
//!   single point (an individual calcification) a [`MaskSource::Disk`] of radius 3 px; two-point ROIs are
//!   skipped with a warning. Images without an XML have no lesions;
//! - `INbreast.csv`, semicolon-separated (`Patient ID;Patient age;Laterality;View;Acquisition date;File
//!   Name;ACR;Bi-Rads`, rows may end with a stray `;`); the only `*.csv` of the folder is taken when it
//!   has another name.
//!
//! Labels come from the image's BI-RADS assessment (INbreast has no pathology per lesion): 1 (negative)
//! is normal, 2 (benign finding) and 3 (probably benign) benign, 4 / 4a / 4b / 4c (suspicious), 5 (highly
//! suggestive of malignancy) and 6 (biopsy-proven malignancy) malignant. Every lesion of an image gets the
//! image's label; ROIs drawn on a BI-RADS 1 image are dropped with a warning.
//!
//! Patient: the `Patient ID` column; the public release has `removed` there, so when it is empty or
//! `removed` the patient hash of the DICOM file name (its second `_` field, shared by the images of one
//! woman) is used instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Case, Label, Lesion, MaskSource, col, find_table, open_csv};
use crate::error::{IoError, Result};
use crate::image::{Laterality, View};

const TABLE: &str = "INbreast.csv";
const DICOMS: &str = "AllDICOMs";
const XMLS: &str = "AllXML";
/// Radius of the disk standing for a single-point ROI (an individual calcification), in pixels.
const POINT_RADIUS: f64 = 3.0;

/// A DICOM of `AllDICOMs/` and what its name says.
struct DicomName {
    path: PathBuf,
    patient_hash: Option<String>,
    laterality: Option<Laterality>,
    view: Option<View>,
}

pub(super) fn load(dir: &Path) -> Result<Vec<Case>> {
    let table = find_table(dir, TABLE, "the INbreast table, with AllDICOMs/ and AllXML/ beside it")?;
    let dicom_dir = dir.join(DICOMS);
    if !dicom_dir.is_dir() {
        return Err(IoError::format(&dicom_dir, "not found (INbreast keeps its images in AllDICOMs/)"));
    }
    let xml_dir = dir.join(XMLS);
    if !xml_dir.is_dir() {
        tracing::warn!("{}: not found; no image will have lesion outlines", xml_dir.display());
    }
    let dicoms = index_dicoms(&dicom_dir)?;
    let (headers, rows) = open_csv(&table, b';', &["Patient ID", "Laterality", "View", "File Name", "Bi-Rads"])?;

    let mut cases = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let line = i + 2;
        let bad = |msg: String| IoError::format(&table, format!("row {line}: {msg}"));
        let file_name = col(&headers, row, "File Name");
        if file_name.is_empty() {
            // Blank lines and the footnotes of the spreadsheet export.
            continue;
        }
        let dicom = dicoms.get(file_name).ok_or_else(|| {
            bad(format!(
                "referenced file {}/{file_name}_*.dcm does not exist (File Name {file_name})",
                dicom_dir.display()
            ))
        })?;
        let birads = col(&headers, row, "Bi-Rads");
        let label = birads_label(birads).ok_or_else(|| bad(format!("bad Bi-Rads '{birads}' (1-6, 4a-4c)")))?;
        let id = col(&headers, row, "Patient ID");
        let patient = if id.is_empty() || id.eq_ignore_ascii_case("removed") {
            dicom.patient_hash.clone().ok_or_else(|| {
                bad(format!(
                    "no Patient ID and no patient hash in the file name {}",
                    dicom.path.file_name().unwrap_or_default().to_string_lossy()
                ))
            })?
        } else {
            id.to_string()
        };
        let lat = col(&headers, row, "Laterality");
        let laterality = match lat {
            "" => dicom.laterality,
            _ => Some(Laterality::parse(lat).ok_or_else(|| bad(format!("bad Laterality '{lat}'")))?),
        };
        let view = View::parse(col(&headers, row, "View")).or(dicom.view);

        let xml = xml_dir.join(format!("{file_name}.xml"));
        let mut lesions = Vec::new();
        if xml.is_file() {
            let rois = read_rois(&xml)?;
            if label == Label::Normal && !rois.is_empty() {
                tracing::warn!("{}: {} ROIs on a BI-RADS 1 image; dropped", xml.display(), rois.len());
            } else {
                for (k, (name, points)) in rois.into_iter().enumerate() {
                    let mask = match points.len() {
                        1 => MaskSource::Disk { cx: points[0].0, cy: points[0].1, r: POINT_RADIUS },
                        n if n >= 3 => MaskSource::Polygon { points },
                        n => {
                            tracing::warn!("{}: ROIs[{k}] '{name}' has {n} points; skipped", xml.display());
                            continue;
                        }
                    };
                    lesions.push(Lesion { label, kind: kind_of(&name), mask, feature_mask: None });
                }
            }
        }
        cases.push(Case { image: dicom.path.clone(), patient, label, lesions, laterality, view, spacing_mm: None });
    }
    Ok(cases)
}

/// `AllDICOMs/*.dcm` by File Name (the first `_` field of the name).
fn index_dicoms(dicom_dir: &Path) -> Result<HashMap<String, DicomName>> {
    let entries = std::fs::read_dir(dicom_dir).map_err(|e| IoError::io(dicom_dir, e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm")))
        .collect();
    paths.sort();
    let mut out = HashMap::with_capacity(paths.len());
    for path in paths {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let fields: Vec<&str> = stem.split('_').collect();
        let name = DicomName {
            patient_hash: fields.get(1).filter(|s| !s.is_empty()).map(|s| s.to_string()),
            laterality: fields.get(3).and_then(|s| Laterality::parse(s)),
            view: fields.get(4).and_then(|s| View::parse(s)),
            path,
        };
        if let Some(prev) = out.insert(fields[0].to_string(), name) {
            tracing::warn!(
                "{}: a second DICOM for File Name {}; the later name is used",
                prev.path.display(),
                fields[0]
            );
        }
    }
    Ok(out)
}

/// BI-RADS assessment to label (see the module documentation).
fn birads_label(s: &str) -> Option<Label> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" => Some(Label::Normal),
        "2" | "3" => Some(Label::Benign),
        "4" | "4a" | "4b" | "4c" | "5" | "6" => Some(Label::Malignant),
        _ => None,
    }
}

fn kind_of(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    match n.as_str() {
        "" => "roi".into(),
        "calcification" | "calcifications" => "calcification".into(),
        "mass" | "masses" => "mass".into(),
        _ => n,
    }
}

/// The ROIs of an OsiriX XML export: (Name, Point_px).
fn read_rois(xml: &Path) -> Result<Vec<(String, Vec<(f64, f64)>)>> {
    let bad = |msg: String| IoError::format(xml, msg);
    let root = plist::Value::from_file(xml).map_err(|e| bad(format!("not a readable plist: {e}")))?;
    let images = root
        .as_dictionary()
        .and_then(|d| d.get("Images"))
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("no 'Images' array".into()))?;
    let Some(first) = images.first() else { return Ok(Vec::new()) };
    let Some(rois) = first.as_dictionary().and_then(|d| d.get("ROIs")) else { return Ok(Vec::new()) };
    let rois = rois.as_array().ok_or_else(|| bad("Images[0].ROIs is not an array".into()))?;
    let mut out = Vec::with_capacity(rois.len());
    for (k, roi) in rois.iter().enumerate() {
        let d = roi.as_dictionary().ok_or_else(|| bad(format!("ROIs[{k}] is not a dictionary")))?;
        let name = d.get("Name").and_then(|v| v.as_string()).unwrap_or("").trim().to_string();
        let points = d
            .get("Point_px")
            .and_then(|v| v.as_array())
            .ok_or_else(|| bad(format!("ROIs[{k}] ('{name}') has no Point_px array")))?;
        let points = points
            .iter()
            .map(|p| {
                p.as_string()
                    .and_then(parse_point)
                    .ok_or_else(|| bad(format!("ROIs[{k}] ('{name}'): bad point {p:?} (expected \"(x, y)\")")))
            })
            .collect::<Result<Vec<_>>>()?;
        out.push((name, points));
    }
    Ok(out)
}

/// `(1234.56, 789.01)` -> (1234.56, 789.01).
fn parse_point(s: &str) -> Option<(f64, f64)> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (x, y) = inner.split_once(',')?;
    let (x, y) = (x.trim().parse::<f64>().ok()?, y.trim().parse::<f64>().ok()?);
    (x.is_finite() && y.is_finite()).then_some((x, y))
}

#[cfg(test)]
mod tests {
    use super::super::{Format, load as load_layout, mask::rasterize};
    use super::*;
    use crate::dicom::{DicomWriteSpec, WriteSyntax, write_dicom};

    const CSV: &str = "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads;\r\n\
        removed;removed;R;CC;201001;20586908;2;4a;\r\n\
        removed;removed;L;CC;201001;20586934;2;1;\r\n\
        P7;52;R;MLO;200909;22678622;3;2;\r\n\
        ;;;;;;;;\r\n";

    fn roi(name: &str, points: &[(f64, f64)]) -> String {
        let pts: String =
            points.iter().map(|(x, y)| format!("\t\t\t\t\t\t<string>({x:.6}, {y:.6})</string>\n")).collect();
        format!(
            "\t\t\t\t<dict>\n\t\t\t\t\t<key>Area</key>\n\t\t\t\t\t<real>0</real>\n\
             \t\t\t\t\t<key>Name</key>\n\t\t\t\t\t<string>{name}</string>\n\
             \t\t\t\t\t<key>NumberOfPoints</key>\n\t\t\t\t\t<integer>{}</integer>\n\
             \t\t\t\t\t<key>Point_px</key>\n\t\t\t\t\t<array>\n{pts}\t\t\t\t\t</array>\n\t\t\t\t</dict>\n",
            points.len()
        )
    }

    fn xml(rois: &[String]) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
             <plist version=\"1.0\">\n<dict>\n\t<key>Images</key>\n\t<array>\n\t\t<dict>\n\
             \t\t\t<key>ImageHeight</key>\n\t\t\t<integer>48</integer>\n\
             \t\t\t<key>ImageIndex</key>\n\t\t\t<integer>0</integer>\n\
             \t\t\t<key>NumberOfROIs</key>\n\t\t\t<integer>{}</integer>\n\
             \t\t\t<key>ROIs</key>\n\t\t\t<array>\n{}\t\t\t</array>\n\t\t</dict>\n\t</array>\n</dict>\n</plist>\n",
            rois.len(),
            rois.concat()
        )
    }

    fn fixture(d: &Path) {
        std::fs::create_dir_all(d.join(DICOMS)).unwrap();
        std::fs::create_dir_all(d.join(XMLS)).unwrap();
        let pixels: Vec<u16> = (0..64 * 48).map(|i| (i % 4000) as u16).collect();
        for (n, name) in [
            "20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm",
            "20586934_6c613a14b80a8591_MG_L_CC_ANON.dcm",
            "22678622_0a1b2c3d4e5f6789_MG_R_ML_ANON.dcm",
        ]
        .iter()
        .enumerate()
        {
            let spec = DicomWriteSpec {
                sop_instance_uid: format!("1.2.3.{n}"),
                study_instance_uid: "1.2.3".into(),
                series_instance_uid: format!("1.2.3.9.{n}"),
                bits_stored: 14,
                ..Default::default()
            };
            write_dicom(&d.join(DICOMS).join(name), 64, 48, &pixels, &spec, WriteSyntax::ExplicitVrLittleEndian)
                .unwrap();
        }
        std::fs::write(d.join(TABLE), CSV).unwrap();
        let square = [(10.0, 10.0), (20.0, 10.0), (20.0, 20.0), (10.0, 20.0)];
        std::fs::write(
            d.join(XMLS).join("20586908.xml"),
            xml(&[roi("Mass", &square), roi("Calcification", &[(40.5, 30.5)]), roi("Line", &[(1.0, 1.0), (2.0, 2.0)])]),
        )
        .unwrap();
        std::fs::write(
            d.join(XMLS).join("22678622.xml"),
            xml(&[roi("Cluster", &[(30.0, 5.0), (50.0, 5.0), (40.0, 25.0)])]),
        )
        .unwrap();
    }

    #[test]
    fn reads_csv_dicoms_and_osirix_rois() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let cases = load_layout(Format::Inbreast, dir.path()).unwrap();
        assert_eq!(cases.len(), 3);
        let a = &cases[0];
        assert!(a.image.ends_with("20586908_6c613a14b80a8591_MG_R_CC_ANON.dcm"));
        assert_eq!((a.label, a.patient.as_str()), (Label::Malignant, "6c613a14b80a8591"));
        assert_eq!((a.laterality, a.view), (Some(Laterality::Right), Some(View::CC)));
        assert_eq!(a.lesions.len(), 2, "the two-point ROI is skipped");
        assert_eq!((a.lesions[0].kind.as_str(), a.lesions[0].label), ("mass", Label::Malignant));
        let m = rasterize(&a.lesions[0].mask, 64, 48).unwrap();
        assert_eq!((m.get(15, 15), m.get(25, 15), m.get(15, 25)), (1, 0, 0));
        assert_eq!(a.lesions[1].kind, "calcification");
        assert_eq!(a.lesions[1].mask, MaskSource::Disk { cx: 40.5, cy: 30.5, r: 3.0 });
        let c = rasterize(&a.lesions[1].mask, 64, 48).unwrap();
        assert_eq!((c.get(40, 30), c.get(40, 36)), (1, 0));

        let b = &cases[1];
        assert_eq!((b.label, b.patient.as_str(), b.lesions.len()), (Label::Normal, "6c613a14b80a8591", 0));
        assert_eq!(b.laterality, Some(Laterality::Left));

        let c = &cases[2];
        assert_eq!((c.label, c.patient.as_str()), (Label::Benign, "P7"));
        assert_eq!((c.laterality, c.view), (Some(Laterality::Right), Some(View::MLO)));
        assert_eq!((c.lesions.len(), c.lesions[0].kind.as_str()), (1, "cluster"));
        let m = rasterize(&c.lesions[0].mask, 64, 48).unwrap();
        assert_eq!((m.get(40, 10), m.get(32, 22)), (1, 0));
    }

    #[test]
    fn bad_inputs_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("INbreast.csv") && !e.contains('\n'), "{e}");

        fixture(d);
        std::fs::write(d.join(TABLE), CSV.replace(";Bi-Rads;", ";BIRADS;")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("Bi-Rads") && e.contains("INbreast.csv"), "{e}");

        std::fs::write(d.join(TABLE), CSV.replace("22678622", "99999999")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("99999999") && e.contains("INbreast.csv") && e.contains("row 4"), "{e}");

        std::fs::write(d.join(TABLE), CSV.replace(";4a;", ";7;")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("Bi-Rads '7'") && e.contains("row 2"), "{e}");

        std::fs::write(d.join(TABLE), CSV).unwrap();
        std::fs::write(d.join(XMLS).join("22678622.xml"), xml(&[roi("Mass", &[(1.0, 2.0)])]).replace("(1.0", "(x"))
            .unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("22678622.xml") && e.contains("bad point") && !e.contains('\n'), "{e}");

        std::fs::write(d.join(XMLS).join("22678622.xml"), "<plist><dict><key>Images</key>").unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("22678622.xml") && !e.contains('\n'), "{e}");
    }
}
