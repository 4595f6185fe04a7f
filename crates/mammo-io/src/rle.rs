//! DICOM RLE Lossless encoding (PS3.5 Annex G). dicom-rs decodes RLE but has no encoder, and the phantom
//! and the benchmark need RLE files, so this is the small encoder: one segment per byte plane, most
//! significant byte first, each segment PackBits-compressed row by row.

/// Encodes one 16-bit frame (one sample per pixel) into an RLE fragment with its 64-byte header.
pub fn encode_frame_u16(pixels: &[u16]) -> Vec<u8> {
    encode_frame_u16_rows(pixels, pixels.len().max(1))
}

/// Same, with rows of `width` pixels (runs never cross a row, as the standard recommends).
pub fn encode_frame_u16_rows(pixels: &[u16], width: usize) -> Vec<u8> {
    let high: Vec<u8> = pixels.iter().map(|p| (p >> 8) as u8).collect();
    let low: Vec<u8> = pixels.iter().map(|p| *p as u8).collect();
    let segments = [packbits_rows(&high, width), packbits_rows(&low, width)];
    let mut out = vec![0u8; 64];
    out[0..4].copy_from_slice(&2u32.to_le_bytes());
    let mut offset = 64u32;
    for (i, seg) in segments.iter().enumerate() {
        out[4 + 4 * i..8 + 4 * i].copy_from_slice(&offset.to_le_bytes());
        offset += seg.len() as u32;
    }
    for seg in &segments {
        out.extend_from_slice(seg);
    }
    if out.len() % 2 == 1 {
        out.push(0); // fragments have even length
    }
    out
}

fn packbits_rows(bytes: &[u8], width: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for row in bytes.chunks(width) {
        packbits(row, &mut out);
    }
    if out.len() % 2 == 1 {
        out.push(0x80); // a no-op byte keeps segments even
    }
    out
}

fn packbits(src: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < src.len() {
        // A run of at least 2 equal bytes is written as a replicate run (up to 128).
        let mut run = 1;
        while i + run < src.len() && run < 128 && src[i + run] == src[i] {
            run += 1;
        }
        if run >= 2 {
            out.push((1i16 - run as i16) as i8 as u8);
            out.push(src[i]);
            i += run;
            continue;
        }
        // Otherwise a literal run until the next pair of equal bytes (up to 128).
        let start = i;
        while i < src.len() && i - start < 128 && !(i + 1 < src.len() && src[i] == src[i + 1]) {
            i += 1;
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&src[start..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(seg: &[u8], n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < n {
            let h = seg[i] as i8;
            i += 1;
            if h >= 0 {
                let c = h as usize + 1;
                out.extend_from_slice(&seg[i..i + c]);
                i += c;
            } else if h != -128 {
                let c = (1 - h as i32) as usize;
                out.extend(std::iter::repeat_n(seg[i], c));
                i += 1;
            }
        }
        out
    }

    #[test]
    fn packbits_round_trips_runs_and_literals() {
        let src: Vec<u8> = (0..1000u32).map(|i| if i % 300 < 150 { 7 } else { (i * 31 % 251) as u8 }).collect();
        let mut seg = Vec::new();
        packbits(&src, &mut seg);
        assert_eq!(unpack(&seg, src.len()), src);
        assert!(seg.len() < src.len());
    }

    #[test]
    fn header_points_at_two_segments() {
        let f = encode_frame_u16_rows(&[0x0102, 0x0102, 0x0304], 3);
        assert_eq!(u32::from_le_bytes(f[0..4].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(f[4..8].try_into().unwrap()), 64);
        assert_eq!(f.len() % 2, 0);
    }
}
