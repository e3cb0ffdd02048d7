//! History you can audit: the audit trail's chaining, tags, `log`, `diff`.

use pgrx::prelude::*;

use crate::catalog::audit::{self, Entry};
use crate::catalog::projects::{self, Project};
use crate::catalog::{as_extension_owner, models, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::ml::drift;
use crate::ml::stats::ColumnStats;

/// The audit chain's newest entry as committed now: for the chaining
/// trigger `ambient.chain_audit_entry` only.
#[pg_extern(volatile, parallel_unsafe)]
fn audit_chain_head() -> TableIterator<'static, (name!(position, i64), name!(sha256, String))> {
    TableIterator::new(audit::chain_head().or_raise())
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION ambient.audit_chain_head() FROM PUBLIC;
"#,
    name = "audit_chain_head_private",
    requires = [audit_chain_head],
);

/// Points tag `name` at `model_id` (MLflow's alias): `'project@name'` then
/// stands for that model in predict and deploy. A tag names one model of
/// its project; tagging another model moves it, in one step.
#[pg_extern(volatile, parallel_unsafe)]
fn tag(model_id: i64, name: &str) {
    set_tag(model_id, name, true).or_raise()
}

/// Removes tag `name` from `model_id`. Removing a tag the model does not
/// have is a notice.
#[pg_extern(volatile, parallel_unsafe)]
fn untag(model_id: i64, name: &str) {
    set_tag(model_id, name, false).or_raise()
}

fn check_tag_name(name: &str) -> AmbientResult<()> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_well
        || name.len() > 63
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(AmbientError::invalid(format!(
            "invalid tag name \"{}\"",
            name.escape_default()
        ))
        .hint("a tag starts with a letter and has up to 63 letters, digits, '_', '.' or '-'"));
    }
    Ok(())
}

fn set_tag(model_id: i64, name: &str, on: bool) -> AmbientResult<()> {
    check_tag_name(name)?;
    let caller = Caller::current();
    as_extension_owner(|| {
        let project = lock_model_project(model_id, &caller)?;
        let by = caller.name();
        if on {
            if models::tagged(project.id, name)? == Some(model_id) {
                notice!("model {model_id} is already tagged \"{name}\"");
                return Ok(());
            }
            let before = models::set_tag(project.id, name, model_id, &by)?;
            if let Some(before) = before {
                notice!("tag \"{name}\" moved from model {before} to model {model_id}");
            }
            audit::record(
                Entry::project("tag", &by, &project.name, project.id, project.owner)
                    .model(model_id)
                    .details(serde_json::json!({ "tag": name, "previous_model_id": before })),
            )
        } else if models::remove_tag(project.id, name, model_id)? {
            audit::record(
                Entry::project("untag", &by, &project.name, project.id, project.owner)
                    .model(model_id)
                    .details(serde_json::json!({ "tag": name })),
            )
        } else {
            notice!("model {model_id} is not tagged \"{name}\"");
            Ok(())
        }
    })
}

/// The project of `model_id`, locked for a change by `caller`. Refused in
/// terms of the model, whose project's name a stranger may not learn.
/// Call inside `as_extension_owner`.
fn lock_model_project(model_id: i64, caller: &Caller) -> AmbientResult<Project> {
    let owner = models::owner_of(model_id)?.ok_or_else(|| models::unknown(model_id))?;
    if !caller.acts_as(owner.owner) {
        return Err(
            AmbientError::privilege(format!("permission denied for model {model_id}"))
                .hint("only roles with the privileges of its project's owner may change it"),
        );
    }
    let name = projects::name_of(owner.project_id)?;
    let project = projects::lock_for_change(&name, caller)?;
    // Dropped while we waited for the lock.
    if models::project_of(model_id)? != Some(project.id) {
        return Err(models::unknown(model_id));
    }
    Ok(project)
}

/// The model `reference` ('project@tag') names in `project`.
/// Call inside `as_extension_owner`.
pub(super) fn tagged_model(project: &Project, reference: &str) -> AmbientResult<i64> {
    let (name, tag) = reference.rsplit_once('@').unwrap_or(("", reference));
    if name != project.name {
        return Err(AmbientError::invalid(format!(
            "\"{reference}\" names a tag of project \"{name}\", not of \"{}\"",
            project.name
        ))
        .hint("deploy('project', 'project@tag') deploys a tagged model of that project"));
    }
    models::tagged(project.id, tag)?.ok_or_else(|| {
        AmbientError::undefined_object(format!("no model is tagged \"{tag}\" in \"{name}\""))
            .hint("SELECT * FROM ambient.tags lists the tags; ambient.tag(model_id, name) sets one")
    })
}

