//! Work that may fail without failing the statement around it, as a
//! PL/pgSQL block with an EXCEPTION clause does.

use pgrx::pg_sys;

use crate::error::{AmbientError, AmbientResult};

/// Why work in a subtransaction failed.
pub(super) enum Failure {
    Ambient(AmbientError),
    Postgres(Box<pgrx::pg_sys::panic::CaughtError>),
}

/// Runs `work` in a subtransaction, as a PL/pgSQL block with an EXCEPTION
/// clause does: if it fails, whether with our error or a Postgres one
/// (a timeout among them), everything it wrote is rolled back and the
/// failure is returned, so the caller can still record it.
pub(super) fn in_subtransaction<T>(work: impl FnOnce() -> AmbientResult<T>) -> Result<T, Failure> {
    subtransaction(work, true)
}

/// Runs `work` in a subtransaction that is rolled back whatever happens: a
/// dry run, whose writes go and whose answer stays (`ambient.reproduce`
/// trains and keeps nothing but the artifact's hash).
pub(super) fn rolled_back<T>(work: impl FnOnce() -> AmbientResult<T>) -> Result<T, Failure> {
    subtransaction(work, false)
}

fn subtransaction<T>(work: impl FnOnce() -> AmbientResult<T>, keep: bool) -> Result<T, Failure> {
    // SAFETY: the memory context and resource owner are saved and put back
    // around the subtransaction, as PL/pgSQL's exec_stmt_block does.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let work = std::panic::AssertUnwindSafe(work);
        let outcome = pgrx::PgTryBuilder::new(move || {
            // The whole wrapper moves in (not its field), so it stays
            // unwind-safe.
            let work = work;
            (work.0)().map_err(Failure::Ambient)
        })
        .catch_others(|caught| Err(Failure::Postgres(Box::new(caught))))
        .execute();
        if keep && outcome.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        outcome
    }
}
