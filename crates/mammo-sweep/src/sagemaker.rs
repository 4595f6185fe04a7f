//! The SageMaker route: a CreateHyperParameterTuningJob request whose training jobs run `train` in
//! SageMaker mode (the `mammogan:sagemaker` image; its contract is `mammo_serve::sagemaker`).
//!
//! The sweep file maps onto the request: the base config becomes StaticHyperParameters (`section.key`
//! = value, as that mode reads hyperparameters.json), list axes and the seeds CategoricalParameterRanges,
//! uniform / log-uniform axes Continuous or IntegerParameterRanges (Linear / Logarithmic), the
//! objective `val:<key>`, read from the `METRIC split=val val.<key>=...;` line SageMaker mode prints
//! after training (the validation split: the test split is printed too, and must not be optimised).
//! A sweep of lists alone is a Grid (every combination, each seed a trial, exactly the sweep's trials);
//! with a random axis it is Bayesian, with as many training jobs as the sweep has trials.
//!
//! ```text
//! DIR/sagemaker/tuning-job.json   the request last written (aws ... --cli-input-json file://...)
//! DIR/sagemaker/submitted.txt     the tuning jobs created from this directory
//! ```
//! The trials run in SageMaker, not in DIR: `sweep status` and `sweep collect` see none of them;
//! SageMaker's console or `aws sagemaker describe-hyper-parameter-tuning-job` does.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::spec::{Direction, Range, Sweep, value_text};
use crate::submit;
use crate::trials::{SweepError, err, write_atomic};

/// The channel SageMaker mode reads by default (`mammo_serve::sagemaker::DEFAULT_CHANNEL`).
pub const CHANNEL: &str = "training";
/// The API's limits (botocore's service model, sagemaker 2017-07-24).
const MAX_NAME: usize = 32;
const MAX_RANGES: usize = 30;
const MAX_CATEGORICAL_VALUES: usize = 30;
const MAX_STATIC: usize = 100;
const MAX_STATIC_VALUE: usize = 2500;

/// What the tuning job asks of SageMaker.
#[derive(Clone, Debug)]
pub struct SageMakerOptions {
    /// The training image (required): `ACCOUNT.dkr.ecr.REGION.amazonaws.com/mammogan:sagemaker`.
    pub image: Option<String>,
    /// The execution role SageMaker assumes (required).
    pub role_arn: Option<String>,
    /// `s3://...`: the prepared DATASET, the `training` channel (required).
    pub s3_data: Option<String>,
    /// `s3://...`: where each training job's model goes (required).
    pub s3_output: Option<String>,
    pub instance_type: String,
    pub volume_gb: u32,
    /// MaxRuntimeInSeconds of each training job.
    pub max_runtime_s: u64,
    /// Training jobs at once (default: the trials, at most 4; Bayesian learns from finished ones).
    pub max_parallel: Option<usize>,
}

impl Default for SageMakerOptions {
    fn default() -> Self {
        SageMakerOptions {
            image: None,
            role_arn: None,
            s3_data: None,
            s3_output: None,
            instance_type: "ml.m5.xlarge".into(),
            volume_gb: 30,
            max_runtime_s: 24 * 3600,
            max_parallel: None,
        }
    }
}

/// A time limit as Slurm writes it (`MM`, `HH:MM:SS`, `D-HH:MM:SS`, `D-HH`) in seconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || format!("--time '{s}': give minutes, HH:MM:SS or D-HH:MM:SS");
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().map_err(|_| bad())?, r),
        None => (0, s),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse::<u64>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let secs = match (s.contains('-'), &parts[..]) {
        (false, &[m]) => m * 60,
        (false, &[m, sec]) => m * 60 + sec,
        (_, &[h, m, sec]) => h * 3600 + m * 60 + sec,
        (true, &[h]) => h * 3600,
        (true, &[h, m]) => h * 3600 + m * 60,
        _ => return Err(bad()),
    };
    let total = days * 86400 + secs;
    if total == 0 { Err(bad()) } else { Ok(total) }
}

/// Whether `arn` has the shape of an IAM role ARN (`arn:aws[-partition]:iam::<12 digits>:role/NAME`).
fn role_arn_ok(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else { return false };
    let Some((partition, rest)) = rest.split_once(":iam::") else { return false };
    let Some((account, role)) = rest.split_once(":role") else { return false };
    partition.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && role.len() > 1
        && role.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c))
        && (20..=2048).contains(&arn.len())
}

