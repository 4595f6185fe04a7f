//! The decoded image and the metadata needed to interpret its values.

use serde::Serialize;

use crate::lut::{ModalityLut, Voi};

/// A row-major grayscale raster.
#[derive(Clone, Debug, PartialEq)]
pub struct GrayImage<T> {
    pub width: usize,
    pub height: usize,
    pub data: Vec<T>,
}

impl<T: Copy + Default> GrayImage<T> {
    pub fn new(width: usize, height: usize) -> Self {
        GrayImage { width, height, data: vec![T::default(); width * height] }
    }
    pub fn from_vec(width: usize, height: usize, data: Vec<T>) -> Self {
        assert_eq!(data.len(), width * height, "raster size does not match its dimensions");
        GrayImage { width, height, data }
    }
    #[inline]
    pub fn get(&self, x: usize, y: usize) -> T {
        self.data[y * self.width + x]
    }
    #[inline]
    pub fn set(&mut self, x: usize, y: usize, v: T) {
        self.data[y * self.width + x] = v;
    }
    pub fn map<U>(&self, f: impl Fn(T) -> U) -> GrayImage<U> {
        GrayImage { width: self.width, height: self.height, data: self.data.iter().map(|&v| f(v)).collect() }
    }
}

/// The stored pixel values, exactly as the file holds them once decompressed and masked to BitsStored.
/// Kept as 16-bit so a 4,700 x 2,900 full-field image stays at 27 MB; 8-bit sources are widened.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    Unsigned(Vec<u16>),
    Signed(Vec<i16>),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::Unsigned(v) => v.len(),
            Samples::Signed(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn get(&self, i: usize) -> i32 {
        match self {
            Samples::Unsigned(v) => v[i] as i32,
            Samples::Signed(v) => v[i] as i32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Photometric {
    /// Low values are dark (the usual case).
    #[serde(rename = "MONOCHROME2")]
    Monochrome2,
    /// Low values are bright: common for processed mammograms; inverted before display and preprocessing.
    #[serde(rename = "MONOCHROME1")]
    Monochrome1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Hash)]
pub enum Laterality {
    #[serde(rename = "L")]
    Left,
    #[serde(rename = "R")]
    Right,
}

impl Laterality {
    /// Accepts the spellings the datasets use: `L`, `R`, `LEFT`, `RIGHT` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "L" | "LEFT" => Some(Laterality::Left),
            "R" | "RIGHT" => Some(Laterality::Right),
            _ => None,
        }
    }
    pub fn letter(self) -> &'static str {
        match self {
            Laterality::Left => "L",
            Laterality::Right => "R",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Hash)]
pub enum View {
    CC,
    MLO,
    ML,
    LM,
    XCCL,
    Other,
}

impl View {
    /// From a ViewPosition value (`CC`, `MLO`) or a ViewCodeSequence meaning (`cranio-caudal`,
    /// `medio-lateral oblique`).
    pub fn parse(s: &str) -> Option<Self> {
        let u = s.trim().to_ascii_uppercase();
        Some(match u.as_str() {
            "" => return None,
            "CC" => View::CC,
            "MLO" => View::MLO,
            "ML" => View::ML,
            "LM" => View::LM,
            "XCCL" => View::XCCL,
            _ if u.contains("OBLIQUE") => View::MLO,
            _ if u.contains("CRANIO-CAUDAL") || u.contains("CRANIOCAUDAL") => {
                if u.contains("EXAGGERATED") {
                    View::XCCL
                } else {
                    View::CC
                }
            }
            _ if u.contains("MEDIO-LATERAL") || u.contains("MEDIOLATERAL") => View::ML,
            _ if u.contains("LATERO-MEDIAL") || u.contains("LATEROMEDIAL") => View::LM,
            _ => View::Other,
        })
    }
}

/// Which reader produced the image.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceKind {
    Dicom { transfer_syntax: String, transfer_syntax_name: String },
    Pgm { binary: bool },
    Png { bit_depth: u8 },
}

/// Everything about an image except its pixels and its patient. There is deliberately no field for a
/// patient name, ID, birth date, institution or any date: those never leave the reader. Nor for any
/// free-text attribute (WindowCenterWidthExplanation, LUTExplanation, ModalityLUTType...): a site may
/// write anything there, identifiers included. The code strings kept (modality, presentation intent)
/// are kept only when they hold values that cannot spell one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageInfo {
    pub source: SourceKind,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: Photometric,
    /// Rescale slope/intercept or the Modality LUT Sequence's table; `None` when absent (identity).
    pub modality_lut: Option<ModalityLut>,
    /// VOI transforms in file order; the first is the default for viewing.
    pub voi: Vec<Voi>,
    /// (row spacing, column spacing) in millimetres.
    pub spacing_mm: Option<(f64, f64)>,
    /// Which attribute the spacing came from (`ImagerPixelSpacing`, `PixelSpacing`, `mini-MIAS`...).
    pub spacing_source: Option<String>,
    pub laterality: Option<Laterality>,
    pub view: Option<View>,
    pub modality: Option<String>,
    /// `FOR PROCESSING` (raw detector data) or `FOR PRESENTATION` (vendor-processed).
    pub presentation_intent: Option<String>,
}

