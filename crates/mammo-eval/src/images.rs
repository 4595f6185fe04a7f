//! Small in-memory PNG makers for the report gallery: a grey-scale view of a raster, a colour-mapped
//! view, and a heat map blended over a patch.
//!
//! Rasters are row-major `f32`, `w × h`. The PNG bytes go straight into the report as data URIs, so
//! nothing here touches the file system.

/// The "inferno" colour map (matplotlib) sampled at 17 evenly spaced points, as 8-bit sRGB.
///
/// Inferno is perceptually uniform and monotonic in lightness, so stronger attribution always reads as
/// brighter, also in grey-scale print and for colour-blind readers. Linear interpolation between these
/// 17 entries stays within 7/255 of the full 256-entry table.
const INFERNO: [[u8; 3]; 17] = [
    [0, 0, 4],
    [11, 7, 36],
    [33, 12, 74],
    [61, 9, 101],
    [87, 16, 110],
    [113, 25, 110],
    [138, 34, 106],
    [163, 44, 97],
    [188, 55, 84],
    [210, 70, 68],
    [228, 90, 49],
    [241, 115, 29],
    [249, 142, 9],
    [252, 172, 17],
    [249, 203, 53],
    [242, 234, 105],
    [252, 255, 164],
];

/// The inferno colour at `t` in [0, 1] (clamped; NaN maps to 0).
pub fn inferno(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (INFERNO.len() - 1) as f32;
    let i = (x.floor() as usize).min(INFERNO.len() - 2);
    let f = x - i as f32;
    let (a, b) = (INFERNO[i], INFERNO[i + 1]);
    std::array::from_fn(|c| (f32::from(a[c]) + (f32::from(b[c]) - f32::from(a[c])) * f).round() as u8)
}

/// Maps `v` linearly from `[lo, hi]` to [0, 1], clamped. NaN and an empty range (`hi <= lo`) give 0, so
/// a constant raster renders black rather than failing.
fn unit(v: f32, lo: f32, hi: f32) -> f32 {
    if v.is_nan() || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return 0.0;
    }
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// Rounds a value in [0, 1] to a byte.
fn byte(u: f32) -> u8 {
    (u * 255.0).round() as u8
}

/// Asserts that a raster has `w × h` values.
fn check_size(values: &[f32], w: usize, h: usize, what: &str) {
    assert_eq!(values.len(), w * h, "{what} must have w × h = {w} × {h} values");
}

/// An 8-bit grey-scale PNG of `values`, with `lo` shown black and `hi` white (linear, clamped).
///
/// Pass the same `lo`/`hi` for x and x + m (e.g. 0 and 1 for normalised patches) so that the two can be
/// compared by eye. NaN renders black.
///
/// # Panics
/// If `values.len() != w * h`, or `w` or `h` is 0 or exceeds `u32`.
pub fn gray_png(values: &[f32], w: usize, h: usize, lo: f32, hi: f32) -> Vec<u8> {
    check_size(values, w, h, "values");
    let pixels: Vec<u8> = values.iter().map(|&v| byte(unit(v, lo, hi))).collect();
    encode(w, h, ::png::ColorType::Grayscale, &pixels)
}

/// An RGB PNG of `values` through the inferno colour map, `lo` → black, `hi` → pale yellow.
///
/// Useful for the |m| column when absolute magnitude matters: pass the same `hi` for every row.
///
/// # Panics
/// If `values.len() != w * h`, or `w` or `h` is 0 or exceeds `u32`.
pub fn colormap_png(values: &[f32], w: usize, h: usize, lo: f32, hi: f32) -> Vec<u8> {
    check_size(values, w, h, "values");
    let pixels: Vec<u8> = values.iter().flat_map(|&v| inferno(unit(v, lo, hi))).collect();
    encode(w, h, ::png::ColorType::Rgb, &pixels)
}

/// An RGB PNG of a heat map over a patch: `base` in grey (expected in [0, 1], the normalised patch;
/// clamped) with `heat` in inferno colours blended on top, each pixel's opacity proportional to its heat.
///
/// `heat` is scaled by its own maximum (pixels at the maximum get full colour at 85% opacity), so the
/// overlay shows *where* the map points within this patch; compare magnitudes across patches with
/// [`colormap_png`] instead. Zero heat leaves the patch untouched, so the anatomy stays readable. A map
/// that is all zero (or all NaN) yields the plain patch.
///
/// # Panics
/// If either raster's length is not `w * h`, or `w` or `h` is 0 or exceeds `u32`.
pub fn heat_overlay_png(base: &[f32], heat: &[f32], w: usize, h: usize) -> Vec<u8> {
    /// The opacity at maximal heat: below 1 so the patch texture shows through even at the hot spot.
    const MAX_ALPHA: f32 = 0.85;
    check_size(base, w, h, "base");
    check_size(heat, w, h, "heat");
    let max = heat.iter().copied().filter(|v| !v.is_nan()).fold(0.0f32, f32::max);
    let pixels: Vec<u8> = base
        .iter()
        .zip(heat)
        .flat_map(|(&b, &v)| {
            let grey = unit(b, 0.0, 1.0);
            let t = unit(v, 0.0, max);
            let alpha = MAX_ALPHA * t;
            let color = inferno(t);
            color.map(|c| byte(grey * (1.0 - alpha) + f32::from(c) / 255.0 * alpha))
        })
        .collect();
    encode(w, h, ::png::ColorType::Rgb, &pixels)
}

