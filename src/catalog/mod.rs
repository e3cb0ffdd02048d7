//! Typed access to the `ambient` catalog over SPI. This is the only module
//! that writes catalog SQL. Every catalog query runs as the extension owner
//! (`as_owner`), because ordinary roles may neither read nor write the
//! tables: what a role may see and do is decided in Rust from role oids
//! (`Caller::acts_as`). The predict path's reads run truly read-only, under
//! the statement's snapshot (`select_kept`), so they work in parallel
//! workers and on standbys; the API's other reads go through pgrx, which
//! reads with a fresh snapshot once the transaction has written (what a
//! writer holding a project's lock needs); writes also pin `search_path`
//! (`as_extension_owner`).

pub mod attachments;
pub mod audit;
pub mod deployments;
pub mod feature_sets;
pub mod models;
pub mod operations;
pub mod projects;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::{AmbientError, AmbientResult};

/// The role a call runs as, taken once at the SQL boundary, before any
/// switch to the extension owner.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub oid: pg_sys::Oid,
}

impl Caller {
    pub fn current() -> Caller {
        // SAFETY: reads a backend global.
        Caller {
            oid: unsafe { pg_sys::GetUserId() },
        }
    }

    /// The role the session acts as outside SECURITY DEFINER functions
    /// (what SET ROLE set): who issued the DDL an event trigger, which runs
    /// as the extension owner, acts on.
    pub fn outer() -> Caller {
        // SAFETY: reads a backend global.
        Caller {
            oid: unsafe { pg_sys::GetOuterUserId() },
        }
    }

