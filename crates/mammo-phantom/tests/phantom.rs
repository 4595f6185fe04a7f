//! The phantom's promises: determinism, exact and consistent ground truth, the requested contrast, and
//! layouts that the readers accept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mammo_io::layouts::{self, Format, Label, PhantomManifest};
use mammo_io::{Laterality, Photometric, SourceKind, View};
use mammo_phantom::{
    CBIS_CSV, CBIS_CSV_HEADER, MIAS_INFO, OutputFormat, PhantomError, PhantomParams, case_label, case_slot,
    fake_identity, generate_case, write_phantom,
};

/// Small, fast phantoms: 75 x 90 px at 0.4 mm.
fn small(cases: usize, seed: u64) -> PhantomParams {
    PhantomParams {
        cases,
        seed,
        width_mm: 30.0,
        spacing_mm: 0.4,
        min_diameter_mm: 3.0,
        max_diameter_mm: 6.0,
        spicule_length_mm: (1.0, 3.0),
        spicule_count: (4, 8),
        ..Default::default()
    }
}

fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn write(dir: &Path, params: &PhantomParams, format: OutputFormat) -> mammo_phantom::PhantomSummary {
    write_phantom(dir, params, format, &|_, _| {}).unwrap_or_else(|e| panic!("{format:?}: {e}"))
}

#[test]
fn same_seed_gives_byte_identical_trees_in_every_format_and_another_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    for format in OutputFormat::ALL {
        let params = small(8, 11);
        let (a, b, c) = (
            tmp.path().join(format!("{format:?}-a")),
            tmp.path().join(format!("{format:?}-b")),
            tmp.path().join(format!("{format:?}-c")),
        );
        let calls = std::cell::Cell::new(0);
        let summary = write_phantom(&a, &params, format, &|done, total| {
            calls.set(calls.get() + 1);
            assert!(done <= total);
        })
        .unwrap();
        assert!(calls.get() >= 1);
        write(&b, &params, format);
        write(&c, &PhantomParams { seed: 12, ..params.clone() }, format);
        let (fa, fb, fc) = (files_under(&a), files_under(&b), files_under(&c));
        assert_eq!(fa.len(), summary.files, "{format:?}: summary counts every file");
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>(), "{format:?}");
        for (k, v) in &fa {
            assert!(v == &fb[k], "{format:?}: {k} differs between two runs with the same seed");
        }
        assert_ne!(fa, fc, "{format:?}: another seed, another phantom");
        assert!(fa.keys().all(|k| !k.contains(".tmp-")), "no temporary files left");
    }
}

#[test]
fn cases_are_independent_of_generation_order() {
    let p = small(8, 3);
    let late = generate_case(&p, 6);
    let _ = generate_case(&p, 0);
    assert_eq!(generate_case(&p, 6), late);
}

#[test]
fn masks_are_exact_consistent_and_inside_the_breast() {
    let p = small(48, 5);
    let (mut benign, mut malignant, mut normal) = (0, 0, 0);
    for i in 0..p.cases {
        let c = generate_case(&p, i);
        let (w, h) = p.image_size();
        assert_eq!((c.image.width, c.image.height), (w, h));
        let full = (1u32 << p.bits_stored) - 1;
        assert!(c.image.data.iter().all(|&v| (v as u32) <= full));
        assert_eq!(c.lesion_masks.len(), c.meta.lesions.len());
        assert_eq!(c.feature_masks.len(), c.meta.lesions.len());
        assert_eq!(c.meta.patient, format!("PH-{:05}", i / 4));
        assert_eq!(case_label(&p, i), c.meta.lesions.first().map_or(Label::Normal, |l| l.label));
        for (k, l) in c.meta.lesions.iter().enumerate() {
            let (m, f) = (&c.lesion_masks[k], &c.feature_masks[k]);
            let area = m.data.iter().filter(|&&v| v != 0).count();
            assert!(area > 0, "case {i}: empty lesion mask");
            assert!(m.data.iter().all(|&v| v == 0 || v == 255));
            for (j, &v) in m.data.iter().enumerate() {
                if v != 0 {
                    assert_eq!(c.breast_mask.data[j], 255, "case {i}: lesion pixel {j} outside the breast");
                }
            }
            // The centre is in the mask.
            assert_eq!(m.get(l.cx as usize, l.cy as usize), 255, "case {i}");
            let features = f.data.iter().filter(|&&v| v != 0).count();
            assert!(f.data.iter().zip(&m.data).all(|(&f, &m)| f == 0 || m != 0), "features outside the lesion");
            match l.label {
                Label::Benign => {
                    benign += 1;
                    assert_eq!(features, 0, "case {i}: benign lesions have no malignancy features");
                    assert_eq!(l.margin, "circumscribed");
                    assert!(l.shape == "round" || l.shape == "oval");
                }
                Label::Malignant => {
                    malignant += 1;
                    assert!(features > 0 && features < area, "case {i}: {features} of {area}");
                    assert_eq!((l.shape.as_str(), l.margin.as_str()), ("irregular", "spiculated"));
                }
                Label::Normal => unreachable!(),
            }
            assert!(l.diameter_mm <= p.max_diameter_mm + 1e-9);
            let j = p.contrast_jitter;
            assert!(l.contrast >= p.lesion_contrast * (1.0 - j) && l.contrast <= p.lesion_contrast * (1.0 + j));
        }
        if c.meta.lesions.is_empty() {
            normal += 1;
        }
    }
    assert!(benign > 5 && malignant > 5 && normal > 5, "{benign} {malignant} {normal}");
}

