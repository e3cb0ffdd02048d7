//! `ambient.attach` and `ambient.detach`: a project's live model predicts
//! every row written to a table, in the writing transaction, through a
//! BEFORE row trigger that fills the prediction column and the id of the
//! model that made it. When the table also has the project's target column,
//! the labels written to it later are logged for live metrics
//! (`ambient.monitor`).

use std::ffi::{CStr, CString};

use pgrx::pg_sys::{self, FunctionCallInfo};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::{PgRelation, PgTupleDesc};

use super::check_project_name;
use super::model_cache;
use super::predict::{to_f64, CallSite, ModelKey};
use crate::catalog::attachments::{self, NewAttachment, Outcome};
use crate::catalog::operations::{self, Challenge};
use crate::catalog::{as_extension_owner, ensure_writable, projects, Caller};
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

/// A type's name with its modifier (`varchar(10)`), schema-qualified for
/// SQL or as `\d` shows it for messages.
fn type_name(oid: pg_sys::Oid, typmod: i32, qualified: bool) -> String {
    let qualify = if qualified {
        pg_sys::FORMAT_TYPE_FORCE_QUALIFY
    } else {
        0
    };
    // SAFETY: format_type_extended returns a palloc'd string or raises.
    unsafe {
        CStr::from_ptr(pg_sys::format_type_extended(
            oid,
            typmod,
            (pg_sys::FORMAT_TYPE_TYPEMOD_GIVEN | qualify) as u16,
        ))
        .to_string_lossy()
        .into_owned()
    }
}

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
    if kind == pg_sys::RELKIND_PARTITIONED_TABLE || is_partition {
        // Postgres clones a partitioned table's row triggers onto each
        // partition, which then run as the partition, with its owner.
        return Err(AmbientError::wrong_object_type(format!(
            "{} is partitioned, or a partition; attaching to one is not supported yet",
            qualified(table)
        ))
        .hint("attach the project to a plain table"));
    }
    if kind != pg_sys::RELKIND_RELATION {
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
    for input in &model.inputs.inputs {
        let (_, _, type_oid, typmod) = column(&input.name).ok_or_else(|| {
            AmbientError::undefined_column(format!(
                "table {} has no column \"{}\"",
                qualified(table),
                input.name
            ))
            .hint(format!(
                "the live model of project \"{project}\" reads: {}",
                model.input_names().join(", ")
            ))
        })?;
        if source::feature_kind(*type_oid) != Some(input.kind) {
            return Err(AmbientError::wrong_type(format!(
                "column \"{}\" of table {} is {}, but the model was trained on a {} column",
                input.name,
                qualified(table),
                type_name(*type_oid, *typmod, false),
                input.kind.as_str()
            )));
        }
    }
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
        attachments::insert(NewAttachment {
            project_id: locked.id,
            relation,
            prediction_column,
            model_id_column: &model_id_column,
            label_column: label_column.as_deref(),
            attached_by: &caller.name(),
        })
    })?;
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
    let watched: Vec<String> = model
        .input_names()
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
    // Labels: once a row is stored (so a row an upsert or another trigger
    // never stores is never counted), and only rows whose label, or
    // counted prediction, changed.
    if let Some(label) = label_column.as_deref().map(quote_identifier) {
        for (suffix, event, when) in [
            ("inserted", "INSERT".to_string(), format!("NEW.{label} IS NOT NULL")),
            // Without a column list: the BEFORE trigger's new prediction is
            // not in the statement's SET list.
            (
                "changed",
                "UPDATE".to_string(),
                format!(
                    "OLD.{label} IS DISTINCT FROM NEW.{label} OR OLD.{prediction} IS DISTINCT FROM NEW.{prediction}
                     OR OLD.{model_id} IS DISTINCT FROM NEW.{model_id}"
                ),
            ),
            ("deleted", "DELETE".to_string(), format!("OLD.{label} IS NOT NULL")),
        ] {
            Spi::run(&format!(
                "CREATE TRIGGER {} AFTER {event} ON {rel} FOR EACH ROW WHEN ({when})
                     EXECUTE FUNCTION ambient.predict_trigger({arguments})",
                quote_identifier(format!("{trigger}_{suffix}")),
            ))?;
        }
    }
    Ok((prediction_column.to_string(), model_id_column, label_column))
}

/// Removes the trigger `attach` installed on `table`; the columns and the
/// predictions in them stay.
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
        Ok(attachment.trigger_name)
    })?;
    let table_name = qualified(table);
    drop(owned);
    for name in [
        trigger.clone(),
        format!("{trigger}_inserted"),
        format!("{trigger}_changed"),
        format!("{trigger}_deleted"),
    ] {
        Spi::run(&format!(
            "DROP TRIGGER IF EXISTS {} ON {table_name}",
            quote_identifier(&name),
        ))?;
    }
    Ok(())
}

