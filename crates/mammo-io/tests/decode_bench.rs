//! mammo-io's side of `bench/decode.py`: decodes N files M times with `mammo_io::read_image` and prints one
//! `BENCH_JSON {...}` line per file (median and best ms/image, MP/s), plus where the time goes: reading the
//! file, parsing it into a dicom-rs object, decoding the pixel data, and the rest of `read_image`.
//!
//! Ignored by default (it needs files): `bench/decode.py` runs it as
//! `MAMMOGAN_BENCH_FILES=$'a.dcm\nb.dcm' MAMMOGAN_BENCH_REPEAT=5 \
//!  cargo test --release -p mammo-io --test decode_bench -- --ignored --nocapture --test-threads=1`.

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

#[test]
#[ignore = "benchmark: run by bench/decode.py with MAMMOGAN_BENCH_FILES set"]
fn decode_bench() {
    let files = std::env::var("MAMMOGAN_BENCH_FILES").expect("MAMMOGAN_BENCH_FILES: newline-separated DICOM paths");
    let repeat: usize = std::env::var("MAMMOGAN_BENCH_REPEAT").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut total_mp = 0.0;
    let mut total_ms = 0.0;
    let mut count = 0usize;
    for file in files.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = Path::new(file);
        // Warm-up: page cache, lazy statics.
        let m = mammo_io::read_image(path).unwrap_or_else(|e| panic!("{e}"));
        let mp = (m.width * m.height) as f64 / 1e6;
        let mut whole = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t = Instant::now();
            let m = mammo_io::read_image(path).unwrap();
            whole.push(ms(t));
            std::hint::black_box(&m);
        }
        // Phases, measured separately with the same dicom-rs calls read_dicom makes.
        let (mut read, mut parse, mut decode) = (Vec::new(), Vec::new(), Vec::new());
        // MAMMOGAN_BENCH_PHASES=0 leaves them out (for profiling read_image alone).
        let phases = std::env::var("MAMMOGAN_BENCH_PHASES").map_or(true, |v| v != "0");
        for _ in 0..if phases { repeat } else { 0 } {
            let t = Instant::now();
            let bytes = std::fs::read(path).unwrap();
            read.push(ms(t));
            std::hint::black_box(&bytes);
            drop(bytes);
            let t = Instant::now();
            let obj = OpenFileOptions::new().open_file(path).unwrap();
            parse.push(ms(t));
            let t = Instant::now();
            let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
            if ts != "1.2.840.10008.1.2.1" && ts != "1.2.840.10008.1.2" {
                let d = obj.decode_pixel_data().unwrap();
                std::hint::black_box(d.data());
            }
            decode.push(ms(t));
        }
        let med = median(&mut whole);
        let best = whole.iter().copied().fold(f64::INFINITY, f64::min);
        total_mp += mp;
        total_ms += med;
        count += 1;
        println!(
            "BENCH_JSON {}",
            serde_json::json!({
                "file": file,
                "width": m.width,
                "height": m.height,
                "repeat": repeat,
                "median_ms": med,
                "best_ms": best,
                "mp_per_s": mp / (med / 1e3),
                "phases_median_ms": phases.then(|| serde_json::json!({
                    "fs_read": median(&mut read),
                    "open_file_parse": median(&mut parse),
                    "decode_pixel_data": median(&mut decode),
                })),
            })
        );
    }
    println!(
        "BENCH_TOTAL {{\"mp_per_s\": {:.1}, \"ms_per_image\": {:.2}}}",
        total_mp / (total_ms / 1e3),
        total_ms / count.max(1) as f64
    );
}
