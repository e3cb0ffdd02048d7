//! `ambient.attach` and `ambient.detach`: a project's live model predicts
//! every row written to a table (a partitioned one too), in the writing
//! transaction, through a BEFORE row trigger that fills the prediction
//! column and the id of the model that made it. When the table also has
//! the project's target column, `ambient.monitor` compares the labels
//! written to it later with those predictions.
//!
//! An attached table is someone's OLTP table, so nothing the extension
//! allows may make its writes fail: a deploy of a model that could not
//! serve it is refused (`check_serves_attached`), and so is DDL that would
//! break its trigger (the event triggers at the end).

use std::ffi::{CStr, CString};

use pgrx::pg_sys::{self, FunctionCallInfo};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::{PgRelation, PgTupleDesc};

use super::check_project_name;
use super::model_cache;
use super::predict::{CallSite, ModelKey};
use super::subtransaction::{in_subtransaction, Failure};
use crate::catalog::attachments::{self, NewAttachment};
use crate::catalog::audit::{self, Entry};
use crate::catalog::deployments;
use crate::catalog::feature_sets;
use crate::catalog::operations::{self, Challenge};
use crate::catalog::projects::Privilege;
use crate::catalog::projects::Project;
use crate::catalog::{as_author, as_extension_owner, ensure_writable, projects, Author, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::ml::live;
use crate::ml::model::Model;
use crate::ml::Task;
use crate::source;

/// Attaches `project` to `table`: adds `prediction_column` (the label's type
/// for classification, float8 for regression) and
/// `<prediction_column>_model_id` (bigint) where missing, and a trigger
/// that fills both on INSERT, and on UPDATE of an input column, with the
/// live model, whose inputs are matched to the table's columns by name.
#[pg_extern(volatile, parallel_unsafe)]
fn attach(
    project: &str,
    table: PgRelation,
    prediction_column: default!(&str, "'prediction'"),
) -> TableIterator<
    'static,
    (
        name!(prediction_column, String),
        name!(model_id_column, String),
        name!(label_column, Option<String>),
    ),
> {
    let attached = attach_table(project, table, prediction_column).or_raise();
    TableIterator::once(attached)
}

/// The table's live columns by name: attribute number, type and typmod.
fn table_columns(table: &PgRelation) -> Vec<(String, i16, pg_sys::Oid, i32)> {
    table
        .tuple_desc()
        .iter()
        .filter(|a| !a.is_dropped())
        .map(|a| {
            (
                a.name().to_string(),
                a.attnum,
                a.type_oid().value(),
                a.atttypmod,
            )
        })
        .collect()
}

/// Errors with 42501 unless the caller has the privileges of the table's
/// owner: attaching and detaching alter the table.
fn check_table_owner(
    table: &PgRelation,
    caller: &Caller,
    doing: &str,
) -> AmbientResult<pg_sys::Oid> {
    // SAFETY: an open relation's pg_class row.
    let owner = unsafe { (*table.rd_rel).relowner };
    if !caller.acts_as(owner) {
        return Err(AmbientError::privilege(format!(
            "must be the owner of table {} to {doing}",
            qualified(table)
        )));
    }
    Ok(owner)
}

fn qualified(table: &PgRelation) -> String {
    format!(
        "{}.{}",
        quote_identifier(table.namespace()),
        quote_identifier(table.name())
    )
}

pub(super) use crate::source::sql_type_name as type_name;

/// Takes the relation by value: it is closed before the table is altered,
/// which Postgres refuses while this session still has it open.
fn attach_table(
    project: &str,
    owned: PgRelation,
    prediction_column: &str,
) -> AmbientResult<(String, String, Option<String>)> {
    let table = &owned;
    check_project_name(project)?;
    ensure_writable()?;
    let caller = Caller::current();
    // SAFETY: an open relation's pg_class row.
    let (kind, is_partition) = unsafe {
        (
            (*table.rd_rel).relkind as u8,
            (*table.rd_rel).relispartition,
        )
    };
    if is_partition {
        // Postgres clones the partitioned table's trigger onto each of its
        // partitions, those created later too; one attachment serves all.
        return Err(AmbientError::wrong_object_type(format!(
            "{} is a partition",
            qualified(table)
        ))
        .hint("attach the project to its partitioned table, which serves every partition"));
    }
    if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_PARTITIONED_TABLE {
        return Err(AmbientError::wrong_object_type(format!(
            "{} is not a table",
            qualified(table)
        ))
        .hint("attach a project to the table the rows are written to"));
    }
    let owner = check_table_owner(table, &caller, "attach a project to it")?;
    // Attaching feeds the project's live metrics and ties its lifecycle to
    // the table: the project's owners decide that.
    projects::authorize_change(&projects::require(project)?, &caller)?;
    let model_id_column = format!("{prediction_column}_model_id");
    if prediction_column.is_empty() || model_id_column.len() >= pg_sys::NAMEDATALEN as usize {
        return Err(AmbientError::invalid(format!(
            "invalid prediction column name \"{prediction_column}\""
        ))
        .hint(format!(
            "use 1 to {} bytes, so that \"<name>_model_id\" fits a column name",
            pg_sys::NAMEDATALEN as usize - 10
        )));
    }
    // The trigger predicts with the rights of the table's owner, so those
    // are the rights checked here.
    let table_owner = Caller { oid: owner };
    let (model_id, sha) = model_cache::live_model(project, &table_owner)?;
    let model = model_cache::load_verified(model_id, &sha)?;
    let found = projects::require(project)?;
    let columns = table_columns(table);
    let column = |name: &str| columns.iter().find(|c| c.0 == name);
    if let Some(problem) = serving_problem(table, model_id, &model, None)? {
        return Err(problem.hint(format!(
            "the live model of project \"{project}\" reads: {}",
            model.input_names().join(", ")
        )));
    }
    let lookup_keys = feature_sets::served_features(model_id)?
        .map(|served| served.entity)
        .unwrap_or_default();
    let label = column(&found.target);
    if let (Task::Regression, Some((name, _, type_oid, typmod))) = (found.task, label) {
        if !source::is_numeric(*type_oid) {
            return Err(AmbientError::wrong_type(format!(
                "label column \"{name}\" of table {} is {}, and the project is a regression",
                qualified(table),
                type_name(*type_oid, *typmod, false)
            )));
        }
    }
    let (prediction_type, prediction_typmod) = match (found.task, label) {
        (Task::Regression, _) => (pg_sys::FLOAT8OID, -1),
        (Task::Classification, Some(&(_, _, type_oid, typmod))) => (type_oid, typmod),
        (Task::Classification, None) => (pg_sys::TEXTOID, -1),
    };
    let taken =
        |name: &str| model.inputs.inputs.iter().any(|i| i.name == name) || name == found.target;
    if taken(prediction_column) || taken(&model_id_column) {
        return Err(AmbientError::invalid(format!(
            "\"{prediction_column}\" is an input or the label of project \"{project}\""
        ))
        .hint("pick another prediction_column"));
    }
    for (name, wanted, typmod) in [
        (prediction_column, prediction_type, prediction_typmod),
        (model_id_column.as_str(), pg_sys::INT8OID, -1),
    ] {
        if let Some((_, _, type_oid, _)) = column(name) {
            if *type_oid != wanted {
                return Err(AmbientError::wrong_type(format!(
                    "column \"{name}\" of table {} is {}; it would hold {}",
                    qualified(table),
                    type_name(*type_oid, -1, false),
                    type_name(wanted, typmod, false)
                ))
                .hint("drop the column, or pick another prediction_column"));
            }
        }
    }
    // Another project's trigger writes its own predictions and model ids
    // there: sharing the columns would mix both projects' live metrics.
    for other in attachments::on_relation(table.oid())? {
        if other.project_id == found.id {
            // Attached already: refused below, under the project's lock.
            continue;
        }
        let theirs = [
            Some(&other.prediction_column),
            Some(&other.model_id_column),
            other.label_column.as_ref(),
        ];
        // Nor may this project's label be where another writes predictions.
        let label_is_theirs =
            label.is_some_and(|l| l.0 == other.prediction_column || l.0 == other.model_id_column);
        if theirs.contains(&Some(&prediction_column.to_string()))
            || theirs.contains(&Some(&model_id_column))
            || label_is_theirs
        {
            return Err(AmbientError::duplicate_object(format!(
                "column \"{prediction_column}\" or \"{model_id_column}\" of table {} already holds another attachment's predictions",
                qualified(table)
            ))
            .hint("attach with another prediction_column, e.g. ambient.attach(project, table, prediction_column => 'churn_prediction')"));
        }
    }
    let label_column = label.map(|l| l.0.clone());
    let relation = table.oid();
    let table_name = qualified(table);
    let trigger = as_extension_owner(|| {
        let locked = projects::lock_for_change(project, &caller)?;
        if attachments::of_project(locked.id)?
            .iter()
            .any(|a| a.relation == relation)
        {
            return Err(AmbientError::duplicate_object(format!(
                "project \"{project}\" is already attached to table {}",
                qualified(table)
            ))
            .hint(
                "SELECT * FROM ambient.attachments shows it; detach it first to attach it again",
            ));
        }
        let trigger = attachments::insert(NewAttachment {
            project_id: locked.id,
            relation,
            prediction_column,
            model_id_column: &model_id_column,
            label_column: label_column.as_deref(),
            attached_by: &caller.name(),
        })?;
        audit::record(
            Entry::project(
                "attach",
                &caller.name(),
                &locked.name,
                locked.id,
                locked.owner,
            )
            .details(serde_json::json!({
                "table": qualified(table),
                "prediction_column": prediction_column,
                "model_id_column": model_id_column,
                "label_column": label_column,
            })),
        )?;
        Ok(trigger)
    })?;
    if let Some(class) = unparsable_class(&model, prediction_type, prediction_typmod, owner)? {
        return Err(AmbientError::wrong_type(format!(
            "the live model of project \"{project}\" predicts class \"{class}\", which column \"{}\" of table {} ({}) cannot hold",
            label_column.as_deref().unwrap_or(prediction_column),
            qualified(table),
            type_name(prediction_type, prediction_typmod, false)
        ))
        .hint("widen the label column's type (an enum's values, a varchar's length), or train on labels it can hold"));
    }
    let prediction_type = type_name(prediction_type, prediction_typmod, true);
    drop(owned);
    // The table's own DDL runs as the caller, who owns it; every name in it
    // is quoted or qualified, so the caller's search_path cannot change it.
    let rel = table_name;
    Spi::run(&format!(
        "ALTER TABLE {rel} ADD COLUMN IF NOT EXISTS {prediction} {prediction_type},
                           ADD COLUMN IF NOT EXISTS {model_id} pg_catalog.int8",
        prediction = quote_identifier(prediction_column),
        model_id = quote_identifier(&model_id_column),
    ))?;
    let arguments = format!(
        "{}, {}, {}, {}",
        quote_literal(project),
        quote_literal(prediction_column),
        quote_literal(&model_id_column),
        quote_literal(label_column.as_deref().unwrap_or(""))
    );
    let (prediction, model_id) = (
        quote_identifier(prediction_column),
        quote_identifier(&model_id_column),
    );
    // Predicting: before the row is stored, on INSERT and on an UPDATE of
    // an input or of the columns the trigger owns (which it writes back).
    // A model that looks features up by entity reads its keys, and only
    // the inputs the table has.
    let watched: Vec<String> = model
        .input_names()
        .into_iter()
        .map(str::to_string)
        .chain(lookup_keys)
        .filter(|c| columns.iter().any(|p| &p.0 == c))
        .fold(Vec::new(), |mut unique, c| {
            if !unique.contains(&c) {
                unique.push(c);
            }
            unique
        })
        .into_iter()
        .map(quote_identifier)
        .chain([prediction.clone(), model_id.clone()])
        .collect();
    Spi::run(&format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OF {} ON {rel}
             FOR EACH ROW EXECUTE FUNCTION ambient.predict_trigger({arguments})",
        quote_identifier(&trigger),
        watched.join(", "),
    ))?;
    Ok((prediction_column.to_string(), model_id_column, label_column))
}

