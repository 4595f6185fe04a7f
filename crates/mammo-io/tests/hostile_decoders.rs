//! Issue 11, rows 1, 2 and 4: small files whose codec streams declare far more than their attributes or
//! their size. Each is generated here, then read through the file reader (`read_image`) and the in-memory
//! one the server uses; each must be refused with one line naming the file, within a second, and without
//! the process growing (the peak resident size is read from /proc: nextest runs every test in its own
//! process, so the peak is this test's).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
const HTJ2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.201";
const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// The process's peak resident set, in MB (Linux); `None` elsewhere.
fn peak_rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// Reads `bytes` as the file `name` both ways and returns the (identical) error line.
fn refused(
    name: &str,
    bytes: &[u8],
    in_memory: impl Fn(&Path, &[u8]) -> mammo_io::Result<mammo_io::Mammogram>,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let start = Instant::now();
    let from_file = mammo_io::read_image(&path).expect_err("a hostile file must be refused").to_string();
    let from_memory = in_memory(&path, bytes).expect_err("hostile bytes must be refused").to_string();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{name}: refused only after {took:?}");
    assert_eq!(from_file, from_memory, "both entry points say the same");
    assert!(from_file.starts_with(&path.display().to_string()) && !from_file.contains('\n'), "{from_file}");
    if let Some(mb) = peak_rss_mb() {
        assert!(mb < 200, "{name}: the process reached {mb} MB");
    }
    from_file
}

fn dicom_bytes(p: &Path, b: &[u8]) -> mammo_io::Result<mammo_io::Mammogram> {
    mammo_io::dicom::decode_dicom_bytes(p, b)
}

fn png_bytes(p: &Path, b: &[u8]) -> mammo_io::Result<mammo_io::Mammogram> {
    mammo_io::png_io::decode_png(p, std::io::Cursor::new(b))
}

// ---------------------------------------------------------------------------------------------------------
// DICOM written by hand: the files are hostile, so no writer that validates them will do.

fn element(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend_from_slice(&group.to_le_bytes());
    e.extend_from_slice(&elem.to_le_bytes());
    e.extend_from_slice(vr);
    let mut value = value.to_vec();
    if value.len() % 2 == 1 {
        value.push(if vr == b"UI" || vr == b"OB" { 0 } else { b' ' });
    }
    if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ") {
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        e.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    e.extend_from_slice(&value);
    e
}

/// Preamble, file meta group (explicit VR little endian) naming `ts`, then `dataset` as given.
fn dicom_file(ts: &str, dataset: &[u8]) -> Vec<u8> {
    let mut meta = element(0x0002, 0x0001, b"OB", &[0, 1]);
    meta.extend(element(0x0002, 0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.1.2"));
    meta.extend(element(0x0002, 0x0003, b"UI", b"1.2.3.4"));
    meta.extend(element(0x0002, 0x0010, b"UI", ts.as_bytes()));
    meta.extend(element(0x0002, 0x0012, b"UI", b"1.2.3.4.5"));
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    f.extend(element(0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes()));
    f.extend(meta);
    f.extend_from_slice(dataset);
    f
}

/// The image attributes of a 64 x 64, 16-bit (12 stored) monochrome image.
fn image_attributes(bits_allocated: u16) -> Vec<u8> {
    let us = |v: u16| v.to_le_bytes();
    let mut d = element(0x0028, 0x0002, b"US", &us(1));
    d.extend(element(0x0028, 0x0004, b"CS", b"MONOCHROME2"));
    d.extend(element(0x0028, 0x0010, b"US", &us(64)));
    d.extend(element(0x0028, 0x0011, b"US", &us(64)));
    d.extend(element(0x0028, 0x0100, b"US", &us(bits_allocated)));
    d.extend(element(0x0028, 0x0101, b"US", &us(bits_allocated.min(12))));
    d.extend(element(0x0028, 0x0102, b"US", &us(bits_allocated.min(12) - 1)));
    d.extend(element(0x0028, 0x0103, b"US", &us(0)));
    d
}

/// Encapsulated Pixel Data: an empty basic offset table, then `stream` as one fragment.
fn encapsulated(stream: &[u8]) -> Vec<u8> {
    let mut d = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
    d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    let mut frag = stream.to_vec();
    if frag.len() % 2 == 1 {
        frag.push(0);
    }
    d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
    d.extend_from_slice(&(frag.len() as u32).to_le_bytes());
    d.extend_from_slice(&frag);
    d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    d
}

/// A complete single-tile JPEG 2000 codestream of `w` x `h` 12-bit samples with no coded data (one empty
/// packet): a decoder that trusts it allocates its whole tile — 14 GB for 60000 x 60000.
fn j2k_codestream(w: u32, h: u32) -> Vec<u8> {
    let mut c = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
    for v in [w, h, 0, 0, w, h, 0, 0] {
        c.extend_from_slice(&v.to_be_bytes());
    }
    c.extend_from_slice(&[0, 1, 11, 1, 1]); // one component, 12 bits unsigned, not subsampled
    c.extend_from_slice(&[0xFF, 0x52, 0, 12, 0, 0, 0, 1, 0, 0, 4, 4, 0, 1]); // COD: LRCP, 1 layer, 0 levels, 5-3
    c.extend_from_slice(&[0xFF, 0x5C, 0, 4, 0x40, 0x60]); // QCD: no quantisation, 2 guard bits
    c.extend_from_slice(&[0xFF, 0x90, 0, 10, 0, 0, 0, 0, 0, 15, 0, 1]); // SOT: tile 0, 15 bytes, 1 part
    c.extend_from_slice(&[0xFF, 0x93, 0x00]); // SOD, one empty packet
    c.extend_from_slice(&[0xFF, 0xD9]);
    c
}

/// A JP2 file around a codestream: signature, header box with `ihdr`, codestream box.
fn jp2(codestream: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut j = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A];
    let mut ihdr = vec![0, 0, 0, 22, b'i', b'h', b'd', b'r'];
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&[0, 1, 11, 7, 0, 0]);
    j.extend_from_slice(&(8 + ihdr.len() as u32).to_be_bytes());
    j.extend_from_slice(b"jp2h");
    j.extend_from_slice(&ihdr);
    j.extend_from_slice(&(8 + codestream.len() as u32).to_be_bytes());
    j.extend_from_slice(b"jp2c");
    j.extend_from_slice(codestream);
    j
}

