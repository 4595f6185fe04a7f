//! TODO
use super::Case;
use crate::error::Result;
use std::path::Path;

pub(super) fn load(dir: &Path) -> Result<Vec<Case>> {
    Err(crate::error::IoError::unsupported(dir, "layout not implemented yet"))
}
