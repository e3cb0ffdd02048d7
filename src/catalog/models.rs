//! `ambient.model_store` and `ambient.snapshots`: immutable model rows and
//! the training data they came from.

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::JsonB;

use pgrx::pg_sys;

use super::{as_owner, select_kept, select_one, Author};
use crate::error::{AmbientError, AmbientResult};

pub struct NewSnapshot<'a> {
    pub project_id: i64,
    pub source_kind: &'a str,
    pub source: &'a str,
    pub row_count: i64,
    pub unlabeled_rows: i64,
    pub column_stats: serde_json::Value,
    pub data_sha256: &'a str,
    pub created_by: &'a str,
    /// The relations reading the source touched.
    pub source_relations: &'a [pg_sys::Oid],
    /// The copy of the rows (`create_copy`): its reserved snapshot id and
    /// its table.
    pub copy: Option<(i64, &'a str)>,
}

/// Call inside `as_extension_owner`.
pub fn insert_snapshot(s: NewSnapshot<'_>) -> AmbientResult<i64> {
    Spi::connect_mut(|client| {
        client
            .update(
                "INSERT INTO ambient.snapshots
                   (id, project_id, source_kind, source, row_count, unlabeled_rows,
                    column_stats, data_sha256, created_by, source_relations, copy)
                 VALUES (COALESCE($10, pg_catalog.nextval('ambient.snapshots_id_seq')),
                         $1, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.regclass[],
                         $11::pg_catalog.regclass) RETURNING id",
                None,
                &[
                    s.project_id.into(),
                    s.source_kind.into(),
                    s.source.into(),
                    s.row_count.into(),
                    s.unlabeled_rows.into(),
                    JsonB(s.column_stats).into(),
                    s.data_sha256.into(),
                    s.created_by.into(),
                    s.source_relations.to_vec().into(),
                    s.copy.map(|(id, _)| id).into(),
                    s.copy.map(|(_, name)| name).into(),
                ],
            )?
            .first()
            .get_one::<i64>()
    })?
    .ok_or_else(|| AmbientError::invalid("snapshot insert returned no id"))
}

pub struct NewModel<'a> {
    pub project_id: i64,
    pub algorithm: &'a str,
    pub hyperparams: serde_json::Value,
    pub features: Vec<String>,
    pub feature_types: Vec<String>,
    pub preprocessing: serde_json::Value,
    /// Permutation importance per input column, on the test split.
    pub importance: serde_json::Value,
    /// What train was asked, to train the same way again.
    pub request: serde_json::Value,
    pub label_classes: Option<Vec<String>>,
    pub metrics: serde_json::Value,
    pub primary_metric: &'a str,
    pub score: f64,
    pub test_size: f64,
    pub seed: i64,
    pub train_rows: i64,
    pub test_rows: i64,
    pub training_seconds: f64,
    pub snapshot_id: i64,
    pub artifact: Vec<u8>,
    pub artifact_sha256: String,
    pub created_by: &'a str,
    /// The model a policy retrained this one from.
    pub parent_model_id: Option<i64>,
    /// Who the training definition runs as when it runs again.
    pub author: &'a Author,
    /// For a model trained from a training set: what it read.
    pub feature_lineage: Option<serde_json::Value>,
    /// What it did on its test rows (`ml::diagnostics`).
    pub diagnostics: serde_json::Value,
}

