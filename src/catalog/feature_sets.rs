//! The feature store's catalog: `ambient.feature_set_store` and its
//! grants, each set's history table (with its staging table and, for a
//! table source, its trigger) in schema `ambient_features`, and
//! `ambient.training_set_store` with its views in `ambient_training`.
//!
//! A history row is one version of an entity's features at an event time
//! (valid time), with `ingested_at`, when the database learned it, and
//! `superseded_at`, when a correction or a retraction replaced it
//! (transaction time). What was known at any moment `A` is the rows with
//! `ingested_at <= A` and `superseded_at` NULL or after `A`; what is known
//! now is the rows whose `superseded_at` is NULL, at most one per entity
//! and event time (a partial unique index holds that).

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::JsonB;

use super::projects::{Grants, Privilege};
use super::{as_author, as_owner, Author, Caller, PINNED_SEARCH_PATH};
use crate::error::{AmbientError, AmbientResult};

/// Columns a history table adds to the source's.
pub const INGESTED_AT: &str = "ingested_at";
pub const SUPERSEDED_AT: &str = "superseded_at";

#[derive(Debug, Clone)]
pub struct FeatureSet {
    pub id: i64,
    pub name: String,
    /// 'table', 'view' or 'query'.
    pub source_kind: String,
    /// The schema-qualified relation as given, or the query text.
    pub source: String,
    /// The table or view (NULL for a query), which follows renames.
    pub source_relation: Option<pg_sys::Oid>,
    pub entity: Vec<String>,
    pub entity_types: Vec<String>,
    pub event_time: String,
    pub event_time_type: String,
    pub features: Vec<String>,
    pub feature_types: Vec<String>,
    /// The TTL as interval text, e.g. `30 days`.
    pub ttl: Option<String>,
    /// The history table, schema-qualified and quoted.
    pub history: String,
    pub owner: pg_sys::Oid,
    pub source_search_path: String,
    pub definition_sha256: String,
}

impl FeatureSet {
    /// The role the source is read as, under the search_path it was
    /// defined under.
    pub fn author(&self) -> Author {
        Author {
            role: self.owner,
            search_path: self.source_search_path.clone(),
        }
    }

    /// The SQL that reads the source's rows, as its author.
    pub fn source_sql(&self) -> AmbientResult<String> {
        match self.source_relation {
            None => Ok(format!("({}\n) AS source", self.source)),
            Some(relation) => super::attachments::relation_name(relation).ok_or_else(|| {
                AmbientError::undefined_table(format!(
                    "the source {} of feature set \"{}\" no longer exists",
                    self.source, self.name
                ))
            }),
        }
    }

    /// Entity columns, event time and features: the columns the history
    /// keeps from the source, quoted.
    pub fn recorded_columns(&self) -> Vec<String> {
        self.entity
            .iter()
            .chain([&self.event_time])
            .chain(&self.features)
            .map(quote_identifier)
            .collect()
    }

    fn staging(&self) -> String {
        staging_name(&self.name)
    }
}

fn history_name(set: &str) -> String {
    format!("ambient_features.{}", quote_identifier(set))
}

/// `$` is not allowed in a set's name, so these never collide with a
/// history table.
fn staging_name(set: &str) -> String {
    format!(
        "ambient_features.{}",
        quote_identifier(format!("{set}$staging"))
    )
}

fn recorder_name(set: &str) -> String {
    format!(
        "ambient_features.{}",
        quote_identifier(format!("{set}$record"))
    )
}

const COLUMNS: &str = "id, name, source_kind, source, entity, entity_types, event_time,
    features, feature_types, ttl::pg_catalog.text, history::pg_catalog.text,
    owner::pg_catalog.oid, source_search_path, definition_sha256, event_time_type,
    source_relation::pg_catalog.oid";

fn from_row(row: &pgrx::spi::SpiHeapTupleData<'_>) -> AmbientResult<FeatureSet> {
    Ok(FeatureSet {
        id: row.get(1)?.unwrap_or_default(),
        name: row.get(2)?.unwrap_or_default(),
        source_kind: row.get(3)?.unwrap_or_default(),
        source: row.get(4)?.unwrap_or_default(),
        entity: row.get(5)?.unwrap_or_default(),
        entity_types: row.get(6)?.unwrap_or_default(),
        event_time: row.get(7)?.unwrap_or_default(),
        features: row.get(8)?.unwrap_or_default(),
        feature_types: row.get(9)?.unwrap_or_default(),
        ttl: row.get(10)?,
        history: row.get(11)?.unwrap_or_default(),
        owner: row.get(12)?.unwrap_or(pg_sys::Oid::INVALID),
        source_search_path: row.get(13)?.unwrap_or_default(),
        definition_sha256: row.get(14)?.unwrap_or_default(),
        event_time_type: row.get(15)?.unwrap_or_default(),
        source_relation: row.get(16)?,
    })
}

pub fn find(name: &str) -> AmbientResult<Option<FeatureSet>> {
    as_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                &format!(
                    "SELECT {COLUMNS} FROM ambient.feature_set_store
                      WHERE name OPERATOR(pg_catalog.=) $1"
                ),
                None,
                &[name.into()],
            )?;
            match rows.into_iter().next() {
                Some(row) => Ok(Some(from_row(&row)?)),
                None => Ok(None),
            }
        })
    })
}

/// The feature sets whose trigger records `table`'s changes.
pub fn on_table(table: pg_sys::Oid) -> AmbientResult<Vec<FeatureSet>> {
    sets_where(
        "source_kind OPERATOR(pg_catalog.=) 'table'
         AND source_relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
        table,
    )
}

