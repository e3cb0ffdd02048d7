//! Predicting by entity: `ambient.predict(project, entity => key)` and its
//! `predict_label` and `predict_proba` forms look up the latest valid value
//! of each feature the live model was trained with, in the same
//! transaction and snapshot, and predict. The lookup is the training set's
//! point-in-time join with a one-row spine at the transaction's time
//! (`features::online_query_for` and the training set's view come from one
//! generator, `feature_sets::point_in_time_query`), so a value
//! served at time t is the value a training row at t got. Columns of
//! `"row"` override looked-up values and give the row features.
//!
//! The first argument is `name`, not `text`: with `(text, anyelement)`,
//! `predict('p', t)` for a table row `t` would match this form and the row
//! form equally, and Postgres would call it ambiguous. With `name`, a
//! `text` or unknown project prefers the row form, and `entity => ...`
//! picks this one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys::{self, FunctionCallInfo};
use pgrx::prelude::*;
use pgrx::{pg_getarg_datum_raw, PgTupleDesc};

use super::features::{entity_values, join_parts, online_query_for, output_text};
use super::lookup::{DirectSet, Found};
use super::model_cache::SnapshotView;
use super::predict::{
    call_site, label, proba, read_value, reader_for, value, CallSite, ModelKey, Reader, RowDatum,
};
use crate::catalog::feature_sets::{self, FeatureSet, Shape};
use crate::catalog::projects::{Grants, Privilege};
use crate::catalog::{select_built, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::ml::model::Model;
use crate::ml::preprocess::Value;
use crate::ml::MlResult;

/// How a model is served by entity: what its feature sets are, who may
/// use them, and the lookup. Read from the catalog once and kept per
/// backend for as long as statement snapshots show the same database
/// (`SnapshotView`, as `model_cache` keeps resolutions); who may use the
/// sets is checked again, in Rust, at every resolution.
pub(super) struct Served {
    model_id: i64,
    entity: Vec<String>,
    /// Each feature set's name, owner and grants.
    sets: Vec<(String, pg_sys::Oid, Grants)>,
    /// The lookup, as the extension owner reads the histories.
    query: String,
    /// Per model input: the lookup's column (from 1) that gives it, or
    /// `None` for a row feature.
    inputs: Vec<Option<usize>>,
    /// The same lookup read straight from the histories' indexes, when
    /// every set's event time is a timestamptz (`lookup`).
    direct: Option<Vec<DirectSet>>,
}

/// A call site's `Served`, checked for its caller.
pub(super) type EntityPlan = Rc<Served>;

/// The models' `Served`, under the snapshot view they were read in.
type ServedCache = (Option<SnapshotView>, HashMap<i64, Rc<Served>>);

thread_local! {
    static SERVED: RefCell<ServedCache> = RefCell::new((None, HashMap::new()));
}

impl Served {
    /// How `model_id` is served, if `caller` may be served each of its
    /// feature sets ('predict' serves a set's values to a model without
    /// showing them; a role without it is served none).
    fn for_model(model_id: i64, model: &Model, caller: &Caller) -> AmbientResult<EntityPlan> {
        let known = SERVED.with(|cache| {
            let (view, plans) = &*cache.borrow();
            view.as_ref()
                .filter(|v| v.is_current())
                .and_then(|_| plans.get(&model_id).cloned())
        });
        let served = match known {
            Some(served) => served,
            None => {
                let served = Rc::new(Served::load(model_id, model)?);
                SERVED.with(|cache| {
                    let (view, plans) = &mut *cache.borrow_mut();
                    if !view.as_ref().is_some_and(SnapshotView::is_current) {
                        *view = SnapshotView::current();
                        plans.clear();
                    }
                    plans.insert(model_id, served.clone());
                });
                served
            }
        };
        for (name, owner, grants) in &served.sets {
            feature_sets::check_use(name, *owner, grants, caller, Privilege::Predict)?;
        }
        Ok(served)
    }

    fn load(model_id: i64, model: &Model) -> AmbientResult<Served> {
        let served = feature_sets::served_features(model_id)?.ok_or_else(|| {
            AmbientError::not_in_state(format!(
                "model {model_id} was not trained from a training set, so it has no features to look up"
            ))
            .hint("pass the row instead: ambient.predict('project', t), or train from a training set")
        })?;
        let mut sets: Vec<FeatureSet> = Vec::new();
        for r in &served.features {
            if !sets.iter().any(|s| s.name == r.set) {
                let set =
                    feature_sets::find(&r.set)?.ok_or_else(|| feature_sets::unknown(&r.set))?;
                served.check_same(&set, model_id)?;
                sets.push(set);
            }
        }
        let parts = join_parts(&sets, &served.features);
        let looked_up: Vec<&str> = parts
            .iter()
            .flat_map(|p| p.features.iter().copied())
            .collect();
        let inputs = model
            .input_names()
            .iter()
            .map(|name| looked_up.iter().position(|f| f == name).map(|i| i + 1))
            .collect();
        let query = online_query_for(&served.entity, &sets, &parts, Shape::Online);
        let mut rights = Vec::new();
        for set in &sets {
            rights.push((
                set.name.clone(),
                set.owner,
                feature_sets::grants_of(set.id)?,
            ));
        }
        let mut direct = Some(Vec::new());
        for part in &parts {
            match (
                DirectSet::plan(part.set, &part.features, &served.entity)?,
                &mut direct,
            ) {
                (Some(set), Some(sets)) => sets.push(set),
                _ => direct = None,
            }
        }
        Ok(Served {
            model_id,
            entity: served.entity,
            sets: rights,
            query,
            inputs,
            direct,
        })
    }
}

/// The body of the entity forms: `answer` gets the model and the encoded
/// features. NULL project or entity gives NULL.
fn predict_entity<R>(
    fcinfo: FunctionCallInfo,
    answer: impl FnOnce(&Model, &[f64]) -> MlResult<R>,
) -> Option<R> {
    // SAFETY: fcinfo is the live call of a function declared (name,
    // anyelement, record DEFAULT NULL); NULL arguments are checked first.
    unsafe {
        if pgrx::pg_arg_is_null(fcinfo, 0) || pgrx::pg_arg_is_null(fcinfo, 1) {
            return None;
        }
        let site = call_site(fcinfo);
        serve(site, fcinfo)
            .and_then(|model| Ok(answer(&model, &site.features)?))
            .map(Some)
            .or_raise()
    }
}

/// Resolves the live model, looks the entity's features up, and encodes
/// them (with the row's overrides) into `site.features`.
///
/// # Safety
/// `fcinfo` must be a live call of an entity form with non-null project
/// and entity.
unsafe fn serve(
    site: &mut CallSite,
    fcinfo: FunctionCallInfo,
) -> AmbientResult<std::rc::Rc<Model>> {
    // SAFETY: per the contract; a name datum points at a NameData.
    unsafe {
        let name = pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<pg_sys::NameData>();
        let project = CStr::from_ptr((*name).data.as_ptr())
            .to_str()
            .map_err(|_| AmbientError::invalid("project name is not valid UTF-8"))?;
        let caller = Caller::current();
        let model = site.model_for(ModelKey::Project(project), caller)?;
        let model_id = site.model_id().unwrap_or_default();
        if site.entity_plan.as_ref().map(|p| p.model_id) != Some(model_id) {
            site.entity_plan = Some(Served::for_model(model_id, &model, &caller)?);
        }
        let plan = site
            .entity_plan
            .as_ref()
            .ok_or_else(|| AmbientError::invalid("no entity plan"))?;
        let keys = entity_values(fcinfo, 1, &plan.entity)?;
        let row = (!pgrx::pg_arg_is_null(fcinfo, 2))
            .then(|| RowView::new(pg_getarg_datum_raw(fcinfo, 2)));
        assemble(
            plan,
            &model,
            Some(&keys),
            |_, name| row.as_ref().and_then(|r| r.value(name)),
            &mut site.features,
        )?;
        Ok(model)
    }
}

/// Looks the entity's features up (unless `keys` is `None`: a NULL key,
/// which finds nothing) and encodes the model's inputs into `features`:
/// each from `own` (the row in hand) where it gives one, else from the
/// lookup, where no value, or none valid now, is missing (the model's
/// imputation).
fn assemble<'r>(
    plan: &EntityPlan,
    model: &Model,
    keys: Option<&[Option<String>]>,
    own: impl Fn(usize, &str) -> Option<AmbientResult<Value<'r>>>,
    features: &mut Vec<f64>,
) -> AmbientResult<()> {
    let Some(keys) = keys else {
        return encode_inputs(plan, model, &own, |_| Ok(Value::Missing), features);
    };
    if let Some(direct) = &plan.direct {
        let mut found = Vec::new();
        for set in direct {
            // SAFETY: inside the calling statement, with its snapshot.
            unsafe { set.lookup(keys, &mut found)? };
        }
        return encode_inputs(
            plan,
            model,
            |j, name| own(j, name),
            |column| Ok(found.get(column - 1).map_or(Value::Missing, Found::value)),
            features,
        );
    }
    let args: Vec<pgrx::datum::DatumWithOid<'_>> =
        keys.iter().map(|k| k.as_deref().into()).collect();
    select_built(&plan.query, &args, |rows| {
        let looked_up = |column: usize| -> AmbientResult<Value<'_>> {
            match rows.raw(0, column) {
                Some((datum, false, type_oid)) => {
                    let reader = reader_for(type_oid).ok_or_else(|| {
                        AmbientError::wrong_type("a feature has a type predict cannot read")
                    })?;
                    // SAFETY: a non-null datum of its column's type, alive
                    // while the rows are.
                    unsafe { read_value(datum, type_oid, reader, "feature") }
                }
                _ => Ok(Value::Missing),
            }
        };
        encode_inputs(plan, model, |j, name| own(j, name), looked_up, features)
    })
}