/// Inserts a model as the project's next version; returns (id, version).
/// The caller holds the project lock, so versions never collide.
/// Call inside `as_extension_owner`.
pub fn insert(m: NewModel<'_>) -> AmbientResult<(i64, i32)> {
    Spi::connect_mut(|client| {
        let row = client
            .update(
                "INSERT INTO ambient.model_store
                   (project_id, version, algorithm, hyperparams, features, feature_types,
                    label_classes, metrics, primary_metric, score, test_size, seed,
                    train_rows, test_rows, training_seconds, extension_version,
                    snapshot_id, artifact, artifact_sha256, created_by, preprocessing, importance,
                    request, parent_model_id, definition_role, definition_search_path,
                    feature_lineage, diagnostics)
                 SELECT $1,
                        COALESCE((SELECT pg_catalog.max(version) FROM ambient.model_store
                                   WHERE project_id OPERATOR(pg_catalog.=) $1), 0)
                          OPERATOR(pg_catalog.+) 1,
                        $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                        $16, $17, $18, $19, $20, $21, $22, $23, $24::pg_catalog.oid, $25, $26, $27
                 RETURNING id, version",
                None,
                &[
                    m.project_id.into(),
                    m.algorithm.into(),
                    JsonB(m.hyperparams).into(),
                    m.features.into(),
                    m.feature_types.into(),
                    m.label_classes.into(),
                    JsonB(m.metrics).into(),
                    m.primary_metric.into(),
                    m.score.into(),
                    m.test_size.into(),
                    m.seed.into(),
                    m.train_rows.into(),
                    m.test_rows.into(),
                    m.training_seconds.into(),
                    env!("CARGO_PKG_VERSION").into(),
                    m.snapshot_id.into(),
                    m.artifact.into(),
                    m.artifact_sha256.into(),
                    m.created_by.into(),
                    JsonB(m.preprocessing).into(),
                    JsonB(m.importance).into(),
                    JsonB(m.request).into(),
                    m.parent_model_id.into(),
                    m.author.role.into(),
                    m.author.search_path.as_str().into(),
                    m.feature_lineage.map(JsonB).into(),
                    JsonB(m.diagnostics).into(),
                ],
            )?
            .first();
        let id = row.get::<i64>(1)?;
        let version = row.get::<i32>(2)?;
        AmbientResult::Ok(id.zip(version))
    })?
    .ok_or_else(|| AmbientError::invalid("model insert returned no id"))
}

/// The stored bytes of a model and their sha256, as the statement's
/// snapshot shows them (read-only: predict).
pub fn artifact(model_id: i64) -> AmbientResult<(Vec<u8>, String)> {
    select_kept(
        "SELECT artifact, artifact_sha256 FROM ambient.model_store
          WHERE id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
        |rows| {
            if rows.is_empty() {
                return Err(unknown(model_id));
            }
            Ok((
                rows.get::<Vec<u8>>(0, 1)?.unwrap_or_default(),
                rows.get::<String>(0, 2)?.unwrap_or_default(),
            ))
        },
    )
}

/// The same, as the latest committed rows show them: for a writer that
/// holds the project lock. pgrx reads with a fresh snapshot once the
/// transaction has a transaction id, which taking the project lock (an
/// update) gives it; call it only after that.
pub fn latest_artifact(model_id: i64) -> AmbientResult<(Vec<u8>, String)> {
    as_owner(|| {
        Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT artifact, artifact_sha256 FROM ambient.model_store
                      WHERE id OPERATOR(pg_catalog.=) $1",
                    None,
                    &[model_id.into()],
                )?
                .first();
            if row.is_empty() {
                return Err(unknown(model_id));
            }
            Ok((
                row.get::<Vec<u8>>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
            ))
        })
    })
}

/// A model as the pinned predict path needs it: its artifact's sha256 and
/// whose project it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOwner {
    pub sha256: String,
    pub project_id: i64,
    pub owner: pg_sys::Oid,
}

/// Read-only under the statement's snapshot; the pinned predict path runs
/// it when a statement cannot reuse an earlier resolution.
pub fn owner_of(model_id: i64) -> AmbientResult<Option<ModelOwner>> {
    select_kept(
        "SELECT m.artifact_sha256, p.id, p.owner::pg_catalog.oid
           FROM ambient.model_store m
           JOIN ambient.projects p ON p.id OPERATOR(pg_catalog.=) m.project_id
          WHERE m.id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
        |rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            Ok(Some(ModelOwner {
                sha256: rows.get::<String>(0, 1)?.unwrap_or_default(),
                project_id: rows.get::<i64>(0, 2)?.unwrap_or_default(),
                owner: rows
                    .get::<pg_sys::Oid>(0, 3)?
                    .unwrap_or(pg_sys::Oid::INVALID),
            }))
        },
    )
}

pub fn unknown(model_id: i64) -> AmbientError {
    AmbientError::undefined_object(format!("model {model_id} does not exist"))
        .hint("SELECT model_id, project, version FROM ambient.models lists the models")
}

/// A model's feature names, in the order its array form takes them.
pub fn features_of(model_id: i64) -> AmbientResult<Vec<String>> {
    Ok(select_one::<Vec<String>>(
        "SELECT features FROM ambient.model_store WHERE id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
    )?
    .unwrap_or_default())
}

