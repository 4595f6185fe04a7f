//! What differs between two runs, from their manifests alone: causes (code, build, config, data,
//! seeds, environment) first, then effects (speed, metrics and weights).
//!
//! The question it answers is "I updated my drivers (or the image, or a crate) and training is now
//! slower or gives other numbers — why?", so only differing keys are listed and the causes come
//! before what they caused.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::manifest::Manifest;

/// The groups, in the order they are shown: causes, then effects.
pub const CAUSES: [&str; 6] = ["code", "build", "config", "data", "seeds", "environment"];
/// The effects' groups.
pub const EFFECTS: [&str; 2] = ["speed", "metrics"];

/// One differing key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// One of [`CAUSES`] or [`EFFECTS`].
    pub group: &'static str,
    /// The key within its group, e.g. `train.lr` or `env.RAYON_NUM_THREADS`.
    pub key: String,
    /// The value in A (null: absent).
    pub a: Value,
    /// The value in B (null: absent).
    pub b: Value,
    /// B / A for speeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// All differences between two manifests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diff {
    /// What went in differently, in [`CAUSES`] order.
    pub causes: Vec<Change>,
    /// What came out differently, in [`EFFECTS`] order.
    pub effects: Vec<Change>,
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

fn json<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("manifest parts serialize")
}

/// A manifest as `group -> key -> value`.
fn grouped(m: &Manifest) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    let mut g: BTreeMap<&'static str, BTreeMap<String, Value>> = BTreeMap::new();
    let mut build = BTreeMap::new();
    flatten("", &json(&m.build), &mut build);
    for (k, v) in build {
        let group = if matches!(k.as_str(), "version" | "git_commit" | "git_dirty") { "code" } else { "build" };
        g.entry(group).or_default().insert(k, v);
    }
    let config = g.entry("config").or_default();
    flatten("", &m.inputs.config, config);
    config.insert("models".into(), json(&m.inputs.models));
    let data = g.entry("data").or_default();
    if let Some(d) = &m.inputs.dataset {
        data.insert("content_hash".into(), json(&d.content_hash));
        data.insert("split".into(), json(&d.split));
        data.insert("source_format".into(), json(&d.source_format));
        for (f, h) in &d.files {
            data.insert(format!("files.{f}"), json(h));
        }
    }
    let seeds = g.entry("seeds").or_default();
    for (k, v) in &m.inputs.seeds {
        seeds.insert(k.clone(), json(v));
    }
    let mut env = BTreeMap::new();
    let mut e = json(&m.environment);
    let vars = e.as_object_mut().and_then(|o| o.remove("env_vars")).unwrap_or_default();
    flatten("", &e, &mut env);
    for (k, v) in vars.as_object().into_iter().flatten() {
        env.insert(format!("env.{k}"), v.clone());
    }
    env.insert("backend".into(), json(&m.run.backend));
    env.insert("device_index".into(), json(&m.run.device_index));
    if let Some(a) = &m.run.adapter {
        env.insert("adapter".into(), json(a));
    }
    env.insert("threads".into(), json(&m.run.threads));
    // Shown once, as `threads`; `threads_used` repeats it.
    env.remove("threads_used");
    g.insert("environment", env);
    let o = &m.outcome;
    let speed = g.entry("speed").or_default();
    speed.insert("steps_per_s".into(), json(&o.steps_per_s));
    speed.insert("wall_time_s".into(), json(&o.wall_time_s));
    speed.insert("peak_memory_bytes".into(), json(&o.peak_memory_bytes));
    let metrics = g.entry("metrics").or_default();
    metrics.insert("status".into(), json(&o.status));
    for (k, v) in &o.steps {
        metrics.insert(format!("steps.{k}"), json(v));
    }
    for (k, v) in &o.weights {
        metrics.insert(format!("weights.{k}"), json(v));
    }
    for (k, v) in &o.metrics {
        metrics.insert(k.clone(), json(v));
    }
    for (k, v) in &o.eval {
        metrics.insert(format!("eval.{k}"), json(v));
    }
    g
}