/// Encodes the model's inputs into `features`, each from `own` where it
/// gives one, else from `looked_up` (the lookup's column).
fn encode_inputs<'v>(
    plan: &EntityPlan,
    model: &Model,
    own: impl Fn(usize, &str) -> Option<AmbientResult<Value<'v>>>,
    looked_up: impl Fn(usize) -> AmbientResult<Value<'v>>,
    features: &mut Vec<f64>,
) -> AmbientResult<()> {
    let names = model.input_names();
    let mut values = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        if let Some(value) = own(j, name) {
            values.push(value?);
            continue;
        }
        let Some(column) = plan.inputs[j] else {
            return Err(AmbientError::undefined_column(format!(
                "the model's input \"{name}\" is not in its feature sets"
            ))
            .hint(format!(
                "pass it in the row: \"row\" => ROW(...) with a column \"{name}\""
            )));
        };
        values.push(looked_up(column)?);
    }
    Ok(model.encode(&values, features)?)
}

/// Where a row type's entity keys and the model's inputs sit, for a model
/// that looks up what rows of this type lack (an attached table's
/// trigger, or the row form).
pub(super) struct EntityRow {
    type_id: pg_sys::Oid,
    typmod: i32,
    model: Rc<Model>,
    /// (attribute number from 1, type) of each entity key, in the plan's
    /// order.
    keys: Vec<(i32, pg_sys::Oid)>,
    /// Per model input, where the row has it.
    from_row: Vec<Option<(i32, pg_sys::Oid, Reader)>>,
}

