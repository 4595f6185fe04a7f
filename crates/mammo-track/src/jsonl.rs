//! `RUN/metrics.jsonl`: one JSON object per line, one line per (step, model) record.
//!
//! # Schema
//! Each line is a flat JSON object, so `pandas.read_json(path, lines=True)` or `jq` read it directly:
//! ```text
//! {"step":100,"model":"classifier","loss":0.41,"lr":0.001}
//! ```
//! - `step` (non-negative integer): the training step the values belong to.
//! - `model` (string): which model or phase logged it (`"classifier"`, `"critic"`, `"generator"`, `"eval"`).
//! - every other key: a scalar metric name, and its value as a JSON number, or `null` where the value was
//!   NaN or ±infinity (JSON has no literal for them; writing `NaN` would make the line unreadable to
//!   strict parsers). A reader gets NaN back for `null`; the sign of an infinity is not kept.
//!
//! `step` and `model` come first and metrics follow in name order, so the same record is always the same
//! bytes. The names `step` and `model` are reserved and refused as metric names.
//!
//! # Crash safety and resume
//! A record is written with a single `write` of the whole line, newline included, to a file opened for
//! append, and nothing is buffered in the process: a record is committed once its newline is on disk. A
//! kill can leave at most a partial last line without a newline; [`read_metrics`] skips it and
//! [`MetricsJsonl::open_resume`] cuts it off. A complete line that does not parse is an error in both, not
//! skipped: it is damage, and silently dropping it would hide it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrackError};
use crate::resume::{Entry, keep_up_to, read_or_empty};

/// The keys of a line that are not metrics.
pub const RESERVED_KEYS: [&str; 2] = ["step", "model"];

/// One line of `metrics.jsonl`: the scalar metrics one model logged at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The training step.
    pub step: u64,
    /// The model or phase that logged the values (`"classifier"`, `"critic"`, ...).
    pub model: String,
    /// Metric name -> value. Non-finite values are written as `null` and read back as NaN.
    pub scalars: BTreeMap<String, f64>,
}

impl Record {
    /// A record with no metrics yet.
    pub fn new(step: u64, model: impl Into<String>) -> Self {
        Record { step, model: model.into(), scalars: BTreeMap::new() }
    }

    /// Adds (or replaces) one metric; for building a record in one expression.
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.scalars.insert(name.into(), value);
        self
    }

    /// The record as one JSON line, newline included. Fails only on a reserved metric name.
    pub fn to_json_line(&self) -> Result<String> {
        let mut line = format!("{{\"step\":{},\"model\":{}", self.step, serde_json::Value::from(self.model.as_str()));
        for (name, &value) in &self.scalars {
            if RESERVED_KEYS.contains(&name.as_str()) {
                return Err(TrackError::InvalidInput(format!(
                    "metric name {name:?} is reserved in metrics.jsonl (it would collide with the record's own key)"
                )));
            }
            // `from_f64` is None exactly for NaN and the infinities: those become null.
            let value = serde_json::Number::from_f64(value).map_or_else(|| "null".to_owned(), |n| n.to_string());
            line.push(',');
            line.push_str(&serde_json::Value::from(name.as_str()).to_string());
            line.push(':');
            line.push_str(&value);
        }
        line.push_str("}\n");
        Ok(line)
    }

    /// Parses one line (without its newline). The error says what is wrong, without the file position.
    pub fn from_json_line(line: &str) -> std::result::Result<Record, String> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err("not a JSON object".to_owned());
        };
        let step =
            map.get("step").and_then(|v| v.as_u64()).ok_or("missing or invalid \"step\" (want an integer >= 0)")?;
        let model = map.get("model").and_then(|v| v.as_str()).ok_or("missing or invalid \"model\" (want a string)")?;
        let mut record = Record::new(step, model);
        for (name, value) in map.iter().filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str())) {
            let value = match value {
                serde_json::Value::Null => f64::NAN,
                serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| format!("metric {name:?}: not a float"))?,
                other => return Err(format!("metric {name:?}: want a number or null, found {other}")),
            };
            record.scalars.insert(name.clone(), value);
        }
        Ok(record)
    }
}

