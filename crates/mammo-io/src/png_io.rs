//! 8- and 16-bit grayscale PNG, the interchange format of `convert` and of many curated datasets.

use std::path::Path;

use crate::budget::{MAX_FRAME_BYTES, MAX_PIXELS, try_collect, try_zeros};
use crate::error::{IoError, Result};
use crate::image::{GrayImage, ImageInfo, Mammogram, Samples, SourceKind};

/// Reads a grayscale PNG (8 or 16 bit; lower depths are widened). Colour PNGs are refused: a mammogram
/// saved as RGB has usually been windowed for display and is no longer raw data.
pub fn read_png(path: &Path) -> Result<Mammogram> {
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    decode_png(path, std::io::BufReader::new(file))
}

/// Decodes a PNG from any reader (a file, or request bytes in a `Cursor`); `path` names it in errors.
///
/// The size IHDR declares is checked against [`MAX_PIXELS`] and, after palette/low-depth expansion, against
/// [`MAX_FRAME_BYTES`] before the output buffer is allocated: a 389 KB PNG may declare 20000 x 20000.
/// The png crate's own working buffers stay within its default `Limits` (64 MB).
pub fn decode_png(path: &Path, reader: impl std::io::BufRead + std::io::Seek) -> Result<Mammogram> {
    let mut decoder = png::Decoder::new(reader);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| IoError::format(path, format!("not a readable PNG: {e}")))?;
    let (w, h) = (reader.info().width as u64, reader.info().height as u64);
    if w * h > MAX_PIXELS as u64 {
        return Err(IoError::unsupported(path, format!("PNG of {w} x {h} pixels (more than {MAX_PIXELS})")));
    }
    let info = reader.info();
    let (width, height) = (info.width as usize, info.height as usize);
    let src_depth = info.bit_depth as u8;
    // Expansion (palette to RGB, 16-bit) multiplies the bytes per pixel; bound the buffer itself too.
    let size = reader
        .output_buffer_size()
        .filter(|&s| s <= MAX_FRAME_BYTES)
        .ok_or_else(|| IoError::unsupported(path, format!("PNG of {w} x {h} pixels decodes to too many bytes")))?;
    let (color, depth) = reader.output_color_type();
    if color != png::ColorType::Grayscale {
        return Err(IoError::unsupported(
            path,
            format!("PNG colour type {color:?}: mammograms must be single-channel grayscale"),
        ));
    }
    let mut buf = try_zeros::<u8>(path, size)?;
    let frame = reader.next_frame(&mut buf).map_err(|e| IoError::format(path, format!("corrupt PNG data: {e}")))?;
    let buf = &buf[..frame.buffer_size()];
    let data: Vec<u16> = match depth {
        png::BitDepth::Sixteen => {
            try_collect(path, buf.len() / 2, buf.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])))?
        }
        _ => try_collect(path, buf.len(), buf.iter().map(|&b| b as u16))?,
    };
    let bits = if depth == png::BitDepth::Sixteen { 16 } else { 8 };
    Ok(Mammogram {
        width,
        height,
        samples: Samples::Unsigned(data),
        info: ImageInfo::plain(SourceKind::Png { bit_depth: src_depth }, bits),
    })
}

/// Writes a 16-bit grayscale PNG atomically.
pub fn write_png16(path: &Path, img: &GrayImage<u16>) -> Result<()> {
    // Into a buffer of the final size, two bytes a value (a byte swap the compiler vectorises; pushing
    // each value's bytes was a capacity check per value, a tenth of a full-field map's write).
    let mut bytes = vec![0u8; img.data.len() * 2];
    for (b, v) in bytes.chunks_exact_mut(2).zip(&img.data) {
        b.copy_from_slice(&v.to_be_bytes());
    }
    write_png(path, img.width, img.height, png::BitDepth::Sixteen, png::ColorType::Grayscale, &bytes)
}

/// Writes an 8-bit grayscale PNG atomically.
pub fn write_png8(path: &Path, img: &GrayImage<u8>) -> Result<()> {
    write_png(path, img.width, img.height, png::BitDepth::Eight, png::ColorType::Grayscale, &img.data)
}

/// Writes an 8-bit RGB PNG atomically (overlays).
pub fn write_png_rgb(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<()> {
    write_png(path, width, height, png::BitDepth::Eight, png::ColorType::Rgb, rgb)
}

fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    depth: png::BitDepth,
    color: png::ColorType,
    data: &[u8],
) -> Result<()> {
    crate::atomic::write_with(path, |w| {
        let mut enc = png::Encoder::new(w, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(depth);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(data).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_round_trip_and_rgb_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let img = GrayImage::from_vec(3, 2, vec![0, 1, 4095, 65535, 300, 7]);
        write_png16(&p, &img).unwrap();
        let m = read_png(&p).unwrap();
        assert_eq!(m.samples, Samples::Unsigned(img.data.clone()));
        write_png_rgb(&p, 1, 1, &[1, 2, 3]).unwrap();
        let e = read_png(&p).unwrap_err().to_string();
        assert!(e.contains("a.png") && e.contains("grayscale"), "{e}");
    }
}
