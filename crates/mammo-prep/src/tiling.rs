//! Sliding a patch model over a whole breast: where the tiles go, how their outputs are stitched
//! back into one map without seams, and which tiles make the top regions. Pure geometry — the model
//! that scores the tiles is the caller's.

use mammo_io::GrayImage;

/// The least share of a tile that must be breast for whole-image inference to visit it; normal-tissue
/// training patches follow the same rule, so the classifier learns on the kind of tiles it will score
/// (skin line and pectoral edges included), not only on tiles deep inside the breast.
pub const MIN_BREAST_FRACTION: f64 = 0.25;

/// A tile's top-left corner in the prepared image (may lie partly outside it; outside is background).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub x: i64,
    pub y: i64,
}

/// Tiles of `size` every `stride` pixels over the image, kept where at least `min_breast` of the tile is
/// breast. The grid is anchored so that the last row and column reach the image edge.
pub fn breast_tiles(breast: &GrayImage<u8>, size: usize, stride: usize, min_breast: f64) -> Vec<Tile> {
    let positions = |len: usize| -> Vec<i64> {
        if len <= size {
            return vec![0];
        }
        let mut v: Vec<i64> = (0..=len - size).step_by(stride.max(1)).map(|p| p as i64).collect();
        if *v.last().unwrap() != (len - size) as i64 {
            v.push((len - size) as i64);
        }
        v
    };
    let need = (min_breast * (size * size) as f64).ceil() as usize;
    let mut out = Vec::new();
    for &y in &positions(breast.height) {
        for &x in &positions(breast.width) {
            let mut n = 0;
            for yy in y.max(0) as usize..((y as usize + size).min(breast.height)) {
                let row = &breast.data[yy * breast.width..(yy + 1) * breast.width];
                n += row[x as usize..(x as usize + size).min(breast.width)].iter().filter(|&&b| b != 0).count();
            }
            if n >= need.max(1) {
                out.push(Tile { x, y });
            }
        }
    }
    out
}

/// The `size` x `size` pixels of `image` under `tile` (zero outside the image).
pub fn cut(image: &GrayImage<f32>, tile: Tile, size: usize) -> Vec<f32> {
    let mut out = vec![0f32; size * size];
    for py in 0..size as i64 {
        let sy = tile.y + py;
        if sy < 0 || sy >= image.height as i64 {
            continue;
        }
        for px in 0..size as i64 {
            let sx = tile.x + px;
            if sx >= 0 && sx < image.width as i64 {
                out[(py * size as i64 + px) as usize] = image.data[sy as usize * image.width + sx as usize];
            }
        }
    }
    out
}

/// Accumulates overlapping tile outputs with a smooth (Hann) weight, so tile borders leave no seams.
pub struct Stitcher {
    width: usize,
    height: usize,
    size: usize,
    window: Vec<f32>,
    sum: Vec<f32>,
    weight: Vec<f32>,
}

impl Stitcher {
    pub fn new(width: usize, height: usize, size: usize) -> Self {
        let hann: Vec<f32> = (0..size)
            .map(|i| {
                let t = (i as f32 + 0.5) / size as f32;
                // Never exactly zero, so a pixel covered by a single tile still gets its value.
                (std::f32::consts::PI * t).sin().powi(2).max(1e-3)
            })
            .collect();
        let window = (0..size * size).map(|i| hann[i / size] * hann[i % size]).collect();
        let n = width * height;
        Stitcher { width, height, size, window, sum: vec![0.0; n], weight: vec![0.0; n] }
    }

    /// Adds a tile's `size` x `size` values.
    pub fn add(&mut self, tile: Tile, values: &[f32]) {
        let s = self.size as i64;
        for py in 0..s {
            let y = tile.y + py;
            if y < 0 || y >= self.height as i64 {
                continue;
            }
            for px in 0..s {
                let x = tile.x + px;
                if x < 0 || x >= self.width as i64 {
                    continue;
                }
                let (i, k) = (y as usize * self.width + x as usize, (py * s + px) as usize);
                self.sum[i] += self.window[k] * values[k];
                self.weight[i] += self.window[k];
            }
        }
    }

    /// Adds one value over the whole tile (a tile score spread over its footprint).
    pub fn add_constant(&mut self, tile: Tile, value: f32) {
        let values = vec![value; self.size * self.size];
        self.add(tile, &values);
    }

    /// The weighted mean at every pixel; 0 where no tile reached.
    pub fn finish(self) -> GrayImage<f32> {
        let data = self.sum.iter().zip(&self.weight).map(|(s, w)| if *w > 0.0 { s / w } else { 0.0 }).collect();
        GrayImage::from_vec(self.width, self.height, data)
    }
}

/// A scored region in prepared-image pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub tile: Tile,
    pub size: usize,
    pub score: f32,
}

/// The `k` highest-scoring tiles, greedily skipping any that overlap a chosen one by more than
/// `max_iou` (non-maximum suppression). Ties keep tile order, so the result is deterministic.
pub fn top_regions(tiles: &[Tile], scores: &[f32], size: usize, k: usize, max_iou: f64) -> Vec<Region> {
    let mut order: Vec<usize> = (0..tiles.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut out: Vec<Region> = Vec::new();
    for i in order {
        if out.len() == k {
            break;
        }
        let t = tiles[i];
        if out.iter().all(|r| iou(r.tile, t, size) <= max_iou) {
            out.push(Region { tile: t, size, score: scores[i] });
        }
    }
    out
}

fn iou(a: Tile, b: Tile, size: usize) -> f64 {
    let s = size as i64;
    let ix = (a.x.min(b.x) + s - a.x.max(b.x)).max(0);
    let iy = (a.y.min(b.y) + s - a.y.max(b.y)).max(0);
    let inter = (ix * iy) as f64;
    inter / (2.0 * (s * s) as f64 - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_breast_and_stitching_is_seamless() {
        let (w, h) = (100, 70);
        let breast = GrayImage::from_vec(w, h, (0..w * h).map(|i| (i % w < 60) as u8).collect());
        let tiles = breast_tiles(&breast, 32, 16, 0.5);
        assert!(tiles.iter().all(|t| t.x <= 44));
        assert!(tiles.iter().any(|t| t.y == 38), "last row reaches the bottom edge");
        let mut s = Stitcher::new(w, h, 32);
        for &t in &tiles {
            s.add_constant(t, 0.7);
        }
        let map = s.finish();
        for y in 0..h {
            for x in 0..50 {
                assert!((map.get(x, y) - 0.7).abs() < 1e-4, "({x},{y}) {}", map.get(x, y));
            }
        }
        assert_eq!(map.get(99, 0), 0.0);
    }

    #[test]
    fn top_regions_suppress_overlaps() {
        let tiles = [Tile { x: 0, y: 0 }, Tile { x: 4, y: 0 }, Tile { x: 64, y: 0 }];
        let r = top_regions(&tiles, &[0.9, 0.8, 0.5], 32, 2, 0.3);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].tile, tiles[0]);
        assert_eq!(r[1].tile, tiles[2]);
        let img = GrayImage::from_vec(2, 2, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(cut(&img, Tile { x: -1, y: 0 }, 2), vec![0.0, 1.0, 0.0, 3.0]);
    }
}
