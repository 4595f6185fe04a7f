//! The few protobuf messages of a TensorBoard event file, encoded and decoded by hand. TensorBoard's
//! schema (`tensorboard/compat/proto/event.proto`, `summary.proto`) is stable, and the handful of fields
//! we need does not justify protobuf code generation:
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; float simple_value = 2; Image image = 4; }
//! Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
//! ```
//! Fields are written in field-number order and always present, so an event is always the same bytes.
//! The decoder skips fields it does not know, as protobuf readers must.

/// The `file_version` of the first event in every file; TensorBoard checks its prefix.
pub const FILE_VERSION: &str = "brain.Event:2";

/// One event of an event file (the subset of `tensorboard.Event` this crate writes).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// The training step.
    pub step: i64,
    /// Set only on the file's first event.
    pub file_version: Option<String>,
    /// The summary values (empty for the file-version event).
    pub values: Vec<Value>,
}

/// One tagged value of a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The series name shown by TensorBoard, like `"classifier/loss"`.
    pub tag: String,
    /// What was logged.
    pub kind: ValueKind,
}

/// What a summary value holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A scalar (`simple_value`, a 32-bit float in TensorBoard's schema).
    Scalar(f32),
    /// An encoded image.
    Image(Image),
}

/// An encoded image (`Summary.Image`).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// 1 grayscale, 2 grayscale + alpha, 3 RGB, 4 RGBA.
    pub colorspace: u32,
    /// The PNG (or JPEG/GIF) file's bytes.
    pub encoded: Vec<u8>,
}

// Wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

impl Event {
    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_key(&mut out, 1, FIXED64);
        out.extend_from_slice(&self.wall_time.to_le_bytes());
        put_key(&mut out, 2, VARINT);
        // int64 is encoded as its two's complement bits (negative steps take ten bytes, as in protobuf).
        put_varint(&mut out, self.step as u64);
        if let Some(version) = &self.file_version {
            put_bytes(&mut out, 3, version.as_bytes());
        }
        if !self.values.is_empty() {
            let mut summary = Vec::new();
            for value in &self.values {
                put_bytes(&mut summary, 1, &value.encode());
            }
            put_bytes(&mut out, 5, &summary);
        }
        out
    }

    /// Decodes an event; `None` if the bytes are not a well-formed protobuf message of this shape.
    pub fn decode(bytes: &[u8]) -> Option<Event> {
        let mut event = Event { wall_time: 0.0, step: 0, file_version: None, values: Vec::new() };
        for field in Fields(bytes) {
            match field? {
                (1, Field::Fixed64(bits)) => event.wall_time = f64::from_bits(bits),
                (2, Field::Varint(v)) => event.step = v as i64,
                (3, Field::Bytes(b)) => event.file_version = Some(String::from_utf8(b.to_vec()).ok()?),
                (5, Field::Bytes(summary)) => {
                    for field in Fields(summary) {
                        if let (1, Field::Bytes(value)) = field? {
                            event.values.push(Value::decode(value)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Some(event)
    }
}

impl Value {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, 1, self.tag.as_bytes());
        match &self.kind {
            ValueKind::Scalar(v) => {
                put_key(&mut out, 2, FIXED32);
                out.extend_from_slice(&v.to_le_bytes());
            }
            ValueKind::Image(image) => {
                let mut msg = Vec::new();
                put_key(&mut msg, 1, VARINT);
                put_varint(&mut msg, image.height.into());
                put_key(&mut msg, 2, VARINT);
                put_varint(&mut msg, image.width.into());
                put_key(&mut msg, 3, VARINT);
                put_varint(&mut msg, image.colorspace.into());
                put_bytes(&mut msg, 4, &image.encoded);
                put_bytes(&mut out, 4, &msg);
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Value> {
        let mut tag = String::new();
        let mut kind = None;
        for field in Fields(bytes) {
            match field? {
                (1, Field::Bytes(b)) => tag = String::from_utf8(b.to_vec()).ok()?,
                (2, Field::Fixed32(bits)) => kind = Some(ValueKind::Scalar(f32::from_bits(bits))),
                (4, Field::Bytes(msg)) => {
                    let mut image = Image { height: 0, width: 0, colorspace: 0, encoded: Vec::new() };
                    for field in Fields(msg) {
                        match field? {
                            (1, Field::Varint(v)) => image.height = v as u32,
                            (2, Field::Varint(v)) => image.width = v as u32,
                            (3, Field::Varint(v)) => image.colorspace = v as u32,
                            (4, Field::Bytes(b)) => image.encoded = b.to_vec(),
                            _ => {}
                        }
                    }
                    kind = Some(ValueKind::Image(image));
                }
                _ => {}
            }
        }
        Some(Value { tag, kind: kind? })
    }
}

/// A decoded field's payload.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the (field number, payload) pairs of a message; yields `None` once on malformed input.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Field<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let parsed = self.parse();
        if parsed.is_none() {
            // Stop after reporting the damage once.
            self.0 = &[];
        }
        Some(parsed)
    }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn parse(&mut self) -> Option<(u64, Field<'a>)> {
        let key = self.varint()?;
        let field = match key & 7 {
            VARINT => Field::Varint(self.varint()?),
            FIXED64 => Field::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            LEN => {
                let n = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(self.take(n)?)
            }
            FIXED32 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some((key >> 3, field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_event_bytes_match_protobuf() {
        // Built by hand from the protobuf wire format: wall_time 1.5, step 3, value {tag "a", 0.5f}.
        let event = Event {
            wall_time: 1.5,
            step: 3,
            file_version: None,
            values: vec![Value { tag: "a".into(), kind: ValueKind::Scalar(0.5) }],
        };
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 3, 0x2A, 10, 0x0A, 8, 0x0A, 1, b'a', 0x15]);
        want.extend_from_slice(&0.5f32.to_le_bytes());
        assert_eq!(event.encode(), want);
        assert_eq!(Event::decode(&want), Some(event));
    }

    #[test]
    fn image_and_version_events_round_trip() {
        let image = Image { height: 300, width: 2, colorspace: 1, encoded: vec![7; 200] };
        let event = Event {
            wall_time: 0.0,
            step: -1,
            file_version: Some(FILE_VERSION.into()),
            values: vec![Value { tag: "grid".into(), kind: ValueKind::Image(image) }],
        };
        assert_eq!(Event::decode(&event.encode()), Some(event));
    }

    #[test]
    fn truncated_messages_are_rejected() {
        let event = Event { wall_time: 2.0, step: 1, file_version: Some(FILE_VERSION.into()), values: vec![] };
        let bytes = event.encode();
        assert_eq!(Event::decode(&bytes[..bytes.len() - 1]), None);
    }
}