#[test]
fn chest_wall_is_on_the_side_of_the_breast_and_background_is_dark() {
    let p = small(4, 9);
    for i in 0..4 {
        let c = generate_case(&p, i);
        let (w, h) = (c.image.width, c.image.height);
        let column = |x: usize| (0..h).filter(|&y| c.breast_mask.get(x, y) != 0).count();
        let (left, right) = (column(0), column(w - 1));
        match case_slot(i).laterality {
            Laterality::Left => assert!(left > h / 2 && right == 0, "case {i}: {left} {right}"),
            Laterality::Right => assert!(right > h / 2 && left == 0, "case {i}: {left} {right}"),
        }
        let mean = |inside: bool| {
            let v: Vec<f64> = c
                .image
                .data
                .iter()
                .zip(&c.breast_mask.data)
                .filter(|(_, m)| (**m != 0) == inside)
                .map(|(&v, _)| v as f64)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let full = ((1u32 << p.bits_stored) - 1) as f64;
        assert!(mean(false) < 0.02 * full, "background {}", mean(false));
        assert!(mean(true) > 10.0 * mean(false));
    }
}

/// Contrast of the lesion body (mask minus features) against a ring of tissue 1-4 mm outside the lesion.
/// The ring is fitted with a plane, evaluated under the body, so that the thickness fall-off towards the
/// skin and the slowest texture gradients do not count as contrast.
fn measured_contrast(c: &mammo_phantom::GeneratedCase, k: usize, spacing: f64) -> f64 {
    let (m, f, img) = (&c.lesion_masks[k], &c.feature_masks[k], &c.image);
    let l = &c.meta.lesions[k];
    let mut reach = 0.0f64;
    for y in 0..m.height {
        for x in 0..m.width {
            if m.get(x, y) != 0 {
                reach = reach.max((x as f64 + 0.5 - l.cx).hypot(y as f64 + 0.5 - l.cy));
            }
        }
    }
    let (r0, r1) = (reach + 1.0 / spacing, reach + 4.0 / spacing);
    // Normal equations of v = a + b*dx + c*dy over the ring.
    let mut ata = [[0.0f64; 3]; 3];
    let mut atb = [0.0f64; 3];
    let mut inside = Vec::new();
    for y in 0..m.height {
        for x in 0..m.width {
            let (dx, dy) = (x as f64 + 0.5 - l.cx, y as f64 + 0.5 - l.cy);
            let v = img.get(x, y) as f64;
            if m.get(x, y) != 0 && f.get(x, y) == 0 {
                inside.push((dx, dy, v));
            }
            let d = dx.hypot(dy);
            if d >= r0 && d <= r1 && m.get(x, y) == 0 && c.breast_mask.get(x, y) != 0 {
                let row = [1.0, dx, dy];
                for a in 0..3 {
                    for b in 0..3 {
                        ata[a][b] += row[a] * row[b];
                    }
                    atb[a] += row[a] * v;
                }
            }
        }
    }
    let coef = solve3(ata, atb);
    let (mut lesion, mut tissue) = (0.0, 0.0);
    for (dx, dy, v) in inside {
        lesion += v;
        tissue += coef[0] + coef[1] * dx + coef[2] * dy;
    }
    lesion / tissue - 1.0
}

/// Solves a 3 x 3 linear system by Cramer's rule.
fn solve3(a: [[f64; 3]; 3], b: [f64; 3]) -> [f64; 3] {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(a);
    let mut x = [0.0; 3];
    for (i, xi) in x.iter_mut().enumerate() {
        let mut m = a;
        for r in 0..3 {
            m[r][i] = b[r];
        }
        *xi = det(m) / d;
    }
    x
}

#[test]
fn lesion_contrast_is_as_requested() {
    let p = PhantomParams {
        cases: 96,
        seed: 21,
        width_mm: 80.0,
        spacing_mm: 0.4,
        min_diameter_mm: 8.0,
        max_diameter_mm: 14.0,
        spicule_length_mm: (2.0, 5.0),
        lesion_contrast: 0.05,
        ..Default::default()
    };
    let flat = PhantomParams { lesion_contrast: 0.0, ..p.clone() };
    let mut ring = Vec::new();
    for i in 0..p.cases {
        if case_label(&p, i) == Label::Normal {
            continue;
        }
        let (c, c0) = (generate_case(&p, i), generate_case(&flat, i));
        let l = &c.meta.lesions[0];
        // Against the same image without the lesion: exactly the drawn contrast in the body.
        let (mut s, mut n) = (0.0, 0.0);
        for (j, &m) in c.lesion_masks[0].data.iter().enumerate() {
            if m != 0 && c.feature_masks[0].data[j] == 0 {
                s += c.image.data[j] as f64 / c0.image.data[j] as f64 - 1.0;
                n += 1.0;
            }
        }
        let exact = s / n;
        assert!(exact > 0.75 * l.contrast && exact < 1.05 * l.contrast, "case {i}: {exact} vs {}", l.contrast);
        // Against the surrounding tissue: the requested contrast give or take the anatomical noise.
        ring.push(measured_contrast(&c, 0, p.spacing_mm));
    }
    ring.sort_by(f64::total_cmp);
    let median = ring[ring.len() / 2];
    assert!(ring.len() >= 10);
    assert!(median > 0.5 * p.lesion_contrast && median < 1.5 * p.lesion_contrast, "median {median} of {ring:?}");
}

#[test]
fn dicom_layout_reads_back_with_every_syntax_and_monochrome1_inverted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ph");
    let p = small(8, 2);
    let summary = write(&dir, &p, OutputFormat::Dicom);
    assert_eq!(summary.images, 8);
    assert_eq!(summary.normal + summary.benign + summary.malignant, 8);

    let cases = layouts::load(Format::Phantom, &dir).unwrap();
    assert_eq!(cases.len(), 8);
    let manifest: PhantomManifest =
        serde_json::from_slice(&std::fs::read(dir.join(layouts::PHANTOM_MANIFEST)).unwrap()).unwrap();
    assert_eq!((manifest.version, manifest.seed), (1, 2));
    assert_eq!(manifest.params["width_mm"], 30.0);
    let mut syntaxes = std::collections::BTreeSet::new();
    for (i, mc) in manifest.cases.iter().enumerate() {
        let case = &cases[i];
        assert_eq!(case.image, dir.join(&mc.image));
        assert_eq!(case.patient, format!("PH-{:05}", i / 4));
        assert_eq!(case.label, case_label(&p, i));
        let g = generate_case(&p, i);
        let m = mammo_io::read_image(&case.image).unwrap();
        assert_eq!(m.info.laterality, Some(case_slot(i).laterality));
        assert_eq!(m.info.view, Some(case_slot(i).view));
        assert_eq!(m.info.spacing_mm, Some((0.4, 0.4)));
        assert_eq!(m.info.bits_stored, p.bits_stored);
        if let SourceKind::Dicom { transfer_syntax, .. } = &m.info.source {
            syntaxes.insert(transfer_syntax.clone());
        }
        let (stored, _) = m.to_u16_after_modality();
        let full = (1u16 << p.bits_stored) - 1;
        if i % 5 == 2 {
            assert_eq!(m.info.photometric, Photometric::Monochrome1, "case {i}");
            assert!(stored.data.iter().zip(&g.image.data).all(|(&s, &v)| s == full - v));
        } else {
            assert_eq!(m.info.photometric, Photometric::Monochrome2, "case {i}");
            assert_eq!(stored.data, g.image.data);
        }
        // Either way the reader's density view is "brighter = denser": the breast outshines the air.
        let d = m.density_values();
        let mean = |inside: bool| {
            let v: Vec<f64> = d
                .data
                .iter()
                .zip(&g.breast_mask.data)
                .filter(|(_, b)| (**b != 0) == inside)
                .map(|(&v, _)| v as f64)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean(true) - mean(false) > 0.2 * full as f64, "case {i}");
        for (k, lesion) in case.lesions.iter().enumerate() {
            let mask = layouts::rasterize(&lesion.mask, m.width, m.height).unwrap();
            let want: Vec<u8> = g.lesion_masks[k].data.iter().map(|&v| (v != 0) as u8).collect();
            assert_eq!(mask.data, want, "case {i}: mask round trip");
            let f = layouts::rasterize(lesion.feature_mask.as_ref().unwrap(), m.width, m.height).unwrap();
            assert_eq!(f.data.iter().any(|&v| v != 0), lesion.label == Label::Malignant);
        }
    }
    assert_eq!(syntaxes.len(), 4, "{syntaxes:?}");

    // The fake identity is in the files (so leak tests elsewhere can fail), under recognisable values.
    let bytes = std::fs::read(&cases[0].image).unwrap();
    let contains = |n: &str| bytes.windows(n.len()).any(|w| w == n.as_bytes());
    let id = fake_identity(0);
    assert!(contains(&id.patient_name) && contains(&id.patient_id) && contains(&id.institution));
    assert!(contains(&id.birth_date) && contains(&id.accession_number));
    let json = std::fs::read_to_string(dir.join(layouts::PHANTOM_MANIFEST)).unwrap();
    for v in id.values() {
        assert!(!json.contains(&v), "{v} in phantom.json");
    }
}

