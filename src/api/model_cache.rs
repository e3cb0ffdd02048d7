//! Decoded models, kept per backend in an LRU bounded by
//! `ambient.model_cache_size`. Models are immutable rows, so an entry is
//! good for as long as the row's sha256 is the one it was decoded from.
//!
//! Also which model each project name (or pinned id) resolves to, with its
//! project's owner and grants, remembered for as long as statement snapshots
//! show the same database (`SnapshotView`): no transaction has completed and
//! this backend has written nothing since. A deploy, grant or revoke that
//! commits ends that at once, so the next statement looks again and sees it.
//! The caller's right to use the model is checked on every resolution, not
//! remembered.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use lru::LruCache;
use pgrx::pg_sys;

use crate::catalog::projects::{self, Named, Privilege};
use crate::catalog::{deployments, models, Caller};
use crate::error::{AmbientError, AmbientResult};
use crate::gucs;
use crate::ml::artifact;
use crate::ml::model::Model;

/// A decoded model as the cache keeps it: the artifact's sha256, the model,
/// and its `decoded_bytes`.
type Cached = (String, Rc<Model>, u64);

thread_local! {
    static CACHE: RefCell<LruCache<i64, Cached>> = RefCell::new(LruCache::unbounded());
    /// What the cached models take, as `decoded_bytes` counts them.
    static CACHED_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static RESOLVED: RefCell<Resolutions> = RefCell::new(Resolutions::default());
}

/// A resolved model: its id and its artifact's sha256.
type LiveModel = (i64, String);

/// What a model name stands for: a project's live model, or a pinned id.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Wanted {
    Live(String),
    Pinned(i64),
}

/// What each name resolved to, as seen under one snapshot view.
#[derive(Default)]
struct Resolutions {
    view: Option<SnapshotView>,
    by_name: HashMap<Wanted, Resolution>,
}

/// Exactly what a statement's snapshot shows: two snapshots with the same
/// xmin, xmax and in-progress transactions see the same committed data, and
/// this backend's own transaction stands where its transaction id, its
/// subtransaction (which changes when a savepoint is rolled back) and its
/// command counter (which moves after every command that wrote) say.
///
/// 0.1.0 keyed this on the snapshot's completion count, but the active
/// snapshot is a copy, and Postgres zeroes the count in copies: the key never
/// matched, and every statement read the catalog again.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SnapshotView {
    xmin: pg_sys::TransactionId,
    xmax: pg_sys::TransactionId,
    in_progress: Vec<pg_sys::TransactionId>,
    sub_in_progress: Vec<pg_sys::TransactionId>,
    suboverflowed: bool,
    during_recovery: bool,
    own_xid: pg_sys::TransactionId,
    subtransaction: pg_sys::SubTransactionId,
    command_id: pg_sys::CommandId,
}

/// Postgres getters that only read backend state and cannot raise an
/// ERROR, declared here without the longjmp guard pgrx puts around every
/// call (a sigsetjmp each): a call site asks them for every row, and through
/// pgrx's declarations that doubled the cost of predicting a row.
mod unguarded {
    use pgrx::pg_sys;

    extern "C" {
        pub fn ActiveSnapshotSet() -> bool;
        pub fn GetActiveSnapshot() -> pg_sys::Snapshot;
        pub fn GetTopTransactionIdIfAny() -> pg_sys::TransactionId;
        pub fn GetCurrentSubTransactionId() -> pg_sys::SubTransactionId;
        pub fn GetCurrentStatementStartTimestamp() -> pg_sys::TimestampTz;
    }
}

/// When the top-level statement began: a PL/pgSQL expression's call site
/// lives across statements, and each new one checks the caller's rights
/// again.
pub fn statement_start() -> pg_sys::TimestampTz {
    // SAFETY: a plain getter (see `unguarded`).
    unsafe { unguarded::GetCurrentStatementStartTimestamp() }
}

/// The active snapshot, if there is one.
fn active_snapshot() -> Option<&'static pg_sys::SnapshotData> {
    // SAFETY: plain getters (see `unguarded`); the active snapshot outlives
    // the caller's use of it (the calling function's evaluation), and is
    // not kept.
    unsafe {
        if !unguarded::ActiveSnapshotSet() {
            return None;
        }
        unguarded::GetActiveSnapshot().as_ref()
    }
}

/// This backend's top transaction id (invalid until it writes) and its
/// current subtransaction.
fn own_transaction() -> (pg_sys::TransactionId, pg_sys::SubTransactionId) {
    // SAFETY: plain getters of backend state (see `unguarded`).
    unsafe {
        (
            unguarded::GetTopTransactionIdIfAny(),
            unguarded::GetCurrentSubTransactionId(),
        )
    }
}

