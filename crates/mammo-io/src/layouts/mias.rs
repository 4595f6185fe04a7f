//! mini-MIAS as PEIPA distributes it: `mdbNNN.pgm` images (1024 x 1024 at 200 µm, all MLO views) and
//! `Info.txt`, one line per abnormality: `REFNUM BG CLASS SEVERITY X Y RADIUS`, e.g.
//! `mdb001 G CIRC B 535 425 197`, or `mdb003 D NORM` for a normal image.
//!
//! - Lines not starting with an `mdbNNN` reference (the column legend, notes, blank lines) are skipped,
//!   so the file may keep its header; Windows line endings are fine.
//! - Several lines with one REFNUM are several lesions of that image.
//! - X, Y are measured from the BOTTOM-left corner: the top-left centre is `(X, height - Y)`, with the
//!   height read from the PGM header. RADIUS encloses the abnormality: a [`MaskSource::Disk`].
//! - Widely distributed calcifications (and a few other lines) have no X Y RADIUS: the lesion is skipped
//!   with a warning but its severity still sets the image's label.
//! - Patients: the MIAS documentation says "the list is arranged in pairs of films, where each pair
//!   represents the left (even filename numbers) and right mammograms (odd filename numbers) of a single
//!   patient". So mdb001 (right) and mdb002 (left) are patient `mias_001`, mdb003/mdb004 `mias_002`...
//!   and an odd number is a right breast, an even one a left breast.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Case, Label, Lesion, MaskSource, existing};
use crate::error::{IoError, Result};
use crate::image::{Laterality, View};

const INFO: &str = "Info.txt";
/// mini-MIAS pixels are 200 µm (the original 50 µm films reduced by four); the PGMs do not say so.
const SPACING_MM: f64 = 0.2;

struct Found {
    kind: &'static str,
    label: Label,
    /// X, Y (bottom-left origin) and radius, when the line has them.
    at: Option<(f64, f64, f64)>,
    line: usize,
}

struct Entry {
    refnum: String,
    label: Label,
    found: Vec<Found>,
}

pub(super) fn load(dir: &Path) -> Result<Vec<Case>> {
    let info = find_info(dir)?;
    let bytes = std::fs::read(&info).map_err(|e| IoError::io(&info, e))?;
    let text = String::from_utf8_lossy(&bytes);

    let mut entries: BTreeMap<u32, Entry> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let tokens: Vec<&str> = raw.split_whitespace().collect();
        let Some(number) = tokens.first().and_then(|t| refnum(t)) else { continue };
        let bad = |msg: String| IoError::format(&info, format!("line {line} ('{}'): {msg}", raw.trim()));
        if tokens.len() < 3 {
            return Err(bad("expected REFNUM BG CLASS [SEVERITY X Y RADIUS]".into()));
        }
        let entry = entries.entry(number).or_insert_with(|| Entry {
            refnum: tokens[0].to_ascii_lowercase(),
            label: Label::Normal,
            found: Vec::new(),
        });
        let class = tokens[2].to_ascii_uppercase();
        let kind = match class.as_str() {
            "NORM" => continue,
            "CALC" => "calcification",
            "CIRC" | "SPIC" | "MISC" => "mass",
            "ARCH" => "architectural distortion",
            "ASYM" => "asymmetry",
            _ => return Err(bad(format!("bad class '{}' (CALC, CIRC, SPIC, MISC, ARCH, ASYM or NORM)", tokens[2]))),
        };
        let label = match tokens.get(3).map(|s| s.to_ascii_uppercase()).as_deref() {
            Some("B") => Label::Benign,
            Some("M") => Label::Malignant,
            Some(other) => return Err(bad(format!("bad severity '{other}' (B or M)"))),
            None => return Err(bad(format!("class {class} without severity (B or M)"))),
        };
        let at = match tokens.get(4) {
            // A numeric X promises Y and RADIUS; anything else (a note such as `*NOTE 3*`) means no location.
            Some(x) if x.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') => {
                let num = |k: usize, name: &str| -> Result<f64> {
                    let t = tokens.get(k).ok_or_else(|| bad(format!("{name} missing after X")))?;
                    t.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad(format!("bad {name} '{t}'")))
                };
                Some((num(4, "X")?, num(5, "Y")?, num(6, "RADIUS")?))
            }
            _ => None,
        };
        entry.label = entry.label.max(label);
        entry.found.push(Found { kind, label, at, line });
    }
    if entries.is_empty() {
        return Err(IoError::format(&info, "no mdbNNN lines (expected e.g. 'mdb001 G CIRC B 535 425 197')"));
    }

    let mut cases = Vec::with_capacity(entries.len());
    for (number, entry) in entries {
        let image = image_path(&info, dir, &entry.refnum)?;
        let (width, height) = if entry.found.iter().any(|f| f.at.is_some()) { pgm_size(&image)? } else { (0, 0) };
        let mut lesions = Vec::new();
        for f in &entry.found {
            let Some((x, y, r)) = f.at else {
                tracing::warn!(
                    "{}: line {}: {} {} has no centre and radius; the lesion is skipped, its label kept",
                    info.display(),
                    f.line,
                    entry.refnum,
                    f.kind
                );
                continue;
            };
            let cy = height as f64 - y;
            if !(0.0..=width as f64).contains(&x) || !(0.0..=height as f64).contains(&cy) || r <= 0.0 {
                tracing::warn!(
                    "{}: line {}: centre ({x}, {y}) radius {r} is not inside the {width} x {height} image {}; \
                     the lesion is skipped, its label kept",
                    info.display(),
                    f.line,
                    image.display()
                );
                continue;
            }
            lesions.push(Lesion {
                label: f.label,
                kind: f.kind.into(),
                mask: MaskSource::Disk { cx: x, cy, r },
                feature_mask: None,
            });
        }
        cases.push(Case {
            image,
            patient: format!("mias_{:03}", number.div_ceil(2)),
            label: entry.label,
            lesions,
            laterality: Some(if number % 2 == 1 { Laterality::Right } else { Laterality::Left }),
            view: Some(View::MLO),
            spacing_mm: Some(SPACING_MM),
        });
    }
    Ok(cases)
}

