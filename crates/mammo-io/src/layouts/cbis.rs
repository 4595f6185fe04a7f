//! CBIS-DDSM as TCIA distributes it: the DICOM tree of the NBIA Data Retriever and the four case
//! description tables.
//!
//! Tables: every `*.csv` of the input directory whose header has the CBIS-DDSM columns
//! (`mass_case_description_train_set.csv`, `calc_case_description_test_set.csv`...); other CSVs are
//! skipped. Mass tables have `breast_density ... mass shape,mass margins ...`, calcification tables
//! `breast density ... calc type,calc distribution ...`; both have `patient_id`, `left or right breast`,
//! `image view`, `abnormality id`, `pathology`, `image file path`, `cropped image file path` and
//! `ROI mask file path`. One row is one abnormality; the rows naming the same full image become the
//! lesions of one [`Case`]. Pathology `MALIGNANT` is malignant, `BENIGN` and `BENIGN_WITHOUT_CALLBACK`
//! benign. Patient = `patient_id` (`P_00001`).
//!
//! Files: the tables name `Mass-Training_P_00001_LEFT_CC/<StudyUID>/<SeriesUID>/000000.dcm` (cells
//! sometimes end with spaces or a newline), while a download holds e.g.
//! `CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/07-20-2016-DDSM-74994/1.000000-full mammogram images-24515/1-1.dcm`,
//! possibly under a `manifest-*` folder. So a table path is matched by its first component (the case
//! folder, found anywhere up to four levels below the input) and its series UID: a folder named by the
//! UID is the fast path, otherwise the SeriesInstanceUID of each DICOM header under the case folder.
//! A full-image folder whose only DICOM carries another UID is accepted with a warning.
//!
//! Crops and ROI masks live in `<case folder>_<abnormality id>/`, both DICOMs, and the tables (like the
//! `1-1`/`1-2` file names) do not reliably say which is which. Of the files in the series of both
//! columns, the mask is the one of the full image's size (within 10 %); when that does not decide, the
//! one with binary values (0 and one other value), which is decoded to check.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{Case, Label, Lesion, MaskSource, col, open_csv};
use crate::error::{IoError, Result};
use crate::image::{Laterality, View};

const IMAGE_COL: &str = "image file path";
const CROP_COL: &str = "cropped image file path";
const MASK_COL: &str = "ROI mask file path";
/// The columns this adapter reads, in both kinds of table.
const COMMON: [&str; 8] =
    ["patient_id", "left or right breast", "image view", "abnormality id", "pathology", IMAGE_COL, CROP_COL, MASK_COL];
/// How deep below the input directory case folders are looked for (`manifest-*/CBIS-DDSM/<case>`).
const FOLDER_DEPTH: usize = 4;
/// How deep below a case folder DICOMs are looked for (`<study>/<series>/<file>`).
const FILE_DEPTH: usize = 4;