/// Removes the trigger `attach` installed on `table`; the columns and the
/// predictions in them stay, and attaching again goes on with them.
#[pg_extern(volatile, parallel_unsafe)]
fn detach(project: &str, table: PgRelation) {
    detach_table(project, table).or_raise()
}

/// Takes the relation by value to close it before its trigger is dropped.
fn detach_table(project: &str, owned: PgRelation) -> AmbientResult<()> {
    let table = &owned;
    ensure_writable()?;
    let caller = Caller::current();
    check_table_owner(table, &caller, "detach a project from it")?;
    let relation = table.oid();
    let trigger = as_extension_owner(|| {
        let locked = projects::lock(project)?;
        let attachment = attachments::of_project(locked.id)?
            .into_iter()
            .find(|a| a.relation == relation)
            .ok_or_else(|| {
                AmbientError::undefined_object(format!(
                    "project \"{project}\" is not attached to table {}",
                    qualified(table)
                ))
                .hint("SELECT * FROM ambient.attachments shows what is attached where")
            })?;
        attachments::delete(attachment.id)?;
        audit::record(
            Entry::project(
                "detach",
                &caller.name(),
                &locked.name,
                locked.id,
                locked.owner,
            )
            .details(serde_json::json!({ "table": qualified(table) })),
        )?;
        Ok(attachment.trigger_name)
    })?;
    let table_name = qualified(table);
    drop(owned);
    Spi::run(&format!(
        "DROP TRIGGER IF EXISTS {} ON {table_name}",
        quote_identifier(&trigger),
    ))?;
    Ok(())
}

