//! Drawing on an RGB raster: filled and outlined rectangles and text in a built-in 5×7 bitmap font,
//! scaled by an integer factor. Enough to label boxes on an overlay; no font files, no anti-aliasing.
//!
//! Coordinates are pixels, `x` to the right and `y` down, as `i64` so that shapes may lie partly (or
//! wholly) outside the canvas: whatever falls outside is clipped.

/// An 8-bit sRGB colour.
pub type Rgb = [u8; 3];

/// Glyph cell: 5 columns × 7 rows; characters advance by 6 columns (one blank between glyphs).
pub const GLYPH_W: i64 = 5;
pub const GLYPH_H: i64 = 7;
const ADVANCE: i64 = GLYPH_W + 1;

/// The 5×7 pattern of `c` (rows top to bottom, bit 4 = leftmost column). Lower case draws as upper
/// case; a character without a glyph draws as `?`.
pub fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x12, 0x12, 0x12, 0x1F, 0x02, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        ' ' => [0; 7],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

/// The size in pixels of `text` drawn at `scale`: (width, height). Empty text is (0, 0).
pub fn text_size(text: &str, scale: i64) -> (i64, i64) {
    let n = text.chars().count() as i64;
    if n == 0 {
        return (0, 0);
    }
    (n * ADVANCE * scale - scale, GLYPH_H * scale)
}

/// An RGB raster to draw on, row-major, 3 bytes a pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A canvas over `rgb` (`width * height * 3` bytes).
    ///
    /// # Panics
    /// If `rgb` has another length.
    pub fn new(width: usize, height: usize, rgb: Vec<u8>) -> Canvas {
        assert_eq!(rgb.len(), width * height * 3, "a canvas needs width × height × 3 bytes");
        Canvas { width, height, rgb }
    }

    /// The colour at (x, y), or `None` outside the canvas.
    pub fn pixel(&self, x: i64, y: i64) -> Option<Rgb> {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return None;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        Some([self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]])
    }

    /// Fills the rectangle `[x, x + w) × [y, y + h)`, clipped to the canvas.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        let (x0, x1) = (x.max(0), (x + w).min(self.width as i64));
        let (y0, y1) = (y.max(0), (y + h).min(self.height as i64));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for yy in y0..y1 {
            let row = yy as usize * self.width;
            for px in self.rgb[(row + x0 as usize) * 3..(row + x1 as usize) * 3].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Outlines the rectangle `[x, x + w) × [y, y + h)` with a line `thickness` pixels wide, drawn
    /// inside the rectangle (a thickness of at least half a side fills it).
    pub fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, thickness: i64, color: Rgb) {
        if w <= 0 || h <= 0 || thickness <= 0 {
            return;
        }
        let t = thickness.min(w).min(h);
        self.fill_rect(x, y, w, t, color);
        self.fill_rect(x, y + h - t, w, t, color);
        self.fill_rect(x, y, t, h, color);
        self.fill_rect(x + w - t, y, t, h, color);
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel a `scale` × `scale` square.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: Rgb) {
        let scale = scale.max(1);
        for (k, c) in text.chars().enumerate() {
            let gx = x + k as i64 * ADVANCE * scale;
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits >> (GLYPH_W - 1 - col) & 1 == 1 {
                        self.fill_rect(gx + col * scale, y + row as i64 * scale, scale, scale, color);
                    }
                }
            }
        }
    }

    /// Draws `text` on a filled background padded by `scale` pixels on every side, with the
    /// background's top-left corner at (x, y). Returns the background's (width, height).
    pub fn label(&mut self, x: i64, y: i64, text: &str, scale: i64, color: Rgb, background: Rgb) -> (i64, i64) {
        let scale = scale.max(1);
        let (tw, th) = text_size(text, scale);
        let (bw, bh) = (tw + 2 * scale, th + 2 * scale);
        self.fill_rect(x, y, bw, bh, background);
        self.text(x + scale, y + scale, text, scale, color);
        (bw, bh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREY: Rgb = [100, 100, 100];
    const RED: Rgb = [255, 0, 0];

    fn grey(w: usize, h: usize) -> Canvas {
        Canvas::new(w, h, GREY.repeat(w * h))
    }

    fn painted(c: &Canvas) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        for y in 0..c.height as i64 {
            for x in 0..c.width as i64 {
                if c.pixel(x, y) != Some(GREY) {
                    v.push((x, y));
                }
            }
        }
        v
    }

    #[test]
    fn a_stroked_box_changes_exactly_its_outline() {
        let mut c = grey(20, 16);
        c.stroke_rect(3, 4, 10, 8, 2, RED);
        for y in 0..16 {
            for x in 0..20 {
                let inside = (3..13).contains(&x) && (4..12).contains(&y);
                let interior = (5..11).contains(&x) && (6..10).contains(&y);
                let expect = if inside && !interior { RED } else { GREY };
                assert_eq!(c.pixel(x, y), Some(expect), "({x}, {y})");
            }
        }
    }

    #[test]
    fn shapes_outside_the_canvas_are_clipped() {
        let mut c = grey(8, 8);
        c.stroke_rect(-5, -5, 8, 8, 1, RED); // only its right and bottom sides are visible
        assert_eq!(c.pixel(2, 0), Some(RED));
        assert_eq!(c.pixel(0, 2), Some(RED));
        assert_eq!(c.pixel(1, 1), Some(GREY));
        c.fill_rect(100, 100, 5, 5, RED);
        c.text(-1000, 3, "0.93", 2, RED);
        assert_eq!(c.pixel(7, 7), Some(GREY));
        assert_eq!(c.pixel(100, 100), None);
    }

    #[test]
    fn text_renders_inside_its_bounding_box() {
        for scale in [1, 3] {
            let mut c = grey(140, 40);
            let (x, y) = (4, 5);
            c.text(x, y, "P=0.93%", scale, RED);
            let (w, h) = text_size("P=0.93%", scale);
            assert_eq!((w, h), (7 * 6 * scale - scale, 7 * scale));
            let px = painted(&c);
            assert!(px.len() > 40 * (scale * scale) as usize, "{} pixels", px.len());
            assert!(px.iter().all(|&(px, py)| (x..x + w).contains(&px) && (y..y + h).contains(&py)));
            // The box is tight: ink touches each of its four sides.
            assert!(px.iter().any(|p| p.0 == x) && px.iter().any(|p| p.0 == x + w - 1));
            assert!(px.iter().any(|p| p.1 == y) && px.iter().any(|p| p.1 == y + h - 1));
        }
    }

    #[test]
    fn glyphs_are_distinct_and_labels_have_a_background() {
        let digits: Vec<[u8; 7]> = "0123456789.%P=".chars().map(glyph).collect();
        for i in 0..digits.len() {
            for j in 0..i {
                assert_ne!(digits[i], digits[j], "glyphs {i} and {j}");
            }
        }
        assert_eq!(glyph('p'), glyph('P'));
        assert_eq!(text_size("", 3), (0, 0));
        let mut c = grey(40, 20);
        let (bw, bh) = c.label(1, 1, "0.5", 2, RED, [0, 0, 0]);
        assert_eq!((bw, bh), (3 * 12 - 2 + 4, 14 + 4));
        assert_eq!(c.pixel(1, 1), Some([0, 0, 0]));
        assert_eq!(c.pixel(1 + bw, 1), Some(GREY));
        assert!(painted(&c).iter().any(|&(x, y)| c.pixel(x, y) == Some(RED)));
    }
}
