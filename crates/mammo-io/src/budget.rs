//! The memory budget every decoder works within, and allocation that fails with an error instead of
//! aborting the process.
//!
//! A decoder learns how much to allocate from the file it decodes, so a hostile or corrupt file chooses
//! the allocation. Every reader checks the sizes the file declares (DICOM attributes *and* the codec
//! stream's own header, PNG IHDR, PGM header, inflated length) against these limits before it allocates,
//! and allocates what remains through [`try_vec`], so a request the machine cannot satisfy becomes a
//! one-line error naming the file rather than an abort.

use std::path::Path;

use crate::error::{IoError, Result};

/// The most pixels one frame may have (10x the largest full-field detector, about 24 MP).
pub const MAX_PIXELS: usize = 256 * 1024 * 1024;

/// The most bytes one decoded frame may take: [`MAX_PIXELS`] samples of 16 bits.
pub const MAX_FRAME_BYTES: usize = 2 * MAX_PIXELS;

/// Room for everything in a DICOM dataset besides one frame of pixels (LUTs, overlays, private tags).
pub const HEADER_ALLOWANCE: u64 = 16 * 1024 * 1024;

/// The most bytes a deflated DICOM dataset may inflate to: one full frame plus the header allowance.
/// Deflate can expand about 1000-fold, so without this a 300-byte file may declare (and dicom-rs would
/// allocate) gigabytes.
pub const MAX_INFLATED_BYTES: u64 = MAX_FRAME_BYTES as u64 + HEADER_ALLOWANCE;

/// A vector with room for exactly `n` elements, or a one-line error naming `path` when the allocator
/// refuses (the process keeps running).
pub fn try_vec<T>(path: &Path, n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        IoError::format(
            path,
            format!(
                "cannot allocate {} MB for the decoded image (out of memory)",
                n.saturating_mul(size_of::<T>()) >> 20
            ),
        )
    })?;
    Ok(v)
}

/// `n` zeros, allocated fallibly.
pub fn try_zeros<T: Copy + Default>(path: &Path, n: usize) -> Result<Vec<T>> {
    let mut v = try_vec(path, n)?;
    v.resize(n, T::default());
    Ok(v)
}

/// Collects an iterator of known length fallibly.
pub fn try_collect<T>(path: &Path, n: usize, items: impl Iterator<Item = T>) -> Result<Vec<T>> {
    let mut v = try_vec(path, n)?;
    v.extend(items.take(n));
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_allocation_is_an_error_not_an_abort() {
        let e = try_vec::<u64>(Path::new("huge.dcm"), usize::MAX / 16).unwrap_err().to_string();
        assert!(e.starts_with("huge.dcm: cannot allocate") && e.contains("out of memory"), "{e}");
        assert_eq!(try_zeros::<u16>(Path::new("x"), 3).unwrap(), vec![0, 0, 0]);
    }
}
