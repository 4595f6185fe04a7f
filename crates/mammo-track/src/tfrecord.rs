//! TFRecord framing, the container of TensorBoard event files. Each record is
//! ```text
//! u64 length (little-endian) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of data
//! ```
//! The length's own checksum lets a reader tell a torn write from a huge record before trusting it.

use std::ops::Range;
use std::path::Path;

use crate::crc32c::masked_crc32c;
use crate::error::{Result, TrackError};

/// Bytes of framing around each record's data.
const OVERHEAD: usize = 8 + 4 + 4;

/// `data` framed as one TFRecord.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + OVERHEAD);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// Where one complete record lies in a file.
pub(crate) struct Span {
    /// The whole framed record.
    pub record: Range<usize>,
    /// Its data.
    pub data: Range<usize>,
}

/// The complete records of a file's bytes, and how many bytes they span (a partial tail may follow).
pub(crate) fn scan(path: &Path, bytes: &[u8]) -> Result<(Vec<Span>, usize)> {
    let mut spans = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 12 {
        let number = spans.len() + 1;
        let len_bytes = &bytes[pos..pos + 8];
        let len_crc = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if masked_crc32c(len_bytes) != len_crc {
            return Err(TrackError::malformed(path, number, "record length fails its checksum"));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        if bytes.len() - pos < OVERHEAD || len > (bytes.len() - pos - OVERHEAD) as u64 {
            break; // a record cut short by a crash: the valid tail ends here
        }
        let data = pos + 12..pos + 12 + len as usize;
        let data_crc = u32::from_le_bytes(bytes[data.end..data.end + 4].try_into().expect("4 bytes"));
        if masked_crc32c(&bytes[data.clone()]) != data_crc {
            return Err(TrackError::malformed(path, number, "record data fails its checksum"));
        }
        let end = data.end + 4;
        spans.push(Span { record: pos..end, data });
        pos = end;
    }
    Ok((spans, pos))
}

/// The data of every complete record in the file at `path`. A record cut short at the end (a crash
/// mid-write) is skipped; a checksum mismatch before that is an error naming the record's number.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<Vec<u8>>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| TrackError::io(path, e))?;
    let (spans, _) = scan(path, &bytes)?;
    Ok(spans.into_iter().map(|s| bytes[s.data].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_cut_tail_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.tfrecord");
        let mut bytes = frame(b"first");
        bytes.extend(frame(b""));
        bytes.extend(frame(&[9u8; 1000]));
        let whole = bytes.len();
        bytes.extend(frame(b"lost in a crash"));
        for cut in [whole, whole + 5, whole + 12, whole + 20, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let records = read_records(&path).unwrap();
            assert_eq!(records, vec![b"first".to_vec(), vec![], vec![9u8; 1000]], "cut at {cut}");
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_records(&path).unwrap().len(), 4);
    }

    #[test]
    fn corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.tfrecord");
        let mut bytes = frame(b"first");
        bytes.extend(frame(b"second"));
        bytes[12] ^= 1; // a bit of the first record's data
        std::fs::write(&path, &bytes).unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(err.contains("r.tfrecord:1:") && err.contains("checksum"), "{err}");
    }
}