#[test]
fn png_layout_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ph");
    let p = small(4, 4);
    write(&dir, &p, OutputFormat::Png);
    let cases = layouts::load(Format::Phantom, &dir).unwrap();
    assert_eq!(cases.len(), 4);
    for (i, c) in cases.iter().enumerate() {
        assert!(c.image.extension().unwrap() == "png");
        let m = mammo_io::read_image(&c.image).unwrap();
        assert_eq!(m.to_u16_after_modality().0.data, generate_case(&p, i).image.data);
        assert_eq!(c.view, Some(case_slot(i).view));
    }
}

#[test]
fn mias_layout_has_pairs_of_1024_px_pgms_and_an_info_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mias");
    let p = small(6, 8);
    let summary = write(&dir, &p, OutputFormat::Mias);
    assert_eq!(summary.images, 6);
    let info = std::fs::read_to_string(dir.join(MIAS_INFO)).unwrap();
    let lines: Vec<&str> = info.lines().collect();
    assert_eq!(lines.len(), 6, "{info}");
    for (k, line) in lines.iter().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], format!("mdb{:03}", k + 1));
        assert!(["F", "G", "D"].contains(&f[1]), "{line}");
        let index = 4 * (k / 2) + if k % 2 == 0 { 3 } else { 1 };
        match case_label(&p, index) {
            Label::Normal => assert_eq!(&f[2..], ["NORM"], "{line}"),
            label => {
                assert_eq!(f.len(), 7, "{line}");
                let want = if label == Label::Malignant { ["SPIC", "M"] } else { ["CIRC", "B"] };
                assert_eq!(&f[2..4], want, "{line}");
                let (x, y, r): (i64, i64, i64) = (f[4].parse().unwrap(), f[5].parse().unwrap(), f[6].parse().unwrap());
                assert!((0..1024).contains(&x) && (0..1024).contains(&y) && r > 0, "{line}");
                // The centre (bottom-left origin) is on the breast, which is brighter than the padding.
                let m = mammo_io::read_image(&dir.join(format!("{}.pgm", f[0]))).unwrap();
                assert!(m.samples.get(((1024 - y) * 1024 + x) as usize) > 40, "{line}");
            }
        }
        let m = mammo_io::read_image(&dir.join(format!("{}.pgm", f[0]))).unwrap();
        assert_eq!((m.width, m.height, m.info.bits_stored), (1024, 1024, 8));
        // Right breasts (odd numbers, as in MIAS) have the chest wall on the right.
        let col_sum = |x: usize| (0..1024).map(|y| m.samples.get(y * 1024 + x) as u64).sum::<u64>();
        if k % 2 == 0 {
            assert!(col_sum(1023) > col_sum(0), "{line}");
        } else {
            assert!(col_sum(0) > col_sum(1023), "{line}");
        }
    }
    // The mini-MIAS reader agrees on pairs, sides and labels, and its disks cover the lesions.
    let cases = layouts::load(Format::MiniMias, &dir).unwrap();
    assert_eq!(cases.len(), 6);
    for (k, c) in cases.iter().enumerate() {
        let index = 4 * (k / 2) + if k % 2 == 0 { 3 } else { 1 };
        assert_eq!(c.laterality, Some(case_slot(index).laterality), "mdb{:03}", k + 1);
        assert_eq!(c.patient, cases[k & !1].patient, "a pair is one woman");
        assert_eq!(c.label, case_label(&p, index));
        let g = generate_case(&p, index);
        assert_eq!(c.lesions.len(), g.meta.lesions.len());
        for (l, gl) in c.lesions.iter().zip(&g.meta.lesions) {
            assert_eq!(l.label, gl.label);
            let disk = layouts::rasterize(&l.mask, 1024, 1024).unwrap();
            let area = disk.data.iter().filter(|&&v| v != 0).count() as f64;
            // The enclosing circle holds the lesion (its area at 0.2 mm is the mask's area scaled by 4).
            let lesion_area = g.lesion_masks[0].data.iter().filter(|&&v| v != 0).count() as f64 * 4.0;
            assert!(area >= 0.9 * lesion_area, "{area} < {lesion_area}");
        }
    }
    assert_ne!(cases[0].patient, cases[2].patient);
}