/// Where the trigger's columns are, worked out once per statement.
struct Columns {
    prediction: i32,
    model_id: i32,
    prediction_type: pg_sys::Oid,
    /// The prediction type's input function, to turn a class into a value.
    /// The function may keep state in it (a domain's checks), so it is
    /// handed out mutably, from behind a shared reference.
    input: std::cell::UnsafeCell<pg_sys::FmgrInfo>,
    input_param: pg_sys::Oid,
    input_typmod: i32,
}

/// What one trigger remembers while its statement lasts.
#[derive(Default)]
struct TriggerSite {
    call: CallSite,
    /// The challenger of a canary or shadow trial, with its own inputs.
    challenger: CallSite,
    columns: Option<Columns>,
    /// The attachment this trigger serves, checked once per statement
    /// against the catalog (a trigger made by hand is refused).
    fed: Option<attachments::Fed>,
    /// The project's running trial, read once per statement.
    challenge: Option<Option<Challenge>>,
    /// The primary key's columns and their output functions, for routing.
    key: Option<Vec<(i32, pg_sys::Oid)>>,
    /// Model ids known to be the project's, for rows that arrive served.
    served_by_project: std::collections::HashSet<i64>,
    /// Whether this statement already warned that it cannot predict.
    warned: bool,
}

/// The attached tables' trigger: `ambient.predict_trigger(project,
/// prediction_column, model_id_column, label_column)`. `#[pg_extern]` has
/// no return type for a trigger's row (a HeapTuple pointer), so its fmgr
/// entry point is written out: the V1 info record, then the function.
#[no_mangle]
pub extern "C" fn pg_finfo_ambient_predict_trigger() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by Postgres's function manager, with a live `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn ambient_predict_trigger(fcinfo: FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: fcinfo is the live call's; `fire` checks it is a trigger call.
    pg_sys::Datum::from(unsafe { fire(fcinfo) }.or_raise())
}

extension_sql!(
    r#"
CREATE FUNCTION ambient.predict_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'ambient_predict_trigger';
"#,
    name = "predict_trigger"
);

