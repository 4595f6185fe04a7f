//! `prepare` on a plain-CSV dataset built here: the DATASET is complete, loadable, verifiable, split by
//! patient, and its masks follow the lesions through resampling and orientation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mammo_io::GrayImage;
use mammo_io::layouts::Format;
use mammo_prep::dataset::PatchStore;
use mammo_prep::patch::{MASK_BREAST, MASK_LESION};
use mammo_prep::{PrepParams, prepare};

/// A 0.2 mm "mammogram": a half-ellipse breast against the left or right edge, a bright disk lesion.
fn write_case(dir: &Path, name: &str, chest_wall_right: bool, lesion: Option<(usize, usize)>) {
    let (w, h) = (300, 240);
    let mut img = GrayImage::<u16>::new(w, h);
    let mut mask = GrayImage::<u16>::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let xd = if chest_wall_right { w - 1 - x } else { x } as f64;
            let (u, v) = (xd / 220.0, (y as f64 - 120.0) / 110.0);
            if u * u + v * v < 1.0 {
                img.set(x, y, 2000 + ((x * 7 + y * 13) % 200) as u16);
            }
            if let Some((cx, cy)) = lesion {
                let (dx, dy) = (x as f64 - cx as f64, y as f64 - cy as f64);
                if dx * dx + dy * dy < 15.0 * 15.0 {
                    img.set(x, y, 2600);
                    mask.set(x, y, 255);
                }
            }
        }
    }
    // A scanner label outside the breast, which preprocessing must remove.
    let lx = if chest_wall_right { 5 } else { w - 25 };
    for y in 5..15 {
        for x in lx..lx + 20 {
            img.set(x, y, 4000);
        }
    }
    mammo_io::png_io::write_png16(&dir.join(format!("{name}.png")), &img).unwrap();
    if lesion.is_some() {
        mammo_io::png_io::write_png16(&dir.join(format!("{name}_mask.png")), &mask).unwrap();
    }
}

fn dataset(dir: &Path) {
    let mut csv = String::from("path,label,patient_id,mask_path\n");
    for p in 0..12 {
        let label = ["normal", "benign", "malignant"][p % 3];
        for side in 0..2 {
            let name = format!("p{p}_{side}");
            let right = side == 1;
            if label == "normal" {
                write_case(dir, &name, right, None);
                csv += &format!("{name}.png,normal,woman{p},\n");
            } else {
                let cx = if right { 200 } else { 100 };
                write_case(dir, &name, right, Some((cx, 120)));
                csv += &format!("{name}.png,{label},woman{p},{name}_mask.png\n");
            }
        }
    }
    std::fs::write(dir.join("dataset.csv"), csv).unwrap();
}

fn params() -> PrepParams {
    let mut p = PrepParams { default_spacing_mm: 0.2, ..Default::default() };
    p.patch.size = 16;
    p.patch.per_lesion = 3;
    p.patch.normal_per_image = 2;
    p.patch.lesion_clearance = 2;
    p
}

#[test]
fn csv_dataset_prepares_completely_and_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    dataset(&input);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let info = prepare(Format::Csv, &input, &a, &params(), &|_, _| {}).unwrap();
    let mut p1 = params();
    p1.threads = 1;
    let info_b = prepare(Format::Csv, &input, &b, &p1, &|_, _| {}).unwrap();
    assert_eq!(info, info_b, "thread count must not change the dataset");
    for f in ["dataset.json", "index.csv", "patches.u16", "masks.u8"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }

    let store = PatchStore::open(&a).unwrap();
    PatchStore::verify(&a, &store.info).unwrap();
    assert_eq!(store.rows.len(), info.patches);
    // 16 lesion images (8 women) x 3 patches each.
    let lesion_rows = store.rows.iter().filter(|r| r.label != mammo_io::layouts::Label::Normal).count();
    assert_eq!(lesion_rows, 48);

    // Patients never straddle splits; the pseudonyms hide the CSV's keys.
    let mut splits: BTreeMap<&str, BTreeSet<_>> = BTreeMap::new();
    for r in &store.rows {
        assert!(r.patient_id.starts_with("pt-") && !r.patient_id.contains("woman"));
        splits.entry(&r.patient_id).or_default().insert(r.split);
    }
    assert!(splits.values().all(|s| s.len() == 1));
    assert_eq!(splits.len(), 12);

    // Lesion patches carry the lesion in their masks; the lesion is bright; every patch is chest-wall
    // left (the breast touches the patch's left side more than its right for patches at the wall).
    let s2 = 16 * 16;
    for (i, r) in store.rows.iter().enumerate() {
        let m = &store.masks[i * s2..(i + 1) * s2];
        let px = &store.pixels[i * s2..(i + 1) * s2];
        if r.label != mammo_io::layouts::Label::Normal {
            let inside: Vec<f32> = (0..s2).filter(|&k| m[k] & MASK_LESION != 0).map(|k| px[k]).collect();
            assert!(inside.len() > 20, "row {i}: {} lesion pixels", inside.len());
            let mean = inside.iter().sum::<f32>() / inside.len() as f32;
            assert!(mean > 0.9, "lesion should be the brightest tissue, mean {mean}");
        } else {
            assert!(m.iter().all(|v| v & MASK_LESION == 0));
            // As much breast as a tile explain visits must have.
            let need = (mammo_prep::tiling::MIN_BREAST_FRACTION * s2 as f64).ceil() as usize;
            assert!(m.iter().filter(|v| **v & MASK_BREAST != 0).count() >= need);
        }
        assert!(r.w > 0 && r.h > 0 && r.x > -(r.w) && r.x < 300);
    }
    // The index maps lesion patches back near the lesion centre in source pixels (100 or 200, 120).
    // `source` is pseudonymised: the right-breast (`_1`) images' names are recomputed with the key.
    let namer = mammo_prep::Namer::new(params().key, Format::Csv, false);
    let right: BTreeSet<String> = (0..12).map(|p| namer.path(&input, &input.join(format!("p{p}_1.png")))).collect();
    for r in store.rows.iter().filter(|r| r.label != mammo_io::layouts::Label::Normal) {
        let (cx, cy) = (r.x + r.w / 2, r.y + r.h / 2);
        let expected_x = if right.contains(&r.source) { 200 } else { 100 };
        assert!((cx - expected_x).abs() <= 20 && (cy - 120).abs() <= 20, "{r:?}");
    }
}
