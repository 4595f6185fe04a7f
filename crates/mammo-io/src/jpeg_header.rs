//! The image a JPEG stream declares: the frame header (SOFn, ITU T.81 B.2.2) of baseline, extended and
//! lossless JPEG, the SOF55 header of JPEG-LS (ITU T.87 C.2.2), or the DHP header that opens a
//! hierarchical stream. Only the markers before it are walked; see [`crate::codestream`] for why.

use crate::codestream::Declared;

/// Parses the start of a JPEG or JPEG-LS stream up to its frame header.
pub fn parse(b: &[u8]) -> Result<Declared, String> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("the JPEG pixel data does not start with SOI (FFD8)".into());
    }
    let cut = |what: &str| format!("the JPEG stream ends in its header ({what})");
    let mut pos = 2;
    loop {
        match b.get(pos) {
            Some(0xFF) => {}
            Some(x) => return Err(format!("the JPEG header has {x:#04X} where a marker belongs (byte {pos})")),
            None => return Err(cut("no frame header")),
        }
        // Any number of 0xFF fill bytes may precede a marker code (B.1.1.2).
        while b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *b.get(pos + 1).ok_or_else(|| cut("marker"))?;
        pos += 2;
        match marker {
            // Markers without a length: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8..=0xDA => {
                return Err(format!("the JPEG stream has marker FF{marker:02X} before any frame header"));
            }
            // SOF0-3, 5-7, 9-11, 13-15 (C4 DHT, C8 JPG, CC DAC are not frames), SOF55 (JPEG-LS), DHP.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xF7 | 0xDE => {
                let h = b.get(pos..pos + 8).ok_or_else(|| cut("frame header"))?;
                let (precision, height, width, components) =
                    (h[2], u16::from_be_bytes([h[3], h[4]]), u16::from_be_bytes([h[5], h[6]]), h[7]);
                if width == 0 || height == 0 {
                    // A height of 0 is legal when a DNL (or, in JPEG-LS, an LSE) marker gives it later;
                    // the decoders here do not support that, and it would hide the true size from this check.
                    return Err(format!("the JPEG frame header declares {width} x {height} pixels"));
                }
                return Ok(Declared {
                    width: width as u32,
                    height: height as u32,
                    components: components as u16,
                    precision,
                });
            }
            _ => {
                let len = b.get(pos..pos + 2).ok_or_else(|| cut("segment length"))?;
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                if len < 2 {
                    return Err(format!("the JPEG segment FF{marker:02X} declares length {len} (corrupt)"));
                }
                pos += len;
            }
        }
    }
}

/// A minimal JPEG header for tests: SOI, an APP0 segment, then a frame header with `sof`.
#[cfg(test)]
pub(crate) fn test_header(sof: u8, width: u16, height: u16, precision: u8) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0xAB, 0xCD, 0xFF, 0xFF, sof, 0, 11, precision];
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&width.to_be_bytes());
    b.extend_from_slice(&[1, 1, 0x11, 0]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lossless_baseline_and_jpeg_ls_frame_headers() {
        for sof in [0xC0, 0xC1, 0xC3, 0xF7] {
            let d = parse(&test_header(sof, 60000, 500, 12)).unwrap();
            assert_eq!(d, Declared { width: 60000, height: 500, components: 1, precision: 12 }, "{sof:X}");
        }
    }

    #[test]
    fn corrupt_headers_are_refused_without_panicking() {
        let h = test_header(0xC3, 64, 64, 16);
        for cut in 0..h.len() - 4 {
            assert!(parse(&h[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse(&test_header(0xC0, 64, 0, 8)).unwrap_err().contains("64 x 0"));
        // A scan before any frame header, and a zero segment length.
        assert!(parse(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]).is_err());
        assert!(parse(&[0xFF, 0xD8, 0xFF, 0xE1, 0, 0]).unwrap_err().contains("length 0"));
    }
}
