//! Reading the mammography data people actually have.
//!
//! Two halves, no machine learning in either:
//! - **images** ([`read_image`]): DICOM in every transfer syntax a mammography archive holds, mini-MIAS
//!   PGM and 8/16-bit PNG, all decoded into one [`Mammogram`] that keeps the *stored* values and the
//!   metadata needed to interpret them (modality LUT, VOI LUT, MONOCHROME1, spacing, laterality, view);
//! - **layouts** ([`layouts`]): the folder and CSV conventions of CBIS-DDSM, mini-MIAS, INbreast,
//!   VinDr-Mammo, a plain CSV and our own phantom, each turned into a list of [`layouts::Case`]s.
//!
//! Patient-identifying DICOM attributes are never read into any of these types, so nothing downstream
//! can leak them by accident.

pub mod atomic;
pub mod budget;
pub mod codestream;
pub mod dicom;
pub mod dicom_guard;
pub mod error;
pub mod image;
pub mod inflate;
pub mod j2k_header;
pub mod jpeg_header;
pub mod layouts;
pub mod lut;
pub mod partial;
pub mod pgm;
pub mod physical;
pub mod png_io;
pub mod rle;

pub use error::{IoError, Result};
pub use image::{DensityRows, GrayImage, ImageInfo, Laterality, Mammogram, Photometric, Samples, SourceKind, View};

use std::path::Path;

/// Reads any supported image, choosing the decoder from the file's content (DICOM preamble, PGM or PNG
/// magic), not its extension: CBIS-DDSM and INbreast files carry `.dcm`, TCIA downloads sometimes none.
pub fn read_image(path: &Path) -> Result<Mammogram> {
    let head = read_head(path, 132)?;
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return dicom::read_dicom(path);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return png_io::read_png(path);
    }
    if head.len() >= 2 && (head.starts_with(b"P5") || head.starts_with(b"P2")) {
        return pgm::read_pgm(path);
    }
    Err(IoError::format(path, "not a DICOM (no DICM preamble), PNG or PGM (P2/P5) file"))
}

/// Width and height that an image held in memory declares in its own header (DICOM Columns/Rows,
/// PNG IHDR, PGM), read without decoding anything: what a server with a tighter budget than
/// [`budget::MAX_PIXELS`] checks before [`read_image_bytes`]. The decoders then hold every compressed
/// stream to these attributes, so the decoded image cannot be larger.
pub fn declared_dimensions(name: &Path, bytes: &[u8]) -> Result<(usize, usize)> {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        return dicom::dicom_dimensions_bytes(name, bytes);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
            return Err(IoError::format(name, "not a readable PNG: no IHDR chunk first"));
        }
        let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        return Ok((be(16), be(20)));
    }
    if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        return pgm::pgm_dimensions(name, bytes);
    }
    Err(IoError::format(name, "not a DICOM (no DICM preamble), PNG or PGM (P2/P5) file"))
}

/// Decodes an image held in memory, sniffed by content as [`read_image`] does; `name` only names the
/// source in errors (the server passes "request body"). Nothing touches the disk, so a request body can
/// never be left behind in a temporary folder.
pub fn read_image_bytes(name: &Path, bytes: &[u8]) -> Result<Mammogram> {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        return dicom::decode_dicom_bytes(name, bytes);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return png_io::decode_png(name, std::io::Cursor::new(bytes));
    }
    if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        return pgm::decode_pgm(name, bytes);
    }
    Err(IoError::format(name, "not a DICOM (no DICM preamble), PNG or PGM (P2/P5) file"))
}

/// The metadata and size of an image without decoding its pixels where the format allows (DICOM).
pub fn read_info(path: &Path) -> Result<(ImageInfo, usize, usize)> {
    let head = read_head(path, 132)?;
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return dicom::read_dicom_header(path);
    }
    let m = read_image(path)?;
    Ok((m.info, m.width, m.height))
}

fn read_head(path: &Path, n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    let mut buf = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut buf).map_err(|e| IoError::io(path, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From memory and from a file, the same image; errors name the given source, not a path.
    #[test]
    fn bytes_decode_like_files() {
        let dir = tempfile::tempdir().unwrap();
        let img = GrayImage::from_vec(3, 2, vec![0u16, 1, 2, 300, 4000, 65535]);
        let png = dir.path().join("a.png");
        png_io::write_png16(&png, &img).unwrap();
        let pgm = dir.path().join("a.pgm");
        pgm::write_pgm(&pgm, &img, 65535).unwrap();
        let body = Path::new("request body");
        for f in [&png, &pgm] {
            let from_memory = read_image_bytes(body, &std::fs::read(f).unwrap()).unwrap();
            assert_eq!(from_memory, read_image(f).unwrap(), "{}", f.display());
        }
        let e = read_image_bytes(body, b"garbage").unwrap_err().to_string();
        assert_eq!(e, "request body: not a DICOM (no DICM preamble), PNG or PGM (P2/P5) file");
        let mut truncated = std::fs::read(&png).unwrap();
        truncated.truncate(40);
        let e = read_image_bytes(body, &truncated).unwrap_err().to_string();
        assert!(e.starts_with("request body: ") && e.lines().count() == 1, "{e}");
    }

    /// What a header declares, read without decoding: for each format, and for a DICOM whose pixel
    /// data is cut off (the header is all it needs).
    #[test]
    fn declared_dimensions_come_from_headers_alone() {
        let dir = tempfile::tempdir().unwrap();
        let img = GrayImage::from_vec(3, 2, vec![0u16, 1, 2, 300, 4000, 65535]);
        let body = Path::new("request body");
        let png = dir.path().join("a.png");
        png_io::write_png16(&png, &img).unwrap();
        let pgm = dir.path().join("a.pgm");
        pgm::write_pgm(&pgm, &img, 65535).unwrap();
        for f in [&png, &pgm] {
            assert_eq!(declared_dimensions(body, &std::fs::read(f).unwrap()).unwrap(), (3, 2), "{}", f.display());
        }
        // A PNG header that declares 20000 x 20000 in 33 bytes.
        let mut ihdr = std::fs::read(&png).unwrap()[..33].to_vec();
        ihdr[16..20].copy_from_slice(&20000u32.to_be_bytes());
        ihdr[20..24].copy_from_slice(&20000u32.to_be_bytes());
        assert_eq!(declared_dimensions(body, &ihdr).unwrap(), (20000, 20000));
        assert!(declared_dimensions(body, b"P5 7").unwrap_err().to_string().contains("height"));
        assert!(declared_dimensions(body, b"junk").is_err());
    }
}
