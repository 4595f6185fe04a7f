//! `explain`: one whole mammogram into a directory, or many (files, directories searched recursively,
//! CSVs of paths) with one model load, a folder each and `scores.csv` (or a shard of it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mammo_nn::Models;
use mammo_serve::explain::{ExplainResult, explain_image};

/// Loads the models of `run` and explains one image into `out` (see [`image_with`]).
pub fn image(
    run: &Path,
    image: &Path,
    out: &Path,
    spacing: Option<f64>,
    stride: f64,
    device: &str,
) -> Result<ExplainResult> {
    check_stride(stride)?;
    mammo_nn::alloc::keep_freed_buffers();
    let (dev, _) = mammo_nn::select_device(device, 0)?;
    let models = Models::load_on(run, &dev)?;
    image_with(&models, image, &image.display().to_string(), out, spacing, stride)
}

/// Explains `image` with loaded `models` and writes into `out` (created): `overlay.png` (for a person:
/// the highlight, the top regions outlined with their scores), `heatmap.png` (colour-mapped from 0 to
/// `map_max`), `map.png` (the raw highlight, 16-bit, 0..65535 = 0..`map_max`) and `result.json`.
/// `source` names the image in warnings.
pub fn image_with(
    models: &Models,
    image: &Path,
    source: &str,
    out: &Path,
    spacing: Option<f64>,
    stride: f64,
) -> Result<ExplainResult> {
    let m = mammo_io::read_image(image)?;
    let explained = explain_image(models, &m, source, spacing, stride)?;
    std::fs::create_dir_all(out).map_err(|e| mammo_io::IoError::io(out, e))?;
    // The three full-size pictures are drawn, PNG-encoded and written (with fsync) side by side: each
    // PNG encoder and each fsync runs on one thread, so one after another they left a core idle.
    let x = &explained;
    let (overlay, (heatmap, map)) = rayon::join(
        || mammo_io::atomic::write_bytes(&out.join("overlay.png"), &x.overlay_png()),
        || {
            rayon::join(
                || mammo_io::atomic::write_bytes(&out.join("heatmap.png"), &x.heatmap_png()),
                || mammo_io::png_io::write_png16(&out.join("map.png"), &x.map_u16()),
            )
        },
    );
    overlay?;
    heatmap?;
    map?;
    let result = explained.result;
    mammo_io::atomic::write_bytes(&out.join("result.json"), serde_json::to_string_pretty(&result)?.as_bytes())?;
    Ok(result)
}

fn check_stride(stride: f64) -> Result<()> {
    if !(stride > 0.0 && stride <= 1.0) {
        bail!("--stride {stride}: must be in (0, 1]");
    }
    Ok(())
}

/// One image to explain: its path and its name in `scores.csv` and messages.
struct Input {
    path: PathBuf,
    label: String,
}

/// Many images (or directories, or CSVs of paths) to explain.
#[derive(Clone, Debug)]
pub struct ManyRequest {
    /// A RUN directory with trained models.
    pub run: PathBuf,
    /// Image files, directories (searched recursively) and CSV files with a `path` column.
    pub images: Vec<PathBuf>,
    /// Output directory: a folder per image and `scores.csv` (or `scores.I-of-N.csv`).
    pub out: PathBuf,
    /// Pixel spacing in mm for images that carry none.
    pub spacing: Option<f64>,
    /// Tile stride as a fraction of the patch size.
    pub stride: f64,
    /// auto, cpu, cuda[:N] or wgpu[:N].
    pub device: String,
    /// Only shard I of N of the images (every N-th of the sorted list, from the I-th).
    pub shard: Option<mammo_prep::ShardSpec>,
}

/// One image explained by [`run_many`].
pub struct Explained<'a> {
    /// Its name in `scores.csv` and messages.
    pub label: &'a str,
    /// Its folder under `out`.
    pub dir: &'a Path,
    pub result: &'a ExplainResult,
}

/// What [`run_many`] did.
#[derive(Debug)]
pub struct ManySummary {
    /// Images of this run (of this shard).
    pub total: usize,
    /// Images that could not be explained (each was a warning).
    pub failed: usize,
    /// The scores file written.
    pub scores: PathBuf,
}

