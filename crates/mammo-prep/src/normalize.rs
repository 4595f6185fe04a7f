//! Intensity normalisation: values inside the breast are mapped so that its 1st and 99th percentiles
//! become 0 and 1. Scanners, detectors and film digitisers differ by orders of magnitude in raw values;
//! robust percentiles of the tissue itself make patches comparable across them.

use mammo_io::GrayImage;

/// (p_low, p_high) of the values under `mask`, from a sorted sample (exact for any size).
pub fn percentiles(img: &GrayImage<f32>, mask: &GrayImage<u8>, low: f64, high: f64) -> Option<(f32, f32)> {
    let mut v: Vec<f32> = img.data.iter().zip(&mask.data).filter(|(_, m)| **m != 0).map(|(v, _)| *v).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some((at(low), at(high)))
}

/// Normalises in place to [0, 1] using the breast's percentiles; the background becomes 0.
pub fn normalize(img: &mut GrayImage<f32>, breast: &GrayImage<u8>) {
    let (lo, hi) = percentiles(img, breast, 0.01, 0.99).unwrap_or((0.0, 1.0));
    let span = if hi > lo { hi - lo } else { 1.0 };
    for (v, m) in img.data.iter_mut().zip(&breast.data) {
        *v = if *m == 0 { 0.0 } else { ((*v - lo) / span).clamp(0.0, 1.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_breast_percentiles_to_unit_range() {
        let mut img = GrayImage::from_vec(10, 10, (0..100).map(|i| i as f32 * 10.0).collect());
        let mask = GrayImage::from_vec(10, 10, (0..100).map(|i| (i >= 50) as u8).collect());
        normalize(&mut img, &mask);
        assert_eq!(img.get(0, 0), 0.0);
        assert_eq!(img.get(0, 5), 0.0);
        assert_eq!(img.get(9, 9), 1.0);
        assert!(img.get(5, 7) > 0.2 && img.get(5, 7) < 0.8);
    }
}
