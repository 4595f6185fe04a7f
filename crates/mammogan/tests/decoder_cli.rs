//! Issue 11, decoder rows seen from the binary: `inspect` prints no free-text attribute, and OpenJPEG's
//! INFO chatter stays out of the log while its image still decodes.

use std::path::Path;
use std::process::{Command, Output};

use dicom_core::{Tag, VR};

fn mammogan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mammogan")).args(args).env_remove("RUST_LOG").output().expect("binary runs")
}

#[test]
fn inspect_prints_no_free_text_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("free-text.dcm");
    let spec = mammo_io::dicom::DicomWriteSpec {
        sop_instance_uid: "1.2.3.4".into(),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.5".into(),
        // WindowCenterWidthExplanation (LO): free text, where a site may write anything.
        strings: vec![(Tag(0x0028, 0x1055), VR::LO, "SMITH^JANE MRN 4711".into())],
        bits_stored: 12,
        window: Some((2048.0, 4096.0, "LINEAR")),
        ..Default::default()
    };
    mammo_io::dicom::write_dicom(&p, 8, 8, &[100; 64], &spec, mammo_io::dicom::WriteSyntax::ExplicitVrLittleEndian)
        .unwrap();
    for args in [vec!["inspect", p.to_str().unwrap(), "--json"], vec!["inspect", p.to_str().unwrap()]] {
        let out = mammogan(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for needle in ["SMITH", "JANE", "4711"] {
            assert!(!all.contains(needle), "{needle} in `mammogan {args:?}`: {all}");
        }
        if args.len() == 3 {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["info"]["voi"][0]["center"], 2048.0, "the window itself is still reported");
        }
    }
}

/// A 64 x 64 JPEG 2000 DICOM written by hand (no encoder here): one tile, no coded data, which OpenJPEG
/// decodes to mid-grey while reporting its progress at INFO.
fn j2k_dicom(path: &Path) {
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
    let mut cs = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
    for v in [64u32, 64, 0, 0, 64, 64, 0, 0] {
        cs.extend_from_slice(&v.to_be_bytes());
    }
    cs.extend_from_slice(&[0, 1, 11, 1, 1]);
    cs.extend_from_slice(&[0xFF, 0x52, 0, 12, 0, 0, 0, 1, 0, 0, 4, 4, 0, 1]);
    cs.extend_from_slice(&[0xFF, 0x5C, 0, 4, 0x40, 0x60]);
    cs.extend_from_slice(&[0xFF, 0x90, 0, 10, 0, 0, 0, 0, 0, 15, 0, 1, 0xFF, 0x93, 0x00, 0xFF, 0xD9]);
    let meta = [
        el(2, 0x02, b"UI", b"1.2.840.10008.5.1.4.1.1.1.2"),
        el(2, 0x03, b"UI", b"1.2.3.4"),
        el(2, 0x10, b"UI", b"1.2.840.10008.1.2.4.90"),
        el(2, 0x12, b"UI", b"1.2.3.4.5"),
    ]
    .concat();
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    f.extend(el(2, 0, b"UL", &(meta.len() as u32).to_le_bytes()));
    f.extend(meta);
    for (e, v) in [(0x02u16, 1u16), (0x10, 64), (0x11, 64), (0x100, 16), (0x101, 12), (0x102, 11), (0x103, 0)] {
        f.extend(el(0x28, e, b"US", &v.to_le_bytes()));
        if e == 0x02 {
            f.extend(el(0x28, 0x04, b"CS", b"MONOCHROME2"));
        }
    }
    f.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    f.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0x00, 0xE0]);
    f.extend_from_slice(&(cs.len() as u32).to_le_bytes());
    f.extend(cs);
    f.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    std::fs::write(path, f).unwrap();
}

#[test]
fn openjpeg_info_lines_stay_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let dcm = dir.path().join("j2k.dcm");
    j2k_dicom(&dcm);
    let png = dir.path().join("out.png");
    // At the default (info) level, as a server or a batch job would log.
    let out = mammogan(&["convert", dcm.to_str().unwrap(), png.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let m = mammo_io::read_image(&png).unwrap();
    assert_eq!((m.width, m.height), (64, 64));
    for chatter in ["main header", "has been decoded", "Tile"] {
        assert!(!stderr.contains(chatter), "OpenJPEG's INFO line in the log: {stderr}");
    }
    // Asked for explicitly, they are still there (so the line above tests something).
    let out = Command::new(env!("CARGO_BIN_EXE_mammogan"))
        .args(["convert", dcm.to_str().unwrap(), dir.path().join("again.png").to_str().unwrap()])
        .env("RUST_LOG", "info,jpeg2k=info")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("main header"), "{}", String::from_utf8_lossy(&out.stderr));
}