/// Where the trigger's columns are, worked out once per statement.
struct Columns {
    prediction: i32,
    model_id: i32,
    label: Option<(i32, pg_sys::Oid)>,
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
    /// The id of the project this table is attached to, checked once per
    /// statement against the catalog (a trigger made by hand is refused).
    project: Option<i64>,
    /// The project's running trial, read once per statement.
    challenge: Option<Option<Challenge>>,
    /// The primary key's columns and their output functions, for routing.
    key: Option<Vec<(i32, pg_sys::Oid)>>,
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
        let after = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER;
        let (insert, update) = (
            operation == pg_sys::TRIGGER_EVENT_INSERT,
            operation == pg_sys::TRIGGER_EVENT_UPDATE,
        );
        if event & pg_sys::TRIGGER_EVENT_ROW == 0 || !((before && (insert || update)) || after) {
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
        let owner = (*(*relation).rd_rel).relowner;
        let (old, new) = match (insert, update) {
            (true, _) => (None, Some((*data).tg_trigtuple)),
            (_, true) => (Some((*data).tg_trigtuple), Some((*data).tg_newtuple)),
            _ => (Some((*data).tg_trigtuple), None),
        };
        let site = &mut *pgrx::pg_func_extra(fcinfo, TriggerSite::default).as_ptr();
        let project_id = match site.project {
            Some(id) => id,
            None => *site.project.insert(
                attachments::attached_project(project, (*relation).rd_id)?.ok_or_else(|| {
                    AmbientError::not_in_state(format!(
                        "this table is not attached to project \"{project}\""
                    ))
                    .hint("ambient.attach installs this trigger; drop one made by hand, or detach and attach again")
                })?,
            ),
        };
        let columns = match &site.columns {
            Some(known) => known,
            None => site.columns.insert(find_columns(
                &tupdesc,
                prediction_column,
                model_id_column,
                label_column,
                (*(*fcinfo).flinfo).fn_mcxt,
            )?),
        };
        let get = |tuple: *mut pg_sys::HeapTupleData, attno: i32| {
            let mut is_null = false;
            let datum = pg_sys::heap_getattr(tuple, attno, tupdesc.as_ptr(), &mut is_null);
            (!is_null).then_some(datum)
        };
        if after {
            // Labels, once the row is stored: take back what the old row
            // counted, count what the new row holds.
            let Some((label_attno, label_type)) = columns.label else {
                return Ok(new.unwrap_or(std::ptr::null_mut()));
            };
            let numeric = label_type != pg_sys::BOOLOID
                && source::is_numeric(label_type)
                && columns.prediction_type == pg_sys::FLOAT8OID;
            let outcome = |tuple: *mut pg_sys::HeapTupleData| -> AmbientResult<Option<Outcome>> {
                let (Some(label), Some(prediction), Some(model_id)) = (
                    get(tuple, label_attno),
                    get(tuple, columns.prediction),
                    get(tuple, columns.model_id),
                ) else {
                    return Ok(None);
                };
                let (Some(predicted), Some(actual)) = (
                    value_text(prediction, columns.prediction_type, numeric)?,
                    value_text(label, label_type, numeric)?,
                ) else {
                    return Ok(None);
                };
                Ok(Some((
                    i64::from_datum(model_id, false).unwrap_or_default(),
                    predicted,
                    actual,
                )))
            };
            let before = old.map(outcome).transpose()?.flatten();
            let after = new.map(outcome).transpose()?.flatten();
            if before != after {
                attachments::log_outcome(project_id, before.as_ref(), after.as_ref())?;
            }
            return Ok(new.unwrap_or(std::ptr::null_mut()));
        }
        let new = new.ok_or_else(misuse)?;
        let model = site
            .call
            .model_for(ModelKey::Project(project), Caller { oid: owner })?;
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
                if let Some(trial) = &challenge {
                    let challenger = site
                        .challenger
                        .model_for(ModelKey::Id(trial.model_id), Caller { oid: owner })?;
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
    label: &str,
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
    let label = if label.is_empty() {
        None
    } else {
        let (attno, type_oid, _) = find(label)?;
        Some((attno, type_oid))
    };
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
        label,
        prediction_type,
        input: std::cell::UnsafeCell::new(input),
        input_param,
        input_typmod: typmod,
    })
}

/// A prediction or label as the outcome log keeps it: for a regression
/// (`numeric`), the number in Rust's shortest round-trip form, `None` if it
/// is not finite (it cannot be scored); for a classification, the class as
/// `::text` writes it, as training reads labels (`true`/`false`, char(n)
/// without its trailing blanks).
///
/// # Safety
/// `datum` must be a non-null value of type `oid`.
unsafe fn value_text(
    datum: pg_sys::Datum,
    oid: pg_sys::Oid,
    numeric: bool,
) -> AmbientResult<Option<String>> {
    // SAFETY: per the contract.
    unsafe {
        if numeric {
            let value = to_f64(datum, oid, "label")?;
            return Ok(value.is_finite().then(|| value.to_string()));
        }
        Ok(Some(match oid {
            o if o == pg_sys::BOOLOID => bool::from_datum(datum, false)
                .unwrap_or_default()
                .to_string(),
            o if o == pg_sys::BPCHAROID => <&str>::from_datum(datum, false)
                .unwrap_or_default()
                .trim_end_matches(' ')
                .to_string(),
            o => {
                let mut output = pg_sys::InvalidOid;
                let mut varlena = false;
                pg_sys::getTypeOutputInfo(o, &mut output, &mut varlena);
                CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, datum))
                    .to_string_lossy()
                    .into_owned()
            }
        }))
    }
}
