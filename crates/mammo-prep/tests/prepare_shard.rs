//! Sharded preparation: the merge of 2 or 3 shards (given in any order) is the unsharded DATASET byte
//! for byte, a patient's images all sit in one shard, and the merge refuses, with the reason and
//! without leaving anything that looks done, shards that are missing, repeated, or of another input,
//! parameters or key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mammo_io::GrayImage;
use mammo_io::layouts::Format;
use mammo_prep::{PrepParams, PseudonymKey, ShardSpec, merge, prepare, prepare_shard};

/// A 0.2 mm breast against the left edge, a bright lesion (and its mask) at a place set by `k`.
fn write_image(path: &Path, mask_path: Option<&Path>, k: usize) {
    let (w, h) = (200, 160);
    let (mut img, mut mask) = (GrayImage::<u16>::new(w, h), GrayImage::<u16>::new(w, h));
    let (cx, cy) = (60.0 + (k % 4) as f64 * 8.0, 70.0 + (k % 3) as f64 * 6.0);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f64 / 150.0, (y as f64 - 80.0) / 75.0);
            if u * u + v * v < 1.0 {
                img.set(x, y, 2000 + ((x * 7 + y * 13 + k * 31) % 200) as u16);
            }
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            if mask_path.is_some() && dx * dx + dy * dy < 12.0 * 12.0 {
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

/// Nine women, two images each (`patients` of them: fewer makes "another input").
fn input(dir: &Path, patients: usize) {
    let mut csv = String::from("path,label,patient_id,mask_path\n");
    for p in 0..patients {
        let label = ["normal", "benign", "malignant"][p % 3];
        for side in 0..2 {
            let image = format!("w{p}/{side}.png");
            let mask = (label != "normal").then(|| format!("w{p}/{side}_mask.png"));
            write_image(&dir.join(&image), mask.as_ref().map(|m| dir.join(m)).as_deref(), p * 2 + side);
            csv += &format!("{image},{label},woman{p},{}\n", mask.unwrap_or_default());
        }
    }
    std::fs::write(dir.join("dataset.csv"), csv).unwrap();
}

fn params() -> PrepParams {
    let mut p = PrepParams { default_spacing_mm: 0.2, ..Default::default() };
    p.patch.size = 16;
    p.patch.per_lesion = 2;
    p.patch.normal_per_image = 2;
    p.seed = 5;
    p.threads = 2;
    p.key = PseudonymKey::from_bytes([7; 32]);
    p
}

/// Every file of `dir` by name (a DATASET is flat).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect()
}

fn shards(input: &Path, root: &Path, of: u32, params: &PrepParams) -> Vec<PathBuf> {
    (0..of)
        .map(|index| {
            let out = root.join(format!("shard-{index}-of-{of}"));
            prepare_shard(Format::Csv, input, &out, params, ShardSpec { index, of }, &|_, _| {}).unwrap();
            out
        })
        .collect()
}

#[test]
fn merged_shards_are_the_unsharded_dataset_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let input_dir = tmp.path().join("in");
    input(&input_dir, 9);
    let whole = tmp.path().join("whole");
    let info = prepare(Format::Csv, &input_dir, &whole, &params(), &|_, _| {}).unwrap();
    let expected = files(&whole);
    assert_eq!(expected.len(), 4);
    for of in [2u32, 3] {
        let mut dirs = shards(&input_dir, tmp.path(), of, &params());
        // The rows of each shard: every woman in exactly one shard, and no shard holds everyone.
        let mut owner: BTreeMap<String, usize> = BTreeMap::new();
        for (s, d) in dirs.iter().enumerate() {
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("shard.json")).unwrap()).unwrap();
            for case in json["cases"].as_array().unwrap() {
                for row in case["rows"].as_array().unwrap() {
                    let pt = row["patient_id"].as_str().unwrap().to_string();
                    assert_eq!(*owner.entry(pt.clone()).or_insert(s), s, "{pt} spans two of {of} shards");
                }
            }
        }
        let used: BTreeSet<usize> = owner.values().copied().collect();
        assert!(used.len() > 1, "all patients landed in one of {of} shards: {owner:?}");
        dirs.reverse(); // the order shards are given in does not matter
        let merged = tmp.path().join(format!("merged-{of}"));
        let merged_info = merge(&dirs, &merged).unwrap();
        assert_eq!(merged_info.content_hash, info.content_hash, "{of} shards");
        let got = files(&merged);
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{of} shards");
        for (name, bytes) in &expected {
            assert!(got[name] == *bytes, "{name} differs after merging {of} shards");
        }
    }
}