fn s3_uri<'a>(option: &str, v: Option<&'a str>) -> Result<&'a str, String> {
    let v = v.ok_or_else(|| format!("{option}: required with --on sagemaker (an s3://BUCKET/PREFIX/ URI)"))?;
    match v.strip_prefix("s3://") {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && v.len() <= 1024 && !v.contains(char::is_whitespace) =>
        {
            Ok(v)
        }
        _ => Err(format!("{option} '{v}': not an s3://BUCKET/PREFIX URI")),
    }
}

/// A tuning job's name: 1-32 of `[a-zA-Z0-9](-*[a-zA-Z0-9])*`.
pub fn name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// The keys of `eval/metrics.json` that SageMaker mode prints on its METRIC lines: `evaluate` there
/// scores the split's patches (no whole images), so the `image.*`, `breast.*` and `detection.*`
/// figures of `evaluate --images` are never printed and cannot be an objective.
pub fn metric_keys() -> Vec<String> {
    mammo_eval::flatten_metrics(None, None, None, None).keys().cloned().collect()
}

/// A regex for `split.key=VALUE;` on a METRIC line (`metric_line`: ` key=-0.431200;`, fixed point).
/// The leading space keeps `val.classifier.auc` from matching inside a longer key.
pub fn metric_regex(split: &str, key: &str) -> String {
    let escaped: String = format!("{split}.{key}")
        .chars()
        .flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', c] })
        .collect();
    format!(" {escaped}=(-?[0-9]+\\.[0-9]+);")
}

/// The `section.key` = value pairs of a (nested) config table, as hyperparameters.json holds them.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, value_text(other))),
        }
    }
}

