//! `ambient.audit_log`: the append-only, hash-chained audit trail. Entries
//! are written here, by the API's state changes; the chain itself is
//! sealed by the catalog's own triggers as each transaction commits.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;

use super::{as_owner, KeptRows};
use crate::error::{AmbientError, AmbientResult};

/// What a change was about and why.
pub struct Entry<'a> {
    pub action: &'a str,
    /// The role that asked for the change (`Caller::name`).
    pub role: &'a str,
    /// The project (name and id) or feature set the change is about.
    pub project: Option<(&'a str, i64)>,
    /// A feature set's (or a training set's) name, and a feature set's id.
    pub feature_set: Option<&'a str>,
    pub feature_set_id: Option<i64>,
    /// The owner of that project or feature set, who keeps reading the
    /// entry after a drop.
    pub owner: Option<pg_sys::Oid>,
    pub model_id: Option<i64>,
    pub reason: Option<&'a str>,
    pub details: serde_json::Value,
}

impl<'a> Entry<'a> {
    /// An entry about `project`, which `owner` owns.
    pub fn project(
        action: &'a str,
        role: &'a str,
        project: &'a str,
        project_id: i64,
        owner: pg_sys::Oid,
    ) -> Self {
        Entry {
            action,
            role,
            project: Some((project, project_id)),
            feature_set: None,
            feature_set_id: None,
            owner: Some(owner),
            model_id: None,
            reason: None,
            details: serde_json::json!({}),
        }
    }

    /// An entry about feature set `name` (id `id`), which `owner` owns.
    pub fn feature_set(
        action: &'a str,
        role: &'a str,
        name: &'a str,
        id: i64,
        owner: pg_sys::Oid,
    ) -> Self {
        Entry {
            feature_set_id: Some(id),
            ..Entry::training_set(action, role, name, owner)
        }
    }

    /// An entry about training set `name`, which `owner` owns: readable
    /// by roles with the owner's rights only.
    pub fn training_set(action: &'a str, role: &'a str, name: &'a str, owner: pg_sys::Oid) -> Self {
        Entry {
            action,
            role,
            project: None,
            feature_set: Some(name),
            feature_set_id: None,
            owner: Some(owner),
            model_id: None,
            reason: None,
            details: serde_json::json!({}),
        }
    }

    pub fn model(mut self, model_id: i64) -> Self {
        self.model_id = Some(model_id);
        self
    }

    pub fn reason(mut self, reason: Option<&'a str>) -> Self {
        self.reason = reason;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Appends `entry`; it is chained when the transaction commits and goes
/// if it rolls back. Call inside `as_extension_owner`.
pub fn record(entry: Entry<'_>) -> AmbientResult<()> {
    let (project, project_id) = entry.project.unzip();
    Spi::connect_mut(|client| {
        client.update(
            "INSERT INTO ambient.audit_log
               (role, action, project, project_id, feature_set, feature_set_id, model_id, reason,
                details, owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::pg_catalog.regrole)",
            None,
            &[
                entry.role.into(),
                entry.action.into(),
                project.into(),
                project_id.into(),
                entry.feature_set.into(),
                entry.feature_set_id.into(),
                entry.model_id.into(),
                entry.reason.into(),
                JsonB(entry.details).into(),
                entry.owner.into(),
            ],
        )?;
        Ok(())
    })
}

/// The newest chained entry's position and hash as committed now, read
/// under the latest snapshot rather than the transaction's (as Postgres'
/// own foreign-key checks read under REPEATABLE READ), so an entry that
/// committed after a REPEATABLE READ transaction began is chained on, not
/// forked from. The caller holds the chain's lock (`ambient.chain_audit_entry`).
pub fn chain_head() -> AmbientResult<Option<(i64, String)>> {
    const HEAD: &std::ffi::CStr = c"SELECT position, entry_sha256 FROM ambient.audit_log
          WHERE position IS NOT NULL ORDER BY position DESC LIMIT 1";
    as_owner(|| {
        Spi::connect(|_client| {
            // SAFETY: SPI is connected for the closure's length; the plan
            // lives in SPI's memory until SPI_finish; GetLatestSnapshot's
            // snapshot is copied by SPI before use, as in ri_triggers.c.
            unsafe {
                let plan = pg_sys::SPI_prepare(HEAD.as_ptr(), 0, std::ptr::null_mut());
                if plan.is_null() {
                    return Err(AmbientError::invalid(
                        "the audit chain's head could not be read",
                    ));
                }
                let status = pg_sys::SPI_execute_snapshot(
                    plan,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    pg_sys::GetLatestSnapshot(),
                    std::ptr::null_mut(),
                    false,
                    false,
                    1,
                );
                if status != pg_sys::SPI_OK_SELECT as i32 {
                    return Err(AmbientError::invalid(format!(
                        "reading the audit chain's head failed with SPI status {status}"
                    )));
                }
                let rows = KeptRows {
                    table: pg_sys::SPI_tuptable,
                    len: pg_sys::SPI_processed as usize,
                };
                if rows.is_empty() {
                    return Ok(None);
                }
                Ok(rows.get::<i64>(0, 1)?.zip(rows.get::<String>(0, 2)?))
            }
        })
    })
}