/// # Safety
/// `fcinfo` must be a live call.
unsafe fn fire(fcinfo: FunctionCallInfo) -> AmbientResult<*mut pg_sys::HeapTupleData> {
    // SAFETY: each pointer comes from the trigger manager's TriggerData,
    // valid for this call; the checks below establish it is one.
    unsafe {
        let context = (*fcinfo).context;
        let misuse = || {
            AmbientError::not_in_state(
                "ambient.predict_trigger() runs only as the row triggers ambient.attach installs",
            )
        };
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
            return Err(misuse());
        }
        let data = context as *mut pg_sys::TriggerData;
        let event = (*data).tg_event;
        let operation = event & pg_sys::TRIGGER_EVENT_OPMASK;
        let before = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_BEFORE;
        let (insert, update) = (
            operation == pg_sys::TRIGGER_EVENT_INSERT,
            operation == pg_sys::TRIGGER_EVENT_UPDATE,
        );
        if event & pg_sys::TRIGGER_EVENT_ROW == 0 {
            return Err(misuse());
        }
        if !before {
            // 0.2.0 logged labels from AFTER triggers, which the upgrade to
            // 0.3.0 drops; until it runs they do nothing, and writes go on.
            return Ok(std::ptr::null_mut());
        }
        if !(insert || update) {
            return Err(misuse());
        }
        let trigger = (*data).tg_trigger;
        if (*trigger).tgnargs != 4 {
            return Err(misuse());
        }
        let arg = |i: usize| {
            CStr::from_ptr(*(*trigger).tgargs.add(i))
                .to_str()
                .unwrap_or_default()
        };
        let (project, prediction_column, model_id_column, label_column) =
            (arg(0), arg(1), arg(2), arg(3));
        let relation = (*data).tg_relation;
        let tupdesc = PgTupleDesc::from_pg_unchecked((*relation).rd_att);
        let row_type = (*(*relation).rd_rel).reltype;
        let (old, new) = match (insert, update) {
            (true, _) => (None, (*data).tg_trigtuple),
            _ => (Some((*data).tg_trigtuple), (*data).tg_newtuple),
        };
        let site = &mut *pgrx::pg_func_extra(fcinfo, TriggerSite::default).as_ptr();
        let fed = match &site.fed {
            Some(known) => known,
            None => {
                // Only the trigger attach installed feeds the project: the
                // attachment's (a partition's clone keeps its name), with
                // the attachment's columns. One made by hand, by a role
                // with TRIGGER on the table, is refused.
                let trigger_name = CStr::from_ptr((*trigger).tgname).to_string_lossy();
                let fed = attachments::feeding(project, (*relation).rd_id, &trigger_name)?.filter(
                    |fed| {
                        fed.prediction_column == prediction_column
                            && fed.model_id_column == model_id_column
                            && fed.label_column.as_deref().unwrap_or("") == label_column
                    },
                );
                site.fed.insert(fed.ok_or_else(|| {
                    AmbientError::not_in_state(format!(
                        "trigger \"{trigger_name}\" is not the one ambient.attach installed for project \"{project}\""
                    ))
                    .hint("drop the trigger; ambient.attach(project, table) installs the one that feeds the project")
                })?)
            }
        };
        let project_id = fed.project_id;
        // The attached table's owner: the partitioned table's, for a
        // partition, whoever owns the partition.
        let owner = fed.table_owner;
        let columns = match &site.columns {
            Some(known) => known,
            None => site.columns.insert(find_columns(
                &tupdesc,
                prediction_column,
                model_id_column,
                (*(*fcinfo).flinfo).fn_mcxt,
            )?),
        };
        let get = |tuple: *mut pg_sys::HeapTupleData, attno: i32| {
            let mut is_null = false;
            let datum = pg_sys::heap_getattr(tuple, attno, tupdesc.as_ptr(), &mut is_null);
            (!is_null).then_some(datum)
        };
        // A row that arrives with the prediction it was served and the id
        // of the project's model that served it, written by a role acting as
        // the table's owner (a restore, a copy from a replica), keeps them:
        // predicting it again would rewrite history. Any other writer's, or
        // any other model id, is overwritten, so a role that may only
        // insert cannot steer the live metrics with made-up predictions.
        if insert && get(new, columns.prediction).is_some() && Caller::current().acts_as(owner) {
            if let Some(served_by) = get(new, columns.model_id) {
                let served_by = i64::from_datum(served_by, false).unwrap_or_default();
                if site.served_by_project.contains(&served_by)
                    || attachments::model_of_project(served_by, project_id)?
                {
                    site.served_by_project.insert(served_by);
                    return Ok(new);
                }
            }
        }
        // The model, and how it reads this table's rows (a model trained
        // from a training set looks features up, with the owner's rights).
        let model = match site
            .call
            .model_for(ModelKey::Project(project), Caller { oid: owner })
            .and_then(|model| {
                site.call.prepare_row(&model, &tupdesc, row_type, -1)?;
                Ok(model)
            }) {
            Ok(model) => model,
            Err(e) => {
                // The table's owner may no longer use the project or its
                // feature sets (a grant revoked, a membership taken away,
                // REASSIGN OWNED): the
                // write goes on, and the row shows the gap, with no
                // prediction and no model (an UPDATE keeps what it had).
                if !site.warned {
                    site.warned = true;
                    warning!(
                        "not predicting for project \"{project}\" with the rights of the table's owner {}: {}",
                        Caller { oid: owner }.name(),
                        e.message()
                    );
                }
                let kept = |attno: i32| old.and_then(|old| get(old, attno));
                let (p, m) = (kept(columns.prediction), kept(columns.model_id));
                let mut attnos = [columns.prediction, columns.model_id];
                let mut values = [
                    p.unwrap_or(pg_sys::Datum::null()),
                    m.unwrap_or(pg_sys::Datum::null()),
                ];
                let mut nulls = [p.is_none(), m.is_none()];
                return Ok(pg_sys::heap_modify_tuple_by_cols(
                    new,
                    tupdesc.as_ptr(),
                    2,
                    attnos.as_mut_ptr(),
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                ));
            }
        };
        // An UPDATE that leaves the inputs as they were keeps the prediction
        // that was served (written back, whatever the statement set).
        let old_features = match old {
            Some(old) => {
                site.call.read_tuple(&model, old, &tupdesc, row_type, -1)?;
                Some(site.call.features.clone())
            }
            None => None,
        };
        site.call.read_tuple(&model, new, &tupdesc, row_type, -1)?;
        // A row from before the attachment has no prediction to keep.
        let served = old.is_some_and(|old| {
            get(old, columns.prediction).is_some() && get(old, columns.model_id).is_some()
        });
        let same_inputs = served
            && old_features.as_ref().is_some_and(|before| {
                before.len() == site.call.features.len()
                    && before
                        .iter()
                        .zip(&site.call.features)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
            });
        let mut attnos = [columns.prediction, columns.model_id];
        let (mut values, mut nulls) = match (same_inputs, old) {
            (true, Some(old)) => {
                let (p, m) = (get(old, columns.prediction), get(old, columns.model_id));
                (
                    [
                        p.unwrap_or(pg_sys::Datum::null()),
                        m.unwrap_or(pg_sys::Datum::null()),
                    ],
                    [p.is_none(), m.is_none()],
                )
            }
            _ => {
                let challenge = match &site.challenge {
                    Some(known) => known.clone(),
                    None => site
                        .challenge
                        .insert(operations::running_challenge(project_id)?)
                        .clone(),
                };
                let key = match &challenge {
                    Some(_) => row_key(&mut site.key, relation, new, &tupdesc)?,
                    None => None,
                };
                let mut served_by = (model.clone(), site.call.model_id().unwrap_or_default());
                let mut x = &site.call.features;
                // A challenger that cannot be had (its artifact damaged)
                // leaves the live model serving: the write goes on.
                // So does one whose feature sets the owner may no longer
                // be served.
                let challenger = challenge.as_ref().and_then(|trial| {
                    site.challenger
                        .model_for(ModelKey::Id(trial.model_id), Caller { oid: owner })
                        .and_then(|model| {
                            site.challenger
                                .prepare_row(&model, &tupdesc, row_type, -1)?;
                            Ok(model)
                        })
                        .ok()
                        .map(|model| (trial, model))
                });
                if let Some((trial, challenger)) = challenger {
                    site.challenger
                        .read_tuple(&challenger, new, &tupdesc, row_type, -1)?;
                    if trial.shadow {
                        let said = prediction_text(&challenger, &site.challenger.features);
                        operations::log_shadow(
                            project_id,
                            trial.model_id,
                            (*relation).rd_id,
                            key.as_deref(),
                            &said,
                        )?;
                    } else if key
                        .as_deref()
                        .is_some_and(|k| live::canary_serves(k, trial.model_id, trial.traffic))
                    {
                        served_by = (challenger, trial.model_id);
                        x = &site.challenger.features;
                    }
                }
                let (serving, model_id) = served_by;
                let value =
                    if columns.prediction_type == pg_sys::FLOAT8OID && serving.labels.is_none() {
                        serving.predict_value(x).into_datum()
                    } else {
                        let class = CString::new(serving.predict_label(x))
                            .map_err(|_| AmbientError::invalid("a class name holds a NUL"))?;
                        Some(pg_sys::InputFunctionCall(
                            columns.input.get(),
                            class.as_ptr() as *mut _,
                            columns.input_param,
                            columns.input_typmod,
                        ))
                    };
                (
                    [value.unwrap_or(pg_sys::Datum::null()), model_id.into()],
                    [value.is_none(), false],
                )
            }
        };
        Ok(pg_sys::heap_modify_tuple_by_cols(
            new,
            tupdesc.as_ptr(),
            2,
            attnos.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        ))
    }
}