impl ImageInfo {
    /// Metadata for a plain raster (PGM/PNG) that carries none of its own.
    pub fn plain(source: SourceKind, bits: u16) -> Self {
        ImageInfo {
            source,
            bits_allocated: if bits > 8 { 16 } else { 8 },
            bits_stored: bits,
            signed: false,
            photometric: Photometric::Monochrome2,
            modality_lut: None,
            voi: Vec::new(),
            spacing_mm: None,
            spacing_source: None,
            laterality: None,
            view: None,
            modality: None,
            presentation_intent: None,
        }
    }
}

/// A decoded mammogram: stored values plus how to interpret them.
#[derive(Clone, Debug, PartialEq)]
pub struct Mammogram {
    pub width: usize,
    pub height: usize,
    pub samples: Samples,
    pub info: ImageInfo,
}

impl Mammogram {
    /// Values after the modality LUT (rescale), as f32: exact for every 16-bit input.
    pub fn modality_values(&self) -> GrayImage<f32> {
        let lut = self.info.modality_lut.clone().unwrap_or_default();
        GrayImage::from_vec(self.width, self.height, self.per_pixel(|s| lut.apply(s) as f32))
    }

    /// `f` of every pixel's stored value, row-major. A 16-bit sample takes at most 65,536 values and a
    /// full-field mammogram has hundreds of times more pixels, so from [`TABLE_FROM`] pixels `f` is
    /// evaluated once per possible value into a table that the pixels then index (the LUTs' f64
    /// arithmetic per pixel was a tenth of `explain`'s time on a 12-megapixel image). Either way each
    /// pixel gets `f(value)`: the same bits.
    fn per_pixel<T: Copy>(&self, f: impl Fn(f64) -> T) -> Vec<T> {
        match (&self.samples, self.value_table(&f)) {
            (Samples::Unsigned(v), Some(table)) => v.iter().map(|&s| table[usize::from(s)]).collect(),
            (Samples::Signed(v), Some(table)) => v.iter().map(|&s| table[signed_index(s)]).collect(),
            (Samples::Unsigned(v), None) => v.iter().map(|&s| f(f64::from(s))).collect(),
            (Samples::Signed(v), None) => v.iter().map(|&s| f(f64::from(s))).collect(),
        }
    }

    /// `f` of every value a sample can take (indexed by the unsigned value, or by [`signed_index`]),
    /// when the image has [`TABLE_FROM`] pixels or more; `None` below.
    fn value_table<T>(&self, f: &impl Fn(f64) -> T) -> Option<Vec<T>> {
        match &self.samples {
            Samples::Unsigned(v) if v.len() >= TABLE_FROM => Some((0..=u16::MAX).map(|s| f(f64::from(s))).collect()),
            Samples::Signed(v) if v.len() >= TABLE_FROM => {
                Some((i16::MIN..=i16::MAX).map(|s| f(f64::from(s))).collect())
            }
            _ => None,
        }
    }

    /// The smallest and largest of `f` over the stored values present: [`min_max`] of `f` per pixel,
    /// without a full-size image of `f` (min and max do not depend on the order they see values in).
    fn min_max_of(&self, f: impl Fn(f64) -> f32) -> (f32, f32) {
        let mut seen = vec![false; 1 << 16];
        match &self.samples {
            Samples::Unsigned(v) => v.iter().for_each(|&s| seen[usize::from(s)] = true),
            Samples::Signed(v) => v.iter().for_each(|&s| seen[(i32::from(s) - i32::from(i16::MIN)) as usize] = true),
        }
        let offset = if matches!(self.samples, Samples::Signed(_)) { i32::from(i16::MIN) } else { 0 };
        let present: Vec<f32> =
            seen.iter().enumerate().filter(|&(_, &p)| p).map(|(i, _)| f(f64::from(i as i32 + offset))).collect();
        min_max(&present)
    }

