//! Inflating a deflated DICOM dataset (Deflated Explicit VR Little Endian, PS3.5 A.5) for the structural
//! pre-check, in constant memory.
//!
//! Deflate expands up to about 1000-fold, so a 285-byte file can hold an element that declares 3 GiB and
//! whose bytes really are there once inflated; dicom-rs allocates such a length before reading it. The
//! pre-check ([`crate::dicom_guard`]) first measures what the dataset inflates to, stopping at a cap
//! ([`inflated_size`]), then walks the element headers of a second inflation ([`Forward`]) exactly as it
//! walks a file, refusing any length beyond the inflated end. Nothing is kept but a 32 KB window.

use std::io::{self, Read, Seek, SeekFrom};

use flate2::read::DeflateDecoder;

/// Inflates `r` to its end without keeping the output; refuses more than `cap` bytes or a corrupt stream.
pub fn inflated_size(r: impl Read, cap: u64) -> Result<u64, String> {
    let mut d = DeflateDecoder::new(r);
    let n = io::copy(&mut (&mut d).take(cap.saturating_add(1)), &mut io::sink())
        .map_err(|e| format!("the deflated dataset is corrupt: {e}"))?;
    if n > cap {
        return Err(format!(
            "the deflated dataset inflates to more than {} MB, the limit for one image (hostile or corrupt file)",
            cap >> 20
        ));
    }
    Ok(n)
}

/// An inflating reader that can seek forward (by inflating and discarding), which is all the structural
/// walk needs: it reads element headers and skips values.
pub struct Forward<R: Read> {
    inner: DeflateDecoder<R>,
    pos: u64,
}

impl<R: Read> Forward<R> {
    pub fn new(r: R) -> Self {
        Forward { inner: DeflateDecoder::new(r), pos: 0 }
    }
}

impl<R: Read> Read for Forward<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> Seek for Forward<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(t) => t,
            SeekFrom::Current(d) if d >= 0 => self.pos + d as u64,
            _ => return Err(io::Error::new(io::ErrorKind::Unsupported, "an inflating reader only seeks forward")),
        };
        if target < self.pos {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "an inflating reader only seeks forward"));
        }
        let want = target - self.pos;
        let got = io::copy(&mut (&mut self.inner).take(want), &mut io::sink())?;
        self.pos += got;
        if got < want {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the inflated dataset ends early"));
        }
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn measures_within_the_cap_and_refuses_beyond_it() {
        let zeros = deflate(&vec![0u8; 1 << 20]);
        assert!(zeros.len() < 2048, "a megabyte of zeros deflates to {} bytes", zeros.len());
        assert_eq!(inflated_size(&zeros[..], 1 << 20).unwrap(), 1 << 20);
        let e = inflated_size(&zeros[..], (1 << 20) - 1).unwrap_err();
        assert!(e.contains("inflates to more than"), "{e}");
        assert!(inflated_size(&[0xFFu8, 0xFF, 0xFF][..], 1 << 20).is_err());
    }

    #[test]
    fn seeks_forward_only() {
        let data = deflate(b"0123456789");
        let mut f = Forward::new(&data[..]);
        f.seek(SeekFrom::Start(4)).unwrap();
        let mut b = [0u8; 2];
        f.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"45");
        assert!(f.seek(SeekFrom::Start(1)).is_err());
        assert!(f.seek(SeekFrom::Start(11)).is_err());
    }
}
