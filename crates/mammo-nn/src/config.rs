//! The training configuration: every hyperparameter, with a documented default, read from and written to
//! TOML (`RUN/config.toml` holds the fully resolved one).
//!
//! The defaults are a quickstart on the phantom with 2 CPU cores: tiny models and few steps. Real data
//! wants more channels and many more steps (`--set train.steps=20000` and friends).
//!
//! Every key can be overridden by its dotted name ([`TrainConfig::set`]); a value is checked against the
//! type of the key it replaces, and every error names the key (and the file, when there is one).

use std::path::{Path, PathBuf};

use mammo_io::layouts::Label;
use mammo_prep::split::Split;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// Why a configuration could not be read, changed or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key does not exist (`key` is the full dotted name).
    #[error("{}unknown key `{key}`{hint}", file_prefix(.file))]
    UnknownKey {
        /// The dotted key, e.g. `train.stpes`.
        key: String,
        /// The file it came from, if any.
        file: Option<PathBuf>,
        /// A list of the keys that do exist there.
        hint: String,
    },
    /// A key exists but the value does not fit it.
    #[error("{}`{key}`: {message}", file_prefix(.file))]
    Invalid {
        /// The dotted key.
        key: String,
        /// The file it came from, if any.
        file: Option<PathBuf>,
        /// What is wrong with the value.
        message: String,
    },
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default()
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.to_string(), file: None, message: message.into() }
    }

    fn in_file(self, path: &Path) -> Self {
        match self {
            ConfigError::UnknownKey { key, hint, .. } => {
                ConfigError::UnknownKey { key, file: Some(path.to_path_buf()), hint }
            }
            ConfigError::Invalid { key, message, .. } => {
                ConfigError::Invalid { key, file: Some(path.to_path_buf()), message }
            }
            other => other,
        }
    }

    /// The dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// The whole configuration of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Settings shared by every model: steps, seed, batch, logging, checkpoints, threads.
    pub train: TrainSection,
    /// Which patches are used.
    pub data: DataSection,
    /// The benign/malignant classifier.
    pub classifier: ClassifierConfig,
    /// The attribution GAN (map generator and critic).
    pub attribution: AttributionConfig,
}

/// `[train]`: settings shared by every model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    /// Optimisation steps for every model (one step = one batch; for the GAN, one generator update).
    /// Default: unset, so each model takes its own default (`classifier.steps` 1000,
    /// `attribution.steps` 400, what the quickstart needs on 2 cores). A model's own `steps` wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// The seed every random draw derives from (initialisation, batches, augmentation). Default 42.
    pub seed: u64,
    /// Patches per batch. Default 32.
    pub batch_size: usize,
    /// Adam learning rate of the classifier (unless `classifier.lr` is set). Default 0.003.
    pub lr: f64,
    /// Report scalars every this many steps. Default 10.
    pub log_every: u64,
    /// Report example images every this many steps (0 = never). Default 50.
    pub image_every: u64,
    /// Write a checkpoint every this many steps (0 = only at the end). Default 50.
    pub checkpoint_every: u64,
    /// Keep this many newest checkpoints per model (0 = keep all). Default 3.
    pub keep_checkpoints: usize,
    /// CPU worker threads for the flex backend (0 = one per core), for the caller to pass to
    /// `select_device`. The pool is process-wide, so the first call in a process decides. Results do
    /// not depend on it (see `device.rs`). Default 0.
    pub threads: usize,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            steps: None,
            seed: 42,
            batch_size: 32,
            lr: 3e-3,
            log_every: 10,
            image_every: 50,
            checkpoint_every: 50,
            keep_checkpoints: 3,
            threads: 0,
        }
    }
}

/// `[data]`: which patches are used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// The split the models train on. Default `"train"`.
    pub split: Split,
    /// The labels the classifier learns as the negative class (0); malignant is always the positive
    /// class (1). Default `["benign", "normal"]`: whole-image inference scores every tile of a breast,
    /// most of them normal tissue, so the classifier must have seen it (trained on benign masses
    /// alone, it scored a normal mammogram's most suspicious tile at a median 0.97, and image-level
    /// AUC was 0.66). `["benign"]` learns benign against malignant masses only.
    /// Only benign and normal are allowed (checked by `validate`: malignant is the positive class).
    pub negatives: Vec<Label>,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection { split: Split::Train, negatives: vec![Label::Benign, Label::Normal] }
    }
}