/// The feature sets whose source reads `relation` (a table or view
/// source, or one a query source's plan depends on).
pub fn reading(relation: pg_sys::Oid) -> AmbientResult<Vec<FeatureSet>> {
    sets_where(
        "$1 OPERATOR(pg_catalog.=) ANY (source_relations::pg_catalog.oid[])",
        relation,
    )
}

/// The feature sets `condition` (on `$1`, a relation) selects.
fn sets_where(condition: &str, relation: pg_sys::Oid) -> AmbientResult<Vec<FeatureSet>> {
    as_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    &format!("SELECT {COLUMNS} FROM ambient.feature_set_store WHERE {condition}"),
                    None,
                    &[relation.into()],
                )?
                .map(|row| from_row(&row))
                .collect()
        })
    })
}

/// A column's type, schema-qualified as a feature set records it, or
/// `None` if the table has no such column.
pub fn column_type(table: pg_sys::Oid, column: &str) -> AmbientResult<Option<pg_sys::Oid>> {
    as_owner(|| {
        Ok(Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT (SELECT atttypid FROM pg_catalog.pg_attribute
                      WHERE attrelid OPERATOR(pg_catalog.=) $1
                        AND attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
                        AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped)",
            &[table.into(), column.into()],
        )?)
    })
}

pub fn unknown(name: &str) -> AmbientError {
    AmbientError::undefined_object(format!("feature set \"{name}\" does not exist"))
        .hint("SELECT feature_set FROM ambient.feature_sets lists the feature sets you may read")
}

/// Who may use a feature set besides its owners.
pub fn grants_of(set_id: i64) -> AmbientResult<Grants> {
    as_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT grantee::pg_catalog.oid, privilege FROM ambient.feature_set_grants
                      WHERE feature_set_id OPERATOR(pg_catalog.=) $1",
                    None,
                    &[set_id.into()],
                )?
                .map(|row| {
                    let grantee = row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID);
                    let privilege = Privilege::parse(&row.get::<String>(2)?.unwrap_or_default())?;
                    Ok((grantee, privilege))
                })
                .collect()
        })
    })
}

/// The set, if `caller` may use it as `wanted` asks ('read' covers
/// 'predict'); a set the caller has no use of at all is answered as one
/// that does not exist, so names cannot be probed.
pub fn require_use(name: &str, caller: &Caller, wanted: Privilege) -> AmbientResult<FeatureSet> {
    let set = find(name)?.ok_or_else(|| unknown(name))?;
    if !caller.acts_as(set.owner) {
        check_use(name, set.owner, &grants_of(set.id)?, caller, wanted)?;
    }
    Ok(set)
}

/// Errors unless `caller` may use the set `name` (owned by `owner`, with
/// `grants`) as `wanted` asks: decided in Rust from role oids.
pub fn check_use(
    name: &str,
    owner: pg_sys::Oid,
    grants: &Grants,
    caller: &Caller,
    wanted: Privilege,
) -> AmbientResult<()> {
    if caller.acts_as(owner) {
        return Ok(());
    }
    let mine = || {
        grants
            .iter()
            .filter(|&&(grantee, _)| caller.acts_as(grantee))
    };
    if mine().any(|&(_, p)| p == Privilege::Read || p == wanted) {
        return Ok(());
    }
    if mine().next().is_none() {
        return Err(unknown(name));
    }
    Err(
        AmbientError::privilege(format!("permission denied for feature set \"{name}\"")).hint(
            format!(
                "its owner can allow you with ambient.grant('{name}', '{}', '{}')",
                caller.name().replace('\'', "''"),
                wanted.as_str()
            ),
        ),
    )
}

/// The set, if `caller` acts as its owner.
pub fn require_owner(name: &str, caller: &Caller) -> AmbientResult<FeatureSet> {
    let set = require_use(name, caller, Privilege::Predict)?;
    if caller.acts_as(set.owner) {
        return Ok(set);
    }
    Err(
        AmbientError::privilege(format!("permission denied for feature set \"{name}\""))
            .hint("only roles with the privileges of the feature set's owner may change it"),
    )
}

/// Locks the set's row until the transaction ends, so refreshes, grants
/// and drops of one set happen one at a time (see `projects::lock` for why
/// it updates). Call inside `as_extension_owner`.
pub fn lock(id: i64) -> AmbientResult<()> {
    Spi::run_with_args(
        "UPDATE ambient.feature_set_store SET name = name WHERE id OPERATOR(pg_catalog.=) $1",
        &[id.into()],
    )?;
    Ok(())
}

/// What `create_feature_set` records.
pub struct NewFeatureSet<'a> {
    pub name: &'a str,
    pub source_kind: &'a str,
    pub source: &'a str,
    pub source_relation: Option<pg_sys::Oid>,
    /// Every relation reading the source touches.
    pub source_relations: &'a [pg_sys::Oid],
    pub entity: &'a [String],
    pub entity_types: &'a [String],
    pub event_time: &'a str,
    pub event_time_type: &'a str,
    pub features: &'a [String],
    pub feature_types: &'a [String],
    pub ttl: Option<&'a str>,
    pub description: Option<&'a str>,
    pub owner: pg_sys::Oid,
    pub source_search_path: &'a str,
    pub created_by: &'a str,
}

impl NewFeatureSet<'_> {
    /// sha256 over everything that decides the set's values.
    fn sha256(&self) -> String {
        let definition = serde_json::json!({
            "source_kind": self.source_kind,
            "source": self.source,
            "entity": self.entity,
            "entity_types": self.entity_types,
            "event_time": self.event_time,
            "event_time_type": self.event_time_type,
            "features": self.features,
            "feature_types": self.feature_types,
            "ttl": self.ttl,
        });
        crate::ml::artifact::sha256_hex(definition.to_string().as_bytes())
    }
}

