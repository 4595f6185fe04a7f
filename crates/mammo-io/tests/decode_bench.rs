//! mammo-io's side of `bench/decode.py`: decodes N files M times with `mammo_io::read_image` and prints one
//! `BENCH_JSON {...}` line per file (median and best ms/image, MP/s). A second pass, after every file has
//! been timed, measures the parts separately: reading the file, parsing it into a dicom-rs object, and
//! dicom-rs's own pixel decoder (which `read_image` uses for JPEG and JPEG 2000, not for native or RLE data).
//!
//! Ignored by default (it needs files): `bench/decode.py` runs it as
//! `MAMMOGAN_BENCH_FILES=$'a.dcm\nb.dcm' MAMMOGAN_BENCH_REPEAT=5 \
//!  cargo test --release -p mammo-io --test decode_bench -- --ignored --nocapture --test-threads=1`.
//! `MAMMOGAN_BENCH_PHASES=0` skips the second pass (to profile `read_image` alone).

use std::path::Path;
use std::time::Instant;

use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Median ms of reading the file, of `open_file`, and of dicom-rs's `decode_pixel_data_frame(0)` (encapsulated
/// syntaxes only).
fn phases(path: &Path, repeat: usize) -> serde_json::Value {
    let (mut read, mut parse, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        let t = Instant::now();
        let bytes = std::fs::read(path).unwrap();
        read.push(ms(t));
        std::hint::black_box(&bytes);
        drop(bytes);
        let t = Instant::now();
        let obj = OpenFileOptions::new().open_file(path).unwrap();
        parse.push(ms(t));
        let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
        if !matches!(ts.as_str(), "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.1.99") {
            let t = Instant::now();
            let d = obj.decode_pixel_data_frame(0).unwrap();
            std::hint::black_box(d.data());
            decode.push(ms(t));
        }
    }
    serde_json::json!({
        "fs_read": median(&mut read),
        "open_file_parse": median(&mut parse),
        "dicom_rs_decode_frame0": (!decode.is_empty()).then(|| median(&mut decode)),
    })
}

#[test]
#[ignore = "benchmark: run by bench/decode.py with MAMMOGAN_BENCH_FILES set"]
fn decode_bench() {
    let files = std::env::var("MAMMOGAN_BENCH_FILES").expect("MAMMOGAN_BENCH_FILES: newline-separated DICOM paths");
    let repeat: usize = std::env::var("MAMMOGAN_BENCH_REPEAT").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let with_phases = std::env::var("MAMMOGAN_BENCH_PHASES").map_or(true, |v| v != "0");
    let files: Vec<&str> = files.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut results = Vec::new();
    for &file in &files {
        let path = Path::new(file);
        // Warm-up: page cache, lazy statics.
        let m = mammo_io::read_image(path).unwrap_or_else(|e| panic!("{e}"));
        let mut whole = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t = Instant::now();
            let m = mammo_io::read_image(path).unwrap();
            whole.push(ms(t));
            std::hint::black_box(&m);
        }
        let best = whole.iter().copied().fold(f64::INFINITY, f64::min);
        results.push((file, m.width, m.height, median(&mut whole), best));
    }
    let (mut total_mp, mut total_ms) = (0.0, 0.0);
    for (file, width, height, med, best) in results {
        let mp = (width * height) as f64 / 1e6;
        total_mp += mp;
        total_ms += med;
        let phases = with_phases.then(|| phases(Path::new(file), repeat));
        println!(
            "BENCH_JSON {}",
            serde_json::json!({
                "file": file,
                "width": width,
                "height": height,
                "repeat": repeat,
                "median_ms": med,
                "best_ms": best,
                "mp_per_s": mp / (med / 1e3),
                "phases_median_ms": phases,
            })
        );
    }
    println!(
        "BENCH_TOTAL {{\"mp_per_s\": {:.1}, \"ms_per_image\": {:.2}}}",
        total_mp / (total_ms / 1e3),
        total_ms / files.len().max(1) as f64
    );
}