impl EntityRow {
    /// `None` when the model looks nothing up, or the row lacks a key or
    /// an input its feature sets do not give: then the row form's own
    /// error stands.
    pub(super) fn new(
        site: &mut CallSite,
        model_id: i64,
        model: &Rc<Model>,
        tupdesc: &PgTupleDesc,
        type_id: pg_sys::Oid,
        typmod: i32,
        caller: Caller,
    ) -> AmbientResult<Option<EntityRow>> {
        if feature_sets::served_features(model_id)?.is_none() {
            return Ok(None);
        }
        if site.entity_plan.as_ref().map(|p| p.model_id) != Some(model_id) {
            site.entity_plan = Some(Served::for_model(model_id, model, &caller)?);
        }
        let Some(plan) = site.entity_plan.as_ref() else {
            return Ok(None);
        };
        let find = |name: &str| {
            tupdesc
                .iter()
                .enumerate()
                .find(|(_, a)| !a.is_dropped() && a.name() == name)
                .map(|(i, a)| (i as i32 + 1, a.type_oid().value()))
        };
        let mut keys = Vec::new();
        for key in &plan.entity {
            match find(key) {
                Some(found) => keys.push(found),
                None => return Ok(None),
            }
        }
        let mut from_row = Vec::new();
        for (j, name) in model.input_names().iter().enumerate() {
            match find(name) {
                Some((attno, type_oid)) => {
                    let reader = reader_for(type_oid).ok_or_else(|| {
                        AmbientError::wrong_type(format!(
                            "column \"{name}\" is not numeric, boolean, text, enum, date or timestamp"
                        ))
                    })?;
                    from_row.push(Some((attno, type_oid, reader)));
                }
                None if plan.inputs[j].is_some() => from_row.push(None),
                None => return Ok(None),
            }
        }
        Ok(Some(EntityRow {
            type_id,
            typmod,
            model: model.clone(),
            keys,
            from_row,
        }))
    }