/// Records the set and creates its history and staging tables (and, for a
/// table source, the trigger that records every change). The history is
/// readable by the owning role; nobody but the extension writes it.
/// Call inside `as_extension_owner`.
pub fn create(new: &NewFeatureSet<'_>) -> AmbientResult<FeatureSet> {
    let history = history_name(new.name);
    let staging = staging_name(new.name);
    let quoted = |names: &[String]| -> Vec<String> { names.iter().map(quote_identifier).collect() };
    let keys = quoted(new.entity);
    let key_list = keys
        .iter()
        .chain([&quote_identifier(new.event_time)])
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let mut columns: Vec<String> = keys
        .iter()
        .zip(new.entity_types)
        .map(|(c, t)| format!("{c} {t} NOT NULL"))
        .collect();
    columns.push(format!(
        "{} {} NOT NULL",
        quote_identifier(new.event_time),
        new.event_time_type
    ));
    columns.extend(
        quoted(new.features)
            .iter()
            .zip(new.feature_types)
            .map(|(c, t)| format!("{c} {t}")),
    );
    let data_columns = columns.join(",\n    ");
    let owner = quote_identifier(role_name(new.owner));
    let recorded: Vec<String> = keys
        .iter()
        .chain([&quote_identifier(new.event_time)])
        .chain(&quoted(new.features))
        .cloned()
        .collect();
    Spi::run(&format!(
        "CREATE TABLE {history} (
    {data_columns},
    {INGESTED_AT} timestamptz NOT NULL DEFAULT pg_catalog.now(),
    {SUPERSEDED_AT} timestamptz);
CREATE UNIQUE INDEX ON {history} ({key_list}) WHERE {SUPERSEDED_AT} IS NULL;
CREATE INDEX ON {history} ({key_list}, {INGESTED_AT});
REVOKE ALL ON {history} FROM PUBLIC;
GRANT SELECT ON {history} TO {owner};
CREATE UNLOGGED TABLE {staging} (
    {data},
    refresh_xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id());
REVOKE ALL ON {staging} FROM PUBLIC;
GRANT INSERT ({recorded}) ON {staging} TO {owner};",
        data = data_columns.replace(" NOT NULL", ""),
        recorded = recorded.join(", "),
    ))?;
    let sha = new.sha256();
    let id = Spi::get_one_with_args::<i64>(
        "INSERT INTO ambient.feature_set_store
           (name, source_kind, source, entity, entity_types, event_time, event_time_type,
            features, feature_types, ttl, description, history, owner, source_search_path,
            definition_sha256, created_by, source_relation, source_relations)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::pg_catalog.interval, $11,
                 $12::pg_catalog.regclass, $13::pg_catalog.oid, $14, $15, $16,
                 $17::pg_catalog.oid::pg_catalog.regclass, $18::pg_catalog.regclass[])
         RETURNING id",
        &[
            new.name.into(),
            new.source_kind.into(),
            new.source.into(),
            new.entity.to_vec().into(),
            new.entity_types.to_vec().into(),
            new.event_time.into(),
            new.event_time_type.into(),
            new.features.to_vec().into(),
            new.feature_types.to_vec().into(),
            new.ttl.into(),
            new.description.into(),
            history.as_str().into(),
            new.owner.into(),
            new.source_search_path.into(),
            sha.as_str().into(),
            new.created_by.into(),
            new.source_relation.into(),
            new.source_relations.to_vec().into(),
        ],
    )?
    .ok_or_else(|| AmbientError::invalid("feature set insert returned no id"))?;
    let set = FeatureSet {
        id,
        name: new.name.to_string(),
        source_kind: new.source_kind.to_string(),
        source: new.source.to_string(),
        source_relation: new.source_relation,
        entity: new.entity.to_vec(),
        entity_types: new.entity_types.to_vec(),
        event_time: new.event_time.to_string(),
        event_time_type: new.event_time_type.to_string(),
        features: new.features.to_vec(),
        feature_types: new.feature_types.to_vec(),
        ttl: new.ttl.map(str::to_string),
        history,
        owner: new.owner,
        source_search_path: new.source_search_path.to_string(),
        definition_sha256: sha,
    };
    if set.source_kind == "table" {
        record_changes(&set, &set.source_sql()?)?;
    }
    Ok(set)
}

fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: GetUserNameFromId returns a palloc'd C string or raises.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(role, false))
            .to_string_lossy()
            .into_owned()
    }
}

