//! Netpbm graymaps as mini-MIAS distributes them: binary P5 (8 or 16 bit, big endian per the Netpbm
//! specification) and plain-text P2.

use std::path::Path;

use crate::budget::{MAX_PIXELS, try_collect, try_vec};
use crate::error::{IoError, Result};
use crate::image::{GrayImage, ImageInfo, Mammogram, Samples, SourceKind};

/// Reads a P5 or P2 file.
pub fn read_pgm(path: &Path) -> Result<Mammogram> {
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, e))?;
    decode_pgm(path, &bytes)
}

/// Decodes a PGM held in memory; `path` only names the source in errors (the fuzz target uses it).
/// Width and height from a PGM header, without reading the raster.
pub fn pgm_dimensions(path: &Path, bytes: &[u8]) -> Result<(usize, usize)> {
    if !matches!(bytes.get(0..2), Some(b"P5") | Some(b"P2")) {
        return Err(IoError::format(path, "not a PGM file (expected P5 or P2 magic)"));
    }
    let mut pos = 2;
    let mut dims = [0usize; 2];
    for (i, name) in ["width", "height"].iter().enumerate() {
        dims[i] = next_number(bytes, &mut pos)
            .ok_or_else(|| IoError::format(path, format!("PGM header: missing or invalid {name}")))?;
    }
    Ok((dims[0], dims[1]))
}

pub fn decode_pgm(path: &Path, bytes: &[u8]) -> Result<Mammogram> {
    let binary = match bytes.get(0..2) {
        Some(b"P5") => true,
        Some(b"P2") => false,
        _ => return Err(IoError::format(path, "not a PGM file (expected P5 or P2 magic)")),
    };
    let mut pos = 2;
    let mut header = [0usize; 3];
    for (i, name) in ["width", "height", "maxval"].iter().enumerate() {
        header[i] = next_number(bytes, &mut pos)
            .ok_or_else(|| IoError::format(path, format!("PGM header: missing or invalid {name}")))?;
    }
    let [width, height, maxval] = header;
    if width == 0 || height == 0 {
        return Err(IoError::format(path, format!("PGM header: empty image ({width} x {height})")));
    }
    if maxval == 0 || maxval > 65535 {
        return Err(IoError::format(path, format!("PGM header: maxval {maxval} outside 1..=65535")));
    }
    let n = width.checked_mul(height).filter(|&n| n <= MAX_PIXELS).ok_or_else(|| {
        IoError::unsupported(path, format!("PGM of {width} x {height} pixels (more than {MAX_PIXELS})"))
    })?;
    let data: Vec<u16> = if binary {
        // Exactly one whitespace byte separates maxval from the raster.
        pos += 1;
        let bpp = if maxval > 255 { 2 } else { 1 };
        let raster = bytes.get(pos..).unwrap_or(&[]);
        if raster.len() < n * bpp {
            return Err(IoError::format(
                path,
                format!(
                    "PGM raster holds {} bytes, {width} x {height} needs {} (truncated file?)",
                    raster.len(),
                    n * bpp
                ),
            ));
        }
        if bpp == 1 {
            try_collect(path, n, raster[..n].iter().map(|&b| b as u16))?
        } else {
            try_collect(path, n, raster[..2 * n].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])))?
        }
    } else {
        // Every P2 value takes a digit and a separator: a header declaring more values than the file can
        // hold is refused before the buffer is sized from it.
        let room = bytes.len().saturating_sub(pos).div_ceil(2);
        if n > room {
            return Err(IoError::format(
                path,
                format!("P2 header declares {width} x {height} values but the file holds at most {room} (truncated?)"),
            ));
        }
        let mut v = try_vec(path, n)?;
        for i in 0..n {
            let x = next_number(bytes, &mut pos)
                .ok_or_else(|| IoError::format(path, format!("P2 raster ends after {i} of {n} values")))?;
            v.push(x.min(65535) as u16);
        }
        v
    };
    if let Some(bad) = data.iter().find(|&&v| v as usize > maxval) {
        return Err(IoError::format(path, format!("PGM value {bad} exceeds maxval {maxval}")));
    }
    let bits = (usize::BITS - maxval.leading_zeros()) as u16;
    Ok(Mammogram {
        width,
        height,
        samples: Samples::Unsigned(data),
        info: ImageInfo::plain(SourceKind::Pgm { binary }, bits),
    })
}