/// The CreateHyperParameterTuningJob request `name` for `sweep`. Every option and every limit of the
/// API is checked here; an error is one line naming the option or the sweep's key.
pub fn request(sweep: &Sweep, name: &str, o: &SageMakerOptions) -> Result<Value, String> {
    let image = o
        .image
        .as_deref()
        .filter(|i| !i.trim().is_empty())
        .ok_or("--image: required with --on sagemaker (the training image, ACCOUNT.dkr.ecr.REGION.amazonaws.com/mammogan:sagemaker)")?;
    if image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("--image '{image}': an image reference of at most 255 characters, no spaces"));
    }
    let role = o
        .role_arn
        .as_deref()
        .ok_or("--role-arn: required with --on sagemaker (the execution role, arn:aws:iam::ACCOUNT:role/NAME)")?;
    if !role_arn_ok(role) {
        return Err(format!("--role-arn '{role}': not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"));
    }
    let s3_data = s3_uri("--s3-data", o.s3_data.as_deref())?;
    let s3_output = s3_uri("--s3-output", o.s3_output.as_deref())?;
    if !o.instance_type.starts_with("ml.") || o.instance_type.contains(char::is_whitespace) {
        return Err(format!(
            "--instance-type '{}': a SageMaker training instance type, e.g. ml.m5.xlarge",
            o.instance_type
        ));
    }
    if !name_ok(name) {
        return Err(format!("tuning job name '{name}': at most {MAX_NAME} letters, digits and inner '-'"));
    }
    let objective = &sweep.objective.key;
    let keys = metric_keys();
    if !keys.contains(objective) {
        return Err(format!(
            "objective.key {objective}: SageMaker mode prints only the patch metrics of the validation split ({})",
            keys.join(", ")
        ));
    }

    let mut categorical = Vec::new();
    let mut continuous = Vec::new();
    let mut integer = Vec::new();
    for a in &sweep.axes {
        match &a.range {
            Range::Values(values) => {
                if values.len() > MAX_CATEGORICAL_VALUES {
                    return Err(format!(
                        "axis {}: {} values; SageMaker takes at most {MAX_CATEGORICAL_VALUES} per categorical range",
                        a.key,
                        values.len()
                    ));
                }
                categorical.push(json!({ "Name": a.key, "Values": values.iter().map(value_text).collect::<Vec<_>>() }));
            }
            Range::Uniform(lo, hi) | Range::LogUniform(lo, hi) => {
                let scaling = if matches!(a.range, Range::LogUniform(..)) { "Logarithmic" } else { "Linear" };
                if a.integer {
                    let (lo, hi) = (lo.round() as i64, hi.round() as i64);
                    integer.push(json!({ "Name": a.key, "MinValue": lo.to_string(), "MaxValue": hi.to_string(), "ScalingType": scaling }));
                } else {
                    continuous.push(json!({ "Name": a.key, "MinValue": format!("{lo}"), "MaxValue": format!("{hi}"), "ScalingType": scaling }));
                }
            }
        }
    }
    // Each seed is a value of train.seed, so a Grid trains every configuration once per seed.
    if sweep.seeds.len() > MAX_CATEGORICAL_VALUES {
        return Err(format!("seeds: {} seeds; SageMaker takes at most {MAX_CATEGORICAL_VALUES}", sweep.seeds.len()));
    }
    categorical
        .push(json!({ "Name": "train.seed", "Values": sweep.seeds.iter().map(u64::to_string).collect::<Vec<_>>() }));
    let ranges = categorical.len() + continuous.len() + integer.len();
    if ranges > MAX_RANGES {
        return Err(format!(
            "axis: {ranges} tuned hyperparameters with the seeds; SageMaker takes at most {MAX_RANGES}"
        ));
    }

    // The base config, less what is tuned (a hyperparameter cannot be both static and tuned).
    let mut statics = Vec::new();
    flatten("", &sweep.base, &mut statics);
    statics.retain(|(k, _)| k != "train.seed" && !sweep.axes.iter().any(|a| &a.key == k));
    if statics.len() > MAX_STATIC {
        return Err(format!(
            "base: {} config keys; SageMaker takes at most {MAX_STATIC} static hyperparameters",
            statics.len()
        ));
    }
    if let Some((k, v)) = statics.iter().find(|(_, v)| v.len() > MAX_STATIC_VALUE) {
        return Err(format!("base.{k}: a value of {} characters; SageMaker takes at most {MAX_STATIC_VALUE}", v.len()));
    }
    let statics: serde_json::Map<String, Value> = statics.into_iter().map(|(k, v)| (k, Value::String(v))).collect();

    let grid = sweep.axes.iter().all(|a| matches!(a.range, Range::Values(_)));
    let trials = sweep.trials().len();
    let parallel = o.max_parallel.filter(|&p| p > 0).unwrap_or(4).min(trials).max(1);
    // Grid computes the number of jobs from the combinations (they are the sweep's trials) and
    // takes no MaxNumberOfTrainingJobs.
    let limits = if grid {
        json!({ "MaxParallelTrainingJobs": parallel })
    } else {
        json!({ "MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel })
    };
    let direction = match sweep.objective.direction {
        Direction::Maximize => "Maximize",
        Direction::Minimize => "Minimize",
    };
    let metrics: Vec<Value> = ["val", "test"]
        .iter()
        .map(|split| json!({ "Name": format!("{split}:{objective}"), "Regex": metric_regex(split, objective) }))
        .collect();
    Ok(json!({
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": if grid { "Grid" } else { "Bayesian" },
            "HyperParameterTuningJobObjective": { "Type": direction, "MetricName": format!("val:{objective}") },
            "ResourceLimits": limits,
            "ParameterRanges": {
                "CategoricalParameterRanges": categorical,
                "ContinuousParameterRanges": continuous,
                "IntegerParameterRanges": integer,
            },
            "TrainingJobEarlyStoppingType": "Off",
            // The API's integers are 32-bit.
            "RandomSeed": sweep.random_seed % (1 << 31),
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": statics,
            "AlgorithmSpecification": {
                "TrainingImage": image,
                "TrainingInputMode": "File",
                "MetricDefinitions": metrics,
            },
            "RoleArn": role,
            "InputDataConfig": [{
                "ChannelName": CHANNEL,
                "DataSource": { "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": s3_data,
                    "S3DataDistributionType": "FullyReplicated",
                } },
            }],
            "OutputDataConfig": { "S3OutputPath": s3_output },
            "ResourceConfig": { "InstanceType": o.instance_type, "InstanceCount": 1, "VolumeSizeInGB": o.volume_gb },
            "StoppingCondition": { "MaxRuntimeInSeconds": o.max_runtime_s },
        },
    }))
}

/// Checks the options and the sweep before anything is written (the sweep directory included).
pub fn check(dir: &Path, sweep: &Sweep, o: &SageMakerOptions) -> Result<(), SweepError> {
    request(sweep, "check", o).map(|_| ()).map_err(|m| err(dir, m))
}

/// Writes `DIR/sagemaker/tuning-job.json`; returns its path and the tuning job's name.
pub fn write(dir: &Path, sweep: &Sweep, o: &SageMakerOptions) -> Result<(PathBuf, String), SweepError> {
    let sdir = dir.join("sagemaker");
    let name = format!("mammogan-{}-{}", submit::dir_tag(dir), submit::next_number(&sdir));
    let body = request(sweep, &name, o).map_err(|m| err(dir, m))?;
    std::fs::create_dir_all(&sdir).map_err(|e| err(&sdir, e.to_string()))?;
    let path = sdir.join("tuning-job.json");
    write_atomic(&path, &serde_json::to_vec_pretty(&body).expect("serialises"))?;
    Ok((path, name))
}