/// The trigger that records a table source's changes as they commit with
/// the writing transaction:
/// - an INSERT, or an UPDATE that changes a recorded column, records the
///   new row's version: a correction when its entity and event time
///   already had one (that one is superseded), a new value otherwise; the
///   old row's version stays in the history, as what was valid then;
/// - a DELETE retracts the row's version;
/// - a TRUNCATE retracts every version;
/// - a row with a NULL entity column or event time is not recorded.
///
/// It runs as the extension owner (SECURITY DEFINER, pinned search_path),
/// since writers of the table may not write the history, and it only ever
/// copies the row's values.
fn record_changes(set: &FeatureSet, table: &str) -> AmbientResult<()> {
    let history = &set.history;
    let row_of = |record: &str| -> String {
        set.recorded_columns()
            .iter()
            .map(|c| format!("{record}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key_of = |record: &str| -> String {
        set.entity
            .iter()
            .chain([&set.event_time])
            .map(|c| {
                let c = quote_identifier(c);
                format!("h.{c} = {record}.{c}")
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let key_is_null = set
        .entity
        .iter()
        .chain([&set.event_time])
        .map(|c| format!("NEW.{} IS NULL", quote_identifier(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    // A recorded column whose type is no longer the one the history was
    // made with (an ALTER of the source) is never read: its values could
    // go through a cast its owner wrote, which would run as the extension
    // owner. The write still succeeds; the gap is a WARNING.
    let recorded_types: Vec<String> = set
        .entity
        .iter()
        .zip(&set.entity_types)
        .chain([(&set.event_time, &set.event_time_type)])
        .chain(set.features.iter().zip(&set.feature_types))
        .map(|(c, t)| format!("({}, {}::regtype)", quote_literal(c), quote_literal(t)))
        .collect();
    // Read from the catalog, not from NEW: a NEW field whose type changed
    // would fail the function's cached plan, and with it the write.
    let body = format!(
        "BEGIN
    IF TG_OP <> 'TRUNCATE' AND (
        SELECT count(*) FROM pg_attribute a
         WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
           AND (a.attname::text, a.atttypid) IN ({recorded_types})) <> {count} THEN
        RAISE WARNING 'feature set \"{set_name}\" did not record this change: its source no longer has the columns it was made with';
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE {history} SET {SUPERSEDED_AT} = now() WHERE {SUPERSEDED_AT} IS NULL;
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        UPDATE {history} h SET {SUPERSEDED_AT} = now()
         WHERE h.{SUPERSEDED_AT} IS NULL AND {old_key};
        RETURN NULL;
    END IF;
    IF {key_is_null} THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND ROW({new_row}) IS NOT DISTINCT FROM ROW({old_row}) THEN
        RETURN NULL;
    END IF;
    UPDATE {history} h SET {SUPERSEDED_AT} = now()
     WHERE h.{SUPERSEDED_AT} IS NULL AND {new_key};
    INSERT INTO {history} ({columns}) VALUES ({new_row});
    RETURN NULL;
END",
        old_key = key_of("OLD"),
        new_key = key_of("NEW"),
        new_row = row_of("NEW"),
        old_row = row_of("OLD"),
        columns = set.recorded_columns().join(", "),
        set_name = set.name,
        recorded_types = recorded_types.join(", "),
        count = recorded_types.len(),
    );
    let recorder = recorder_name(&set.name);
    let trigger = quote_identifier(format!("ambient_feature_set_{}", set.id));
    let truncate = quote_identifier(format!("ambient_feature_set_{}_truncate", set.id));
    Spi::run(&format!(
        "CREATE FUNCTION {recorder}() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = {PINNED_SEARCH_PATH} AS {body};
REVOKE ALL ON FUNCTION {recorder}() FROM PUBLIC;
CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {recorder}();
CREATE TRIGGER {truncate} AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {recorder}();",
        body = quote_literal(&body),
    ))?;
    Ok(())
}

/// What a refresh changed.
pub struct Refreshed {
    /// New versions: new entities or event times, and corrections.
    pub recorded: i64,
    /// Versions the source no longer has, or has with other values.
    pub superseded: i64,
    /// Source rows left out for a NULL entity column or event time.
    pub skipped: i64,
}

/// Brings the history up to the source as it is now, at this
/// transaction's time: what is new or changed at an (entity, event time)
/// is recorded, superseding the version there. For a view or a query,
/// versions the source no longer has are superseded too. A table's
/// trigger keeps the version a row had before an UPDATE moved it to
/// another event time (it was valid until then), so a refresh of a table
/// only catches up with rows the trigger did not see, and holds a SHARE
/// lock on the table meanwhile, so that no write the trigger records
/// comes between its read and its comparison.
///
/// The source is read as the set's owner, with the owner's rights only,
/// into the set's staging table (the only write the owner may make there);
/// the rest runs as the extension owner. Call inside `as_extension_owner`,
/// holding the set's lock (so refreshes of a set never overlap).
pub fn refresh(set: &FeatureSet) -> AmbientResult<Refreshed> {
    let staging = set.staging();
    let history = &set.history;
    let columns = set.recorded_columns().join(", ");
    let source = set.source_sql()?;
    // Rows another transaction left are its owner's own inserts: never
    // compared.
    Spi::run(&format!("DELETE FROM {staging}"))?;
    if set.source_kind == "table" {
        Spi::run(&format!("LOCK TABLE {source} IN SHARE MODE"))?;
    }
    as_author(&set.author(), || {
        Spi::run(&format!(
            "INSERT INTO {staging} ({columns}) SELECT {columns} FROM {source}"
        ))?;
        Ok(())
    })?;
    let mine = "s.refresh_xid = pg_catalog.pg_current_xact_id()";
    let key_is_null = set
        .entity
        .iter()
        .chain([&set.event_time])
        .map(|c| format!("s.{} IS NULL", quote_identifier(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let skipped = Spi::get_one::<i64>(&format!(
        "WITH gone AS (DELETE FROM {staging} s WHERE {mine} AND ({key_is_null}) RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone"
    ))?
    .unwrap_or(0);
    let keys: Vec<String> = set
        .entity
        .iter()
        .chain([&set.event_time])
        .map(quote_identifier)
        .collect();
    let s_keys = keys
        .iter()
        .map(|k| format!("s.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(duplicate) = Spi::get_one::<String>(&format!(
        "SELECT (SELECT ROW({s_keys})::pg_catalog.text FROM {staging} s WHERE {mine}
                  GROUP BY {s_keys} HAVING pg_catalog.count(*) > 1 LIMIT 1)"
    ))? {
        return Err(AmbientError::unique_violation(format!(
            "the source of feature set \"{}\" has more than one row for entity and event time {duplicate}",
            set.name
        ))
        .hint("a feature set holds one value per entity and event time: aggregate or filter the source"));
    }
    let same_key = keys
        .iter()
        .map(|k| format!("s.{k} = h.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let values = |alias: &str| -> String {
        set.features
            .iter()
            .map(|f| format!("{alias}.{}", quote_identifier(f)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same_values = format!(
        "ROW({}) IS NOT DISTINCT FROM ROW({})",
        values("s"),
        values("h")
    );
    // A version is replaced where the source has other values at its key;
    // for a view or query, also where the source no longer has its key.
    let replaced = if set.source_kind == "table" {
        format!(
            "EXISTS (SELECT 1 FROM {staging} s WHERE {mine} AND {same_key} AND NOT ({same_values}))"
        )
    } else {
        format!(
            "NOT EXISTS (SELECT 1 FROM {staging} s WHERE {mine} AND {same_key} AND {same_values})"
        )
    };
    let superseded = Spi::get_one::<i64>(&format!(
        "WITH gone AS (
            UPDATE {history} h SET {SUPERSEDED_AT} = pg_catalog.now()
             WHERE h.{SUPERSEDED_AT} IS NULL AND {replaced}
            RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone"
    ))?
    .unwrap_or(0);
    let recorded = Spi::get_one::<i64>(&format!(
        "WITH added AS (
            INSERT INTO {history} ({columns})
            SELECT {s_columns} FROM {staging} s
             WHERE {mine}
               AND NOT EXISTS (SELECT 1 FROM {history} h
                                WHERE h.{SUPERSEDED_AT} IS NULL AND {same_key})
            RETURNING 1)
         SELECT pg_catalog.count(*) FROM added",
        s_columns = set
            .recorded_columns()
            .iter()
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    ))?
    .unwrap_or(0);
    Spi::run(&format!("DELETE FROM {staging} s WHERE {mine}"))?;
    Ok(Refreshed {
        recorded,
        superseded,
        skipped,
    })
}

/// Recomputes the per-feature statistics over the current versions, and
/// marks the set refreshed. Call inside `as_extension_owner`.
pub fn update_stats(set: &FeatureSet, refreshed_by: &str) -> AmbientResult<()> {
    let parts: Vec<String> = set
        .features
        .iter()
        .zip(&set.feature_types)
        .map(|(feature, type_name)| {
            let c = format!("h.{}", quote_identifier(feature));
            let numeric = matches!(
                type_name.as_str(),
                "smallint" | "integer" | "bigint" | "real" | "double precision"
            ) || type_name.starts_with("numeric");
            let boolean = type_name == "boolean";
            let (min, max, mean, std) = if numeric {
                (
                    format!("pg_catalog.min({c})::pg_catalog.text"),
                    format!("pg_catalog.max({c})::pg_catalog.text"),
                    format!("pg_catalog.avg({c})::float8"),
                    format!("pg_catalog.stddev_samp({c})::float8"),
                )
            } else if boolean {
                (
                    format!("pg_catalog.bool_and({c})::pg_catalog.text"),
                    format!("pg_catalog.bool_or({c})::pg_catalog.text"),
                    format!("pg_catalog.avg({c}::pg_catalog.int4)::float8"),
                    "NULL::float8".to_string(),
                )
            } else {
                (
                    format!("pg_catalog.min({c})::pg_catalog.text"),
                    format!("pg_catalog.max({c})::pg_catalog.text"),
                    "NULL::float8".to_string(),
                    "NULL::float8".to_string(),
                )
            };
            format!(
                "pg_catalog.jsonb_build_object({name}, pg_catalog.jsonb_build_object(
                    'rows', pg_catalog.count(*), 'nulls', pg_catalog.count(*) - pg_catalog.count({c}),
                    'distinct', pg_catalog.count(DISTINCT {c}), 'min', {min}, 'max', {max},
                    'mean', {mean}, 'std', {std}))",
                name = quote_literal(feature),
            )
        })
        .collect();
    let stats = if parts.is_empty() {
        "'{}'::jsonb".to_string()
    } else {
        parts.join(" || ")
    };
    Spi::run_with_args(
        &format!(
            "UPDATE ambient.feature_set_store
                SET feature_stats = (SELECT {stats} FROM {} h WHERE h.{SUPERSEDED_AT} IS NULL),
                    refreshed_at = pg_catalog.now(), refreshed_by = $2
              WHERE id = $1",
            set.history
        ),
        &[set.id.into(), refreshed_by.into()],
    )?;
    Ok(())
}

/// The newest event time among `set`'s current versions (as text), and
/// whether it is older than `limit` (an interval) before now, or missing.
pub fn newest_event(set: &FeatureSet, limit: &str) -> AmbientResult<(Option<String>, bool)> {
    as_owner(|| {
        Spi::connect(|client| {
            let row = client
                .select(
                    &format!(
                        "SELECT pg_catalog.max(h.{event})::pg_catalog.timestamptz::pg_catalog.text,
                                COALESCE(pg_catalog.max(h.{event})::pg_catalog.timestamptz
                                           OPERATOR(pg_catalog.<) (pg_catalog.now()
                                             OPERATOR(pg_catalog.-) $1::pg_catalog.interval), true)
                           FROM {history} h WHERE h.{SUPERSEDED_AT} IS NULL",
                        event = quote_identifier(&set.event_time),
                        history = set.history,
                    ),
                    Some(1),
                    &[limit.into()],
                )?
                .first();
            Ok((row.get::<String>(1)?, row.get::<bool>(2)?.unwrap_or(true)))
        })
    })
}

/// The training sets that read `set`, by name.
pub fn training_sets_using(set: &str) -> AmbientResult<Vec<String>> {
    Ok(Spi::get_one_with_args::<Vec<String>>(
        "SELECT COALESCE(pg_catalog.array_agg(name ORDER BY name), '{}')
           FROM ambient.training_set_store
          WHERE features @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('set', $1))",
        &[set.into()],
    )?
    .unwrap_or_default())
}

/// The projects whose live model reads `set`.
pub fn live_projects_using(set: &str) -> AmbientResult<Vec<String>> {
    Ok(Spi::get_one_with_args::<Vec<String>>(
        "SELECT COALESCE(pg_catalog.array_agg(DISTINCT project ORDER BY project), '{}')
           FROM ambient.feature_set_users WHERE feature_set = $1",
        &[set.into()],
    )?
    .unwrap_or_default())
}

/// Drops the set's trigger, history and staging tables and its row.
/// Call inside `as_extension_owner`, holding the set's lock.
pub fn drop(set: &FeatureSet) -> AmbientResult<()> {
    let recorder = recorder_name(&set.name);
    Spi::run(&format!(
        "DROP FUNCTION IF EXISTS {recorder}() CASCADE;
         DROP TABLE {}, {};",
        set.history,
        set.staging()
    ))?;
    Spi::run_with_args(
        "DELETE FROM ambient.feature_set_store WHERE id = $1",
        &[set.id.into()],
    )?;
    Ok(())
}

/// Lets `grantee` use the set; true if it could not already. 'read'
/// grants SELECT on the history, so Postgres itself checks every read of
/// it. Call inside `as_extension_owner`, holding the set's lock.
pub fn grant(
    set: &FeatureSet,
    grantee: pg_sys::Oid,
    privilege: Privilege,
    caller: &Caller,
) -> AmbientResult<bool> {
    let inserted = Spi::get_one_with_args::<i64>(
        "WITH added AS (
            INSERT INTO ambient.feature_set_grants (feature_set_id, grantee, privilege, granted_by)
            VALUES ($1, $2::pg_catalog.oid, $3, $4) ON CONFLICT DO NOTHING RETURNING 1)
         SELECT pg_catalog.count(*) FROM added",
        &[
            set.id.into(),
            grantee.into(),
            privilege.as_str().into(),
            caller.name().as_str().into(),
        ],
    )?
    .unwrap_or(0);
    sync_history_grant(set, grantee)?;
    Ok(inserted > 0)
}

/// Takes a grant back; true if there was one.
/// Call inside `as_extension_owner`, holding the set's lock.
pub fn revoke(set: &FeatureSet, grantee: pg_sys::Oid, privilege: Privilege) -> AmbientResult<bool> {
    let deleted = Spi::get_one_with_args::<i64>(
        "WITH gone AS (
            DELETE FROM ambient.feature_set_grants
             WHERE feature_set_id = $1 AND grantee = $2::pg_catalog.oid AND privilege = $3
            RETURNING 1)
         SELECT pg_catalog.count(*) FROM gone",
        &[set.id.into(), grantee.into(), privilege.as_str().into()],
    )?
    .unwrap_or(0);
    sync_history_grant(set, grantee)?;
    Ok(deleted > 0)
}

/// SELECT on the history for `grantee` exactly when it owns the set or
/// holds 'read'.
fn sync_history_grant(set: &FeatureSet, grantee: pg_sys::Oid) -> AmbientResult<()> {
    let reads = grantee == set.owner
        || Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM ambient.feature_set_grants
                             WHERE feature_set_id = $1 AND grantee = $2::pg_catalog.oid
                               AND privilege = 'read')",
            &[set.id.into(), grantee.into()],
        )?
        .unwrap_or(false);
    let role = quote_identifier(role_name(grantee));
    Spi::run(&if reads {
        format!("GRANT SELECT ON {} TO {role}", set.history)
    } else {
        format!("REVOKE SELECT ON {} FROM {role}", set.history)
    })?;
    Ok(())
}

/// One feature of a training set: the set it comes from and its column
/// there, which is also its column in the training set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureRef {
    pub set: String,
    pub feature: String,
}

/// A feature set as a point-in-time join reads it: its history, keys,
/// event time, TTL and the features taken from it.
pub struct JoinPart<'a> {
    pub set: &'a FeatureSet,
    pub features: Vec<&'a str>,
}

/// The SELECT that gives each spine row the values of `parts` valid at
/// its event time: for each set, the version with the latest event time
/// at or before the spine's (`ORDER BY ... DESC LIMIT 1` over the
/// (entity, event time) index), no older than the TTL, among the versions
/// known now, or known at `as_of_ingest` when it is given. A spine row
/// with no such version gets NULLs.
///
/// The same SQL serves a training set (spine: the user's table or query,
/// read in entity and time order)
/// and online lookups (spine: one row of the entity and the transaction's
/// time), so the two cannot disagree. Every operator is qualified: a
/// training set's view is read with the reader's search_path.
pub fn point_in_time_query(
    spine_sql: &str,
    spine_time: &str,
    shape: Shape,
    parts: &[JoinPart<'_>],
    as_of_ingest: Option<&str>,
) -> String {
    let known = |alias: &str| match as_of_ingest {
        None => format!("{alias}.{SUPERSEDED_AT} IS NULL"),
        Some(at) => {
            let at = format!("{}::pg_catalog.timestamptz", quote_literal(at));
            format!(
                "{alias}.{INGESTED_AT} OPERATOR(pg_catalog.<=) {at}
                     AND ({alias}.{SUPERSEDED_AT} IS NULL OR {alias}.{SUPERSEDED_AT} OPERATOR(pg_catalog.>) {at})"
            )
        }
    };
    let time = quote_identifier(spine_time);
    let mut select = match shape {
        Shape::Offline => vec!["s.*".to_string()],
        Shape::OnlineText | Shape::Online => Vec::new(),
    };
    let mut joins = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let alias = format!("f{i}");
        let set = part.set;
        let event = format!("h.{}", quote_identifier(&set.event_time));
        let mut conditions: Vec<String> = set
            .entity
            .iter()
            .map(|e| {
                let e = quote_identifier(e);
                format!("h.{e} OPERATOR(pg_catalog.=) s.{e}")
            })
            .collect();
        conditions.push(format!("{event} OPERATOR(pg_catalog.<=) s.{time}"));
        if let Some(ttl) = &set.ttl {
            conditions.push(format!(
                "{event} OPERATOR(pg_catalog.>=) (s.{time} OPERATOR(pg_catalog.-) {}::pg_catalog.interval)",
                quote_literal(ttl)
            ));
        }
        conditions.push(known("h"));
        let columns: Vec<String> = part
            .features
            .iter()
            .map(|f| format!("h.{}", quote_identifier(f)))
            .collect();
        select.extend(part.features.iter().map(|f| match shape {
            Shape::Offline | Shape::Online => format!("{alias}.{}", quote_identifier(f)),
            Shape::OnlineText => format!("{alias}.{}::pg_catalog.text", quote_identifier(f)),
        }));
        joins.push(format!(
            "  LEFT JOIN LATERAL (
        SELECT {columns} FROM {history} h
         WHERE {conditions}
         ORDER BY {event} DESC{tie} LIMIT 1) AS {alias} ON true",
            columns = if columns.is_empty() {
                "1".to_string()
            } else {
                columns.join(", ")
            },
            history = set.history,
            conditions = conditions.join("\n           AND "),
            // Known now, an (entity, event time) has one version; known at
            // a past time, the one ingested last.
            tie = if as_of_ingest.is_some() {
                format!(", h.{INGESTED_AT} DESC")
            } else {
                String::new()
            },
        ));
    }
    if select.is_empty() {
        select.push("1".to_string());
    }
    // A training set's spine is read in (entity, time) order, so that the
    // lookups walk each history's index in order rather than at random:
    // measured at 1M spine rows and 10M history rows, 4.9 s against 26 s.
    let spine = match shape {
        Shape::Offline => {
            let mut order: Vec<String> = Vec::new();
            for part in parts {
                for key in &part.set.entity {
                    let key = quote_identifier(key);
                    if !order.contains(&key) {
                        order.push(key);
                    }
                }
            }
            order.push(time.clone());
            format!(
                "(SELECT * FROM {spine_sql} AS spine ORDER BY {})",
                order.join(", ")
            )
        }
        Shape::OnlineText | Shape::Online => spine_sql.to_string(),
    };
    format!(
        "SELECT {}\n  FROM {spine} AS s\n{}",
        select.join(", "),
        joins.join("\n")
    )
}

/// What a point-in-time query returns.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A training set: every spine column, then the features.
    Offline,
    /// An online lookup: only the features, as text.
    OnlineText,
    /// An online lookup: only the features, as they are.
    Online,
}

/// What a model trained from a training set serves from: the entity's
/// keys and each feature's set.
#[derive(Debug, Clone)]
pub struct ServedFeatures {
    pub entity: Vec<String>,
    pub features: Vec<FeatureRef>,
    /// Each set's definition hash when the model was trained.
    pub set_sha256: std::collections::HashMap<String, String>,
}

impl ServedFeatures {
    /// Errors unless `set` is still the set the model was trained on, not
    /// one dropped and made again under its name.
    pub fn check_same(&self, set: &FeatureSet, model_id: i64) -> AmbientResult<()> {
        if self.set_sha256.get(&set.name) == Some(&set.definition_sha256) {
            return Ok(());
        }
        Err(AmbientError::not_in_state(format!(
            "feature set \"{}\" is not the one model {model_id} was trained on: it was dropped and made again",
            set.name
        ))
        .hint("train the project again from its training set"))
    }
}

/// The feature sets a model reads, from its lineage; `None` for a model
/// not trained from a training set. Read-only, under the statement's
/// snapshot (predict).
pub fn served_features(model_id: i64) -> AmbientResult<Option<ServedFeatures>> {
    let lineage = super::select_kept(
        "SELECT feature_lineage FROM ambient.model_store WHERE id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
        |rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            rows.get::<JsonB>(0, 1)
        },
    )?;
    let Some(JsonB(lineage)) = lineage else {
        return Ok(None);
    };
    let unreadable = || {
        AmbientError::invalid(format!(
            "model {model_id} has an unreadable feature lineage"
        ))
    };
    let entity = serde_json::from_value::<Vec<String>>(lineage["entity"].clone())
        .map_err(|_| unreadable())?;
    let features = serde_json::from_value::<Vec<FeatureRef>>(lineage["features"].clone())
        .map_err(|_| unreadable())?;
    let set_sha256 =
        serde_json::from_value(lineage["feature_set_sha256"].clone()).map_err(|_| unreadable())?;
    Ok(Some(ServedFeatures {
        entity,
        features,
        set_sha256,
    }))
}

/// A training set as its catalog row keeps it.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    pub id: i64,
    pub name: String,
    pub entity: Vec<String>,
    pub label: Option<String>,
    /// The spine's other columns, passed through as row features.
    pub passed: Vec<String>,
    pub features: Vec<FeatureRef>,
    pub as_of_ingest: Option<String>,
    /// The view, schema-qualified and quoted.
    pub view: String,
    pub owner: pg_sys::Oid,
    pub definition_sha256: String,
}