#[test]
fn cbis_layout_has_the_exact_csv_header_and_every_referenced_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cbis");
    let p = small(16, 6);
    let summary = write(&dir, &p, OutputFormat::Cbis);
    let lesions = (0..16).filter(|&i| case_label(&p, i) != Label::Normal).count();
    assert_eq!((summary.images, summary.skipped_normal), (lesions, 16 - lesions));
    let csv = std::fs::read_to_string(dir.join(CBIS_CSV)).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), CBIS_CSV_HEADER);
    assert_eq!(
        CBIS_CSV_HEADER,
        "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,\
         mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), lesions);
    let on_disk = |csv_path: &str, file: &str| -> PathBuf {
        let p = Path::new(csv_path);
        dir.join("CBIS-DDSM").join(p.parent().unwrap()).join(file)
    };
    for r in &rows {
        assert_eq!(r.len(), 14);
        assert!(r[0].starts_with("P_") && r[0].len() == 7, "{r:?}");
        assert!(["1", "2", "3", "4"].contains(&r[1]));
        assert!(["LEFT", "RIGHT"].contains(&r[2]) && ["CC", "MLO"].contains(&r[3]));
        assert_eq!((r[4], r[5]), ("1", "mass"));
        match r[9] {
            "MALIGNANT" => assert_eq!((r[6], r[7]), ("IRREGULAR", "SPICULATED")),
            "BENIGN" => assert!(["ROUND", "OVAL"].contains(&r[6]) && r[7] == "CIRCUMSCRIBED"),
            other => panic!("pathology {other}"),
        }
        let (assessment, subtlety): (u8, u8) = (r[8].parse().unwrap(), r[10].parse().unwrap());
        assert!((2..=5).contains(&assessment) && (1..=5).contains(&subtlety));
        let folder = format!("Mass-Training_{}_{}_{}", r[0], r[2], r[3]);
        assert!(r[11].starts_with(&format!("{folder}/")) && r[11].ends_with("/000000.dcm"));
        assert!(r[12].starts_with(&format!("{folder}_1/")) && r[12].ends_with("/000000.dcm"));
        assert!(r[13].starts_with(&format!("{folder}_1/")) && r[13].ends_with("/000001.dcm"));
        let full = mammo_io::read_image(&on_disk(r[11], "1-1.dcm")).unwrap();
        let crop = mammo_io::read_image(&on_disk(r[12], "1-1.dcm")).unwrap();
        let mask = mammo_io::read_image(&on_disk(r[13], "1-2.dcm")).unwrap();
        assert_eq!(full.info.photometric, Photometric::Monochrome2);
        assert_eq!((mask.width, mask.height), (full.width, full.height));
        assert!(crop.width < full.width || crop.height < full.height);
        let values: std::collections::BTreeSet<i32> = (0..mask.samples.len()).map(|i| mask.samples.get(i)).collect();
        assert_eq!(values.into_iter().collect::<Vec<_>>(), vec![0, 255]);
        assert_eq!(full.info.view, View::parse(r[3]));
    }
    // The CBIS-DDSM reader finds every image and picks the mask (not the crop) as ground truth.
    let cases = layouts::load(Format::CbisDdsm, &dir).unwrap();
    assert_eq!(cases.len(), lesions);
    for c in &cases {
        let p_num: usize = c.patient.trim_start_matches("P_").parse().unwrap();
        let folder = c.image.strip_prefix(dir.join("CBIS-DDSM")).unwrap().components().next().unwrap();
        let folder = folder.as_os_str().to_string_lossy().to_string();
        let slot = if folder.ends_with("LEFT_CC") {
            0
        } else if folder.ends_with("LEFT_MLO") {
            1
        } else if folder.ends_with("RIGHT_CC") {
            2
        } else {
            3
        };
        let index = 4 * (p_num - 1) + slot;
        assert_eq!(c.laterality, Some(case_slot(index).laterality));
        assert_eq!(c.label, case_label(&p, index));
        let g = generate_case(&p, index);
        let mask = layouts::rasterize(&c.lesions[0].mask, g.image.width, g.image.height).unwrap();
        let want: Vec<u8> = g.lesion_masks[0].data.iter().map(|&v| (v != 0) as u8).collect();
        assert_eq!(mask.data, want, "{}", c.image.display());
    }
}