/// A complete (newline-terminated) line of the file: where its bytes are, and what it says.
struct Line {
    start: usize,
    end: usize,
    record: Record,
}

/// What is in a metrics file: its complete lines, and how many bytes they span (a partial tail follows).
struct Scan {
    lines: Vec<Line>,
    complete_len: usize,
}

/// Parses every complete line of `bytes`, the content of `path` (named in errors).
fn scan(path: &Path, bytes: &[u8]) -> Result<Scan> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut number = 0;
    while let Some(offset) = bytes[start..].iter().position(|&b| b == b'\n') {
        number += 1;
        let end = start + offset + 1;
        let text = std::str::from_utf8(&bytes[start..end - 1])
            .map_err(|_| TrackError::malformed(path, number, "line is not UTF-8"))?;
        // Blank lines carry nothing; tolerate them (a hand edit) rather than refuse the whole file.
        if !text.trim().is_empty() {
            let record =
                Record::from_json_line(text).map_err(|message| TrackError::malformed(path, number, message))?;
            lines.push(Line { start, end, record });
        }
        start = end;
    }
    Ok(Scan { lines, complete_len: start })
}

/// Every complete record of a metrics file, in file order. A partial last line (a write cut short by a
/// crash) is skipped; a complete line that does not parse is an error naming its line number.
pub fn read_metrics(path: impl AsRef<Path>) -> Result<Vec<Record>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| TrackError::io(path, e))?;
    Ok(scan(path, &bytes)?.lines.into_iter().map(|l| l.record).collect())
}

/// The append-only writer of `metrics.jsonl`. See the module docs for the schema and the guarantees.
#[derive(Debug)]
pub struct MetricsJsonl {
    file: File,
    path: PathBuf,
}

