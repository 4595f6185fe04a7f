//! Inputs that cargo-fuzz once turned into crashes, out-of-memory or multi-second runs: each must now be
//! refused quickly with a one-line error naming the file.

use std::time::{Duration, Instant};

#[test]
fn fuzz_findings_are_refused_quickly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let start = Instant::now();
        // The name says which reader the input was found against (the j2k and deflate targets' findings
        // are kept as the whole DICOM file the target built around them).
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let result = if name.starts_with("pgm") {
            mammo_io::pgm::decode_pgm(&path, &bytes)
        } else if name.starts_with("png") {
            mammo_io::png_io::decode_png(&path, std::io::Cursor::new(&bytes))
        } else {
            mammo_io::dicom::decode_dicom_bytes(&path, &bytes)
        };
        let err = result.expect_err("corrupt input must be refused").to_string();
        assert!(start.elapsed() < Duration::from_secs(1), "{}: took {:?}", path.display(), start.elapsed());
        assert!(err.contains(path.file_name().unwrap().to_str().unwrap()) && !err.contains('\n'), "{err}");
        // The same through the file reader.
        assert!(mammo_io::read_image(&path).is_err());
        n += 1;
    }
    assert!(n >= 2);
}