/// `[classifier]`: the residual CNN that gives P(malignant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Steps for this model, overriding `train.steps`. Default: unset (then `train.steps`, else 1000: on
    /// the default 512-image phantom the held-out AUC passes 0.99 by step 650).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Learning rate for this model, overriding `train.lr`. Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Channels of the stem; each residual stage doubles them. Default 8.
    pub channels: usize,
    /// Residual stages, each halving the resolution. Default 3 (64 px -> 8 px).
    pub blocks: usize,
    /// Convolutions at full resolution before the first stage. Default 1.
    pub stem_convs: usize,
    /// Feed the network the patch's high-pass residual (each pixel minus its 3x3 local mean) instead of
    /// the patch: a rough pre-whitening that hides the low-frequency tissue texture. Default true.
    pub highpass: bool,
    /// Learning-rate schedule: `"constant"` or `"cosine"` (linear warm-up over the first 5 % of the
    /// steps, then a cosine decay to 0). Default `"cosine"`.
    pub schedule: Schedule,
    /// Weight of the auxiliary mask loss: a 1x1 head on stage `aux_stage` predicts, per cell, the
    /// fraction of lesion and of malignancy-feature pixels (binary cross-entropy against the patches'
    /// masks). Dense supervision of where the features are; the head is not used at inference. A
    /// plane the data cannot vouch for (a malignant patch without an outline or a feature mask) is
    /// left out of the loss. On the phantom, with the high-pass input, it is what takes the
    /// held-out AUC from chance to about 0.97 (after a plateau of 500-700 steps). 0 = off. Default 1.0.
    pub aux_weight: f64,
    /// The stage (0-based) whose output the auxiliary head reads. Default 0 (half the patch side:
    /// 32 x 32 cells of 2 x 2 px for 64 px). On the 512-image phantom, stage 1 (4 x 4 px cells) left
    /// the held-out AUC at 0.74 after 1000 steps where stage 0 reached 0.90, and 0.98 after 2000:
    /// spicules are 1-3 px wide, and coarser cells blur their supervision into the margin's.
    pub aux_stage: usize,
    /// Decoupled (AdamW-style) weight decay. Default 0.0001.
    pub weight_decay: f64,
    /// Random horizontal and vertical flips. Default true.
    pub flip: bool,
    /// Random 90-degree rotations. Default true.
    pub rotate90: bool,
    /// Additive intensity jitter: a uniform offset in [-x, x]. Default 0.05 (0 = off).
    pub intensity_jitter: f64,
    /// Contrast jitter: scale about the patch mean by a factor in [1-x, 1+x]. Default 0.1 (0 = off).
    pub contrast_jitter: f64,
    /// Hard-negative mining: the share of each batch's negatives drawn from the negatives the classifier
    /// currently scores highest (the rest are drawn from all of them). Whole-image inference takes the
    /// most suspicious of a hundred or more tiles, so it is the rare normal tile that looks malignant
    /// that decides a normal image's score, and uniform draws seldom show one. 0 = off. Default 0.25.
    pub hard_negatives: f64,
    /// Re-score every training negative and re-pick the hardest every this many steps (the first time
    /// at this step). Default 200.
    pub mine_every: u64,
    /// The share of the training negatives kept as the hardest at each mining. Default 0.1.
    pub hard_pool: f64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            steps: None,
            lr: None,
            channels: 8,
            blocks: 3,
            stem_convs: 1,
            highpass: true,
            schedule: Schedule::Cosine,
            aux_weight: 1.0,
            aux_stage: 0,
            weight_decay: 1e-4,
            flip: true,
            rotate90: true,
            intensity_jitter: 0.05,
            contrast_jitter: 0.1,
            hard_negatives: 0.25,
            mine_every: 200,
            hard_pool: 0.1,
        }
    }
}

/// How a learning rate changes over the steps of a training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Linear warm-up over the first 5 % of the steps, then a half cosine down to 0 at the last step.
    Cosine,
}

