//! Nothing a live model depends on vanishes silently: DDL that drops,
//! renames or retypes what a live model's source reads, or what a feature
//! set's source reads, is refused, with a hint (`pg_depend`, for models).
//! `ambient.release(project)` accepts the loss for the models live now.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::subtransaction::{rolled_back, Failure};
use crate::catalog::audit::{self, Entry};
use crate::catalog::feature_sets::{self, FeatureSet};
use crate::catalog::models::{self, LiveReader};
use crate::catalog::{as_author, as_extension_owner, projects, Author, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::source::{self, Source};

/// Whether `relation` is one of the extension's own (whose upgrade script
/// alters them before the catalog this guard reads exists), or gone.
pub(super) fn is_extension_relation(relation: pg_sys::Oid) -> bool {
    // SAFETY: syscache lookups; NULL for a relation that is gone.
    let schema = unsafe {
        let name = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relation));
        (!name.is_null()).then(|| {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        })
    };
    schema.is_none_or(|s| {
        [
            "ambient",
            "ambient_features",
            "ambient_training",
            "ambient_snapshots",
        ]
        .contains(&s.as_str())
    })
}

fn refusal(what: String, reader: &LiveReader, problem: &str) -> AmbientError {
    AmbientError::dependents(format!(
        "{what}: the live model {} of project \"{}\" was trained from it ({problem})",
        reader.model_id, reader.project
    ))
    .hint(format!(
        "retrain the project from another source, deploy another model, or accept the loss with SELECT ambient.release('{}')",
        reader.project.replace('\'', "''")
    ))
}

fn set_refusal(what: String, set: &FeatureSet, problem: &str) -> AmbientError {
    AmbientError::dependents(format!(
        "{what}: feature set \"{}\" reads it ({problem})",
        set.name
    ))
    .hint("drop the feature set first (ambient.drop_feature_set), change its source, then create the set again")
}

/// After DDL changed `relation` (ALTER TABLE, a rename, CREATE OR REPLACE
/// VIEW): every live model and feature set whose source reads it must
/// still read, as its author, the columns it was made from with the types
/// they had. Called by the attachment guard's `ddl_command_end` trigger.
pub(super) fn check_changed(relation: pg_sys::Oid) -> AmbientResult<()> {
    let what = || {
        format!(
            "cannot change {}",
            crate::catalog::attachments::relation_name(relation).unwrap_or_default()
        )
    };
    for reader in models::live_reading(relation)? {
        let author = as_extension_owner(|| models::definition(reader.model_id))?.map(|d| d.author);
        let Some(author) = author else {
            // Models from before 0.2.0 keep no author: only a drop is guarded.
            continue;
        };
        if let Some(problem) = still_reads(
            &author,
            &reader.source_kind,
            &reader.source,
            &reader.columns,
            source::type_name,
        )? {
            return Err(refusal(what(), &reader, &problem));
        }
    }
    for set in feature_sets::reading(relation)? {
        // A table source's own trigger is checked by check_source_table.
        if set.source_kind == "table" {
            continue;
        }
        let columns: Vec<(String, Option<String>)> = set
            .entity
            .iter()
            .zip(&set.entity_types)
            .chain([(&set.event_time, &set.event_time_type)])
            .chain(set.features.iter().zip(&set.feature_types))
            .map(|(c, t)| (c.clone(), Some(t.clone())))
            .collect();
        let kind = if set.source_kind == "query" {
            "query"
        } else {
            "relation"
        };
        let text = if set.source_kind == "query" {
            set.source.clone()
        } else {
            crate::catalog::attachments::relation_name(set.source_relation.unwrap_or(relation))
                .unwrap_or_default()
        };
        // A set records its types schema-qualified.
        let qualified = |oid| Ok(super::attach::type_name(oid, -1, true));
        if let Some(problem) = still_reads(&set.author(), kind, &text, &columns, qualified)? {
            return Err(set_refusal(what(), &set, &problem));
        }
    }
    Ok(())
}