/// # Safety
/// `ptr` points to `len` transaction ids (or `len` is 0).
unsafe fn xids<'a>(ptr: *const pg_sys::TransactionId, len: usize) -> &'a [pg_sys::TransactionId] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl SnapshotView {
    /// The active snapshot's view, if there is an active snapshot.
    pub fn current() -> Option<SnapshotView> {
        let s = active_snapshot()?;
        let (own_xid, subtransaction) = own_transaction();
        // SAFETY: xip and subxip hold xcnt and subxcnt ids.
        unsafe {
            Some(SnapshotView {
                xmin: s.xmin,
                xmax: s.xmax,
                in_progress: xids(s.xip, s.xcnt as usize).to_vec(),
                sub_in_progress: xids(s.subxip, s.subxcnt.max(0) as usize).to_vec(),
                suboverflowed: s.suboverflowed,
                during_recovery: s.takenDuringRecovery,
                own_xid,
                subtransaction,
                command_id: s.curcid,
            })
        }
    }

    /// Whether the active snapshot shows the data this view showed: the
    /// same transactions, and this backend's own writes up to the same
    /// command.
    fn shows_current_data(&self) -> bool {
        let Some(s) = active_snapshot() else {
            return false;
        };
        // SAFETY: as in `current`.
        unsafe {
            self.xmin == s.xmin
                && self.xmax == s.xmax
                && self.command_id == s.curcid
                && self.suboverflowed == s.suboverflowed
                && self.during_recovery == s.takenDuringRecovery
                && self.in_progress == xids(s.xip, s.xcnt as usize)
                && self.sub_in_progress == xids(s.subxip, s.subxcnt.max(0) as usize)
        }
    }

    /// `shows_current_data`, and this backend's transaction stands where it
    /// stood: a savepoint rolled back since then undid writes that the
    /// command counter alone does not tell. A transaction that has written
    /// nothing (no transaction id) has nothing to undo, so then its
    /// subtransactions do not matter: a function that catches errors opens
    /// one per call. Allocates nothing, so a call site can ask for every row.
    pub fn is_current(&self) -> bool {
        let (own_xid, subtransaction) = own_transaction();
        self.shows_current_data()
            && self.own_xid == own_xid
            && (own_xid == pg_sys::InvalidTransactionId || self.subtransaction == subtransaction)
    }
}

/// Names remembered per snapshot view, at most; a query over many project
/// names or model ids starts over rather than growing without bound.
const MAX_REMEMBERED_NAMES: usize = 1024;

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    /// Catalog reads of live models, so tests can count them.
    pub static LIVE_MODEL_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The live model of a project (id and artifact sha256), as the current
/// statement's snapshot sees it, if `caller` may predict with it.
pub fn live_model(project: &str, caller: &Caller) -> AmbientResult<LiveModel> {
    let named = Named::Project(project);
    remembered(Wanted::Live(project.to_string()), caller, named, || {
        let found =
            deployments::live_project(project)?.ok_or_else(|| projects::unknown(project))?;
        let model = found.model.ok_or_else(|| match &found.tag {
            Some(tag) => AmbientError::undefined_object(format!(
                "no model is tagged \"{tag}\" in \"{project}\""
            ))
            .hint(
                "SELECT * FROM ambient.tags lists the tags; ambient.tag(model_id, name) sets one",
            ),
            None => {
                AmbientError::not_in_state(format!("project \"{project}\" has no deployed model"))
                    .hint("deploy one with ambient.deploy(project, model_id)")
            }
        });
        Ok(Resolution {
            owner: found.owner,
            grants: projects::grants_of(found.project_id)?,
            model,
        })
    })
}

/// A model by id, if `caller` may predict with its project.
pub fn pinned_model(model_id: i64, caller: &Caller) -> AmbientResult<Rc<Model>> {
    let named = Named::Model(model_id);
    let (id, sha) = remembered(Wanted::Pinned(model_id), caller, named, || {
        let found = models::owner_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
        Ok(Resolution {
            owner: found.owner,
            grants: projects::grants_of(found.project_id)?,
            model: Ok((model_id, found.sha256)),
        })
    })?;
    load_verified(id, &sha)
}

/// What a name resolved to: who may use its project (its owner and grants)
/// and the model, or why there is none.
#[derive(Clone)]
struct Resolution {
    owner: pg_sys::Oid,
    grants: projects::Grants,
    model: AmbientResult<LiveModel>,
}

