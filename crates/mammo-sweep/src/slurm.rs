//! The Slurm route: one `sbatch --array` script whose task K trains and evaluates the K-th pending
//! trial (`DIR/slurm/pending-<n>.txt`) by running `mammogan sweep trial DIR ID`, natively or in the
//! container image (Apptainer or Singularity when the node has one, else Docker, decided on the node).

use std::path::{Path, PathBuf};

use crate::trials::{SweepError, err, write_atomic};

/// What the job asks of Slurm.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub cpus_per_task: usize,
    pub gres: Option<String>,
    /// The array's `%` limit: at most this many trials at once.
    pub max_parallel: Option<usize>,
    /// Run the trial in this container image instead of the binary on the node.
    pub image: Option<String>,
}

/// A word quoted for the shell (single quotes; a quote inside closed, escaped, reopened).
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A value for an `#SBATCH` line: one line, no shell metacharacters an option could not hold.
fn option_value(name: &str, v: &str) -> Result<String, String> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control() || "'\"`$\\;&|<>".contains(c)) {
        return Err(format!("--{name} '{v}': must be one word without quotes or shell characters"));
    }
    Ok(v.to_string())
}

/// The array script for `count` pending trials listed in `pending`. `exe`: the binary on the nodes
/// (native route); `inputs`: what the trials read (the DATASET, and the whole images with `--images`),
/// mounted read-only at the same paths in a container.
pub fn script(
    dir: &Path,
    pending: &Path,
    count: usize,
    exe: &Path,
    inputs: &[&Path],
    o: &SlurmOptions,
) -> Result<String, String> {
    let dir_s = dir.to_string_lossy();
    let mut s =
        String::from("#!/bin/bash\n# Written by `mammogan sweep run --on slurm`; one array task = one trial.\n");
    s += "#SBATCH --job-name=mammogan-sweep\n";
    let limit = o.max_parallel.map(|p| format!("%{p}")).unwrap_or_default();
    s += &format!("#SBATCH --array=0-{}{limit}\n", count.saturating_sub(1));
    s += &format!("#SBATCH --cpus-per-task={}\n", o.cpus_per_task.max(1));
    if let Some(p) = &o.partition {
        s += &format!("#SBATCH --partition={}\n", option_value("partition", p)?);
    }
    if let Some(t) = &o.time {
        s += &format!("#SBATCH --time={}\n", option_value("time", t)?);
    }
    if let Some(g) = &o.gres {
        s += &format!("#SBATCH --gres={}\n", option_value("gres", g)?);
    }
    // %A job, %a task: one log per trial attempt, beside the sweep.
    s += &format!("#SBATCH --output={}\n", option_value("out", &format!("{dir_s}/slurm/%A_%a.out"))?);
    s += "set -euo pipefail\n";
    s += &format!("id=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {})\n", sh_quote(&pending.to_string_lossy()));
    s += "test -n \"$id\" || { echo \"no trial for task $SLURM_ARRAY_TASK_ID\" >&2; exit 1; }\n";
    let threads = o.cpus_per_task.max(1);
    let dq = sh_quote(&dir_s);
    let inputs: Vec<String> = inputs.iter().map(|p| sh_quote(&p.to_string_lossy())).collect();
    match &o.image {
        None => {
            s += &format!("exec {} sweep trial {dq} \"$id\" --threads {threads}\n", sh_quote(&exe.to_string_lossy()));
        }
        Some(image) => {
            let img = sh_quote(image);
            // The sweep and the inputs at the same paths inside, so the paths in sweep.json hold;
            // the caller's uid, so the files written belong to the user.
            let volumes: String = inputs.iter().map(|p| format!(" -v {p}:{p}:ro")).collect();
            let binds: String = inputs.iter().map(|p| format!(",{p}:{p}:ro")).collect();
            s += "if command -v apptainer >/dev/null; then runner=apptainer; \
                  elif command -v singularity >/dev/null; then runner=singularity; else runner=docker; fi\n";
            s += "if [ \"$runner\" = docker ]; then\n";
            s += &format!(
                "  exec docker run --rm --user \"$(id -u):$(id -g)\" --cpus {threads} -e HOME=/tmp \
                 -v {dq}:{dq}{volumes} {img} sweep trial {dq} \"$id\" --threads {threads}\n"
            );
            s += "else\n";
            s += &format!(
                "  exec \"$runner\" exec --bind {dq}{binds} docker-daemon:{img} mammogan sweep trial {dq} \"$id\" --threads {threads}\n"
            );
            s += "fi\n";
        }
    }
    Ok(s)
}