impl Schedule {
    /// The rate at `step` (0-based) of `total`, for a base rate `lr`.
    pub fn at(self, lr: f64, step: u64, total: u64) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine => {
                let total = total.max(1) as f64;
                let warmup = (0.05 * total).ceil().max(1.0);
                let s = step as f64;
                if s < warmup {
                    lr * (s + 1.0) / warmup
                } else {
                    let t = ((s - warmup) / (total - warmup).max(1.0)).min(1.0);
                    lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
                }
            }
        }
    }
}

/// The form of the attribution GAN's map (see `model/unet.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapForm {
    /// m = map_scale * tanh(.): any change.
    Free,
    /// m = -g * max(x - blur(x), 0): a gated deletion of dense fine structure.
    Deletion,
}

/// The class whose appearance the attribution GAN makes malignant patches take on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    /// Benign lesions: the map shows what makes a lesion malignant rather than benign (default).
    Benign,
    /// Normal tissue: the map shows the whole lesion.
    Normal,
}

impl Reference {
    /// The label of the reference patches.
    pub fn label(self) -> mammo_io::layouts::Label {
        match self {
            Reference::Benign => mammo_io::layouts::Label::Benign,
            Reference::Normal => mammo_io::layouts::Label::Normal,
        }
    }
}

/// The adversarial loss of the attribution GAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GanLoss {
    /// Hinge loss (critic: relu(1 - D(real)) + relu(1 + D(fake)); generator: -D(fake)). Default.
    Hinge,
    /// Wasserstein loss (critic: D(fake) - D(real); generator: -D(fake)), Lipschitz through spectral
    /// normalisation rather than a gradient penalty.
    Wasserstein,
}

/// `[attribution]`: the map generator M (a U-Net) and its spectrally normalised critic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttributionConfig {
    /// Generator steps for this model, overriding `train.steps`. Default: unset (then `train.steps`,
    /// else 400: on the 512-image phantom with visible masses the whole-image pointing game was 0.88
    /// after 300 steps; on the earlier one the patch pointing game was 0.87 after 150 steps, 0.93 after
    /// 300 and 0.94 after 500 with seed 0, and 0.87 after 300 but 0.91 after 500 with seed 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Channels of the U-Net's first level; each level doubles them. Default 8.
    pub gen_channels: usize,
    /// U-Net levels (resolution halves depth-1 times). Default 3.
    pub gen_depth: usize,
    /// Start the critic from the run's trained classifier (its network and weights, scoring minus its
    /// logit) when `RUN/model/` has one for these patches; else, or when false, the critic is
    /// spectrally normalised and starts from scratch (`critic_channels`, `critic_depth`,
    /// `power_iterations`). Default true.
    pub critic_from_classifier: bool,
    /// Channels of the spectrally normalised critic's first layer; each level doubles them. Default 8.
    pub critic_channels: usize,
    /// Stride-2 levels of the critic. Default 3.
    pub critic_depth: usize,
    /// Adam learning rate of the generator. Default 0.003 (a deletion gate has to move from its 0.5
    /// start within the quickstart's 400 steps).
    pub lr_g: f64,
    /// Adam learning rate of the critic. Default 0.002 (a critic started from the trained classifier
    /// needs no faster rate than the generator to keep up; from scratch, use about twice the
    /// generator's: the two time-scale rule, Heusel et al. 2017).
    pub lr_c: f64,
    /// Adam beta1 of both (GANs train better with little momentum). Default 0.5.
    pub beta1: f64,
    /// Adam beta2 of both. Default 0.9.
    pub beta2: f64,
    /// Critic updates per generator update. Default 1 (enough with spectral normalisation and the
    /// faster critic learning rate on the phantom; 2-5 for harder data, at proportional cost).
    pub n_critic: u64,
    /// Weight of the mean |m| penalty (of the gate g, for deletion maps) that keeps the map minimal.
    /// Default 6.0.
    pub l1_weight: f64,
    /// The form of the map: `"deletion"` (default; m = -g * max(x - blur(x), 0), a gate g in [0, 1]
    /// that takes out density above the local background, so the map can only remove dense fine
    /// structure; the L1 penalty is on g) or `"free"` (m = map_scale * tanh(.), any change, as in the paper; the L1 penalty is on
    /// m). See `model/unet.rs` for why deletion is the default.
    pub map_form: MapForm,
    /// The deletion map's Gaussian blur, in pixels: the scale of what counts as fine structure above
    /// the local background. Default 1.5 (spicules are 1-3 px wide at 0.4 mm).
    pub blur_sigma: f64,
    /// Bound of a free map: m = map_scale * tanh(.). Default 1.0 (the full intensity range).
    pub map_scale: f64,
    /// Smooth m with a 3x3 binomial filter (the generator's last operation): no pixel-scale
    /// stripes or checkerboards, which fool a critic without meaning anything. Default true.
    pub map_smooth: bool,
    /// The class x + m must pass as: `"benign"` (default) or `"normal"`.
    pub reference: Reference,
    /// `"hinge"` (default) or `"wasserstein"`.
    pub loss: GanLoss,
    /// Power-iteration steps per critic update for the spectral norm estimate. Default 1.
    pub power_iterations: usize,
    /// Divergence guard: stop with an error if |critic loss| exceeds this. Default 10000.
    pub critic_loss_bound: f64,
    /// The critic sees every patch (real or generated) cut to a random window this many pixels smaller
    /// than the patch, so a map cannot fool it with patterns at fixed positions. 0 = off. Default 8.
    pub critic_crop: usize,
    /// Random flips and 90-degree rotations of both classes (no intensity jitter: intensity is
    /// what the map may change). Default true.
    pub augment: bool,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig {
            steps: None,
            gen_channels: 8,
            gen_depth: 3,
            critic_from_classifier: true,
            critic_channels: 8,
            critic_depth: 3,
            lr_g: 3e-3,
            lr_c: 2e-3,
            beta1: 0.5,
            beta2: 0.9,
            n_critic: 1,
            l1_weight: 6.0,
            map_form: MapForm::Deletion,
            blur_sigma: 1.5,
            map_scale: 1.0,
            map_smooth: true,
            reference: Reference::Benign,
            loss: GanLoss::Hinge,
            power_iterations: 1,
            critic_loss_bound: 1e4,
            critic_crop: 8,
            augment: true,
        }
    }
}