/// `Info.txt`, accepting any case of the name.
fn find_info(dir: &Path) -> Result<PathBuf> {
    let exact = dir.join(INFO);
    if exact.is_file() {
        return Ok(exact);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| IoError::io(dir, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(INFO)))
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| IoError::format(&exact, "not found (mini-MIAS needs Info.txt next to its mdbNNN.pgm images)"))
}

/// `mdb001` -> 1.
fn refnum(token: &str) -> Option<u32> {
    let digits = token.get(..3).filter(|p| p.eq_ignore_ascii_case("mdb")).and(token.get(3..))?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn image_path(info: &Path, dir: &Path, refnum: &str) -> Result<PathBuf> {
    for ext in ["pgm", "PGM"] {
        let p = dir.join(format!("{refnum}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    existing(info, dir.join(format!("{refnum}.pgm")))
}

/// Width and height from a PGM header (P5 or P2), without reading the raster.
fn pgm_size(path: &Path) -> Result<(usize, usize)> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    let mut head = Vec::with_capacity(4096);
    file.take(4096).read_to_end(&mut head).map_err(|e| IoError::io(path, e))?;
    if !(head.starts_with(b"P5") || head.starts_with(b"P2")) {
        return Err(IoError::format(path, "not a PGM file (expected P5 or P2 magic)"));
    }
    let mut pos = 2;
    let mut next = |name: &str| -> Result<usize> {
        loop {
            match head.get(pos) {
                Some(b'#') => {
                    while head.get(pos).is_some_and(|&c| c != b'\n') {
                        pos += 1;
                    }
                }
                Some(c) if c.is_ascii_whitespace() => pos += 1,
                _ => break,
            }
        }
        let start = pos;
        while head.get(pos).is_some_and(|c| c.is_ascii_digit()) && pos - start < 9 {
            pos += 1;
        }
        std::str::from_utf8(&head[start..pos])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| IoError::format(path, format!("PGM header: missing or invalid {name}")))
    };
    let width = next("width")?;
    let height = next("height")?;
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::super::{Format, load as load_layout, mask::rasterize};
    use super::*;
    use crate::image::GrayImage;

    fn pgm(dir: &Path, name: &str) {
        let mut img = GrayImage::<u16>::new(64, 48);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = (i % 200) as u16;
        }
        crate::pgm::write_pgm(&dir.join(name), &img, 255).unwrap();
    }

    const INFO_TXT: &str = "1st column: MIAS database reference number.\r\n\
        2nd column: Character of background tissue:\r\n\
        \r\n\
        REFNUM BG CLASS SEVERITY X Y RADIUS\r\n\
        mdb001 G CIRC B 30 20 10\r\n\
        mdb002 D NORM \r\n\
        mdb003 F CALC M\r\n\
        mdb004 G SPIC M 10 40 5\r\n\
        mdb004 G CALC B 50 10 4\r\n";

    fn fixture(dir: &Path) {
        std::fs::write(dir.join("Info.txt"), INFO_TXT).unwrap();
        for n in 1..=4 {
            pgm(dir, &format!("mdb{n:03}.pgm"));
        }
    }

    #[test]
    fn reads_info_txt_with_bottom_left_origin() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let cases = load_layout(Format::MiniMias, dir.path()).unwrap();
        assert_eq!(cases.len(), 4);
        let c1 = &cases[0];
        assert!(c1.image.ends_with("mdb001.pgm"));
        assert_eq!((c1.label, c1.patient.as_str()), (Label::Benign, "mias_001"));
        assert_eq!((c1.laterality, c1.view), (Some(Laterality::Right), Some(View::MLO)));
        assert_eq!(c1.lesions.len(), 1);
        assert_eq!(c1.lesions[0].kind, "mass");
        assert_eq!(c1.lesions[0].mask, MaskSource::Disk { cx: 30.0, cy: 28.0, r: 10.0 });
        let m = rasterize(&c1.lesions[0].mask, 64, 48).unwrap();
        // Y = 20 from the bottom is row 28 from the top: (30, 35) is inside, (30, 12) is not.
        assert_eq!((m.get(30, 35), m.get(30, 12), m.get(30, 28)), (1, 0, 1));

        let c2 = &cases[1];
        assert_eq!((c2.label, c2.patient.as_str(), c2.lesions.len()), (Label::Normal, "mias_001", 0));
        assert_eq!(c2.laterality, Some(Laterality::Left));
        // No location: label kept, no lesion.
        let c3 = &cases[2];
        assert_eq!((c3.label, c3.patient.as_str(), c3.lesions.len()), (Label::Malignant, "mias_002", 0));
        // Two lines, two lesions; the case takes the worst label.
        let c4 = &cases[3];
        assert_eq!((c4.label, c4.lesions.len()), (Label::Malignant, 2));
        assert_eq!((c4.lesions[0].label, c4.lesions[1].label), (Label::Malignant, Label::Benign));
        assert_eq!(c4.lesions[1].kind, "calcification");
        assert_eq!(c4.lesions[1].mask, MaskSource::Disk { cx: 50.0, cy: 38.0, r: 4.0 });
    }

    #[test]
    fn bad_inputs_are_one_line_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("Info.txt") && !e.contains('\n'), "{e}");

        fixture(d);
        std::fs::remove_file(d.join("mdb003.pgm")).unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("Info.txt") && e.contains("mdb003.pgm"), "{e}");
        pgm(d, "mdb003.pgm");

        for (line, what) in [
            ("mdb005 G CIRC X 1 2 3", "severity"),
            ("mdb005 G BLOB B 1 2 3", "class"),
            ("mdb005 G CIRC B 1 2y 3", "Y"),
            ("mdb005 G CIRC B 1 2", "RADIUS"),
            ("mdb005 G", "expected"),
        ] {
            std::fs::write(d.join("Info.txt"), format!("{INFO_TXT}{line}\n")).unwrap();
            let e = load(d).unwrap_err().to_string();
            assert!(e.contains("Info.txt") && e.contains("line 10") && e.contains(what), "{e}");
        }
        std::fs::write(d.join("Info.txt"), "just a readme\n").unwrap();
        let e = load(d).unwrap_err().to_string();
        assert!(e.contains("no mdbNNN lines"), "{e}");
    }
}
