//! Image grids for TensorBoard and reports: same-size grayscale patches tiled row by row into one 8-bit
//! PNG, like the "x, m, x + m" panels of the attribution GAN.

use crate::error::{Result, TrackError};

/// How a tile's values become gray levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TileScale {
    /// Values are already in [0, 1] (a normalised patch): clamp to it. Patches of one kind stay
    /// comparable across tiles and steps.
    #[default]
    Clamp,
    /// Each tile's own minimum to black and maximum to white; a constant tile is mid-gray. Shows the
    /// structure of any tile, at the cost of comparability.
    MinMax,
    /// For signed maps (the GAN's m): each tile's largest |value| to black (negative) and white
    /// (positive), zero to mid-gray; an all-zero tile is mid-gray.
    Symmetric,
}

/// Layout and scaling of a grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridOptions {
    /// How tile values map to gray levels.
    pub scale: TileScale,
    /// Pixels between tiles (so that tiles with similar borders stay apart).
    pub gap: u32,
    /// Gray level of the gaps and of empty cells in a last, partial row.
    pub background: u8,
}

impl Default for GridOptions {
    /// Clamped values, 2 px white gaps (mammogram backgrounds are black, so black gaps would vanish).
    fn default() -> Self {
        GridOptions { scale: TileScale::Clamp, gap: 2, background: 255 }
    }
}

/// Tiles `images` (each `w * h` values, row-major) into rows of `cols`, as 8-bit gray pixels. Returns the
/// pixels (row-major) and the grid's width and height. Non-finite values become black.
pub fn image_grid(
    images: &[&[f32]],
    w: usize,
    h: usize,
    cols: usize,
    options: &GridOptions,
) -> Result<(Vec<u8>, u32, u32)> {
    if images.is_empty() || w == 0 || h == 0 || cols == 0 {
        return Err(TrackError::InvalidInput(format!(
            "image grid: {} images of {w}x{h} in {cols} columns (want at least one non-empty image and column)",
            images.len()
        )));
    }
    if let Some((i, bad)) = images.iter().enumerate().find(|(_, img)| img.len() != w * h) {
        return Err(TrackError::InvalidInput(format!(
            "image grid: image {i} has {} values, not {w}x{h} = {}",
            bad.len(),
            w * h
        )));
    }
    let gap = options.gap as usize;
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let width = cols * w + (cols - 1) * gap;
    let height = rows * h + (rows - 1) * gap;
    let (Ok(width_u32), Ok(height_u32)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(TrackError::InvalidInput(format!("image grid: {width}x{height} pixels is too large")));
    };
    let mut pixels = vec![options.background; width * height];
    for (i, image) in images.iter().enumerate() {
        let to_unit = unit_map(image, options.scale);
        let (x0, y0) = ((i % cols) * (w + gap), (i / cols) * (h + gap));
        for (y, row) in image.chunks_exact(w).enumerate() {
            let out = &mut pixels[(y0 + y) * width + x0..][..w];
            for (pixel, &v) in out.iter_mut().zip(row) {
                let unit = to_unit(v);
                // f32::clamp passes NaN through; non-finite values are drawn black, explicitly.
                *pixel = if unit.is_finite() { (unit.clamp(0.0, 1.0) * 255.0).round() as u8 } else { 0 };
            }
        }
    }
    Ok((pixels, width_u32, height_u32))
}

/// The tile's value -> [0, 1] map for `scale`, from the tile's finite values.
fn unit_map(image: &[f32], scale: TileScale) -> impl Fn(f32) -> f32 {
    let finite = image.iter().copied().filter(|v| v.is_finite());
    let (offset, factor) = match scale {
        TileScale::Clamp => (0.0, 1.0),
        TileScale::MinMax => {
            let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            if hi > lo { (-lo, 1.0 / (hi - lo)) } else { (f32::NAN, 0.0) }
        }
        TileScale::Symmetric => {
            let a = finite.fold(0.0f32, |a, v| a.max(v.abs()));
            if a > 0.0 { (a, 0.5 / a) } else { (f32::NAN, 0.0) }
        }
    };
    // A NaN offset marks a constant tile: every finite value goes to mid-gray.
    move |v: f32| {
        if offset.is_nan() { if v.is_finite() { 0.5 } else { f32::NAN } } else { (v + offset) * factor }
    }
}

/// Encodes 8-bit gray pixels (row-major, `width * height`) as a PNG file.
pub fn encode_png_gray(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let png_error = |e: png::EncodingError| TrackError::InvalidInput(format!("PNG encoding of {width}x{height}: {e}"));
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(pixels).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}

/// [`image_grid`] encoded as an 8-bit grayscale PNG: returns the PNG bytes, width and height, ready for
/// [`crate::TensorBoardWriter::image`] with one channel.
pub fn image_grid_png(
    images: &[&[f32]],
    w: usize,
    h: usize,
    cols: usize,
    options: &GridOptions,
) -> Result<(Vec<u8>, u32, u32)> {
    let (pixels, width, height) = image_grid(images, w, h, cols, options)?;
    Ok((encode_png_gray(&pixels, width, height)?, width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (Vec<u8>, u32, u32) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Grayscale, png::BitDepth::Eight));
        buf.truncate(info.buffer_size());
        (buf, info.width, info.height)
    }

    #[test]
    fn tiles_are_placed_row_by_row_with_gaps() {
        let a = [0.0, 1.0, 0.5, 2.0]; // 2x2; 2.0 clamps to white
        let b = [1.0; 4];
        let c = [0.0; 4];
        let options = GridOptions { scale: TileScale::Clamp, gap: 1, background: 7 };
        let (png, w, h) = image_grid_png(&[&a, &b, &c], 2, 2, 2, &options).unwrap();
        assert_eq!((w, h), (5, 5));
        let (pixels, pw, ph) = decode(&png);
        assert_eq!((pw, ph), (5, 5));
        #[rustfmt::skip]
        let want = [
            0, 255, 7, 255, 255,
            128, 255, 7, 255, 255,
            7, 7, 7, 7, 7,
            0, 0, 7, 7, 7,
            0, 0, 7, 7, 7,
        ];
        assert_eq!(pixels, want);
    }

    #[test]
    fn per_tile_scalings() {
        let opts = |scale| GridOptions { scale, gap: 0, background: 0 };
        let tile = [-2.0, 0.0, 1.0, f32::NAN];
        let (p, _, _) = image_grid(&[&tile], 4, 1, 1, &opts(TileScale::MinMax)).unwrap();
        assert_eq!(p, [0, 170, 255, 0]);
        let (p, _, _) = image_grid(&[&tile], 4, 1, 1, &opts(TileScale::Symmetric)).unwrap();
        assert_eq!(p, [0, 128, 191, 0]);
        let (p, _, _) = image_grid(&[&[3.0; 2]], 2, 1, 1, &opts(TileScale::MinMax)).unwrap();
        assert_eq!(p, [128, 128]);
    }

    #[test]
    fn bad_sizes_are_refused() {
        let err = image_grid(&[&[0.0; 4], &[0.0; 3]], 2, 2, 2, &GridOptions::default()).unwrap_err();
        assert!(err.to_string().contains("image 1 has 3 values"), "{err}");
        assert!(image_grid(&[], 2, 2, 2, &GridOptions::default()).is_err());
    }
}