/// Writes the pending list and the script under `DIR/slurm/`; returns the script's path.
pub fn write(
    dir: &Path,
    pending: &[String],
    exe: &Path,
    inputs: &[&Path],
    o: &SlurmOptions,
) -> Result<PathBuf, SweepError> {
    let slurm = dir.join("slurm");
    std::fs::create_dir_all(&slurm).map_err(|e| err(&slurm, e.to_string()))?;
    let list = slurm.join("pending.txt");
    write_atomic(&list, (pending.join("\n") + "\n").as_bytes())?;
    let text = script(dir, &list, pending.len(), exe, inputs, o).map_err(|m| err(dir, m))?;
    let path = slurm.join("array.sh");
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Submits `script` with `sbatch --parsable`; returns the job id (also kept in `DIR/slurm/job_id`
/// for `sweep status`).
pub fn submit(dir: &Path, script: &Path) -> Result<String, SweepError> {
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| err(script, format!("cannot run sbatch: {e}")))?;
    if !out.status.success() {
        return Err(err(
            script,
            format!("sbatch failed: {}", String::from_utf8_lossy(&out.stderr).trim().replace('\n', " ")),
        ));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").to_string();
    write_atomic(&dir.join("slurm").join("job_id"), format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// `squeue`'s view of the sweep's job: one line per task still queued or running, or `None` when
/// there is no job id or no squeue.
pub fn queue(dir: &Path) -> Option<String> {
    let id = std::fs::read_to_string(dir.join("slurm").join("job_id")).ok()?;
    let out = std::process::Command::new("squeue").args(["-h", "-j", id.trim(), "-o", "%i %T %M"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sacct`'s view of the sweep's job once `squeue` no longer lists it: one line per task with its
/// final state and exit code. `None` when there is no job id, no sacct, or no accounting (sacct fails
/// without slurmdbd, as on a one-node test cluster): the trials' files still tell each state.
pub fn accounting(dir: &Path) -> Option<String> {
    let id = std::fs::read_to_string(dir.join("slurm").join("job_id")).ok()?;
    let out = std::process::Command::new("sacct")
        .args(["-n", "-X", "-P", "-j", id.trim(), "-o", "JobID,State,ExitCode"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.replace('|', " ")).collect();
    (out.status.success() && !lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_asks_for_what_was_given_and_quotes_paths() {
        let o = SlurmOptions {
            partition: Some("cpu".into()),
            time: Some("00:30:00".into()),
            cpus_per_task: 2,
            gres: None,
            max_parallel: Some(2),
            image: None,
        };
        // A space cannot stand in an #SBATCH line (the log path): refused by name.
        let spaced = Path::new("/s w/sweep");
        let e = script(spaced, spaced, 4, spaced, &[spaced], &o).unwrap_err();
        assert!(e.starts_with("--out '/s w/sweep/slurm/%A_%a.out'"), "{e}");
        let dir = Path::new("/s/sweep");
        let s =
            script(dir, &dir.join("slurm/pending.txt"), 4, Path::new("/opt/mammogan"), &[Path::new("/d")], &o).unwrap();
        for line in [
            "#SBATCH --array=0-3%2",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --partition=cpu",
            "#SBATCH --time=00:30:00",
            "exec /opt/mammogan sweep trial /s/sweep \"$id\" --threads 2",
        ] {
            assert!(s.lines().any(|l| l == line), "{line} missing:\n{s}");
        }
        assert!(!s.contains("--gres"));
        let docker = SlurmOptions { image: Some("mammogan:cpu".into()), ..o.clone() };
        let pending = Path::new("/s/slurm/pending.txt");
        let s = script(Path::new("/s"), pending, 4, Path::new("/x"), &[Path::new("/d")], &docker).unwrap();
        let run = s.lines().find(|l| l.trim_start().starts_with("exec docker run")).unwrap();
        assert_eq!(
            run.trim(),
            "exec docker run --rm --user \"$(id -u):$(id -g)\" --cpus 2 -e HOME=/tmp -v /s:/s -v /d:/d:ro mammogan:cpu \
             sweep trial /s \"$id\" --threads 2"
        );
        // With --images, the images are mounted too (read-only), for Docker and Apptainer alike.
        let inputs = [Path::new("/d"), Path::new("/img s")];
        let s = script(Path::new("/s"), pending, 4, Path::new("/x"), &inputs, &docker).unwrap();
        assert!(s.contains(" -v /s:/s -v /d:/d:ro -v '/img s':'/img s':ro mammogan:cpu "), "{s}");
        assert!(s.contains("--bind /s,/d:/d:ro,'/img s':'/img s':ro docker-daemon:mammogan:cpu "), "{s}");
        let bad = SlurmOptions { partition: Some("a;rm -rf".into()), ..o };
        assert!(script(dir, dir, 1, dir, &[dir], &bad).unwrap_err().contains("--partition"));
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