type DiffRow = (String, String, Option<String>, Option<String>);

/// What changed between two models, as rows of (aspect, key, a, b): the
/// model itself and the code that built it, hyper-parameters, features
/// and the input contract, preprocessing, metrics (each as recorded, and
/// both on `model_b`'s test rows), the training data (rows, hash, and the
/// per-column statistics that moved, with the PSI or JS distance between
/// the two snapshots) and the source, with a unified diff of its text.
/// Aspects that did not change show one '(unchanged)' row.
#[pg_extern(volatile, parallel_unsafe)]
fn diff(
    model_a: i64,
    model_b: i64,
) -> TableIterator<
    'static,
    (
        name!(aspect, String),
        name!(key, String),
        name!(a, Option<String>),
        name!(b, Option<String>),
    ),
> {
    TableIterator::new(diff_models(model_a, model_b).or_raise())
}

/// Everything the catalog keeps of `model_id`, if `caller` may read its
/// project (refused in terms of the model, whose project's name a
/// stranger may not learn).
fn readable_model(model_id: i64, caller: &Caller) -> AmbientResult<(serde_json::Value, Project)> {
    let (record, project) = as_extension_owner(|| {
        let record = models::record(model_id)?.ok_or_else(|| models::unknown(model_id))?;
        let project = projects::require(record["project"].as_str().unwrap_or_default())?;
        Ok((record, project))
    })?;
    if !projects::may_read(&project, caller)? {
        return Err(
            AmbientError::privilege(format!("permission denied for model {model_id}"))
                .hint("reading a model's history needs its project's 'read' grant"),
        );
    }
    Ok((record, project))
}

/// A JSON value as a cell: strings bare, NULL as NULL.
fn cell(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A JSON value's leaves by path (`a.b[2]`), so nested settings compare
/// one by one.
fn leaves(value: &serde_json::Value, path: String, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let next = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, next, out);
            }
        }
        serde_json::Value::Array(list) if !list.is_empty() => {
            // A list of per-column settings is keyed by column, so a column
            // added in front does not shift every other one.
            let column = |v: &serde_json::Value| {
                v.get("column").and_then(|c| c.as_str()).map(str::to_string)
            };
            let by_column = list.iter().all(|v| column(v).is_some());
            for (i, v) in list.iter().enumerate() {
                let key = match column(v).filter(|_| by_column) {
                    Some(name) if path.is_empty() => name,
                    Some(name) => format!("{path}.{name}"),
                    None => format!("{path}[{i}]"),
                };
                let mut fields = v.clone();
                if by_column {
                    if let Some(map) = fields.as_object_mut() {
                        map.remove("column");
                    }
                }
                leaves(&fields, key, out);
            }
        }
        leaf => out.push((path, leaf.clone())),
    }
}

/// The leaves of `a` and `b` that differ, in path order.
fn changed_leaves(aspect: &str, a: &serde_json::Value, b: &serde_json::Value) -> Vec<DiffRow> {
    let (mut left, mut right) = (Vec::new(), Vec::new());
    leaves(a, String::new(), &mut left);
    leaves(b, String::new(), &mut right);
    let mut paths: Vec<&String> = left.iter().chain(&right).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let find = |side: &[(String, serde_json::Value)], path: &str| {
        side.iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, v)| cell(v))
    };
    paths
        .into_iter()
        .filter_map(|path| {
            let (x, y) = (find(&left, path), find(&right, path));
            (x != y).then(|| (aspect.to_string(), path.clone(), x, y))
        })
        .collect()
}

/// `rows`, or one '(unchanged)' row for `aspect` when there are none.
fn or_unchanged(aspect: &str, rows: Vec<DiffRow>) -> Vec<DiffRow> {
    if rows.is_empty() {
        vec![(aspect.to_string(), "(unchanged)".to_string(), None, None)]
    } else {
        rows
    }
}

