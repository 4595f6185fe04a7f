//! `evaluate`: a run measured on a DATASET (metrics.json, report.html), patches and, given the input
//! images, whole mammograms.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mammo_eval::{
    ClassifierMetrics, GalleryRow, GallerySection, MapMetrics, MapMetricsAccumulator, Report, STANDARD_COLUMNS,
};
use mammo_io::layouts::Label;
use mammo_nn::data::{MASK_BREAST, MASK_LESION, MASK_MALIGNANCY};
use mammo_nn::{Models, PatchData};
use mammo_prep::split::Split;
use mammo_track::RunDir;

/// Where `train` records which DATASET it used, so `evaluate` can default to it.
pub const DATA_REF: &str = "data.json";

/// What to evaluate, on what, how.
#[derive(Clone, Debug)]
pub struct EvaluateRequest {
    /// A RUN directory with trained models.
    pub run: PathBuf,
    /// The DATASET (`None`: the one the run was trained on).
    pub data: Option<PathBuf>,
    /// The input directory the DATASET was prepared from: with it, whole images are explained and
    /// scored too (image and breast AUC, FROC, where the highlight goes).
    pub images: Option<PathBuf>,
    /// The pseudonym key's file, needed with `images` (`None`: the default place).
    pub key_file: Option<PathBuf>,
    /// The split to report on (the threshold is always chosen on val).
    pub split: Split,
    /// auto, cpu, cuda[:N] or wgpu[:N].
    pub device: String,
    /// Seed of the bootstrap.
    pub seed: u64,
}

/// Flat metrics, `metric.name` -> number (or string for `split` and the dataset's hash).
pub type Metrics = serde_json::Map<String, serde_json::Value>;

/// Evaluates a run: writes `RUN/eval/metrics.json`, `report.html` and images, records the numbers in
/// the run's manifest; returns the flat metrics.
pub fn run(r: &EvaluateRequest) -> Result<Metrics> {
    evaluate(&r.run, r.data.as_deref(), r.images.as_deref(), r.key_file.as_deref(), r.split, &r.device, r.seed)
}

/// The DATASET must be cut at the models' patch size and pixel spacing.
fn check_geometry(data: &Path, info: &mammo_prep::DatasetInfo, patch: usize, spacing_mm: f64) -> Result<()> {
    if info.patch_size != patch {
        bail!("{}: patches are {} px but the models take {patch} px", data.display(), info.patch_size);
    }
    // Spacings are written as decimals in JSON: equal up to rounding, not bit for bit.
    if (info.spacing_mm - spacing_mm).abs() > 1e-6 * spacing_mm.abs().max(1e-3) {
        bail!(
            "{}: prepared at {} mm per pixel but the models were trained at {spacing_mm} mm (prepare it with \
             --spacing {spacing_mm})",
            data.display(),
            info.spacing_mm
        );
    }
    Ok(())
}