/// Several images: one model load, `OUT/<stem>/` per image, `OUT/scores.csv`. An image that fails is
/// one warning and no row; `on_image` hears of each one explained, in order. The caller decides
/// whether failures fail the command ([`ManySummary::failed`]).
pub fn run_many(args: &ManyRequest, on_image: &mut dyn FnMut(Explained<'_>)) -> Result<ManySummary> {
    check_stride(args.stride)?;
    let inputs = collect_inputs(&args.images, &args.out)?;
    if inputs.is_empty() {
        bail!(
            "{}: no images found (.dcm, .dicom, .png, .pgm, or DICOM files without an extension)",
            args.images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    // Folder names from the whole list, so that shards writing into one OUT never collide.
    let folders = folder_names(&inputs);
    let work: Vec<(&Input, &String)> = (inputs.iter().zip(&folders).enumerate())
        .filter(|(position, _)| args.shard.is_none_or(|s| s.holds_position(*position)))
        .map(|(_, pair)| pair)
        .collect();
    mammo_nn::alloc::keep_freed_buffers();
    let (dev, _) = mammo_nn::select_device(&args.device, 0)?;
    let models = Models::load_on(&args.run, &dev)?;

    let mut rows = vec!["file,score,top_region_x,top_region_y,top_region_w,top_region_h,top_region_score".to_string()];
    let mut failed = 0;
    for &(input, folder) in &work {
        let dir = args.out.join(folder);
        match image_with(&models, &input.path, &input.label, &dir, args.spacing, args.stride) {
            Ok(r) => {
                on_image(Explained { label: &input.label, dir: &dir, result: &r });
                let top = match r.regions.first() {
                    Some(t) => format!("{},{},{},{},{}", t.x, t.y, t.w, t.h, t.score),
                    None => ",,,,".into(),
                };
                rows.push(format!("{},{},{top}", csv_field(&input.label), r.score));
            }
            Err(e) => {
                failed += 1;
                tracing::warn!("{}: not explained: {}", input.label, crate::one_line(&e));
            }
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| mammo_io::IoError::io(&args.out, e))?;
    let csv = args.out.join(match args.shard {
        Some(s) => mammo_sweep::scores::shard_file_name(s.index, s.of),
        None => "scores.csv".into(),
    });
    mammo_io::atomic::write_bytes(&csv, (rows.join("\n") + "\n").as_bytes())?;
    Ok(ManySummary { total: work.len(), failed, scores: csv })
}

/// Whether `path` names a CSV of images rather than an image.
pub fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// The images a CSV lists in its `path` column (relative to the CSV's directory, absolute as they
/// are), labelled as written; other columns (label, patient_id, mask_path...) are not read. Several
/// rows naming one image (one per lesion, as prepare's csv layout allows) explain it once.
fn csv_inputs(table: &Path) -> Result<Vec<Input>> {
    let mut reader = csv::Reader::from_path(table).with_context(|| format!("{}: cannot read", table.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: not a CSV", table.display()))?.clone();
    let column = headers.iter().position(|h| h.trim() == "path").with_context(|| {
        format!("{}: no `path` column (a CSV of images: path[,label,...], paths relative to the CSV)", table.display())
    })?;
    let base = table.parent().unwrap_or(Path::new("."));
    let mut inputs = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", table.display(), n + 2))?;
        let rel = row.get(column).unwrap_or("").trim();
        if rel.is_empty() {
            bail!("{}: row {}: empty path", table.display(), n + 2);
        }
        let path = base.join(rel);
        if !path.is_file() {
            bail!("{}: row {}: {} is not a file", table.display(), n + 2, path.display());
        }
        inputs.push(Input { path, label: rel.to_string() });
    }
    Ok(inputs)
}

/// The images named by `paths`, sorted by label: a file as given (its label is the path as given); a
/// directory searched recursively (labels relative to it when it is the only path given, else the
/// directory's path joined with them). Hidden entries and anything inside `out` are skipped; a file
/// reached twice is explained once.
fn collect_inputs(paths: &[PathBuf], out: &Path) -> Result<Vec<Input>> {
    let out = std::fs::canonicalize(out).ok();
    let mut inputs = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("{}: cannot read", p.display()))?;
        if !meta.is_dir() {
            if is_csv(p) {
                inputs.extend(csv_inputs(p)?);
            } else {
                inputs.push(Input { path: p.clone(), label: p.display().to_string() });
            }
            continue;
        }
        let mut found = Vec::new();
        let mut visited = HashSet::new();
        walk(p, out.as_deref(), &mut visited, &mut found)?;
        for f in found {
            let rel = f.strip_prefix(p).unwrap_or(&f);
            let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let rel = rel.join("/");
            let label =
                if paths.len() == 1 { rel } else { format!("{}/{rel}", p.display().to_string().trim_end_matches('/')) };
            inputs.push(Input { path: f, label });
        }
    }
    inputs.sort_by(|a, b| a.label.cmp(&b.label).then_with(|| a.path.cmp(&b.path)));
    let mut seen = HashSet::new();
    inputs.retain(|i| seen.insert(std::fs::canonicalize(&i.path).unwrap_or_else(|_| i.path.clone())));
    Ok(inputs)
}

/// Collects the image files under `dir` into `found` (directories through symbolic links are followed
/// once each).
fn walk(dir: &Path, out: Option<&Path>, visited: &mut HashSet<PathBuf>, found: &mut Vec<PathBuf>) -> Result<()> {
    let canonical = std::fs::canonicalize(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
    if out == Some(canonical.as_path()) || !visited.insert(canonical) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot read", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else { continue }; // a dangling link
        if meta.is_dir() {
            walk(&path, out, visited, found)?;
        } else if meta.is_file() && is_image(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// An image by its extension (.dcm, .dicom, .png, .pgm, any case), or a DICOM file without an
/// extension (the DICM preamble). Other files are not images.
fn is_image(path: &Path) -> bool {
    match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()) {
        Some(e) => matches!(e.as_str(), "dcm" | "dicom" | "png" | "pgm"),
        None => {
            let mut head = [0u8; 132];
            std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok_and(|()| &head[128..] == b"DICM")
        }
    }
}

/// A folder name per input, in order: the file's stem; a stem already taken (ignoring case, for
/// case-insensitive file systems) by an earlier input gets `-2`, `-3`, ... (the first free one).
fn folder_names(inputs: &[Input]) -> Vec<String> {
    let mut taken = HashSet::new();
    inputs
        .iter()
        .map(|i| {
            let stem = i.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let stem = if stem.is_empty() || stem == "scores.csv" { "image".to_string() } else { stem };
            let mut name = stem.clone();
            let mut k = 2;
            while !taken.insert(name.to_lowercase()) {
                name = format!("{stem}-{k}");
                k += 1;
            }
            name
        })
        .collect()
}

/// A CSV field: quoted (with doubled quotes) when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_stems_made_unique_in_order() {
        let inputs: Vec<Input> = ["a/case.dcm", "b/Case.png", "b/case-2.dcm", "c/other", "d/case.pgm"]
            .iter()
            .map(|p| Input { path: PathBuf::from(p), label: p.to_string() })
            .collect();
        assert_eq!(folder_names(&inputs), ["case", "Case-2", "case-2-2", "other", "case-3"]);
    }

    #[test]
    fn directories_are_searched_for_images_by_extension_or_content() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("in");
        std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(d.join(".hidden")).unwrap();
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM");
        for (name, bytes) in [
            ("b.PNG", &b"x"[..]),
            ("a.dcm", b"x"),
            ("notes.txt", b"x"),
            ("sub/c.pgm", b"x"),
            ("sub/deeper/raw", &dicom),
            ("sub/other", b"not dicom"),
            (".hidden/h.dcm", b"x"),
        ] {
            std::fs::write(d.join(name), bytes).unwrap();
        }
        let labels = |paths: &[PathBuf], out: &Path| -> Vec<String> {
            collect_inputs(paths, out).unwrap().into_iter().map(|i| i.label).collect()
        };
        let out = tmp.path().join("out");
        assert_eq!(labels(std::slice::from_ref(&d), &out), ["a.dcm", "b.PNG", "sub/c.pgm", "sub/deeper/raw"]);
        // Several paths: labels keep the directory; a file reached twice is explained once.
        let both = labels(&[d.join("sub"), d.join("sub/c.pgm")], &out);
        let sub = d.join("sub").display().to_string();
        assert_eq!(both, [format!("{sub}/c.pgm"), format!("{sub}/deeper/raw")]);
        // The output directory inside the input is not searched.
        assert_eq!(labels(std::slice::from_ref(&d), &d.join("sub")), ["a.dcm", "b.PNG"]);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_field("plain/x.dcm"), "plain/x.dcm");
    }
}
