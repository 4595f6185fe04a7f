//! The sweep file and its expansion into trials.
//!
//! ```toml
//! seeds = [1, 2]                     # each configuration trained once per seed (train.seed)
//! samples = 4                        # draws of the random axes (default 1)
//! random_seed = 7                    # seed of those draws
//! [objective]
//! key = "classifier.auc"             # a key of RUN/eval/metrics.json, dotted
//! direction = "maximize"             # or "minimize"
//! [base]                             # a `train --config` file, inline
//! train = { steps = 20 }
//! [[axis]]
//! key = "classifier.lr"
//! values = [0.001, 0.003]            # a list; several list axes make a grid
//! [[axis]]
//! key = "classifier.weight_decay"
//! log_uniform = [1e-5, 1e-3]         # or uniform = [min, max]: drawn `samples` times
//! ```
//! Trials = grid points x random draws x seeds. Everything is checked before a trial is written or
//! submitted: every key against mammo-nn's config (the base, each axis and each value), an empty axis,
//! min > max, a missing objective; the error is one line naming the file and the key.

use std::path::{Path, PathBuf};

use mammo_nn::TrainConfig;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {message}", path.display())]
pub struct SpecError {
    pub path: PathBuf,
    pub key: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Maximize,
    Minimize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub key: String,
    pub direction: Direction,
}

/// How an axis gives values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Range {
    /// Listed values (a grid with the other list axes).
    Values(Vec<toml::Value>),
    /// Drawn uniformly in [min, max].
    Uniform(f64, f64),
    /// Drawn uniformly in log space in [min, max] (both > 0).
    LogUniform(f64, f64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub range: Range,
    /// Whether the key holds integers (draws are rounded).
    pub integer: bool,
}

/// A checked sweep file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub base: toml::Table,
    pub axes: Vec<Axis>,
    pub seeds: Vec<u64>,
    pub samples: usize,
    pub random_seed: u64,
    pub objective: Objective,
}

/// One trial: the config keys it sets over the base, and its seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub id: String,
    /// (key, value) for each axis, in the file's axis order.
    pub values: Vec<(String, toml::Value)>,
    pub seed: u64,
}

/// The most trials one sweep may expand to (a grid multiplies quickly).
pub const MAX_TRIALS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    #[serde(default)]
    base: Option<toml::Table>,
    #[serde(default)]
    axis: Vec<RawAxis>,
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    samples: Option<usize>,
    #[serde(default)]
    random_seed: Option<u64>,
    objective: Option<RawObjective>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAxis {
    key: Option<String>,
    values: Option<Vec<toml::Value>>,
    uniform: Option<Vec<f64>>,
    log_uniform: Option<Vec<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    key: Option<String>,
    direction: Option<String>,
}