/// The merge's error for `dirs` into a fresh output, which must not exist afterwards (nor a partial).
fn refused(dirs: &[PathBuf], root: &Path) -> String {
    let out = root.join("refused");
    let err = merge(dirs, &out).unwrap_err().to_string();
    assert!(!out.exists(), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".refused"))
        .collect();
    assert!(leftovers.is_empty(), "{err}");
    assert!(!err.contains('\n'), "{err}");
    err
}

#[test]
fn merge_refuses_missing_repeated_and_foreign_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (input_dir, other_input) = (root.join("in"), root.join("other"));
    input(&input_dir, 6);
    input(&other_input, 5);
    let three = shards(&input_dir, &root.join("p"), 3, &params());
    let two = shards(&input_dir, &root.join("q"), 2, &params());

    let err = refused(&three[..2], root);
    assert!(err.contains("shards missing: 2/3"), "{err}");
    let err = refused(&[three[0].clone(), three[1].clone(), three[1].clone(), three[2].clone()], root);
    assert!(err.contains("shard 1/3 given twice"), "{err}");
    let err = refused(&[three[0].clone(), two[1].clone()], root);
    assert!(err.contains("different shard counts"), "{err}");

    let mut seeded = params();
    seeded.seed = 6;
    let reseeded = shards(&input_dir, &root.join("r"), 3, &seeded);
    let err = refused(&[three[0].clone(), reseeded[1].clone(), three[2].clone()], root);
    assert!(err.contains("preparation parameters differ"), "{err}");

    let mut rekeyed = params();
    rekeyed.key = PseudonymKey::from_bytes([8; 32]);
    let other_key = shards(&input_dir, &root.join("s"), 3, &rekeyed);
    let err = refused(&[three[0].clone(), three[1].clone(), other_key[2].clone()], root);
    assert!(err.contains("pseudonym keys differ"), "{err}");

    let foreign = shards(&other_input, &root.join("t"), 3, &params());
    let err = refused(&[three[0].clone(), foreign[1].clone(), three[2].clone()], root);
    assert!(err.contains("inputs differ"), "{err}");

    // A shard whose patches file was cut short.
    let cut = root.join("cut");
    std::fs::create_dir(&cut).unwrap();
    for f in ["shard.json", "patches.u16", "masks.u8"] {
        std::fs::copy(three[1].join(f), cut.join(f)).unwrap();
    }
    let patches = std::fs::read(cut.join("patches.u16")).unwrap();
    std::fs::write(cut.join("patches.u16"), &patches[..patches.len().saturating_sub(2)]).unwrap();
    let err = refused(&[three[0].clone(), cut, three[2].clone()], root);
    assert!(err.contains("patches.u16") && err.contains("bytes"), "{err}");

    // A plain directory, and an output that exists.
    let err = refused(&[input_dir.clone()], root);
    assert!(err.contains("shard.json"), "{err}");
    let err = merge(&three, &input_dir).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    // And the good set still merges.
    merge(&three, &root.join("ok")).unwrap();
}

#[test]
fn out_of_range_shard_specs_are_refused_by_name() {
    for bad in ["2/2", "0/0", "x/3"] {
        let err = ShardSpec::parse(bad).unwrap_err();
        assert!(err.starts_with(&format!("--shard {bad}:")), "{err}");
    }
}
