//! Reads the event files we write with TensorBoard's own reader (`EventAccumulator`, the code behind the
//! TensorBoard UI), so the hand-written protobuf and TFRecord framing are checked against the real thing
//! rather than against our own decoder. Needs python3 with the package pinned in `requirements.txt`.
//!
//! Missing python or tensorboard never makes this pass silently: under CI (env `CI` set) the test fails
//! and says what to install; elsewhere it first tries `python3 -m pip install -r requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;

use mammo_track::{GridOptions, TensorBoardWriter, TileScale, WallTime, image_grid_png};

fn requirements() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/requirements.txt")
}

/// Whether `python3` can import the reader; `Err` if python3 itself cannot run.
fn reader_importable() -> Result<bool, String> {
    let import = "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator";
    match Command::new("python3").args(["-c", import]).output() {
        Ok(out) => Ok(out.status.success()),
        Err(e) => {
            Err(format!("cannot run python3 ({e}); install Python 3 and `pip install -r {}`", requirements().display()))
        }
    }
}

fn ensure_tensorboard() {
    match reader_importable() {
        Ok(true) => return,
        Ok(false) => {}
        Err(message) => panic!("{message}"),
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "the tensorboard Python package is not installed; CI must run `python3 -m pip install -r {}` first",
            requirements().display()
        );
    }
    eprintln!("tensorboard not importable; installing from {}", requirements().display());
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements())
        .status()
        .expect("run python3 -m pip");
    assert!(status.success(), "`python3 -m pip install -r {}` failed ({status})", requirements().display());
    assert_eq!(reader_importable(), Ok(true), "tensorboard still not importable after pip install");
}

/// Loads `dir` with EventAccumulator and prints its scalars and images as JSON.
const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={'images': 0, 'scalars': 0})
ea.Reload()
tags = ea.Tags()
print(json.dumps({
    'scalars': {t: [[e.step, e.value, e.wall_time] for e in ea.Scalars(t)] for t in tags['scalars']},
    'images': {t: [{'step': e.step, 'width': e.width, 'height': e.height, 'wall_time': e.wall_time,
                    'png': e.encoded_image_string.hex()} for e in ea.Images(t)] for t in tags['images']},
}))
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn tensorboard_reads_our_scalars_and_images() {
    ensure_tensorboard();
    let dir = tempfile::tempdir().unwrap();
    let tb_dir = dir.path().join("tb");
    let wall_time = 1_700_000_000.25;
    let mut tb = TensorBoardWriter::create(&tb_dir, "mammo-track-test", WallTime::Fixed(wall_time)).unwrap();

    let scalars: Vec<(&str, u64, f32)> = vec![
        ("classifier/loss", 1, 0.693),
        ("classifier/loss", 2, 0.41),
        ("classifier/loss", 300, 1e-4),
        ("critic/wasserstein", 1, -3.5),
        ("critic/wasserstein", 2, 12345.678),
    ];
    for &(tag, step, value) in &scalars {
        tb.scalar(step, tag, value).unwrap();
    }
    // An "x, m, x + m" grid: two 8x6 patches and a signed map.
    let x: Vec<f32> = (0..48).map(|i| i as f32 / 47.0).collect();
    let m: Vec<f32> = (0..48).map(|i| if i % 7 == 0 { -0.3 } else { 0.1 }).collect();
    let xm: Vec<f32> = x.iter().zip(&m).map(|(a, b)| a + b).collect();
    let options = GridOptions { scale: TileScale::MinMax, ..GridOptions::default() };
    let (png, width, height) = image_grid_png(&[&x, &m, &xm], 8, 6, 3, &options).unwrap();
    assert_eq!((width, height), (3 * 8 + 2 * 2, 6));
    tb.image(2, "attribution/x_m_xm", &png, width, height, 1).unwrap();
    tb.flush().unwrap();

    let out = Command::new("python3").arg("-c").arg(READER).arg(&tb_dir).output().expect("run python3");
    assert!(out.status.success(), "EventAccumulator failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reader prints JSON");

    // Scalars: the same tags, and per tag the same (step, value) series in order.
    let got = read["scalars"].as_object().unwrap();
    let mut want_tags: Vec<&str> = scalars.iter().map(|s| s.0).collect();
    want_tags.dedup();
    let mut got_tags: Vec<&str> = got.keys().map(String::as_str).collect();
    got_tags.sort();
    assert_eq!(got_tags, want_tags);
    for tag in want_tags {
        let want: Vec<(u64, f32)> = scalars.iter().filter(|s| s.0 == tag).map(|s| (s.1, s.2)).collect();
        let series: Vec<(u64, f32, f64)> = got[tag]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap() as f32, e[2].as_f64().unwrap()))
            .collect();
        // simple_value is a 32-bit float on both sides, so the values come back exactly.
        assert_eq!(series.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(), want, "tag {tag}");
        assert!(series.iter().all(|s| s.2 == wall_time), "wall times of {tag}");
    }

    // The image: one event at step 2, the declared size, our PNG bytes, and they decode to that size.
    let images = read["images"]["attribution/x_m_xm"].as_array().expect("image tag present");
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image["step"], 2);
    assert_eq!((image["width"].as_u64(), image["height"].as_u64()), (Some(width.into()), Some(height.into())));
    let bytes = unhex(image["png"].as_str().unwrap());
    assert_eq!(bytes, png);
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).expect("PNG decodes");
    assert_eq!((info.width, info.height, info.color_type), (width, height, png::ColorType::Grayscale));
    // MinMax: the first tile's darkest pixel is black, its brightest white; the gap is white.
    let last_row = 5 * width as usize;
    assert_eq!((pixels[0], pixels[last_row + 7], pixels[8]), (0, 255, 255));
}
