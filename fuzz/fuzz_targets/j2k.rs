//! Any bytes as the JPEG 2000 pixel data of a DICOM file must give a value or a one-line error, never a
//! panic, a hang or an allocation beyond the image the attributes describe.
//!
//! The wrapper's Rows/Columns follow the codestream's own SIZ marker when it declares a small image, so
//! the fuzzer reaches OpenJPEG with streams that pass the header check, and stay 64 x 64 otherwise, so
//! the check itself is fuzzed against disagreeing streams.
#![no_main]
use libfuzzer_sys::fuzz_target;

fn el(g: u16, e: u16, vr: &[u8; 2], v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == b"UI" { 0 } else { b' ' });
    }
    let mut b = [g.to_le_bytes(), e.to_le_bytes()].concat();
    b.extend_from_slice(vr);
    b.extend_from_slice(&(v.len() as u16).to_le_bytes());
    b.extend(v);
    b
}

fn dicom(ts: &str, rows: u16, cols: u16, stream: &[u8]) -> Vec<u8> {
    let meta = [
        el(2, 0x02, b"UI", b"1.2.840.10008.5.1.4.1.1.1.2"),
        el(2, 0x03, b"UI", b"1.2.3.4"),
        el(2, 0x10, b"UI", ts.as_bytes()),
        el(2, 0x12, b"UI", b"1.2.3.4.5"),
    ]
    .concat();
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    f.extend(el(2, 0, b"UL", &(meta.len() as u32).to_le_bytes()));
    f.extend(meta);
    f.extend(el(0x28, 0x02, b"US", &1u16.to_le_bytes()));
    f.extend(el(0x28, 0x04, b"CS", b"MONOCHROME2"));
    for (e, v) in [(0x10u16, rows), (0x11, cols), (0x100, 16), (0x101, 16), (0x102, 15), (0x103, 0)] {
        f.extend(el(0x28, e, b"US", &v.to_le_bytes()));
    }
    let mut frag = stream.to_vec();
    if frag.len() % 2 == 1 {
        frag.push(0);
    }
    f.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    f.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0]);
    f.extend_from_slice(&(frag.len() as u32).to_le_bytes());
    f.extend(frag);
    f.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    f
}

fuzz_target!(|data: &[u8]| {
    let (rows, cols) = match mammo_io::j2k_header::parse(data) {
        Ok(d) if d.width <= 1024 && d.height <= 1024 => (d.height as u16, d.width as u16),
        _ => (64, 64),
    };
    // JPEG 2000 lossless, and HTJ2K (the same SIZ check, another block decoder in OpenJPEG).
    for ts in ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201"] {
        let _ = mammo_io::dicom::decode_dicom_bytes(std::path::Path::new("fuzz.dcm"), &dicom(ts, rows, cols, data));
    }
});
