//! A cheap structural pre-check of a DICOM file before dicom-rs parses it.
//!
//! dicom-rs allocates (and zero-fills) an element's declared length before reading its value, so one
//! corrupt length field in a 700-byte file makes it write up to 4 GB: a truncated or damaged file could
//! exhaust memory instead of failing. Fuzzing found this. This walk reads only element headers, seeks over
//! values, descends into sequences and items, and refuses any declared length that runs past the end of
//! the file — after which no allocation dicom-rs makes can exceed the file's size.
//!
//! A deflated dataset is walked the same way as it inflates ([`crate::inflate`]): its lengths are checked
//! against the inflated size, itself capped at [`MAX_INFLATED_BYTES`].

use std::io::{Read, Seek, SeekFrom};

use dicom_core::Tag;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;

use crate::budget::MAX_INFLATED_BYTES;

const UNDEFINED: u32 = 0xFFFF_FFFF;
/// The most elements (items and fragments included) a file may hold. dicom-rs keeps every element as an
/// object of its own (about a hundred bytes), so 500 MB of empty 8-byte elements, which a 500 KB deflated
/// file inflates to, would cost gigabytes; a mammogram holds a few thousand.
pub const MAX_ELEMENTS: u32 = 200_000;
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
/// The syntaxes whose whole dataset is deflated (dicom-rs reads all three through an inflater).
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const JPIP_DEFLATED: &str = "1.2.840.10008.1.2.4.95";
const JPIP_HTJ2K_DEFLATED: &str = "1.2.840.10008.1.2.4.205";

/// Checks every declared length of a file that starts with the 128-byte preamble and `DICM`.
/// Returns a message for the caller to wrap with the file name.
pub fn check<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    let end = r.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    r.seek(SeekFrom::Start(132)).map_err(|e| e.to_string())?;
    let mut w = Walker { r, end, pos: 132, explicit: true, big_endian: false, elements: 0 };
    // File meta group: always explicit VR little endian, and (as dicom-rs reads it) it must open with
    // its group length (0002,0000), which decides where the dataset starts — walking by any other rule
    // would check a different element sequence than the parser then reads.
    let first = w.tag()?.ok_or("no file meta group")?;
    let (len, _) = w.header(first)?;
    if first != (0x0002, 0x0000) || len != 4 {
        return Err("the file meta group does not start with its group length (0002,0000)".into());
    }
    let group_length = w.u32()? as u64;
    let meta_start = w.pos;
    let mut ts = String::new();
    while w.pos - meta_start < group_length {
        let tag = w.tag()?.ok_or("the file meta group is cut short")?;
        let (len, _) = w.header(tag)?;
        if len == UNDEFINED {
            return Err("undefined length in the file meta group".into());
        }
        w.fits(len, tag)?;
        if tag == (0x0002, 0x0010) {
            let mut v = vec![0u8; len as usize];
            w.read(&mut v)?;
            ts = String::from_utf8_lossy(&v).trim_end_matches(['\0', ' ']).to_string();
        } else {
            w.skip(len)?;
        }
    }
    match ts.as_str() {
        DEFLATED | JPIP_DEFLATED | JPIP_HTJ2K_DEFLATED => {
            let start = w.pos;
            return check_deflated(r, start, MAX_INFLATED_BYTES);
        }
        IMPLICIT_VR_LE => w.explicit = false,
        EXPLICIT_VR_BE => w.big_endian = true,
        _ => {}
    }
    w.dataset()
}

/// The dataset after the file meta group is one deflate stream: measure what it inflates to (within
/// `cap`), then walk a second inflation against that end. Two passes keep memory constant; inflating is
/// fast next to what a decoder then does with the same bytes.
fn check_deflated<R: Read + Seek>(r: &mut R, start: u64, cap: u64) -> Result<(), String> {
    r.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let end = crate::inflate::inflated_size(&mut *r, cap)?;
    r.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut inflated = crate::inflate::Forward::new(&mut *r);
    let mut w = Walker { r: &mut inflated, end, pos: 0, explicit: true, big_endian: false, elements: 0 };
    w.dataset().map_err(|e| format!("deflated dataset: {e}"))
}