pub(super) fn load(dir: &Path) -> Result<Vec<Case>> {
    let tables = find_tables(dir)?;
    let mut parsed = Vec::with_capacity(tables.len());
    let mut wanted = HashSet::new();
    for (table, kind) in tables {
        let (headers, rows) = open_csv(&table, b',', &COMMON)?;
        for row in &rows {
            for c in [IMAGE_COL, CROP_COL, MASK_COL] {
                if let Some(p) = TablePath::parse(col(&headers, row, c)) {
                    wanted.insert(p.folder);
                }
            }
        }
        parsed.push((table, kind, headers, rows));
    }
    let mut files = Files { dir: dir.to_path_buf(), folders: index_folders(dir, &wanted)?, ..Default::default() };

    let mut cases: BTreeMap<PathBuf, Case> = BTreeMap::new();
    for (table, kind, headers, rows) in &parsed {
        for (i, row) in rows.iter().enumerate() {
            if row.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let at = Row { table, line: i + 2 };
            let patient = col(headers, row, "patient_id");
            if patient.is_empty() {
                return Err(at.bad("empty patient_id"));
            }
            let pathology = col(headers, row, "pathology");
            let label = match pathology.to_ascii_uppercase().as_str() {
                "MALIGNANT" => Label::Malignant,
                "BENIGN" | "BENIGN_WITHOUT_CALLBACK" => Label::Benign,
                _ => {
                    return Err(
                        at.bad(format!("bad pathology '{pathology}' (MALIGNANT, BENIGN or BENIGN_WITHOUT_CALLBACK)"))
                    );
                }
            };
            let side = col(headers, row, "left or right breast");
            let laterality = Laterality::parse(side)
                .ok_or_else(|| at.bad(format!("bad left or right breast '{side}' (LEFT or RIGHT)")))?;
            let view = View::parse(col(headers, row, "image view"));
            let abn = col(headers, row, "abnormality id");
            if abn.parse::<u32>().is_err() {
                return Err(at.bad(format!("bad abnormality id '{abn}'")));
            }
            let image = files.full_image(&at, col(headers, row, IMAGE_COL))?;
            let mask = files.roi_mask(&at, col(headers, row, CROP_COL), col(headers, row, MASK_COL), &image)?;
            let lesion =
                Lesion { label, kind: kind.to_string(), mask: MaskSource::File { path: mask }, feature_mask: None };
            let case = cases.entry(image.clone()).or_insert_with(|| Case {
                image,
                patient: patient.to_string(),
                label,
                lesions: Vec::new(),
                laterality: Some(laterality),
                view,
                spacing_mm: None,
            });
            case.label = case.label.max(label);
            case.lesions.push(lesion);
        }
    }
    Ok(cases.into_values().collect())
}

/// A row of a table, for errors.
struct Row<'a> {
    table: &'a Path,
    line: usize,
}

impl Row<'_> {
    fn bad(&self, msg: impl std::fmt::Display) -> IoError {
        IoError::format(self.table, format!("row {}: {msg}", self.line))
    }
}

/// The CBIS-DDSM tables of `dir`, with the lesion kind each describes.
fn find_tables(dir: &Path) -> Result<Vec<(PathBuf, &'static str)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| IoError::io(dir, e))?;
    let mut csvs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    csvs.sort();
    let mut out = Vec::new();
    for path in csvs {
        let header: Vec<String> = match csv::ReaderBuilder::new().flexible(true).from_path(&path).and_then(|mut r| {
            r.headers().map(|h| h.iter().map(|s| s.trim().trim_start_matches('\u{feff}').to_string()).collect())
        }) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("{}: skipped, cannot read its header: {e}", path.display());
                continue;
            }
        };
        let has = |c: &str| header.iter().any(|h| h == c);
        // A table with most of the CBIS-DDSM columns is one, and then a missing column is an error.
        if COMMON.iter().filter(|c| has(c)).count() < 3 {
            tracing::debug!("{}: not a CBIS-DDSM description table; skipped", path.display());
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_ascii_lowercase();
        let kind = if has("mass shape") || has("mass margins") {
            "mass"
        } else if has("calc type") || has("calc distribution") {
            "calcification"
        } else if name.starts_with("mass") {
            "mass"
        } else if name.starts_with("calc") {
            "calcification"
        } else {
            return Err(IoError::format(
                &path,
                "missing column 'mass shape' (mass table) or 'calc type' (calcification table)",
            ));
        };
        out.push((path, kind));
    }
    if out.is_empty() {
        return Err(IoError::format(
            dir,
            "no CBIS-DDSM description table (a *.csv such as mass_case_description_train_set.csv with an \
             'image file path' column)",
        ));
    }
    Ok(out)
}