#[test]
fn refuses_a_non_empty_directory_and_bad_parameters_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep.txt"), b"user data").unwrap();
    let e = write_phantom(tmp.path(), &small(4, 1), OutputFormat::Dicom, &|_, _| {}).unwrap_err();
    assert!(matches!(e, PhantomError::OutputNotEmpty(_)));
    assert!(e.to_string().contains(&tmp.path().display().to_string()), "{e}");
    assert_eq!(std::fs::read(tmp.path().join("keep.txt")).unwrap(), b"user data");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for bad in [
        PhantomParams { malignant_fraction: 0.8, benign_fraction: 0.5, ..small(4, 1) },
        PhantomParams { bits_stored: 10, ..small(4, 1) },
        PhantomParams { min_diameter_mm: 9.0, max_diameter_mm: 3.0, ..small(4, 1) },
        PhantomParams { width_mm: 5.0, ..small(4, 1) },
        PhantomParams { cases: 0, ..small(4, 1) },
        // Sizes that would explode a loop or a kernel, and a spacing no reader accepts.
        PhantomParams { blur_mm: 1e9, ..small(4, 1) },
        PhantomParams { max_diameter_mm: 1e6, ..small(4, 1) },
        PhantomParams { spicule_length_mm: (1.0, 1e9), ..small(4, 1) },
        PhantomParams { spacing_mm: 2.0, width_mm: 100.0, ..small(4, 1) },
        // 8000 x 9600 px: each side is allowed, but its texture grid would need gigabytes per image.
        PhantomParams { spacing_mm: 0.025, width_mm: 200.0, ..small(4, 1) },
    ] {
        let e = write_phantom(&empty, &bad, OutputFormat::Png, &|_, _| {}).unwrap_err();
        assert!(matches!(e, PhantomError::InvalidParams(_)), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "nothing written for bad parameters");

    let all_normal = PhantomParams { malignant_fraction: 0.0, benign_fraction: 0.0, ..small(4, 1) };
    let e = write_phantom(&tmp.path().join("cbis"), &all_normal, OutputFormat::Cbis, &|_, _| {}).unwrap_err();
    assert!(e.to_string().contains("normal"), "{e}");
}

