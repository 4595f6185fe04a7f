//! Sharded batch scoring: `explain --shard I/N` writes `scores.I-of-N.csv` (the rows of the images at
//! positions I, I+N, I+2N, ... of the sorted input list); [`merge`] joins the N files into the
//! `scores.csv` the unsharded run writes: the same header, the rows in the same order (by file name).
//! The shard is read from the file name, so a missing, repeated or foreign shard is refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ScoresError {
    pub path: PathBuf,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> ScoresError {
    ScoresError { path: path.to_path_buf(), message: message.into() }
}

/// The file name a shard's scores go to.
pub fn shard_file_name(index: u32, of: u32) -> String {
    format!("scores.{index}-of-{of}.csv")
}

/// `(I, N)` from `scores.I-of-N.csv`.
fn parse_name(path: &Path) -> Option<(u32, u32)> {
    let name = path.file_name()?.to_str()?;
    let (i, n) = name.strip_prefix("scores.")?.strip_suffix(".csv")?.split_once("-of-")?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (i < n).then_some((i, n))
}

/// One shard's file: its header and its rows, each with the `file` field (unquoted) it sorts by.
struct ShardScores {
    header: String,
    rows: Vec<(String, String)>,
}

fn read(path: &Path) -> Result<ShardScores, ScoresError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    let mut lines = text.lines();
    let header = lines.next().filter(|h| h.starts_with("file,")).ok_or_else(|| err(path, "no scores.csv header"))?;
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
        let file = rdr
            .records()
            .next()
            .and_then(|r| r.ok())
            .and_then(|r| r.get(0).map(str::to_string))
            .ok_or_else(|| err(path, format!("line {}: not a CSV row", n + 2)))?;
        rows.push((file, line.to_string()));
    }
    Ok(ShardScores { header: header.to_string(), rows })
}

/// Merges the N shard files `paths` (any order) into `out` (written atomically through a temporary
/// sibling). Returns the number of rows. Refuses, naming the file: a name that is not
/// `scores.I-of-N.csv`, shards of different N, a repeated or missing shard, different headers, an
/// image scored by two shards.
pub fn merge(paths: &[PathBuf], out: &Path) -> Result<usize, ScoresError> {
    let first = paths.first().ok_or_else(|| err(out, "no shard scores given to merge"))?;
    let mut by_index: BTreeMap<u32, (&PathBuf, ShardScores)> = BTreeMap::new();
    let mut of = None;
    for p in paths {
        let (i, n) = parse_name(p)
            .ok_or_else(|| err(p, "not a shard's scores (expected scores.I-of-N.csv from explain --shard I/N)"))?;
        if *of.get_or_insert(n) != n {
            return Err(err(
                p,
                format!("shard {i}/{n}, but {} is of {}: different shard counts", first.display(), of.unwrap()),
            ));
        }
        let scores = read(p)?;
        if let Some((other, _)) = by_index.get(&i) {
            return Err(err(p, format!("shard {i}/{n} given twice (also {})", other.display())));
        }
        by_index.insert(i, (p, scores));
    }
    let of = of.expect("at least one shard");
    let missing: Vec<String> = (0..of).filter(|i| !by_index.contains_key(i)).map(|i| format!("{i}/{of}")).collect();
    if !missing.is_empty() {
        return Err(err(first, format!("shards missing: {}", missing.join(", "))));
    }
    let header = by_index[&0].1.header.clone();
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut seen: BTreeMap<String, &PathBuf> = BTreeMap::new();
    for (p, s) in by_index.values() {
        if s.header != header {
            return Err(err(p, format!("its header differs from that of {}", by_index[&0].0.display())));
        }
        for (file, line) in &s.rows {
            if let Some(other) = seen.insert(file.clone(), p) {
                return Err(err(p, format!("{file} is also scored in {}", other.display())));
            }
            rows.push((file.clone(), line.clone()));
        }
    }
    // The unsharded run lists images sorted by this name.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = header + "\n";
    for (_, line) in &rows {
        text += line;
        text += "\n";
    }
    write_atomic(out, text.as_bytes())?;
    Ok(rows.len())
}

/// `bytes` into `path` through a temporary sibling renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ScoresError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| err(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(path, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "file,score,top_region_x,top_region_y,top_region_w,top_region_h,top_region_score";

    fn write(dir: &Path, name: &str, rows: &[&str]) -> PathBuf {
        let p = dir.join(name);
        let mut text = format!("{HEADER}\n");
        for r in rows {
            text += &format!("{r}\n");
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn shards_merge_into_the_sorted_whole_and_bad_sets_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let s0 = write(d, "scores.0-of-2.csv", &["a.dcm,0.1,1,2,3,4,0.5", "c.png,0.3,,,,,"]);
        let s1 = write(d, "scores.1-of-2.csv", &["\"b,1.dcm\",0.2,1,2,3,4,0.6", "d/e.pgm,0.4,1,1,1,1,0.4"]);
        let out = d.join("scores.csv");
        assert_eq!(merge(&[s1.clone(), s0.clone()], &out).unwrap(), 4);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!(
                "{HEADER}\na.dcm,0.1,1,2,3,4,0.5\n\"b,1.dcm\",0.2,1,2,3,4,0.6\nc.png,0.3,,,,,\nd/e.pgm,0.4,1,1,1,1,0.4\n"
            )
        );
        let refused = |paths: &[PathBuf]| merge(paths, &d.join("x.csv")).unwrap_err().to_string();
        assert!(refused(&[s0.clone()]).contains("shards missing: 1/2"));
        assert!(refused(&[s0.clone(), s0.clone(), s1.clone()]).contains("given twice"));
        let s3 = write(d, "scores.2-of-3.csv", &[]);
        assert!(refused(&[s0.clone(), s3]).contains("different shard counts"));
        let renamed = write(d, "mine.csv", &[]);
        assert!(refused(&[renamed]).contains("expected scores.I-of-N.csv"));
        let dup = write(d, "scores.1-of-2.csv", &["a.dcm,0.1,1,2,3,4,0.5"]);
        assert!(refused(&[s0.clone(), dup]).contains("a.dcm is also scored in"));
        assert!(!d.join("x.csv").exists());
    }
}
