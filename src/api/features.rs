//! The feature store's SQL surface: feature sets (`create_feature_set`,
//! `refresh_feature_set`, `drop_feature_set`), training sets
//! (`create_training_set`, `drop_training_set`) and `features_for`.
//! Grants go through `ambient.grant`, like a project's.
//!
//! Everything a caller reads (a source, a spine, a history) is read with
//! the caller's rights, or, when stored SQL runs again (a refresh), with
//! its author's; only the catalog and the histories' writes run as the
//! extension owner.

use pgrx::pg_getarg_datum_raw;
use pgrx::pg_sys::{self, FunctionCallInfo};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use super::attach::type_name;
use super::predict::RowDatum;
use crate::catalog::audit::{self, Entry};
use crate::catalog::feature_sets::{
    self, FeatureRef, FeatureSet, JoinPart, NewFeatureSet, NewTrainingSet, Shape, TrainingSet,
    INGESTED_AT, SUPERSEDED_AT,
};
use crate::catalog::projects::{self, Privilege};
use crate::catalog::{as_extension_owner, ensure_writable, Author, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::source::{self, Source};

/// Feature-set and training-set names become table and view names and the
/// `set` of `'set.feature'`: lower-case identifiers, short enough for the
/// names derived from them.
fn check_store_name(what: &str, name: &str) -> AmbientResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        return Ok(());
    }
    Err(
        AmbientError::invalid(format!("invalid {what} name \"{}\"", name.escape_default()))
            .hint("use a lower-case identifier of at most 48 characters: letters, digits and _"),
    )
}

/// A column of a source or spine, as a query's result describes it.
struct Column {
    name: String,
    type_oid: pg_sys::Oid,
    /// Its type, schema-qualified, as SQL the extension builds names it.
    type_sql: String,
}

/// What a source or spine argument names: a relation the caller's
/// search_path finds, or else a SELECT.
enum Named {
    Relation {
        oid: pg_sys::Oid,
        /// Schema-qualified and quoted.
        name: String,
        /// pg_class.relkind.
        kind: u8,
        owner: pg_sys::Oid,
    },
    Query(String),
}

impl Named {
    fn parse(text: &str) -> AmbientResult<Named> {
        let first_word = text
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if text.trim_start().starts_with('(')
            || ["select", "with", "values", "table"].contains(&first_word.as_str())
        {
            return match Source::query(text)? {
                Source::Query(query) => Ok(Named::Query(query)),
                _ => Err(AmbientError::invalid("not a SELECT")),
            };
        }
        // Resolved as the caller, under the caller's search_path.
        let oid = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[text.into()],
        )?;
        match oid {
            Some(oid) => {
                // SAFETY: syscache reads for a relation that exists now.
                let (kind, owner) = unsafe {
                    let tuple = pg_sys::SearchSysCache1(
                        pg_sys::SysCacheIdentifier::RELOID as i32,
                        pg_sys::Datum::from(oid),
                    );
                    if tuple.is_null() {
                        return Err(AmbientError::undefined_table(format!(
                            "relation \"{text}\" does not exist"
                        )));
                    }
                    let form = pg_sys::GETSTRUCT(tuple) as pg_sys::Form_pg_class;
                    let found = ((*form).relkind as u8, (*form).relowner);
                    pg_sys::ReleaseSysCache(tuple);
                    found
                };
                let name = crate::catalog::attachments::relation_name(oid).ok_or_else(|| {
                    AmbientError::undefined_table(format!("relation \"{text}\" does not exist"))
                })?;
                Ok(Named::Relation {
                    oid,
                    name,
                    kind,
                    owner,
                })
            }
            None => Err(AmbientError::undefined_table(format!(
                "relation \"{text}\" does not exist"
            ))
            .hint("name a table or view (schema-qualified if it is not on your search_path), or give a SELECT")),
        }
    }

    /// What to read in a FROM clause.
    fn sql_from(&self) -> String {
        match self {
            Named::Relation { name, .. } => name.clone(),
            Named::Query(query) => format!("({query}\n)"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Named::Relation { name, .. } => name.clone(),
            Named::Query(query) => query.clone(),
        }
    }

    /// The result's columns, read as the caller (so a caller who may not
    /// read it fails here, with Postgres's own error).
    fn columns(&self) -> AmbientResult<Vec<Column>> {
        let from = match self {
            Named::Relation { name, .. } => name.clone(),
            Named::Query(query) => format!("({query}\n) AS q"),
        };
        let described = Spi::connect(|client| {
            let table = client.select(&format!("SELECT * FROM {from} LIMIT 0"), None, &[])?;
            (1..=table.columns()?)
                .map(|i| Ok((table.column_name(i)?, table.column_type_oid(i)?.value())))
                .collect::<AmbientResult<Vec<_>>>()
        })?;
        Ok(described
            .into_iter()
            .map(|(name, type_oid)| Column {
                name,
                type_oid,
                type_sql: type_name(type_oid, -1, true),
            })
            .collect())
    }
}