/// The DATASET recorded by `train`.
pub fn recorded_data(run: &Path) -> Result<PathBuf> {
    let p = run.join(DATA_REF);
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&p)
            .with_context(|| format!("{}: no record of the training DATASET; pass --data", p.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", p.display()))?;
    Ok(PathBuf::from(v["path"].as_str().with_context(|| format!("{}: no \"path\"", p.display()))?))
}

fn evaluate(
    run: &Path,
    data: Option<&Path>,
    images: Option<&Path>,
    key_file: Option<&Path>,
    split: Split,
    device: &str,
    seed: u64,
) -> Result<Metrics> {
    let data_dir = match data {
        Some(d) => d.to_path_buf(),
        None => recorded_data(run)?,
    };
    // A batch job of many model calls on tiles and patches: the same tensor buffers every call, as in
    // training (a quickstart's evaluation, standalone: 79 -> 66 s side by side, peak memory unchanged).
    mammo_nn::alloc::keep_freed_buffers();
    let (device, _) = mammo_nn::select_device(device, 0)?;
    let models = Models::load_on(run, &device)?;
    let store = mammo_prep::PatchStore::open(&data_dir)?;
    // Metrics on edited patches, or on patches of another scale than the models learnt, would look
    // like any others: refuse both, as train and reproduce do.
    mammo_prep::PatchStore::verify(&data_dir, &store.info)?;
    check_geometry(&data_dir, &store.info, models.patch_size(), models.spacing_mm())?;
    let image_set = images.map(|root| whole_image_set(&store, root, key_file, &data_dir, split)).transpose()?;
    let patches = PatchData::from_store(store)?;
    let s2 = patches.size * patches.size;
    let gather = |idx: &[usize]| -> Vec<f32> { idx.iter().flat_map(|&i| patches.patch(i).to_vec()).collect() };

    // Classifier: threshold on val, metrics on the chosen split (benign vs malignant masses).
    let masses = [Label::Benign, Label::Malignant];
    let score = |idx: &[usize]| -> Result<(Vec<f64>, Vec<bool>)> {
        let p = models.predict(&gather(idx), idx.len())?;
        Ok((
            p.iter().map(|&v| v as f64).collect(),
            idx.iter().map(|&i| patches.labels[i] == Label::Malignant).collect(),
        ))
    };
    let val = patches.indices(Split::Val, &masses);
    let test = patches.indices(split, &masses);
    if test.is_empty() {
        bail!("{}: the {} split has no benign or malignant patch", data_dir.display(), split.as_str());
    }
    let (vs, vl) = score(&val)?;
    let threshold = mammo_eval::choose_threshold(&vs, &vl);
    let (ts, tl) = score(&test)?;
    let classifier = ClassifierMetrics::compute(&ts, &tl, threshold, mammo_eval::DEFAULT_BOOTSTRAP_REPLICATES, seed);
    if classifier.is_none() {
        tracing::warn!("the {} split lacks benign or malignant patches: no AUC", split.as_str());
    }
    let roc = mammo_eval::roc_curve(&ts, &tl);

    // Maps on the malignant patches of the split, against the malignancy-feature mask where the data has
    // one, else the lesion mask; PxAP inside the breast.
    let malignant = patches.indices(split, &[Label::Malignant]);
    let x = gather(&malignant);
    let p_before = models.predict(&x, malignant.len())?;
    let saliency = models.saliency(&x)?;
    let gan = if models.has_attribution() { Some(models.attribution_maps(&x)?) } else { None };
    // What the map's form alone gives (a deletion map with its gate on everywhere): the report shows
    // it beside the trained map, so what the GAN's training added is visible, not assumed.
    let form_only = models.form_only_maps(&x)?;
    let p_after = match &gan {
        Some(m) => Some(models.predict(&x.iter().zip(m).map(|(a, b)| a + b).collect::<Vec<_>>(), malignant.len())?),
        None => None,
    };
    // Per malignant patch: the target of PxAP, NCC and energy (the malignancy features where the data
    // has them, else the lesion), the lesion itself (what the pointing game aims at), the breast.
    let targets: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = malignant
        .iter()
        .map(|&i| {
            let m = patches.mask(i);
            let has_features = m.iter().any(|v| v & MASK_MALIGNANCY != 0);
            let bit = if has_features { MASK_MALIGNANCY } else { MASK_LESION };
            let plane = |bit: u8| m.iter().map(|v| (v & bit != 0) as u8).collect::<Vec<u8>>();
            (plane(bit), plane(MASK_LESION), plane(MASK_BREAST))
        })
        .collect();
    let map_metrics = |maps: &[f32], with_probs: bool| -> MapMetrics {
        let mut acc = MapMetricsAccumulator::new();
        for (k, (mask, lesion, valid)) in targets.iter().enumerate() {
            let abs: Vec<f32> = maps[k * s2..(k + 1) * s2].iter().map(|v| v.abs()).collect();
            let probs = match (&p_after, with_probs) {
                (Some(pa), true) => Some((p_before[k] as f64, pa[k] as f64)),
                _ => None,
            };
            acc.add_patch(&abs, mask, lesion, valid, probs);
        }
        acc.finish()
    };
    let saliency_metrics = (!malignant.is_empty()).then(|| map_metrics(&saliency, false));
    let attribution_metrics = gan.as_ref().filter(|_| !malignant.is_empty()).map(|m| map_metrics(m, true));

    let form_only_metrics = form_only.as_ref().filter(|_| !malignant.is_empty()).map(|m| map_metrics(m, false));
    let mut flat = mammo_eval::flatten_metrics(
        classifier.as_ref(),
        attribution_metrics.as_ref(),
        saliency_metrics.as_ref(),
        form_only_metrics.as_ref(),
    );
    // Whole images: the headline, through the same code as explain and serve.
    let whole = match &image_set {
        Some(set) => {
            tracing::info!("explaining the {} whole images of the {} split", set.len(), split.as_str());
            Some(mammo_serve::evaluate_images(&models, set, EXPLAIN_STRIDE, seed, &|_, _| {})?)
        }
        None => {
            tracing::info!("no --images: whole-image figures (image AUC, FROC, map placement) not computed");
            None
        }
    };
    if let Some(w) = &whole {
        w.flatten_into(&mut flat);
    }
    flat.insert("split".into(), split.as_str().into());
    flat.insert("dataset.content_hash".into(), patches.content_hash.clone().unwrap_or_default().into());

    // The report: `eval/` built aside, synced and renamed over the previous one whole, so that its
    // `metrics.json` (which marks a sweep's trial finished) never comes with another evaluation's files.
    let eval_dir = run.join(RunDir::EVAL);
    let charts = training_curves(run)?;
    mammo_io::partial::build_dir(&eval_dir, mammo_io::partial::Existing::Replace, |eval_dir| -> Result<()> {
        std::fs::create_dir_all(eval_dir.join("images")).map_err(|e| mammo_io::IoError::io(eval_dir, e))?;
        let gallery = match &gan {
            Some(m) => gallery(
                &malignant,
                &x,
                m,
                &p_before,
                p_after.as_deref().unwrap_or(&[]),
                &targets,
                patches.size,
                eval_dir,
            )?,
            None => Vec::new(),
        };
        if let Some(w) = &whole {
            let mut csv = csv::Writer::from_writer(Vec::new());
            for row in &w.rows {
                csv.serialize(row)?;
            }
            mammo_io::atomic::write_bytes(&eval_dir.join("images.csv"), &csv.into_inner()?)?;
        }
        let report = Report {
            whole_image: whole.map(|w| w.report),
            title: format!(
                "mammogan evaluation — {}",
                run.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ),
            details: vec![
                ("split".into(), split.as_str().into()),
                ("patches (benign + malignant)".into(), test.len().to_string()),
                ("threshold (chosen on val)".into(), format!("{threshold:.4}")),
                ("dataset content hash".into(), patches.content_hash.clone().unwrap_or_default()),
            ],
            classifier,
            roc_curve: roc,
            attribution: attribution_metrics,
            saliency: saliency_metrics,
            form_only: form_only_metrics,
            charts,
            gallery,
        };
        mammo_io::atomic::write_bytes(&eval_dir.join("report.html"), mammo_eval::render_report(&report).as_bytes())?;
        mammo_io::atomic::write_bytes(&eval_dir.join("metrics.json"), serde_json::to_string_pretty(&flat)?.as_bytes())?;
        Ok(())
    })?;
    // The manifest carries them too, so `diff` shows how two runs' held-out numbers differ.
    let numeric = flat.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect();
    mammo_run::Manifest::record_eval(run, split.as_str(), &numeric)?;
    Ok(flat)
}

/// The images of `split` (from the DATASET's index) found under `root`, the input the DATASET was
/// prepared from, with the hashes it recorded for them. Their recorded paths are pseudonymised unless
/// the DATASET was prepared with `--keep-paths` (or before pseudonymised paths, when `params` has no
/// `keep_paths`): then each input file's name is recomputed with the key to match.
fn whole_image_set(
    store: &mammo_prep::PatchStore,
    root: &Path,
    key_file: Option<&Path>,
    data_dir: &Path,
    split: Split,
) -> Result<mammo_serve::ImageSet> {
    let format = mammo_io::layouts::Format::parse(&store.info.source_format)
        .with_context(|| format!("{}: unknown source format '{}'", data_dir.display(), store.info.source_format))?;
    let keep_paths = store.info.params.get("keep_paths").is_none_or(|v| v.as_bool() == Some(true));
    let key = match keep_paths {
        true => mammo_prep::PseudonymKey::ephemeral(),
        false => crate::key::for_lookup(key_file)?,
    };
    let namer = mammo_prep::Namer::new(key, format, keep_paths);
    let images =
        store.rows.iter().filter(|r| r.split == split).map(|r| (r.source.clone(), r.patient_id.clone())).collect();
    let hashes = store.info.inputs.iter().map(|f| (f.path.clone(), f.blake3.clone())).collect();
    Ok(mammo_serve::ImageSet::load(root, &namer, images, hashes)?)
}

/// The tile stride of whole-image evaluation, as a fraction of the patch: explain's default.
const EXPLAIN_STRIDE: f64 = 0.5;

/// Loss and accuracy curves from `metrics.jsonl`, one chart per model.
fn training_curves(run: &Path) -> Result<Vec<mammo_eval::Chart>> {
    let path = run.join(RunDir::METRICS);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut series: std::collections::BTreeMap<String, Vec<(u64, f64)>> = Default::default();
    let mut order = Vec::new();
    for r in mammo_track::read_metrics(&path)? {
        for (name, v) in &r.scalars {
            let key = format!("{}/{name}", r.model);
            if !series.contains_key(&key) {
                order.push(key.clone());
            }
            series.entry(key).or_default().push((r.step, *v));
        }
    }
    let series = order
        .into_iter()
        .map(|name| {
            let points = series.remove(&name).unwrap_or_default();
            mammo_eval::Series { name, points }
        })
        .collect();
    Ok(mammo_eval::Chart::group_by_family(series))
}

/// The best and worst malignant patches by the NCC of their GAN map, as gallery rows (and PNG files).
#[allow(clippy::too_many_arguments)]
fn gallery(
    ids: &[usize],
    x: &[f32],
    maps: &[f32],
    p_before: &[f32],
    p_after: &[f32],
    targets: &[(Vec<u8>, Vec<u8>, Vec<u8>)],
    size: usize,
    eval_dir: &Path,
) -> Result<Vec<GallerySection>> {
    let s2 = size * size;
    let abs = |k: usize| -> Vec<f32> { maps[k * s2..(k + 1) * s2].iter().map(|v| v.abs()).collect() };
    let mut scored: Vec<(usize, f64)> =
        (0..ids.len()).map(|k| (k, mammo_eval::ncc(&abs(k), &targets[k].0).unwrap_or(f64::NEG_INFINITY))).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let row = |k: usize, ncc: f64| -> Result<GalleryRow> {
        let xk = &x[k * s2..(k + 1) * s2];
        let mk = abs(k);
        let hi = mk.iter().cloned().fold(1e-6f32, f32::max);
        let y: Vec<f32> = xk.iter().zip(&maps[k * s2..(k + 1) * s2]).map(|(a, b)| a + b).collect();
        let images = vec![
            mammo_eval::gray_png(xk, size, size, 0.0, 1.0),
            mammo_eval::colormap_png(&mk, size, size, 0.0, hi),
            mammo_eval::gray_png(&y, size, size, 0.0, 1.0),
            mammo_eval::heat_overlay_png(xk, &mk, size, size),
        ];
        for (name, png) in ["x", "map", "x_plus_m", "overlay"].iter().zip(&images) {
            mammo_io::atomic::write_bytes(
                &eval_dir.join("images").join(format!("patch-{:06}-{name}.png", ids[k])),
                png,
            )?;
        }
        Ok(GalleryRow {
            patch_id: ids[k].to_string(),
            p_before: p_before.get(k).map(|&v| v as f64),
            p_after: p_after.get(k).map(|&v| v as f64),
            ncc: ncc.is_finite().then_some(ncc),
            note: String::new(),
            images,
        })
    };
    let n = scored.len().min(6);
    let columns: Vec<String> = STANDARD_COLUMNS.iter().map(|s| s.to_string()).collect();
    let best = scored.iter().take(n).map(|&(k, c)| row(k, c)).collect::<Result<Vec<_>>>()?;
    let worst = scored.iter().rev().take(n).map(|&(k, c)| row(k, c)).collect::<Result<Vec<_>>>()?;
    Ok(vec![
        GallerySection {
            title: "Best (highest NCC with the malignancy-feature mask)".into(),
            description: "Malignant test patches whose map agrees most with the ground truth.".into(),
            columns: columns.clone(),
            rows: best,
        },
        GallerySection {
            title: "Worst (lowest NCC)".into(),
            description: "Where the map misses: read these before trusting the best ones.".into(),
            columns,
            rows: worst,
        },
    ])
}
