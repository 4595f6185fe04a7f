//! `sweep collect`: the objective of every trial read from its `eval/metrics.json`, into
//! `leaderboard.csv` (best first; failed and missing trials marked, last), `leaderboard.html` (a
//! sortable table, the objective against each axis, mean ± spread over seeds per configuration) and
//! `best.toml` (the best configuration by its mean over seeds, as `train --config` takes it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::spec::{Direction, Range, Sweep, Trial, value_text};
use crate::trials::{State, SweepDir, SweepError, err, write_atomic};

/// One trial's line.
#[derive(Clone, Debug)]
pub struct Entry {
    pub trial: Trial,
    pub state: State,
    pub objective: Option<f64>,
    /// Why there is no objective (failure reason, missing key).
    pub note: String,
}

/// A configuration (the trial values without the seed) over its seeds.
#[derive(Clone, Debug)]
pub struct Group {
    pub values: Vec<(String, toml::Value)>,
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation over seeds (0 for one seed).
    pub sd: f64,
}

pub struct Collected {
    pub entries: Vec<Entry>,
    pub groups: Vec<Group>,
    pub best: Option<Group>,
}

/// The entries, in leaderboard order, and the groups, best first.
pub fn collect(sd: &SweepDir) -> Result<Collected, SweepError> {
    let sweep = sd.sweep()?;
    let mut entries = Vec::new();
    for trial in sd.trials()? {
        let state = sd.state(&trial.id);
        let (objective, note) = match state {
            State::Finished => match read_objective(sd, &trial.id, &sweep.objective.key) {
                Ok(v) => (Some(v), String::new()),
                Err(e) => (None, e),
            },
            State::Failed => (None, sd.failure(&trial.id).unwrap_or_default()),
            State::Running => (None, "started, no metrics yet (running, or killed: re-run the sweep)".into()),
            State::Pending => (None, "missing: never started".into()),
        };
        entries.push(Entry { trial, state, objective, note });
    }
    let better = |a: f64, b: f64| match sweep.objective.direction {
        Direction::Maximize => b.total_cmp(&a),
        Direction::Minimize => a.total_cmp(&b),
    };
    entries.sort_by(|a, b| match (a.objective, b.objective) {
        (Some(x), Some(y)) => better(x, y).then_with(|| a.trial.id.cmp(&b.trial.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.state.cmp(&b.state).then_with(|| a.trial.id.cmp(&b.trial.id)),
    });
    let mut by_values: BTreeMap<String, (Vec<(String, toml::Value)>, Vec<f64>)> = BTreeMap::new();
    for e in &entries {
        if let Some(v) = e.objective {
            let key = values_label(&e.trial.values);
            by_values.entry(key).or_insert_with(|| (e.trial.values.clone(), Vec::new())).1.push(v);
        }
    }
    let mut groups: Vec<Group> = by_values
        .into_values()
        .map(|(values, xs)| {
            let n = xs.len();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let sd =
                if n > 1 { (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
            Group { values, n, mean, sd }
        })
        .collect();
    groups.sort_by(|a, b| better(a.mean, b.mean).then_with(|| values_label(&a.values).cmp(&values_label(&b.values))));
    let best = groups.first().cloned();
    Ok(Collected { entries, groups, best })
}

/// The objective `key` of `id`'s `eval/metrics.json`.
fn read_objective(sd: &SweepDir, id: &str, key: &str) -> Result<f64, String> {
    let path = sd.metrics(id);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    // metrics.json keys are flat (`classifier.auc`); a nested object is read by the dotted path too.
    json.get(key)
        .or_else(|| key.split('.').try_fold(&json, |v, part| v.get(part)))
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format!("{}: no number at {key}", path.display()))
}

pub fn values_label(values: &[(String, toml::Value)]) -> String {
    values.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(" ")
}

/// Writes `leaderboard.csv`, `leaderboard.html` and (when a trial finished) `best.toml`.
pub fn write(sd: &SweepDir, c: &Collected) -> Result<(), SweepError> {
    let sweep = sd.sweep()?;
    let keys: Vec<&str> = sweep.axes.iter().map(|a| a.key.as_str()).collect();
    let stats: BTreeMap<String, &Group> = c.groups.iter().map(|g| (values_label(&g.values), g)).collect();
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["trial".to_string(), "status".into(), "seed".into()];
    header.extend(keys.iter().map(|k| k.to_string()));
    header.extend([
        sweep.objective.key.clone(),
        "config_mean".into(),
        "config_sd".into(),
        "config_seeds".into(),
        "note".into(),
    ]);
    let io = |e: csv::Error| err(&sd.dir.join("leaderboard.csv"), e.to_string());
    csv.write_record(&header).map_err(io)?;
    for e in &c.entries {
        let mut row = vec![e.trial.id.clone(), e.state.as_str().to_string(), e.trial.seed.to_string()];
        row.extend(e.trial.values.iter().map(|(_, v)| value_text(v)));
        row.push(e.objective.map(|v| format!("{v:.6}")).unwrap_or_default());
        match stats.get(&values_label(&e.trial.values)) {
            Some(g) => row.extend([format!("{:.6}", g.mean), format!("{:.6}", g.sd), g.n.to_string()]),
            None => row.extend([String::new(), String::new(), String::new()]),
        }
        row.push(e.note.clone());
        csv.write_record(&row).map_err(io)?;
    }
    let bytes = csv.into_inner().map_err(|e| err(&sd.dir, e.to_string()))?;
    write_atomic(&sd.dir.join("leaderboard.csv"), &bytes)?;
    write_atomic(&sd.dir.join("leaderboard.html"), html(&sweep, c).as_bytes())?;
    if let Some(best) = &c.best {
        let trial = Trial { id: String::new(), values: best.values.clone(), seed: sweep.seeds[0] };
        let config = sweep.trial_config(&trial).map_err(|e| err(&sd.dir, e.to_string()))?;
        let text = format!(
            "# The best configuration of this sweep by {} ({:?}): mean {:.6} ± {:.6} over {} seed(s).\n# mammogan train --config best.toml --data DATASET --out RUN\n{config}",
            sweep.objective.key, sweep.objective.direction, best.mean, best.sd, best.n
        );
        write_atomic(&sd.dir.join("best.toml"), text.as_bytes())?;
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page: self-contained (no script or font from elsewhere).
fn html(sweep: &Sweep, c: &Collected) -> String {
    let obj = esc(&sweep.objective.key);
    let mut h = String::new();
    h += "<!doctype html><meta charset=utf-8><title>mammogan sweep</title><style>\
          body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}\
          th{cursor:pointer;background:#f4f4f4}tr.bad td{color:#a00}svg{border:1px solid #ddd;margin:4px}</style>";
    let _ = write!(h, "<h1>Sweep: {obj} ({:?})</h1>", sweep.objective.direction);
    let finished = c.entries.iter().filter(|e| e.objective.is_some()).count();
    let _ = write!(h, "<p>{finished} of {} trials finished.</p>", c.entries.len());
    h += "<h2>Configurations (mean ± sd over seeds)</h2><table class=sortable><thead><tr><th>rank</th><th>configuration</th><th>mean</th><th>sd</th><th>seeds</th></tr></thead><tbody>";
    for (i, g) in c.groups.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            i + 1,
            esc(&values_label(&g.values)),
            g.mean,
            g.sd,
            g.n
        );
    }
    h += "</tbody></table><h2>Trials</h2><table class=sortable><thead><tr><th>trial</th><th>status</th><th>seed</th>";
    for a in &sweep.axes {
        let _ = write!(h, "<th>{}</th>", esc(&a.key));
    }
    let _ = write!(h, "<th>{obj}</th><th>note</th></tr></thead><tbody>");
    for e in &c.entries {
        let class = if e.objective.is_none() { " class=bad" } else { "" };
        let _ = write!(h, "<tr{class}><td>{}</td><td>{}</td><td>{}</td>", e.trial.id, e.state.as_str(), e.trial.seed);
        for (_, v) in &e.trial.values {
            let _ = write!(h, "<td>{}</td>", esc(&value_text(v)));
        }
        let o = e.objective.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into());
        let _ = write!(h, "<td>{o}</td><td>{}</td></tr>", esc(&e.note));
    }
    h += "</tbody></table><h2>Objective against each axis</h2>";
    for (i, a) in sweep.axes.iter().enumerate() {
        h += &axis_chart(i, a.key.as_str(), matches!(a.range, Range::LogUniform(..)), &c.entries, &obj);
    }
    // Sorting: click a header; numbers compare as numbers.
    h += "<script>document.querySelectorAll('table.sortable th').forEach((th,i)=>th.onclick=()=>{\
          const tb=th.closest('table').tBodies[0],rows=[...tb.rows],asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';\
          const v=r=>{const t=r.cells[i].textContent,n=parseFloat(t);return isNaN(n)?t:n};\
          rows.sort((a,b)=>{const x=v(a),y=v(b);return (x>y?1:x<y?-1:0)*(asc?1:-1)});rows.forEach(r=>tb.appendChild(r))});</script>";
    h
}

/// An inline SVG: each finished trial's objective against axis `index`'s value (numbers on a linear
/// or log scale, other values as categories), the mean of each value marked with a ± sd bar.
fn axis_chart(index: usize, key: &str, log: bool, entries: &[Entry], obj: &str) -> String {
    let points: Vec<(String, f64)> =
        entries.iter().filter_map(|e| Some((value_text(&e.trial.values.get(index)?.1), e.objective?))).collect();
    let (w, hgt, m) = (360.0, 220.0, 40.0);
    let mut s = format!(
        "<svg width={w} height={hgt} viewBox='0 0 {w} {hgt}' role=img><title>{obj} against {}</title>",
        esc(key)
    );
    if points.is_empty() {
        return s + "<text x=10 y=20>no finished trial</text></svg>";
    }
    let numeric: Option<Vec<f64>> =
        points.iter().map(|(x, _)| x.parse::<f64>().ok().filter(|v| !log || *v > 0.0)).collect();
    let mut categories: Vec<String> = points.iter().map(|(x, _)| x.clone()).collect();
    categories.sort();
    categories.dedup();
    let xpos: Vec<f64> = match &numeric {
        Some(xs) => xs.iter().map(|&x| if log { x.ln() } else { x }).collect(),
        None => points.iter().map(|(x, _)| categories.iter().position(|c| c == x).unwrap_or(0) as f64).collect(),
    };
    let (xmin, xmax) = xpos.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (ymin, ymax) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    let sx = |x: f64| m + if xmax > xmin { (x - xmin) / (xmax - xmin) * (w - 2.0 * m) } else { (w - 2.0 * m) / 2.0 };
    let sy = |y: f64| {
        hgt - m - if ymax > ymin { (y - ymin) / (ymax - ymin) * (hgt - 2.0 * m) } else { (hgt - 2.0 * m) / 2.0 }
    };
    let _ = write!(
        s,
        "<line x1={m} y1={} x2={} y2={} stroke=#888 /><line x1={m} y1={m} x2={m} y2={} stroke=#888 />",
        hgt - m,
        w - m,
        hgt - m,
        hgt - m
    );
    let _ =
        write!(s, "<text x={m} y={} font-size=11>{}{}</text>", hgt - 8.0, esc(key), if log { " (log)" } else { "" });
    let _ = write!(
        s,
        "<text x=2 y={} font-size=10>{ymax:.3}</text><text x=2 y={} font-size=10>{ymin:.3}</text>",
        m - 4.0,
        hgt - m + 12.0
    );
    for (&x, (_, y)) in xpos.iter().zip(&points) {
        let _ = write!(s, "<circle cx={:.1} cy={:.1} r=3 fill=#36c fill-opacity=0.6 />", sx(x), sy(*y));
    }
    // Mean ± sd at each distinct x.
    let mut at: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
    for (&x, (_, y)) in xpos.iter().zip(&points) {
        at.entry(x.to_bits()).or_insert((x, Vec::new())).1.push(*y);
    }
    for (x, ys) in at.values() {
        let n = ys.len() as f64;
        let mean = ys.iter().sum::<f64>() / n;
        let sd =
            if ys.len() > 1 { (ys.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        let _ = write!(
            s,
            "<line x1={0:.1} x2={0:.1} y1={1:.1} y2={2:.1} stroke=#c33 /><rect x={3:.1} y={4:.1} width=8 height=3 fill=#c33><title>mean {mean:.4} ± {sd:.4}</title></rect>",
            sx(*x),
            sy(mean - sd),
            sy(mean + sd),
            sx(*x) - 4.0,
            sy(mean) - 1.5
        );
    }
    s + "</svg>"
}
