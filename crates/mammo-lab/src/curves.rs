//! Training curves from a run's `metrics.jsonl`, read from a given record on, so a page that polls gets
//! only what training appended since (the live curve).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Serialize;

/// Records answered in one request at most; the page asks again from where this stopped.
pub const MAX_RECORDS: usize = 20_000;
/// The longest line accepted; a longer one ends the reading (it is no record training writes).
const MAX_LINE: usize = 64 * 1024;

/// One point of one curve: `model.name` at `step`.
#[derive(Debug, PartialEq, Serialize)]
pub struct Point {
    pub series: String,
    pub step: u64,
    pub value: f64,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Curves {
    /// Complete records read so far (give this as `from` next time).
    pub next: usize,
    pub points: Vec<Point>,
}

/// The points of the complete records of `metrics.jsonl` from record `from` on. A last line without its
/// newline is a record being written and is left for the next call; a line that is not a record is
/// skipped, still counted.
pub fn read(run_dir: &Path, from: usize) -> Curves {
    let mut curves = Curves { next: from, points: Vec::new() };
    let Ok(f) = std::fs::File::open(run_dir.join("metrics.jsonl")) else { return curves };
    let mut reader = BufReader::new(f);
    let mut line = Vec::new();
    let mut index = 0usize;
    loop {
        line.clear();
        let n = match reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        if index >= from {
            if curves.next - from >= MAX_RECORDS {
                break;
            }
            points_of(&line, &mut curves.points);
            curves.next = index + 1;
        }
        index += 1;
    }
    curves
}

/// `{"step": S, "model": M, "k": v, ...}` -> a point `M.k` per finite number.
fn points_of(line: &[u8], out: &mut Vec<Point>) {
    let Ok(serde_json::Value::Object(rec)) = serde_json::from_slice::<serde_json::Value>(line) else { return };
    let Some(step) = rec.get("step").and_then(|s| s.as_u64()) else { return };
    let model = rec.get("model").and_then(|m| m.as_str()).unwrap_or("run");
    for (k, v) in &rec {
        if k == "step" || k == "model" {
            continue;
        }
        if let Some(value) = v.as_f64().filter(|v| v.is_finite()) {
            out.push(Point { series: format!("{model}.{k}"), step, value });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_complete_records_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(
            &p,
            "{\"step\":1,\"model\":\"classifier\",\"loss\":0.5,\"lr\":0.1}\nnot json\n{\"step\":2,\"model\":\"classifier\",\"loss\":0.4}\n{\"step\":3,",
        )
        .unwrap();
        let c = read(dir.path(), 0);
        assert_eq!(c.next, 3, "the unfinished last line is left for later");
        assert_eq!(c.points.len(), 3);
        assert_eq!(c.points[0], Point { series: "classifier.loss".into(), step: 1, value: 0.5 });
        let later = read(dir.path(), 2);
        assert_eq!((later.next, later.points.len()), (3, 1));
        assert_eq!(later.points[0].step, 2);
        // Training appends: the next poll gets only the new record.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"\"model\":\"attribution\",\"map_l1\":0.2}\n").unwrap();
        let more = read(dir.path(), 3);
        assert_eq!((more.next, more.points.len()), (4, 1));
        assert_eq!(more.points[0].series, "attribution.map_l1");
        assert_eq!(read(&dir.path().join("none"), 0), Curves { next: 0, points: vec![] });
    }
}