/// Skips whitespace and `#` comments, then parses a decimal number.
fn next_number(bytes: &[u8], pos: &mut usize) -> Option<usize> {
    loop {
        match bytes.get(*pos)? {
            b'#' => {
                while *bytes.get(*pos)? != b'\n' {
                    *pos += 1;
                }
            }
            c if c.is_ascii_whitespace() => *pos += 1,
            _ => break,
        }
    }
    let start = *pos;
    while bytes.get(*pos).is_some_and(|c| c.is_ascii_digit()) {
        *pos += 1;
    }
    if *pos == start || *pos - start > 10 {
        return None;
    }
    std::str::from_utf8(&bytes[start..*pos]).ok()?.parse().ok()
}

/// Writes a binary P5 graymap (8-bit when `maxval` < 256, else 16-bit big endian), atomically.
pub fn write_pgm(path: &Path, img: &GrayImage<u16>, maxval: u16) -> Result<()> {
    let mut out = format!("P5\n{} {}\n{}\n", img.width, img.height, maxval).into_bytes();
    if maxval < 256 {
        out.extend(img.data.iter().map(|&v| v.min(maxval) as u8));
    } else {
        for &v in &img.data {
            out.extend_from_slice(&v.min(maxval).to_be_bytes());
        }
    }
    crate::atomic::write_bytes(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_p5_8bit_with_comment_and_p2() {
        let p = Path::new("x.pgm");
        let m = decode_pgm(p, b"P5\n# mias\n3 1\n255\n\x00\x80\xff").unwrap();
        assert_eq!(m.samples, Samples::Unsigned(vec![0, 128, 255]));
        let m = decode_pgm(p, b"P2\n2 2\n1023\n0 1\n1000 1023\n").unwrap();
        assert_eq!(m.samples, Samples::Unsigned(vec![0, 1, 1000, 1023]));
        assert_eq!(m.info.bits_stored, 10);
    }

    #[test]
    fn reads_p5_16bit_big_endian() {
        let m = decode_pgm(Path::new("x"), b"P5 2 1 65535\n\x01\x02\xff\xfe").unwrap();
        assert_eq!(m.samples, Samples::Unsigned(vec![0x0102, 0xfffe]));
    }

    #[test]
    fn truncated_and_bad_headers_are_errors_naming_the_file() {
        for bad in [
            &b"P5\n4 4\n255\n\x00"[..],
            b"P5\n0 4\n255\n",
            b"P5\n4 4\n70000\n",
            b"P6\n1 1\n255\n\x00",
            b"P2 2 1 10 3 11",
        ] {
            let e = decode_pgm(Path::new("bad.pgm"), bad).unwrap_err().to_string();
            assert!(e.starts_with("bad.pgm: "), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn a_header_larger_than_the_cap_or_the_file_is_refused_before_allocating() {
        let e = decode_pgm(Path::new("big.pgm"), b"P5\n70000 70000\n255\n\x00").unwrap_err().to_string();
        assert!(e.starts_with("big.pgm: ") && e.contains("more than"), "{e}");
        // Under the pixel cap, but the 20-byte file cannot hold 256 M values (P2) or bytes (P5).
        let start = std::time::Instant::now();
        let e = decode_pgm(Path::new("p2.pgm"), b"P2\n16000 16000\n255\n1 2").unwrap_err().to_string();
        assert!(e.contains("declares 16000 x 16000 values but the file holds at most 2"), "{e}");
        let e = decode_pgm(Path::new("p5.pgm"), b"P5\n16000 16000\n255\n\x00\x01").unwrap_err().to_string();
        assert!(e.contains("raster holds 2 bytes"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
    }
}