/// Run by hand: `cargo test --release -p mammo-phantom -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing_of_a_default_size_case() {
    let p = PhantomParams { cases: 8, ..Default::default() };
    let (w, h) = p.image_size();
    let t = std::time::Instant::now();
    for i in 0..p.cases {
        std::hint::black_box(generate_case(&p, i));
    }
    println!("{w} x {h} px: {:.3} s per case", t.elapsed().as_secs_f64() / p.cases as f64);
    for format in OutputFormat::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        write(&tmp.path().join("p"), &p, format);
        println!("write_phantom {format:?}: {:.3} s per case (all cores)", t.elapsed().as_secs_f64() / p.cases as f64);
    }
}

#[test]
fn lesions_too_large_for_a_small_breast_are_shrunk_into_it() {
    // Default lesion sizes (5-30 mm, spicules up to 15 mm) in a 40 mm wide image, as the CLI tests use.
    let p = PhantomParams { cases: 24, seed: 5, width_mm: 40.0, ..Default::default() };
    let mut labels = std::collections::BTreeSet::new();
    for i in 0..p.cases {
        let c = generate_case(&p, i);
        labels.insert(case_label(&p, i));
        for (k, l) in c.meta.lesions.iter().enumerate() {
            let m = &c.lesion_masks[k];
            let area = m.data.iter().filter(|&&v| v != 0).count();
            assert!(area > 0, "case {i}");
            assert!(m.data.iter().zip(&c.breast_mask.data).all(|(&m, &b)| m == 0 || b != 0), "case {i}");
            let edge = m.data.chunks(m.width).enumerate().any(|(y, row)| {
                row[0] != 0 || row[m.width - 1] != 0 || ((y == 0 || y == m.height - 1) && row.iter().any(|&v| v != 0))
            });
            assert!(!edge, "case {i}: lesion touches the image edge");
            assert!(l.diameter_mm > 2.0, "case {i}: {} mm", l.diameter_mm);
        }
    }
    assert_eq!(labels.len(), 3, "{labels:?}");
}