/// A prediction as text: the class, or the estimate.
fn prediction_text(model: &Model, x: &[f64]) -> String {
    match model.labels {
        Some(_) => model.predict_label(x),
        None => model.predict_value(x).to_string(),
    }
}

/// The row's primary key as text (its columns' output, comma-separated),
/// or `None` when the table has none.
///
/// # Safety
/// `relation` must be the trigger's relation and `tuple` one of its rows.
unsafe fn row_key(
    known: &mut Option<Vec<(i32, pg_sys::Oid)>>,
    relation: pg_sys::Relation,
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: &PgTupleDesc,
) -> AmbientResult<Option<String>> {
    // SAFETY: per the contract; relcache and syscache reads.
    unsafe {
        let columns = match known {
            Some(c) => c,
            None => {
                let bits = pg_sys::RelationGetIndexAttrBitmap(
                    relation,
                    pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_PRIMARY_KEY,
                );
                let mut columns = Vec::new();
                let mut member = -1;
                loop {
                    member = pg_sys::bms_next_member(bits, member);
                    if member < 0 {
                        break;
                    }
                    let attno = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
                    let type_oid = tupdesc
                        .get((attno - 1) as usize)
                        .map_or(pg_sys::InvalidOid, |a| a.type_oid().value());
                    let mut output = pg_sys::InvalidOid;
                    let mut varlena = false;
                    pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut varlena);
                    columns.push((attno, output));
                }
                known.insert(columns)
            }
        };
        if columns.is_empty() {
            return Ok(None);
        }
        let mut key = String::new();
        for (i, &(attno, output)) in columns.iter().enumerate() {
            let mut is_null = false;
            let datum = pg_sys::heap_getattr(tuple, attno, tupdesc.as_ptr(), &mut is_null);
            if i > 0 {
                key.push(',');
            }
            if !is_null {
                key.push_str(
                    &CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, datum)).to_string_lossy(),
                );
            }
        }
        Ok(Some(key))
    }
}

/// # Safety
/// `tupdesc` must be the trigger's relation's.
unsafe fn find_columns(
    tupdesc: &PgTupleDesc,
    prediction: &str,
    model_id: &str,
    mcxt: pg_sys::MemoryContext,
) -> AmbientResult<Columns> {
    let find = |name: &str| {
        tupdesc
            .iter()
            .find(|a| !a.is_dropped() && a.name() == name)
            .map(|a| (a.attnum as i32, a.type_oid().value(), a.atttypmod))
            .ok_or_else(|| {
                AmbientError::undefined_column(format!(
                    "the attached table has no column \"{name}\""
                ))
                .hint("detach the project and attach it again")
            })
    };
    let (prediction_attno, prediction_type, typmod) = find(prediction)?;
    let (model_id_attno, model_id_type, _) = find(model_id)?;
    if model_id_type != pg_sys::INT8OID {
        return Err(AmbientError::wrong_type(format!(
            "column \"{model_id}\" of the attached table is not bigint"
        )));
    }
    let mut input_function = pg_sys::InvalidOid;
    let mut input_param = pg_sys::InvalidOid;
    let mut input = pg_sys::FmgrInfo::default();
    // SAFETY: syscache reads for a column's type. The trigger is called in
    // a per-row memory context, so `input` (and what its function keeps in
    // it) lives in `mcxt`, the trigger's own per-query context, as the site
    // does.
    unsafe {
        pg_sys::getTypeInputInfo(prediction_type, &mut input_function, &mut input_param);
        pg_sys::fmgr_info_cxt(input_function, &mut input, mcxt);
    }
    Ok(Columns {
        prediction: prediction_attno,
        model_id: model_id_attno,
        prediction_type,
        input: std::cell::UnsafeCell::new(input),
        input_param,
        input_typmod: typmod,
    })
}

