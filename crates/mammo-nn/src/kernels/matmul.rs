//! The two matrix products of the convolution, for its shapes: few rows (8-64 output channels, or
//! `c*k*k` for the input gradient) against long rows of pixels (49-4096).
//!
//! Why not a general GEMM: the `gemm` crate packs both operands for every call, and here every call is
//! one sample's small product, so packing and dispatch were a third of the convolution's time (`imp_fastcall`,
//! 11 % of a training step). These kernels read the column matrix in place (it was just written by
//! im2col, row by row), broadcast the weights from where they lie, and keep a 6 x 16 tile of the result in
//! registers; the weight gradient is a dot product along the pixels of `dy` and the columns, both rows
//! in memory, so neither needs a transposed copy.
//!
//! Every output element is computed by one fixed sequence of operations, whatever the CPU:
//! - [`nn`]: `start`, then one fused multiply-add per `p` in ascending order;
//! - [`nt`]: eight running sums (lane `l` takes `p = 8q + l`, fused multiply-adds), added in a fixed
//!   tree, then the `p` past the last full eight by fused multiply-adds in order.
//!
//! The AVX2+FMA path and the portable one (`f32::mul_add`, any other CPU) give the same bits, which the
//! tests check; thread counts cannot change them either, since each call runs on one thread.

/// What an output element holds before the products are added.
#[derive(Clone, Copy)]
pub(super) enum Start<'a> {
    /// Zero.
    Zero,
    /// The row's value (a bias per output channel).
    Row(&'a [f32]),
}

/// A matrix read by broadcasting single elements: element `(i, p)` is `data[i * rs + p * cs]`.
#[derive(Clone, Copy)]
pub(super) struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// `rows[p]` = `p * ld`: the starts of the rows of a row-major matrix with row stride `ld`.
pub(super) fn row_starts(k: usize, ld: usize) -> Vec<usize> {
    (0..k).map(|p| p * ld).collect()
}

/// `c[i * ldc + j] = start(i) + sum_p a(i, p) * b[rows[p] + j]` for `i < m`, `j < n`, `p < k`.
///
/// Row `p` of `b` starts at `rows[p]`: a row-major matrix ([`row_starts`]), or shifted views of one
/// padded image (the convolution's columns without writing them out).
#[allow(clippy::too_many_arguments)]
pub(super) fn nn(
    m: usize,
    n: usize,
    k: usize,
    a: Strided,
    b: &[f32],
    rows: &[usize],
    c: &mut [f32],
    ldc: usize,
    start: Start,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "nn: a too short");
    assert!(rows.len() >= k && rows[..k].iter().all(|&r| r + n <= b.len()), "nn: b too short");
    assert!(c.len() >= (m - 1) * ldc + n && n <= ldc, "nn: c too short");
    if let Start::Row(r) = start {
        assert!(r.len() >= m, "nn: start row too short");
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked), and the asserts above keep every access in bounds.
        unsafe { avx2::nn(m, n, k, a, b, rows, c, ldc, start) };
        return;
    }
    portable::nn(m, n, k, a, b, rows, c, ldc, start);
}

