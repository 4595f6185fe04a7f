//! TensorBoard event files: `RUN/tb/events.out.tfevents.<start time>.<name>`, a sequence of TFRecords
//! (see [`crate::tfrecord`]), each holding one `Event` protobuf (see [`crate::event`]). The first event
//! carries `file_version = "brain.Event:2"`, which TensorBoard requires.
//!
//! Every event is handed to the operating system as one write when it is logged, as in
//! [`crate::MetricsJsonl`]: a killed process loses nothing already logged, and a cut last record is
//! skipped by TensorBoard and cut off by [`TensorBoardWriter::open_resume`].
//!
//! For reproducible bytes, the caller may fix the wall time ([`WallTime::Fixed`]) and the file name
//! suffix; TensorBoard only uses the wall time for its "relative" and "wall" axes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, TrackError};
use crate::event::{Event, FILE_VERSION, Image, Value, ValueKind};
use crate::resume::{Entry, keep_up_to, read_or_empty};
use crate::tfrecord;

/// The common start of every event file name; TensorBoard finds files by the `tfevents` in it.
pub const EVENT_FILE_PREFIX: &str = "events.out.tfevents.";

/// Where the `wall_time` of each event comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WallTime {
    /// The system clock at the time of each event (what TensorFlow writes).
    System,
    /// This many seconds since the Unix epoch for every event and in the file name, so that two runs of
    /// the same configuration write identical files.
    Fixed(f64),
}

impl WallTime {
    /// Seconds since the Unix epoch, now or fixed.
    pub fn now(self) -> f64 {
        match self {
            WallTime::System => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            WallTime::Fixed(t) => t,
        }
    }
}

/// The file name for an event file started at `start_time` (seconds since the epoch) named `name`:
/// `events.out.tfevents.<10-digit whole seconds>.<name>`, TensorFlow's pattern with our own suffix.
pub fn event_file_name(start_time: f64, name: &str) -> String {
    format!("{EVENT_FILE_PREFIX}{:010}.{name}", start_time.max(0.0) as u64)
}

/// Every complete event in an event file, in order (a record cut short at the end is skipped).
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>> {
    let path = path.as_ref();
    let records = tfrecord::read_records(path)?;
    records
        .iter()
        .enumerate()
        .map(|(i, data)| Event::decode(data).ok_or_else(|| TrackError::malformed(path, i + 1, "not an Event protobuf")))
        .collect()
}

/// Writes one TensorBoard event file. See the module docs.
#[derive(Debug)]
pub struct TensorBoardWriter {
    file: File,
    path: PathBuf,
    wall_time: WallTime,
}

impl TensorBoardWriter {
    /// Starts a new event file in `dir` (created if missing) with the file name suffix `name`, replacing
    /// a file of the same name. `name` must be a plain file name part (no `/`).
    pub fn create(dir: impl AsRef<Path>, name: &str, wall_time: WallTime) -> Result<Self> {
        let dir = dir.as_ref();
        check_name(name)?;
        std::fs::create_dir_all(dir).map_err(|e| TrackError::io(dir, e))?;
        let path = dir.join(event_file_name(wall_time.now(), name));
        let file = File::create(&path).map_err(|e| TrackError::io(&path, e))?;
        let mut writer = TensorBoardWriter { file, path, wall_time };
        writer.write_version()?;
        Ok(writer)
    }

    /// Continues the event file named `name` in `dir` for a run resumed from the checkpoint at
    /// `last_step`: drops the events with `step > last_step` and any cut last record, so that with a fixed
    /// wall time the file ends up what an uninterrupted run writes. Where several files match (system
    /// clock, several starts), the newest name is continued; where none does, a new one is started.
    pub fn open_resume(dir: impl AsRef<Path>, name: &str, wall_time: WallTime, last_step: u64) -> Result<Self> {
        let dir = dir.as_ref();
        check_name(name)?;
        let Some(path) = find_event_file(dir, name)? else {
            return Self::create(dir, name, wall_time);
        };
        let bytes = read_or_empty(&path)?;
        let (spans, complete_len) = tfrecord::scan(&path, &bytes)?;
        let mut entries = Vec::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            let event = Event::decode(&bytes[span.data.clone()])
                .ok_or_else(|| TrackError::malformed(&path, i + 1, "not an Event protobuf"))?;
            // A negative step (never written by this crate) sorts before every checkpoint.
            let step = u64::try_from(event.step).unwrap_or(0);
            entries.push(Entry { start: span.record.start, end: span.record.end, step });
        }
        keep_up_to(&path, &bytes, &entries, complete_len, last_step)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| TrackError::io(&path, e))?;
        let mut writer = TensorBoardWriter { file, path, wall_time };
        if entries.is_empty() {
            // Killed before even the version record was complete: the file is now empty.
            writer.write_version()?;
        }
        Ok(writer)
    }

    fn write_version(&mut self) -> Result<()> {
        let event =
            Event { wall_time: self.wall_time.now(), step: 0, file_version: Some(FILE_VERSION.into()), values: vec![] };
        self.write_event(&event)
    }

    /// Appends an event (one write call, so a crash cuts at most this record).
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        let record = tfrecord::frame(&event.encode());
        self.file.write_all(&record).map_err(|e| TrackError::io(&self.path, e))
    }

    fn write_value(&mut self, step: u64, tag: &str, kind: ValueKind) -> Result<()> {
        let step = i64::try_from(step).map_err(|_| TrackError::InvalidInput(format!("step {step} exceeds int64")))?;
        let value = Value { tag: tag.to_owned(), kind };
        let event = Event { wall_time: self.wall_time.now(), step, file_version: None, values: vec![value] };
        self.write_event(&event)
    }

    /// Logs a scalar. TensorBoard stores scalars as 32-bit floats; NaN and infinities are kept.
    pub fn scalar(&mut self, step: u64, tag: &str, value: f32) -> Result<()> {
        self.write_value(step, tag, ValueKind::Scalar(value))
    }

    /// Logs an image given as PNG bytes (see [`crate::image_grid_png`]); `width`, `height` and `channels`
    /// (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) must describe it, and the size is checked against the PNG's
    /// header so that a mix-up is caught here rather than shown wrong in TensorBoard.
    pub fn image(&mut self, step: u64, tag: &str, png: &[u8], width: u32, height: u32, channels: u32) -> Result<()> {
        if !(1..=4).contains(&channels) {
            return Err(TrackError::InvalidInput(format!("image {tag:?}: {channels} channels (want 1 to 4)")));
        }
        let (png_width, png_height) = png_size(png)
            .ok_or_else(|| TrackError::InvalidInput(format!("image {tag:?}: the bytes are not a PNG file")))?;
        if (png_width, png_height) != (width, height) {
            return Err(TrackError::InvalidInput(format!(
                "image {tag:?}: said to be {width}x{height} but the PNG is {png_width}x{png_height}"
            )));
        }
        let image = Image { height, width, colorspace: channels, encoded: png.to_vec() };
        self.write_value(step, tag, ValueKind::Image(image))
    }

    /// Makes sure everything logged is in the file. Events are written as they are logged, so this only
    /// flushes the operating system's handle; it exists so callers need not know that.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| TrackError::io(&self.path, e))
    }

    /// Forces the file to the disk (`fsync`), against power loss; call it at checkpoints.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| TrackError::io(&self.path, e))
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(TrackError::InvalidInput(format!(
            "event file name suffix {name:?} must be a plain, non-empty name"
        )));
    }
    Ok(())
}