/// One trial of the search behind a model.
pub struct NewTrial {
    pub trial: i32,
    pub algorithm: String,
    pub hyperparams: serde_json::Value,
    pub fold_scores: Vec<f64>,
    /// `None` when the trial did not finish.
    pub mean_score: Option<f64>,
    pub std_score: Option<f64>,
    pub seconds: f64,
    pub status: String,
    pub chosen: bool,
    /// The training rows it was cross-validated on (a subsample while
    /// successive halving screens).
    pub sample_rows: i64,
}

/// Records a model's trials. Call inside `as_extension_owner`.
pub fn insert_trials(model_id: i64, trials: Vec<NewTrial>) -> AmbientResult<()> {
    Spi::connect_mut(|client| {
        for t in trials {
            client.update(
                "INSERT INTO ambient.trial_log
                   (model_id, trial, algorithm, hyperparams, fold_scores, mean_score, std_score,
                    seconds, status, chosen, sample_rows)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                None,
                &[
                    model_id.into(),
                    t.trial.into(),
                    t.algorithm.into(),
                    JsonB(t.hyperparams).into(),
                    t.fold_scores.into(),
                    t.mean_score.into(),
                    t.std_score.into(),
                    t.seconds.into(),
                    t.status.into(),
                    t.chosen.into(),
                    t.sample_rows.into(),
                ],
            )?;
        }
        AmbientResult::Ok(())
    })
}

/// A model's permutation importance per input column, as training measured
/// it on its test split (`None` for models from before 0.2.0).
pub fn permutation_importance_of(model_id: i64) -> AmbientResult<Option<JsonB>> {
    select_one::<JsonB>(
        "SELECT importance FROM ambient.model_store WHERE id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
    )
}

/// The project a model belongs to, if the model exists.
pub fn project_of(model_id: i64) -> AmbientResult<Option<i64>> {
    select_one::<i64>(
        "SELECT project_id FROM ambient.model_store WHERE id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
    )
}

/// The model a deploy strategy picks: highest score (newest on ties) or
/// newest version. A score that is not a finite number is never the best
/// (in SQL, NaN sorts above every number).
pub fn pick(project_id: i64, strategy: &str) -> AmbientResult<Option<i64>> {
    let (only, order) = match strategy {
        "best_score" => (
            "AND score OPERATOR(pg_catalog.>) '-Infinity'::pg_catalog.float8
             AND score OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.float8",
            "score DESC, version DESC",
        ),
        _ => ("", "version DESC"),
    };
    select_one::<i64>(
        &format!(
            "SELECT id FROM ambient.model_store WHERE project_id OPERATOR(pg_catalog.=) $1 {only}
              ORDER BY {order} LIMIT 1"
        ),
        &[project_id.into()],
    )
}

pub fn is_in_deployment_history(model_id: i64) -> AmbientResult<bool> {
    Ok(select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM ambient.deployment_log
                         WHERE model_id OPERATOR(pg_catalog.=) $1
                            OR previous_model_id OPERATOR(pg_catalog.=) $1)",
        &[model_id.into()],
    )?
    .unwrap_or(true))
}

/// Deletes a model and, with it, its snapshot and the copy of its rows.
/// Call inside `as_extension_owner`.
pub fn delete(model_id: i64) -> AmbientResult<()> {
    // A copy dropped by hand (by a superuser) is gone already.
    drop_copies(
        "SELECT c.oid::pg_catalog.regclass::pg_catalog.text FROM ambient.model_store m
           JOIN ambient.snapshots s ON s.id OPERATOR(pg_catalog.=) m.snapshot_id
           JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.copy::pg_catalog.oid
          WHERE m.id OPERATOR(pg_catalog.=) $1",
        model_id,
    )?;
    Spi::connect_mut(|client| {
        client.update(
            "WITH gone AS (DELETE FROM ambient.model_store WHERE id OPERATOR(pg_catalog.=) $1
                           RETURNING snapshot_id)
             DELETE FROM ambient.snapshots
              WHERE id OPERATOR(pg_catalog.=) ANY (SELECT snapshot_id FROM gone)",
            None,
            &[model_id.into()],
        )?;
        Ok(())
    })
}

/// How a model was trained, so it can be trained again on new data: its
/// request, the source of its snapshot, and who that source runs as.
#[derive(Clone)]
pub struct Definition {
    pub model_id: i64,
    pub request: serde_json::Value,
    /// 'relation' or 'query'.
    pub source_kind: String,
    /// The schema-qualified relation, or the full query text.
    pub source: String,
    pub author: Author,
    /// Labelled rows the training read.
    pub rows: i64,
}