/// Keys whose default is "unset", so they do not appear in a serialized default config; with the TOML
/// type their value must have.
const OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("train.steps", "integer"),
    ("classifier.steps", "integer"),
    ("classifier.lr", "float"),
    ("attribution.steps", "integer"),
];

/// Classifier steps when neither `classifier.steps` nor `train.steps` is set.
pub const DEFAULT_CLASSIFIER_STEPS: u64 = 1000;
/// Attribution GAN generator steps when neither `attribution.steps` nor `train.steps` is set.
pub const DEFAULT_ATTRIBUTION_STEPS: u64 = 400;

impl TrainConfig {
    /// Reads a TOML file. Keys it leaves out keep their defaults; unknown keys and ill-typed values are
    /// errors naming the file and the key.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax { path: path.to_path_buf(), message },
            other => other.in_file(path),
        })
    }

    /// Parses TOML text (see [`TrainConfig::from_toml_file`]).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax { path: PathBuf::new(), message: e.to_string() })?;
        let mut config = TrainConfig::default();
        let mut leaves = Vec::new();
        flatten("", &Value::Table(table), &mut leaves);
        for (key, value) in leaves {
            config.set_value(&key, value)?;
        }
        Ok(config)
    }

    /// The fully resolved configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig always serializes")
    }

    /// Overrides one key by its dotted name, e.g. `set("train.steps", "20")`. The value is parsed as the
    /// type of the key (integer, float, bool, string, list: `benign,normal` or `["benign"]`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let current = self.lookup(key)?;
        let parsed = parse_like(key, value, current.as_ref())?;
        self.set_value(key, parsed)
    }

    /// The current value of a key as TOML (`None` for an unset optional key).
    fn lookup(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        let root = Value::try_from(self).expect("a TrainConfig always serializes");
        let (section, leaf) = split_key(key)?;
        let Some(Value::Table(table)) = root.get(section) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                file: None,
                hint: format!(
                    " (sections: {})",
                    root.as_table().unwrap().keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        };
        if let Some(v) = table.get(leaf) {
            return Ok(Some(v.clone()));
        }
        if OPTIONAL_KEYS.iter().any(|(k, _)| *k == key) {
            return Ok(None);
        }
        let mut known: Vec<String> = table.keys().cloned().collect();
        known
            .extend(OPTIONAL_KEYS.iter().filter_map(|(k, _)| k.strip_prefix(&format!("{section}.")).map(String::from)));
        known.sort();
        Err(ConfigError::UnknownKey {
            key: key.to_string(),
            file: None,
            hint: format!(" (keys of [{section}]: {})", known.join(", ")),
        })
    }

    /// Sets a key to a TOML value, checking its type, then re-validates the whole config.
    fn set_value(&mut self, key: &str, value: Value) -> Result<(), ConfigError> {
        let current = self.lookup(key)?;
        let value = coerce(key, value, current.as_ref())?;
        let (section, leaf) = split_key(key)?;
        let mut root = Value::try_from(&*self).expect("a TrainConfig always serializes");
        root.get_mut(section).and_then(Value::as_table_mut).expect("section exists").insert(leaf.to_string(), value);
        let updated: TrainConfig =
            root.try_into().map_err(|e: toml::de::Error| ConfigError::invalid(key, e.message()))?;
        updated.validate_key(key)?;
        *self = updated;
        Ok(())
    }

    /// Checks every value's range; the error names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for key in self.keys() {
            self.validate_key(&key)?;
        }
        Ok(())
    }

    /// Every dotted key of the configuration, optional ones included.
    pub fn keys(&self) -> Vec<String> {
        let mut leaves = Vec::new();
        flatten("", &Value::try_from(self).expect("a TrainConfig always serializes"), &mut leaves);
        let mut keys: Vec<String> = leaves.into_iter().map(|(k, _)| k).collect();
        for (k, _) in OPTIONAL_KEYS {
            if !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
        keys
    }

    fn validate_key(&self, key: &str) -> Result<(), ConfigError> {
        let positive = |v: u64| if v == 0 { Err(ConfigError::invalid(key, "must be at least 1")) } else { Ok(()) };
        // Shapes: each bound is far above any model this code is meant to train (the defaults are 8
        // channels and 3 levels), low enough that no shape arithmetic can overflow; what a shape costs
        // in memory is checked against the machine when training starts (`crate::budget`).
        let within = |v: usize, max: usize| {
            if v == 0 || v > max {
                Err(ConfigError::invalid(key, format!("must be in 1..={max}, got {v}")))
            } else {
                Ok(())
            }
        };
        let finite_pos = |v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::invalid(key, format!("must be > 0, got {v}")))
            }
        };
        let in_unit = |v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::invalid(key, format!("must be in [0, 1), got {v}")))
            }
        };
        let t = &self.train;
        let c = &self.classifier;
        let a = &self.attribution;
        match key {
            "train.steps" => t.steps.map_or(Ok(()), positive),
            "train.batch_size" => within(t.batch_size, MAX_BATCH),
            "train.lr" => finite_pos(t.lr),
            "train.log_every" => positive(t.log_every),
            "classifier.steps" => c.steps.map_or(Ok(()), positive),
            "classifier.lr" => c.lr.map_or(Ok(()), finite_pos),
            "classifier.channels" => within(c.channels, MAX_CHANNELS),
            "classifier.blocks" => within(c.blocks, MAX_LEVELS),
            "classifier.stem_convs" => within(c.stem_convs, MAX_LEVELS),
            "classifier.weight_decay" => in_unit(c.weight_decay),
            "classifier.aux_weight" => {
                if c.aux_weight.is_finite() && c.aux_weight >= 0.0 {
                    Ok(())
                } else {
                    Err(ConfigError::invalid(key, format!("must be >= 0, got {}", c.aux_weight)))
                }
            }
            "classifier.intensity_jitter" => in_unit(c.intensity_jitter),
            "classifier.contrast_jitter" => in_unit(c.contrast_jitter),
            "classifier.hard_negatives" => in_unit(c.hard_negatives),
            "classifier.mine_every" => positive(c.mine_every),
            "classifier.hard_pool" => {
                if c.hard_pool > 0.0 && c.hard_pool <= 1.0 {
                    Ok(())
                } else {
                    Err(ConfigError::invalid(key, format!("must be in (0, 1], got {}", c.hard_pool)))
                }
            }
            "attribution.steps" => a.steps.map_or(Ok(()), positive),
            "attribution.gen_channels" => within(a.gen_channels, MAX_CHANNELS),
            "attribution.gen_depth" => within(a.gen_depth, MAX_LEVELS),
            "attribution.critic_channels" => within(a.critic_channels, MAX_CHANNELS),
            "attribution.critic_depth" => within(a.critic_depth, MAX_LEVELS),
            "attribution.lr_g" => finite_pos(a.lr_g),
            "attribution.lr_c" => finite_pos(a.lr_c),
            "attribution.beta1" => in_unit(a.beta1),
            "attribution.beta2" => in_unit(a.beta2),
            "attribution.n_critic" => within(a.n_critic.min(usize::MAX as u64) as usize, 100),
            "attribution.l1_weight" => {
                if a.l1_weight.is_finite() && a.l1_weight >= 0.0 {
                    Ok(())
                } else {
                    Err(ConfigError::invalid(key, format!("must be >= 0, got {}", a.l1_weight)))
                }
            }
            "attribution.map_scale" => finite_pos(a.map_scale),
            "attribution.blur_sigma" => finite_pos(a.blur_sigma),
            "attribution.power_iterations" => within(a.power_iterations, 100),
            "attribution.critic_loss_bound" => finite_pos(a.critic_loss_bound),
            "data.negatives" => {
                if self.data.negatives.is_empty() {
                    return Err(ConfigError::invalid(key, "needs at least one of benign, normal"));
                }
                for l in &self.data.negatives {
                    if *l == Label::Malignant {
                        let l = l.as_str();
                        return Err(ConfigError::invalid(key, format!("must list benign and/or normal, got {l:?}")));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Steps of the classifier (its own, else `train.steps`, else [`DEFAULT_CLASSIFIER_STEPS`]).
    pub fn classifier_steps(&self) -> u64 {
        self.classifier.steps.or(self.train.steps).unwrap_or(DEFAULT_CLASSIFIER_STEPS)
    }

    /// Learning rate of the classifier (its override or `train.lr`).
    pub fn classifier_lr(&self) -> f64 {
        self.classifier.lr.unwrap_or(self.train.lr)
    }

    /// Generator steps of the attribution GAN (its own, else `train.steps`, else
    /// [`DEFAULT_ATTRIBUTION_STEPS`]).
    pub fn attribution_steps(&self) -> u64 {
        self.attribution.steps.or(self.train.steps).unwrap_or(DEFAULT_ATTRIBUTION_STEPS)
    }
}

/// The largest `train.batch_size` accepted.
pub const MAX_BATCH: usize = 1 << 16;
/// The most channels a model's first layer may have.
pub const MAX_CHANNELS: usize = 1024;
/// The most levels (blocks, depths, stem convolutions) a model may have.
pub const MAX_LEVELS: usize = 12;

fn split_key(key: &str) -> Result<(&str, &str), ConfigError> {
    key.split_once('.').filter(|(s, l)| !s.is_empty() && !l.is_empty() && !l.contains('.')).ok_or_else(|| {
        ConfigError::UnknownKey {
            key: key.to_string(),
            file: None,
            hint: " (keys are section.name, e.g. train.steps)".into(),
        }
    })
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                // Only sections are tables; a table below a section is a (wrong) leaf, left to the
                // type check.
                if prefix.is_empty() && v.is_table() {
                    flatten(&key, v, out);
                } else {
                    out.push((key, v.clone()));
                }
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Boolean(_) => "bool",
        Value::Datetime(_) => "datetime",
        Value::Array(_) => "list",
        Value::Table(_) => "table",
    }
}

/// The TOML type a key takes: that of its current value, or of an unset optional key.
fn expected_type(key: &str, current: Option<&Value>) -> &'static str {
    match current {
        Some(v) => type_name(v),
        None => OPTIONAL_KEYS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t).unwrap_or("string"),
    }
}

