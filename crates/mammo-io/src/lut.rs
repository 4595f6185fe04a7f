//! The DICOM grayscale pipeline after decoding: modality LUT (rescale) and VOI LUT (window or table),
//! as PS3.3 C.11.1 and C.11.2 define them.

use serde::Serialize;

/// The modality LUT (PS3.3 C.11.1): a linear rescale, or a table from the Modality LUT Sequence.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ModalityLut {
    /// Rescale Slope / Rescale Intercept: output = slope * stored + intercept.
    Rescale { slope: f64, intercept: f64 },
    /// A lookup table; stored values below `first_mapped` take the first entry, beyond the last the last.
    Table {
        first_mapped: i32,
        bits: u16,
        #[serde(skip)]
        entries: Vec<u16>,
    },
}

impl Default for ModalityLut {
    fn default() -> Self {
        ModalityLut::Rescale { slope: 1.0, intercept: 0.0 }
    }
}

impl ModalityLut {
    #[inline]
    pub fn apply(&self, v: f64) -> f64 {
        match self {
            ModalityLut::Rescale { slope, intercept } => v * slope + intercept,
            ModalityLut::Table { first_mapped, entries, .. } => {
                if entries.is_empty() {
                    return v;
                }
                let i = (v as i64 - *first_mapped as i64).clamp(0, entries.len() as i64 - 1) as usize;
                entries[i] as f64
            }
        }
    }
    pub fn is_identity(&self) -> bool {
        matches!(self, ModalityLut::Rescale { slope, intercept } if *slope == 1.0 && *intercept == 0.0)
    }
    /// A one-line description for `inspect`.
    pub fn describe(&self) -> String {
        match self {
            ModalityLut::Rescale { slope, intercept } => format!("slope {slope} intercept {intercept}"),
            ModalityLut::Table { first_mapped, bits, entries, .. } => {
                format!("table of {} {bits}-bit entries from {first_mapped}", entries.len())
            }
        }
    }
}

/// VOI LUT Function (0028,1056).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

impl VoiFunction {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "LINEAR" => Some(VoiFunction::Linear),
            "LINEAR_EXACT" => Some(VoiFunction::LinearExact),
            "SIGMOID" => Some(VoiFunction::Sigmoid),
            _ => None,
        }
    }
}

/// One VOI transform: a window or an explicit table from the VOI LUT Sequence.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Voi {
    Window {
        center: f64,
        width: f64,
        function: VoiFunction,
    },
    Table {
        /// First input value mapped (LUT Descriptor, second value).
        first_mapped: i32,
        /// Bits per entry (LUT Descriptor, third value).
        bits: u16,
        #[serde(skip)]
        entries: Vec<u16>,
    },
}

impl Voi {
    /// A linear window covering `lo..=hi` exactly.
    pub fn full_range(lo: f64, hi: f64) -> Self {
        Voi::Window { center: (lo + hi) / 2.0, width: (hi - lo).max(1.0), function: VoiFunction::LinearExact }
    }

    /// Maps a modality value to `[y_min, y_max]`, following the formulas of PS3.3 C.11.2.1.2.
    pub fn apply(&self, x: f64, y_min: f64, y_max: f64) -> f64 {
        let range = y_max - y_min;
        match self {
            Voi::Window { center: c, width: w, function, .. } => match function {
                VoiFunction::Linear => {
                    // C.11.2.1.2.1: the centre and width are offset by 0.5 and 1.
                    let (c, w) = (c - 0.5, (w - 1.0).max(0.0));
                    if w <= 0.0 {
                        return if x <= c { y_min } else { y_max };
                    }
                    if x <= c - w / 2.0 {
                        y_min
                    } else if x > c + w / 2.0 {
                        y_max
                    } else {
                        ((x - c) / w + 0.5) * range + y_min
                    }
                }
                VoiFunction::LinearExact => {
                    if *w <= 0.0 {
                        return if x <= *c { y_min } else { y_max };
                    }
                    if x <= c - w / 2.0 {
                        y_min
                    } else if x > c + w / 2.0 {
                        y_max
                    } else {
                        (x - c) / w * range + (y_min + y_max) / 2.0
                    }
                }
                VoiFunction::Sigmoid => {
                    let w = if *w == 0.0 { 1.0 } else { *w };
                    range / (1.0 + (-4.0 * (x - c) / w).exp()) + y_min
                }
            },
            Voi::Table { first_mapped, bits, entries, .. } => {
                if entries.is_empty() {
                    return y_min;
                }
                let i = (x.round() as i64 - *first_mapped as i64).clamp(0, entries.len() as i64 - 1) as usize;
                let max_entry = ((1u32 << (*bits).min(16)) - 1) as f64;
                entries[i] as f64 / max_entry * range + y_min
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(c: f64, w: f64, f: VoiFunction) -> Voi {
        Voi::Window { center: c, width: w, function: f }
    }

    #[test]
    fn linear_window_matches_the_standard_example() {
        // PS3.3 C.11.2.1.2.1: c=2048, w=4096 maps 0 to 0 and 4095 to full scale (within one grey level).
        let v = window(2048.0, 4096.0, VoiFunction::Linear);
        assert_eq!(v.apply(-10.0, 0.0, 255.0), 0.0);
        assert!((v.apply(4095.0, 0.0, 255.0) - 255.0).abs() < 0.1);
        assert_eq!(v.apply(5000.0, 0.0, 255.0), 255.0);
    }

    #[test]
    fn linear_exact_is_exactly_linear_and_sigmoid_is_centred() {
        let v = window(100.0, 200.0, VoiFunction::LinearExact);
        assert_eq!(v.apply(100.0, 0.0, 200.0), 100.0);
        assert_eq!(v.apply(150.0, 0.0, 200.0), 150.0);
        let s = window(100.0, 200.0, VoiFunction::Sigmoid);
        assert_eq!(s.apply(100.0, 0.0, 255.0), 127.5);
        assert!(s.apply(400.0, 0.0, 255.0) > 254.0);
    }

    #[test]
    fn table_clamps_below_and_above() {
        let t = Voi::Table { first_mapped: 10, bits: 8, entries: vec![0, 100, 255] };
        assert_eq!(t.apply(0.0, 0.0, 255.0), 0.0);
        assert_eq!(t.apply(11.0, 0.0, 255.0), 100.0);
        assert_eq!(t.apply(99.0, 0.0, 255.0), 255.0);
    }
}