/// Run by hand to look at the phantom: `cargo test --release -p mammo-phantom -- --ignored look`. Writes
/// 8-bit PNGs (windowed to the breast's 1st-99.8th percentiles) of the first normal and the first
/// malignant MLO image of a default phantom to `$TMPDIR/phantom-look/`, at 0.2 mm and binned to the
/// working resolution of 0.4 mm, with a 0.4 mm crop around the lesion.
#[test]
#[ignore]
fn look() {
    let dir = std::env::temp_dir().join("phantom-look");
    std::fs::create_dir_all(&dir).unwrap();
    // `LOOK_CONTRAST=0.15` exaggerates the lesions (the lines keep their fixed contrast).
    let lesion_contrast = std::env::var("LOOK_CONTRAST").ok().and_then(|v| v.parse().ok()).unwrap_or(0.04);
    let p = PhantomParams { cases: 64, lesion_contrast, ..Default::default() };
    let mut wanted = vec![Label::Normal, Label::Malignant];
    for i in (1..p.cases).step_by(2) {
        let label = case_label(&p, i);
        let Some(k) = wanted.iter().position(|&l| l == label) else { continue };
        wanted.remove(k);
        let c = generate_case(&p, i);
        let mut inside: Vec<u16> =
            c.image.data.iter().zip(&c.breast_mask.data).filter(|(_, m)| **m != 0).map(|(&v, _)| v).collect();
        inside.sort_unstable();
        let (lo, hi) = (inside[inside.len() / 100] as f64, inside[inside.len() * 998 / 1000] as f64);
        let to8 = |v: f64| ((v - lo) / (hi - lo) * 255.0).round().clamp(0.0, 255.0) as u8;
        let (w, h) = (c.image.width, c.image.height);
        let full = mammo_io::GrayImage::from_vec(w, h, c.image.data.iter().map(|&v| to8(v as f64)).collect());
        let name = format!("{:03}-{:?}-{:?}-{:?}", i, label, c.meta.laterality, c.meta.view).to_lowercase();
        mammo_io::png_io::write_png8(&dir.join(format!("{name}-0.2mm.png")), &full).unwrap();
        let (w2, h2) = (w / 2, h / 2);
        let binned: Vec<u8> = (0..w2 * h2)
            .map(|j| {
                let (r, col) = (2 * (j / w2), 2 * (j % w2));
                let s: f64 =
                    [(0, 0), (0, 1), (1, 0), (1, 1)].iter().map(|(a, b)| c.image.get(col + b, r + a) as f64).sum();
                to8(s / 4.0)
            })
            .collect();
        let half = mammo_io::GrayImage::from_vec(w2, h2, binned.clone());
        mammo_io::png_io::write_png8(&dir.join(format!("{name}-0.4mm.png")), &half).unwrap();
        // The high-pass residual (relative to a 2 mm Gaussian blur) at 0.4 mm, +-4 % to black/white:
        // what thin lines and spicules look like to a detector.
        let v: Vec<f64> = (0..w2 * h2)
            .map(|j| {
                let (r, col) = (2 * (j / w2), 2 * (j % w2));
                [(0, 0), (0, 1), (1, 0), (1, 1)].iter().map(|(a, b)| c.image.get(col + b, r + a) as f64).sum::<f64>()
                    / 4.0
            })
            .collect();
        let smooth = gaussian_blur(&v, w2, h2, 5.0);
        let inside = |j: usize| c.breast_mask.get(2 * (j % w2), 2 * (j / w2)) != 0;
        let hp: Vec<u8> = (0..w2 * h2)
            .map(|j| {
                if !inside(j) {
                    return 0;
                }
                let rel = v[j] / smooth[j].max(1.0) - 1.0;
                ((rel / 0.04 * 127.5) + 127.5).round().clamp(0.0, 255.0) as u8
            })
            .collect();
        let hp_img = mammo_io::GrayImage::from_vec(w2, h2, hp.clone());
        mammo_io::png_io::write_png8(&dir.join(format!("{name}-0.4mm-highpass.png")), &hp_img).unwrap();
        if let Some(l) = c.meta.lesions.first() {
            let (cx, cy) = ((l.cx / 2.0) as usize, (l.cy / 2.0) as usize);
            let r = 100usize;
            let (x0, y0) = (cx.saturating_sub(r).min(w2 - 2 * r), cy.saturating_sub(r).min(h2 - 2 * r));
            let crop: Vec<u8> = (0..4 * r * r).map(|j| binned[(y0 + j / (2 * r)) * w2 + x0 + j % (2 * r)]).collect();
            let crop = mammo_io::GrayImage::from_vec(2 * r, 2 * r, crop);
            mammo_io::png_io::write_png8(&dir.join(format!("{name}-0.4mm-lesion.png")), &crop).unwrap();
            let crop: Vec<u8> = (0..4 * r * r).map(|j| hp[(y0 + j / (2 * r)) * w2 + x0 + j % (2 * r)]).collect();
            let crop = mammo_io::GrayImage::from_vec(2 * r, 2 * r, crop);
            mammo_io::png_io::write_png8(&dir.join(format!("{name}-0.4mm-lesion-highpass.png")), &crop).unwrap();
        }
        println!("{name}: {:?}", c.meta.lesions.first().map(|l| (l.diameter_mm, l.cx, l.cy)));
        if wanted.is_empty() {
            break;
        }
    }
}

/// Separable Gaussian blur (standard deviation `sigma` pixels, edges clamped), for looking and testing.
fn gaussian_blur(v: &[f64], w: usize, h: usize, sigma: f64) -> Vec<f64> {
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-r..=r).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f64 = k.iter().sum();
    let at = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] =
                k.iter().enumerate().map(|(j, kv)| kv * v[y * w + at(x as isize + j as isize - r, w)]).sum::<f64>()
                    / sum;
        }
    }
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] =
                k.iter().enumerate().map(|(j, kv)| kv * tmp[at(y as isize + j as isize - r, h) * w + x]).sum::<f64>()
                    / sum;
        }
    }
    out
}
