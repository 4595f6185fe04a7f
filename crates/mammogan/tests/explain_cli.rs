//! `mammogan explain` end to end after a tiny training: `map.png` is the raw highlight at the image's
//! size (16-bit, its brightest pixel `map_max`), and a directory of images gives, per image, what
//! `explain` gives on each file alone, plus `scores.csv`; an unreadable file is a warning and a failure
//! at the end, not the end of the others.

use std::path::{Path, PathBuf};

mod common;
use common::{exe, run_ok, small_dataset};

/// A run with both models trained for a few steps on the shared small phantom.
fn tiny_run(tmp: &Path, ds: &Path) -> PathBuf {
    let run = tmp.join("run");
    let mut args: Vec<String> = ["train", "--data", ds.to_str().unwrap(), "--out", run.to_str().unwrap()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for kv in [
        "train.steps=6",
        "train.batch_size=8",
        "train.checkpoint_every=6",
        "attribution.gen_channels=4",
        "attribution.critic_channels=4",
    ] {
        args.extend(["--set".to_string(), kv.to_string()]);
    }
    args.extend(["--threads".to_string(), "2".to_string()]);
    run_ok(&args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    run
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// map.png's size and 16-bit values.
fn map_values(path: &Path) -> (usize, usize, Vec<u16>) {
    let m = mammo_io::read_image(path).unwrap();
    match m.samples {
        mammo_io::Samples::Unsigned(v) => (m.width, m.height, v),
        other => panic!("map.png is unsigned 16-bit, got {other:?}"),
    }
}

#[test]
fn explain_writes_the_raw_map_and_explains_a_directory_like_each_file() {
    let (_, ph, ds) = small_dataset();
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path(), ds);
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // Three phantom images laid out to exercise the search: two with the same stem, one DICOM without
    // an extension; a text file beside them is not an image.
    let mut images: Vec<PathBuf> = std::fs::read_dir(ph.join("images")).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    assert!(images[0].extension().is_some_and(|e| e == "dcm"), "{images:?}");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let layout = [("case.dcm", &images[0]), ("sub/case.dcm", &images[1]), ("noext", &images[2])];
    for (name, src) in layout {
        std::fs::copy(src, input.join(name)).unwrap();
    }
    std::fs::write(input.join("notes.txt"), "not an image").unwrap();

    let multi = tmp.path().join("multi");
    let out = run_ok(&["explain", &s(&run), &s(&input), "--out", &s(&multi)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.contains(": score ")).count(), 3, "one line per image:\n{stdout}");

    // scores.csv: a header and a row per image, sorted by the file's path relative to the input.
    let csv = std::fs::read_to_string(multi.join("scores.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "file,score,top_region_x,top_region_y,top_region_w,top_region_h,top_region_score");
    let files: Vec<&str> = lines[1..].iter().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(files, ["case.dcm", "noext", "sub/case.dcm"], "{csv}");

    // Folders named after the stems, the later of two equal stems numbered; each the same as explain
    // on that file alone.
    for ((file, folder), row) in files.iter().zip(["case", "noext", "case-2"]).zip(&lines[1..]) {
        let dir = multi.join(folder);
        let single = tmp.path().join(format!("single-{folder}"));
        run_ok(&["explain", &s(&run), &s(&input.join(file)), "--out", &s(&single)]);
        assert!(!single.join("scores.csv").exists(), "one file: the layout of before");
        let result = json(&single.join("result.json"));
        assert_eq!(json(&dir.join("result.json")), result, "{file}");
        for f in ["map.png", "heatmap.png", "overlay.png"] {
            assert!(std::fs::read(dir.join(f)).unwrap() == std::fs::read(single.join(f)).unwrap(), "{file}: {f}");
        }
        // The row is the result's score and top region.
        let top = &result["regions"][0];
        let fields: Vec<f64> = row.split(',').skip(1).map(|v| v.parse().unwrap()).collect();
        let expect: Vec<f64> = [&result["score"], &top["x"], &top["y"], &top["w"], &top["h"], &top["score"]]
            .map(|v| v.as_f64().unwrap())
            .into();
        // (serde_json's float parsing may be off by an ulp from Rust's shortest round-trip printing.)
        assert_eq!(fields.len(), expect.len(), "{row}");
        assert!(
            fields.iter().zip(&expect).all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0)),
            "{row} vs {expect:?}"
        );

        // map.png: the raw highlight at the image's size, 65535 = map_max.
        let original = mammo_io::read_image(&input.join(file)).unwrap();
        let (w, h, map) = map_values(&single.join("map.png"));
        assert_eq!((w, h), (original.width, original.height), "{file}");
        assert_eq!((result["width"].as_u64(), result["height"].as_u64()), (Some(w as u64), Some(h as u64)));
        let map_max = result["map_max"].as_f64().expect("result.json has map_max");
        assert!(map_max > 0.0, "a trained attribution model highlights something: {result}");
        assert_eq!(map.iter().copied().max(), Some(65535), "{file}: the brightest pixel is map_max");
        // Zero outside the breast; pixel * map_max / 65535 is the highlight, within (0, map_max] inside.
        let lit = map.iter().filter(|&&v| v > 0).count();
        assert!(lit > 0 && lit < map.len(), "{file}: the highlight lies in the breast, not everywhere");
        let as_highlight = |v: u16| f64::from(v) * map_max / 65535.0;
        assert!((as_highlight(65535) - map_max).abs() <= 1e-12 * map_max);
        let mean = map.iter().map(|&v| as_highlight(v)).sum::<f64>() / map.len() as f64;
        assert!(mean > 0.0 && mean < map_max, "{file}: mean highlight {mean} within (0, {map_max})");
    }

    // Several files, one unreadable: a warning naming it, the others explained, exit code 1.
    std::fs::write(input.join("broken.png"), b"not a png").unwrap();
    let several = tmp.path().join("several");
    let out = exe()
        .args(["explain", &s(&run), &s(&input.join("broken.png")), &s(&input.join("case.dcm")), "--out", &s(&several)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.lines().any(|l| l.contains("broken.png") && l.contains("not explained")), "{stderr}");
    let csv = std::fs::read_to_string(several.join("scores.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with(&format!("{},", s(&input.join("case.dcm")))), "{csv}");
    assert!(several.join("case/result.json").is_file() && !several.join("broken").exists());
}