/// Refuses a binary value whose length is not a whole number of values (say 2 bytes of SL): dicom-rs reads
/// only the whole values and goes on from there, so its next element header starts inside this value,
/// where this walk does not look — fuzzing found a 2-byte SL followed by bytes that dicom-rs then read as
/// a 1.3 GB length. The standard requires whole values anyway.
fn whole_values(tag: (u16, u16), vr: dicom_core::VR, len: u32) -> Result<(), String> {
    use dicom_core::VR::*;
    let size = match vr {
        OW | SS | US => 2,
        AT | FL | OF | OL | SL | UL => 4,
        FD | OD | OV | SV | UV => 8,
        _ => return Ok(()),
    };
    if len != UNDEFINED && len % size != 0 {
        return Err(format!(
            "element ({:04X},{:04X}) {vr:?} has {len} bytes, not a whole number of {size}-byte values (corrupt file)",
            tag.0, tag.1
        ));
    }
    Ok(())
}

struct Walker<'a, R> {
    r: &'a mut R,
    end: u64,
    pos: u64,
    explicit: bool,
    big_endian: bool,
    elements: u32,
}

impl<R: Read + Seek> Walker<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.r.read_exact(buf).map_err(|_| format!("truncated at byte {}", self.pos))?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn u16(&mut self) -> Result<u16, String> {
        let mut b = [0u8; 2];
        self.read(&mut b)?;
        Ok(if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    fn seek(&mut self, to: u64) -> Result<(), String> {
        self.r.seek(SeekFrom::Start(to)).map_err(|e| e.to_string())?;
        self.pos = to;
        Ok(())
    }
    fn skip(&mut self, len: u32) -> Result<(), String> {
        self.seek(self.pos + len as u64)
    }
    /// The next tag, or `None` at the end of the file.
    fn tag(&mut self) -> Result<Option<(u16, u16)>, String> {
        if self.pos >= self.end {
            return Ok(None);
        }
        if self.end - self.pos < 4 {
            return Err(format!("truncated element header at byte {}", self.pos));
        }
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(format!("more than {MAX_ELEMENTS} elements (hostile or corrupt file)"));
        }
        // Items and delimiters are little endian in every little-endian syntax.
        Ok(Some((self.u16()?, self.u16()?)))
    }
    fn fits(&self, len: u32, tag: (u16, u16)) -> Result<(), String> {
        if len as u64 > self.end - self.pos {
            return Err(format!(
                "element ({:04X},{:04X}) declares {len} bytes but only {} remain (truncated or corrupt file)",
                tag.0,
                tag.1,
                self.end - self.pos
            ));
        }
        Ok(())
    }
    /// Reads VR (explicit syntaxes) and length; returns the length and whether the element is a sequence.
    fn header(&mut self, tag: (u16, u16)) -> Result<(u32, bool), String> {
        if tag.0 == 0xFFFE || !self.explicit {
            let len = self.u32()?;
            if tag.0 == 0xFFFE {
                return Ok((len, false));
            }
            // Implicit VR: dicom-rs reads the value as the dictionary says.
            let vr = StandardDataDictionary.by_tag(Tag(tag.0, tag.1)).map(|e| e.vr().relaxed());
            if let Some(vr) = vr {
                whole_values(tag, vr, len)?;
            }
            return Ok((len, len == UNDEFINED || vr == Some(dicom_core::VR::SQ)));
        }
        let mut vr = [0u8; 2];
        self.read(&mut vr)?;
        let long = matches!(
            &vr,
            b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"UC" | b"UR" | b"UT" | b"UN" | b"SV" | b"UV"
        );
        let short = matches!(
            &vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        );
        // Parsers disagree on how to read an element with an unknown VR, so refuse it rather than guess.
        if !long && !short {
            return Err(format!(
                "element ({:04X},{:04X}) at byte {} has the invalid VR {:?} (corrupt file)",
                tag.0,
                tag.1,
                self.pos - 2,
                String::from_utf8_lossy(&vr)
            ));
        }
        let len = if long {
            self.u16()?;
            self.u32()?
        } else {
            self.u16()? as u32
        };
        if let Some(vr) = dicom_core::VR::from_binary(vr) {
            whole_values(tag, vr, len)?;
        }
        Ok((len, &vr == b"SQ" || (&vr == b"UN" && len == UNDEFINED)))
    }
    fn dataset(&mut self) -> Result<(), String> {
        // Depth of encapsulated pixel data (fragments are raw bytes, skipped until the sequence ends).
        let mut fragments = false;
        let mut depth = 0u32;
        while let Some(tag) = self.tag()? {
            if tag.0 == 0xFFFE {
                let len = self.u32()?;
                match tag.1 {
                    0xE000 => {
                        if fragments {
                            if len == UNDEFINED {
                                return Err("a pixel data fragment has an undefined length".into());
                            }
                            self.fits(len, tag)?;
                            self.skip(len)?;
                        } else if len != UNDEFINED {
                            self.fits(len, tag)?; // an item's elements follow; walk into them
                        }
                    }
                    0xE00D | 0xE0DD => {
                        // Delimiters carry no value; a parser that believes a non-zero length reads it.
                        if len != 0 {
                            return Err(format!(
                                "delimiter (FFFE,{:04X}) at byte {} declares {len} bytes (corrupt file)",
                                tag.1,
                                self.pos - 8
                            ));
                        }
                        if tag.1 == 0xE0DD {
                            fragments = false;
                            depth = depth.saturating_sub(1);
                        }
                    }
                    _ => {
                        return Err(format!(
                            "unknown element (FFFE,{:04X}) at byte {} (corrupt file)",
                            tag.1,
                            self.pos - 8
                        ));
                    }
                }
                continue;
            }
            let (len, is_seq) = self.header(tag)?;
            if tag == (0x7FE0, 0x0010) && len == UNDEFINED {
                fragments = true;
                depth += 1;
                continue;
            }
            if len == UNDEFINED {
                depth += 1;
                if depth > 64 {
                    return Err("sequences nested more than 64 deep".into());
                }
                continue;
            }
            self.fits(len, tag)?;
            if !is_seq {
                self.skip(len)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(body: &[u8], ts: &str) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        let mut ts_bytes = ts.as_bytes().to_vec();
        if ts_bytes.len() % 2 == 1 {
            ts_bytes.push(0);
        }
        f.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        f.extend_from_slice(&(8 + ts_bytes.len() as u32).to_le_bytes());
        f.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        f.extend_from_slice(&(ts_bytes.len() as u16).to_le_bytes());
        f.extend_from_slice(&ts_bytes);
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn refuses_a_length_past_the_end_and_accepts_a_good_file() {
        // (0010,0010) PN with length 4, then (7FE0,0010) OW declaring 3.6 GB.
        let mut body = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0, b'A', b'^', b'B', b' '];
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        let good = {
            let mut b = body.clone();
            b.extend_from_slice(&4u32.to_le_bytes());
            b.extend_from_slice(&[1, 2, 3, 4]);
            file(&b, "1.2.840.10008.1.2.1")
        };
        assert!(check(&mut std::io::Cursor::new(good)).is_ok());
        body.extend_from_slice(&0xD9CE_D1D0u32.to_le_bytes());
        let err = check(&mut std::io::Cursor::new(file(&body, "1.2.840.10008.1.2.1"))).unwrap_err();
        assert!(err.contains("(7FE0,0010)") && err.contains("remain"), "{err}");
    }

    #[test]
    fn implicit_sequences_are_walked_into() {
        // (0028,3010) VOILUTSequence, implicit VR, defined length holding an item with a bad inner length.
        let mut inner = vec![0x28, 0x00, 0x06, 0x30];
        inner.extend_from_slice(&1_000_000u32.to_le_bytes());
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend_from_slice(&inner);
        let mut body = vec![0x28, 0x00, 0x10, 0x30];
        body.extend_from_slice(&(item.len() as u32).to_le_bytes());
        body.extend_from_slice(&item);
        let err = check(&mut std::io::Cursor::new(file(&body, "1.2.840.10008.1.2"))).unwrap_err();
        assert!(err.contains("(0028,3006)"), "{err}");
    }

    fn deflated(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_deflated_dataset_is_walked_as_it_inflates_and_capped() {
        // (7FE0,0010) OB holding 2 MB of zeros: a few kilobytes deflated.
        let mut body = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        body.extend_from_slice(&(2u32 << 20).to_le_bytes());
        body.resize(body.len() + (2 << 20), 0);
        let f = file(&deflated(&body), DEFLATED);
        assert!(f.len() < 8192);
        assert!(check(&mut std::io::Cursor::new(&f)).is_ok());
        // Under a 1 MB cap the same file inflates too far.
        let meta_end = f.len() - deflated(&body).len();
        let e = check_deflated(&mut std::io::Cursor::new(&f), meta_end as u64, 1 << 20).unwrap_err();
        assert!(e.contains("inflates to more than 1 MB"), "{e}");
        // One byte short of what the element declares.
        body.pop();
        let e = check(&mut std::io::Cursor::new(file(&deflated(&body), DEFLATED))).unwrap_err();
        assert!(e.contains("declares 2097152 bytes but only 2097151 remain"), "{e}");
    }

    #[test]
    fn a_flood_of_empty_elements_is_refused() {
        // 300,000 empty (0009,0010) LO elements: 2.4 MB here, a few kilobytes deflated.
        let body: Vec<u8> = [0x09, 0x00, 0x10, 0x00, b'L', b'O', 0, 0].repeat(300_000);
        let e = check(&mut std::io::Cursor::new(file(&deflated(&body), DEFLATED))).unwrap_err();
        assert!(e.contains("more than 200000 elements"), "{e}");
        let e = check(&mut std::io::Cursor::new(file(&body, "1.2.840.10008.1.2.1"))).unwrap_err();
        assert!(e.contains("more than 200000 elements"), "{e}");
    }

    #[test]
    fn a_binary_value_of_partial_length_is_refused() {
        // (0028,0002) SL of 2 bytes, then bytes that read as a long header if the parser consumed none.
        let mut body = vec![0x28, 0x00, 0x02, 0x00, b'S', b'L', 2, 0, 0x01, 0x00];
        body.extend_from_slice(&[0x28, 0x00, 0x04, 0x00, b'C', b'S', 2, 0, b'M', b'O']);
        let e = check(&mut std::io::Cursor::new(file(&body, "1.2.840.10008.1.2.1"))).unwrap_err();
        assert!(e.contains("(0028,0002) SL has 2 bytes, not a whole number of 4-byte values"), "{e}");
        // Implicit VR: the dictionary's VR (Rows is US) decides.
        let mut body = vec![0x28, 0x00, 0x10, 0x00, 3, 0, 0, 0, 1, 2, 3];
        body.push(0);
        let e = check(&mut std::io::Cursor::new(file(&body, "1.2.840.10008.1.2"))).unwrap_err();
        assert!(e.contains("(0028,0010) US has 3 bytes"), "{e}");
        // Whole values pass.
        let ok = [0x28, 0x00, 0x02, 0x00, b'S', b'L', 4, 0, 1, 0, 0, 0];
        assert!(check(&mut std::io::Cursor::new(file(&ok, "1.2.840.10008.1.2.1"))).is_ok());
    }
}
