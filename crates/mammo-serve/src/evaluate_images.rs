//! Whole-image evaluation: every image of a split explained by the same code as `explain` and `serve`
//! ([`explain_image_with`]), then scored against the image's own masks (image and breast AUC, the FROC
//! of malignant-mass detection, where the highlight goes). This is the headline of `evaluate`: patch
//! metrics are a diagnostic.
//!
//! The images come from the input the DATASET was prepared from; each is checked against the hash
//! `dataset.json` recorded for it, so the figures are about the same files the model never trained on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mammo_eval::{
    FROC_FP_RATES, ImageMapAccumulator, ScoredRegion, WholeImageMetrics, WholeImageReport, box_overlaps_mask,
    breast_scores, froc, sensitivity_at,
};
use mammo_io::layouts::{self, Label};
use mammo_nn::Models;

use mammo_prep::Namer;

use crate::explain::{ExplainError, explain_image_with};

/// The names under which the whole-image maps are reported (metrics.json prefixes and report columns).
const MAPS: [(&str, &str, &str); 3] = [
    ("attribution", "image_attribution", "Attribution GAN"),
    ("saliency", "image_saliency", "Saliency baseline"),
    ("form_only", "image_form_only", "Map form only"),
];

/// What to evaluate: the images of one split of a DATASET, found in the input it was prepared from.
pub struct ImageSet {
    /// The split's images, by their name in the dataset (`index.csv`'s `source`: the path relative to
    /// the input, pseudonymised unless prepared with `--keep-paths`), each with its layout entry (masks,
    /// laterality) and patient pseudonym.
    images: BTreeMap<String, (layouts::Case, String)>,
    /// `dataset.json`'s inputs: name -> BLAKE3, to check each image is the one prepared.
    hashes: BTreeMap<String, String>,
}

impl ImageSet {
    /// Reads the layout under `root` (the input directory `prepare` read, in the namer's format) and
    /// finds the split's `images` (name in the dataset -> patient pseudonym) in it, naming each input
    /// file as `prepare` did with `namer` (the dataset's key and path mode); `hashes` are
    /// `dataset.json`'s inputs. Fails, before any image is read, when the directory is not that input
    /// or the key is not the dataset's.
    pub fn load(
        root: &Path,
        namer: &Namer,
        images: BTreeMap<String, String>,
        hashes: BTreeMap<String, String>,
    ) -> Result<Self, ImageEvalError> {
        let format = namer.format();
        let mut cases: BTreeMap<String, layouts::Case> =
            layouts::load(format, root)?.into_iter().map(|c| (namer.path(root, &c.image), c)).collect();
        let missing: Vec<&String> = images.keys().filter(|s| !cases.contains_key(*s)).collect();
        // Not one match under pseudonymised names: the layout is there, so the key is the likely cause.
        if !namer.keeps_paths() && !images.is_empty() && missing.len() == images.len() {
            return Err(ImageEvalError::Input {
                path: root.to_path_buf(),
                message: format!(
                    "no input matches the dataset's pseudonymised paths: is this the key the dataset was \
                     prepared with? (key {})",
                    namer.key_id()
                ),
            });
        }
        if let Some(first) = missing.first() {
            return Err(ImageEvalError::Input {
                path: root.join(first),
                message: format!(
                    "not found in the {} layout under the images directory ({} of the split's {} images \
                     missing); pass the directory the dataset was prepared from",
                    format.name(),
                    missing.len(),
                    images.len()
                ),
            });
        }
        let images = images.into_iter().map(|(s, p)| (s.clone(), (cases.remove(&s).expect("checked"), p))).collect();
        Ok(ImageSet { images, hashes })
    }

    /// How many images the split has.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the split has no image.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// One evaluated image, for `eval/images.csv`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageRow {
    pub source: String,
    pub label: Label,
    pub score: f64,
    /// Whether the top region overlaps a malignant mass (empty for images without one).
    pub top_region_hits: Option<bool>,
}

/// The result: the report section (metrics, curves, map metrics) and one row per image.
pub struct ImageEvaluation {
    pub report: WholeImageReport,
    pub rows: Vec<ImageRow>,
}

impl ImageEvaluation {
    /// Adds every whole-image key to `metrics.json`'s flat object.
    pub fn flatten_into(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        self.report.metrics.flatten_into(out);
        for (name, m) in &self.report.maps {
            if let Some((_, prefix, _)) = MAPS.iter().find(|(_, _, label)| label == name) {
                m.flatten_into(prefix, out);
            }
        }
    }
}

