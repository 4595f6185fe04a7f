//! DICOM reading (through the dicom-rs crates) and writing (for the phantom and fixtures).
//!
//! Decoding keeps the stored values: BitsStored masking and sign extension happen here, the modality and
//! VOI LUTs are recorded in [`ImageInfo`] and applied by the caller, so `convert` can write exactly what a
//! reference toolkit's `pixel_array` holds.

use std::path::Path;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::budget::{try_collect, try_vec, try_zeros};
use crate::error::{IoError, Result};
use crate::image::{ImageInfo, Laterality, Mammogram, Photometric, Samples, SourceKind, View};
use crate::lut::{ModalityLut, Voi, VoiFunction};

/// Reads a DICOM file and decodes its first frame.
pub fn read_dicom(path: &Path) -> Result<Mammogram> {
    guard_file(path)?;
    let obj = OpenFileOptions::new().open_file(path).map_err(|e| open_error(path, &e))?;
    decode_object(path, obj)
}

/// Decodes a DICOM file held in memory (with its 128-byte preamble); `path` only names the source in
/// errors. This is the fuzzing entry point.
pub fn decode_dicom_bytes(path: &Path, bytes: &[u8]) -> Result<Mammogram> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(IoError::format(path, "not a DICOM file (no DICM preamble)"));
    }
    crate::dicom_guard::check(&mut std::io::Cursor::new(bytes)).map_err(|m| IoError::format(path, m))?;
    let obj = OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(bytes)
        .map_err(|e| IoError::format(path, format!("not a readable DICOM file: {}", error_chain(&e))))?;
    decode_object(path, obj)
}

/// Columns and Rows of a DICOM file held in memory, from its header alone (nothing before the check of
/// every declared length, and no pixel data, is read), so a caller with a tighter pixel budget than
/// [`MAX_PIXELS`] can refuse an image before it is decoded.
pub fn dicom_dimensions_bytes(path: &Path, bytes: &[u8]) -> Result<(usize, usize)> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(IoError::format(path, "not a DICOM file (no DICM preamble)"));
    }
    crate::dicom_guard::check(&mut std::io::Cursor::new(bytes)).map_err(|m| IoError::format(path, m))?;
    let obj = OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .read_until(tags::PIXEL_DATA)
        .from_reader(bytes)
        .map_err(|e| IoError::format(path, format!("not a readable DICOM file: {}", error_chain(&e))))?;
    let g = Geometry::read(path, &obj)?;
    Ok((g.cols, g.rows))
}

/// Runs the structural pre-check ([`crate::dicom_guard`]) on a file.
fn guard_file(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    let mut r = std::io::BufReader::with_capacity(8192, file);
    crate::dicom_guard::check(&mut r).map_err(|m| IoError::format(path, m))
}

/// The header only (everything before Pixel Data): what `inspect` needs, without decoding pixels.
pub fn read_dicom_header(path: &Path) -> Result<(ImageInfo, usize, usize)> {
    guard_file(path)?;
    let obj = OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).map_err(|e| open_error(path, &e))?;
    let geometry = Geometry::read(path, &obj)?;
    let info = image_info(path, &obj, &geometry)?;
    Ok((info, geometry.cols, geometry.rows))
}

/// The SeriesInstanceUID, reading the header only: CBIS-DDSM's tables name series by UID while the
/// folders of a TCIA download may carry other names.
pub fn read_series_uid(path: &Path) -> Result<String> {
    guard_file(path)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| IoError::format(path, format!("not a readable DICOM file: {}", error_chain(&e))))?;
    str_of(&obj, tags::SERIES_INSTANCE_UID).ok_or_else(|| IoError::format(path, "no SeriesInstanceUID (0020,000E)"))
}