/// Why `model` cannot serve writes to `table`, if it cannot: an input
/// column it reads is missing or of another kind, or (given the prediction
/// column's type) it predicts a class that type cannot hold. Every write
/// to the table would then fail.
fn serving_problem(
    table: &PgRelation,
    model_id: i64,
    model: &Model,
    prediction: Option<(pg_sys::Oid, i32)>,
) -> AmbientResult<Option<AmbientError>> {
    let columns = table_columns(table);
    // SAFETY: an open relation's pg_class row.
    let owner = unsafe { (*table.rd_rel).relowner };
    // A model trained from a training set looks up, by the row's entity
    // keys, the features the row lacks, with the table owner's rights.
    let looked_up = match feature_sets::served_features(model_id)? {
        None => Vec::new(),
        Some(served) => {
            if let Some(key) = served
                .entity
                .iter()
                .find(|k| !columns.iter().any(|c| &c.0 == *k))
            {
                return Ok(Some(AmbientError::undefined_column(format!(
                    "table {} has no column \"{key}\", a key of the model's feature sets",
                    qualified(table)
                ))));
            }
            // A key of another type would be cast at every INSERT, and a
            // value the cast refuses would fail the write.
            let mut names: Vec<&str> = Vec::new();
            for f in &served.features {
                if !names.contains(&f.set.as_str()) {
                    names.push(&f.set);
                }
            }
            for name in &names {
                let set = feature_sets::find(name)?.ok_or_else(|| feature_sets::unknown(name))?;
                for (key, key_type) in set.entity.iter().zip(&set.entity_types) {
                    let column = columns.iter().find(|c| &c.0 == key);
                    if let Some((_, _, type_oid, typmod)) = column {
                        if &type_name(*type_oid, -1, true) != key_type {
                            return Ok(Some(AmbientError::wrong_type(format!(
                                "column \"{key}\" of table {} is {}, and feature set \"{name}\" keys on {key_type}",
                                qualified(table),
                                type_name(*type_oid, *typmod, false)
                            ))));
                        }
                    }
                }
            }
            for set in served.features.iter().map(|f| f.set.as_str()) {
                let owner = Caller { oid: owner };
                if feature_sets::require_use(set, &owner, Privilege::Predict).is_err() {
                    return Ok(Some(AmbientError::privilege(format!(
                        "the owner of table {} may not be served feature set \"{set}\" (its owner can allow it: ambient.grant('{set}', '{}', 'predict'))",
                        qualified(table),
                        owner.name().replace('\'', "''")
                    ))));
                }
            }
            served.features.into_iter().map(|f| f.feature).collect()
        }
    };
    for input in &model.inputs.inputs {
        match columns.iter().find(|c| c.0 == input.name) {
            None if looked_up.contains(&input.name) => {}
            None => {
                return Ok(Some(AmbientError::undefined_column(format!(
                    "table {} has no column \"{}\"",
                    qualified(table),
                    input.name
                ))))
            }
            Some((_, _, type_oid, typmod))
                if source::feature_kind(*type_oid) != Some(input.kind) =>
            {
                return Ok(Some(AmbientError::wrong_type(format!(
                    "column \"{}\" of table {} is {}, but the model was trained on a {} column",
                    input.name,
                    qualified(table),
                    type_name(*type_oid, *typmod, false),
                    input.kind.as_str()
                ))))
            }
            Some(_) => {}
        }
    }
    if let Some((type_oid, typmod)) = prediction {
        if model.task == Task::Regression && type_oid != pg_sys::FLOAT8OID {
            return Ok(Some(AmbientError::wrong_type(format!(
                "the prediction column of table {} is {}, and a regression predicts double precision",
                qualified(table),
                type_name(type_oid, typmod, false)
            ))));
        }
        if let Some(class) = unparsable_class(model, type_oid, typmod, owner)? {
            return Ok(Some(AmbientError::wrong_type(format!(
                "the model predicts class \"{class}\", which the prediction column of table {} ({}) cannot hold",
                qualified(table),
                type_name(type_oid, typmod, false)
            ))));
        }
    }
    Ok(None)
}

/// The first of a classifier's classes that a column of `type_oid` cannot
/// hold: each is read by the type's input function, as the trigger will
/// read it, in a subtransaction that takes the failure back. The input
/// function (a domain's CHECK among it) is the table owner's to define, so
/// it runs as the table owner, restricted, never as whoever deploys.
fn unparsable_class(
    model: &Model,
    type_oid: pg_sys::Oid,
    typmod: i32,
    table_owner: pg_sys::Oid,
) -> AmbientResult<Option<String>> {
    let Some(labels) = &model.labels else {
        return Ok(None);
    };
    let mut input_function = pg_sys::InvalidOid;
    let mut input_param = pg_sys::InvalidOid;
    // SAFETY: a syscache read of the type's input function.
    unsafe { pg_sys::getTypeInputInfo(type_oid, &mut input_function, &mut input_param) };
    as_author(&Author::restricted(table_owner), || {
        for class in &labels.classes {
            pgrx::check_for_interrupts!();
            let text = CString::new(class.as_str())
                .map_err(|_| AmbientError::invalid("a class name holds a NUL"))?;
            let parsed = in_subtransaction(|| {
                // SAFETY: a type input function called on a C string, as
                // InputFunctionCall does for an INSERT.
                unsafe {
                    pg_sys::OidInputFunctionCall(
                        input_function,
                        text.as_ptr() as *mut _,
                        input_param,
                        typmod,
                    )
                };
                Ok(())
            });
            match parsed {
                Ok(()) => {}
                Err(Failure::Ambient(e)) => return Err(e),
                Err(Failure::Postgres(caught)) => match *caught {
                    pg_sys::panic::CaughtError::PostgresError(report)
                    | pg_sys::panic::CaughtError::ErrorReport(report)
                        if report.sql_error_code()
                            == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED =>
                    {
                        pg_sys::panic::CaughtError::PostgresError(report).rethrow()
                    }
                    _ => return Ok(Some(class.clone())),
                },
            }
        }
        Ok(None)
    })
}

/// An attached table, opened to read its columns, or `None` if it is gone.
fn open_attached(relation: pg_sys::Oid) -> Option<PgRelation> {
    attachments::relation_name(relation)?;
    // SAFETY: the relation exists (above); the lock is held until the
    // transaction ends.
    Some(unsafe { PgRelation::with_lock(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE) })
}

/// The type and typmod of `table`'s column `name`, if it has one.
fn column_type(table: &PgRelation, name: &str) -> Option<(pg_sys::Oid, i32)> {
    table_columns(table)
        .into_iter()
        .find(|c| c.0 == name)
        .map(|c| (c.2, c.3))
}