/// Finds the wanted case folders below `dir`, without descending into case folders.
fn index_folders(dir: &Path, wanted: &HashSet<String>) -> Result<HashMap<String, PathBuf>> {
    let mut found: HashMap<String, PathBuf> = HashMap::new();
    let mut level = vec![dir.to_path_buf()];
    for depth in 0..FOLDER_DEPTH {
        let mut next = Vec::new();
        for d in &level {
            let entries = match std::fs::read_dir(d) {
                Ok(e) => e,
                Err(e) if depth == 0 => return Err(IoError::io(d, e)),
                Err(_) => continue,
            };
            let mut subdirs: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
            subdirs.sort();
            for sub in subdirs {
                let name = sub.file_name().unwrap_or_default().to_string_lossy().into_owned();
                if wanted.contains(&name) {
                    if let Some(prev) = found.get(&name) {
                        tracing::warn!("{}: a second folder {name}; {} is used", sub.display(), prev.display());
                    } else {
                        found.insert(name, sub);
                    }
                } else if !(name.starts_with("Mass-") || name.starts_with("Calc-")) {
                    next.push(sub);
                }
            }
        }
        level = next;
    }
    Ok(found)
}

/// A path as the tables write it: `<case folder>/<StudyUID>/<SeriesUID>/<file>`.
#[derive(Debug)]
struct TablePath {
    folder: String,
    series: Option<String>,
    file: String,
    /// The components after the case folder.
    rest: Vec<String>,
}

impl TablePath {
    fn parse(cell: &str) -> Option<Self> {
        let norm = cell.trim().replace('\\', "/");
        let mut parts: Vec<&str> = norm.split('/').map(str::trim).filter(|s| !s.is_empty() && *s != ".").collect();
        while parts.first().is_some_and(|p| p.eq_ignore_ascii_case("CBIS-DDSM")) {
            parts.remove(0);
        }
        if parts.len() < 2 || parts.contains(&"..") {
            return None;
        }
        let n = parts.len();
        Some(TablePath {
            folder: parts[0].to_string(),
            series: (n >= 3).then(|| parts[n - 2].to_string()),
            file: parts[n - 1].to_string(),
            rest: parts[1..].iter().map(|s| s.to_string()).collect(),
        })
    }
}

/// The DICOM tree, with what has been read of it.
#[derive(Default)]
struct Files {
    dir: PathBuf,
    folders: HashMap<String, PathBuf>,
    dicoms: HashMap<PathBuf, Vec<PathBuf>>,
    uids: HashMap<PathBuf, String>,
    sizes: HashMap<PathBuf, (usize, usize)>,
    full: HashMap<String, PathBuf>,
}

impl Files {
    fn folder(&self, at: &Row, cell: &str, p: &TablePath) -> Result<PathBuf> {
        self.folders.get(&p.folder).cloned().ok_or_else(|| {
            at.bad(format!(
                "referenced file {} does not exist (no folder {} under {})",
                cell.trim(),
                p.folder,
                self.dir.display()
            ))
        })
    }