/// dicom-rs reports a file cut short (an interrupted download or copy) as "failed to fill whole buffer"
/// somewhere down its error chain; say so in words the user can act on.
fn open_error(path: &Path, e: &(dyn std::error::Error + 'static)) -> IoError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut truncated = false;
    while let Some(inner) = cur {
        let io = inner.downcast_ref::<std::io::Error>();
        truncated |= io.is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof);
        cur = inner.source();
    }
    let hint = if truncated { " (the file ends early: truncated?)" } else { "" };
    IoError::format(path, format!("not a readable DICOM file: {}{hint}", error_chain(e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = inner.source();
    }
    s
}

pub use crate::budget::MAX_PIXELS;

/// A log filter directive for binaries: OpenJPEG (through the `jpeg2k` crate, which forwards its
/// callbacks to the `log` crate, which tracing-subscriber picks up) reports every header and tile it reads
/// at INFO ("Start to read j2k main header (0).", "Tile 1/1 has been decoded."), which would fill log files
/// with one line per image. Warnings and errors still come through, each on one line (`jpeg2k` formats
/// the message with `{:?}`, escaping its newline). With this directive in force `jpeg2k` does not even
/// register its INFO callback.
pub const QUIET_CODEC_LOGS: &str = "jpeg2k=warn";

/// The attributes that say how to read the pixel buffer.
struct Geometry {
    rows: usize,
    cols: usize,
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    photometric: Photometric,
    samples_per_pixel: u16,
}

impl Geometry {
    fn read(path: &Path, obj: &DefaultDicomObject) -> Result<Self> {
        let req = |tag: Tag, name: &str| -> Result<u16> {
            int_of::<u16>(obj, tag).ok_or_else(|| IoError::format(path, format!("missing or invalid {name}")))
        };
        let rows = req(tags::ROWS, "Rows (0028,0010)")? as usize;
        let cols = req(tags::COLUMNS, "Columns (0028,0011)")? as usize;
        let bits_allocated = req(tags::BITS_ALLOCATED, "BitsAllocated (0028,0100)")?;
        let bits_stored = int_of::<u16>(obj, tags::BITS_STORED).unwrap_or(bits_allocated);
        let signed = int_of::<u16>(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
        let samples_per_pixel = int_of::<u16>(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        let pi = str_of(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
        let photometric = match pi.as_str() {
            "MONOCHROME1" => Photometric::Monochrome1,
            "MONOCHROME2" => Photometric::Monochrome2,
            other => {
                return Err(IoError::unsupported(
                    path,
                    format!("photometric interpretation {other}: mammograms are MONOCHROME1 or MONOCHROME2"),
                ));
            }
        };
        if samples_per_pixel != 1 {
            return Err(IoError::unsupported(path, format!("{samples_per_pixel} samples per pixel (grayscale only)")));
        }
        // The largest mammography detectors are about 24 MP; refusing absurd sizes up front keeps a
        // corrupt header from making a decoder allocate gigabytes.
        if rows * cols > MAX_PIXELS {
            return Err(IoError::unsupported(
                path,
                format!("image of {cols} x {rows} pixels (more than {MAX_PIXELS})"),
            ));
        }
        if rows == 0 || cols == 0 {
            return Err(IoError::format(path, format!("empty image ({cols} x {rows})")));
        }
        if !(bits_allocated == 8 || bits_allocated == 16) {
            return Err(IoError::unsupported(path, format!("BitsAllocated {bits_allocated} (8 or 16 only)")));
        }
        if bits_stored == 0 || bits_stored > bits_allocated {
            return Err(IoError::format(
                path,
                format!("BitsStored {bits_stored} is not within BitsAllocated {bits_allocated}"),
            ));
        }
        Ok(Geometry { rows, cols, bits_allocated, bits_stored, signed, photometric, samples_per_pixel })
    }
}

fn decode_object(path: &Path, mut obj: DefaultDicomObject) -> Result<Mammogram> {
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| IoError::unsupported(path, format!("transfer syntax {} is unknown", uid_shown(&ts_uid))))?;
    if !ts.can_decode_all() {
        return Err(IoError::unsupported(
            path,
            format!("transfer syntax {} ({ts_uid}) cannot be decoded by this build", ts.name()),
        ));
    }
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(IoError::format(path, "no Pixel Data (7FE0,0010): not an image"));
    }
    let geometry = Geometry::read(path, &obj)?;
    let info = image_info(path, &obj, &geometry)?;
    let n = geometry.rows * geometry.cols;

    if ts.is_encapsulated_pixel_data() {
        check_codestream(path, &obj, &ts_uid, &geometry)?;
    }
    if !ts.is_codec_free() {
        check_expansion(path, &obj, &ts_uid, n * geometry.bits_allocated.div_ceil(8) as usize)?;
    }
    let raw: Samples = if ts.is_codec_free() {
        // Native syntaxes: move the buffer the parser already holds instead of copying it (a full-field
        // image is tens of megabytes).
        let element = obj.take_element(tags::PIXEL_DATA).expect("checked above");
        native_samples(path, element, &geometry)?
    } else if ts_uid == RLE_LOSSLESS {
        rle_first_frame(path, &obj, &geometry)?
    } else {
        // Only the first frame: a tomosynthesis or multi-view file would otherwise decode every frame.
        let decoded = obj.decode_pixel_data_frame(0).map_err(|e| {
            IoError::format(path, format!("cannot decode pixel data ({}): {}", ts.name(), error_chain(&e)))
        })?;
        bytes_to_samples(path, decoded.data(), &geometry, true)?
    };
    if raw.len() < n {
        return Err(IoError::format(
            path,
            format!(
                "pixel data holds {} values, {} x {} needs {n} (truncated file?)",
                raw.len(),
                geometry.cols,
                geometry.rows
            ),
        ));
    }
    let samples = mask_to_bits_stored(raw, n, geometry.bits_stored, geometry.signed);
    Ok(Mammogram { width: geometry.cols, height: geometry.rows, samples, info })
}

/// The codec families of the encapsulated transfer syntaxes, by what their stream header looks like.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Rle,
    Jpeg,
    Jpeg2000,
}

fn stream_kind(ts_uid: &str) -> Option<StreamKind> {
    Some(match ts_uid {
        RLE_LOSSLESS => StreamKind::Rle,
        // Baseline, extended, lossless (process 14 and its first-order default), JPEG-LS.
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70"
        | "1.2.840.10008.1.2.4.80"
        | "1.2.840.10008.1.2.4.81" => StreamKind::Jpeg,
        // JPEG 2000 (parts 1 and 2) and High-Throughput JPEG 2000: the same SIZ marker.
        "1.2.840.10008.1.2.4.90"
        | "1.2.840.10008.1.2.4.91"
        | "1.2.840.10008.1.2.4.92"
        | "1.2.840.10008.1.2.4.93"
        | "1.2.840.10008.1.2.4.201"
        | "1.2.840.10008.1.2.4.202"
        | "1.2.840.10008.1.2.4.203" => StreamKind::Jpeg2000,
        _ => return None,
    })
}

/// Checks the image the compressed stream itself declares against the (size-capped) attributes before
/// a decoder sizes its buffers from it ([`crate::codestream`]). RLE is decoded here, into buffers sized
/// from the attributes. A codec this check does not know is refused rather than decoded unchecked.
fn check_codestream(path: &Path, obj: &DefaultDicomObject, ts_uid: &str, g: &Geometry) -> Result<()> {
    let Some(kind) = stream_kind(ts_uid) else {
        return Err(IoError::unsupported(
            path,
            format!("transfer syntax {}: no size check for its codec", uid_shown(ts_uid)),
        ));
    };
    let (name, parse): (&str, crate::codestream::HeaderParser) = match kind {
        StreamKind::Rle => return Ok(()),
        StreamKind::Jpeg => ("JPEG", crate::jpeg_header::parse),
        StreamKind::Jpeg2000 => ("JPEG 2000", crate::j2k_header::parse),
    };
    let Some(Value::PixelSequence(seq)) = obj.get(tags::PIXEL_DATA).map(|e| e.value()) else {
        return Err(IoError::format(path, "compressed transfer syntax but Pixel Data is not encapsulated"));
    };
    let head = crate::codestream::head_of_fragments(seq.fragments());
    let declared = parse(&head).map_err(|m| IoError::format(path, m))?;
    let expected = crate::codestream::Expected {
        cols: g.cols,
        rows: g.rows,
        samples_per_pixel: g.samples_per_pixel,
        bits_allocated: g.bits_allocated,
    };
    crate::codestream::check(name, &declared, &expected).map_err(|m| IoError::format(path, m))
}

/// A UID from the file for a message: only digits and dots (a UID's alphabet), else a placeholder, so
/// an attribute cannot carry arbitrary text into errors and outputs.
fn uid_shown(uid: &str) -> String {
    let valid = !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if valid { uid.to_string() } else { "(not a valid UID)".to_string() }
}

/// Refuses compressed data too small to hold the declared image under the codec's best possible ratio
/// (RLE: 128 bytes from 2; JPEG lossless: at least one bit per sample), before any decoder allocates
/// the output. JPEG 2000 has no such bound.
fn check_expansion(path: &Path, obj: &DefaultDicomObject, ts_uid: &str, out_bytes: usize) -> Result<()> {
    let max_ratio = match ts_uid {
        "1.2.840.10008.1.2.5" => 64,
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => 16,
        _ => return Ok(()),
    };
    let compressed: usize = match obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
        Some(Value::PixelSequence(seq)) => seq.fragments().iter().map(|f| f.len()).sum(),
        _ => return Err(IoError::format(path, "compressed transfer syntax but Pixel Data is not encapsulated")),
    };
    if compressed.saturating_mul(max_ratio) < out_bytes {
        return Err(IoError::format(
            path,
            format!("{compressed} bytes of compressed pixel data cannot hold the declared image (truncated file?)"),
        ));
    }
    Ok(())
}

fn native_samples(path: &Path, element: InMemElement, g: &Geometry) -> Result<Samples> {
    match element.into_value() {
        Value::Primitive(PrimitiveValue::U16(v)) if g.bits_allocated == 16 => {
            let v = v.into_vec();
            Ok(if g.signed { Samples::Signed(v.into_iter().map(|x| x as i16).collect()) } else { Samples::Unsigned(v) })
        }
        Value::Primitive(PrimitiveValue::I16(v)) if g.bits_allocated == 16 => {
            let v = v.into_vec();
            Ok(if g.signed { Samples::Signed(v) } else { Samples::Unsigned(v.into_iter().map(|x| x as u16).collect()) })
        }
        Value::Primitive(p) => bytes_to_samples(path, &p.to_bytes(), g, true),
        _ => Err(IoError::format(path, "Pixel Data is encapsulated but the transfer syntax is native")),
    }
}

/// Interprets a decoded byte buffer (little endian, as every decoder here produces it).
fn bytes_to_samples(path: &Path, bytes: &[u8], g: &Geometry, little_endian: bool) -> Result<Samples> {
    let n = g.rows * g.cols;
    match g.bits_allocated {
        8 => {
            if bytes.len() < n {
                return Err(IoError::format(
                    path,
                    format!("pixel data holds {} bytes, {n} needed (truncated file?)", bytes.len()),
                ));
            }
            Ok(if g.signed {
                Samples::Signed(try_collect(path, n, bytes[..n].iter().map(|&b| b as i8 as i16))?)
            } else {
                Samples::Unsigned(try_collect(path, n, bytes[..n].iter().map(|&b| b as u16))?)
            })
        }
        _ => {
            if bytes.len() < 2 * n {
                return Err(IoError::format(
                    path,
                    format!("pixel data holds {} bytes, {} needed (truncated file?)", bytes.len(), 2 * n),
                ));
            }
            // Two monomorphic loops (a function pointer here kept the loop from vectorising: ~3x slower).
            let pairs = bytes[..2 * n].chunks_exact(2);
            let mut v: Vec<u16> = try_vec(path, n)?;
            if little_endian {
                v.extend(pairs.map(|c| u16::from_le_bytes([c[0], c[1]])));
            } else {
                v.extend(pairs.map(|c| u16::from_be_bytes([c[0], c[1]])));
            }
            Ok(if g.signed { Samples::Signed(v.into_iter().map(|x| x as i16).collect()) } else { Samples::Unsigned(v) })
        }
    }
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// RLE Lossless (PS3.5 Annex G), first frame, one sample per pixel: a 64-byte header of segment offsets,
/// then one PackBits segment per byte of the sample, most significant first. dicom-rs's adapter decodes
/// every frame through several intermediate buffers and a byte-by-byte scatter; this decodes both planes
/// straight into the samples (2-3x faster on a full-field image, bench/RESULTS.md).
/// Images at least this large decode their two RLE byte planes on two threads.
const PARALLEL_RLE_PIXELS: usize = 1 << 20;

fn rle_first_frame(path: &Path, obj: &DefaultDicomObject, g: &Geometry) -> Result<Samples> {
    let err = |m: String| IoError::format(path, format!("cannot decode pixel data (RLE Lossless): {m}"));
    let Some(Value::PixelSequence(seq)) = obj.get(tags::PIXEL_DATA).map(|e| e.value()) else {
        return Err(err("Pixel Data is not encapsulated".into()));
    };
    let frames = int_of::<u32>(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let fragments = seq.fragments();
    let joined;
    let frame: &[u8] = match fragments.len() {
        0 => return Err(err("no fragments".into())),
        // One frame in several fragments is not allowed for RLE (PS3.5 A.4.2) but is easy to accept.
        k if frames == 1 && k > 1 => {
            joined = fragments.concat();
            &joined
        }
        _ => &fragments[0],
    };
    if frame.len() < 64 {
        return Err(err(format!("the {}-byte fragment has no 64-byte RLE header", frame.len())));
    }
    let word = |i: usize| u32::from_le_bytes([frame[4 * i], frame[4 * i + 1], frame[4 * i + 2], frame[4 * i + 3]]);
    let bytes = g.bits_allocated as usize / 8;
    let segments = word(0) as usize;
    if segments != bytes {
        return Err(err(format!("{segments} segments, {bytes} expected for BitsAllocated {}", g.bits_allocated)));
    }
    let n = g.rows * g.cols;
    let segment = |s: usize| -> Result<&[u8]> {
        let start = word(1 + s) as usize;
        let end = if s + 1 < segments { word(2 + s) as usize } else { frame.len() };
        if end > frame.len() {
            let len = frame.len();
            return Err(err(format!("segment {} ends at byte {end} of a {len}-byte fragment (truncated?)", s + 1)));
        }
        if start < 64 || start > end {
            return Err(err(format!("segment {} has the invalid byte range {start}..{end}", s + 1)));
        }
        Ok(&frame[start..end])
    };
    let short = |s: usize| err(format!("segment {} ends before its {n} bytes (truncated?)", s + 1));
    // The most significant byte plane straight into the samples (shifted into place for 16 bits), then the
    // low plane OR-ed in: no intermediate plane buffer (on a full-field image the page faults of fresh
    // buffers cost as much as the decoding). Slice writes into a sized buffer rather than Vec::extend or
    // Vec::resize, whose per-element length bookkeeping kept the loops scalar.
    let shift = if bytes == 2 { 8 } else { 0 };
    let high = segment(0)?;
    let low = if bytes == 2 { Some(segment(1)?) } else { None };
    // The two byte planes are independent PackBits streams: on a full-field image the low plane is
    // decoded on a second thread into a byte buffer while this one writes the high plane straight into
    // the samples; one vectorised pass then ORs them together.
    let parallel = low.is_some() && n >= PARALLEL_RLE_PIXELS;
    let mut plane: Vec<u8> = if parallel { try_zeros(path, n)? } else { Vec::new() };
    let mut v: Vec<u16> = try_zeros(path, n)?;
    let (v, low_plane) = std::thread::scope(|s| {
        let low_job = low.filter(|_| parallel).map(|seg| {
            s.spawn(move || {
                let mut o = 0;
                let complete = unpack_bits(seg, n, |run| match run {
                    PackBits::Literal(l) => {
                        plane[o..o + l.len()].copy_from_slice(l);
                        o += l.len();
                    }
                    PackBits::Repeat(len, b) => {
                        plane[o..o + len].fill(b);
                        o += len;
                    }
                });
                complete.then_some(plane)
            })
        });
        let mut o = 0;
        let complete = unpack_bits(high, n, |run| match run {
            PackBits::Literal(l) => {
                v[o..o + l.len()].iter_mut().zip(l).for_each(|(x, &hi)| *x = u16::from(hi) << shift);
                o += l.len();
            }
            PackBits::Repeat(len, b) => {
                v[o..o + len].fill(u16::from(b) << shift);
                o += len;
            }
        });
        let low_plane = low_job.map(|j| j.join().expect("RLE worker does not panic"));
        (complete.then_some(v), low_plane)
    });
    let mut v = v.ok_or_else(|| short(0))?;
    match (low, low_plane) {
        (Some(_), Some(plane)) => {
            let plane = plane.ok_or_else(|| short(1))?;
            v.iter_mut().zip(&plane).for_each(|(x, &lo)| *x |= u16::from(lo));
        }
        (Some(seg), None) => {
            let mut o = 0;
            let complete = unpack_bits(seg, n, |run| match run {
                PackBits::Literal(l) => {
                    v[o..o + l.len()].iter_mut().zip(l).for_each(|(x, &lo)| *x |= u16::from(lo));
                    o += l.len();
                }
                PackBits::Repeat(len, b) => {
                    v[o..o + len].iter_mut().for_each(|x| *x |= u16::from(b));
                    o += len;
                }
            });
            if !complete {
                return Err(short(1));
            }
        }
        _ => {}
    }
    Ok(match (g.signed, bytes) {
        (false, _) => Samples::Unsigned(v),
        (true, 1) => Samples::Signed(v.into_iter().map(|x| x as u8 as i8 as i16).collect()),
        (true, _) => Samples::Signed(v.into_iter().map(|x| x as i16).collect()),
    })
}

enum PackBits<'a> {
    Literal(&'a [u8]),
    Repeat(usize, u8),
}

/// PackBits (PS3.5 G.3.1): hands `emit` the runs that make up exactly `n` bytes (trailing padding ignored);
/// false if the data ends first.
fn unpack_bits<'a>(src: &'a [u8], n: usize, mut emit: impl FnMut(PackBits<'a>)) -> bool {
    let (mut i, mut done) = (0, 0);
    while done < n {
        let Some(&h) = src.get(i) else { return false };
        let h = h as i8;
        i += 1;
        if h >= 0 {
            let len = (h as usize + 1).min(n - done);
            let Some(lit) = src.get(i..i + len) else { return false };
            emit(PackBits::Literal(lit));
            i += h as usize + 1;
            done += len;
        } else if h != -128 {
            let len = ((1 - h as isize) as usize).min(n - done);
            let Some(&b) = src.get(i) else { return false };
            emit(PackBits::Repeat(len, b));
            i += 1;
            done += len;
        }
    }
    true
}

/// Keeps only the BitsStored low bits (the high bits of a 12-bit image may hold overlays or garbage) and
/// sign-extends signed data from its top stored bit.
fn mask_to_bits_stored(samples: Samples, n: usize, bits_stored: u16, _signed: bool) -> Samples {
    match samples {
        Samples::Unsigned(mut v) => {
            v.truncate(n);
            if bits_stored < 16 {
                let mask = ((1u32 << bits_stored) - 1) as u16;
                // OR-reduce in blocks (vectorises) rather than `any` over single values (does not).
                if v.chunks(4096).any(|c| c.iter().fold(0u16, |a, &x| a | x) & !mask != 0) {
                    for x in &mut v {
                        *x &= mask;
                    }
                }
            }
            Samples::Unsigned(v)
        }
        Samples::Signed(mut v) => {
            v.truncate(n);
            if bits_stored < 16 {
                let shift = 16 - bits_stored;
                for x in &mut v {
                    *x = (*x << shift) >> shift;
                }
            }
            Samples::Signed(v)
        }
    }
}

fn str_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
    (!s.is_empty()).then_some(s)
}

fn int_of<T: TryFrom<i64>>(obj: &InMemDicomObject, tag: Tag) -> Option<T> {
    obj.get(tag)?.to_int::<i64>().ok().and_then(|v| T::try_from(v).ok())
}

fn floats_of(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let v = obj.get(tag)?.to_multi_float64().ok()?;
    (!v.is_empty()).then_some(v)
}

fn image_info(path: &Path, obj: &DefaultDicomObject, g: &Geometry) -> Result<ImageInfo> {
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let ts_name = TransferSyntaxRegistry.get(&ts_uid).map(|t| t.name().to_string()).unwrap_or_else(|| "unknown".into());

    let slope = floats_of(obj, tags::RESCALE_SLOPE).map(|v| v[0]);
    let intercept = floats_of(obj, tags::RESCALE_INTERCEPT).map(|v| v[0]);
    // A Modality LUT Sequence takes precedence over rescale attributes (PS3.3 C.11.1: only one may be
    // present; some files carry both, and the table is what viewers apply).
    let modality_lut = match modality_table(obj, g.signed) {
        Some(table) => Some(table),
        None => match (slope, intercept) {
            (None, None) => None,
            (s, i) => Some(ModalityLut::Rescale { slope: s.unwrap_or(1.0), intercept: i.unwrap_or(0.0) }),
        },
    };
    if let Some(ModalityLut::Rescale { slope, intercept }) = modality_lut
        && (slope == 0.0 || !slope.is_finite() || !intercept.is_finite())
    {
        return Err(IoError::format(path, format!("invalid RescaleSlope {slope} / RescaleIntercept {intercept}")));
    }

    let (spacing_mm, spacing_source) =
        [(tags::PIXEL_SPACING, "PixelSpacing"), (tags::IMAGER_PIXEL_SPACING, "ImagerPixelSpacing")]
            .iter()
            .find_map(|(tag, name)| {
                let v = floats_of(obj, *tag)?;
                (v.len() >= 2 && v[0] > 0.0 && v[1] > 0.0).then(|| (Some((v[0], v[1])), Some(name.to_string())))
            })
            .unwrap_or((None, None));

    let laterality = str_of(obj, tags::IMAGE_LATERALITY)
        .or_else(|| str_of(obj, tags::LATERALITY))
        .and_then(|s| Laterality::parse(&s));
    let view = str_of(obj, tags::VIEW_POSITION).and_then(|s| View::parse(&s)).or_else(|| {
        let seq = obj.get(tags::VIEW_CODE_SEQUENCE)?;
        let item = seq.items()?.first()?;
        let meaning = item.get(tags::CODE_MEANING)?.to_str().ok()?;
        View::parse(&meaning)
    });

    Ok(ImageInfo {
        source: SourceKind::Dicom { transfer_syntax: uid_shown(&ts_uid), transfer_syntax_name: ts_name },
        bits_allocated: g.bits_allocated,
        bits_stored: g.bits_stored,
        signed: g.signed,
        photometric: g.photometric,
        modality_lut,
        voi: voi_transforms(obj, g.signed),
        spacing_mm,
        spacing_source,
        laterality,
        view,
        // Code strings, but a file may put anything in them: only values that cannot spell an identifier.
        modality: str_of(obj, tags::MODALITY)
            .filter(|m| m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')),
        presentation_intent: str_of(obj, tags::PRESENTATION_INTENT_TYPE)
            .filter(|p| p == "FOR PRESENTATION" || p == "FOR PROCESSING"),
    })
}

/// A LUT item's (descriptor, data): (first mapped value, bits, entries). Shared by the modality and VOI
/// LUT sequences, which encode tables the same way (PS3.3 C.11.1.1, C.11.2.1.1).
fn lut_table(item: &InMemDicomObject, signed: bool) -> Option<(i32, u16, Vec<u16>)> {
    let desc = item.get(tags::LUT_DESCRIPTOR).and_then(|e| e.to_multi_int::<i64>().ok())?;
    if desc.len() < 3 {
        return None;
    }
    let count = if desc[0] == 0 { 65536 } else { desc[0] as u16 as usize };
    // The first mapped value is US or SS depending on the pixel representation.
    let first_mapped = if signed { desc[1] as u16 as i16 as i32 } else { desc[1] as u16 as i32 };
    let bits = desc[2] as u16;
    let entries: Vec<u16> = match item.get(tags::LUT_DATA).map(|e| e.value()) {
        Some(Value::Primitive(PrimitiveValue::U16(v))) => v.to_vec(),
        Some(Value::Primitive(p)) => {
            let b = p.to_bytes();
            if bits <= 8 && b.len() == count {
                b.iter().map(|&x| x as u16).collect()
            } else {
                b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
            }
        }
        _ => return None,
    };
    Some((first_mapped, bits, entries.into_iter().take(count).collect()))
}

fn modality_table(obj: &InMemDicomObject, signed: bool) -> Option<ModalityLut> {
    let item = obj.get(tags::MODALITY_LUT_SEQUENCE)?.items()?.first()?;
    let (first_mapped, bits, entries) = lut_table(item, signed)?;
    Some(ModalityLut::Table { first_mapped, bits, entries })
}

/// Windows first (they are what viewers default to), then the tables of the VOI LUT Sequence.
fn voi_transforms(obj: &InMemDicomObject, signed: bool) -> Vec<Voi> {
    let mut out = Vec::new();
    let function =
        str_of(obj, tags::VOILUT_FUNCTION).and_then(|s| VoiFunction::parse(&s)).unwrap_or(VoiFunction::Linear);
    if let (Some(centers), Some(widths)) = (floats_of(obj, tags::WINDOW_CENTER), floats_of(obj, tags::WINDOW_WIDTH)) {
        // WindowCenterWidthExplanation and LUTExplanation are free text (a site may put anything there,
        // identifiers included), so they are not read.
        for (c, w) in centers.iter().zip(widths.iter()) {
            out.push(Voi::Window { center: *c, width: *w, function });
        }
    }
    if let Some(items) = obj.get(tags::VOILUT_SEQUENCE).and_then(|e| e.items()) {
        for item in items {
            let Some((first_mapped, bits, entries)) = lut_table(item, signed) else { continue };
            out.push(Voi::Table { first_mapped, bits, entries });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/// The transfer syntaxes the phantom and tests write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteSyntax {
    ExplicitVrLittleEndian,
    ImplicitVrLittleEndian,
    DeflatedExplicitVrLittleEndian,
    RleLossless,
}

impl WriteSyntax {
    pub fn uid(self) -> &'static str {
        match self {
            WriteSyntax::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
            WriteSyntax::ImplicitVrLittleEndian => "1.2.840.10008.1.2",
            WriteSyntax::DeflatedExplicitVrLittleEndian => "1.2.840.10008.1.2.1.99",
            WriteSyntax::RleLossless => "1.2.840.10008.1.2.5",
        }
    }
}

/// What a written DICOM says about its image. Identifying attributes are the caller's choice: the
/// phantom fills them with recognisable fake values precisely so tests can check they never leak.
#[derive(Clone, Debug, Default)]
pub struct DicomWriteSpec {
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// (tag, VR, value) for extra string attributes: PatientName, PatientID, ViewPosition...
    pub strings: Vec<(Tag, VR, String)>,
    pub bits_stored: u16,
    pub monochrome1: bool,
    pub spacing_mm: Option<f64>,
    /// (centre, width, function) for a VOI window.
    pub window: Option<(f64, f64, &'static str)>,
}

/// Writes a 16-bit unsigned single-frame image as a DICOM file (Digital Mammography X-Ray Image Storage).
/// The file is written to a temporary name and renamed, so a crash never leaves a half file.
pub fn write_dicom(
    path: &Path,
    width: usize,
    height: usize,
    pixels: &[u16],
    spec: &DicomWriteSpec,
    syntax: WriteSyntax,
) -> Result<()> {
    const SOP_CLASS_MG_PRESENTATION: &str = "1.2.840.10008.5.1.4.1.1.1.2";
    let mut obj = InMemDicomObject::new_empty();
    let put = |obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, v));
    };
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, SOP_CLASS_MG_PRESENTATION.into());
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, spec.sop_instance_uid.as_str().into());
    put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, spec.study_instance_uid.as_str().into());
    put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, spec.series_instance_uid.as_str().into());
    put(&mut obj, tags::MODALITY, VR::CS, "MG".into());
    for (tag, vr, value) in &spec.strings {
        put(&mut obj, *tag, *vr, value.as_str().into());
    }
    put(&mut obj, tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        if spec.monochrome1 { "MONOCHROME1" } else { "MONOCHROME2" }.into(),
    );
    put(&mut obj, tags::ROWS, VR::US, PrimitiveValue::from(height as u16));
    put(&mut obj, tags::COLUMNS, VR::US, PrimitiveValue::from(width as u16));
    put(&mut obj, tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
    put(&mut obj, tags::BITS_STORED, VR::US, PrimitiveValue::from(spec.bits_stored));
    put(&mut obj, tags::HIGH_BIT, VR::US, PrimitiveValue::from(spec.bits_stored - 1));
    put(&mut obj, tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
    put(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "0".into());
    put(&mut obj, tags::RESCALE_SLOPE, VR::DS, "1".into());
    if let Some(s) = spec.spacing_mm {
        let v = format!("{s}\\{s}");
        put(&mut obj, tags::IMAGER_PIXEL_SPACING, VR::DS, v.as_str().into());
    }
    if let Some((c, w, f)) = spec.window {
        put(&mut obj, tags::WINDOW_CENTER, VR::DS, format!("{c}").as_str().into());
        put(&mut obj, tags::WINDOW_WIDTH, VR::DS, format!("{w}").as_str().into());
        put(&mut obj, tags::VOILUT_FUNCTION, VR::CS, f.into());
    }
    match syntax {
        WriteSyntax::RleLossless => {
            use dicom_core::value::PixelFragmentSequence;
            let frame = crate::rle::encode_frame_u16_rows(pixels, width);
            obj.put(DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                Value::PixelSequence(PixelFragmentSequence::new(vec![0u32], vec![frame])),
            ));
        }
        // The value's bytes, little-endian (every syntax written here is), as one run: dicom-rs writes
        // a `U16` value one `write_u16` at a time, and under the deflated syntax each of those went
        // through the compressor, which zero-fills its output buffer per call (a quarter of the
        // phantom's time). The data set is the same; only where the deflated stream closes its blocks
        // differs.
        _ => put(
            &mut obj,
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(pixels.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ),
    }
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(syntax.uid())
        .media_storage_sop_class_uid(SOP_CLASS_MG_PRESENTATION)
        .media_storage_sop_instance_uid(spec.sop_instance_uid.as_str())
        .implementation_class_uid("1.2.826.0.1.3680043.10.1234.1")
        .implementation_version_name("MAMMOGAN")
        .build()
        .map_err(|e| IoError::format(path, format!("cannot build DICOM meta: {e}")))?;
    let file_obj = obj.with_exact_meta(meta);
    crate::atomic::write_with(path, |w| file_obj.write_all(w).map_err(|e| std::io::Error::other(error_chain(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DicomWriteSpec {
        DicomWriteSpec {
            sop_instance_uid: "1.2.3.4".into(),
            study_instance_uid: "1.2.3".into(),
            series_instance_uid: "1.2.3.5".into(),
            strings: vec![(tags::VIEW_POSITION, VR::CS, "MLO".into()), (tags::IMAGE_LATERALITY, VR::CS, "R".into())],
            bits_stored: 12,
            monochrome1: true,
            spacing_mm: Some(0.07),
            window: Some((2048.0, 4096.0, "SIGMOID")),
        }
    }

    #[test]
    fn every_written_syntax_reads_back_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h) = (37, 23); // odd sizes catch padding mistakes
        let pixels: Vec<u16> = (0..w * h).map(|i| if i % 50 < 20 { 100 } else { (i * 37 % 4096) as u16 }).collect();
        for syntax in [
            WriteSyntax::ExplicitVrLittleEndian,
            WriteSyntax::ImplicitVrLittleEndian,
            WriteSyntax::DeflatedExplicitVrLittleEndian,
            WriteSyntax::RleLossless,
        ] {
            let p = dir.path().join(format!("{syntax:?}.dcm"));
            write_dicom(&p, w, h, &pixels, &spec(), syntax).unwrap();
            let m = read_dicom(&p).unwrap();
            assert_eq!((m.width, m.height), (w, h), "{syntax:?}");
            assert_eq!(m.samples, Samples::Unsigned(pixels.clone()), "{syntax:?}");
            assert_eq!(m.info.photometric, Photometric::Monochrome1);
            assert_eq!(m.info.bits_stored, 12);
            assert_eq!(m.info.spacing_mm, Some((0.07, 0.07)));
            assert_eq!(m.info.laterality, Some(Laterality::Right));
            assert_eq!(m.info.view, Some(View::MLO));
            assert!(matches!(m.info.voi[0], Voi::Window { function: VoiFunction::Sigmoid, .. }));
            let SourceKind::Dicom { transfer_syntax, .. } = &m.info.source else { panic!() };
            assert_eq!(transfer_syntax, syntax.uid());
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(decode_dicom_bytes(&p, &bytes).unwrap().samples, m.samples);
        }
    }

    #[test]
    fn garbage_above_bits_stored_is_masked() {
        let m = mask_to_bits_stored(Samples::Unsigned(vec![0xF123, 0x0FFF]), 2, 12, false);
        assert_eq!(m, Samples::Unsigned(vec![0x0123, 0x0FFF]));
        let s = mask_to_bits_stored(Samples::Signed(vec![0x0800, 0x07FF]), 2, 12, true);
        assert_eq!(s, Samples::Signed(vec![-2048, 2047]));
    }

    #[test]
    fn free_text_attributes_never_reach_image_info() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("free-text.dcm");
        let mut spec = spec();
        spec.strings.push((tags::WINDOW_CENTER_WIDTH_EXPLANATION, VR::LO, "SMITH^JANE MRN 4711".into()));
        spec.strings.push((tags::MODALITY, VR::CS, "MRN4711".into()));
        spec.strings.push((tags::PRESENTATION_INTENT_TYPE, VR::CS, "JANE".into()));
        write_dicom(&p, 4, 4, &[7; 16], &spec, WriteSyntax::ExplicitVrLittleEndian).unwrap();
        let (header_info, ..) = read_dicom_header(&p).unwrap();
        let m = read_dicom(&p).unwrap();
        assert_eq!(header_info, m.info);
        assert_eq!(m.info.voi.len(), 1, "the window itself is kept");
        assert_eq!((m.info.modality.as_deref(), m.info.presentation_intent.as_deref()), (None, None));
        let json = serde_json::to_string(&m.info).unwrap();
        for needle in ["SMITH", "JANE", "4711"] {
            assert!(!json.contains(needle), "{needle} in {json}");
        }
    }
}