/// Errors (55000) unless `model_id` can serve every table `project` is
/// attached to: the one check a model passes before it goes live (deploy,
/// rollback, train's deploy, promote, approve) or starts a trial.
pub(super) fn check_serves_attached(project: &Project, model_id: i64) -> AmbientResult<()> {
    let attached = attachments::of_project(project.id)?;
    if attached.is_empty() {
        return Ok(());
    }
    let model = model_cache::load_latest(model_id)?;
    let mut problems = Vec::new();
    for a in attached {
        let Some(table) = open_attached(a.relation) else {
            continue;
        };
        let prediction = column_type(&table, &a.prediction_column);
        if let Some(problem) = serving_problem(&table, model_id, &model, prediction)? {
            problems.push(problem.message().to_string());
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(AmbientError::not_in_state(format!(
        "model {model_id} cannot serve the tables project \"{}\" is attached to: {}",
        project.name,
        problems.join("; ")
    ))
    .hint("live, it would make every write to those tables fail: add what they lack, or detach them first with ambient.detach(project, table)"))
}

/// What the attachments on `relations` need of them, after DDL changed
/// them: the live model's (and a challenger's) inputs, the prediction,
/// model-id and label columns, an owner who may use the project, and (for
/// `renamed_trigger_tables`, whose triggers ALTER TRIGGER renamed) the
/// attachment's trigger under its name; and that a trigger CREATE [OR
/// REPLACE] TRIGGER made under an attachment's trigger name
/// (`created_triggers`) is the attachment's own. Called by the `ddl_command_end`
/// event trigger, so that a change that would make writes fail is refused
/// and rolled back, and `ambient.attachments` stays true. Only the event
/// trigger's function (SECURITY DEFINER) may call it: it takes locks on
/// the tables it is given.
#[pg_extern(volatile, parallel_unsafe)]
fn check_attached_tables(
    relations: Vec<Option<pg_sys::Oid>>,
    renamed_trigger_tables: Vec<Option<pg_sys::Oid>>,
    created_triggers: Vec<Option<pg_sys::Oid>>,
) {
    check_tables(relations.into_iter().flatten(), false)
        .and_then(|_| check_tables(renamed_trigger_tables.into_iter().flatten(), true))
        .and_then(|_| check_created_triggers(created_triggers.into_iter().flatten()))
        .or_raise()
}

/// Refuses a trigger made (or replaced) under an attachment's trigger
/// name that is not the attachment's own: `ambient.predict_trigger` with
/// the attachment's arguments. Another trigger of the table is its
/// owner's business (a restore creates them in any order).
fn check_created_triggers(triggers: impl Iterator<Item = pg_sys::Oid>) -> AmbientResult<()> {
    for trigger in triggers {
        let found = as_extension_owner(|| {
            Spi::connect(|client| {
                let row = client
                    .select(
                        "SELECT tgrelid, tgname::pg_catalog.text,
                                tgfoid OPERATOR(pg_catalog.=) 'ambient.predict_trigger()'::pg_catalog.regprocedure,
                                tgargs
                           FROM pg_catalog.pg_trigger WHERE oid OPERATOR(pg_catalog.=) $1",
                        Some(1),
                        &[trigger.into()],
                    )?
                    .first();
                if row.is_empty() {
                    return Ok(None);
                }
                Ok(Some((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<bool>(3)?.unwrap_or(false),
                    row.get::<Vec<u8>>(4)?.unwrap_or_default(),
                )))
            })
        })?;
        let Some((table, name, ours, arguments)) = found else {
            continue;
        };
        for a in attachments::on_relation(table)? {
            if a.trigger_name != name {
                continue;
            }
            let project = as_extension_owner(|| projects::name_of(a.project_id))?;
            // tgargs: each argument followed by a NUL.
            let expected: Vec<u8> = [
                project.as_str(),
                &a.prediction_column,
                &a.model_id_column,
                a.label_column.as_deref().unwrap_or(""),
            ]
            .iter()
            .flat_map(|arg| arg.bytes().chain([0]))
            .collect();
            if !ours || arguments != expected {
                return Err(AmbientError::not_in_state(format!(
                    "trigger \"{name}\" of table {} is the one attached project \"{project}\" needs",
                    attachments::relation_name(table).unwrap_or_default()
                ))
                .hint("detach the project first (ambient.detach), then make triggers of your own under other names"));
            }
        }
    }
    Ok(())
}

fn check_tables(
    relations: impl Iterator<Item = pg_sys::Oid>,
    trigger_renamed: bool,
) -> AmbientResult<()> {
    for relation in relations {
        if super::guard::is_extension_relation(relation) {
            continue;
        }
        super::features::check_source_table(relation)?;
        super::guard::check_changed(relation)?;
        let attached = attachments::on_relation(relation)?;
        if attached.is_empty() {
            continue;
        }
        let Some(table) = open_attached(relation) else {
            continue;
        };
        for a in attached {
            let project = as_extension_owner(|| projects::name_of(a.project_id))?;
            let refuse = |what: String| {
                AmbientError::not_in_state(format!(
                    "table {} is attached to project \"{project}\", whose trigger needs {what}",
                    qualified(&table)
                ))
                .hint(format!(
                    "detach it first: SELECT ambient.detach('{}', '{}'); change the table; then attach it again",
                    project.replace('\'', "''"),
                    qualified(&table).replace('\'', "''")
                ))
            };
            let prediction = column_type(&table, &a.prediction_column)
                .ok_or_else(|| refuse(format!("its column \"{}\"", a.prediction_column)))?;
            if column_type(&table, &a.model_id_column).map(|c| c.0) != Some(pg_sys::INT8OID) {
                return Err(refuse(format!(
                    "its bigint column \"{}\"",
                    a.model_id_column
                )));
            }
            if let Some(label) = &a.label_column {
                column_type(&table, label)
                    .ok_or_else(|| refuse(format!("its label column \"{label}\"")))?;
            }
            if trigger_renamed && !has_trigger(relation, &a.trigger_name)? {
                return Err(refuse(format!("its trigger named \"{}\"", a.trigger_name)));
            }
            // The trigger predicts with the table owner's rights: a new
            // owner must be allowed to use the project.
            // SAFETY: an open relation's pg_class row.
            let owner = Caller {
                oid: unsafe { (*table.rd_rel).relowner },
            };
            as_extension_owner(|| {
                let found = projects::require(&project)?;
                let grants = projects::grants_of(found.id)?;
                projects::authorize_use(
                    projects::Named::Project(&project),
                    found.owner,
                    &grants,
                    &owner,
                    projects::Privilege::Predict,
                )
            })
            .map_err(|_| {
                refuse(format!(
                    "an owner allowed to use the project (grant it first: ambient.grant('{}', '{}', 'predict'))",
                    project.replace('\'', "''"),
                    owner.name().replace('\'', "''")
                ))
            })?;
            let serving = as_extension_owner(|| {
                let mut ids: Vec<i64> = deployments::live(a.project_id)?
                    .map(|d| d.model_id)
                    .into_iter()
                    .collect();
                ids.extend(operations::latest_challenge(a.project_id)?.map(|c| c.model_id));
                Ok(ids)
            })?;
            for model_id in serving {
                let model = model_cache::load_latest(model_id)?;
                if let Some(problem) = serving_problem(&table, model_id, &model, Some(prediction))?
                {
                    return Err(refuse(format!(
                        "what model {model_id} reads: {}",
                        problem.message()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether `relation` has a trigger named `name`.
fn has_trigger(relation: pg_sys::Oid, name: &str) -> AmbientResult<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                         WHERE tgrelid OPERATOR(pg_catalog.=) $1 AND tgname OPERATOR(pg_catalog.=) $2)",
        &[relation.into(), name.into()],
    )?
    .unwrap_or(false))
}

/// Called by the `sql_drop` event trigger with each dropped trigger's
/// table (NULL when the table went too) and name: the attachment whose
/// trigger was dropped (by hand, or by `pg_restore --clean`) is forgotten,
/// as `detach` would, and so are the attachments of dropped tables, so
/// `ambient.attachments` tells the truth.
#[pg_extern(volatile, parallel_unsafe)]
fn attached_objects_dropped(
    trigger_tables: Vec<Option<pg_sys::Oid>>,
    trigger_names: Vec<Option<String>>,
) {
    forget_dropped(&trigger_tables, &trigger_names).or_raise()
}

fn forget_dropped(tables: &[Option<pg_sys::Oid>], names: &[Option<String>]) -> AmbientResult<()> {
    // The event trigger's function runs as the extension owner.
    let caller = Caller::outer();
    let forgotten = |project_id: i64, table: Option<String>, why: &str| {
        let project = projects::name_of(project_id)?;
        let owner = projects::require(&project)?.owner;
        audit::record(
            Entry::project("detach", &caller.name(), &project, project_id, owner)
                .reason(Some(why))
                .details(serde_json::json!({ "table": table })),
        )?;
        Ok(project)
    };
    for (table, name) in tables.iter().zip(names) {
        let (Some(table), Some(name)) = (table, name) else {
            continue;
        };
        for a in attachments::on_relation(*table)? {
            if &a.trigger_name != name {
                continue;
            }
            let project = as_extension_owner(|| {
                attachments::delete(a.id)?;
                forgotten(
                    a.project_id,
                    attachments::relation_name(*table),
                    "its trigger was dropped",
                )
            })?;
            notice!(
                "project \"{project}\" is no longer attached to table {}: its trigger was dropped",
                attachments::relation_name(*table).unwrap_or_default()
            );
        }
    }
    as_extension_owner(|| {
        for (project_id, table) in attachments::forget_dropped()? {
            forgotten(project_id, Some(table), "its table was dropped")?;
        }
        Ok(())
    })
}

extension_sql!(
    r#"
-- Attached tables keep accepting writes: DDL that would break an
-- attachment's trigger is refused, and a dropped table's attachment is
-- forgotten. (ALTER EVENT TRIGGER ... DISABLE turns either off.)
CREATE FUNCTION ambient.guard_attached_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ambient.check_attached_tables(
        ARRAY(SELECT objid FROM pg_catalog.pg_event_trigger_ddl_commands()
               WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass),
        ARRAY(SELECT t.tgrelid FROM pg_catalog.pg_event_trigger_ddl_commands() c
                JOIN pg_catalog.pg_trigger t ON t.oid OPERATOR(pg_catalog.=) c.objid
               WHERE c.command_tag OPERATOR(pg_catalog.=) 'ALTER TRIGGER'),
        ARRAY(SELECT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
               WHERE c.command_tag OPERATOR(pg_catalog.=) 'CREATE TRIGGER'));
END $$;
CREATE FUNCTION ambient.forget_dropped_attachments() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ambient.attached_objects_dropped(
        ARRAY(SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(address_names[1])
                       OPERATOR(pg_catalog.||) '.'
                       OPERATOR(pg_catalog.||) pg_catalog.quote_ident(address_names[2]))::pg_catalog.oid
                FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type OPERATOR(pg_catalog.=) 'trigger' ORDER BY objid),
        ARRAY(SELECT address_names[3]
                FROM pg_catalog.pg_event_trigger_dropped_objects()
               WHERE object_type OPERATOR(pg_catalog.=) 'trigger' ORDER BY objid));
END $$;
REVOKE EXECUTE ON FUNCTION ambient.check_attached_tables(oid[], oid[], oid[]),
                          ambient.attached_objects_dropped(oid[], text[]) FROM PUBLIC;
CREATE EVENT TRIGGER ambient_guard_attached_tables ON ddl_command_end
    EXECUTE FUNCTION ambient.guard_attached_tables();
CREATE EVENT TRIGGER ambient_forget_dropped_attachments ON sql_drop
    EXECUTE FUNCTION ambient.forget_dropped_attachments();
"#,
    name = "attachment_event_triggers",
    requires = [check_attached_tables, attached_objects_dropped],
);