/// The newest `events.out.tfevents.<digits>.<name>` in `dir`, if any (zero-padded times sort by name).
fn find_event_file(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrackError::io(dir, e)),
    };
    let suffix = format!(".{name}");
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrackError::io(dir, e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let time = file_name.strip_prefix(EVENT_FILE_PREFIX).and_then(|rest| rest.strip_suffix(&suffix));
        if time.is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())) {
            found.push(file_name);
        }
    }
    found.sort();
    Ok(found.pop().map(|f| dir.join(f)))
}

/// Width and height from a PNG's signature and IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    Some((be(16), be(20)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{GridOptions, image_grid_png};

    fn log_run(dir: &Path, steps: std::ops::RangeInclusive<u64>) -> PathBuf {
        let last = steps.start().saturating_sub(1);
        let mut tb = TensorBoardWriter::open_resume(dir, "train", WallTime::Fixed(1_700_000_000.0), last).unwrap();
        for step in steps {
            tb.scalar(step, "loss", 1.0 / step as f32).unwrap();
        }
        tb.flush().unwrap();
        tb.path().to_path_buf()
    }

    #[test]
    fn events_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut tb = TensorBoardWriter::create(dir.path(), "test", WallTime::Fixed(12.5)).unwrap();
        assert_eq!(tb.path().file_name().unwrap(), "events.out.tfevents.0000000012.test");
        tb.scalar(1, "a/loss", 0.25).unwrap();
        let patch = [0.5f32; 16];
        let (png, w, h) = image_grid_png(&[&patch], 4, 4, 1, &GridOptions::default()).unwrap();
        tb.image(2, "a/grid", &png, w, h, 1).unwrap();
        let events = read_events(tb.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
        assert_eq!(events[1].values[0].kind, ValueKind::Scalar(0.25));
        let ValueKind::Image(image) = &events[2].values[0].kind else { panic!("not an image") };
        assert_eq!((image.width, image.height, image.colorspace, &image.encoded), (w, h, 1, &png));
        assert!(events.iter().all(|e| e.wall_time == 12.5));
    }

    #[test]
    fn image_size_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut tb = TensorBoardWriter::create(dir.path(), "test", WallTime::Fixed(0.0)).unwrap();
        let (png, w, h) = image_grid_png(&[&[0.0f32; 6]], 3, 2, 1, &GridOptions::default()).unwrap();
        let err = tb.image(1, "x", &png, h, w, 1).unwrap_err().to_string();
        assert!(err.contains("said to be 2x3 but the PNG is 3x2"), "{err}");
        assert!(tb.image(1, "x", b"not a png at all, no no no", w, h, 1).is_err());
    }

    #[test]
    fn resume_truncates_to_an_uninterrupted_run() {
        let a = tempfile::tempdir().unwrap();
        let uninterrupted = log_run(a.path(), 1..=20);

        let b = tempfile::tempdir().unwrap();
        let killed = log_run(b.path(), 1..=14);
        // Killed mid-record after step 14.
        let mut f = OpenOptions::new().append(true).open(&killed).unwrap();
        f.write_all(&tfrecord::frame(b"half an event")[..9]).unwrap();
        drop(f);
        let resumed = log_run(b.path(), 11..=20);

        assert_eq!(resumed, killed);
        assert_eq!(std::fs::read(&resumed).unwrap(), std::fs::read(&uninterrupted).unwrap());
    }
}