fn find_column<'a>(columns: &'a [Column], name: &str, of: &str) -> AmbientResult<&'a Column> {
    columns.iter().find(|c| c.name == name).ok_or_else(|| {
        AmbientError::undefined_column(format!("{of} has no column \"{name}\"")).hint(format!(
            "its columns: {}",
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn is_time(oid: pg_sys::Oid) -> bool {
    [
        pg_sys::DATEOID,
        pg_sys::TIMESTAMPOID,
        pg_sys::TIMESTAMPTZOID,
    ]
    .contains(&oid)
}

fn required(name: &str) -> AmbientError {
    AmbientError::null_value(format!("{name} must not be NULL"))
}

/// Registers features computed by SQL. `source` is a table (its changes
/// are recorded by a trigger as they commit), a view or a SELECT (recorded
/// by `refresh_feature_set`); `entity` its key columns; `event_time` the
/// column saying when a value became true; `features` default to every
/// other column; `ttl` is how long a value stays valid after its event
/// time. The source's current rows are recorded at once.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn create_feature_set(
    name: Option<&str>,
    source: Option<&str>,
    entity: Option<Vec<Option<String>>>,
    event_time: Option<&str>,
    features: default!(Option<Vec<Option<String>>>, "NULL"),
    ttl: default!(Option<pgrx::datum::Interval>, "NULL"),
    description: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(feature_set, String),
        name!(source_kind, String),
        name!(history, String),
        name!(features, Vec<String>),
        name!(recorded, i64),
    ),
> {
    let created =
        create_set(name, source, entity, event_time, features, ttl, description).or_raise();
    TableIterator::once(created)
}

fn names(list: Option<Vec<Option<String>>>, what: &str) -> AmbientResult<Option<Vec<String>>> {
    list.map(|l| {
        l.into_iter()
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| required(&format!("an element of {what}")))
    })
    .transpose()
}

#[allow(clippy::too_many_arguments)]
fn create_set(
    name: Option<&str>,
    source: Option<&str>,
    entity: Option<Vec<Option<String>>>,
    event_time: Option<&str>,
    features: Option<Vec<Option<String>>>,
    ttl: Option<pgrx::datum::Interval>,
    description: Option<&str>,
) -> AmbientResult<(String, String, String, Vec<String>, i64)> {
    let caller = Caller::current();
    ensure_writable()?;
    let name = name.ok_or_else(|| required("name"))?;
    check_store_name("feature set", name)?;
    let source = Named::parse(source.ok_or_else(|| required("source"))?)?;
    let entity = names(entity, "entity")?.ok_or_else(|| required("entity"))?;
    if entity.is_empty() {
        return Err(AmbientError::invalid("entity names no column")
            .hint("entity => '{customer_id}', or several key columns"));
    }
    let event_time = event_time.ok_or_else(|| required("event_time"))?;
    let ttl = ttl.map(|t| t.to_string());
    if let Some(t) = &ttl {
        let positive = Spi::get_one_with_args::<bool>(
            "SELECT $1::pg_catalog.interval OPERATOR(pg_catalog.>) '0'::pg_catalog.interval",
            &[t.as_str().into()],
        )?
        .unwrap_or(false);
        if !positive {
            return Err(AmbientError::invalid(format!(
                "ttl must be a positive interval, got {t}"
            )));
        }
    }
    let (kind, source_relation) = match &source {
        Named::Relation {
            oid,
            kind,
            owner,
            name: relation,
        } => match *kind {
            b'r' | b'p' => {
                // The trigger that records changes alters the table.
                if !caller.acts_as(*owner) {
                    return Err(AmbientError::privilege(format!(
                        "must be the owner of table {relation} to make it a feature set's source"
                    ))
                    .hint("or give a SELECT over it, which refresh_feature_set records"));
                }
                check_unique_key(*oid, relation, &entity, event_time)?;
                ("table", Some(*oid))
            }
            b'v' | b'm' | b'f' => ("view", Some(*oid)),
            _ => {
                return Err(AmbientError::wrong_object_type(format!(
                    "{relation} is not a table, view or materialized view"
                )))
            }
        },
        Named::Query(_) => ("query", None),
    };
    let columns = source.columns()?;
    let of = format!("source {}", source.describe().lines().next().unwrap_or(""));
    for reserved in [INGESTED_AT, SUPERSEDED_AT] {
        if entity.iter().any(|e| e == reserved) || event_time == reserved {
            return Err(AmbientError::invalid(format!(
                "\"{reserved}\" is the history's own column"
            ))
            .hint("rename the column in a view or query over the source"));
        }
    }
    let mut entity_types = Vec::new();
    for key in &entity {
        entity_types.push(find_column(&columns, key, &of)?.type_sql.clone());
    }
    let time_column = find_column(&columns, event_time, &of)?;
    if !is_time(time_column.type_oid) {
        return Err(AmbientError::wrong_type(format!(
            "event_time \"{event_time}\" is {}, not a date or timestamp",
            time_column.type_sql
        )));
    }
    let features = match names(features, "features")? {
        Some(list) => list,
        None => columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|c| !entity.contains(c) && c != event_time)
            .filter(|c| c != INGESTED_AT && c != SUPERSEDED_AT)
            .collect(),
    };
    if features.is_empty() {
        return Err(AmbientError::invalid(format!(
            "feature set \"{name}\" would have no features"
        ))
        .hint("the source needs a column besides the entity and the event time"));
    }
    let mut feature_types = Vec::new();
    for (i, feature) in features.iter().enumerate() {
        if features[..i].contains(feature) {
            return Err(AmbientError::invalid(format!(
                "feature \"{feature}\" is named twice"
            )));
        }
        if entity.contains(feature) || feature == event_time {
            return Err(AmbientError::invalid(format!(
                "\"{feature}\" is a key (entity or event time), not a feature"
            )));
        }
        if feature == INGESTED_AT || feature == SUPERSEDED_AT {
            return Err(AmbientError::invalid(format!(
                "\"{feature}\" is the history's own column"
            ))
            .hint("rename the column in a view or query over the source"));
        }
        let column = find_column(&columns, feature, &of)?;
        if source::feature_kind(column.type_oid).is_none() {
            return Err(AmbientError::wrong_type(format!(
                "feature \"{feature}\" is {}: a feature is a number, boolean, text, enum, date or timestamp",
                column.type_sql
            )));
        }
        feature_types.push(column.type_sql.clone());
    }
    let search_path = Author::search_path_now()?;
    let source_text = source.describe();
    let caller_name = caller.name();
    // What its source reads, so DDL that would break it is refused.
    let source_relations = match (&source, source_relation) {
        (_, Some(relation)) => vec![relation],
        (Named::Query(query), None) => source::relations_of_query(query)?,
        (Named::Relation { oid, .. }, None) => vec![*oid],
    };
    let source_relations = source::guarded_by(&source_relations, caller.oid)?;
    as_extension_owner(|| {
        if projects::find(name)?.is_some() {
            return Err(AmbientError::duplicate_object(format!(
                "\"{name}\" is already a project's name"
            ))
            .hint("feature sets and projects share names, so ambient.grant knows which you mean"));
        }
        if feature_sets::find(name)?.is_some() {
            return Err(AmbientError::duplicate_object(format!(
                "feature set \"{name}\" already exists"
            )));
        }
        let set = feature_sets::create(&NewFeatureSet {
            name,
            source_kind: kind,
            source: &source_text,
            source_relation,
            source_relations: &source_relations,
            entity: &entity,
            entity_types: &entity_types,
            event_time,
            event_time_type: &time_column.type_sql,
            features: &features,
            feature_types: &feature_types,
            ttl: ttl.as_deref(),
            description,
            owner: caller.oid,
            source_search_path: &search_path,
            created_by: &caller_name,
        })?;
        let refreshed = feature_sets::refresh(&set)?;
        report_skipped(&set, refreshed.skipped);
        feature_sets::update_stats(&set, &caller_name)?;
        audit::record(
            Entry::feature_set(
                "create feature set",
                &caller_name,
                &set.name,
                set.id,
                set.owner,
            )
            .details(serde_json::json!({
                "source_kind": set.source_kind,
                "source": set.source,
                "entity": set.entity,
                "event_time": set.event_time,
                "features": set.features,
                "ttl": set.ttl,
                "recorded": refreshed.recorded,
            })),
        )?;
        Ok((
            set.name.clone(),
            set.source_kind.clone(),
            set.history.clone(),
            set.features.clone(),
            refreshed.recorded,
        ))
    })
}

/// Refuses a table source that could hold two rows for one entity and
/// event time: its trigger would then have to refuse a write, or keep one
/// of two values by chance. A unique index over some of those columns
/// makes the table refuse them itself.
fn check_unique_key(
    table: pg_sys::Oid,
    relation: &str,
    entity: &[String],
    event_time: &str,
) -> AmbientResult<()> {
    let keys: Vec<String> = entity
        .iter()
        .cloned()
        .chain([event_time.to_string()])
        .collect();
    // As the caller, with every operator qualified.
    let covered = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
           SELECT 1 FROM pg_catalog.pg_index i
            WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique
              AND i.indpred IS NULL AND i.indexprs IS NULL
              AND NOT EXISTS (
                    SELECT 1 FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) AS k(attnum)
                      JOIN pg_catalog.pg_attribute a
                        ON a.attrelid OPERATOR(pg_catalog.=) $1
                       AND a.attnum OPERATOR(pg_catalog.=) k.attnum
                     WHERE NOT a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2)))",
        &[table.into(), keys.clone().into()],
    )?
    .unwrap_or(false);
    if covered {
        return Ok(());
    }
    Err(AmbientError::not_in_state(format!(
        "table {relation} has no unique key within its entity and event time ({})",
        keys.join(", ")
    ))
    .hint(format!(
        "add one: ALTER TABLE {relation} ADD PRIMARY KEY ({})",
        keys.iter()
            .map(quote_identifier)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

fn report_skipped(set: &FeatureSet, skipped: i64) {
    if skipped > 0 {
        notice!(
            "feature set \"{}\": {skipped} source row(s) with a NULL entity column or event time were not recorded",
            set.name
        );
    }
}

/// Refuses DDL on a feature set's source table that would make its
/// trigger fail the table's writes: a recorded column dropped, renamed or
/// given another type. Run at the end of every DDL command by the attach
/// guard's event trigger (`ambient.check_attached_tables`).
pub(super) fn check_source_table(table: pg_sys::Oid) -> AmbientResult<()> {
    for set in feature_sets::on_table(table)? {
        let columns = set
            .entity
            .iter()
            .zip(&set.entity_types)
            .chain([(&set.event_time, &set.event_time_type)])
            .chain(set.features.iter().zip(&set.feature_types));
        for (column, recorded) in columns {
            let now = feature_sets::column_type(table, column)?.map(|t| type_name(t, -1, true));
            if now.as_deref() != Some(recorded.as_str()) {
                return Err(AmbientError::not_in_state(format!(
                    "table {} is the source of feature set \"{}\", whose trigger records its column \"{column}\" of type {recorded}",
                    crate::catalog::attachments::relation_name(table).unwrap_or_default(),
                    set.name
                ))
                .hint("drop the feature set first (ambient.drop_feature_set), change the table, then create the set again"));
            }
        }
    }
    Ok(())
}

/// Records what changed in the source since the last refresh: new and
/// corrected versions, and versions the source no longer has. For a table
/// source the trigger records changes as they commit, and a refresh only
/// catches up with what it could not see (rows written while the trigger
/// was disabled, or by replication). Schedule it on pg_cron like any SQL;
/// it reads the source as the set's owner, whoever runs it.
#[pg_extern(volatile, parallel_unsafe)]
fn refresh_feature_set(
    name: &str,
) -> TableIterator<
    'static,
    (
        name!(recorded, i64),
        name!(superseded, i64),
        name!(skipped, i64),
    ),
> {
    let caller = Caller::current();
    let refreshed = as_extension_owner(|| {
        let set = feature_sets::require_owner(name, &caller)?;
        feature_sets::lock(set.id)?;
        let refreshed = feature_sets::refresh(&set)?;
        report_skipped(&set, refreshed.skipped);
        feature_sets::update_stats(&set, &caller.name())?;
        // A refresh that changed nothing is not a change of state.
        if refreshed.recorded > 0 || refreshed.superseded > 0 {
            audit::record(
                Entry::feature_set(
                    "refresh feature set",
                    &caller.name(),
                    &set.name,
                    set.id,
                    set.owner,
                )
                .details(serde_json::json!({
                    "recorded": refreshed.recorded,
                    "superseded": refreshed.superseded,
                    "skipped": refreshed.skipped,
                })),
            )?;
        }
        Ok((refreshed.recorded, refreshed.superseded, refreshed.skipped))
    })
    .or_raise();
    TableIterator::once(refreshed)
}

/// Drops a feature set with its history. Refused while a live model or a
/// training set reads it.
#[pg_extern(volatile, parallel_unsafe)]
fn drop_feature_set(name: &str) {
    let caller = Caller::current();
    as_extension_owner(|| {
        let set = feature_sets::require_owner(name, &caller)?;
        feature_sets::lock(set.id)?;
        let live = feature_sets::live_projects_using(name)?;
        if !live.is_empty() {
            // Named only where the caller may read the project.
            let mut named = Vec::new();
            for project in &live {
                if let Some(p) = projects::find(project)? {
                    if projects::may_read(&p, &caller)? {
                        named.push(format!("project \"{project}\""));
                    }
                }
            }
            if named.len() < live.len() {
                named.push(format!(
                    "{} project(s) you may not read",
                    live.len() - named.len()
                ));
            }
            return Err(AmbientError::dependents(format!(
                "cannot drop feature set \"{name}\": the live model of {} reads it",
                named.join(", ")
            ))
            .hint("deploy a model that does not use it, or drop the project first"));
        }
        let training = feature_sets::training_sets_using(name)?;
        if !training.is_empty() {
            return Err(AmbientError::dependents(format!(
                "cannot drop feature set \"{name}\": training set(s) {} read it",
                training.join(", ")
            ))
            .hint("drop them first with ambient.drop_training_set"));
        }
        feature_sets::drop(&set)?;
        audit::record(Entry::feature_set(
            "drop feature set",
            &caller.name(),
            &set.name,
            set.id,
            set.owner,
        ))
    })
    .or_raise()
}

/// Grants or revokes a use of a feature set (`ambient.grant` and
/// `ambient.revoke` come here when the name is a feature set's).
pub(super) fn change_grant(
    name: &str,
    role: pg_sys::Oid,
    role_name: &str,
    privilege: Privilege,
    give: bool,
) -> AmbientResult<()> {
    let caller = Caller::current();
    as_extension_owner(|| {
        let set = feature_sets::require_owner(name, &caller)?;
        feature_sets::lock(set.id)?;
        let changed = if give {
            feature_sets::grant(&set, role, privilege, &caller)?
        } else {
            feature_sets::revoke(&set, role, privilege)?
        };
        if changed {
            audit::record(
                Entry::feature_set(
                    if give { "grant" } else { "revoke" },
                    &caller.name(),
                    &set.name,
                    set.id,
                    set.owner,
                )
                .details(serde_json::json!({ "role": role_name, "privilege": privilege.as_str() })),
            )?;
        } else {
            notice!(
                "role \"{role_name}\" {} \"{}\" on feature set \"{name}\"",
                if give {
                    "already has"
                } else {
                    "has no grant of"
                },
                privilege.as_str(),
            );
        }
        Ok(())
    })
}

/// Whether `name` is a feature set's (for `ambient.grant`).
pub(super) fn is_feature_set(name: &str) -> AmbientResult<bool> {
    Ok(projects::find(name)?.is_none() && feature_sets::find(name)?.is_some())
}

/// The parsed `features` argument of a training set: the sets in order of
/// first mention, each with its features.
fn resolve_features(
    list: &[String],
    caller: &Caller,
) -> AmbientResult<(Vec<FeatureSet>, Vec<FeatureRef>)> {
    let mut sets: Vec<FeatureSet> = Vec::new();
    let mut refs: Vec<FeatureRef> = Vec::new();
    for item in list {
        let Some((set_name, feature)) = item.split_once('.') else {
            return Err(AmbientError::invalid(format!(
                "feature \"{item}\" is not of the form 'set.feature'"
            ))
            .hint("name each feature with its set, e.g. 'customer_stats.spend_30d', or 'customer_stats.*'"));
        };
        if !sets.iter().any(|s| s.name == set_name) {
            sets.push(feature_sets::require_use(
                set_name,
                caller,
                Privilege::Read,
            )?);
        }
        let set = sets
            .iter()
            .find(|s| s.name == set_name)
            .ok_or_else(|| feature_sets::unknown(set_name))?;
        let wanted: Vec<&String> = if feature == "*" {
            set.features.iter().collect()
        } else {
            vec![set.features.iter().find(|f| *f == feature).ok_or_else(|| {
                AmbientError::undefined_column(format!(
                    "feature set \"{set_name}\" has no feature \"{feature}\""
                ))
                .hint(format!("its features: {}", set.features.join(", ")))
            })?]
        };
        for f in wanted {
            if let Some(other) = refs.iter().find(|r| &r.feature == f) {
                if other.set != set.name {
                    return Err(AmbientError::invalid(format!(
                        "feature \"{f}\" is in both \"{}\" and \"{}\"",
                        other.set, set.name
                    ))
                    .hint("a training set's columns are named by feature: take it from one set"));
                }
                continue;
            }
            refs.push(FeatureRef {
                set: set.name.clone(),
                feature: f.clone(),
            });
        }
    }
    if refs.is_empty() {
        return Err(AmbientError::invalid("features names no feature"));
    }
    Ok((sets, refs))
}

/// The join parts of a training set or lookup: each set with its
/// features, in the order the features were named.
pub(super) fn join_parts<'a>(sets: &'a [FeatureSet], refs: &'a [FeatureRef]) -> Vec<JoinPart<'a>> {
    sets.iter()
        .map(|set| JoinPart {
            set,
            features: refs
                .iter()
                .filter(|r| r.set == set.name)
                .map(|r| r.feature.as_str())
                .collect(),
        })
        .collect()
}

/// A point-in-time training set over `spine` (a table or a SELECT of
/// entity keys, an event time and, optionally, the label and row
/// features), as a view `ambient_training.<name>`: each spine row with
/// the values of `features` (`'set.feature'` or `'set.*'`) valid at its
/// event time, never a later one; a value older than its set's TTL is
/// NULL. With `as_of_ingest`, only what was known at that time.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::type_complexity)]
fn create_training_set(
    name: Option<&str>,
    spine: Option<&str>,
    features: Option<Vec<Option<String>>>,
    label: default!(Option<&str>, "NULL"),
    as_of_ingest: default!(Option<pgrx::datum::TimestampWithTimeZone>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(training_set, String),
        name!(view, String),
        name!(entity, Vec<String>),
        name!(event_time, String),
        name!(columns, Vec<String>),
    ),
> {
    let created = create_training(name, spine, features, label, as_of_ingest).or_raise();
    TableIterator::once(created)
}

/// (name, view, entity, event time, columns).
type CreatedTrainingSet = (String, String, Vec<String>, String, Vec<String>);

fn create_training(
    name: Option<&str>,
    spine: Option<&str>,
    features: Option<Vec<Option<String>>>,
    label: Option<&str>,
    as_of_ingest: Option<pgrx::datum::TimestampWithTimeZone>,
) -> AmbientResult<CreatedTrainingSet> {
    let caller = Caller::current();
    ensure_writable()?;
    let name = name.ok_or_else(|| required("name"))?;
    check_store_name("training set", name)?;
    let spine_text = spine.ok_or_else(|| required("spine"))?;
    let spine = Named::parse(spine_text)?;
    let list = names(features, "features")?.ok_or_else(|| required("features"))?;
    let (sets, refs) = resolve_features(&list, &caller)?;
    let columns = spine.columns()?;
    let of = "the spine";
    // The spine's keys: every set's entity columns, in order of first use.
    let entity = entity_of(&sets);
    let mut entity_types = Vec::new();
    for key in &entity {
        entity_types.push(find_column(&columns, key, of)?.type_sql.clone());
    }
    if let Some(label) = label {
        find_column(&columns, label, of)?;
    }
    let event_time = spine_time(&columns, &sets, &entity, label)?;
    let passed: Vec<String> = columns
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| !entity.contains(c) && *c != event_time && Some(c.as_str()) != label)
        .collect();
    if let Some(clash) = refs
        .iter()
        .find(|r| columns.iter().any(|c| c.name == r.feature))
    {
        return Err(AmbientError::invalid(format!(
            "the spine already has a column \"{}\", which feature set \"{}\" would add",
            clash.feature, clash.set
        ))
        .hint("leave the column out of the spine, or the feature out of the training set"));
    }
    let as_of = as_of_ingest.map(|t| t.to_iso_string());
    let parts = join_parts(&sets, &refs);
    let query = feature_sets::point_in_time_query(
        &spine.sql_from(),
        &event_time,
        Shape::Offline,
        &parts,
        as_of.as_deref(),
    );
    // Read once as the caller: a spine key whose type cannot be compared
    // with the set's, or a history the caller may not read, fails here.
    Spi::run(&format!("SELECT * FROM ({query}\n) AS t LIMIT 0"))?;
    let search_path = Author::search_path_now()?;
    let caller_name = caller.name();
    let set_hashes: Vec<String> = sets.iter().map(|s| s.definition_sha256.clone()).collect();
    as_extension_owner(|| {
        if feature_sets::find_training_set(name)?.is_some() {
            return Err(AmbientError::duplicate_object(format!(
                "training set \"{name}\" already exists"
            ))
            .hint("drop it first with ambient.drop_training_set, or choose another name"));
        }
        feature_sets::create_training_set(
            &NewTrainingSet {
                name,
                spine: &spine.describe(),
                entity: &entity,
                entity_types: &entity_types,
                event_time: &event_time,
                label,
                passed: &passed,
                features: &refs,
                as_of_ingest: as_of.as_deref(),
                query: &query,
                owner: caller.oid,
                created_by: &caller_name,
                set_hashes: &set_hashes,
            },
            &search_path,
        )?;
        audit::record(
            Entry::training_set("create training set", &caller_name, name, caller.oid).details(
                serde_json::json!({
                    "spine": spine.describe(),
                    "features": refs.iter().map(|r| format!("{}.{}", r.set, r.feature)).collect::<Vec<_>>(),
                    "label": label,
                    "as_of_ingest": as_of,
                }),
            ),
        )
    })?;
    let mut all_columns: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    all_columns.extend(refs.iter().map(|r| r.feature.clone()));
    Ok((
        name.to_string(),
        format!("ambient_training.{}", quote_identifier(name)),
        entity,
        event_time,
        all_columns,
    ))
}

/// The spine's event time: the column named as the first set's event time,
/// or else its only date or timestamp column besides the keys and label.
fn spine_time(
    columns: &[Column],
    sets: &[FeatureSet],
    entity: &[String],
    label: Option<&str>,
) -> AmbientResult<String> {
    if let Some(named) = sets
        .first()
        .and_then(|s| columns.iter().find(|c| c.name == s.event_time))
    {
        if is_time(named.type_oid) {
            return Ok(named.name.clone());
        }
    }
    let candidates: Vec<&Column> = columns
        .iter()
        .filter(|c| {
            is_time(c.type_oid) && !entity.contains(&c.name) && Some(c.name.as_str()) != label
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => Err(AmbientError::undefined_column(
            "the spine has no date or timestamp column for its event time",
        )
        .hint("give the spine a column with each row's event time")),
        many => Err(AmbientError::invalid(format!(
            "the spine has several date or timestamp columns ({}); which is the event time is unclear",
            many.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .hint(format!(
            "name the event time column \"{}\" as the feature set does, or leave the others out",
            sets.first().map_or("", |s| s.event_time.as_str())
        ))),
    }
}

/// Drops a training set's view and record. Refused while a live model
/// was trained from it, since its policy retrains from it.
#[pg_extern(volatile, parallel_unsafe)]
fn drop_training_set(name: &str) {
    let caller = Caller::current();
    as_extension_owner(|| {
        let set = feature_sets::find_training_set(name)?
            .filter(|s| caller.acts_as(s.owner))
            .ok_or_else(|| feature_sets::unknown_training_set(name))?;
        let live = Spi::get_one_with_args::<Vec<String>>(
            "SELECT COALESCE(pg_catalog.array_agg(p.name ORDER BY p.name), '{}')
               FROM ambient.live_deployments l
               JOIN ambient.model_store m ON m.id = l.model_id
               JOIN ambient.projects p ON p.id = l.project_id
              WHERE m.feature_lineage ->> 'training_set' = $1",
            &[name.into()],
        )?
        .unwrap_or_default();
        if !live.is_empty() {
            return Err(AmbientError::dependents(format!(
                "cannot drop training set \"{name}\": the live model of project(s) {} was trained from it",
                live.join(", ")
            ))
            .hint("its retrains read it; deploy another model or drop the project first"));
        }
        feature_sets::drop_training_set(&set)?;
        audit::record(Entry::training_set(
            "drop training set",
            &caller.name(),
            &set.name,
            set.owner,
        ))
    })
    .or_raise()
}

/// A training set for `ambient.train`, if the caller has its owner's
/// rights (its view reads with the caller's rights in any case).
pub(super) fn training_set_for_train(name: &str) -> AmbientResult<(TrainingSet, Vec<FeatureSet>)> {
    let set = feature_sets::find_training_set(name)?
        .ok_or_else(|| feature_sets::unknown_training_set(name))?;
    let caller = Caller::current();
    // Its spine is SQL its owner stored: only roles with the owner's
    // rights train from it, and it is read as the owner (`Source::read`).
    if !caller.acts_as(set.owner) {
        return Err(feature_sets::unknown_training_set(name));
    }
    let mut sets: Vec<FeatureSet> = Vec::new();
    for r in &set.features {
        if !sets.iter().any(|s| s.name == r.set) {
            sets.push(feature_sets::require_use(&r.set, &caller, Privilege::Read)?);
        }
    }
    Ok((set, sets))
}

/// The values of `features` (`'set.feature'` or `'set.*'`) that serving
/// would use for `entity` now, one row per feature, read with the caller's
/// rights: for debugging what a model sees. `entity` is the key value, or
/// a row of the keys (by name, or in the order the sets list them).
#[pg_extern(sql = r#"
CREATE FUNCTION ambient.features_for(features text[], entity anyelement)
RETURNS TABLE (feature_set text, feature text, value text)
    STRICT STABLE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn features_for(
    fcinfo: FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(feature_set, String),
        name!(feature, String),
        name!(value, Option<String>),
    ),
> {
    // SAFETY: a STRICT function declared (text[], anyelement).
    let rows = unsafe { features_for_call(fcinfo) }.or_raise();
    TableIterator::new(rows)
}

/// # Safety
/// `fcinfo` must be a live call of `features_for`.
unsafe fn features_for_call(
    fcinfo: FunctionCallInfo,
) -> AmbientResult<Vec<(String, String, Option<String>)>> {
    // SAFETY: per the contract.
    let list = unsafe { pgrx::pg_getarg::<Vec<Option<String>>>(fcinfo, 0) };
    let list = names(list, "features")?.ok_or_else(|| required("features"))?;
    let caller = Caller::current();
    let (sets, refs) = resolve_features(&list, &caller)?;
    let entity = entity_of(&sets);
    // SAFETY: argument 1 is the non-null anyelement of this call.
    let keys = unsafe { entity_values(fcinfo, 1, &entity)? };
    let query = online_query_for(&entity, &sets, &join_parts(&sets, &refs), Shape::OnlineText);
    let args: Vec<pgrx::datum::DatumWithOid<'_>> =
        keys.iter().map(|k| k.as_deref().into()).collect();
    // As the caller: Postgres checks SELECT on each history.
    Spi::connect(|client| {
        let table = client.select(&query, Some(1), &args)?;
        let row = table.first();
        refs.iter()
            .enumerate()
            .map(|(i, r)| {
                let value = if row.is_empty() {
                    None
                } else {
                    row.get::<String>(i + 1)?
                };
                Ok((r.set.clone(), r.feature.clone(), value))
            })
            .collect()
    })
}

/// The keys of `sets`' entities, in order of first use.
fn entity_of(sets: &[FeatureSet]) -> Vec<String> {
    let mut entity: Vec<String> = Vec::new();
    for set in sets {
        for key in &set.entity {
            if !entity.contains(key) {
                entity.push(key.clone());
            }
        }
    }
    entity
}

/// The point-in-time query for one entity at the transaction's time: the
/// spine is one row of the keys `entity` (passed as text parameters and
/// cast to the sets' key types) and `now()`; it selects the features in
/// the parts' order, as `shape` says.
pub(super) fn online_query_for(
    entity: &[String],
    sets: &[FeatureSet],
    parts: &[JoinPart<'_>],
    shape: Shape,
) -> String {
    let at = "ambient$at";
    let mut spine_columns: Vec<String> = entity
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let type_sql = sets
                .iter()
                .find_map(|s| {
                    s.entity
                        .iter()
                        .position(|e| e == key)
                        .map(|k| s.entity_types[k].as_str())
                })
                .unwrap_or("pg_catalog.text");
            format!(
                "${}::pg_catalog.text::{type_sql} AS {}",
                i + 1,
                quote_identifier(key)
            )
        })
        .collect();
    spine_columns.push(format!("pg_catalog.now() AS {}", quote_identifier(at)));
    feature_sets::point_in_time_query(
        &format!("(SELECT {})", spine_columns.join(", ")),
        at,
        shape,
        parts,
        None,
    )
}

/// An entity argument's key values as text, in `entity`'s order: a scalar
/// for a single key, or a row of the keys, matched by name when its
/// columns are named so, else by position.
///
/// # Safety
/// Argument `arg` of `fcinfo` must be a non-null value of the type the
/// call's expression says.
pub(super) unsafe fn entity_values(
    fcinfo: FunctionCallInfo,
    arg: usize,
    entity: &[String],
) -> AmbientResult<Vec<Option<String>>> {
    // SAFETY: per the contract.
    unsafe {
        let type_oid = pg_sys::get_fn_expr_argtype((*fcinfo).flinfo, arg as i32);
        if type_oid == pg_sys::InvalidOid {
            return Err(AmbientError::wrong_type(
                "the entity's type is unknown in this call",
            ));
        }
        let datum = pg_getarg_datum_raw(fcinfo, arg);
        if !pg_sys::type_is_rowtype(type_oid) {
            if entity.len() != 1 {
                return Err(AmbientError::invalid(format!(
                    "the entity has {} key columns ({}), and one value was given",
                    entity.len(),
                    entity.join(", ")
                ))
                .hint(
                    "pass a row of the keys: ROW(...) in that order, or a row with those columns",
                ));
            }
            return Ok(vec![Some(output_text(type_oid, datum))]);
        }
        let RowDatum {
            mut tuple, tupdesc, ..
        } = RowDatum::new(datum);
        let attributes: Vec<(usize, String, pg_sys::Oid)> = tupdesc
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.is_dropped())
            .map(|(i, a)| (i + 1, a.name().to_string(), a.type_oid().value()))
            .collect();
        let by_name = entity
            .iter()
            .all(|key| attributes.iter().any(|(_, name, _)| name == key));
        if !by_name && attributes.len() != entity.len() {
            return Err(AmbientError::invalid(format!(
                "the entity row has {} columns, and the entity has {} keys ({})",
                attributes.len(),
                entity.len(),
                entity.join(", ")
            )));
        }
        entity
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let (attno, _, type_oid) = if by_name {
                    attributes
                        .iter()
                        .find(|(_, name, _)| name == key)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    attributes[i].clone()
                };
                let mut is_null = false;
                let value =
                    pg_sys::heap_getattr(&mut tuple, attno as i32, tupdesc.as_ptr(), &mut is_null);
                if is_null {
                    return Err(AmbientError::null_value(format!(
                        "the entity's key \"{key}\" is NULL"
                    )));
                }
                Ok(Some(output_text(type_oid, value)))
            })
            .collect()
    }
}

/// A datum as its type's output function writes it.
///
/// # Safety
/// `datum` must be a non-null value of `type_oid`.
pub(super) unsafe fn output_text(type_oid: pg_sys::Oid, datum: pg_sys::Datum) -> String {
    // SAFETY: per the contract; the output function returns a palloc'd
    // C string.
    unsafe {
        let mut output = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut varlena);
        std::ffi::CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, datum))
            .to_string_lossy()
            .into_owned()
    }
}

