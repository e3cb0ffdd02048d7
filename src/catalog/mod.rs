//! Typed access to the `ambient` catalog over SPI. This is the only module
//! that writes catalog SQL. Reads run as the caller with read-only SPI, so
//! the predict path works in parallel workers and on standbys; writes run as
//! the extension owner (see `as_extension_owner`), because ordinary roles
//! may read the catalog but not change it.

pub mod deployments;
pub mod models;
pub mod projects;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys::{self, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiTupleTable};

use crate::error::{AmbientError, AmbientResult};

/// The role running the statement, recorded as `created_by`/`deployed_by`.
pub fn current_user_name() -> String {
    // SAFETY: GetUserNameFromId returns a palloc'd C string or raises.
    unsafe {
        CStr::from_ptr(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false))
            .to_string_lossy()
            .into_owned()
    }
}

/// The first column of the first row, or `None` when there is no row.
/// Read-only SPI, as the caller.
pub fn select_one<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> AmbientResult<Option<T>> {
    Spi::connect(|client| {
        let table = client.select(sql, Some(1), args)?;
        if table.is_empty() {
            return Ok(None);
        }
        Ok(table.first().get_one::<T>()?)
    })
}

thread_local! {
    /// Plans of the predict path's catalog reads, prepared once per backend.
    /// Postgres re-plans them by itself if the catalog tables change.
    static KEPT_PLANS: RefCell<HashMap<&'static str, OwnedPreparedStatement>> =
        RefCell::new(HashMap::new());
}

/// Runs a read-only catalog query through a plan kept for the backend's
/// life, so the statement-per-call predict path pays for parsing and
/// planning once. `read` gets the result table.
pub fn select_kept<R>(
    sql: &'static str,
    arg_types: &[PgOid],
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(SpiTupleTable<'_>) -> AmbientResult<R>,
) -> AmbientResult<R> {
    Spi::connect(|client| {
        KEPT_PLANS.with(|plans| {
            let mut plans = plans.borrow_mut();
            if !plans.contains_key(sql) {
                let plan = client.prepare(sql, arg_types)?.keep();
                plans.insert(sql, plan);
            }
            let table = client.select(&plans[sql], Some(1), args)?;
            read(table)
        })
    })
}

/// Errors with 25006 where the catalog cannot be written: on a hot standby
/// or in a read-only transaction. Callers that do long work first (training)
/// ask before they start.
pub fn ensure_writable() -> AmbientResult<()> {
    // SAFETY: reads two flags of the current backend.
    let (in_recovery, read_only) = unsafe { (pg_sys::RecoveryInProgress(), pg_sys::XactReadOnly) };
    if in_recovery {
        return Err(
            AmbientError::read_only("cannot change pg_ambient's catalog on a hot standby")
                .hint("train, deploy, roll back and drop on the primary; predict works here"),
        );
    }
    if read_only {
        return Err(AmbientError::read_only(
            "cannot change pg_ambient's catalog in a read-only transaction",
        ));
    }
    Ok(())
}

/// Runs `write` as the extension's owner with `search_path` pinned to
/// `pg_catalog, pg_temp`, as a SECURITY DEFINER function would: callers may
/// change the catalog only through the checks of this extension's code, and
/// objects of their own on the search path cannot stand in for ours. If
/// `write` raises, transaction abort restores the user and the setting.
pub fn as_extension_owner<R>(write: impl FnOnce() -> AmbientResult<R>) -> AmbientResult<R> {
    ensure_writable()?;
    let owner = select_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_ambient'",
        &[],
    )?
    .ok_or_else(|| AmbientError::undefined_object("extension pg_ambient is not installed"))?;

    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_context = 0;
    // SAFETY: plain calls into Postgres' user and GUC machinery, paired below.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        nest_level
    };
    let result = write();
    // SAFETY: restores exactly what was saved above.
    unsafe {
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
        pg_sys::AtEOXact_GUC(true, nest_level);
    }
    result
}