/// Why whole-image evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageEvalError {
    #[error(transparent)]
    Io(#[from] mammo_io::IoError),
    #[error(transparent)]
    Prep(#[from] mammo_prep::PrepError),
    #[error(transparent)]
    Explain(#[from] ExplainError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
}

/// Explains and scores every image of `set`, tiles every `stride` of the patch size, bootstrap from
/// `seed`. `progress(done, total)` is called after each image.
pub fn evaluate_images(
    models: &Models,
    set: &ImageSet,
    stride: f64,
    seed: u64,
    progress: &dyn Fn(usize, usize),
) -> Result<ImageEvaluation, ImageEvalError> {
    let mut image_scores = Vec::new();
    let mut breasts = Vec::new();
    let mut regions_per_image = Vec::new();
    let mut n_masses = 0usize;
    let mut accs: BTreeMap<&str, ImageMapAccumulator> = BTreeMap::new();
    let mut rows = Vec::new();
    let (mut n_malignant, mut n_normal) = (0, 0);
    for (done, (source, (case, patient))) in set.images.iter().enumerate() {
        check_hash(&case.image, set.hashes.get(source))?;
        let m = mammo_io::read_image(&case.image)?;
        let (w, h) = (m.width, m.height);
        let spacing = case.spacing_mm;
        // Map metrics are taken on malignant and normal images only: a benign image needs no baselines.
        let baselines = case.label != Label::Benign;
        // Messages name the file on disk, as the hash check and the decoder do: the user's own input on
        // the user's terminal; only the dataset's rows carry the pseudonymised name.
        let e = explain_image_with(models, &m, &case.image.display().to_string(), spacing, stride, baselines)?;
        drop(m);

        // The malignant masses (each its own FROC target), their union and their feature masks.
        let mut lesion = vec![0u8; w * h];
        let mut features = vec![0u8; w * h];
        let mut masses: Vec<(usize, Vec<u8>)> = Vec::new();
        for l in case.lesions.iter().filter(|l| l.label == Label::Malignant) {
            let mask = layouts::rasterize(&l.mask, w, h)?.data;
            if mask.iter().all(|&v| v == 0) {
                continue;
            }
            lesion.iter_mut().zip(&mask).for_each(|(a, &b)| *a |= u8::from(b != 0));
            if let Some(f) = &l.feature_mask {
                let f = layouts::rasterize(f, w, h)?.data;
                features.iter_mut().zip(&f).for_each(|(a, &b)| *a |= u8::from(b != 0));
            }
            masses.push((n_masses, mask));
            n_masses += 1;
        }
        let regions: Vec<ScoredRegion> = e
            .result
            .regions
            .iter()
            .map(|r| ScoredRegion {
                score: r.score,
                masses: masses
                    .iter()
                    .filter(|(_, mask)| box_overlaps_mask(mask, w, [r.x, r.y, r.w, r.h]))
                    .map(|(id, _)| *id)
                    .collect(),
            })
            .collect();
        let malignant = case.label == Label::Malignant;
        n_malignant += usize::from(malignant);
        n_normal += usize::from(case.label == Label::Normal);
        let mut maps: Vec<(&str, &[f32])> = Vec::new();
        if models.has_attribution() {
            maps.push(("attribution", &e.heat));
        }
        maps.extend(e.baselines.iter().map(|(name, m)| (*name, m.as_slice())));
        for (name, map) in maps {
            let acc = accs.entry(name).or_default();
            if !masses.is_empty() {
                acc.add_malignant(map, &lesion, &features, &e.breast);
            } else if case.label == Label::Normal {
                acc.add_normal(map, &e.breast);
            }
        }
        rows.push(ImageRow {
            source: source.clone(),
            label: case.label,
            score: e.result.score,
            top_region_hits: (!masses.is_empty()).then(|| regions.first().is_some_and(|r| !r.masses.is_empty())),
        });
        let laterality = case.laterality.map_or("?", |l| match l {
            mammo_io::Laterality::Left => "L",
            mammo_io::Laterality::Right => "R",
        });
        breasts.push((format!("{patient}/{laterality}"), e.result.score, malignant));
        image_scores.push((e.result.score, malignant));
        regions_per_image.push(regions);
        progress(done + 1, set.images.len());
    }

    let (scores, labels): (Vec<f64>, Vec<bool>) = image_scores.into_iter().unzip();
    let breast = breast_scores(breasts.iter().map(|(k, s, m)| (k.as_str(), *s, *m)));
    let (breast_s, breast_l): (Vec<f64>, Vec<bool>) = breast.iter().copied().unzip();
    let reps = mammo_eval::DEFAULT_BOOTSTRAP_REPLICATES;
    let ci =
        |s: &[f64], l: &[bool]| mammo_eval::bootstrap_auc_ci(s, l, reps, seed).map_or([f64::NAN; 2], |(a, b)| [a, b]);
    let curve = froc(&regions_per_image, n_masses);
    let metrics = WholeImageMetrics {
        image_auc: mammo_eval::roc_auc(&scores, &labels).unwrap_or(f64::NAN),
        image_auc_ci95: ci(&scores, &labels),
        breast_auc: mammo_eval::roc_auc(&breast_s, &breast_l).unwrap_or(f64::NAN),
        breast_auc_ci95: ci(&breast_s, &breast_l),
        froc: FROC_FP_RATES.iter().map(|&fp| (fp, sensitivity_at(&curve, fp))).collect(),
        n_images: scores.len(),
        n_malignant,
        n_normal,
        n_breasts: breast.len(),
        n_masses,
    };
    let maps = MAPS.iter().filter_map(|(name, _, label)| Some((label.to_string(), accs.get(name)?.finish()))).collect();
    Ok(ImageEvaluation {
        report: WholeImageReport {
            metrics,
            roc_curve: mammo_eval::roc_curve(&scores, &labels),
            froc_curve: curve,
            maps,
        },
        rows,
    })
}

/// Refuses an image whose bytes are not those the dataset was prepared from.
fn check_hash(path: &Path, expected: Option<&String>) -> Result<(), ImageEvalError> {
    let refuse = |message: &str| ImageEvalError::Input { path: path.to_path_buf(), message: message.into() };
    let expected = expected.ok_or_else(|| refuse("is not among the inputs dataset.json records"))?;
    let (_, actual) = mammo_prep::dataset::hash_file(path)?;
    if &actual != expected {
        return Err(refuse("differs from the file the dataset was prepared from (BLAKE3 mismatch)"));
    }
    Ok(())
}