/// The FROM item that reads `from` (a relation, or a subquery with its
/// alias) with the features the model `model_id` looks up and `from`
/// lacks, as they are served now: the point-in-time join with `from`'s
/// rows as its spine at the transaction's time. `from` itself when the
/// model reads no feature set, or `from` has every feature. The histories
/// are read with the rights of whoever runs it ('read' on each set).
pub(super) fn with_served_features(model_id: i64, from: &str) -> AmbientResult<String> {
    let Some(served) = feature_sets::served_features(model_id)? else {
        return Ok(from.to_string());
    };
    let columns: Vec<String> = Spi::connect(|client| {
        let table = client.select(&format!("SELECT * FROM {from} LIMIT 0"), None, &[])?;
        (1..=table.columns()?)
            .map(|i| Ok(table.column_name(i)?))
            .collect::<AmbientResult<Vec<_>>>()
    })?;
    let missing: Vec<FeatureRef> = served
        .features
        .into_iter()
        .filter(|f| !columns.contains(&f.feature))
        .collect();
    if missing.is_empty() {
        return Ok(from.to_string());
    }
    let mut sets: Vec<FeatureSet> = Vec::new();
    for r in &missing {
        if !sets.iter().any(|s| s.name == r.set) {
            sets.push(feature_sets::find(&r.set)?.ok_or_else(|| feature_sets::unknown(&r.set))?);
        }
    }
    if let Some(key) = entity_of(&sets).into_iter().find(|k| !columns.contains(k)) {
        return Err(AmbientError::undefined_column(format!(
            "the rows have no column \"{key}\", the key of the model's feature sets"
        )));
    }
    let at = "ambient$at";
    let spine = format!(
        "(SELECT r.*, pg_catalog.now() AS {} FROM (SELECT * FROM {from}) AS r)",
        quote_identifier(at)
    );
    let query = feature_sets::point_in_time_query(
        &spine,
        at,
        Shape::Offline,
        &join_parts(&sets, &missing),
        None,
    );
    Ok(format!("({query}\n) AS with_features"))
}