/// The training definition of `model_id`; `None` when the model predates
/// 0.2.0's requests, or when its author's role was recorded by no one.
pub fn definition(model_id: i64) -> AmbientResult<Option<Definition>> {
    as_owner(|| {
        Spi::connect(|client| {
            let row = client
                .select(
                    "SELECT m.id, m.request, s.source_kind, s.source,
                            m.definition_role::pg_catalog.oid, m.definition_search_path, s.row_count
                       FROM ambient.model_store m
                       JOIN ambient.snapshots s ON s.id OPERATOR(pg_catalog.=) m.snapshot_id
                      WHERE m.id OPERATOR(pg_catalog.=) $1",
                    None,
                    &[model_id.into()],
                )?
                .first();
            if row.is_empty() {
                return Ok(None);
            }
            let (Some(JsonB(request)), Some(role), Some(search_path)) = (
                row.get::<JsonB>(2)?,
                row.get::<pg_sys::Oid>(5)?,
                row.get::<String>(6)?,
            ) else {
                return Ok(None);
            };
            if request.is_null() {
                return Ok(None);
            }
            Ok(Some(Definition {
                model_id: row.get::<i64>(1)?.unwrap_or_default(),
                request,
                source_kind: row.get::<String>(3)?.unwrap_or_default(),
                source: row.get::<String>(4)?.unwrap_or_default(),
                author: Author { role, search_path },
                rows: row.get::<i64>(7)?.unwrap_or_default(),
            }))
        })
    })
}

/// The model `tag` points at in the project, as committed now.
pub fn tagged(project_id: i64, tag: &str) -> AmbientResult<Option<i64>> {
    select_one::<i64>(
        "SELECT model_id FROM ambient.model_tags
          WHERE project_id OPERATOR(pg_catalog.=) $1 AND tag OPERATOR(pg_catalog.=) $2",
        &[project_id.into(), tag.into()],
    )
}

/// Points `tag` at `model_id`, moving it from the model it named before,
/// which is returned. Call inside `as_extension_owner`, holding the
/// project lock.
pub fn set_tag(project_id: i64, tag: &str, model_id: i64, by: &str) -> AmbientResult<Option<i64>> {
    let before = tagged(project_id, tag)?;
    Spi::connect_mut(|client| {
        client.update(
            "INSERT INTO ambient.model_tags (project_id, tag, model_id, tagged_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (project_id, tag) DO UPDATE
                SET model_id = EXCLUDED.model_id, tagged_at = pg_catalog.now(),
                    tagged_by = EXCLUDED.tagged_by",
            None,
            &[project_id.into(), tag.into(), model_id.into(), by.into()],
        )?;
        AmbientResult::Ok(())
    })?;
    Ok(before)
}

/// Removes `tag` if it points at `model_id`; true if it did. Call inside
/// `as_extension_owner`, holding the project lock.
pub fn remove_tag(project_id: i64, tag: &str, model_id: i64) -> AmbientResult<bool> {
    Spi::connect_mut(|client| {
        let deleted = client.update(
            "DELETE FROM ambient.model_tags
              WHERE project_id OPERATOR(pg_catalog.=) $1 AND tag OPERATOR(pg_catalog.=) $2
                AND model_id OPERATOR(pg_catalog.=) $3",
            None,
            &[project_id.into(), tag.into(), model_id.into()],
        )?;
        Ok(!deleted.is_empty())
    })
}

/// Everything the catalog keeps of a model but its artifact, with its
/// snapshot (`snapshot`) and project (`project`, `project_owner`), as
/// JSON: what `ambient.diff` compares.
pub fn record(model_id: i64) -> AmbientResult<Option<serde_json::Value>> {
    Ok(select_one::<JsonB>(
        "SELECT (pg_catalog.to_jsonb(m) OPERATOR(pg_catalog.-) 'artifact')
                OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
                    'snapshot', pg_catalog.to_jsonb(s),
                    'project', p.name,
                    'project_owner', p.owner::pg_catalog.oid)
           FROM ambient.model_store m
           JOIN ambient.snapshots s ON s.id OPERATOR(pg_catalog.=) m.snapshot_id
           JOIN ambient.projects p ON p.id OPERATOR(pg_catalog.=) m.project_id
          WHERE m.id OPERATOR(pg_catalog.=) $1",
        &[model_id.into()],
    )?
    .map(|j| j.0))
}