    /// The role's name, recorded as `created_by`/`deployed_by`.
    pub fn name(&self) -> String {
        // SAFETY: GetUserNameFromId returns a palloc'd C string or raises.
        unsafe {
            CStr::from_ptr(pg_sys::GetUserNameFromId(self.oid, false))
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Whether the caller has the privileges of `role`: is it, inherits it,
    /// or is a superuser. Decided in Rust from role oids, so no SQL operator
    /// a caller defines can change the answer.
    pub fn acts_as(&self, role: pg_sys::Oid) -> bool {
        // SAFETY: a lookup in Postgres' role membership cache.
        unsafe { pg_sys::has_privs_of_role(self.oid, role) }
    }
}

/// The first column of the first row, or `None` when there is no row, as
/// the extension owner (through pgrx: see the module's note on snapshots).
fn select_one<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> AmbientResult<Option<T>> {
    as_owner(|| {
        Spi::connect(|client| {
            let table = client.select(sql, Some(1), args)?;
            if table.is_empty() {
                return Ok(None);
            }
            Ok(table.first().get_one::<T>()?)
        })
    })
}

thread_local! {
    /// Plans of the predict path's catalog reads, prepared once per backend.
    /// Postgres re-plans them by itself if the catalog tables change.
    static KEPT_PLANS: RefCell<HashMap<&'static str, KeptPlan>> = RefCell::new(HashMap::new());
}

/// A plan `SPI_keepplan` moved out of SPI's memory, for the backend's life.
struct KeptPlan(NonNull<pg_sys::_SPI_plan>);

/// The rows a `select_kept` query returned, readable while its `read` runs.
pub struct KeptRows {
    table: *mut pg_sys::SPITupleTable,
    len: usize,
}

impl KeptRows {
    /// Column `column` (from 1) of row `row` (from 0) as it lies: its
    /// datum (valid while `read` runs), whether it is NULL, and its type.
    pub fn raw(&self, row: usize, column: usize) -> Option<(pg_sys::Datum, bool, pg_sys::Oid)> {
        if row >= self.len {
            return None;
        }
        // SAFETY: as in `get`: the tuples live until SPI_finish, and
        // SPI_getbinval checks the column number.
        unsafe {
            let tupdesc = (*self.table).tupdesc;
            if column == 0 || column > (*tupdesc).natts as usize {
                return None;
            }
            let tuple = *(*self.table).vals.add(row);
            let mut is_null = false;
            let type_oid = pg_sys::SPI_gettypeid(tupdesc, column as i32);
            let datum = pg_sys::SPI_getbinval(tuple, tupdesc, column as i32, &mut is_null);
            Some((datum, is_null, type_oid))
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Column `column` (from 1) of row `row` (from 0), as `T`, an owned type
    /// (the rows' memory ends with SPI) of the column's SQL type.
    pub fn get<T: FromDatum + IntoDatum + 'static>(
        &self,
        row: usize,
        column: usize,
    ) -> AmbientResult<Option<T>> {
        if row >= self.len {
            return Err(AmbientError::invalid(format!(
                "no row {row} in a catalog read"
            )));
        }
        // SAFETY: SPI_execute_plan left `len` tuples in `table`, alive until
        // SPI_finish, which comes after `read` returns; SPI_getbinval checks
        // the column number.
        unsafe {
            let tupdesc = (*self.table).tupdesc;
            let tuple = *(*self.table).vals.add(row);
            let mut is_null = false;
            let type_oid = pg_sys::SPI_gettypeid(tupdesc, column as i32);
            if !T::is_compatible_with(type_oid) {
                return Err(AmbientError::wrong_type(format!(
                    "catalog read: column {column} has type oid {}",
                    type_oid.to_u32()
                )));
            }
            let datum = pg_sys::SPI_getbinval(tuple, tupdesc, column as i32, &mut is_null);
            Ok(T::from_polymorphic_datum(datum, is_null, type_oid))
        }
    }
}

/// Runs a catalog query, as the extension owner, through a plan kept for the
/// backend's life, so the statement-per-call predict path pays for parsing
/// and planning once. It runs truly read-only (`SPI_execute_plan` with
/// `read_only`): under the calling statement's own snapshot, without a new
/// snapshot or a command counter increment even in a transaction that has
/// written, so every call site of a statement, and a parallel leader and
/// its workers, see one catalog. `read` gets the rows.
///
/// A kept plan is parsed again when the catalog changes, so every operator,
/// function and type in such a query is schema-qualified.
fn select_kept<R>(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(&KeptRows) -> AmbientResult<R>,
) -> AmbientResult<R> {
    as_owner(|| select_read_only(sql, args, read))
}

/// Runs a catalog write through a plan kept for the backend's life, as the
/// extension owner, without pinning `search_path` (the statement names
/// every object with its schema): for writes made once per row of a user's
/// statement, where `as_extension_owner`'s setting change would cost more
/// than the write. Returns the rows written.
fn execute_kept(sql: &'static str, args: &[DatumWithOid<'_>]) -> AmbientResult<u64> {
    as_owner(|| {
        Spi::connect_mut(|_client| {
            let plan = kept_plan(sql, args)?;
            let (mut values, nulls) = plan_arguments(args);
            // SAFETY: the plan is kept and takes exactly these arguments;
            // SPI is connected for the closure's length.
            unsafe {
                let status = pg_sys::SPI_execute_plan(
                    plan.as_ptr(),
                    values.as_mut_ptr(),
                    nulls.as_ptr(),
                    false,
                    0,
                );
                if status < 0 {
                    return Err(AmbientError::invalid(format!(
                        "catalog write failed with SPI status {status}"
                    )));
                }
                Ok(pg_sys::SPI_processed)
            }
        })
    })
}

/// Arguments as `SPI_execute_plan` takes them: values, and 'n' for NULLs.
fn plan_arguments(args: &[DatumWithOid<'_>]) -> (Vec<pg_sys::Datum>, Vec<std::ffi::c_char>) {
    let values = args
        .iter()
        .map(|a| {
            a.datum()
                .map_or(pg_sys::Datum::null(), |d| d.sans_lifetime())
        })
        .collect();
    let nulls = args
        .iter()
        .map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::ffi::c_char)
        .collect();
    (values, nulls)
}

thread_local! {
    /// Plans of SQL the extension builds per model (a feature lookup),
    /// kept while they are in use; bounded by `MAX_BUILT_PLANS`.
    static BUILT_PLANS: RefCell<HashMap<String, KeptPlan>> = RefCell::new(HashMap::new());
}

/// Built plans kept at most: a backend serving more models than this
/// prepares some again.
const MAX_BUILT_PLANS: usize = 128;

/// As `select_kept`, for SQL built at run time (every name and operator in
/// it qualified): its plan is kept in a bounded map keyed by the text.
pub fn select_built<R>(
    sql: &str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(&KeptRows) -> AmbientResult<R>,
) -> AmbientResult<R> {
    as_owner(|| {
        Spi::connect(|_client| {
            let known = BUILT_PLANS.with(|plans| plans.borrow().get(sql).map(|p| p.0));
            let plan = match known {
                Some(plan) => plan,
                None => {
                    let plan = prepare_kept(sql, args)?;
                    BUILT_PLANS.with(|plans| {
                        let mut plans = plans.borrow_mut();
                        if plans.len() >= MAX_BUILT_PLANS {
                            for (_, old) in plans.drain() {
                                // SAFETY: a plan SPI_keepplan kept, used by
                                // no one now (none runs while we prepare).
                                unsafe { pg_sys::SPI_freeplan(old.0.as_ptr()) };
                            }
                        }
                        plans.insert(sql.to_string(), KeptPlan(plan));
                    });
                    plan
                }
            };
            run_read_only(plan, args, read)
        })
    })
}

/// `select_kept`'s read, as whoever runs it.
fn select_read_only<R>(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(&KeptRows) -> AmbientResult<R>,
) -> AmbientResult<R> {
    Spi::connect(|_client| run_read_only(kept_plan(sql, args)?, args, read))
}

/// Runs a kept plan truly read-only (see `select_kept`) and hands `read`
/// the rows. SPI must be connected.
fn run_read_only<R>(
    plan: NonNull<pg_sys::_SPI_plan>,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(&KeptRows) -> AmbientResult<R>,
) -> AmbientResult<R> {
    {
        let (mut values, nulls) = plan_arguments(args);
        // SAFETY: the plan is kept and takes exactly these arguments;
        // SPI is connected for the closure's length.
        let rows = unsafe {
            let status = pg_sys::SPI_execute_plan(
                plan.as_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                true,
                0,
            );
            if status != pg_sys::SPI_OK_SELECT as i32 {
                return Err(AmbientError::invalid(format!(
                    "catalog read failed with SPI status {status}"
                )));
            }
            KeptRows {
                table: pg_sys::SPI_tuptable,
                len: pg_sys::SPI_processed as usize,
            }
        };
        read(&rows)
    }
}

fn kept_plan(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
) -> AmbientResult<NonNull<pg_sys::_SPI_plan>> {
    if let Some(plan) = KEPT_PLANS.with(|plans| plans.borrow().get(sql).map(|p| p.0)) {
        return Ok(plan);
    }
    let plan = prepare_kept(sql, args)?;
    KEPT_PLANS.with(|plans| plans.borrow_mut().insert(sql, KeptPlan(plan)));
    Ok(plan)
}

/// Prepares `sql` for `args`' types and keeps the plan for the backend's
/// life. SPI must be connected.
fn prepare_kept(sql: &str, args: &[DatumWithOid<'_>]) -> AmbientResult<NonNull<pg_sys::_SPI_plan>> {
    let text = CString::new(sql).map_err(|_| AmbientError::invalid("catalog query has a NUL"))?;
    let mut types: Vec<pg_sys::Oid> = args.iter().map(DatumWithOid::oid).collect();
    // SAFETY: SPI is connected (select_kept); a parse error is a Postgres
    // ERROR. SPI_keepplan moves the plan out of SPI's memory.
    let plan = unsafe {
        let plan = pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr());
        let plan = NonNull::new(plan)
            .ok_or_else(|| AmbientError::invalid("catalog query could not be prepared"))?;
        pg_sys::SPI_keepplan(plan.as_ptr());
        plan
    };
    Ok(plan)
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

thread_local! {
    /// The role that owns the extension, and so its catalog tables, with the
    /// local transaction it was read in: it is read again in each
    /// transaction, so a re-created or reassigned extension is seen.
    static EXTENSION_OWNER: std::cell::Cell<Option<(pg_sys::LocalTransactionId, pg_sys::Oid)>> =
        const { std::cell::Cell::new(None) };
}

fn extension_owner() -> AmbientResult<pg_sys::Oid> {
    // SAFETY: MyProc is this backend's PGPROC, set for its whole life.
    let transaction = unsafe { (*pg_sys::MyProc).lxid };
    if let Some((read_in, owner)) = EXTENSION_OWNER.get() {
        if read_in == transaction {
            return Ok(owner);
        }
    }
    // Read-only like every read predict makes, as the caller (everyone may
    // read pg_extension), with the operator qualified.
    let owner = select_read_only(
        "SELECT extowner FROM pg_catalog.pg_extension
          WHERE extname OPERATOR(pg_catalog.=) 'pg_ambient'",
        &[],
        |rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            rows.get::<pg_sys::Oid>(0, 1)
        },
    )?
    .ok_or_else(|| AmbientError::undefined_object("extension pg_ambient is not installed"))?;
    EXTENSION_OWNER.set(Some((transaction, owner)));
    Ok(owner)
}

/// The extension owner under `search_path`: for DDL whose names are a
/// user's (a training set's spine) and whose objects the extension owns.
pub fn extension_owner_under(search_path: &str) -> AmbientResult<Author> {
    Ok(Author {
        role: extension_owner()?,
        search_path: search_path.to_string(),
    })
}

/// Runs `work` as the extension owner, the only role that may read or
/// write the catalog tables; the callers' rights are checked in Rust
/// (`Caller::acts_as`) before. It changes no setting, so it also runs in
/// parallel workers and on standbys (predict). If `work` raises, (sub)
/// transaction abort restores the user.
fn as_owner<R>(work: impl FnOnce() -> AmbientResult<R>) -> AmbientResult<R> {
    let owner = extension_owner()?;
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_context = 0;
    // SAFETY: plain calls into Postgres' user machinery, paired below.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let result = work();
    // SAFETY: restores exactly what was saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

/// Runs `write` as the extension's owner with `search_path` pinned to
/// `pg_catalog, pg_temp`, as a SECURITY DEFINER function would: callers may
/// change the catalog only through the checks of this extension's code, and
/// objects of their own on the search path cannot stand in for ours. If
/// `write` raises, transaction abort restores the user and the setting.
pub fn as_extension_owner<R>(write: impl FnOnce() -> AmbientResult<R>) -> AmbientResult<R> {
    ensure_writable()?;
    // SAFETY: plain calls into Postgres' GUC machinery, paired below.
    let nest_level = unsafe {
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
        nest_level
    };
    let result = as_owner(write);
    // SAFETY: restores the setting saved above.
    unsafe { pg_sys::AtEOXact_GUC(true, nest_level) };
    result
}

/// The role a stored definition (a training query, a relation name that is
/// resolved again) runs as, and the `search_path` it was stored under, so
/// that its unqualified names mean what they meant to its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub role: pg_sys::Oid,
    pub search_path: String,
}

/// What SQL the extension builds itself runs under: every name in it is
/// qualified.
pub const PINNED_SEARCH_PATH: &str = "pg_catalog, pg_temp";

impl Author {
    /// The schemas the session's `search_path` resolves to now, each
    /// named (`"$user"` as the role it stood for), without temporary ones:
    /// what a training definition's unqualified names were written under,
    /// whoever runs it later.
    pub fn search_path_now() -> AmbientResult<String> {
        // Runs as the caller: every function and operator is qualified.
        Ok(Spi::get_one::<String>(
            "SELECT pg_catalog.array_to_string(ARRAY(
                      SELECT pg_catalog.quote_ident(s::pg_catalog.text)
                        FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) AS s
                       WHERE s::pg_catalog.text OPERATOR(pg_catalog.!~) '^pg_temp_'), ', ')",
        )?
        .unwrap_or_default())
    }

    /// A table's owner, for reading the table the way its attached trigger
    /// predicts: with the owner's rights, under the pinned `search_path`.
    pub fn owner_of_table(relation: pg_sys::Oid) -> Option<Author> {
        // SAFETY: a syscache lookup that returns NULL for an oid that is gone.
        unsafe {
            let tuple = pg_sys::SearchSysCache1(
                pg_sys::SysCacheIdentifier::RELOID as i32,
                pg_sys::Datum::from(relation),
            );
            if tuple.is_null() {
                return None;
            }
            let form = pg_sys::GETSTRUCT(tuple) as pg_sys::Form_pg_class;
            let owner = (*form).relowner;
            pg_sys::ReleaseSysCache(tuple);
            Some(Author::restricted(owner))
        }
    }

    /// `role`, for SQL the extension builds itself (every name in it is
    /// qualified), under the pinned `search_path`.
    pub fn restricted(role: pg_sys::Oid) -> Author {
        Author {
            role,
            search_path: PINNED_SEARCH_PATH.to_string(),
        }
    }
}