/// Why a stored source (`kind`, `text`) no longer gives `columns` with
/// their types (as `type_name` names them, the way they were recorded)
/// when `author` reads it now, or `None` if it does. A source that fails to
/// resolve or parse is a problem, not an error.
fn still_reads(
    author: &Author,
    kind: &str,
    text: &str,
    columns: &[(String, Option<String>)],
    type_name: impl Fn(pg_sys::Oid) -> AmbientResult<String>,
) -> AmbientResult<Option<String>> {
    let read = rolled_back(|| {
        as_author(author, || {
            let Some(source) = Source::stored(kind, text)? else {
                return Ok(None);
            };
            Ok(Some(source::column_types(&source)?))
        })
    });
    let now = match read {
        Ok(Some(now)) => now,
        Ok(None) => return Ok(Some(format!("{text} would no longer be found"))),
        Err(Failure::Ambient(e)) => return Ok(Some(e.message().to_string())),
        Err(Failure::Postgres(caught)) => {
            return Ok(Some(match *caught {
                pg_sys::panic::CaughtError::PostgresError(report)
                | pg_sys::panic::CaughtError::ErrorReport(report) => report.message().to_string(),
                pg_sys::panic::CaughtError::RustPanic { ereport, .. } => {
                    ereport.message().to_string()
                }
            }))
        }
    };
    for (column, recorded) in columns {
        match now.iter().find(|(name, _)| name == column) {
            None => return Ok(Some(format!("it reads column \"{column}\""))),
            Some((_, type_oid)) => {
                let found = type_name(*type_oid)?;
                if let Some(recorded) = recorded.as_ref().filter(|r| **r != found) {
                    return Ok(Some(format!(
                        "it reads column \"{column}\" as {recorded}, not {found}"
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// Called by the `sql_drop` event trigger with the tables and views a
/// command dropped: refused while a live model or a feature set reads one.
#[pg_extern(volatile, parallel_unsafe)]
fn sources_dropped(relations: Vec<Option<pg_sys::Oid>>, names: Vec<Option<String>>) {
    check_dropped(&relations, &names).or_raise()
}

fn check_dropped(relations: &[Option<pg_sys::Oid>], names: &[Option<String>]) -> AmbientResult<()> {
    for (relation, name) in relations.iter().zip(names) {
        let (Some(relation), Some(name)) = (relation, name) else {
            continue;
        };
        let what = || format!("cannot drop {name}");
        if let Some(reader) = models::live_reading(*relation)?.first() {
            return Err(refusal(what(), reader, "it would no longer exist"));
        }
        if let Some(set) = feature_sets::reading(*relation)?.first() {
            return Err(set_refusal(what(), set, "it would no longer exist"));
        }
    }
    Ok(())
}

/// Accepts that the sources of the project's live model (and of a running
/// challenger) may change or go: DDL on them is no longer refused for
/// these models. A model deployed later is guarded again. Returns the
/// models released.
#[pg_extern(volatile, parallel_unsafe)]
fn release(project: &str, reason: default!(Option<&str>, "NULL")) -> Vec<i64> {
    release_project(project, reason).or_raise()
}

fn release_project(project: &str, reason: Option<&str>) -> AmbientResult<Vec<i64>> {
    let caller = Caller::current();
    as_extension_owner(|| {
        let locked = projects::lock_for_change(project, &caller)?;
        let by = caller.name();
        let released = models::release_sources(locked.id, &by, reason)?;
        if released.is_empty() {
            notice!("project \"{project}\" has no live model whose sources are guarded");
            return Ok(released);
        }
        audit::record(
            Entry::project("release", &by, &locked.name, locked.id, locked.owner)
                .reason(reason)
                .details(serde_json::json!({ "models": released })),
        )?;
        Ok(released)
    })
}

extension_sql!(
    r#"
-- A live model's or a feature set's source cannot be dropped from under
-- it (ALTER EVENT TRIGGER ... DISABLE turns this off).
CREATE FUNCTION ambient.guard_dropped_sources() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ambient.sources_dropped(
        ARRAY(SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type IN ('table', 'view', 'materialized view', 'foreign table')
               ORDER BY objid),
        ARRAY(SELECT object_identity FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type IN ('table', 'view', 'materialized view', 'foreign table')
               ORDER BY objid));
END $$;
REVOKE EXECUTE ON FUNCTION ambient.sources_dropped(oid[], text[]) FROM PUBLIC;
CREATE EVENT TRIGGER ambient_guard_dropped_sources ON sql_drop
    EXECUTE FUNCTION ambient.guard_dropped_sources();
"#,
    name = "source_guard_event_trigger",
    requires = [sources_dropped],
);