/// A model that is live (or a running trial's challenger) and was trained
/// from a source that reads a given relation.
pub struct LiveReader {
    pub model_id: i64,
    pub project: String,
    pub source_kind: String,
    pub source: String,
    /// The columns it needs of its source, with the types they had
    /// (`None` for the label, whose type is not recorded).
    pub columns: Vec<(String, Option<String>)>,
}

/// The live models and running challengers, not released, whose
/// snapshot's source reads `relation`.
pub fn live_reading(relation: pg_sys::Oid) -> AmbientResult<Vec<LiveReader>> {
    as_owner(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT m.id, p.name, s.source_kind, s.source, m.features, m.feature_types, p.target
                       FROM ambient.model_store m
                       JOIN ambient.snapshots s ON s.id OPERATOR(pg_catalog.=) m.snapshot_id
                       JOIN ambient.projects p ON p.id OPERATOR(pg_catalog.=) m.project_id
                      WHERE $1 OPERATOR(pg_catalog.=) ANY (s.source_relations::pg_catalog.oid[])
                        AND (m.id IN (SELECT l.model_id FROM ambient.live_deployments l)
                             OR m.id IN (SELECT c.model_id FROM ambient.challenge_log c
                                          WHERE c.event OPERATOR(pg_catalog.=) 'started'
                                            AND c.id OPERATOR(pg_catalog.=)
                                                (SELECT pg_catalog.max(n.id) FROM ambient.challenge_log n
                                                  WHERE n.project_id OPERATOR(pg_catalog.=) c.project_id)))
                        AND NOT EXISTS (SELECT 1 FROM ambient.source_releases r
                                         WHERE r.model_id OPERATOR(pg_catalog.=) m.id)
                      ORDER BY p.name, m.id",
                    None,
                    &[relation.into()],
                )?
                .map(|row| {
                    let features: Vec<String> = row.get(5)?.unwrap_or_default();
                    let types: Vec<String> = row.get(6)?.unwrap_or_default();
                    let mut columns: Vec<(String, Option<String>)> = features
                        .into_iter()
                        .zip(types.into_iter().map(Some))
                        .collect();
                    columns.push((row.get::<String>(7)?.unwrap_or_default(), None));
                    Ok(LiveReader {
                        model_id: row.get(1)?.unwrap_or_default(),
                        project: row.get(2)?.unwrap_or_default(),
                        source_kind: row.get(3)?.unwrap_or_default(),
                        source: row.get(4)?.unwrap_or_default(),
                        columns,
                    })
                })
                .collect()
        })
    })
}

/// Releases the project's live model and running challenger from the
/// source guard; returns their ids. Call inside `as_extension_owner`,
/// holding the project lock.
pub fn release_sources(project_id: i64, by: &str, reason: Option<&str>) -> AmbientResult<Vec<i64>> {
    Spi::connect_mut(|client| {
        client
            .update(
                "INSERT INTO ambient.source_releases (model_id, project_id, released_by, reason)
                 SELECT m.model_id, $1, $2, $3
                   FROM (SELECT l.model_id FROM ambient.live_deployments l
                          WHERE l.project_id OPERATOR(pg_catalog.=) $1
                         UNION
                         SELECT c.model_id FROM ambient.challenge_log c
                          WHERE c.project_id OPERATOR(pg_catalog.=) $1
                            AND c.event OPERATOR(pg_catalog.=) 'started'
                            AND c.id OPERATOR(pg_catalog.=)
                                (SELECT pg_catalog.max(n.id) FROM ambient.challenge_log n
                                  WHERE n.project_id OPERATOR(pg_catalog.=) $1)) m
                 ON CONFLICT (model_id) DO NOTHING
                 RETURNING model_id",
                None,
                &[project_id.into(), by.into(), reason.into()],
            )?
            .map(|row| Ok(row.get::<i64>(1)?.unwrap_or_default()))
            .collect()
    })
}