#[test]
fn row1_a_jpeg2000_stream_larger_than_rows_and_columns_is_refused_before_decoding() {
    for ts in [J2K_LOSSLESS, HTJ2K_LOSSLESS] {
        let mut d = image_attributes(16);
        d.extend(encapsulated(&j2k_codestream(60000, 60000)));
        let file = dicom_file(ts, &d);
        assert!(file.len() < 600, "a {}-byte file", file.len());
        let e = refused("j2k-60000.dcm", &file, dicom_bytes);
        assert!(e.contains("JPEG 2000 stream declares 60000 x 60000 pixels but Columns/Rows say 64 x 64"), "{e}");
    }
    // The same inside a JP2 wrapper, and one 64 x 64 codestream with 16 components.
    let mut d = image_attributes(16);
    d.extend(encapsulated(&jp2(&j2k_codestream(60000, 60000), 60000, 60000)));
    let e = refused("jp2-60000.dcm", &dicom_file(J2K_LOSSLESS, &d), dicom_bytes);
    assert!(e.contains("declares 60000 x 60000"), "{e}");
    let mut many = j2k_codestream(64, 64);
    many[5] = 38 + 3 * 16; // Lsiz
    many[41] = 16; // Csiz
    let comps: Vec<u8> = (0..16).flat_map(|_| [11u8, 1, 1]).collect();
    many.splice(42..45, comps);
    let mut d = image_attributes(16);
    d.extend(encapsulated(&many));
    let e = refused("j2k-16-components.dcm", &dicom_file(J2K_LOSSLESS, &d), dicom_bytes);
    assert!(e.contains("declares 16 components but SamplesPerPixel is 1"), "{e}");
}

/// SOI, then a frame header `sof` declaring `w` x `h` of `precision` bits, one component, then EOI.
fn jpeg_stream(sof: u8, w: u16, h: u16, precision: u8) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, sof, 0, 11, precision];
    j.extend_from_slice(&h.to_be_bytes());
    j.extend_from_slice(&w.to_be_bytes());
    j.extend_from_slice(&[1, 1, 0x11, 0, 0xFF, 0xD9]);
    j
}

