//! Using the exported models: load `RUN/model/`, then score patches, compute attribution maps and the
//! gradient-saliency baseline. Inputs are flat arrays of square patches at the model's patch size and
//! spacing ([`Models::info`]).

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use crate::checkpoint::weights_from_bytes;
use crate::error::{NnError, Result};
use crate::export::{MODEL_DIR, ModelInfo, weights_hash};
use crate::model::{Classifier, MapGenerator};
use crate::train::{to_tensor, to_vec};

/// Patches per forward pass: bounds memory whatever the caller passes.
const CHUNK: usize = 64;

/// The exported models of a run, ready to use.
pub struct Models {
    /// What `model.json` says: patch size, spacing, the configs, the steps.
    pub info: ModelInfo,
    /// The classifier on the autodiff device (saliency needs input gradients).
    classifier: Classifier,
    /// The same weights without autodiff, for plain scoring.
    classifier_eval: Classifier,
    generator: Option<MapGenerator>,
    device: Device,
}

impl Models {
    /// Loads `RUN/model/` onto the CPU.
    pub fn load(run_dir: &Path) -> Result<Self> {
        Self::load_on(run_dir, &Device::flex())
    }

    /// Loads `RUN/model/` onto `device`. The classifier must be there; the attribution generator is
    /// optional (maps are then unavailable).
    pub fn load_on(run_dir: &Path, device: &Device) -> Result<Self> {
        let info = ModelInfo::read(run_dir)?;
        let dir = run_dir.join(MODEL_DIR);
        let device = device.clone().autodiff();
        let entry =
            info.classifier.as_ref().ok_or_else(|| NnError::invalid(&dir, "holds no classifier (train it first)"))?;
        let mut classifier = Classifier::new(&entry.config.classifier, 0, &device);
        let path = dir.join(&entry.file);
        weights_from_bytes(&mut classifier, std::fs::read(&path).map_err(|e| NnError::io(&path, e))?, &path)?;
        let generator = match &info.attribution {
            None => None,
            Some(entry) => {
                let mut generator = MapGenerator::new(&entry.config.attribution, 0, &device.clone().inner());
                let path = dir.join(&entry.file);
                weights_from_bytes(&mut generator, std::fs::read(&path).map_err(|e| NnError::io(&path, e))?, &path)?;
                Some(generator)
            }
        };
        let classifier_eval = classifier.valid();
        Ok(Models { info, classifier, classifier_eval, generator, device })
    }

    /// Side of the patches the models take.
    pub fn patch_size(&self) -> usize {
        self.info.patch_size
    }

    /// Pixel spacing (mm) of the patches the models were trained on: inputs must be resampled to it.
    pub fn spacing_mm(&self) -> f64 {
        self.info.spacing_mm
    }

    /// Whether an attribution generator was exported.
    pub fn has_attribution(&self) -> bool {
        self.generator.is_some()
    }

    fn check(&self, patches: &[f32], n: usize) -> Result<()> {
        let s2 = self.info.patch_size * self.info.patch_size;
        if patches.len() != n * s2 {
            return Err(NnError::Data(format!(
                "{} values are not {n} patches of {}x{}",
                patches.len(),
                self.info.patch_size,
                self.info.patch_size
            )));
        }
        Ok(())
    }

    fn count(&self, patches: &[f32]) -> Result<usize> {
        let s2 = self.info.patch_size * self.info.patch_size;
        if patches.len() % s2 != 0 {
            return Err(NnError::Data(format!(
                "{} values are not a whole number of {}x{} patches",
                patches.len(),
                self.info.patch_size,
                self.info.patch_size
            )));
        }
        Ok(patches.len() / s2)
    }

