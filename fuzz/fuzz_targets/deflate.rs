//! Any bytes as the dataset of a Deflated Explicit VR Little Endian file must give a value or a one-line
//! error, never a panic, a hang or an allocation beyond the inflation cap.
//!
//! The first byte chooses how the rest is used: as the deflate stream itself (fuzzing the inflater and
//! the cap), or deflated here first (so mutations act on the inflated element headers, which is where a
//! declared length of gigabytes hides).
#![no_main]
use std::io::Write;

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

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let stream = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(rest).unwrap();
        e.finish().unwrap()
    };
    let meta = [
        el(2, 0x02, b"UI", b"1.2.840.10008.5.1.4.1.1.1.2"),
        el(2, 0x03, b"UI", b"1.2.3.4"),
        el(2, 0x10, b"UI", b"1.2.840.10008.1.2.1.99"),
        el(2, 0x12, b"UI", b"1.2.3.4.5"),
    ]
    .concat();
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    f.extend(el(2, 0, b"UL", &(meta.len() as u32).to_le_bytes()));
    f.extend(meta);
    f.extend(stream);
    let _ = mammo_io::dicom::decode_dicom_bytes(std::path::Path::new("fuzz.dcm"), &f);
});