#[test]
fn a_jpeg_frame_larger_than_rows_and_columns_is_refused_before_decoding() {
    for (ts, sof) in [(JPEG_LOSSLESS_SV1, 0xC3), (JPEG_BASELINE, 0xC0)] {
        let mut d = image_attributes(16);
        d.extend(encapsulated(&jpeg_stream(sof, 60000, 60000, 8)));
        let e = refused("jpeg-60000.dcm", &dicom_file(ts, &d), dicom_bytes);
        assert!(e.contains("JPEG stream declares 60000 x 60000 pixels but Columns/Rows say 64 x 64"), "{e}");
    }
    // 16-bit samples into an 8-bit frame would overrun the decoder's output buffer.
    let mut d = image_attributes(8);
    d.extend(encapsulated(&jpeg_stream(0xC3, 64, 64, 16)));
    let e = refused("jpeg-16-in-8.dcm", &dicom_file(JPEG_LOSSLESS_SV1, &d), dicom_bytes);
    assert!(e.contains("16-bit samples but BitsAllocated is 8"), "{e}");
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn row2_a_deflated_element_declaring_3_gib_is_refused_before_dicom_rs_allocates() {
    // The dataset: a patient name, then Pixel Data declaring 3 GiB and holding 4 bytes.
    let mut d = element(0x0010, 0x0010, b"PN", b"A^B");
    d.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
    d.extend_from_slice(&(3u32 << 30).to_le_bytes());
    d.extend_from_slice(&[1, 2, 3, 4]);
    let file = dicom_file(DEFLATED, &deflate(&d));
    assert!(file.len() < 300, "a {}-byte file", file.len());
    let e = refused("deflated-3gib.dcm", &file, dicom_bytes);
    assert!(e.contains("deflated dataset: element (7FE0,0010) declares 3221225472 bytes but only 4 remain"), "{e}");
    // A deflate stream that is not one.
    let e = refused("deflated-garbage.dcm", &dicom_file(DEFLATED, &[0xFF; 64]), dicom_bytes);
    assert!(e.contains("deflated dataset is corrupt"), "{e}");
}

#[test]
fn a_well_formed_deflated_file_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ok.dcm");
    let pixels: Vec<u16> = (0..64 * 48).map(|i| (i % 4096) as u16).collect();
    let spec = mammo_io::dicom::DicomWriteSpec {
        sop_instance_uid: "1.2.3.4".into(),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.5".into(),
        bits_stored: 12,
        ..Default::default()
    };
    mammo_io::dicom::write_dicom(
        &p,
        64,
        48,
        &pixels,
        &spec,
        mammo_io::dicom::WriteSyntax::DeflatedExplicitVrLittleEndian,
    )
    .unwrap();
    let m = mammo_io::read_image(&p).unwrap();
    assert_eq!(m.samples, mammo_io::Samples::Unsigned(pixels));
}

// ---------------------------------------------------------------------------------------------------------
// PNG written by hand: an encoder would want the 400 MB of pixels the header declares.

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    c.extend_from_slice(&crc.sum().to_be_bytes());
    c
}

/// A PNG whose IHDR says `w` x `h` (`depth` bits, colour type `color`) and whose IDAT holds 16 rows.
fn png(w: u32, h: u32, depth: u8, color: u8) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
    let row = 1 + (w as usize * depth as usize).div_ceil(8);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; 16 * row]).unwrap();
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    p.extend(chunk(b"IHDR", &ihdr));
    if color == 3 {
        p.extend(chunk(b"PLTE", &[0, 0, 0, 255, 255, 255]));
    }
    p.extend(chunk(b"IDAT", &z.finish().unwrap()));
    p.extend(chunk(b"IEND", &[]));
    p
}

#[test]
fn row4_a_png_declaring_20000_x_20000_is_refused_before_its_buffer_is_allocated() {
    let e = refused("big.png", &png(20000, 20000, 8, 0), png_bytes);
    assert!(e.contains("PNG of 20000 x 20000 pixels (more than 268435456)"), "{e}");
    let e = refused("big16.png", &png(16384, 16385, 16, 0), png_bytes);
    assert!(e.contains("more than"), "{e}");
    // Within the pixel cap, but a palette expands every pixel to three bytes: 768 MB.
    let e = refused("palette.png", &png(16384, 16384, 8, 3), png_bytes);
    assert!(e.contains("decodes to too many bytes"), "{e}");
    // A small PNG of this kind still decodes.
    let ok = png(16, 16, 8, 0);
    let m = png_bytes(Path::new("ok.png"), &ok).unwrap();
    assert_eq!((m.width, m.height, m.samples.len()), (16, 16, 256));
}

#[test]
fn a_pgm_declaring_more_than_the_file_holds_is_refused() {
    let e = refused("big.pgm", b"P2\n16000 16000\n65535\n1 2 3\n", mammo_io::pgm::decode_pgm);
    assert!(e.contains("declares 16000 x 16000 values"), "{e}");
    let e = refused("huge.pgm", b"P5\n70000 70000\n255\n\x00", mammo_io::pgm::decode_pgm);
    assert!(e.contains("more than 268435456"), "{e}");
}

#[test]
fn a_stream_that_matches_its_attributes_passes_the_check_and_decodes() {
    // The same hand-made codestream at the size the attributes say: OpenJPEG decodes its empty tile to
    // mid-grey (zero after the DC level shift of 12-bit unsigned data, 2^11), which also shows the
    // 60000 x 60000 one above is a stream a decoder would act on.
    let mut d = image_attributes(16);
    d.extend(encapsulated(&j2k_codestream(64, 64)));
    let m = mammo_io::dicom::decode_dicom_bytes(Path::new("j2k-64.dcm"), &dicom_file(J2K_LOSSLESS, &d)).unwrap();
    assert_eq!((m.width, m.height), (64, 64));
    let mammo_io::Samples::Unsigned(v) = &m.samples else { panic!("unsigned samples expected") };
    assert!(v.len() == 64 * 64 && v.iter().all(|&x| x == 2048), "not a flat 2048 image");
}