/// Runs `work` as `author`, the way `REFRESH MATERIALIZED VIEW` runs a
/// view's query as the view's owner: with the author's rights only (a
/// superuser or co-owner who triggers it lends none of theirs), under
/// `SECURITY_RESTRICTED_OPERATION` (no temporary objects, no role changes
/// inside), and with the `search_path` the SQL was stored under. A role
/// that no longer exists fails cleanly (42704). If `work` raises, (sub)
/// transaction abort restores the user and the setting.
pub fn as_author<R>(author: &Author, work: impl FnOnce() -> AmbientResult<R>) -> AmbientResult<R> {
    // SAFETY: a syscache lookup; NULL (not an error) for a role that is gone.
    let exists = unsafe { !pg_sys::GetUserNameFromId(author.role, true).is_null() };
    if !exists {
        return Err(AmbientError::undefined_object(format!(
            "the role (oid {}) that stored this training definition no longer exists",
            author.role.to_u32()
        ))
        .hint("train the project again as an existing role: its definition runs as the role that wrote it"));
    }
    // The session's temporary schema is searched last, never first, so a
    // temporary object of whoever triggers the run cannot stand in for one
    // of the author's.
    let search_path = author
        .search_path
        .split(',')
        .map(str::trim)
        .filter(|schema| !schema.is_empty() && *schema != "pg_temp")
        .chain(["pg_temp"])
        .collect::<Vec<_>>()
        .join(", ");
    let search_path = CString::new(search_path)
        .map_err(|_| AmbientError::invalid("a stored search_path holds a NUL"))?;
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_context = 0;
    // SAFETY: plain calls into Postgres' GUC and user machinery, paired
    // below.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            author.role,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            search_path.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest_level
    };
    let result = work();
    // SAFETY: restores exactly what was saved above, setting first.
    unsafe {
        pg_sys::AtEOXact_GUC(true, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
    result
}

/// The run logs that grow with every run, each kept to the newest
/// `ambient.log_rows_per_project` rows of each project.
#[derive(Debug, Clone, Copy)]
pub enum Log {
    Monitor,
    Drift,
    Policy,
    Alert,
}

/// Deletes all but the newest `ambient.log_rows_per_project` rows of the
/// project in `log`, so that a policy run every second keeps a bounded
/// history. Call inside `as_extension_owner`, after inserting.
pub fn prune_log(log: Log, project_id: i64) -> AmbientResult<()> {
    let table = match log {
        Log::Monitor => "ambient.monitor_log",
        Log::Drift => "ambient.drift_log",
        Log::Policy => "ambient.policy_log",
        Log::Alert => "ambient.alert_log",
    };
    // The (project_id, id) index answers both halves.
    Spi::run_with_args(
        &format!(
            "DELETE FROM {table}
              WHERE project_id OPERATOR(pg_catalog.=) $1
                AND id OPERATOR(pg_catalog.<) (
                      SELECT id FROM {table} WHERE project_id OPERATOR(pg_catalog.=) $1
                       ORDER BY id DESC OFFSET $2 OPERATOR(pg_catalog.-) 1 LIMIT 1)"
        ),
        &[
            project_id.into(),
            crate::gucs::log_rows_per_project().into(),
        ],
    )?;
    Ok(())
}