    /// The `*.dcm` files below a case folder, sorted.
    fn dicoms_under(&mut self, folder: &Path) -> &[PathBuf] {
        self.dicoms.entry(folder.to_path_buf()).or_insert_with(|| {
            let mut out = Vec::new();
            let mut level = vec![folder.to_path_buf()];
            for _ in 0..FILE_DEPTH {
                let mut next = Vec::new();
                for d in &level {
                    let Ok(entries) = std::fs::read_dir(d) else { continue };
                    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                        // Regular files only (following links): opening a FIFO named *.dcm would wait
                        // forever for a writer. Depth is bounded by FILE_DEPTH, so a link loop ends.
                        if p.is_dir() {
                            next.push(p);
                        } else if p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm")) {
                            out.push(p);
                        }
                    }
                }
                level = next;
            }
            out.sort();
            out
        })
    }

    fn uid(&mut self, path: &Path) -> Result<&str> {
        if !self.uids.contains_key(path) {
            let uid = crate::dicom::read_series_uid(path)?;
            self.uids.insert(path.to_path_buf(), uid);
        }
        Ok(&self.uids[path])
    }

    /// Width and height from the header.
    fn size(&mut self, path: &Path) -> Result<(usize, usize)> {
        if let Some(&s) = self.sizes.get(path) {
            return Ok(s);
        }
        let (_, w, h) = crate::dicom::read_dicom_header(path)?;
        self.sizes.insert(path.to_path_buf(), (w, h));
        Ok((w, h))
    }

    /// The DICOMs of one series below a case folder: those in a folder named by the UID, else those whose
    /// header carries it.
    fn series(&mut self, folder: &Path, uid: &str) -> Result<Vec<PathBuf>> {
        let all = self.dicoms_under(folder).to_vec();
        let by_name: Vec<PathBuf> = all
            .iter()
            .filter(|f| f.parent().and_then(|p| p.file_name()).is_some_and(|n| n.to_string_lossy() == uid))
            .cloned()
            .collect();
        if !by_name.is_empty() {
            return Ok(by_name);
        }
        let mut out = Vec::new();
        for f in all {
            if self.uid(&f)? == uid {
                out.push(f);
            }
        }
        Ok(out)
    }

    fn full_image(&mut self, at: &Row, cell: &str) -> Result<PathBuf> {
        let key = cell.trim().to_string();
        if let Some(p) = self.full.get(&key) {
            return Ok(p.clone());
        }
        let p = TablePath::parse(cell).ok_or_else(|| at.bad(format!("bad {IMAGE_COL} '{}'", cell.trim())))?;
        let folder = self.folder(at, cell, &p)?;
        let direct = p.rest.iter().fold(folder.clone(), |acc, c| acc.join(c));
        let found = if direct.is_file() {
            direct
        } else {
            let series = match &p.series {
                Some(uid) => self.series(&folder, uid)?,
                None => Vec::new(),
            };
            match series.len() {
                1 => series.into_iter().next().unwrap_or_default(),
                0 => {
                    let all = self.dicoms_under(&folder);
                    if all.len() != 1 {
                        return Err(at.bad(format!(
                            "referenced file {} does not exist: none of the {} DICOMs under {} has \
                             SeriesInstanceUID {}",
                            cell.trim(),
                            all.len(),
                            folder.display(),
                            p.series.as_deref().unwrap_or("(none in the path)")
                        )));
                    }
                    tracing::warn!(
                        "{}: row {}: no DICOM with series {} under {}; using its only DICOM {}",
                        at.table.display(),
                        at.line,
                        p.series.as_deref().unwrap_or("?"),
                        folder.display(),
                        all[0].display()
                    );
                    all[0].clone()
                }
                n => match series.iter().find(|f| f.file_name().is_some_and(|n| n.to_string_lossy() == p.file)) {
                    Some(f) => f.clone(),
                    None => {
                        return Err(at.bad(format!(
                            "{} names one image but its series holds {n} DICOMs under {}",
                            cell.trim(),
                            folder.display()
                        )));
                    }
                },
            }
        };
        self.full.insert(key, found.clone());
        Ok(found)
    }

    /// The ROI mask of one abnormality, told from its crop.
    fn roi_mask(&mut self, at: &Row, crop_cell: &str, mask_cell: &str, image: &Path) -> Result<PathBuf> {
        let mut candidates = BTreeSet::new();
        let mut folders = Vec::new();
        for (name, cell) in [(MASK_COL, mask_cell), (CROP_COL, crop_cell)] {
            if cell.trim().is_empty() {
                continue;
            }
            let p = TablePath::parse(cell).ok_or_else(|| at.bad(format!("bad {name} '{}'", cell.trim())))?;
            let folder = self.folder(at, cell, &p)?;
            if let Some(uid) = &p.series {
                candidates.extend(self.series(&folder, uid)?);
            }
            folders.push(folder);
        }
        if folders.is_empty() {
            return Err(at.bad(format!("empty {MASK_COL} and {CROP_COL}")));
        }
        if candidates.is_empty() {
            for f in &folders {
                candidates.extend(self.dicoms_under(f).iter().cloned());
            }
            if candidates.is_empty() {
                return Err(at.bad(format!(
                    "referenced file {} does not exist (no DICOM under {})",
                    mask_cell.trim(),
                    folders[0].display()
                )));
            }
            tracing::warn!(
                "{}: row {}: no DICOM of the named series under {}; choosing among all {} there",
                at.table.display(),
                at.line,
                folders[0].display(),
                candidates.len()
            );
        }
        let (fw, fh) = self.size(image)?;
        let mut full_size = Vec::new();
        for c in &candidates {
            let (w, h) = self.size(c)?;
            if w.abs_diff(fw) as f64 <= 0.1 * fw as f64 && h.abs_diff(fh) as f64 <= 0.1 * fh as f64 {
                full_size.push(c.clone());
            }
        }
        if full_size.len() == 1 {
            return Ok(full_size.remove(0));
        }
        let pool: Vec<PathBuf> = if full_size.is_empty() { candidates.iter().cloned().collect() } else { full_size };
        let mut binary = Vec::new();
        for c in &pool {
            if is_binary(c)? {
                binary.push(c.clone());
            }
        }
        if binary.len() == 1 {
            return Ok(binary.remove(0));
        }
        Err(at.bad(format!(
            "cannot tell the ROI mask from the cropped image among {} (expected one {fw} x {fh} image with \
             binary values)",
            candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
        )))
    }
}