    /// Runs `f` on chunks of at most [`CHUNK`] patches and concatenates the results, on one of the
    /// pool's threads ([`crate::device::on_pool`]: the kernels start there without a hand-over each).
    fn chunked(&self, patches: &[f32], mut f: impl FnMut(&[f32], usize) -> Vec<f32> + Send) -> Vec<f32> {
        let s2 = self.info.patch_size * self.info.patch_size;
        crate::device::on_pool(|| patches.chunks(CHUNK * s2).flat_map(|c| f(c, c.len() / s2)).collect())
    }

    /// P(malignant) of each of `n` patches (`n * S * S` values in [0, 1]): the sigmoid of the mean
    /// logit over the patch's eight views (four quarter turns, each with and without a mirror).
    ///
    /// Test-time augmentation with the symmetries the classifier was trained under (a mass has no
    /// preferred orientation in a patch). On the quickstart's held-out split it took the AUC from 0.956
    /// to 0.992 (seed 0) and from 0.940 to 0.957 (seed 1), for 8 forward passes: scoring a whole
    /// 10-megapixel mammogram in `explain` went from 0.4 to 0.7 s. Every consumer (evaluate, explain,
    /// serve) scores through here, so what is measured is what is served.
    pub fn predict(&self, patches: &[f32], n: usize) -> Result<Vec<f32>> {
        self.check(patches, n)?;
        let plain = self.device.clone().inner();
        let size = self.info.patch_size;
        let logits = |c: Vec<f32>, k: usize| to_vec(self.classifier_eval.forward(to_tensor(c, k, size, &plain)));
        let views = crate::augment::Geometry::all();
        Ok(self.chunked(patches, |c, k| {
            let mut sum = vec![0f32; k];
            for g in &views {
                let mut view = c.to_vec();
                for p in view.chunks_mut(size * size) {
                    g.apply(p, size);
                }
                sum.iter_mut().zip(logits(view, k)).for_each(|(a, b)| *a += b);
            }
            sum.into_iter().map(|z| sigmoid(z / views.len() as f32)).collect()
        }))
    }

    /// The attribution map m of each patch (same layout as the input; |m| is the highlight).
    pub fn attribution_maps(&self, patches: &[f32]) -> Result<Vec<f32>> {
        self.count(patches)?;
        let generator = self.generator.as_ref().ok_or_else(|| {
            NnError::invalid(&Path::new(MODEL_DIR).join("model.json"), "holds no attribution model (train it first)")
        })?;
        let plain = self.device.clone().inner();
        let size = self.info.patch_size;
        Ok(self.chunked(patches, |c, k| to_vec(generator.forward(to_tensor(c.to_vec(), k, size, &plain)))))
    }

    /// The map the attribution generator's form alone gives ([`MapGenerator::form_only`]), when it has
    /// a deletion form: the baseline that shows what training added. `None` without such a generator.
    pub fn form_only_maps(&self, patches: &[f32]) -> Result<Option<Vec<f32>>> {
        self.count(patches)?;
        let Some(generator) = self.generator.as_ref().filter(|g| g.is_deletion()) else {
            return Ok(None);
        };
        let plain = self.device.clone().inner();
        let size = self.info.patch_size;
        Ok(Some(self.chunked(patches, |c, k| {
            to_vec(generator.form_only(to_tensor(c.to_vec(), k, size, &plain)).expect("a deletion generator"))
        })))
    }

    /// |d logit / d x| of each patch: the gradient-saliency baseline (same layout as the input).
    pub fn saliency(&self, patches: &[f32]) -> Result<Vec<f32>> {
        self.count(patches)?;
        let size = self.info.patch_size;
        Ok(self.chunked(patches, |c, k| to_vec(self.classifier.saliency(to_tensor(c.to_vec(), k, size, &self.device)))))
    }

    /// [`weights_hash`] of the loaded models, by name (`classifier`, `attribution`).
    pub fn weights_hashes(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("classifier", weights_hash(&self.classifier_eval))];
        if let Some(g) = &self.generator {
            out.push(("attribution", weights_hash(g)));
        }
        out
    }
}

/// The logistic function, on the host (the mean logit is already there).
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}
