//! No identifier from the input's paths reaches a DATASET: a CSV-layout input whose folders are named by
//! patient key (`P_00001`) and study UID and whose files by MRN gives a dataset in which none of those
//! strings occurs, in any file; the same key gives the same bytes, another key other names (and the same
//! patches); `keep_paths` keeps the paths as they are.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mammo_io::GrayImage;
use mammo_io::layouts::Format;
use mammo_prep::dataset::PatchStore;
use mammo_prep::{PrepParams, PseudonymKey, prepare};

/// What the input's paths carry: patient keys, a study-UID root, MRNs.
const IDENTIFIERS: [&str; 4] = ["P_0000", "1.2.840.113619", "MRN1234567", "60468811"];

/// A 0.2 mm breast against the left edge, with a bright lesion and its mask when `lesion`.
fn write_image(path: &Path, mask_path: Option<&Path>) {
    let (w, h) = (240, 200);
    let (mut img, mut mask) = (GrayImage::<u16>::new(w, h), GrayImage::<u16>::new(w, h));
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f64 / 180.0, (y as f64 - 100.0) / 90.0);
            if u * u + v * v < 1.0 {
                img.set(x, y, 2000 + ((x * 7 + y * 13) % 200) as u16);
            }
            let (dx, dy) = (x as f64 - 80.0, y as f64 - 100.0);
            if mask_path.is_some() && dx * dx + dy * dy < 15.0 * 15.0 {
                img.set(x, y, 2600);
                mask.set(x, y, 255);
            }
        }
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    mammo_io::png_io::write_png16(path, &img).unwrap();
    if let Some(m) = mask_path {
        mammo_io::png_io::write_png16(m, &mask).unwrap();
    }
}

/// Six patients, two images each, under `P_0000k/<study UID>/MRN1234567k_<side>.png`.
fn input(dir: &Path) {
    let mut csv = String::from("path,label,patient_id,mask_path\n");
    for k in 1..=6 {
        let label = ["normal", "benign", "malignant"][k % 3];
        let folder = format!("P_0000{k}/1.2.840.113619.2.55.3.60468811{k}.868");
        for side in 0..2 {
            let image = format!("{folder}/MRN1234567{k}_{side}.png");
            let mask = (label != "normal").then(|| format!("{folder}/MRN1234567{k}_{side}_mask.png"));
            write_image(&dir.join(&image), mask.as_ref().map(|m| dir.join(m)).as_deref());
            csv += &format!("{image},{label},P_0000{k},{}\n", mask.unwrap_or_default());
        }
    }
    std::fs::write(dir.join("dataset.csv"), csv).unwrap();
}

fn params(key: u8, keep_paths: bool) -> PrepParams {
    let mut p = PrepParams { default_spacing_mm: 0.2, keep_paths, ..Default::default() };
    p.patch.size = 16;
    p.patch.per_lesion = 2;
    p.patch.normal_per_image = 2;
    p.key = PseudonymKey::from_bytes([key; 32]);
    p
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn no_identifier_from_the_input_paths_reaches_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    input(&src);
    let out = |name: &str| tmp.path().join(name);
    let a = prepare(Format::Csv, &src, &out("a"), &params(1, false), &|_, _| {}).unwrap();

    // The input really carries them (so the test can fail), and no output byte does.
    let listing: String = files(&src).iter().map(|p| p.display().to_string()).collect();
    assert!(IDENTIFIERS.iter().all(|id| listing.contains(id)), "{listing}");
    let written = files(&out("a"));
    assert_eq!(written.len(), 4, "{written:?}");
    for f in &written {
        let bytes = std::fs::read(f).unwrap();
        for id in IDENTIFIERS {
            assert!(!contains(&bytes, id), "{id} in {}", f.display());
        }
    }
    // Paths keep the layout's table name and the extension; every image is still listed and hashed.
    assert!(a.inputs.iter().any(|f| f.path == "dataset.csv"));
    let (_, rows) = PatchStore::read_index(&out("a")).unwrap();
    for r in &rows {
        let parts: Vec<&str> = r.source.split('/').collect();
        assert_eq!(parts.len(), 3, "{}", r.source);
        assert!(r.source.ends_with(".png") && a.inputs.iter().any(|f| f.path == r.source), "{}", r.source);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out("a").join("dataset.json")).unwrap()).unwrap();
    assert_eq!(json["params"]["keep_paths"], false);
    assert!(json["params"].get("key").is_none());

    // The same key: byte-identical. Another key: other names for the same patients, same patches.
    let b = prepare(Format::Csv, &src, &out("b"), &params(1, false), &|_, _| {}).unwrap();
    for f in ["dataset.json", "index.csv"] {
        assert_eq!(std::fs::read(out("a").join(f)).unwrap(), std::fs::read(out("b").join(f)).unwrap(), "{f}");
    }
    assert_eq!(a.content_hash, b.content_hash);
    let c = prepare(Format::Csv, &src, &out("c"), &params(2, false), &|_, _| {}).unwrap();
    assert_ne!(a.content_hash, c.content_hash);
    let (_, rows_c) = PatchStore::read_index(&out("c")).unwrap();
    let names = |rows: &[mammo_prep::dataset::IndexRow]| -> BTreeSet<String> {
        rows.iter().flat_map(|r| [r.patient_id.clone(), r.source.clone()]).collect()
    };
    assert!(names(&rows).is_disjoint(&names(&rows_c)), "another key must give other pseudonyms");
    for f in ["patches.u16", "masks.u8"] {
        assert_eq!(std::fs::read(out("a").join(f)).unwrap(), std::fs::read(out("c").join(f)).unwrap(), "{f}");
    }
    assert_eq!((a.counts, a.patients), (c.counts, c.patients), "the split does not depend on the key");

    // keep_paths: the paths as they are, and dataset.json says so.
    let d = prepare(Format::Csv, &src, &out("d"), &params(1, true), &|_, _| {}).unwrap();
    let (_, rows_d) = PatchStore::read_index(&out("d")).unwrap();
    assert!(rows_d.iter().all(|r| r.source.starts_with("P_0000") && r.source.contains("/MRN1234567")));
    assert!(d.inputs.iter().any(|f| f.path == "P_00001/1.2.840.113619.2.55.3.604688111.868/MRN12345671_1.png"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out("d").join("dataset.json")).unwrap()).unwrap();
    assert_eq!(json["params"]["keep_paths"], true);
}