/// The feature sets the model `model_id` reads whose newest current event
/// is older than `limit` (an interval) before now, each with that event
/// time (`None` when it has none), read as the extension owner: what a
/// policy's `max_staleness` watches.
pub(super) fn stale_sets(
    model_id: i64,
    limit: &str,
) -> AmbientResult<Vec<(String, Option<String>)>> {
    let Some(served) = feature_sets::served_features(model_id)? else {
        return Ok(Vec::new());
    };
    let mut names: Vec<&str> = Vec::new();
    for r in &served.features {
        if !names.contains(&r.set.as_str()) {
            names.push(&r.set);
        }
    }
    let mut stale = Vec::new();
    for name in names {
        let set = feature_sets::find(name)?.ok_or_else(|| feature_sets::unknown(name))?;
        let (newest, is_stale) = feature_sets::newest_event(&set, limit)?;
        if is_stale {
            stale.push((set.name, newest));
        }
    }
    Ok(stale)
}

/// What a model trained from a training set records of it.
pub(super) fn lineage(
    training: &TrainingSet,
    sets: &[FeatureSet],
) -> AmbientResult<serde_json::Value> {
    let refs: Vec<&FeatureSet> = sets.iter().collect();
    let high_water = feature_sets::ingest_high_water(&refs, training.as_of_ingest.as_deref())?;
    Ok(serde_json::json!({
        "training_set": training.name,
        "training_set_sha256": training.definition_sha256,
        "as_of_ingest": training.as_of_ingest,
        "ingest_high_water": high_water,
        "feature_sets": sets.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "feature_set_sha256": sets
            .iter()
            .map(|s| (s.name.clone(), serde_json::json!(s.definition_sha256)))
            .collect::<serde_json::Map<_, _>>(),
        "entity": training.entity,
        "features": training.features,
    }))
}
