//! Orientation: every breast is turned so that its chest wall is on the left. The decision is made from
//! the breast mask (where the tissue touches the image edge), not from DICOM laterality, because
//! digitised film and vendor exports do not reliably follow the hanging convention.

use mammo_io::GrayImage;

/// True when the chest wall is on the right, i.e. the image must be mirrored.
pub fn chest_wall_on_right(breast: &GrayImage<u8>) -> bool {
    let (w, h) = (breast.width, breast.height);
    let band = (w / 10).max(1);
    let count = |xs: std::ops::Range<usize>| -> usize {
        (0..h).map(|y| xs.clone().filter(|&x| breast.data[y * w + x] != 0).count()).sum()
    };
    let (left, right) = (count(0..band), count(w - band..w));
    right > left
}

/// Mirrors an image left to right.
pub fn flip_horizontal<T: Copy + Default>(img: &GrayImage<T>) -> GrayImage<T> {
    let mut out = img.clone();
    for row in out.data.chunks_mut(img.width) {
        row.reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_right_chest_wall_and_flips_it() {
        let mut m = GrayImage::<u8>::new(20, 10);
        for y in 0..10 {
            for x in 12..20 {
                m.set(x, y, 1);
            }
        }
        assert!(chest_wall_on_right(&m));
        assert!(!chest_wall_on_right(&flip_horizontal(&m)));
    }
}
