//! The project's pseudonym key for the workflows that name or find input files: `prepare`, `quickstart`,
//! SageMaker training (create it on first use) and `evaluate --images` (it must be the dataset's).

use std::path::Path;

use anyhow::Result;
use mammo_prep::PseudonymKey;
use mammo_prep::key_file;

/// The key `prepare` names patients and files with: `--key-file`, `$MAMMOGAN_KEY_FILE` or the user's
/// config folder, created there on first use. Refused when it lies inside the input, which would
/// carry it into the dataset's inputs.
pub fn for_prepare(explicit: Option<&Path>, input: &Path) -> Result<PseudonymKey> {
    let path = key_file::resolve(explicit)?;
    key_file::check_outside(&path, input)?;
    let (key, created) = key_file::load_or_create(&path)?;
    if created {
        tracing::info!(
            "created a new pseudonym key in {}: keep it (and back it up) to map datasets back to their inputs",
            path.display()
        );
    }
    Ok(key)
}

/// The key a dataset was prepared with, to find its input files again; it must exist.
pub fn for_lookup(explicit: Option<&Path>) -> Result<PseudonymKey> {
    Ok(key_file::load(&key_file::resolve(explicit)?)?)
}