    /// The 16-bit raster `convert` writes: values after the modality LUT, no windowing. For unsigned data
    /// with an identity LUT these are the stored values themselves (no float round trip). Values outside
    /// 0..=65535 are clamped and reported as the second element so the caller can warn.
    pub fn to_u16_after_modality(&self) -> (GrayImage<u16>, usize) {
        if let (Samples::Unsigned(v), None) =
            (&self.samples, self.info.modality_lut.as_ref().filter(|l| !l.is_identity()))
        {
            return (GrayImage::from_vec(self.width, self.height, v.clone()), 0);
        }
        let values = self.modality_values();
        let mut clamped = 0usize;
        let data = values
            .data
            .iter()
            .map(|&v| {
                let r = v.round();
                if !(0.0..=65535.0).contains(&r) {
                    clamped += 1;
                }
                r.clamp(0.0, 65535.0) as u16
            })
            .collect();
        (GrayImage::from_vec(self.width, self.height, data), clamped)
    }

    /// Values with "brighter is denser" whatever the photometric interpretation: modality LUT applied,
    /// MONOCHROME1 inverted around its range. This is what preprocessing works on.
    pub fn density_values(&self) -> GrayImage<f32> {
        GrayImage::from_vec(self.width, self.height, self.per_pixel(self.density_of()))
    }

    /// [`Mammogram::density_values`] a row at a time, without the full-size image: a 12-megapixel
    /// mammogram's is 48 MB of fresh pages, written on one thread, only to be downsampled at once.
    pub fn density_rows(&self) -> DensityRows<'_> {
        let f = self.density_of();
        DensityRows { m: self, table: self.value_table(&f).unwrap_or_default(), f: Box::new(f) }
    }

    /// The density value of a stored value: the modality LUT, and for MONOCHROME1 the inversion around
    /// the range the stored bits can hold (not the image's own extremes), so the background comes out
    /// near the bottom of the range as in a MONOCHROME2 image.
    fn density_of(&self) -> impl Fn(f64) -> f32 + Send + Sync + 'static {
        let lut = self.info.modality_lut.clone().unwrap_or_default();
        let inverted = (self.info.photometric == Photometric::Monochrome1).then(|| {
            let (lo, hi) = self.stored_range();
            (lut.apply(lo as f64) as f32, lut.apply(hi as f64) as f32)
        });
        move |s| {
            let v = lut.apply(s) as f32;
            match inverted {
                Some((a, b)) => a + b - v,
                None => v,
            }
        }
    }

    /// The smallest and largest value BitsStored allows.
    pub fn stored_range(&self) -> (i32, i32) {
        let b = self.info.bits_stored.clamp(1, 16) as u32;
        if self.info.signed { (-(1 << (b - 1)), (1 << (b - 1)) - 1) } else { (0, (1 << b) - 1) }
    }

    /// An 8-bit image for viewing: modality LUT, then the VOI transform `voi_index` (or the full range
    /// when the file has none), MONOCHROME1 shown the conventional way (inverted).
    pub fn to_display_u8(&self, voi_index: usize) -> GrayImage<u8> {
        let lut = self.info.modality_lut.clone().unwrap_or_default();
        let modality = |s: f64| lut.apply(s) as f32;
        let voi = self.info.voi.get(voi_index).cloned().unwrap_or_else(|| {
            let (lo, hi) = self.min_max_of(modality);
            Voi::full_range(lo as f64, hi as f64)
        });
        let invert = self.info.photometric == Photometric::Monochrome1;
        let data = self.per_pixel(|s| {
            let y = voi.apply(modality(s) as f64, 0.0, 255.0);
            let y = if invert { 255.0 - y } else { y };
            y.round().clamp(0.0, 255.0) as u8
        });
        GrayImage::from_vec(self.width, self.height, data)
    }
}

/// The rows of [`Mammogram::density_values`], one at a time ([`Mammogram::density_rows`]): each value
/// the same bits as in the full-size image.
pub struct DensityRows<'a> {
    m: &'a Mammogram,
    /// The density of every stored value, as `per_pixel` would use it (empty for small images).
    table: Vec<f32>,
    f: Box<dyn Fn(f64) -> f32 + Send + Sync>,
}

impl DensityRows<'_> {
    /// Writes row `y` (`width` values) into `out`.
    ///
    /// # Panics
    /// If `y` is not a row of the image or `out` is not `width` long.
    pub fn row(&self, y: usize, out: &mut [f32]) {
        let w = self.m.width;
        assert!(y < self.m.height && out.len() == w, "density row {y} of a {w} x {} image", self.m.height);
        match &self.m.samples {
            Samples::Unsigned(v) => {
                let row = &v[y * w..(y + 1) * w];
                match self.table.is_empty() {
                    false => out.iter_mut().zip(row).for_each(|(o, &s)| *o = self.table[usize::from(s)]),
                    true => out.iter_mut().zip(row).for_each(|(o, &s)| *o = (self.f)(f64::from(s))),
                }
            }
            Samples::Signed(v) => {
                let row = &v[y * w..(y + 1) * w];
                match self.table.is_empty() {
                    false => out.iter_mut().zip(row).for_each(|(o, &s)| *o = self.table[signed_index(s)]),
                    true => out.iter_mut().zip(row).for_each(|(o, &s)| *o = (self.f)(f64::from(s))),
                }
            }
        }
    }
}

