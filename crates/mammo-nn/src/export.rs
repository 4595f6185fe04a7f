//! The trained models as serve and explain load them: `RUN/model/`.
//!
//! ```text
//! RUN/model/
//!   classifier.safetensors    the classifier's weights
//!   attribution.safetensors   the map generator's weights (the critic is only needed to train)
//!   model.json                patch size, spacing, each model's architecture settings, steps, weight hash
//! ```
//! Every file is written atomically; each training call updates its own entry of `model.json`, so
//! the two models can be trained (or re-trained) separately.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::ModelKind;
use crate::config::TrainConfig;
use crate::data::PatchData;
use crate::error::{NnError, Result};

/// The directory under RUN with the exported models.
pub const MODEL_DIR: &str = "model";
/// The description of the exported models.
pub const MODEL_JSON: &str = "model.json";
/// The classifier's weights file.
pub const CLASSIFIER_FILE: &str = "classifier.safetensors";
/// The map generator's weights file.
pub const ATTRIBUTION_FILE: &str = "attribution.safetensors";
/// Bumped on any incompatible change to `RUN/model/`.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// [`MODEL_FORMAT_VERSION`].
    pub format_version: u32,
    /// Side of the square patches the models take, in pixels.
    pub patch_size: usize,
    /// Pixel spacing of those patches in mm: inputs must be resampled to it.
    pub spacing_mm: f64,
    /// Content hash of the DATASET the models were trained on, if known.
    pub dataset_hash: Option<String>,
    /// The classifier, once trained.
    pub classifier: Option<ExportedModel>,
    /// The attribution map generator, once trained.
    pub attribution: Option<ExportedModel>,
}

/// One exported model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedModel {
    /// Its weights file in `RUN/model/`.
    pub file: String,
    /// Training steps done.
    pub steps: u64,
    /// [`weights_hash`] of the weights.
    pub weights_hash: String,
    /// The full training configuration it was trained with (its section gives the architecture).
    pub config: TrainConfig,
}

impl ModelInfo {
    /// Reads `RUN/model/model.json`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = model_json_path(run_dir);
        let text = std::fs::read(&path).map_err(|e| NnError::io(&path, e))?;
        let info: ModelInfo = serde_json::from_slice(&text)
            .map_err(|e| NnError::invalid(&path, format!("not a valid model.json: {e}")))?;
        if info.format_version != MODEL_FORMAT_VERSION {
            return Err(NnError::invalid(
                &path,
                format!("model format {} (this build reads {MODEL_FORMAT_VERSION})", info.format_version),
            ));
        }
        Ok(info)
    }
}

/// `RUN/model/model.json`.
pub fn model_json_path(run_dir: &Path) -> PathBuf {
    run_dir.join(MODEL_DIR).join(MODEL_JSON)
}

/// Writes a model's weights into `RUN/model/` and records it in `model.json`; returns its weight hash.
pub(crate) fn export<M: Module>(
    run_dir: &Path,
    slot: ModelKind,
    module: &M,
    steps: u64,
    config: &TrainConfig,
    data: &PatchData,
) -> Result<String> {
    let dir = run_dir.join(MODEL_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| NnError::io(&dir, e))?;
    let file = match slot {
        ModelKind::Classifier => CLASSIFIER_FILE,
        ModelKind::Attribution => ATTRIBUTION_FILE,
    };
    let bytes = crate::checkpoint::weights_to_bytes(module)?;
    mammo_io::atomic::write_bytes(&dir.join(file), &bytes)?;
    let hash = weights_hash(module);
    let path = model_json_path(run_dir);
    let mut info = if path.exists() {
        ModelInfo::read(run_dir)?
    } else {
        ModelInfo {
            format_version: MODEL_FORMAT_VERSION,
            patch_size: data.size,
            spacing_mm: data.spacing_mm,
            dataset_hash: data.content_hash.clone(),
            classifier: None,
            attribution: None,
        }
    };
    if info.patch_size != data.size || info.spacing_mm != data.spacing_mm {
        // The other model of this run expects other patches: the old entry would be a lie.
        info.classifier = None;
        info.attribution = None;
        info.patch_size = data.size;
        info.spacing_mm = data.spacing_mm;
    }
    info.dataset_hash = data.content_hash.clone();
    let entry = ExportedModel { file: file.into(), steps, weights_hash: hash.clone(), config: config.clone() };
    match slot {
        ModelKind::Classifier => info.classifier = Some(entry),
        ModelKind::Attribution => info.attribution = Some(entry),
    }
    let json = serde_json::to_vec_pretty(&info).expect("model info serializes");
    mammo_io::atomic::write_bytes(&path, &json)?;
    Ok(hash)
}

/// BLAKE3 (hex) of a module's parameters in module order: each parameter's path, shape and
/// little-endian f32 values. Independent of file formats and metadata, so equal hashes mean equal
/// weights. Non-trainable state saved with the weights (the critic's singular vectors) is included.
pub fn weights_hash<M: Module>(module: &M) -> String {
    struct Hasher {
        hash: blake3::Hasher,
        path: Vec<String>,
    }
    impl ModuleVisitor for Hasher {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let name = self.path.join(".");
            let tensor = param.val();
            self.hash.update(&(name.len() as u64).to_le_bytes());
            self.hash.update(name.as_bytes());
            for d in tensor.dims() {
                self.hash.update(&(d as u64).to_le_bytes());
            }
            for v in tensor.into_data().try_into_vec::<f32>().expect("float parameters hold f32") {
                self.hash.update(&v.to_le_bytes());
            }
        }
    }
    let mut h = Hasher { hash: blake3::Hasher::new(), path: Vec::new() };
    module.visit(&mut h);
    h.hash.finalize().to_hex().to_string()
}

/// The weight hashes of the exported models (`classifier`, `attribution`), for the run manifest.
pub fn exported_hashes(run_dir: &Path) -> Result<BTreeMap<String, String>> {
    let info = ModelInfo::read(run_dir)?;
    let mut out = BTreeMap::new();
    if let Some(c) = info.classifier {
        out.insert("classifier".to_string(), c.weights_hash);
    }
    if let Some(a) = info.attribution {
        out.insert("attribution".to_string(), a.weights_hash);
    }
    Ok(out)
}