impl Sweep {
    /// Reads and checks a sweep file.
    pub fn from_file(path: &Path) -> Result<Sweep, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            path: path.to_path_buf(),
            key: "(file)".into(),
            message: e.to_string(),
        })?;
        Sweep::parse(&text, path)
    }

    /// Parses and checks `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Sweep, SpecError> {
        let fail = |key: &str, message: String| SpecError { path: path.to_path_buf(), key: key.to_string(), message };
        let raw: RawSweep =
            toml::from_str(text).map_err(|e| fail("(syntax)", e.message().replace('\n', " ").trim().to_string()))?;
        let base = raw.base.unwrap_or_default();
        let base_config = TrainConfig::from_toml_str(&toml::to_string(&base).expect("a table serialises"))
            .map_err(|e| fail("base", one_line(&e.to_string())))?;
        let objective =
            raw.objective.ok_or_else(|| fail("objective", "missing: give [objective] key and direction".into()))?;
        let objective_key = match objective.key {
            Some(k) if !k.trim().is_empty() => k,
            _ => return Err(fail("objective.key", "missing: a key of eval/metrics.json, e.g. classifier.auc".into())),
        };
        let direction = match objective.direction.as_deref() {
            Some("maximize") | Some("max") => Direction::Maximize,
            Some("minimize") | Some("min") => Direction::Minimize,
            Some(other) => return Err(fail("objective.direction", format!("'{other}': maximize or minimize"))),
            None => return Err(fail("objective.direction", "missing: maximize or minimize".into())),
        };
        let mut axes = Vec::new();
        for (n, a) in raw.axis.into_iter().enumerate() {
            let key = a.key.ok_or_else(|| fail(&format!("axis[{n}].key"), "missing".into()))?;
            if axes.iter().any(|x: &Axis| x.key == key) {
                return Err(fail(&key, "two axes over one key".into()));
            }
            if key == "train.seed" {
                return Err(fail(&key, "seeds are given by `seeds = [...]`, not an axis".into()));
            }
            // The key must exist and each value must be acceptable to it.
            let mut probe = base_config.clone();
            let set =
                |probe: &mut TrainConfig, v: &str| probe.set(&key, v).map_err(|e| fail(&key, one_line(&e.to_string())));
            let given = [a.values.is_some(), a.uniform.is_some(), a.log_uniform.is_some()];
            if given.iter().filter(|&&g| g).count() != 1 {
                return Err(fail(
                    &key,
                    "give exactly one of values = [...], uniform = [min, max], log_uniform = [min, max]".into(),
                ));
            }
            let current = toml::Value::try_from(&base_config).ok().and_then(|root| lookup(&root, &key).cloned());
            let integer = matches!(current, Some(toml::Value::Integer(_)));
            let range = if let Some(values) = a.values {
                if values.is_empty() {
                    return Err(fail(&key, "empty axis: values = [] gives no trial".into()));
                }
                for v in &values {
                    set(&mut probe, &value_text(v))?;
                }
                Range::Values(values)
            } else {
                let (log, bounds) = match (a.uniform, a.log_uniform) {
                    (Some(b), _) => (false, b),
                    (_, Some(b)) => (true, b),
                    _ => unreachable!("one of them is given"),
                };
                let [min, max] = bounds[..] else {
                    return Err(fail(&key, format!("a range is [min, max], got {} numbers", bounds.len())));
                };
                if !(min.is_finite() && max.is_finite()) || min > max {
                    return Err(fail(&key, format!("min {min} > max {max}")));
                }
                if log && min <= 0.0 {
                    return Err(fail(&key, format!("log_uniform needs min > 0, got {min}")));
                }
                for v in [min, max] {
                    set(&mut probe, &number_text(v, integer))?;
                }
                if log { Range::LogUniform(min, max) } else { Range::Uniform(min, max) }
            };
            axes.push(Axis { key, range, integer });
        }
        let seeds = raw.seeds.unwrap_or_else(|| vec![base_config.train.seed]);
        if seeds.is_empty() {
            return Err(fail("seeds", "empty: give at least one seed".into()));
        }
        let samples = raw.samples.unwrap_or(1);
        if samples == 0 {
            return Err(fail("samples", "must be at least 1".into()));
        }
        let sweep = Sweep {
            base,
            axes,
            seeds,
            samples,
            random_seed: raw.random_seed.unwrap_or(0),
            objective: Objective { key: objective_key, direction },
        };
        let count = sweep.trial_count();
        if count > MAX_TRIALS {
            return Err(fail("axis", format!("{count} trials (more than {MAX_TRIALS}); use fewer values or samples")));
        }
        Ok(sweep)
    }

    fn trial_count(&self) -> usize {
        let grid: usize = self
            .axes
            .iter()
            .map(|a| if let Range::Values(v) = &a.range { v.len() } else { 1 })
            .fold(1usize, |a, b| a.saturating_mul(b));
        let random = self.axes.iter().any(|a| !matches!(a.range, Range::Values(_)));
        grid.saturating_mul(if random { self.samples } else { 1 }).saturating_mul(self.seeds.len())
    }

    /// Every trial, in a stable order: grid points (first axis slowest), then draws, then seeds.
    pub fn trials(&self) -> Vec<Trial> {
        let mut points: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for a in &self.axes {
            if let Range::Values(values) = &a.range {
                points = points
                    .into_iter()
                    .flat_map(|p| {
                        values.iter().map(move |v| {
                            let mut q = p.clone();
                            q.push((a.key.clone(), v.clone()));
                            q
                        })
                    })
                    .collect();
            }
        }
        let random: Vec<&Axis> = self.axes.iter().filter(|a| !matches!(a.range, Range::Values(_))).collect();
        let draws = if random.is_empty() { 1 } else { self.samples };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.random_seed);
        let mut out = Vec::new();
        for point in &points {
            for _ in 0..draws {
                let mut values = point.clone();
                for a in &random {
                    let v = match a.range {
                        Range::Uniform(lo, hi) => lo + (hi - lo) * rng.random::<f64>(),
                        Range::LogUniform(lo, hi) => (lo.ln() + (hi.ln() - lo.ln()) * rng.random::<f64>()).exp(),
                        Range::Values(_) => unreachable!(),
                    };
                    let v =
                        if a.integer { toml::Value::Integer(v.round() as i64) } else { toml::Value::Float(round6(v)) };
                    values.push((a.key.clone(), v));
                }
                // The file's axis order, whatever kind each axis is.
                values.sort_by_key(|(k, _)| self.axes.iter().position(|a| &a.key == k));
                for &seed in &self.seeds {
                    out.push(Trial { id: trial_id(&values, seed), values: values.clone(), seed });
                }
            }
        }
        out
    }

    /// The full `train --config` TOML of `trial`: the base with the trial's values and seed.
    pub fn trial_config(&self, trial: &Trial) -> Result<String, SpecError> {
        let mut config = TrainConfig::from_toml_str(&toml::to_string(&self.base).expect("a table serialises"))
            .map_err(|e| SpecError { path: PathBuf::new(), key: "base".into(), message: one_line(&e.to_string()) })?;
        for (k, v) in &trial.values {
            config.set(k, &value_text(v)).map_err(|e| SpecError {
                path: PathBuf::new(),
                key: k.clone(),
                message: one_line(&e.to_string()),
            })?;
        }
        config.train.seed = trial.seed;
        Ok(config.to_toml())
    }
}