fn diff_models(a_id: i64, b_id: i64) -> AmbientResult<Vec<DiffRow>> {
    let caller = Caller::current();
    let (a, _) = readable_model(a_id, &caller)?;
    let (b, project_b) = readable_model(b_id, &caller)?;
    let mut rows: Vec<DiffRow> = Vec::new();
    let both = |aspect: &str, key: &str, field: &str| {
        (
            aspect.to_string(),
            key.to_string(),
            cell(&a[field]),
            cell(&b[field]),
        )
    };
    for (key, field) in [
        ("project", "project"),
        ("id", "id"),
        ("version", "version"),
        ("algorithm", "algorithm"),
        ("trained_by", "created_by"),
        ("trained_at", "created_at"),
        ("parent_model_id", "parent_model_id"),
        ("seed", "seed"),
        ("test_size", "test_size"),
        ("train_rows", "train_rows"),
        ("test_rows", "test_rows"),
        ("artifact_sha256", "artifact_sha256"),
    ] {
        rows.push(both("model", key, field));
    }
    rows.push(both("code", "extension_version", "extension_version"));
    rows.extend(or_unchanged(
        "hyperparameter",
        changed_leaves("hyperparameter", &a["hyperparams"], &b["hyperparams"]),
    ));
    let mut features = feature_changes(&a, &b);
    // Whether each takes the project's input contract (the positions the
    // array forms of predict pass), when they differ in that.
    let takes_contract = |m: &serde_json::Value| {
        let contract = serde_json::json!(project_b.features);
        Some(
            if m["features"] == contract {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        )
    };
    if takes_contract(&a) != takes_contract(&b) {
        features.push((
            "feature".to_string(),
            "(takes the input contract)".to_string(),
            takes_contract(&a),
            takes_contract(&b),
        ));
    }
    rows.extend(or_unchanged("feature", features));
    rows.extend(or_unchanged(
        "preprocessing",
        changed_leaves("preprocessing", &a["preprocessing"], &b["preprocessing"]),
    ));
    rows.extend(metric_rows(&a, &b, a_id, b_id, &project_b)?);
    rows.extend(data_rows(&a["snapshot"], &b["snapshot"]));
    rows.extend(or_unchanged("source", source_rows(&a, &b)));
    Ok(rows)
}

/// Features added, removed or retyped, and a change of their order (the
/// positions the array forms of predict take).
fn feature_changes(a: &serde_json::Value, b: &serde_json::Value) -> Vec<DiffRow> {
    let typed = |m: &serde_json::Value| -> Vec<(String, String)> {
        let names = m["features"].as_array().cloned().unwrap_or_default();
        let types = m["feature_types"].as_array().cloned().unwrap_or_default();
        names
            .iter()
            .zip(types.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(n, t)| {
                (
                    n.as_str().unwrap_or_default().to_string(),
                    t.and_then(|t| t.as_str()).unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let (left, right) = (typed(a), typed(b));
    let type_of = |side: &[(String, String)], name: &str| {
        side.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())
    };
    let mut rows = Vec::new();
    let names: Vec<&String> = left.iter().chain(&right).map(|(n, _)| n).collect();
    let mut seen: Vec<&String> = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let (x, y) = (type_of(&left, name), type_of(&right, name));
        if x != y {
            rows.push(("feature".to_string(), name.clone(), x, y));
        }
    }
    let order = |side: &[(String, String)]| {
        side.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if rows.is_empty() && left != right {
        rows.push((
            "feature".to_string(),
            "(order)".to_string(),
            Some(order(&left)),
            Some(order(&right)),
        ));
    }
    rows
}

/// Each model's metrics as recorded (on its own test rows), then both on
/// `b`'s test rows, read again as `b`'s author; when that cannot be done
/// (the source is gone, a model lacks a column there), one row says why.
fn metric_rows(
    a: &serde_json::Value,
    b: &serde_json::Value,
    a_id: i64,
    b_id: i64,
    project_b: &Project,
) -> AmbientResult<Vec<DiffRow>> {
    let mut rows = Vec::new();
    let mut keys: Vec<&String> = a["metrics"]
        .as_object()
        .into_iter()
        .chain(b["metrics"].as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for key in &keys {
        rows.push((
            "metric".to_string(),
            format!("{key} (as recorded)"),
            cell(&a["metrics"][key.as_str()]),
            cell(&b["metrics"][key.as_str()]),
        ));
    }
    let definition = as_extension_owner(|| models::definition(b_id))?;
    let same_rows = match definition {
        None => Err(AmbientError::not_in_state(format!(
            "model {b_id} keeps no training definition (trained before 0.2.0)"
        ))),
        Some(definition) => {
            super::train::score_on_test_rows_of(project_b, &definition, &[a_id, b_id])
        }
    };
    match same_rows {
        Ok((scored, test_rows)) => {
            for key in keys {
                let value =
                    |m: &crate::ml::metrics::Metrics| m.get(key.as_str()).map(f64::to_string);
                rows.push((
                    "metric".to_string(),
                    format!("{key} (same {test_rows} test rows)"),
                    value(&scored[0]),
                    value(&scored[1]),
                ));
            }
        }
        Err(e) => rows.push((
            "metric".to_string(),
            "same test rows".to_string(),
            None,
            Some(format!("not compared: {}", e.message())),
        )),
    }
    Ok(rows)
}

/// The training data: rows, hash, and each column whose statistics moved,
/// with how far (PSI for numbers, JS distance for categories).
fn data_rows(a: &serde_json::Value, b: &serde_json::Value) -> Vec<DiffRow> {
    let mut rows = Vec::new();
    for key in ["row_count", "unlabeled_rows", "data_sha256"] {
        rows.push((
            "data".to_string(),
            key.to_string(),
            cell(&a[key]),
            cell(&b[key]),
        ));
    }
    let columns = |s: &serde_json::Value| -> Vec<(String, ColumnStats)> {
        serde_json::from_value(s["column_stats"].clone()).unwrap_or_default()
    };
    let (left, right) = (columns(a), columns(b));
    for (name, stats_a) in &left {
        let Some((_, stats_b)) = right.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if stats_a == stats_b {
            continue;
        }
        let moved = drift::between_snapshots(stats_a, stats_b)
            .map(|(measure, value)| format!(" ({measure} {value:.4})"))
            .unwrap_or_default();
        rows.push((
            "data".to_string(),
            name.clone(),
            Some(summary(stats_a)),
            Some(format!("{}{moved}", summary(stats_b))),
        ));
    }
    rows
}

fn summary(stats: &ColumnStats) -> String {
    match stats {
        ColumnStats::Numeric(n) => format!(
            "n {}, nulls {}, mean {:.4}, std {:.4}, min {}, max {}",
            n.count, n.nulls, n.mean, n.std, n.min, n.max
        ),
        ColumnStats::Category(c) => format!(
            "n {}, nulls {}, {}",
            c.count,
            c.nulls,
            c.frequencies
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The source's kind and text, with a unified diff when the text changed.
fn source_rows(a: &serde_json::Value, b: &serde_json::Value) -> Vec<DiffRow> {
    let (sa, sb) = (&a["snapshot"], &b["snapshot"]);
    let mut rows = Vec::new();
    if sa["source_kind"] != sb["source_kind"] {
        rows.push((
            "source".to_string(),
            "kind".to_string(),
            cell(&sa["source_kind"]),
            cell(&sb["source_kind"]),
        ));
    }
    let (ta, tb) = (
        sa["source"].as_str().unwrap_or_default(),
        sb["source"].as_str().unwrap_or_default(),
    );
    if ta != tb {
        rows.push((
            "source".to_string(),
            "text".to_string(),
            Some(ta.to_string()),
            Some(tb.to_string()),
        ));
        // Myers' algorithm is quadratic at worst: past a second, similar
        // gives a coarser diff rather than keep the backend busy.
        let unified = similar::TextDiff::configure()
            .timeout(std::time::Duration::from_secs(1))
            .diff_lines(ta, tb)
            .unified_diff()
            .context_radius(3)
            .header(&format!("model {}", a["id"]), &format!("model {}", b["id"]))
            .to_string();
        rows.push((
            "source".to_string(),
            "unified diff".to_string(),
            None,
            Some(unified),
        ));
    }
    if a["feature_lineage"] != b["feature_lineage"] {
        rows.extend(changed_leaves(
            "source",
            &a["feature_lineage"],
            &b["feature_lineage"],
        ));
    }
    rows
}

/// Trains a model again, as its original author, from the copy of its
/// rows (`snapshot => 'copy'`) or from its source as it is now, and says
/// whether the artifact is byte-identical, and if not, why (the data
/// changed, or the code did). Nothing is kept but an audit entry.
#[pg_extern(volatile, parallel_unsafe)]
fn reproduce(
    model_id: i64,
) -> TableIterator<
    'static,
    (
        name!(identical, bool),
        name!(original_sha256, String),
        name!(reproduced_sha256, String),
        name!(data_identical, bool),
        name!(read_from, String),
        name!(reason, String),
    ),
> {
    let caller = Caller::current();
    let found = super::train::reproduce(model_id, &caller)
        .and_then(|r| {
            as_extension_owner(|| {
                let project = lock_model_project(model_id, &caller)?;
                audit::record(
                    Entry::project(
                        "reproduce",
                        &caller.name(),
                        &project.name,
                        project.id,
                        project.owner,
                    )
                    .model(model_id)
                    .reason(Some(&r.reason))
                    .details(serde_json::json!({
                        "identical": r.identical,
                        "data_identical": r.data_identical,
                        "read_from": r.read_from,
                        "reproduced_sha256": r.reproduced_sha256,
                    })),
                )
            })?;
            Ok(r)
        })
        .or_raise();
    TableIterator::once((
        found.identical,
        found.original_sha256,
        found.reproduced_sha256,
        found.data_identical,
        found.read_from.to_string(),
        found.reason,
    ))
}