/// `c[i * ldc + j] = sum_p a[i * lda + p] * b[rows[j] + p]` for `i < m`, `j < n`, `p < k`: dot products
/// of rows (row `j` of `b` starting at `rows[j]`, as in [`nn`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn nt(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    rows: &[usize],
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k, "nt: a too short");
    assert!(rows.len() >= n && rows[..n].iter().all(|&r| r + k <= b.len()), "nt: b too short");
    assert!(c.len() >= (m - 1) * ldc + n && n <= ldc, "nt: c too short");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as in `nn`.
        unsafe { avx2::nt(m, n, k, a, lda, b, rows, c, ldc) };
        return;
    }
    portable::nt(m, n, k, a, lda, b, rows, c, ldc);
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// The fixed order in which [`nt`] adds its eight lanes.
#[inline(always)]
fn lane_sum(l: [f32; 8]) -> f32 {
    let s = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// Plain loops with the same per-element order; also the reference the fast path is tested against.
mod portable {
    use super::{Start, Strided, lane_sum};

    #[allow(clippy::too_many_arguments)]
    pub(super) fn nn(
        m: usize,
        n: usize,
        k: usize,
        a: Strided,
        b: &[f32],
        rows: &[usize],
        c: &mut [f32],
        ldc: usize,
        start: Start,
    ) {
        for i in 0..m {
            let row = &mut c[i * ldc..i * ldc + n];
            row.fill(match start {
                Start::Zero => 0.0,
                Start::Row(r) => r[i],
            });
            for p in 0..k {
                let aip = a.data[i * a.rs + p * a.cs];
                for (cv, &bv) in row.iter_mut().zip(&b[rows[p]..rows[p] + n]) {
                    *cv = aip.mul_add(bv, *cv);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn nt(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        rows: &[usize],
        c: &mut [f32],
        ldc: usize,
    ) {
        let full = k / 8 * 8;
        for i in 0..m {
            let ar = &a[i * lda..i * lda + k];
            for j in 0..n {
                let br = &b[rows[j]..rows[j] + k];
                let mut lanes = [0f32; 8];
                for (ac, bc) in ar[..full].chunks_exact(8).zip(br[..full].chunks_exact(8)) {
                    for l in 0..8 {
                        lanes[l] = ac[l].mul_add(bc[l], lanes[l]);
                    }
                }
                let mut s = lane_sum(lanes);
                for p in full..k {
                    s = ar[p].mul_add(br[p], s);
                }
                c[i * ldc + j] = s;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Start, Strided};
    use std::arch::x86_64::*;

    /// Columns of `b` per register tile: 2 vectors of 8.
    const NR: usize = 16;
    /// Rows per register tile: 12 accumulators, 2 vectors of `b` and a broadcast fill 15 of the 16
    /// registers (4 x 24 needed one more, and the spilled accumulator cost a third of the time).
    const MR: usize = 6;
    /// `k` is taken in blocks of this many rows of `b`, so a panel of `KC x NR` stays in L1 while every
    /// row block of the output passes over it; the tile is stored and reloaded between blocks (exact).
    const KC: usize = 128;

    /// How a tile's accumulators start.
    #[derive(Clone, Copy)]
    enum Init {
        Zero,
        Row(*const f32),
        Load,
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn nn(
        m: usize,
        n: usize,
        k: usize,
        a: Strided,
        b: &[f32],
        rows: &[usize],
        c: &mut [f32],
        ldc: usize,
        start: Start,
    ) {
        let (ap, bp, cp) = (a.data.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        // Where a panel of `b` is used by many row blocks, it is copied to a contiguous scratch first:
        // rows of `b` may lie a power of two apart (64 x 64 pixels = 16 KB), which maps them all to the
        // same few L1 sets.
        let pack = m > 2 * MR;
        let mut panel = vec![0f32; if pack { KC.min(k).max(1) * NR } else { 0 }];
        let mut k0 = 0;
        loop {
            let kc = KC.min(k - k0);
            let init = |i: usize| match (k0, start) {
                (0, Start::Zero) => Init::Zero,
                (0, Start::Row(r)) => Init::Row(unsafe { r.as_ptr().add(i) }),
                _ => Init::Load,
            };
            let mut j = 0;
            while j < n {
                // A panel of up to 16 columns; a last one of fewer than 8 (or 16) ends in a partial
                // vector, loaded and stored under a mask.
                let w = NR.min(n - j);
                let vectors = w.div_ceil(8);
                let mask = unsafe { lane_mask(w - 8 * (vectors - 1)) };
                let masked = !w.is_multiple_of(8);
                let (b_tile, b_rows) = if pack {
                    // Whole vectors (masked lanes zero). A copy of variable length here becomes a call
                    // to memcpy per row (LLVM recognises the loop), so the full panel is its own case.
                    for p in 0..kc {
                        unsafe {
                            let (src, dst) = (bp.add(rows[k0 + p] + j), panel.as_mut_ptr().add(p * NR));
                            if w == NR {
                                let (x0, x1) = (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8)));
                                _mm256_storeu_ps(dst, x0);
                                _mm256_storeu_ps(dst.add(8), x1);
                            } else {
                                for v in 0..vectors {
                                    let lanes = if v + 1 == vectors { mask } else { _mm256_set1_epi32(-1) };
                                    _mm256_storeu_ps(dst.add(8 * v), _mm256_maskload_ps(src.add(8 * v), lanes));
                                }
                            }
                        }
                    }
                    (panel.as_ptr(), Rows::Strided(NR))
                } else {
                    (unsafe { bp.add(j) }, Rows::At(unsafe { rows.as_ptr().add(k0) }))
                };
                let a0 = unsafe { ap.add(k0 * a.cs) };
                let mut i = 0;
                while i < m {
                    // Rows left 7-9 are split 4+3, 4+4, 5+4: a tile of 1-2 rows has too few
                    // accumulators to hide the multiply-add's latency (m is often 8 or 16 + 8).
                    let tile_rows = match m - i {
                        7 | 8 => 4,
                        9 => 5,
                        left => MR.min(left),
                    };
                    let (a_i, c_i) = unsafe { (a0.add(i * a.rs), cp.add(i * ldc + j)) };
                    let t = (kc, a_i, a.rs, a.cs, b_tile, b_rows, c_i, ldc, init(i), mask);
                    macro_rules! pick {
                        ($($r:literal),*) => {
                            match (tile_rows, vectors, masked) {
                                $(
                                    ($r, 2, false) => tile::<$r, 2, false>(t),
                                    ($r, 2, true) => tile::<$r, 2, true>(t),
                                    ($r, _, false) => tile::<$r, 1, false>(t),
                                    ($r, _, true) => tile::<$r, 1, true>(t),
                                )*
                                _ => unreachable!("tiles have 1 to {MR} rows"),
                            }
                        };
                    }
                    unsafe { pick!(6, 5, 4, 3, 2, 1) }
                    i += tile_rows;
                }
                j += w;
            }
            k0 += kc;
            // (`k` 0 takes one pass with `kc` 0: the output is its start.)
            if k0 >= k {
                break;
            }
        }
    }

    /// Where the rows of a tile's `b` start: `p * ld`, or `offsets[p]`.
    #[derive(Clone, Copy)]
    enum Rows {
        Strided(usize),
        At(*const usize),
    }

    type TileArgs = (usize, *const f32, usize, usize, *const f32, Rows, *mut f32, usize, Init, __m256i);

    /// Lanes `0..n` of a vector set (for the masked loads and stores of a partial last vector).
    #[inline(always)]
    unsafe fn lane_mask(n: usize) -> __m256i {
        unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)) }
    }

    /// An `R x 8V` block of the output over `kc` rows of `b`, in registers; with `M`, the last vector's
    /// lanes outside `mask` are neither read from `b` or `c` nor written.
    #[inline(always)]
    unsafe fn tile<const R: usize, const V: usize, const M: bool>(
        (kc, a, a_rs, a_cs, b, rows, c, ldc, init, mask): TileArgs,
    ) {
        unsafe {
            let load = |p: *const f32, v: usize| {
                if M && v + 1 == V { _mm256_maskload_ps(p, mask) } else { _mm256_loadu_ps(p) }
            };
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = match init {
                        Init::Zero => _mm256_setzero_ps(),
                        Init::Row(r) => _mm256_set1_ps(*r.add(i)),
                        Init::Load => load(c.add(i * ldc + 8 * v), v),
                    };
                }
            }
            for p in 0..kc {
                let bp = b.add(match rows {
                    Rows::Strided(ld) => p * ld,
                    Rows::At(offsets) => *offsets.add(p),
                });
                let mut bv = [_mm256_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = load(bp.add(8 * v), v);
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_set1_ps(*a.add(i * a_rs + p * a_cs));
                    for (x, &bx) in row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(ai, bx, *x);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (v, x) in row.iter().enumerate() {
                    let dst = c.add(i * ldc + 8 * v);
                    if M && v + 1 == V {
                        _mm256_maskstore_ps(dst, mask, *x);
                    } else {
                        _mm256_storeu_ps(dst, *x);
                    }
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn nt(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        rows: &[usize],
        c: &mut [f32],
        ldc: usize,
    ) {
        let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        let mut i = 0;
        while i < m {
            let tile_rows = 2.min(m - i);
            let mut j = 0;
            while j < n {
                let cols = 6.min(n - j);
                let t = unsafe { (k, ap.add(i * lda), lda, bp, rows.as_ptr().add(j), cp.add(i * ldc + j), ldc) };
                unsafe {
                    match (tile_rows, cols) {
                        (2, 6) => dots::<2, 6>(t),
                        (2, 5) => dots::<2, 5>(t),
                        (2, 4) => dots::<2, 4>(t),
                        (2, 3) => dots::<2, 3>(t),
                        (2, 2) => dots::<2, 2>(t),
                        (2, _) => dots::<2, 1>(t),
                        (_, 6) => dots::<1, 6>(t),
                        (_, 5) => dots::<1, 5>(t),
                        (_, 4) => dots::<1, 4>(t),
                        (_, 3) => dots::<1, 3>(t),
                        (_, 2) => dots::<1, 2>(t),
                        (_, _) => dots::<1, 1>(t),
                    }
                }
                j += cols;
            }
            i += tile_rows;
        }
    }

    type DotArgs = (usize, *const f32, usize, *const f32, *const usize, *mut f32, usize);

    /// `R x C` dot products of length `k`, eight lanes each.
    #[inline(always)]
    unsafe fn dots<const R: usize, const C: usize>((k, a, lda, b, rows, c, ldc): DotArgs) {
        unsafe {
            let full = k / 8 * 8;
            let mut br = [b; C];
            for (j, x) in br.iter_mut().enumerate() {
                *x = b.add(*rows.add(j));
            }
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let mut p = 0;
            while p < full {
                let mut av = [_mm256_setzero_ps(); R];
                for (i, x) in av.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(a.add(i * lda + p));
                }
                for (j, bj) in br.iter().enumerate() {
                    let bv = _mm256_loadu_ps(bj.add(p));
                    for (row, &ai) in acc.iter_mut().zip(&av) {
                        row[j] = _mm256_fmadd_ps(ai, bv, row[j]);
                    }
                }
                p += 8;
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, (&sums, bj)) in row.iter().zip(&br).enumerate() {
                    let mut s = lane_sum(sums);
                    for q in full..k {
                        s = (*a.add(i * lda + q)).mul_add(*bj.add(q), s);
                    }
                    *c.add(i * ldc + j) = s;
                }
            }
        }
    }

    /// [`super::lane_sum`] on a register: `(l0+l4)+(l2+l6)` plus `(l1+l5)+(l3+l7)`.
    #[inline(always)]
    unsafe fn lane_sum(v: __m256) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps::<1>(t, t)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A small LCG: varied magnitudes and signs, so a change of order would show in the bits.
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * if s & 1 == 0 { 1.0 } else { 37.0 }
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Shapes the models use and awkward ones: rows not a multiple of 4 or 2, columns not a multiple
    /// of 8 or 24, `k` across a block boundary and not a multiple of 8, transposed `a`.
    const SHAPES: [(usize, usize, usize); 10] = [
        (8, 4096, 9),
        (16, 1024, 72),
        (64, 64, 576),
        (72, 1024, 16),
        (5, 49, 300),
        (3, 196, 7),
        (1, 7, 1),
        (2, 33, 130),
        (13, 100, 257),
        (9, 24, 0),
    ];

    #[test]
    fn nn_matches_f64_and_fast_path_matches_portable_bit_for_bit() {
        for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
            for transposed in [false, true] {
                let (ldb, ldc) = (n + 3, n + 5);
                let a = values(m * k.max(1), s as u32);
                let (rs, cs) = if transposed { (1, m) } else { (k, 1) };
                let a = Strided { data: &a, rs, cs };
                let b = values(k.max(1) * ldb, 100 + s as u32);
                let bias = values(m, 200 + s as u32);
                for start in [Start::Zero, Start::Row(&bias)] {
                    let mut fast = vec![f32::NAN; m * ldc];
                    // Rows out of order and shifted by 0-2 (as the convolution's shifted views are).
                    let rows: Vec<usize> = (0..k).map(|p| (k - 1 - p) * ldb + p % 3).collect();
                    nn(m, n, k, a, &b, &rows, &mut fast, ldc, start);
                    let mut slow = vec![f32::NAN; m * ldc];
                    portable::nn(m, n, k, a, &b, &rows, &mut slow, ldc, start);
                    for i in 0..m {
                        let what = format!("m {m} n {n} k {k} transposed {transposed} row {i}");
                        assert_eq!(bits(&fast[i * ldc..i * ldc + n]), bits(&slow[i * ldc..i * ldc + n]), "{what}");
                        for j in 0..n {
                            let mut e = match start {
                                Start::Zero => 0.0,
                                Start::Row(r) => r[i] as f64,
                            };
                            let mut mag = e.abs();
                            for p in 0..k {
                                let t = a.data[i * rs + p * cs] as f64 * b[rows[p] + j] as f64;
                                e += t;
                                mag += t.abs();
                            }
                            let got = fast[i * ldc + j] as f64;
                            assert!((got - e).abs() <= 1e-5 * mag + 1e-6, "{what} col {j}: {got} vs {e}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nt_matches_f64_and_fast_path_matches_portable_bit_for_bit() {
        for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
            let (lda, ldb, ldc) = (k + 1, k + 2, n + 1);
            let a = values(m * lda, s as u32);
            let b = values(n * ldb, 50 + s as u32);
            let mut fast = vec![f32::NAN; m * ldc];
            let rows: Vec<usize> = (0..n).map(|j| (n - 1 - j) * ldb + j % 2).collect();
            nt(m, n, k, &a, lda, &b, &rows, &mut fast, ldc);
            let mut slow = vec![f32::NAN; m * ldc];
            portable::nt(m, n, k, &a, lda, &b, &rows, &mut slow, ldc);
            for i in 0..m {
                let what = format!("m {m} n {n} k {k} row {i}");
                assert_eq!(bits(&fast[i * ldc..i * ldc + n]), bits(&slow[i * ldc..i * ldc + n]), "{what}");
                for j in 0..n {
                    let (mut e, mut mag) = (0f64, 0f64);
                    for p in 0..k {
                        let t = a[i * lda + p] as f64 * b[rows[j] + p] as f64;
                        e += t;
                        mag += t.abs();
                    }
                    let got = fast[i * ldc + j] as f64;
                    assert!((got - e).abs() <= 1e-5 * mag + 1e-6, "{what} col {j}: {got} vs {e}");
                }
            }
        }
    }
}