impl MetricsJsonl {
    /// Starts a new, empty metrics file at `path`, replacing any file there (a fresh run; a resumed one
    /// uses [`MetricsJsonl::open_resume`]).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        File::create(&path).map_err(|e| TrackError::io(&path, e))?;
        Self::open_append(path)
    }

    /// Continues the metrics file of a run resumed from the checkpoint at `last_step`: drops every record
    /// with `step > last_step` (they were logged by the killed run after that checkpoint and will be
    /// logged again) and any partial last line, then appends. With a run that logs step N before it saves
    /// checkpoint N and resumes at N + 1, the file ends up byte for byte what an uninterrupted run writes.
    /// A missing file is created.
    pub fn open_resume(path: impl AsRef<Path>, last_step: u64) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = read_or_empty(&path)?;
        let scan = scan(&path, &bytes)?;
        let entries: Vec<Entry> =
            scan.lines.iter().map(|l| Entry { start: l.start, end: l.end, step: l.record.step }).collect();
        keep_up_to(&path, &bytes, &entries, scan.complete_len, last_step)?;
        Self::open_append(path)
    }

    fn open_append(path: PathBuf) -> Result<Self> {
        // Append mode: every write lands at the end even if something else extended the file, and a
        // single small write is not interleaved with another appender's.
        let file = OpenOptions::new().append(true).create(true).open(&path).map_err(|e| TrackError::io(&path, e))?;
        Ok(MetricsJsonl { file, path })
    }

    /// Appends one record and hands it to the operating system before returning (no buffering in the
    /// process, so a crash of the process loses nothing already written; see [`MetricsJsonl::sync`] for
    /// a machine crash).
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let line = record.to_json_line()?;
        // One write_all of the whole line: a crash cuts at most this line, never an earlier one.
        self.file.write_all(line.as_bytes()).and_then(|()| self.file.flush()).map_err(|e| TrackError::io(&self.path, e))
    }

    /// Appends the record `{step, model, name: value, ...}`. A name given twice keeps the last value.
    pub fn log(&mut self, step: u64, model: &str, scalars: &[(&str, f64)]) -> Result<()> {
        let mut record = Record::new(step, model);
        record.scalars.extend(scalars.iter().map(|&(name, value)| (name.to_owned(), value)));
        self.write(&record)
    }

    /// Forces written records to the disk (`fsync`), against power loss; call it at checkpoints rather
    /// than per record, because it costs milliseconds.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| TrackError::io(&self.path, e))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_run(path: &Path, steps: std::ops::RangeInclusive<u64>) {
        let mut w = MetricsJsonl::open_resume(path, steps.start().saturating_sub(1)).unwrap();
        for step in steps {
            w.log(step, "classifier", &[("loss", 1.0 / (step as f64 + 1.0)), ("acc", step as f64 / 10.0)]).unwrap();
            w.log(step, "critic", &[("wasserstein", -(step as f64))]).unwrap();
        }
    }

    #[test]
    fn schema_is_flat_and_ordered() {
        let record = Record::new(100, "classifier").with("loss", 0.41).with("acc", 0.5);
        assert_eq!(
            record.to_json_line().unwrap(),
            "{\"step\":100,\"model\":\"classifier\",\"acc\":0.5,\"loss\":0.41}\n"
        );
    }

    #[test]
    fn non_finite_values_are_null_and_read_back_as_nan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsJsonl::create(&path).unwrap();
        w.log(1, "gan", &[("a", f64::NAN), ("b", f64::INFINITY), ("c", f64::NEG_INFINITY), ("d", -0.25)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"step\":1,\"model\":\"gan\",\"a\":null,\"b\":null,\"c\":null,\"d\":-0.25}\n");
        // Strict JSON parsers accept every line.
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        let records = read_metrics(&path).unwrap();
        assert_eq!(records.len(), 1);
        assert!(records[0].scalars["a"].is_nan() && records[0].scalars["b"].is_nan());
        assert_eq!(records[0].scalars["d"], -0.25);
    }

    #[test]
    fn reserved_names_are_refused() {
        let err = Record::new(1, "m").with("step", 1.0).to_json_line().unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }

    #[test]
    fn partial_last_line_is_skipped_but_damage_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1,\"model\":\"m\",\"x\":1}\n{\"step\":2,\"model\":\"m\",\"x\"").unwrap();
        let records = read_metrics(&path).unwrap();
        assert_eq!(records, vec![Record::new(1, "m").with("x", 1.0)]);

        std::fs::write(&path, "{\"step\":1,\"mod\n{\"step\":2,\"model\":\"m\"}\n").unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:1:"), "{err}");
    }

    #[test]
    fn resume_truncates_to_an_uninterrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        let uninterrupted = dir.path().join("a.jsonl");
        write_run(&uninterrupted, 1..=20);

        // A run that checkpoints at step 10, goes on to step 14, and is killed mid-line.
        let resumed = dir.path().join("b.jsonl");
        write_run(&resumed, 1..=14);
        let mut f = OpenOptions::new().append(true).open(&resumed).unwrap();
        f.write_all(b"{\"step\":15,\"model\":\"classi").unwrap();
        drop(f);
        // Resumed from checkpoint 10: steps 11..=20 are logged again.
        write_run(&resumed, 11..=20);

        assert_eq!(std::fs::read(&resumed).unwrap(), std::fs::read(&uninterrupted).unwrap());
        let steps: Vec<u64> = read_metrics(&resumed).unwrap().iter().map(|r| r.step).collect();
        assert_eq!(steps.len(), 40);
        assert!(steps.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn resume_drops_later_steps_even_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsJsonl::create(&path).unwrap();
        for step in [1, 2, 5, 3, 6] {
            w.log(step, "m", &[("x", step as f64)]).unwrap();
        }
        drop(w);
        let mut w = MetricsJsonl::open_resume(&path, 3).unwrap();
        w.log(4, "m", &[("x", 4.0)]).unwrap();
        let steps: Vec<u64> = read_metrics(&path).unwrap().iter().map(|r| r.step).collect();
        assert_eq!(steps, [1, 2, 3, 4]);
    }

    #[test]
    fn resume_of_a_missing_file_starts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsJsonl::open_resume(&path, 7).unwrap();
        w.log(8, "m", &[("x", 1.0)]).unwrap();
        assert_eq!(read_metrics(&path).unwrap().len(), 1);
    }
}