/// Makes the table a copy of training rows goes into, in schema
/// `ambient_snapshots`, named after a snapshot id it reserves, with
/// `columns` (name, type): owned by the extension, readable by no one
/// until `share_copy` grants the project's readers, and writable by
/// `reader` alone until `close_copy`. Returns the
/// snapshot id and the table. Call inside `as_extension_owner`.
pub fn create_copy(
    columns: &[(String, String)],
    reader: pg_sys::Oid,
) -> AmbientResult<(i64, String)> {
    let id = Spi::get_one::<i64>("SELECT pg_catalog.nextval('ambient.snapshots_id_seq')")?
        .ok_or_else(|| AmbientError::invalid("no snapshot id"))?;
    let name = format!(
        "ambient_snapshots.{}",
        quote_identifier(format!("snapshot_{id}"))
    );
    let definition = columns
        .iter()
        .map(|(c, t)| format!("{} {t}", quote_identifier(c)))
        .collect::<Vec<_>>()
        .join(", ");
    Spi::run(&format!(
        "CREATE TABLE {name} ({definition});
         REVOKE ALL ON {name} FROM PUBLIC;
         GRANT INSERT ON {name} TO {reader}",
        reader = quote_identifier(role_name(reader)),
    ))?;
    Ok((id, name))
}

/// Lets the project's owning role, and every role granted 'read' on it,
/// read a copy: the project's read rules, as grants Postgres checks.
/// Call inside `as_extension_owner`, once the project exists.
pub fn share_copy(name: &str, project_id: i64) -> AmbientResult<()> {
    let readers: Vec<pg_sys::Oid> = Spi::connect(|client| {
        client
            .select(
                "SELECT owner::pg_catalog.oid FROM ambient.projects WHERE id OPERATOR(pg_catalog.=) $1
                 UNION
                 SELECT grantee::pg_catalog.oid FROM ambient.project_grants
                  WHERE project_id OPERATOR(pg_catalog.=) $1 AND privilege OPERATOR(pg_catalog.=) 'read'",
                None,
                &[project_id.into()],
            )?
            .map(|row| Ok(row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID)))
            .collect::<AmbientResult<Vec<_>>>()
    })?;
    for reader in readers {
        Spi::run(&format!(
            "GRANT SELECT ON {name} TO {}",
            quote_identifier(role_name(reader))
        ))?;
    }
    Ok(())
}

/// Gives `grantee` (granted 'read') SELECT on every copy of the project,
/// or takes it back. Call inside `as_extension_owner`.
pub fn share_copies_with(project_id: i64, grantee: pg_sys::Oid, give: bool) -> AmbientResult<()> {
    let copies: Vec<String> = Spi::connect(|client| {
        client
            .select(
                "SELECT c.oid::pg_catalog.regclass::pg_catalog.text
                   FROM ambient.snapshots s
                   JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.copy::pg_catalog.oid
                  WHERE s.project_id OPERATOR(pg_catalog.=) $1",
                None,
                &[project_id.into()],
            )?
            .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
            .collect::<AmbientResult<Vec<_>>>()
    })?;
    let role = quote_identifier(role_name(grantee));
    for copy in copies {
        Spi::run(&if give {
            format!("GRANT SELECT ON {copy} TO {role}")
        } else {
            format!("REVOKE SELECT ON {copy} FROM {role}")
        })?;
    }
    Ok(())
}

/// Takes back the reader's right to write the copy; returns the bytes all
/// copies take now.
pub fn close_copy(name: &str, reader: pg_sys::Oid) -> AmbientResult<u64> {
    Spi::run(&format!(
        "REVOKE INSERT ON {name} FROM {}",
        quote_identifier(role_name(reader))
    ))?;
    Ok(Spi::get_one::<i64>(
        "SELECT COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::pg_catalog.int8
           FROM pg_catalog.pg_class c
          WHERE c.relnamespace OPERATOR(pg_catalog.=) 'ambient_snapshots'::pg_catalog.regnamespace
            AND c.relkind OPERATOR(pg_catalog.=) 'r'",
    )?
    .unwrap_or(0)
    .max(0) as u64)
}

/// Drops the copies `sql` (taking `arg`) names, as `regclass` texts of
/// tables that exist. Call inside `as_extension_owner`, before their
/// snapshot rows go.
pub fn drop_copies(sql: &str, arg: i64) -> AmbientResult<()> {
    let copies: Vec<String> = Spi::connect(|client| {
        client
            .select(sql, None, &[arg.into()])?
            .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
            .collect::<AmbientResult<Vec<_>>>()
    })?;
    for copy in copies {
        Spi::run(&format!("DROP TABLE {copy}"))?;
    }
    Ok(())
}

fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; raises for a role that does not exist.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(role, false))
            .to_string_lossy()
            .into_owned()
    }
}
