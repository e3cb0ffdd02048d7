//! Decoded models, kept per backend in an LRU bounded by
//! `ambient.model_cache_size`. Models are immutable rows, so an entry is
//! good for as long as the row's sha256 is the one it was decoded from.
//!
//! Also which model is live per project, and that the calling role may use
//! it, remembered for as long as the statement snapshot shows the same
//! database: no transaction has completed and this backend has written
//! nothing since. A deploy, grant or revoke that commits ends that at once,
//! so the next statement looks again and sees it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use lru::LruCache;
use pgrx::pg_sys;

use crate::catalog::projects::{self, Privilege};
use crate::catalog::{deployments, models, Caller};
use crate::error::{AmbientError, AmbientResult};
use crate::gucs;
use crate::ml::artifact;
use crate::ml::model::Model;

thread_local! {
    static CACHE: RefCell<LruCache<i64, (String, Rc<Model>)>> = RefCell::new(LruCache::unbounded());
    static LIVE: RefCell<LiveModels> = RefCell::new(LiveModels::default());
}

/// A live model: its id and its artifact's sha256.
type LiveModel = (i64, String);

/// Live models per project and calling role, as seen under one snapshot
/// key; only lookups the role was allowed to make are remembered.
#[derive(Default)]
struct LiveModels {
    key: Option<SnapshotKey>,
    by_project: HashMap<(String, pg_sys::Oid), LiveModel>,
}

/// What makes two statement snapshots show the same data: the count of
/// completed transactions when the snapshot was taken (Postgres 14+), and
/// where this backend's own transaction stands: its (sub)transaction ids,
/// which change when a savepoint is rolled back, and its command counter,
/// which moves after every command that wrote.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SnapshotKey {
    completed_transactions: u64,
    own_xid: pg_sys::TransactionId,
    subtransaction: pg_sys::SubTransactionId,
    command_id: pg_sys::CommandId,
}

/// The snapshot a statement runs under, as a call site compares it: when it
/// changes, a call site that outlives its statement (a PL/pgSQL expression
/// lives for the whole transaction) resolves its model again, and sees its
/// own deploys and others' commits as a new statement would.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StatementView {
    key: SnapshotKey,
    xmin: pg_sys::TransactionId,
    xmax: pg_sys::TransactionId,
    /// Whether `key` may be remembered across statements: not for a
    /// snapshot that GetSnapshotData did not take (restored in a parallel
    /// worker, imported: the count is 0), nor on a standby, where replay
    /// changes data without the count meaning the same.
    memoizable: bool,
}

/// Projects remembered per snapshot, at most; a query over many project
/// names starts over rather than growing without bound.
const MAX_REMEMBERED_PROJECTS: usize = 1024;

/// The active snapshot's view, if there is an active snapshot.
pub fn statement_view() -> Option<StatementView> {
    // SAFETY: reads the active snapshot, if there is one, without keeping it.
    unsafe {
        if !pg_sys::ActiveSnapshotSet() {
            return None;
        }
        let snapshot = pg_sys::GetActiveSnapshot();
        if snapshot.is_null() {
            return None;
        }
        Some(StatementView {
            key: SnapshotKey {
                completed_transactions: (*snapshot).snapXactCompletionCount,
                own_xid: pg_sys::GetCurrentTransactionIdIfAny(),
                subtransaction: pg_sys::GetCurrentSubTransactionId(),
                command_id: (*snapshot).curcid,
            },
            xmin: (*snapshot).xmin,
            xmax: (*snapshot).xmax,
            memoizable: (*snapshot).snapXactCompletionCount != 0
                && !(*snapshot).takenDuringRecovery,
        })
    }
}

fn snapshot_key() -> Option<SnapshotKey> {
    statement_view()
        .filter(|view| view.memoizable)
        .map(|view| view.key)
}

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    /// Catalog reads of live models, so tests can count them.
    pub static LIVE_MODEL_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The live model of a project (id and artifact sha256), as the current
/// statement's snapshot sees it, if `caller` may predict with it.
pub fn live_model(project: &str, caller: &Caller) -> AmbientResult<LiveModel> {
    let key = snapshot_key();
    let memo_key = (project.to_string(), caller.oid);
    let remembered = LIVE.with(|live| {
        let live = live.borrow();
        if key.is_some() && live.key == key {
            live.by_project.get(&memo_key).cloned()
        } else {
            None
        }
    });
    if let Some(found) = remembered {
        return Ok(found);
    }
    #[cfg(any(test, feature = "pg_test"))]
    LIVE_MODEL_READS.with(|n| n.set(n.get() + 1));
    let found = deployments::live_project(project)?.ok_or_else(|| projects::unknown(project))?;
    projects::authorize_use(
        found.project_id,
        project,
        found.owner,
        caller,
        Privilege::Predict,
    )?;
    let model = found.model.ok_or_else(|| {
        AmbientError::not_in_state(format!("project \"{project}\" has no deployed model"))
            .hint("deploy one with ambient.deploy(project, model_id)")
    })?;
    LIVE.with(|live| {
        let mut live = live.borrow_mut();
        if live.key != key || live.by_project.len() >= MAX_REMEMBERED_PROJECTS {
            *live = LiveModels {
                key,
                by_project: HashMap::new(),
            };
        }
        if key.is_some() {
            live.by_project.insert(memo_key, model.clone());
        }
    });
    Ok(model)
}

/// A model by id, if `caller` may predict with its project.
pub fn pinned_model(model_id: i64, caller: &Caller) -> AmbientResult<Rc<Model>> {
    let found = models::owner_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
    projects::authorize_use(
        found.project_id,
        &found.project,
        found.owner,
        caller,
        Privilege::Predict,
    )?;
    load_verified(model_id, &found.sha256)
}

/// The model with this id, for the extension's own use (scoring the live
/// model against a challenger); callers' rights are checked before.
pub fn load(model_id: i64) -> AmbientResult<Rc<Model>> {
    let found = models::owner_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
    load_verified(model_id, &found.sha256)
}

/// The model with this id, decoded from bytes whose sha256 is `sha`.
pub fn load_verified(model_id: i64, sha: &str) -> AmbientResult<Rc<Model>> {
    let cached = CACHE.with(|c| {
        c.borrow_mut()
            .get(&model_id)
            .filter(|(cached_sha, _)| cached_sha == sha)
            .map(|(_, model)| model.clone())
    });
    if let Some(model) = cached {
        return Ok(model);
    }
    let (bytes, stored_sha) = models::artifact(model_id)?;
    let model = Rc::new(artifact::decode_verified(&bytes, &stored_sha).map_err(|e| {
        AmbientError::from(e).hint(format!(
            "model {model_id} is damaged; drop it or restore it from a backup"
        ))
    })?);
    let capacity = gucs::model_cache_size();
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if capacity > 0 {
            cache.put(model_id, (stored_sha, model.clone()));
        }
        while cache.len() > capacity {
            cache.pop_lru();
        }
    });
    Ok(model)
}

#[cfg(any(test, feature = "pg_test"))]
pub fn cached_models() -> usize {
    CACHE.with(|c| c.borrow().len())
}