/// Whether an image holds at most two values, one of them zero (a mask: 0/255 or 0/1).
fn is_binary(path: &Path) -> Result<bool> {
    let m = crate::read_image(path)?;
    let mut on = None;
    for i in 0..m.samples.len() {
        let v = m.samples.get(i);
        if v != 0 {
            match on {
                None => on = Some(v),
                Some(o) if o != v => return Ok(false),
                Some(_) => {}
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::{Format, load as load_layout, mask::rasterize};
    use super::*;
    use crate::dicom::{DicomWriteSpec, WriteSyntax, write_dicom};

    const MASS_HEADER: &str = "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path";
    const CALC_HEADER: &str = "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,calc type,calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path";
    const STUDY1: &str = "1.3.6.1.4.1.9590.100.1.2.100";
    const FULL1: &str = "1.3.6.1.4.1.9590.100.1.2.101";
    const ROI1: &str = "1.3.6.1.4.1.9590.100.1.2.102";
    const CROP2: &str = "1.3.6.1.4.1.9590.100.1.2.103";
    const MASK2: &str = "1.3.6.1.4.1.9590.100.1.2.104";
    const STUDY3: &str = "1.3.6.1.4.1.9590.100.1.2.200";
    const FULL3: &str = "1.3.6.1.4.1.9590.100.1.2.201";
    const ROI3: &str = "1.3.6.1.4.1.9590.100.1.2.202";

    /// A DICOM: `Grey` (full image or crop) or `Mask` (0/255 with a box set).
    enum Px {
        Grey,
        Mask(usize, usize, usize, usize),
    }

    fn dcm(path: &Path, w: usize, h: usize, series: &str, px: Px) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let pixels: Vec<u16> = match px {
            Px::Grey => (0..w * h).map(|i| (i * 37 % 3000) as u16 + 100).collect(),
            Px::Mask(x0, y0, x1, y1) => (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    if (x0..x1).contains(&x) && (y0..y1).contains(&y) { 255 } else { 0 }
                })
                .collect(),
        };
        let spec = DicomWriteSpec {
            sop_instance_uid: format!("{series}.1"),
            study_instance_uid: "1.2".into(),
            series_instance_uid: series.into(),
            bits_stored: 16,
            ..Default::default()
        };
        write_dicom(path, w, h, &pixels, &spec, WriteSyntax::ExplicitVrLittleEndian).unwrap();
    }

    fn mass_rows() -> String {
        format!(
            "{MASS_HEADER}\n\
             P_00001,3,LEFT,CC,1,mass,IRREGULAR-ARCHITECTURAL_DISTORTION,SPICULATED,4,MALIGNANT,4,\
             Mass-Training_P_00001_LEFT_CC/{STUDY1}/{FULL1}/000000.dcm,\
             Mass-Training_P_00001_LEFT_CC_1/{STUDY1}/{ROI1}/000000.dcm,\
             \"Mass-Training_P_00001_LEFT_CC_1/{STUDY1}/{ROI1}/000001.dcm\n\"\n\
             P_00001,3,LEFT,CC,2,mass,OVAL,CIRCUMSCRIBED,3,BENIGN_WITHOUT_CALLBACK,3,\
             Mass-Training_P_00001_LEFT_CC/{STUDY1}/{FULL1}/000000.dcm ,\
             Mass-Training_P_00001_LEFT_CC_2/{STUDY1}/{MASK2}/000000.dcm,\
             Mass-Training_P_00001_LEFT_CC_2/{STUDY1}/{CROP2}/000000.dcm\n"
        )
    }

    fn calc_rows() -> String {
        format!(
            "{CALC_HEADER}\n\
             P_00002,2,RIGHT,MLO,1,calcification,PLEOMORPHIC,CLUSTERED,4,MALIGNANT,3,\
             \"Calc-Test_P_00002_RIGHT_MLO/{STUDY3}/{FULL3}/000000.dcm\n\",\
             Calc-Test_P_00002_RIGHT_MLO_1/{STUDY3}/{ROI3}/000001.dcm,\
             Calc-Test_P_00002_RIGHT_MLO_1/{STUDY3}/{ROI3}/000000.dcm\n"
        )
    }

    /// The newer NBIA layout (descriptive folder names, `1-1.dcm`) for P_00001 and the classic one (UID
    /// folders, `000000.dcm`) for P_00002.
    fn fixture(d: &Path) {
        let root = d.join("manifest-1600000000000").join("CBIS-DDSM");
        let case1 = root.join("Mass-Training_P_00001_LEFT_CC").join("07-20-2016-DDSM-74994");
        dcm(&case1.join("1.000000-full mammogram images-24515/1-1.dcm"), 64, 48, FULL1, Px::Grey);
        // Another series in the same case folder, which the UID match must pass over.
        dcm(&case1.join("2.000000-other-00001/1-1.dcm"), 64, 48, "1.2.999", Px::Grey);
        // Abnormality 1: crop and mask in one series, 1-1 is the mask although the table says 000001 is.
        let roi1 = root.join("Mass-Training_P_00001_LEFT_CC_1/07-21-2016-DDSM-1/1.000000-ROI mask images-1");
        dcm(&roi1.join("1-1.dcm"), 64, 48, ROI1, Px::Mask(10, 10, 20, 20));
        dcm(&roi1.join("1-2.dcm"), 12, 10, ROI1, Px::Grey);
        // Abnormality 2: crop and mask in two series, the table swapping them; the mask is half-size so
        // only its values tell it from the crop.
        let roi2 = root.join("Mass-Training_P_00001_LEFT_CC_2/07-21-2016-DDSM-2");
        dcm(&roi2.join("1.000000-ROI mask images-2/1-1.dcm"), 32, 24, MASK2, Px::Mask(20, 5, 30, 15));
        dcm(&roi2.join("1.000000-cropped images-3/1-1.dcm"), 14, 12, CROP2, Px::Grey);
        // Classic layout.
        let case3 = root.join("Calc-Test_P_00002_RIGHT_MLO").join(STUDY3).join(FULL3);
        dcm(&case3.join("000000.dcm"), 64, 48, FULL3, Px::Grey);
        let roi3 = root.join("Calc-Test_P_00002_RIGHT_MLO_1").join(STUDY3).join(ROI3);
        dcm(&roi3.join("000000.dcm"), 64, 48, ROI3, Px::Mask(40, 30, 44, 34));
        dcm(&roi3.join("000001.dcm"), 8, 8, ROI3, Px::Grey);

        std::fs::write(d.join("mass_case_description_train_set.csv"), mass_rows()).unwrap();
        std::fs::write(d.join("calc_case_description_test_set.csv"), calc_rows()).unwrap();
        std::fs::write(d.join("notes.csv"), "a,b\n1,2\n").unwrap();
    }

    #[test]
    fn matches_series_uids_and_tells_masks_from_crops() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let cases = load_layout(Format::CbisDdsm, dir.path()).unwrap();
        assert_eq!(cases.len(), 2);

        let calc = &cases[0];
        assert!(calc.image.ends_with(format!("Calc-Test_P_00002_RIGHT_MLO/{STUDY3}/{FULL3}/000000.dcm")));
        assert_eq!((calc.patient.as_str(), calc.label), ("P_00002", Label::Malignant));
        assert_eq!((calc.laterality, calc.view), (Some(Laterality::Right), Some(View::MLO)));
        assert_eq!(calc.lesions.len(), 1);
        assert_eq!(calc.lesions[0].kind, "calcification");
        let MaskSource::File { path } = &calc.lesions[0].mask else { panic!("{:?}", calc.lesions[0].mask) };
        assert!(path.ends_with("000000.dcm"), "{}", path.display());

        let mass = &cases[1];
        assert!(mass.image.ends_with("1.000000-full mammogram images-24515/1-1.dcm"), "{}", mass.image.display());
        assert_eq!((mass.patient.as_str(), mass.label), ("P_00001", Label::Malignant));
        assert_eq!((mass.laterality, mass.view), (Some(Laterality::Left), Some(View::CC)));
        assert_eq!(mass.lesions.len(), 2);
        let (l1, l2) = (&mass.lesions[0], &mass.lesions[1]);
        assert_eq!((l1.kind.as_str(), l1.label, l2.label), ("mass", Label::Malignant, Label::Benign));
        let MaskSource::File { path } = &l1.mask else { panic!("{:?}", l1.mask) };
        assert!(path.ends_with("1.000000-ROI mask images-1/1-1.dcm"), "{}", path.display());
        let m = rasterize(&l1.mask, 64, 48).unwrap();
        assert_eq!((m.get(15, 15), m.get(25, 15)), (1, 0));
        let MaskSource::File { path } = &l2.mask else { panic!("{:?}", l2.mask) };
        assert!(path.ends_with("1.000000-ROI mask images-2/1-1.dcm"), "{}", path.display());
        // The half-size mask is scaled to the image: its box (20..30, 5..15) covers (40..60, 10..30).
        let m = rasterize(&l2.mask, 64, 48).unwrap();
        assert_eq!((m.get(50, 20), m.get(30, 20)), (1, 0));
    }

    #[test]
    fn bad_inputs_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("no CBIS-DDSM description table") && !e.contains('\n'), "{e}");

        fixture(d);
        let mass = d.join("mass_case_description_train_set.csv");
        std::fs::write(&mass, mass_rows().replace(",pathology,", ",diagnosis,")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("'pathology'") && e.contains("mass_case_description_train_set.csv"), "{e}");

        std::fs::write(&mass, mass_rows().replace("MALIGNANT", "UNPROVEN")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("UNPROVEN") && e.contains("row 2"), "{e}");

        // A case folder that is not there.
        std::fs::write(&mass, mass_rows().replace("P_00001_LEFT_CC/", "P_00009_LEFT_CC/")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(
            e.contains("Mass-Training_P_00009_LEFT_CC") && e.contains("mass_case_description_train_set.csv"),
            "{e}"
        );
        // A series that is not there (and a folder with two DICOMs, so no fallback).
        std::fs::write(&mass, mass_rows().replace(FULL1, "1.2.404")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("1.2.404") && e.contains("row 2") && !e.contains('\n'), "{e}");

        // Two grey images: no mask.
        std::fs::write(&mass, mass_rows()).unwrap();
        let roi1 = d.join(
            "manifest-1600000000000/CBIS-DDSM/Mass-Training_P_00001_LEFT_CC_1/07-21-2016-DDSM-1/1.000000-ROI mask images-1",
        );
        dcm(&roi1.join("1-1.dcm"), 12, 10, ROI1, Px::Grey);
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("cannot tell the ROI mask") && e.contains("row 2"), "{e}");
    }
}