/// Encodes 8-bit pixels as a PNG in memory.
fn encode(w: usize, h: usize, color: ::png::ColorType, pixels: &[u8]) -> Vec<u8> {
    let dim = |d: usize| u32::try_from(d).ok().filter(|&d| d > 0).expect("image sides must be in 1..=u32::MAX");
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, dim(w), dim(h));
    encoder.set_color(color);
    encoder.set_depth(::png::BitDepth::Eight);
    // explain writes full-field overlays (tens of megapixels): the default deflate level took more than
    // half of its run time, for files a few per cent smaller.
    encoder.set_compression(::png::Compression::Fast);
    // Writing to a Vec cannot fail, and the sizes were checked above: an error here is a bug.
    let mut writer = encoder.write_header().expect("PNG header for a valid size");
    writer.write_image_data(pixels).expect("PNG data of the declared size");
    writer.finish().expect("PNG finish");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG into (width, height, colour type, pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, ::png::ColorType, Vec<u8>) {
        let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, buf)
    }

    #[test]
    fn inferno_endpoints_and_interpolation() {
        assert_eq!(inferno(0.0), [0, 0, 4]);
        assert_eq!(inferno(1.0), [252, 255, 164]);
        assert_eq!(inferno(2.0), [252, 255, 164]);
        assert_eq!(inferno(f32::NAN), [0, 0, 4]);
        assert_eq!(inferno(0.5), [188, 55, 84]);
        // Half-way between entries 0 and 1.
        assert_eq!(inferno(1.0 / 32.0), [6, 4, 20]);
        // Lightness grows monotonically (a luma proxy), which is why inferno was chosen.
        let luma = |c: [u8; 3]| 0.299 * f32::from(c[0]) + 0.587 * f32::from(c[1]) + 0.114 * f32::from(c[2]);
        for k in 0..100 {
            assert!(luma(inferno(k as f32 / 100.0)) <= luma(inferno((k + 1) as f32 / 100.0)) + 0.5);
        }
    }

    #[test]
    fn gray_png_round_trips() {
        let png = gray_png(&[0.0, 0.5, 1.0, 2.0, -1.0, f32::NAN], 3, 2, 0.0, 1.0);
        let (w, h, color, px) = decode(&png);
        assert_eq!((w, h, color), (3, 2, ::png::ColorType::Grayscale));
        assert_eq!(px, [0, 128, 255, 255, 0, 0]);
        // A window maps lo to black and hi to white; an empty window renders black.
        assert_eq!(decode(&gray_png(&[10.0, 20.0], 2, 1, 10.0, 20.0)).3, [0, 255]);
        assert_eq!(decode(&gray_png(&[10.0, 20.0], 2, 1, 5.0, 5.0)).3, [0, 0]);
    }

    #[test]
    fn colormap_png_uses_inferno() {
        let (_, _, color, px) = decode(&colormap_png(&[0.0, 2.0], 2, 1, 0.0, 2.0));
        assert_eq!(color, ::png::ColorType::Rgb);
        assert_eq!(px, [0, 0, 4, 252, 255, 164]);
    }

    #[test]
    fn overlay_blends_by_heat() {
        // Pixel 0: no heat → the plain grey patch. Pixel 1: maximal heat → 85% of the top colour over grey.
        let (_, _, color, px) = decode(&heat_overlay_png(&[0.4, 0.4], &[0.0, 3.0], 2, 1));
        assert_eq!(color, ::png::ColorType::Rgb);
        assert_eq!(&px[..3], &[102, 102, 102]);
        let expect = |c: f32| (0.4 * 255.0 * 0.15 + c * 0.85).round() as u8;
        assert_eq!(&px[3..], &[expect(252.0), expect(255.0), expect(164.0)]);
        // All-zero heat leaves the patch as it is.
        assert_eq!(decode(&heat_overlay_png(&[1.0, 0.0], &[0.0, 0.0], 2, 1)).3, [255, 255, 255, 0, 0, 0]);
    }

    #[test]
    #[should_panic(expected = "w × h")]
    fn wrong_size_panics() {
        gray_png(&[0.0; 5], 3, 2, 0.0, 1.0);
    }
}