/// Parses a command-line string as the type of the key.
fn parse_like(key: &str, text: &str, current: Option<&Value>) -> Result<Value, ConfigError> {
    let text = text.trim();
    let bad = |what: &str| ConfigError::invalid(key, format!("expected {what}, got {text:?}"));
    Ok(match expected_type(key, current) {
        "integer" => Value::Integer(text.replace('_', "").parse().map_err(|_| bad("an integer"))?),
        "float" => Value::Float(text.parse().map_err(|_| bad("a number"))?),
        "bool" => Value::Boolean(match text {
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            _ => return Err(bad("true or false")),
        }),
        "list" => {
            if text.starts_with('[') {
                let t: Table = format!("v = {text}").parse().map_err(|_| bad("a TOML list"))?;
                t["v"].clone()
            } else {
                Value::Array(
                    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
                )
            }
        }
        _ => Value::String(text.trim_matches('"').to_string()),
    })
}

/// Checks a TOML value against the key's type (an integer is accepted where a float is expected).
fn coerce(key: &str, value: Value, current: Option<&Value>) -> Result<Value, ConfigError> {
    let want = expected_type(key, current);
    match (want, value) {
        ("float", Value::Integer(i)) => Ok(Value::Float(i as f64)),
        ("integer", Value::Integer(i)) if i < 0 => {
            Err(ConfigError::invalid(key, format!("must not be negative, got {i}")))
        }
        (want, v) if type_name(&v) == want => Ok(v),
        (want, v) => Err(ConfigError::invalid(key, format!("expected {want}, got {} {v}", type_name(&v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = TrainConfig::default();
        let back = TrainConfig::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(c, back);
        c.validate().unwrap();
    }

    #[test]
    fn set_overrides_typed_values() {
        let mut c = TrainConfig::default();
        c.set("train.steps", "20").unwrap();
        c.set("train.seed", "7").unwrap();
        c.set("train.batch_size", "4").unwrap();
        c.set("train.lr", "0.01").unwrap();
        c.set("classifier.lr", "3e-4").unwrap();
        c.set("classifier.flip", "false").unwrap();
        c.set("attribution.reference", "normal").unwrap();
        c.set("attribution.l1_weight", "5").unwrap();
        c.set("data.negatives", "normal").unwrap();
        assert_eq!(c.train.steps, Some(20));
        assert_eq!(c.train.seed, 7);
        assert_eq!(c.train.batch_size, 4);
        assert_eq!(c.train.lr, 0.01);
        assert_eq!(c.classifier.lr, Some(3e-4));
        assert!(!c.classifier.flip);
        assert_eq!(c.attribution.reference, Reference::Normal);
        assert_eq!(c.attribution.l1_weight, 5.0);
        assert_eq!(c.data.negatives, vec![Label::Normal]);
        // Unset optional keys survive a round trip once set.
        let back = TrainConfig::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn override_errors_name_the_key() {
        let mut c = TrainConfig::default();
        for (key, value) in [
            ("train.stpes", "20"),
            ("train.steps", "twenty"),
            ("train.steps", "0"),
            ("train.steps", "-3"),
            ("train.lr", "fast"),
            ("attribution.loss", "hingee"),
            ("attribution.reference", "malignant"),
            ("classifier.flip", "maybe"),
            ("data.negatives", "malignant"),
            ("data.negatives", "cancer"),
            ("data.split", "training"),
            // Shapes that would abort in the allocator or overflow a shift (issue 11).
            ("classifier.channels", "100000"),
            ("classifier.blocks", "40"),
            ("train.batch_size", "100000000"),
            ("attribution.gen_depth", "0"),
            ("nosuch.key", "1"),
            ("steps", "1"),
        ] {
            let err = c.set(key, value).unwrap_err();
            assert_eq!(err.key(), Some(key), "{key}={value}: {err}");
            assert!(err.to_string().contains(key), "{key}={value}: {err}");
        }
        assert_eq!(c, TrainConfig::default(), "a failed set leaves the config unchanged");
    }

    #[test]
    fn file_errors_name_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[train]\nsteps = 5\nbatch_size = \"big\"\n").unwrap();
        let err = TrainConfig::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("config.toml") && err.contains("train.batch_size"), "{err}");
        std::fs::write(&path, "[attribution]\nncritic = 5\n").unwrap();
        let err = TrainConfig::from_toml_file(&path).unwrap_err().to_string();
        assert!(err.contains("config.toml") && err.contains("attribution.ncritic"), "{err}");
        std::fs::write(&path, "[train]\nsteps = 5\n").unwrap();
        let c = TrainConfig::from_toml_file(&path).unwrap();
        assert_eq!(c.train.steps, Some(5));
        assert_eq!(c.train.seed, 42);
    }
}