/// A stable id: a hash of the trial's values (key order fixed by the file) and seed. The same values
/// and seed in another sweep file give the same id, so a finished trial is recognised when re-run.
pub fn trial_id(values: &[(String, toml::Value)], seed: u64) -> String {
    let mut sorted: Vec<&(String, toml::Value)> = values.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = blake3::Hasher::new();
    for (k, v) in sorted {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(value_text(v).as_bytes());
        h.update(b"\n");
    }
    h.update(format!("train.seed={seed}\n").as_bytes());
    format!("t{}", &h.finalize().to_hex()[..11])
}

/// A value as `--set` takes it.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f:?}"),
        other => other.to_string(),
    }
}

fn number_text(v: f64, integer: bool) -> String {
    if integer { format!("{}", v.round() as i64) } else { format!("{v:?}") }
}

/// Six significant digits: a drawn value reads the same in a file, an id and a table.
fn round6(v: f64) -> f64 {
    format!("{v:.5e}").parse().unwrap_or(v)
}

fn lookup<'a>(root: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(root, |v, part| v.get(part))
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Sweep, String> {
        Sweep::parse(text, Path::new("s.toml")).map_err(|e| e.to_string())
    }

    const OBJ: &str = "[objective]\nkey = \"classifier.auc\"\ndirection = \"maximize\"\n";

    #[test]
    fn grid_draws_and_seeds_expand_to_stable_trials() {
        let text = format!(
            "seeds = [1, 2]\nsamples = 3\nrandom_seed = 9\n{OBJ}[base]\ntrain = {{ steps = 20 }}\n\
             [[axis]]\nkey = \"classifier.lr\"\nvalues = [0.001, 0.003]\n\
             [[axis]]\nkey = \"classifier.weight_decay\"\nlog_uniform = [1e-5, 1e-3]\n"
        );
        let s = parse(&text).unwrap();
        let t = s.trials();
        assert_eq!(t.len(), 2 * 3 * 2);
        let ids: std::collections::BTreeSet<&str> = t.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids.len(), t.len(), "ids are distinct");
        assert_eq!(t, parse(&text).unwrap().trials(), "the same file gives the same trials");
        for x in &t {
            let wd = x.values[1].1.as_float().unwrap();
            assert!((1e-5..=1e-3).contains(&wd), "{wd}");
            let config = s.trial_config(x).unwrap();
            assert!(config.contains(&format!("seed = {}", x.seed)), "{config}");
            assert!(config.contains("steps = 20"), "{config}");
        }
    }

    #[test]
    fn the_example_sweeps_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sweeps");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Sweep::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!s.trials().is_empty());
                n += 1;
            }
        }
        assert!(n >= 2, "examples/sweeps holds {n} sweeps");
    }

    #[test]
    fn bad_sweeps_are_one_line_naming_the_file_and_the_key() {
        let cases = [
            (format!("{OBJ}[[axis]]\nkey = \"classifier.nope\"\nvalues = [1]\n"), "classifier.nope"),
            (format!("{OBJ}[[axis]]\nkey = \"classifier.lr\"\nvalues = []\n"), "empty axis"),
            (format!("{OBJ}[[axis]]\nkey = \"classifier.lr\"\nuniform = [0.1, 0.01]\n"), "min 0.1 > max 0.01"),
            ("[[axis]]\nkey = \"classifier.lr\"\nvalues = [0.1]\n".to_string(), "objective"),
            ("[objective]\ndirection = \"maximize\"\n".to_string(), "objective.key"),
            (format!("{OBJ}[base]\ntrain = {{ stepz = 3 }}\n"), "base"),
            (format!("{OBJ}seeds = []\n"), "seeds"),
        ];
        for (text, needle) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with("s.toml: ") && err.contains(needle) && !err.contains('\n'), "{needle}: {err}");
        }
    }
}
