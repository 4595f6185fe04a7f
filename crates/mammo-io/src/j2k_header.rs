//! The image a JPEG 2000 stream declares: the SIZ marker of a raw codestream (ISO 15444-1 A.5.1), and
//! the `ihdr` box when the stream is wrapped in a JP2 file (Annex I), which some DICOM writers do.
//! Only the header is read; see [`crate::codestream`] for why.

use crate::codestream::Declared;

const SOC: [u8; 2] = [0xFF, 0x4F];
const SIZ: [u8; 2] = [0xFF, 0x51];
/// The tile index (Isot) is 16 bits: a codestream cannot have more tiles than this.
const MAX_TILES: u64 = 65535;

/// Parses the start of a JPEG 2000 stream (raw codestream or JP2).
pub fn parse(b: &[u8]) -> Result<Declared, String> {
    if b.starts_with(&SOC) {
        return siz(b);
    }
    if b.len() >= 12 && &b[4..8] == b"jP  " {
        return jp2(b);
    }
    Err("the JPEG 2000 pixel data starts with neither a codestream (FF4F) nor a JP2 signature".into())
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A raw codestream: SOC, then (the standard requires it next) SIZ.
fn siz(b: &[u8]) -> Result<Declared, String> {
    let cut = || "the JPEG 2000 SIZ marker is cut short".to_string();
    if b.get(2..4) != Some(&SIZ[..]) {
        return Err("the JPEG 2000 codestream does not start with SOC then SIZ".into());
    }
    let lsiz = be16(b, 4).ok_or_else(cut)? as usize;
    let field = |i: usize| be32(b, 8 + 4 * i).ok_or_else(cut);
    let (xsiz, ysiz, xo, yo) = (field(0)?, field(1)?, field(2)?, field(3)?);
    let (xt, yt, xto, yto) = (field(4)?, field(5)?, field(6)?, field(7)?);
    let csiz = be16(b, 40).ok_or_else(cut)?;
    if csiz == 0 || lsiz != 38 + 3 * csiz as usize {
        return Err(format!("the JPEG 2000 SIZ marker has length {lsiz} for {csiz} components (corrupt)"));
    }
    let comps = b.get(42..42 + 3 * csiz as usize).ok_or_else(cut)?;
    if xsiz <= xo || ysiz <= yo {
        return Err(format!("the JPEG 2000 image area is empty (Xsiz {xsiz}, XOsiz {xo}, Ysiz {ysiz}, YOsiz {yo})"));
    }
    // A.5.1's constraints on the tile grid; the tile count bounds OpenJPEG's per-tile bookkeeping.
    if xt == 0
        || yt == 0
        || xto > xo
        || yto > yo
        || xto as u64 + xt as u64 <= xo as u64
        || yto as u64 + yt as u64 <= yo as u64
    {
        return Err(format!("the JPEG 2000 tile grid is invalid ({xt} x {yt} tiles at {xto}, {yto})"));
    }
    let tiles = (xsiz - xto).div_ceil(xt) as u64 * (ysiz - yto).div_ceil(yt) as u64;
    if tiles > MAX_TILES {
        return Err(format!("the JPEG 2000 codestream declares {tiles} tiles (at most {MAX_TILES})"));
    }
    let mut precision = 0u8;
    for c in comps.chunks_exact(3) {
        let bits = (c[0] & 0x7F) + 1;
        if bits > 38 {
            return Err(format!("the JPEG 2000 codestream declares {bits}-bit samples (corrupt)"));
        }
        // Monochrome images are never subsampled; a subsampled component would not fill Rows x Columns.
        if c[1] != 1 || c[2] != 1 {
            return Err(format!("the JPEG 2000 codestream has a subsampled component ({} x {})", c[1], c[2]));
        }
        precision = precision.max(bits);
    }
    Ok(Declared { width: xsiz - xo, height: ysiz - yo, components: csiz, precision })
}

/// A JP2 file: the codestream box `jp2c` carries the SIZ marker, the header box `jp2h` an `ihdr` that
/// must agree with it (decoders may trust either).
fn jp2(b: &[u8]) -> Result<Declared, String> {
    let mut ihdr: Option<(u32, u32, u16)> = None;
    let mut pos = 0usize;
    while pos < b.len() {
        let (start, end, kind) = box_at(b, pos)?;
        match kind {
            b"jp2h" => {
                let mut sub = start;
                while sub < end.min(b.len()) {
                    let (s, e, k) = box_at(b, sub)?;
                    if k == b"ihdr" {
                        let cut = || "the JP2 ihdr box is cut short".to_string();
                        let h = be32(b, s).ok_or_else(cut)?;
                        let w = be32(b, s + 4).ok_or_else(cut)?;
                        let nc = be16(b, s + 8).ok_or_else(cut)?;
                        ihdr = Some((w, h, nc));
                    }
                    sub = e;
                }
            }
            b"jp2c" => {
                let d = siz(&b[start..end.min(b.len())])?;
                if let Some((w, h, nc)) = ihdr
                    && (w, h, nc) != (d.width, d.height, d.components)
                {
                    return Err(format!(
                        "the JP2 header declares {w} x {h} x {nc} but its codestream {} x {} x {}",
                        d.width, d.height, d.components
                    ));
                }
                return Ok(d);
            }
            _ => {}
        }
        pos = end;
    }
    Err("no JPEG 2000 codestream box (jp2c) in the first 1 MiB of the JP2 data".into())
}

/// The box at `pos`: (content start, end, type). A length of 0 runs to the end of the data.
fn box_at(b: &[u8], pos: usize) -> Result<(usize, usize, &[u8; 4]), String> {
    let cut = || format!("the JP2 box at byte {pos} is cut short");
    let len = be32(b, pos).ok_or_else(cut)? as u64;
    let kind: &[u8; 4] = b.get(pos + 4..pos + 8).ok_or_else(cut)?.try_into().map_err(|_| cut())?;
    let (header, len) = match len {
        0 => (8, (b.len() - pos) as u64),
        1 => (16, be64(b, pos + 8).ok_or_else(cut)?),
        l => (8, l),
    };
    if len < header as u64 {
        return Err(format!("the JP2 box at byte {pos} declares {len} bytes (corrupt)"));
    }
    // The end may lie beyond the header window (a large jp2c); callers clamp it when they read.
    let end = (pos as u64).saturating_add(len).min(usize::MAX as u64) as usize;
    Ok((pos + header, end, kind))
}

/// A minimal codestream main header for tests: SOC + SIZ, one tile.
#[cfg(test)]
pub(crate) fn test_codestream(width: u32, height: u32, precision: u8) -> Vec<u8> {
    let mut b = vec![0xFF, 0x4F, 0xFF, 0x51];
    b.extend_from_slice(&41u16.to_be_bytes()); // Lsiz = 38 + 3 * 1
    b.extend_from_slice(&0u16.to_be_bytes()); // Rsiz
    for v in [width, height, 0, 0, width, height, 0, 0] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&[precision - 1, 1, 1]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_siz_and_jp2() {
        let cs = test_codestream(60000, 50000, 12);
        let d = parse(&cs).unwrap();
        assert_eq!(d, Declared { width: 60000, height: 50000, components: 1, precision: 12 });
        // JP2: signature, jp2h { ihdr }, jp2c { codestream }.
        let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A];
        let mut ihdr = vec![0, 0, 0, 22, b'i', b'h', b'd', b'r'];
        ihdr.extend_from_slice(&50000u32.to_be_bytes());
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&[0, 1, 11, 7, 0, 0]);
        jp2.extend_from_slice(&(8 + ihdr.len() as u32).to_be_bytes());
        jp2.extend_from_slice(b"jp2h");
        jp2.extend_from_slice(&ihdr);
        jp2.extend_from_slice(&0u32.to_be_bytes());
        jp2.extend_from_slice(b"jp2c");
        jp2.extend_from_slice(&cs);
        assert_eq!(parse(&jp2).unwrap(), d);
        // An ihdr that disagrees with the codestream is refused.
        jp2[31] ^= 1; // the last byte of the ihdr height
        assert!(parse(&jp2).unwrap_err().contains("JP2 header declares"));
    }

    #[test]
    fn corrupt_headers_are_refused_without_panicking() {
        let cs = test_codestream(64, 64, 16);
        for cut in 0..cs.len() {
            assert!(parse(&cs[..cut]).is_err(), "cut at {cut}");
        }
        let mut one_pixel_tiles = cs.clone();
        one_pixel_tiles[24..32].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // XTsiz = YTsiz = 1
        assert_eq!(parse(&one_pixel_tiles).unwrap().width, 64); // 4096 tiles: allowed
        let mut big = test_codestream(65535, 65535, 16);
        big[24..32].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        assert!(parse(&big).unwrap_err().contains("tiles"));
        assert!(parse(b"\xff\xd8\xff\xe0").is_err());
    }
}
