//! A phantom written with a progress bar: what `phantom` and `quickstart` run.

use std::path::Path;

use anyhow::{Context, Result};
use mammo_phantom::{OutputFormat, PhantomParams, PhantomSummary};

use crate::progress::Progress;

/// Writes `params.cases` synthetic mammograms into `out` in `format`.
pub fn write(
    out: &Path,
    params: &PhantomParams,
    format: OutputFormat,
    progress: &dyn Progress,
) -> Result<PhantomSummary> {
    let bar = progress.bar(params.cases, "phantom");
    let summary = mammo_phantom::write_phantom(out, params, format, &|done, _total| bar.set_position(done as u64))
        .with_context(|| format!("phantom into {}", out.display()))?;
    bar.finish();
    Ok(summary)
}