/// The differences between `a` and `b`, causes first.
pub fn diff(a: &Manifest, b: &Manifest) -> Diff {
    let (ga, gb) = (grouped(a), grouped(b));
    let empty = BTreeMap::new();
    let mut out = Diff::default();
    for group in CAUSES.iter().chain(&EFFECTS) {
        let (ka, kb) = (ga.get(group).unwrap_or(&empty), gb.get(group).unwrap_or(&empty));
        let mut keys: Vec<&String> = ka.keys().chain(kb.keys()).collect();
        // Steps per second is the speed people ask about: first in its group.
        keys.sort_by_key(|k| (k.as_str() != "steps_per_s", k.to_string()));
        keys.dedup();
        for key in keys {
            let (va, vb) = (ka.get(key).cloned().unwrap_or(Value::Null), kb.get(key).cloned().unwrap_or(Value::Null));
            if va == vb {
                continue;
            }
            let ratio = match (group, va.as_f64(), vb.as_f64()) {
                (&"speed", Some(x), Some(y)) if x > 0.0 => Some(y / x),
                _ => None,
            };
            let change = Change { group, key: key.clone(), a: va, b: vb, ratio };
            if CAUSES.contains(group) { out.causes.push(change) } else { out.effects.push(change) }
        }
    }
    out
}

/// A value for people: strings unquoted, long hashes shortened, null as "(unset)".
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "(unset)".into(),
        Value::String(s) if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) => format!("{}…", &s[..12]),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.6}").trim_end_matches('0').trim_end_matches('.').to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Lines for people: one heading per group, then `key  A -> B`.
pub fn render_changes(changes: &[Change], indent: &str) -> String {
    let width = changes.iter().map(|c| c.key.len()).max().unwrap_or(0).min(40);
    let mut out = String::new();
    let mut group = "";
    for c in changes {
        if c.group != group {
            group = c.group;
            out.push_str(&format!("{indent}{group}\n"));
        }
        let ratio = c.ratio.map(|r| format!("   (B/A x{r:.2})")).unwrap_or_default();
        out.push_str(&format!("{indent}  {:<width$}  {} -> {}{ratio}\n", c.key, show(&c.a), show(&c.b)));
    }
    out
}

impl Diff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.causes.is_empty() && self.effects.is_empty()
    }

    /// The report for people: the causes first, then the effects.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "no differences\n".into();
        }
        let mut out = String::new();
        out.push_str("causes (what went in differently):\n");
        if self.causes.is_empty() {
            out.push_str("  none: same code, build, config, data, seeds and environment\n");
        }
        out.push_str(&render_changes(&self.causes, "  "));
        out.push_str("effects (what came out differently):\n");
        if self.effects.is_empty() {
            out.push_str("  none\n");
        }
        out.push_str(&render_changes(&self.effects, "  "));
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::{DatasetRef, Inputs, RunInfo};

    pub(crate) fn manifest(lr: f64, threads: usize, steps_per_s: f64, weights: &str) -> Manifest {
        let inputs = Inputs {
            config: serde_json::json!({"train": {"seed": 42, "lr": lr}, "data": {"negatives": ["benign"]}}),
            config_toml_blake3: format!("{lr}"),
            models: vec!["classifier".into()],
            seeds: [("train.seed".to_string(), 42u64)].into(),
            dataset: Some(DatasetRef {
                path: "../d".into(),
                content_hash: "d".into(),
                split: "train".into(),
                source_format: "phantom".into(),
                files: BTreeMap::new(),
            }),
        };
        let mut m = Manifest::new(inputs, RunInfo::this_process("flex", 0, threads, true, false), Default::default());
        m.environment.threads_used = Some(threads);
        m.outcome.steps_per_s = Some(steps_per_s);
        m.outcome.weights.insert("classifier".into(), weights.into());
        m.outcome.metrics.insert("classifier.loss".into(), 0.5);
        m
    }

    #[test]
    fn only_differences_causes_first_with_a_speed_ratio() {
        let a = manifest(0.001, 2, 10.0, "w1");
        let mut b = manifest(0.002, 2, 5.0, "w2");
        b.environment.env_vars.insert("MALLOC_ARENA_MAX".into(), "2".into());
        b.run.started_unix += 100;
        let d = diff(&a, &b);
        let keys: Vec<(&str, &str)> = d.causes.iter().map(|c| (c.group, c.key.as_str())).collect();
        assert_eq!(keys, [("config", "train.lr"), ("environment", "env.MALLOC_ARENA_MAX")]);
        let speed = d.effects.iter().find(|c| c.key == "steps_per_s").unwrap();
        assert_eq!(speed.ratio, Some(0.5));
        assert!(d.effects.iter().any(|c| c.key == "weights.classifier"));
        let text = d.render();
        assert!(text.find("train.lr").unwrap() < text.find("steps_per_s").unwrap(), "{text}");
        assert!(text.contains("(unset) -> 2") && text.contains("x0.50"), "{text}");
        assert!(diff(&a, &a).is_empty());
    }
}