const TRAINING_COLUMNS: &str = "id, name, entity, label, passed, features,
    as_of_ingest::pg_catalog.text, view::pg_catalog.text, owner::pg_catalog.oid,
    definition_sha256";

pub fn find_training_set(name: &str) -> AmbientResult<Option<TrainingSet>> {
    as_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                &format!(
                    "SELECT {TRAINING_COLUMNS} FROM ambient.training_set_store
                      WHERE name OPERATOR(pg_catalog.=) $1"
                ),
                None,
                &[name.into()],
            )?;
            let Some(row) = rows.into_iter().next() else {
                return Ok(None);
            };
            let features = row
                .get::<JsonB>(6)?
                .map(|JsonB(v)| serde_json::from_value::<Vec<FeatureRef>>(v))
                .transpose()
                .map_err(|e| AmbientError::invalid(format!("a training set's features: {e}")))?
                .unwrap_or_default();
            Ok(Some(TrainingSet {
                id: row.get(1)?.unwrap_or_default(),
                name: row.get(2)?.unwrap_or_default(),
                entity: row.get(3)?.unwrap_or_default(),
                label: row.get(4)?,
                passed: row.get(5)?.unwrap_or_default(),
                features,
                as_of_ingest: row.get(7)?,
                view: row.get(8)?.unwrap_or_default(),
                owner: row.get(9)?.unwrap_or(pg_sys::Oid::INVALID),
                definition_sha256: row.get(10)?.unwrap_or_default(),
            }))
        })
    })
}