/// What `look_up` finds for `wanted`, remembered while the snapshot view
/// lasts, so a stream of single-row statements reads the catalog only after
/// something changed. The caller's right to use the project is checked every
/// time, remembered or not: role membership is current, not part of the
/// snapshot, and a revoked membership counts at once.
fn remembered<'a>(
    wanted: Wanted,
    caller: &Caller,
    named: Named<'a>,
    look_up: impl FnOnce() -> AmbientResult<Resolution>,
) -> AmbientResult<LiveModel> {
    let found = RESOLVED.with(|memo| {
        let memo = memo.borrow();
        match &memo.view {
            Some(view) if view.is_current() => memo.by_name.get(&wanted).cloned(),
            _ => None,
        }
    });
    let resolution = match found {
        Some(found) => found,
        None => {
            #[cfg(any(test, feature = "pg_test"))]
            LIVE_MODEL_READS.with(|n| n.set(n.get() + 1));
            let found = look_up()?;
            RESOLVED.with(|memo| {
                let mut memo = memo.borrow_mut();
                let still_current = memo.view.as_ref().is_some_and(SnapshotView::is_current);
                if !still_current || memo.by_name.len() >= MAX_REMEMBERED_NAMES {
                    *memo = Resolutions {
                        view: SnapshotView::current(),
                        by_name: HashMap::new(),
                    };
                }
                if memo.view.is_some() {
                    memo.by_name.insert(wanted, found.clone());
                }
            });
            found
        }
    };
    // A statement that locks no relation (SELECT predict(...)) would not
    // read the invalidations of a committed REVOKE of a role membership;
    // read them, as opening a table would, so the check below is current.
    // SAFETY: processes pending invalidation messages; no cache entry is
    // held across the call.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    projects::authorize_use(
        named,
        resolution.owner,
        &resolution.grants,
        caller,
        Privilege::Predict,
    )?;
    resolution.model
}

/// The model with this id as the latest committed rows show it, for a
/// writer holding the project lock (training scores the live model, which
/// another session may have deployed after this statement began); callers'
/// rights are checked before.
pub fn load_latest(model_id: i64) -> AmbientResult<Rc<Model>> {
    let (bytes, sha) = models::latest_artifact(model_id)?;
    decode_and_keep(model_id, &bytes, sha)
}

/// The model with this id, decoded from bytes whose sha256 is `sha`, read
/// under the statement's snapshot (predict).
pub fn load_verified(model_id: i64, sha: &str) -> AmbientResult<Rc<Model>> {
    let cached = CACHE.with(|c| {
        c.borrow_mut()
            .get(&model_id)
            .filter(|(cached_sha, _, _)| cached_sha == sha)
            .map(|(_, model, _)| model.clone())
    });
    if let Some(model) = cached {
        return Ok(model);
    }
    let (bytes, stored_sha) = models::artifact(model_id)?;
    decode_and_keep(model_id, &bytes, stored_sha)
}

fn decode_and_keep(model_id: i64, bytes: &[u8], sha: String) -> AmbientResult<Rc<Model>> {
    let model = Rc::new(artifact::decode_verified(bytes, &sha).map_err(|e| {
        AmbientError::from(e).hint(format!(
            "model {model_id} is damaged; drop it or restore it from a backup"
        ))
    })?);
    // Bounded by count and by bytes: a forest can be a thousand times the
    // size of a stump. A model larger than the whole budget is not kept.
    let capacity = gucs::model_cache_size();
    let budget = gucs::model_cache_memory_bytes();
    let size = decoded_bytes(bytes);
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        let mut held = CACHED_BYTES.get();
        if let Some((_, (_, _, old))) = cache.pop_entry(&model_id) {
            held -= old;
        }
        if capacity > 0 && size <= budget {
            cache.put(model_id, (sha, model.clone(), size));
            held += size;
        }
        while cache.len() > capacity || held > budget {
            match cache.pop_lru() {
                Some((_, (_, _, evicted))) => held -= evicted,
                None => break,
            }
        }
        CACHED_BYTES.set(held);
    });
    Ok(model)
}

/// What a decoded model takes in memory, estimated from its artifact: the
/// in-memory form of a tree node or a number is at most about twice its
/// encoded form.
fn decoded_bytes(artifact: &[u8]) -> u64 {
    2 * artifact.len() as u64
}

#[cfg(any(test, feature = "pg_test"))]
pub fn cached_models() -> usize {
    CACHE.with(|c| c.borrow().len())
}