/// Where a signed sample's entry lies in a table of every value (from `i16::MIN`).
fn signed_index(s: i16) -> usize {
    (i32::from(s) - i32::from(i16::MIN)) as usize
}

/// From this many pixels on, per-pixel functions of the stored value go through a table of all 65,536
/// values (see `Mammogram::per_pixel`); below it the table would cost more than it saves.
const TABLE_FROM: usize = 1 << 18;

pub(crate) fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_give_the_per_pixel_bits() {
        // The same pixels below and above TABLE_FROM (the second image repeats the first), through a
        // non-trivial rescale and VOI, unsigned and signed, MONOCHROME1 and 2, with and without a VOI.
        let small: Vec<u16> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 16) as u16 & 0x3fff).collect();
        let big: Vec<u16> = small.iter().cycle().take(TABLE_FROM + 4096).copied().collect();
        for photometric in [Photometric::Monochrome1, Photometric::Monochrome2] {
            for voi in [vec![], vec![Voi::full_range(100.0, 9000.0)]] {
                let mut info = ImageInfo::plain(SourceKind::Png { bit_depth: 16 }, 14);
                info.photometric = photometric;
                info.modality_lut = Some(ModalityLut::Rescale { slope: 0.37, intercept: -12.5 });
                info.voi = voi;
                let image = |samples: Samples, n: usize| Mammogram { width: n, height: 1, samples, info: info.clone() };
                let signed = |v: &[u16]| Samples::Signed(v.iter().map(|&s| s as i16 - 8192).collect());
                for (a, b) in [
                    (image(Samples::Unsigned(small.clone()), 4096), image(Samples::Unsigned(big.clone()), big.len())),
                    (image(signed(&small), 4096), image(signed(&big), big.len())),
                ] {
                    let (ma, mb) = (a.modality_values().data, b.modality_values().data);
                    assert!(ma.iter().zip(&mb).all(|(x, y)| x.to_bits() == y.to_bits()));
                    // The full-range VOI of `b` is the range of `a`'s values (the same set).
                    assert_eq!(a.to_display_u8(0).data, b.to_display_u8(0).data[..4096]);
                    let per_pixel: Vec<u8> = {
                        let values = b.modality_values();
                        let (lo, hi) = min_max(&values.data);
                        let voi = b.info.voi.first().cloned().unwrap_or(Voi::full_range(lo as f64, hi as f64));
                        let invert = photometric == Photometric::Monochrome1;
                        values
                            .data
                            .iter()
                            .map(|&v| {
                                let y = voi.apply(v as f64, 0.0, 255.0);
                                (if invert { 255.0 - y } else { y }).round().clamp(0.0, 255.0) as u8
                            })
                            .collect()
                    };
                    assert_eq!(b.to_display_u8(0).data, per_pixel);
                    // Density values: as they were computed (modality values, then MONOCHROME1 inverted
                    // over the stored range), and the same again row by row, below and above the table's
                    // size, in one row and in many.
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let many = Mammogram { width: 64, height: b.samples.len() / 64, ..b.clone() };
                    for m in [&a, &b, &many] {
                        let dense = m.density_values().data;
                        let lut = m.info.modality_lut.clone().unwrap_or_default();
                        let (lo, hi) = m.stored_range();
                        let (x, y) = (lut.apply(lo as f64) as f32, lut.apply(hi as f64) as f32);
                        let mono1 = photometric == Photometric::Monochrome1;
                        let before: Vec<f32> =
                            m.modality_values().data.iter().map(|&v| if mono1 { x + y - v } else { v }).collect();
                        assert_eq!(bits(&dense), bits(&before));
                        let rows = m.density_rows();
                        let mut row = vec![0f32; m.width];
                        for r in 0..m.height {
                            rows.row(r, &mut row);
                            assert_eq!(bits(&row), bits(&dense[r * m.width..(r + 1) * m.width]), "row {r}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn monochrome1_density_inverts_over_the_stored_range() {
        let mut info = ImageInfo::plain(SourceKind::Png { bit_depth: 16 }, 12);
        info.photometric = Photometric::Monochrome1;
        let m = Mammogram { width: 3, height: 1, samples: Samples::Unsigned(vec![4095, 0, 1000]), info };
        assert_eq!(m.density_values().data, vec![0.0, 4095.0, 3095.0]);
        let (png, clamped) = m.to_u16_after_modality();
        assert_eq!((png.data, clamped), (vec![4095, 0, 1000], 0), "convert keeps stored values");
    }
}