    pub(super) fn serves(&self, type_id: pg_sys::Oid, typmod: i32, model: &Rc<Model>) -> bool {
        self.type_id == type_id && self.typmod == typmod && Rc::ptr_eq(&self.model, model)
    }
}

/// Reads a tuple's entity keys and inputs, looks up what it lacks, and
/// encodes the model's inputs into `site.features`. A NULL key finds
/// nothing: the looked-up inputs are missing.
///
/// # Safety
/// `tuple` must be a valid tuple of `tupdesc`, for which `site.entity_row`
/// was made.
pub(super) unsafe fn read_tuple_by_entity(
    site: &mut CallSite,
    model: &Rc<Model>,
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: &PgTupleDesc,
) -> AmbientResult<()> {
    let (Some(row), Some(plan)) = (site.entity_row.as_ref(), site.entity_plan.as_ref()) else {
        return Err(AmbientError::invalid("no entity layout for this row"));
    };
    let get = |attno: i32| {
        let mut is_null = false;
        // SAFETY: per the contract.
        let datum = unsafe { pg_sys::heap_getattr(tuple, attno, tupdesc.as_ptr(), &mut is_null) };
        (!is_null).then_some(datum)
    };
    let keys: Option<Vec<Option<String>>> = row
        .keys
        .iter()
        // SAFETY: a non-null datum of the key column's type.
        .map(|&(attno, type_oid)| get(attno).map(|d| Some(unsafe { output_text(type_oid, d) })))
        .collect();
    let from_row = &row.from_row;
    assemble(
        plan,
        model,
        keys.as_deref(),
        |j, name| {
            let (attno, type_oid, reader) = from_row[j]?;
            Some(match get(attno) {
                None => Ok(Value::Missing),
                // SAFETY: a non-null datum of this column's type; a text
                // value borrows from the tuple, alive for the call.
                Some(datum) => unsafe { read_value(datum, type_oid, reader, name) },
            })
        },
        &mut site.features,
    )
}

/// A `record` argument's columns, read by name.
struct RowView(RowDatum);

impl RowView {
    /// # Safety
    /// `datum` must be a non-null composite datum.
    unsafe fn new(datum: pg_sys::Datum) -> RowView {
        // SAFETY: per the contract.
        RowView(unsafe { RowDatum::new(datum) })
    }

    /// The column `name`'s value, if the row has such a column.
    fn value(&self, name: &str) -> Option<AmbientResult<Value<'_>>> {
        let (index, attr) = self
            .0
            .tupdesc
            .iter()
            .enumerate()
            .find(|(_, a)| !a.is_dropped() && a.name() == name)?;
        let type_oid = attr.type_oid().value();
        let Some(reader) = reader_for(type_oid) else {
            return Some(Err(AmbientError::wrong_type(format!(
                "column \"{name}\" is not numeric, boolean, text, enum, date or timestamp"
            ))));
        };
        let mut is_null = false;
        let mut tuple = self.0.tuple;
        // SAFETY: the tuple is the row's, of this descriptor; a text value
        // borrows from the row, which outlives the call.
        unsafe {
            let datum = pg_sys::heap_getattr(
                &mut tuple,
                index as i32 + 1,
                self.0.tupdesc.as_ptr(),
                &mut is_null,
            );
            if is_null {
                return Some(Ok(Value::Missing));
            }
            Some(read_value(datum, type_oid, reader, name))
        }
    }
}

/// The live model's prediction for an entity, from the latest valid value
/// of each of its features (see the module's note on the signature).
#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict(project name, entity anyelement, "row" record DEFAULT NULL) RETURNS float8
    STABLE PARALLEL RESTRICTED COST 1000 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_by_entity(fcinfo: FunctionCallInfo) -> Option<f64> {
    predict_entity(fcinfo, value)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_label(project name, entity anyelement, "row" record DEFAULT NULL) RETURNS text
    STABLE PARALLEL RESTRICTED COST 1000 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_label_by_entity(fcinfo: FunctionCallInfo) -> Option<String> {
    predict_entity(fcinfo, label)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_proba(project name, entity anyelement, "row" record DEFAULT NULL) RETURNS float8[]
    STABLE PARALLEL RESTRICTED COST 1000 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_proba_by_entity(fcinfo: FunctionCallInfo) -> Option<Vec<f64>> {
    predict_entity(fcinfo, proba)
}