pub fn unknown_training_set(name: &str) -> AmbientError {
    AmbientError::undefined_object(format!("training set \"{name}\" does not exist"))
        .hint("SELECT training_set FROM ambient.training_sets lists yours")
}

/// What `create_training_set` records.
pub struct NewTrainingSet<'a> {
    pub name: &'a str,
    pub spine: &'a str,
    pub entity: &'a [String],
    pub entity_types: &'a [String],
    pub event_time: &'a str,
    pub label: Option<&'a str>,
    pub passed: &'a [String],
    pub features: &'a [FeatureRef],
    pub as_of_ingest: Option<&'a str>,
    pub query: &'a str,
    pub owner: pg_sys::Oid,
    pub created_by: &'a str,
    /// The feature sets' definition hashes, in `features`' order of sets.
    pub set_hashes: &'a [String],
}

/// Creates the training set's view (owned by the extension, so only
/// `drop_training_set` removes it; `security_invoker`, so each reader reads
/// the spine and the histories with their own rights) under the creator's
/// `search_path` (the spine's names are theirs), and records it.
/// Call inside `as_extension_owner`.
pub fn create_training_set(new: &NewTrainingSet<'_>, search_path: &str) -> AmbientResult<()> {
    let view = format!("ambient_training.{}", quote_identifier(new.name));
    as_author(&super::extension_owner_under(search_path)?, || {
        Spi::run(&format!(
            "CREATE VIEW {view} WITH (security_invoker = true) AS\n{}",
            new.query
        ))?;
        Ok(())
    })?;
    Spi::run(&format!(
        "GRANT SELECT ON {view} TO {}",
        quote_identifier(role_name(new.owner))
    ))?;
    let features = serde_json::to_value(new.features).unwrap_or_default();
    let sha = crate::ml::artifact::sha256_hex(
        serde_json::json!({
            "query": new.query,
            "features": features,
            "sets": new.set_hashes,
            "as_of_ingest": new.as_of_ingest,
        })
        .to_string()
        .as_bytes(),
    );
    Spi::run_with_args(
        "INSERT INTO ambient.training_set_store
           (name, spine, entity, entity_types, event_time, label, passed, features,
            as_of_ingest, query, view, owner, definition_sha256, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.timestamptz, $10,
                 $11::pg_catalog.regclass, $12::pg_catalog.oid, $13, $14)",
        &[
            new.name.into(),
            new.spine.into(),
            new.entity.to_vec().into(),
            new.entity_types.to_vec().into(),
            new.event_time.into(),
            new.label.into(),
            new.passed.to_vec().into(),
            JsonB(features).into(),
            new.as_of_ingest.into(),
            new.query.into(),
            view.as_str().into(),
            new.owner.into(),
            sha.as_str().into(),
            new.created_by.into(),
        ],
    )?;
    Ok(())
}

