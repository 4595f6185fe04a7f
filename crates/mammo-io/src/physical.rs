//! Sane ranges for physical sizes, checked before anything is allocated from them.
//!
//! A pixel spacing decides how large a resampled image is (source size x source spacing / target
//! spacing), so a spacing that is off by a factor of a thousand (a header in cm or µm, a typo, a hostile
//! file or request) turns a 64 x 64 image into terabytes. One range, used by every reader of a spacing
//! (a file's header, a layout's table, `--spacing`, `?spacing_mm=`), turns that into a one-line error.
//! It lives here, in the lowest crate, so the layout readers, `prepare`, `explain` and the server all
//! share it.

use std::ops::RangeInclusive;

/// Pixel spacings we accept, in mm. Mammography detectors have a pitch of 0.025-0.2 mm (digitised film is
/// scanned at 0.04-0.1 mm; the models work at 0.4 mm by default, and a coarser working spacing than 1 mm
/// leaves a 1 cm mass a few pixels wide). 0.01..=1.0 mm accepts every real source and working spacing
/// with a margin of more than 2x on both ends, and rejects values in the wrong unit (µm, cm) by a wide
/// margin.
pub const SPACING_MM: RangeInclusive<f64> = 0.01..=1.0;

/// `None` when `mm` is a pixel spacing in [`SPACING_MM`], else why not (one line, without a file name:
/// the caller adds where the value came from).
pub fn spacing_problem(mm: f64) -> Option<String> {
    if SPACING_MM.contains(&mm) {
        None
    } else {
        Some(format!(
            "pixel spacing {mm} mm is outside {}..={} mm (mammography detectors are 0.025-0.2 mm)",
            SPACING_MM.start(),
            SPACING_MM.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacings_outside_the_range_or_not_finite_are_refused() {
        for ok in [0.01, 0.05, 0.07, 0.1, 0.2, 0.4, 1.0] {
            assert_eq!(spacing_problem(ok), None, "{ok}");
        }
        for bad in [0.0, -0.1, 0.0001, 0.009, 1.01, 50.0, 500.0, 1000.0, 1e300, f64::INFINITY, f64::NAN] {
            let msg = spacing_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(msg.contains("outside 0.01..=1 mm"), "{msg}");
        }
    }
}
