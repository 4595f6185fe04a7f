//! Breast segmentation: Otsu's threshold separates tissue from background, then the largest connected
//! component is the breast. Everything else — scanner labels, rulers, film markers — is artefact.

use mammo_io::GrayImage;

/// The Otsu threshold of `values` over a 256-bin histogram spanning their range.
pub fn otsu_threshold(values: &[f32]) -> f32 {
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !(hi > lo) {
        return lo;
    }
    let bins = 256usize;
    let scale = (bins - 1) as f32 / (hi - lo);
    let mut hist = vec![0u64; bins];
    for &v in values {
        hist[((v - lo) * scale) as usize] += 1;
    }
    let total = values.len() as f64;
    let sum_all: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0f64, 0f64, -1f64, 0usize);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c as f64;
        sum0 += t as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    lo + (best_t as f32 + 0.5) / scale
}

/// A 0/1 breast mask: above the Otsu threshold, largest 4-connected component, holes filled.
pub fn breast_mask(img: &GrayImage<f32>) -> GrayImage<u8> {
    let t = otsu_threshold(&img.data);
    let fg = img.map(|v| (v > t) as u8);
    let largest = largest_component(&fg);
    fill_holes(&largest)
}

/// Keeps the largest 4-connected component of non-zero pixels.
pub fn largest_component(mask: &GrayImage<u8>) -> GrayImage<u8> {
    let (w, h) = (mask.width, mask.height);
    let mut label = vec![0u32; w * h];
    let mut sizes = vec![0usize]; // label 0 = none
    let mut stack = Vec::new();
    for start in 0..w * h {
        if mask.data[start] == 0 || label[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0;
        label[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (x, y) = (p % w, p / w);
            let mut visit = |q: usize| {
                if mask.data[q] != 0 && label[q] == 0 {
                    label[q] = id;
                    stack.push(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < w {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - w);
            }
            if y + 1 < h {
                visit(p + w);
            }
        }
        sizes.push(size);
    }
    let best = (1..sizes.len()).max_by_key(|&i| (sizes[i], std::cmp::Reverse(i))).unwrap_or(0) as u32;
    GrayImage::from_vec(w, h, label.iter().map(|&l| (best != 0 && l == best) as u8).collect())
}

/// Fills background regions not connected to the border (holes inside the breast, e.g. dark fat).
pub fn fill_holes(mask: &GrayImage<u8>) -> GrayImage<u8> {
    let (w, h) = (mask.width, mask.height);
    let mut outside = vec![false; w * h];
    let mut stack: Vec<usize> = (0..w * h)
        .filter(|&p| {
            let (x, y) = (p % w, p / w);
            (x == 0 || y == 0 || x + 1 == w || y + 1 == h) && mask.data[p] == 0
        })
        .collect();
    for &p in &stack {
        outside[p] = true;
    }
    while let Some(p) = stack.pop() {
        let (x, y) = (p % w, p / w);
        let neighbours =
            [(x > 0).then(|| p - 1), (x + 1 < w).then(|| p + 1), (y > 0).then(|| p - w), (y + 1 < h).then(|| p + w)];
        for q in neighbours.into_iter().flatten() {
            if mask.data[q] == 0 && !outside[q] {
                outside[q] = true;
                stack.push(q);
            }
        }
    }
    GrayImage::from_vec(w, h, outside.iter().map(|&o| (!o) as u8).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_breast_and_drops_a_label() {
        let (w, h) = (80, 60);
        let mut img = GrayImage::<f32>::new(w, h);
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 / 50.0, (y as f32 - 30.0) / 28.0);
                if dx * dx + dy * dy < 1.0 {
                    img.set(x, y, 100.0 + (x % 7) as f32);
                }
            }
        }
        // A bright scanner label in the far corner, and a dark hole inside the breast.
        for y in 2..6 {
            for x in 70..78 {
                img.set(x, y, 200.0);
            }
        }
        img.set(10, 30, 0.0);
        let m = breast_mask(&img);
        assert_eq!(m.get(20, 30), 1);
        assert_eq!(m.get(10, 30), 1, "hole filled");
        assert_eq!(m.get(72, 3), 0, "label removed");
        assert_eq!(m.get(79, 59), 0);
    }

    #[test]
    fn otsu_splits_two_modes() {
        let v: Vec<f32> = (0..1000).map(|i| if i % 2 == 0 { 10.0 } else { 90.0 }).collect();
        let t = otsu_threshold(&v);
        assert!(t > 10.0 && t < 90.0);
    }
}