/// Call inside `as_extension_owner`.
pub fn drop_training_set(set: &TrainingSet) -> AmbientResult<()> {
    Spi::run(&format!("DROP VIEW {}", set.view))?;
    Spi::run_with_args(
        "DELETE FROM ambient.training_set_store WHERE id = $1",
        &[set.id.into()],
    )?;
    Ok(())
}

/// The newest change (a version ingested or superseded) to `sets`, at or
/// before `as_of_ingest` when it is given: the high-water mark a training
/// saw, which an `as_of_ingest` rebuild gives again.
pub fn ingest_high_water(
    sets: &[&FeatureSet],
    as_of_ingest: Option<&str>,
) -> AmbientResult<Option<String>> {
    if sets.is_empty() {
        return Ok(None);
    }
    let parts: Vec<String> = sets
        .iter()
        .map(|s| {
            format!(
                "SELECT pg_catalog.max({INGESTED_AT}) AS at FROM {history}
                  WHERE {INGESTED_AT} OPERATOR(pg_catalog.<=) $1::pg_catalog.timestamptz
                 UNION ALL
                 SELECT pg_catalog.max({SUPERSEDED_AT}) FROM {history}
                  WHERE {SUPERSEDED_AT} OPERATOR(pg_catalog.<=) $1::pg_catalog.timestamptz",
                history = s.history
            )
        })
        .collect();
    as_owner(|| {
        Ok(Spi::get_one_with_args::<String>(
            &format!(
                "SELECT pg_catalog.max(at)::pg_catalog.text FROM ({}) AS marks",
                parts.join(" UNION ALL ")
            ),
            &[as_of_ingest.unwrap_or("infinity").into()],
        )?)
    })
}
