//! What a compressed pixel stream says about its own image, checked against the DICOM attributes before
//! any decoder runs.
//!
//! The decoders behind dicom-rs (OpenJPEG, jpeg-decoder) size their buffers from the codestream's header,
//! not from Rows/Columns: a 500-byte file whose attributes say 64 x 64 but whose JPEG 2000 stream declares
//! 60000 x 60000 made a decoder allocate gigabytes. The codec parsers ([`crate::j2k_header`],
//! [`crate::jpeg_header`]) read only the header; [`check`] refuses any disagreement, so the decoder can
//! only ever allocate for the image the (already size-capped) attributes describe.

/// The image a codestream header declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Declared {
    pub width: u32,
    pub height: u32,
    pub components: u16,
    /// The largest per-component sample precision, in bits.
    pub precision: u8,
}

/// A codec's header parser: the start of the stream in, what it declares out (or why it is unreadable).
pub type HeaderParser = fn(&[u8]) -> Result<Declared, String>;

/// The DICOM attributes a codestream must agree with.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    pub cols: usize,
    pub rows: usize,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
}

/// How much of the start of the pixel data the header parsers may look at: the main header of any real
/// encoder fits many times over (it precedes the first tile or scan), and copying this much is cheap.
pub const HEADER_WINDOW: usize = 1 << 20;

/// The first [`HEADER_WINDOW`] bytes of the encapsulated pixel data, across fragments: the first frame
/// starts at the first fragment, but an encoder may split even its header over several.
pub fn head_of_fragments(fragments: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut head = Vec::new();
    for f in fragments {
        let f = f.as_ref();
        let take = f.len().min(HEADER_WINDOW - head.len());
        head.extend_from_slice(&f[..take]);
        if head.len() == HEADER_WINDOW {
            break;
        }
    }
    head
}

/// Refuses a codestream whose declared image differs from the attributes. `codec` names the stream in
/// the message ("JPEG 2000", "JPEG").
pub fn check(codec: &str, d: &Declared, e: &Expected) -> Result<(), String> {
    if (d.width as usize, d.height as usize) != (e.cols, e.rows) {
        return Err(format!(
            "the {codec} stream declares {} x {} pixels but Columns/Rows say {} x {} (corrupt or hostile file)",
            d.width, d.height, e.cols, e.rows
        ));
    }
    if d.components != e.samples_per_pixel {
        return Err(format!(
            "the {codec} stream declares {} components but SamplesPerPixel is {}",
            d.components, e.samples_per_pixel
        ));
    }
    if d.precision as u16 > e.bits_allocated {
        return Err(format!(
            "the {codec} stream declares {}-bit samples but BitsAllocated is {}",
            d.precision, e.bits_allocated
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_larger_than_its_attributes_is_refused() {
        let e = Expected { cols: 64, rows: 64, samples_per_pixel: 1, bits_allocated: 16 };
        let ok = Declared { width: 64, height: 64, components: 1, precision: 12 };
        assert!(check("JPEG", &ok, &e).is_ok());
        let big = Declared { width: 60000, height: 60000, ..ok };
        let m = check("JPEG 2000", &big, &e).unwrap_err();
        assert!(m.contains("60000 x 60000") && m.contains("64 x 64"), "{m}");
        assert!(check("JPEG", &Declared { components: 3, ..ok }, &e).is_err());
        assert!(check("JPEG", &Declared { precision: 17, ..ok }, &e).is_err());
    }

    #[test]
    fn the_header_window_spans_fragments_and_stops() {
        let frags = vec![vec![1u8; 3], vec![2u8; HEADER_WINDOW]];
        let h = head_of_fragments(&frags);
        assert_eq!(h.len(), HEADER_WINDOW);
        assert_eq!(&h[..4], &[1, 1, 1, 2]);
    }
}
