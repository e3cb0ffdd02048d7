//! The SQL surface. Each function parses and checks its arguments, then
//! calls into `catalog`, `source` and `ml`.

mod algorithms;
mod attach;
mod challenge;
mod deploy;
mod drift;
mod drop;
mod explain;
mod features;
mod grant;
mod guard;
mod history;
mod lookup;
mod model_cache;
mod monitor;
mod policy;
mod predict;
mod report;
mod serve;
mod subtransaction;
mod train;

use crate::error::{AmbientError, AmbientResult};

#[cfg(any(test, feature = "pg_test"))]
pub use model_cache::{cached_models, LIVE_MODEL_READS};
#[cfg(any(test, feature = "pg_test"))]
pub use predict::RESOLUTIONS;

/// Project names are values, bound as parameters everywhere; this only
/// keeps them printable and of sane length.
fn check_project_name(name: &str) -> AmbientResult<()> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(AmbientError::invalid(format!(
            "invalid project name \"{}\"",
            name.escape_default()
        ))
        .hint("use 1 to 200 printable characters"));
    }
    Ok(())
}