/// The `aws` command that creates the tuning job from `path`.
pub fn create_args(path: &Path) -> Vec<String> {
    vec![
        "sagemaker".into(),
        "create-hyper-parameter-tuning-job".into(),
        "--cli-input-json".into(),
        format!("file://{}", path.display()),
    ]
}

/// Whether the `aws` CLI is installed and has credentials that work.
pub fn aws_configured() -> bool {
    submit::succeeds("aws", &["sts", "get-caller-identity"])
}

/// Creates the tuning job, then records it in `submitted.txt`.
pub fn submit(dir: &Path, path: &Path, name: &str) -> Result<(), SweepError> {
    let args = create_args(path);
    submit::run("aws", &args.iter().map(String::as_str).collect::<Vec<_>>(), path)?;
    submit::record(&dir.join("sagemaker"), name)
}

/// What `sweep status` says about the SageMaker route, `None` when it was never used.
pub fn status(dir: &Path) -> Option<String> {
    let sdir = dir.join("sagemaker");
    let path = sdir.join("tuning-job.json");
    let body: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let written = body["HyperParameterTuningJobName"].as_str().unwrap_or("").to_string();
    let created = submit::submitted(&sdir);
    let mut s = format!("sagemaker: {} written for tuning job {written}", path.display());
    match created.last() {
        None => s += "; not created",
        Some(last) => {
            s += &format!("; created: {} (its trials run in SageMaker, not in this directory)", created.join(", "));
            if aws_configured()
                && let Ok(out) = submit::run(
                    "aws",
                    &[
                        "sagemaker",
                        "describe-hyper-parameter-tuning-job",
                        "--hyper-parameter-tuning-job-name",
                        last,
                        "--query",
                        "[HyperParameterTuningJobStatus, TrainingJobStatusCounters]",
                        "--output",
                        "json",
                    ],
                    &path,
                )
            {
                s += &format!(
                    "\naws sagemaker describe-hyper-parameter-tuning-job {last}: {}",
                    out.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJ: &str = "[objective]\nkey = \"classifier.auc\"\ndirection = \"maximize\"\n";

    fn sweep(text: &str) -> Sweep {
        Sweep::parse(text, Path::new("s.toml")).unwrap()
    }

    fn options() -> SageMakerOptions {
        SageMakerOptions {
            image: Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/mammogan:sagemaker".into()),
            role_arn: Some("arn:aws:iam::123456789012:role/SageMakerExecution".into()),
            s3_data: Some("s3://bucket/mammogan/dataset/".into()),
            s3_output: Some("s3://bucket/mammogan/tuning/".into()),
            max_parallel: Some(2),
            ..SageMakerOptions::default()
        }
    }

    #[test]
    fn a_grid_is_a_grid_of_every_seed() {
        let s = sweep(&format!(
            "seeds = [1, 2]\n{OBJ}[base.train]\nsteps = 6\nseed = 9\n[base.attribution]\nsteps = 2\n\
             [[axis]]\nkey = \"classifier.lr\"\nvalues = [0.001, 0.003]\n"
        ));
        let r = request(&s, "mammogan-abc-1", &options()).unwrap();
        let c = &r["HyperParameterTuningJobConfig"];
        assert_eq!(c["Strategy"], "Grid");
        assert!(c["ResourceLimits"].get("MaxNumberOfTrainingJobs").is_none(), "Grid counts its own jobs");
        assert_eq!(c["ResourceLimits"]["MaxParallelTrainingJobs"], 2);
        assert_eq!(
            c["HyperParameterTuningJobObjective"],
            json!({"Type": "Maximize", "MetricName": "val:classifier.auc"})
        );
        assert_eq!(
            c["ParameterRanges"]["CategoricalParameterRanges"],
            json!([{"Name": "classifier.lr", "Values": ["0.001", "0.003"]}, {"Name": "train.seed", "Values": ["1", "2"]}])
        );
        let d = &r["TrainingJobDefinition"];
        // The base, less the seed (tuned); strings, as hyperparameters.json holds them.
        assert_eq!(d["StaticHyperParameters"], json!({"attribution.steps": "2", "train.steps": "6"}));
        assert_eq!(d["InputDataConfig"][0]["ChannelName"], "training");
        assert_eq!(
            d["ResourceConfig"],
            json!({"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30})
        );
        let m = &d["AlgorithmSpecification"]["MetricDefinitions"];
        assert_eq!(
            m[0],
            json!({"Name": "val:classifier.auc", "Regex": " val\\.classifier\\.auc=(-?[0-9]+\\.[0-9]+);"})
        );
    }

    #[test]
    fn random_axes_make_a_bayesian_search_of_as_many_jobs_as_trials() {
        let s = sweep(&format!(
            "seeds = [1, 2, 3]\nsamples = 4\n{OBJ}[[axis]]\nkey = \"classifier.blocks\"\nvalues = [2, 3]\n\
             [[axis]]\nkey = \"classifier.lr\"\nlog_uniform = [3e-4, 3e-3]\n\
             [[axis]]\nkey = \"train.batch_size\"\nuniform = [8, 64]\n"
        ));
        let r = request(&s, "n", &options()).unwrap();
        let c = &r["HyperParameterTuningJobConfig"];
        assert_eq!(c["Strategy"], "Bayesian");
        assert_eq!(c["ResourceLimits"]["MaxNumberOfTrainingJobs"], 2 * 4 * 3);
        assert_eq!(
            c["ParameterRanges"]["ContinuousParameterRanges"],
            json!([{"Name": "classifier.lr", "MinValue": "0.0003", "MaxValue": "0.003", "ScalingType": "Logarithmic"}])
        );
        assert_eq!(
            c["ParameterRanges"]["IntegerParameterRanges"],
            json!([{"Name": "train.batch_size", "MinValue": "8", "MaxValue": "64", "ScalingType": "Linear"}])
        );
    }

    #[test]
    fn the_regex_reads_the_val_line_and_nothing_else() {
        // The lines as `mammo_serve::sagemaker::metric_line` writes them (its own test pins the format).
        let lines = [
            "METRIC step=6 train.classifier.loss=0.431200; train.classifier.val.classifier.auc=0.100000;",
            "METRIC split=val val.classifier.auc=0.973100; val.classifier.sensitivity=0.900000;",
            "METRIC split=test test.classifier.auc=0.951200;",
        ];
        let rx = metric_regex("val", "classifier.auc");
        // Without a regex crate: the literal part before the group, then the number up to ';'.
        let literal = rx.split('(').next().unwrap().replace('\\', "");
        let found: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.find(&literal).map(|i| l[i + literal.len()..].split(';').next().unwrap()))
            .collect();
        assert_eq!(found, ["0.973100"]);
    }

    #[test]
    fn bad_input_is_one_line_naming_the_option() {
        let s = sweep(&format!("{OBJ}[[axis]]\nkey = \"classifier.lr\"\nvalues = [0.001]\n"));
        let cases: Vec<(SageMakerOptions, &str)> = vec![
            (SageMakerOptions { image: None, ..options() }, "--image: required"),
            (SageMakerOptions { role_arn: None, ..options() }, "--role-arn: required"),
            (
                SageMakerOptions { role_arn: Some("SageMakerExecution".into()), ..options() },
                "--role-arn 'SageMakerExecution'",
            ),
            (SageMakerOptions { s3_data: None, ..options() }, "--s3-data: required"),
            (SageMakerOptions { s3_output: Some("/local/out".into()), ..options() }, "--s3-output '/local/out'"),
            (SageMakerOptions { instance_type: "m5.xlarge".into(), ..options() }, "--instance-type 'm5.xlarge'"),
        ];
        for (o, needle) in cases {
            let e = request(&s, "n", &o).unwrap_err();
            assert!(e.starts_with(needle) && !e.contains('\n'), "{needle}: {e}");
        }
        let e = request(&s, "a-name-of-more-than-thirty-two-characters", &options()).unwrap_err();
        assert!(e.starts_with("tuning job name"), "{e}");
        let image = sweep("[objective]\nkey = \"image.auc\"\ndirection = \"maximize\"\n");
        let e = request(&image, "n", &options()).unwrap_err();
        assert!(e.starts_with("objective.key image.auc: SageMaker mode prints only"), "{e}");
        let many = sweep(&format!(
            "{OBJ}[[axis]]\nkey = \"classifier.lr\"\nvalues = [{}]\n",
            (1..=31).map(|i| format!("0.{i:03}")).collect::<Vec<_>>().join(", ")
        ));
        assert!(request(&many, "n", &options()).unwrap_err().starts_with("axis classifier.lr: 31 values"));
        assert_eq!(parse_time("04:00:00"), Ok(14400));
        assert_eq!(parse_time("1-00:00:00"), Ok(86400));
        assert_eq!(parse_time("90"), Ok(5400));
        assert!(parse_time("soon").unwrap_err().starts_with("--time 'soon'"));
        assert!(name_ok("mammogan-0123abcd-12") && !name_ok("-x") && !name_ok("a_b"));
    }
}
