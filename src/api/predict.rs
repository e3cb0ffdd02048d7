//! In-query prediction. Every form is STABLE and PARALLEL SAFE: it only
//! reads the catalog, through read-only SPI under the statement's snapshot.
//! A call site resolves its model once per statement snapshot (cached in
//! `fn_extra`, which lives as long as the expression state: a statement, or
//! a whole transaction for a PL/pgSQL expression); `model_cache` remembers
//! live models across statements while the data they see is unchanged, and
//! keeps decoded models.

use std::ptr::NonNull;
use std::rc::Rc;

use pgrx::array::RawArray;
use pgrx::datum::AnyNumeric;
use pgrx::pg_sys::{self, FunctionCallInfo};
use pgrx::prelude::*;
use pgrx::{
    heap_tuple_header_get_type_id, heap_tuple_header_get_typmod, pg_getarg, pg_getarg_datum_raw,
    PgTupleDesc,
};

use super::model_cache::{self, SnapshotView};
use crate::catalog::operations::{self, Challenge};
use crate::catalog::{deployments, Caller};
use crate::error::{AmbientError, AmbientResult, OrRaise};
use crate::ml::live;
use crate::ml::model::Model;
use crate::ml::preprocess::Value;
use crate::ml::MlResult;
use crate::source;

/// Which model a call asks for. Borrowed, so the per-row check against the
/// call site's cached key allocates nothing.
#[derive(Clone, Copy)]
pub(super) enum ModelKey<'a> {
    Project(&'a str),
    Id(i64),
}

/// The owned form a call site keeps for the rest of its statement.
enum ResolvedKey {
    Project(String),
    Id(i64),
}

impl ResolvedKey {
    fn is(&self, key: ModelKey<'_>) -> bool {
        match (self, key) {
            (ResolvedKey::Project(a), ModelKey::Project(b)) => a == b,
            (ResolvedKey::Id(a), ModelKey::Id(b)) => *a == b,
            _ => false,
        }
    }
}

impl From<ModelKey<'_>> for ResolvedKey {
    fn from(key: ModelKey<'_>) -> Self {
        match key {
            ModelKey::Project(name) => ResolvedKey::Project(name.to_string()),
            ModelKey::Id(id) => ResolvedKey::Id(id),
        }
    }
}

/// Where a row type's columns sit, for one model's inputs.
struct RowLayout {
    type_id: pg_sys::Oid,
    typmod: i32,
    model: Rc<Model>,
    /// (1-based attribute number, type, how to read it) per model input.
    columns: Vec<(usize, pg_sys::Oid, Reader)>,
    /// The descriptor the layout was worked out from: while a row comes
    /// with this very one, only the column types are checked again, not
    /// their names (see `fits`).
    tupdesc: pg_sys::TupleDesc,
    /// Every input a float8 column, for a model that takes numbers as they
    /// are: a row is read straight into the features.
    float8_as_given: bool,
}

/// How a column's datum becomes an input value.
#[derive(Clone, Copy)]
pub(super) enum Reader {
    Number,
    Text,
    /// char(n): its text without the trailing blanks, as a cast to text gives.
    Blank,
    /// A type read through its output function (name, enums).
    Output(pg_sys::Oid),
    Date,
    Timestamp,
}

/// A call site's model, and what it was resolved for.
struct Resolved {
    key: ResolvedKey,
    user: pg_sys::Oid,
    /// The top-level statement it was resolved in: a new one resolves
    /// again, which checks the caller's rights again.
    statement_start: pg_sys::TimestampTz,
    snapshot: Option<SnapshotView>,
    model_id: i64,
    model: Rc<Model>,
}

/// A composite datum (a `record` argument), decoded: its tuple, with the
/// descriptor, type and typmod of its row type.
pub(super) struct RowDatum {
    pub(super) tuple: pg_sys::HeapTupleData,
    pub(super) tupdesc: PgTupleDesc<'static>,
    pub(super) type_id: pg_sys::Oid,
    pub(super) typmod: i32,
}

impl RowDatum {
    /// # Safety
    /// `datum` must be a non-null composite datum, alive while the result
    /// is used.
    pub(super) unsafe fn new(datum: pg_sys::Datum) -> RowDatum {
        // SAFETY: per the contract.
        unsafe {
            let header = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
            let type_id = heap_tuple_header_get_type_id(header);
            let typmod = heap_tuple_header_get_typmod(header);
            RowDatum {
                tuple: pg_sys::HeapTupleData {
                    t_len: pgrx::heap_tuple_header_get_datum_length(header) as u32,
                    t_data: header,
                    ..Default::default()
                },
                tupdesc: PgTupleDesc::from_pg(pg_sys::lookup_rowtype_tupdesc(type_id, typmod)),
                type_id,
                typmod,
            }
        }
    }
}

/// What one call site remembers while its statement lasts.
#[derive(Default)]
pub(super) struct CallSite {
    resolved: Option<Resolved>,
    /// The project's running trial, read with the resolution it belongs to.
    challenge: Option<Option<Challenge>>,
    /// Where a canary's challenger is resolved and its rows laid out.
    challenger: Option<Box<CallSite>>,
    layout: Option<RowLayout>,
    /// How the model is served by entity (`serve`), for this resolution.
    pub(super) entity_plan: Option<super::serve::EntityPlan>,
    /// Where a row type's entity keys and row features sit, for a model
    /// that looks the rest up.
    pub(super) entity_row: Option<super::serve::EntityRow>,
    /// The row's inputs after preprocessing, as the estimator takes them.
    pub(super) features: Vec<f64>,
}

pub(super) fn call_site<'a>(fcinfo: FunctionCallInfo) -> &'a mut CallSite {
    // SAFETY: fcinfo is the live call's; pg_func_extra returns the CallSite it
    // leaked into fn_extra (never null), which is dropped with fn_mcxt.
    unsafe { &mut *pgrx::pg_func_extra(fcinfo, CallSite::default).as_ptr() }
}

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    /// Catalog resolutions made by call sites, so tests can count them.
    pub static RESOLUTIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The model a call site uses, checked against `caller`'s rights.
fn resolve(key: ModelKey<'_>, caller: Caller) -> AmbientResult<(i64, Rc<Model>)> {
    #[cfg(any(test, feature = "pg_test"))]
    RESOLUTIONS.with(|n| n.set(n.get() + 1));
    match key {
        ModelKey::Project(name) => {
            let (id, sha) = model_cache::live_model(name, &caller)?;
            Ok((id, model_cache::load_verified(id, &sha)?))
        }
        ModelKey::Id(id) => Ok((id, model_cache::pinned_model(id, &caller)?)),
    }
}

impl CallSite {
    /// The model for `key`. A call site can outlive its statement (PL/pgSQL
    /// keeps an expression's state for the whole transaction), so the model
    /// is resolved again when the statement's snapshot changes, and the row
    /// layout is worked out again (a column's type may have been altered),
    /// as well as when the key or the role changes (a function can SET ROLE
    /// between two uses of one call site).
    fn model(&mut self, key: ModelKey<'_>) -> AmbientResult<Rc<Model>> {
        self.model_for(key, Caller::current())
    }

    /// The model for `key`, as `caller` may use it (an attached table's
    /// trigger predicts with its table owner's rights).
    pub(super) fn model_for(
        &mut self,
        key: ModelKey<'_>,
        caller: Caller,
    ) -> AmbientResult<Rc<Model>> {
        let user = caller.oid;
        let statement_start = model_cache::statement_start();
        if let Some(resolved) = &self.resolved {
            if resolved.key.is(key)
                && resolved.user == user
                && resolved.statement_start == statement_start
                && resolved
                    .snapshot
                    .as_ref()
                    .is_some_and(SnapshotView::is_current)
            {
                return Ok(resolved.model.clone());
            }
        }
        self.layout = None;
        self.challenge = None;
        self.entity_plan = None;
        self.entity_row = None;
        let (model_id, model) = resolve(key, caller)?;
        self.resolved = Some(Resolved {
            key: key.into(),
            user,
            statement_start,
            snapshot: SnapshotView::current(),
            model_id,
            model: model.clone(),
        });
        Ok(model)
    }

    /// The id of the model last resolved.
    pub(super) fn model_id(&self) -> Option<i64> {
        self.resolved.as_ref().map(|r| r.model_id)
    }

    /// Reads a composite row's values for the model's inputs, matching
    /// columns by name, and preprocesses them into `self.features`.
    ///
    /// # Safety
    /// `row` must be a non-null composite datum, as a `record` argument is.
    unsafe fn read_row(&mut self, model: &Rc<Model>, row: pg_sys::Datum) -> AmbientResult<()> {
        // SAFETY: per the contract; the header stays valid for the call.
        unsafe {
            let mut row = RowDatum::new(row);
            self.read_tuple(model, &mut row.tuple, &row.tupdesc, row.type_id, row.typmod)
        }
    }

    /// Works out how rows of this type are read for `model`: by a layout
    /// of its columns, or, for a row without every input, by its entity
    /// keys, looking the rest up in the model's feature sets (true), with
    /// the rights of the role the model was resolved for. Reads no row, so
    /// an attached table's trigger can ask before it predicts.
    pub(super) fn prepare_row(
        &mut self,
        model: &Rc<Model>,
        tupdesc: &PgTupleDesc,
        type_id: pg_sys::Oid,
        typmod: i32,
    ) -> AmbientResult<bool> {
        if self
            .entity_row
            .as_ref()
            .is_some_and(|known| known.serves(type_id, typmod, model))
        {
            return Ok(true);
        }
        if self.layout.as_ref().is_some_and(|known| {
            known.type_id == type_id
                && known.typmod == typmod
                && Rc::ptr_eq(&known.model, model)
                && known.fits(tupdesc)
        }) {
            return Ok(false);
        }
        match layout(model, type_id, typmod, tupdesc) {
            Ok(made) => {
                self.layout = Some(made);
                Ok(false)
            }
            Err(missing) => {
                let (Some(user), Some(id)) =
                    (self.resolved.as_ref().map(|r| r.user), self.model_id())
                else {
                    return Err(missing);
                };
                let caller = Caller { oid: user };
                match super::serve::EntityRow::new(
                    self, id, model, tupdesc, type_id, typmod, caller,
                )? {
                    Some(row) => {
                        self.entity_row = Some(row);
                        Ok(true)
                    }
                    None => Err(missing),
                }
            }
        }
    }

    /// Reads a tuple's values for the model's inputs, matching columns by
    /// name, and preprocesses them into `self.features`.
    ///
    /// # Safety
    /// `tuple` must be a valid tuple of `tupdesc`, the descriptor of row
    /// type `type_id`/`typmod`.
    pub(super) unsafe fn read_tuple(
        &mut self,
        model: &Rc<Model>,
        tuple: *mut pg_sys::HeapTupleData,
        tupdesc: &PgTupleDesc,
        type_id: pg_sys::Oid,
        typmod: i32,
    ) -> AmbientResult<()> {
        // SAFETY: per the contract; every text value borrowed from the
        // tuple lives until encode is done.
        unsafe {
            if self.prepare_row(model, tupdesc, type_id, typmod)? {
                return super::serve::read_tuple_by_entity(self, model, tuple, tupdesc);
            }
            let Some(layout) = self.layout.as_mut() else {
                return Err(AmbientError::invalid("no layout for this row"));
            };
            if layout.float8_as_given && read_float8s(layout, tuple, tupdesc, &mut self.features) {
                return Ok(());
            }
            let mut values = Vec::with_capacity(layout.columns.len());
            for (j, &(attno, type_oid, reader)) in layout.columns.iter().enumerate() {
                let mut is_null = false;
                let datum =
                    pg_sys::heap_getattr(tuple, attno as i32, tupdesc.as_ptr(), &mut is_null);
                values.push(if is_null {
                    Value::Missing
                } else {
                    read_value(
                        datum,
                        type_oid,
                        reader,
                        model.inputs.inputs[j].name.as_str(),
                    )?
                });
            }
            model.encode(&values, &mut self.features)?;
        }
        Ok(())
    }
}

impl RowLayout {
    /// Whether the row type still has each column where, of the type and
    /// under the name the layout says: a column altered, renamed or dropped
    /// since is worked out again rather than read as it was. The names are
    /// compared only when the descriptor is not the one the layout came
    /// from; the types always, as reading a datum as another type is what
    /// must never happen.
    fn fits(&self, tupdesc: &PgTupleDesc) -> bool {
        let same_descriptor = std::ptr::eq(tupdesc.as_ptr(), self.tupdesc);
        self.columns
            .iter()
            .zip(self.model.inputs.names())
            .all(|(&(attno, type_oid, _), name)| {
                tupdesc.get(attno - 1).is_some_and(|attr| {
                    !attr.attisdropped
                        && attr.atttypid == type_oid
                        && (same_descriptor || attr.name() == name)
                })
            })
    }
}

/// Reads a row whose inputs are all float8 straight into `features`, for a
/// model that takes numbers as they are; false, to take the general path,
/// when a value is NULL, NaN or infinite (imputed or refused there).
///
/// # Safety
/// `tuple` must be a valid tuple of `tupdesc`, which `layout` fits.
unsafe fn read_float8s(
    layout: &RowLayout,
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: &PgTupleDesc,
    features: &mut Vec<f64>,
) -> bool {
    features.clear();
    for &(attno, _, _) in &layout.columns {
        let mut is_null = false;
        // SAFETY: per the contract; the column is a float8 (`fits`).
        let datum =
            unsafe { pg_sys::heap_getattr(tuple, attno as i32, tupdesc.as_ptr(), &mut is_null) };
        // SAFETY: a non-null float8 datum.
        match unsafe { f64::from_datum(datum, is_null) } {
            Some(value) if value.is_finite() => features.push(value),
            _ => return false,
        }
    }
    true
}

fn layout(
    model: &Rc<Model>,
    type_id: pg_sys::Oid,
    typmod: i32,
    tupdesc: &PgTupleDesc,
) -> AmbientResult<RowLayout> {
    let names = model.input_names();
    let columns = names
        .iter()
        .map(|&name| {
            let (index, attr) = tupdesc
                .iter()
                .enumerate()
                .find(|(_, a)| !a.is_dropped() && a.name() == name)
                .ok_or_else(|| {
                    AmbientError::undefined_column(format!("the row has no column \"{name}\""))
                        .hint(format!("the model needs: {}", names.join(", ")))
                })?;
            let type_oid = attr.type_oid().value();
            let reader = reader_for(type_oid).ok_or_else(|| {
                AmbientError::wrong_type(format!(
                    "column \"{name}\" is not numeric, boolean, text, enum, date or timestamp"
                ))
            })?;
            Ok((index + 1, type_oid, reader))
        })
        .collect::<AmbientResult<Vec<_>>>()?;
    let float8_as_given = model.inputs.takes_numbers_as_given()
        && columns
            .iter()
            .all(|&(_, type_oid, _)| type_oid == pg_sys::FLOAT8OID);
    Ok(RowLayout {
        type_id,
        typmod,
        model: model.clone(),
        columns,
        tupdesc: tupdesc.as_ptr(),
        float8_as_given,
    })
}

/// How to read a column of this type, if it can be an input (the types
/// training reads, `source::feature_kind`).
pub(super) fn reader_for(oid: pg_sys::Oid) -> Option<Reader> {
    use crate::ml::dataset::ColumnKind;
    Some(match source::feature_kind(oid)? {
        ColumnKind::Numeric | ColumnKind::Boolean => Reader::Number,
        ColumnKind::Categorical if oid == pg_sys::TEXTOID || oid == pg_sys::VARCHAROID => {
            Reader::Text
        }
        ColumnKind::Categorical if oid == pg_sys::BPCHAROID => Reader::Blank,
        ColumnKind::Categorical => {
            let mut output = pg_sys::InvalidOid;
            let mut varlena = false;
            // SAFETY: a syscache read for a type that exists (it is a
            // column's); it errors, not crashes, if it is gone.
            unsafe { pg_sys::getTypeOutputInfo(oid, &mut output, &mut varlena) };
            Reader::Output(output)
        }
        ColumnKind::Timestamp if oid == pg_sys::DATEOID => Reader::Date,
        ColumnKind::Timestamp => Reader::Timestamp,
    })
}

/// Seconds from 1970-01-01 to 2000-01-01, Postgres's date and timestamp epoch.
const POSTGRES_EPOCH_SECONDS: f64 = 946_684_800.0;

/// # Safety
/// `datum` must be a non-null value of type `oid`, which `reader` was made
/// for; a text value borrows from it.
pub(super) unsafe fn read_value<'a>(
    datum: pg_sys::Datum,
    oid: pg_sys::Oid,
    reader: Reader,
    name: &str,
) -> AmbientResult<Value<'a>> {
    // SAFETY: per the contract.
    unsafe {
        Ok(match reader {
            Reader::Number => Value::Number(to_f64(datum, oid, name)?),
            Reader::Text => Value::Text(<&str>::from_datum(datum, false).unwrap_or_default()),
            Reader::Blank => Value::Text(
                <&str>::from_datum(datum, false)
                    .unwrap_or_default()
                    .trim_end_matches(' '),
            ),
            Reader::Output(output) => {
                let text = pg_sys::OidOutputFunctionCall(output, datum);
                Value::Text(std::ffi::CStr::from_ptr(text).to_str().unwrap_or_default())
            }
            // Training reads dates and timestamps as date_part('epoch', ...):
            // seconds since 1970 of the value's own (UTC, or nominal) time.
            Reader::Date => {
                let days = i32::from_datum(datum, false).unwrap_or_default();
                finite_time(
                    f64::from(days) * 86_400.0,
                    days == i32::MIN || days == i32::MAX,
                    name,
                )?
            }
            Reader::Timestamp => {
                let micros = i64::from_datum(datum, false).unwrap_or_default();
                finite_time(
                    micros as f64 / 1e6,
                    micros == i64::MIN || micros == i64::MAX,
                    name,
                )?
            }
        })
    }
}

fn finite_time<'a>(since_2000: f64, infinite: bool, name: &str) -> AmbientResult<Value<'a>> {
    if infinite {
        return Err(AmbientError::invalid(format!(
            "feature \"{name}\" is infinity"
        )));
    }
    Ok(Value::Number(since_2000 + POSTGRES_EPOCH_SECONDS))
}

/// # Safety
/// `datum` must be a non-null value of type `oid`, one `source::feature_kind`
/// calls numeric or boolean. A numeric beyond float8's range is an error
/// (22003), not a NaN.
pub(super) unsafe fn to_f64(
    datum: pg_sys::Datum,
    oid: pg_sys::Oid,
    name: &str,
) -> AmbientResult<f64> {
    unsafe {
        Ok(match oid {
            o if o == pg_sys::FLOAT8OID => f64::from_datum(datum, false).unwrap_or(f64::NAN),
            o if o == pg_sys::FLOAT4OID => {
                f32::from_datum(datum, false).map_or(f64::NAN, f64::from)
            }
            o if o == pg_sys::INT2OID => i16::from_datum(datum, false).map_or(f64::NAN, f64::from),
            o if o == pg_sys::INT4OID => i32::from_datum(datum, false).map_or(f64::NAN, f64::from),
            o if o == pg_sys::INT8OID => {
                i64::from_datum(datum, false).map_or(f64::NAN, |v| v as f64)
            }
            o if o == pg_sys::BOOLOID => bool::from_datum(datum, false).map_or(f64::NAN, f64::from),
            _ => match AnyNumeric::from_datum(datum, false).map(f64::try_from) {
                Some(Ok(value)) => value,
                Some(Err(_)) => {
                    return Err(AmbientError::out_of_range(format!(
                        "feature \"{name}\" is beyond the range of double precision"
                    )))
                }
                None => f64::NAN,
            },
        })
    }
}

/// Reads a `float8[]` datum's elements straight from the array (pgrx's
/// `Array` looks the element type up in the syscache on every call, which
/// the per-row path cannot afford), a NULL element as a missing value, and
/// preprocesses them into the call site's buffer. The array form carries
/// numbers only, so a model with text inputs is refused with a pointer to
/// the row form.
///
/// # Safety
/// `features` must be a non-null `float8[]` datum.
unsafe fn read_array(
    site: &mut CallSite,
    model: &Model,
    features: pg_sys::Datum,
) -> AmbientResult<()> {
    // SAFETY: per the contract, a float8[] varlena; detoasting gives a plain
    // ArrayType whose data part holds the non-null elements as f64s.
    unsafe {
        let detoasted = pg_sys::pg_detoast_datum(features.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let Some(array) = NonNull::new(detoasted) else {
            return Err(AmbientError::null_value("features are NULL"));
        };
        let mut array = RawArray::from_ptr(array);
        if array.dims().len() > 1 {
            return Err(AmbientError::invalid(
                "features must be a one-dimensional array",
            ));
        }
        let len = array.len();
        let is_present = |bitmap: &[u8], i: usize| bitmap[i / 8] & (1 << (i % 8)) != 0;
        // The data part holds only the non-null elements, so the slice is
        // as long as they are, not as the array.
        let n_present = match array.nulls() {
            None => len,
            Some(bitmap) => (0..len).filter(|&i| is_present(bitmap.as_ref(), i)).count(),
        };
        let present =
            std::slice::from_raw_parts(array.data::<f64>().as_ptr() as *const f64, n_present);
        // Most rows: finite numbers for a model that takes them as they are.
        if array.nulls().is_none() && model.inputs.encode_numbers(present, &mut site.features) {
            return Ok(());
        }
        if let Some(text) = model
            .inputs
            .inputs
            .iter()
            .find(|i| i.kind == crate::ml::dataset::ColumnKind::Categorical)
        {
            return Err(AmbientError::wrong_type(format!(
                "the model's input \"{}\" is text, and a float8[] carries numbers only",
                text.name
            ))
            .hint("pass the row instead: ambient.predict('project', t.*), or a ROW(...) with named columns"));
        }
        let values: Vec<Value<'_>> = match array.nulls() {
            None => present.iter().map(|&v| Value::Number(v)).collect(),
            Some(bitmap) => {
                let bitmap = bitmap.as_ref();
                let mut next = present.iter();
                (0..len)
                    .map(|i| match is_present(bitmap, i) {
                        false => Value::Missing,
                        true => next.next().map_or(Value::Missing, |&v| Value::Number(v)),
                    })
                    .collect()
            }
        };
        model.encode(&values, &mut site.features)?;
    }
    Ok(())
}

/// How a predict form names its model and passes its features.
#[derive(Clone, Copy)]
pub(super) enum Form {
    ProjectArray,
    ProjectRow,
    PinnedArray,
}

/// The body of every predict function. Their SQL signatures are written out
/// below, so the arguments are read straight from `fcinfo`.
fn predict<R>(
    fcinfo: FunctionCallInfo,
    form: Form,
    answer: impl FnOnce(&Model, &[f64]) -> MlResult<R>,
) -> R {
    // SAFETY: fcinfo is the live call of a function declared with `form`'s
    // signature.
    let site = call_site(fcinfo);
    unsafe { read_input(site, fcinfo, form) }
        .and_then(|model| Ok(answer(&model, &site.features)?))
        .or_raise()
}

/// Resolves the call's model and preprocesses its input into
/// `site.features`.
///
/// # Safety
/// `fcinfo` must be a live call whose arguments are `form`'s: the SQL
/// signatures fix their types, and the functions are STRICT, so no argument
/// is NULL.
pub(super) unsafe fn read_input(
    site: &mut CallSite,
    fcinfo: FunctionCallInfo,
    form: Form,
) -> AmbientResult<Rc<Model>> {
    // SAFETY: per the contract.
    unsafe {
        let key = match form {
            Form::PinnedArray => ModelKey::Id(pg_getarg::<i64>(fcinfo, 0).unwrap_or_default()),
            Form::ProjectArray | Form::ProjectRow => {
                ModelKey::Project(pg_getarg::<&str>(fcinfo, 0).unwrap_or_default())
            }
        };
        let input = pg_getarg_datum_raw(fcinfo, 1);
        let model = site.model(key)?;
        match form {
            Form::ProjectRow => site.read_row(&model, input)?,
            Form::ProjectArray | Form::PinnedArray => read_array(site, &model, input)?,
        }
        Ok(model)
    }
}

impl CallSite {
    /// The project's running trial, read once per resolution of its live
    /// model (so a trial started or ended is seen when a deploy would be).
    fn challenge(&mut self, project: &str) -> AmbientResult<Option<Challenge>> {
        if let Some(known) = &self.challenge {
            return Ok(known.clone());
        }
        // A tag names one model: no canary serves in its place.
        let running = match deployments::live_project(project)? {
            Some(found) if found.tag.is_none() => operations::running_challenge(found.project_id)?,
            _ => None,
        };
        Ok(self.challenge.insert(running).clone())
    }

    /// The model `key` gets from `project`: the live model, or a canary's
    /// challenger for the share of keys it serves (as an attached table's
    /// primary key would), with its id.
    fn routed(
        &mut self,
        project: &str,
        key: &str,
    ) -> AmbientResult<(&mut CallSite, Rc<Model>, i64)> {
        let live = self.model(ModelKey::Project(project))?;
        let live_id = self.model_id().unwrap_or_default();
        match self.challenge(project)? {
            Some(trial)
                if !trial.shadow && live::canary_serves(key, trial.model_id, trial.traffic) =>
            {
                let site = self.challenger.get_or_insert_with(Default::default);
                let model = site.model(ModelKey::Id(trial.model_id))?;
                Ok((site, model, trial.model_id))
            }
            _ => Ok((self, live, live_id)),
        }
    }
}

/// The keyed row forms: the project's model for `key` (see `routed`)
/// predicts the row.
fn predict_keyed<R>(
    fcinfo: FunctionCallInfo,
    answer: impl FnOnce(&Model, &[f64]) -> MlResult<R>,
) -> R {
    let site = call_site(fcinfo);
    // SAFETY: fcinfo is the live call of a STRICT function taking (text,
    // record, text).
    unsafe {
        let project = pg_getarg::<&str>(fcinfo, 0).unwrap_or_default();
        let row = pg_getarg_datum_raw(fcinfo, 1);
        let key = pg_getarg::<&str>(fcinfo, 2).unwrap_or_default();
        site.routed(project, key).and_then(|(site, model, _)| {
            site.read_row(&model, row)?;
            Ok(answer(&model, &site.features)?)
        })
    }
    .or_raise()
}

pub(super) fn value(model: &Model, x: &[f64]) -> MlResult<f64> {
    Ok(model.predict_value(x))
}

pub(super) fn label(model: &Model, x: &[f64]) -> MlResult<String> {
    Ok(model.predict_label(x))
}

pub(super) fn proba(model: &Model, x: &[f64]) -> MlResult<Vec<f64>> {
    model.predict_proba(x)
}

/// The declared COSTs are measured, in units of a float8 addition (about
/// 5 ns a row here): predicting one row takes about 110 ns from an array
/// and 180 ns from a row (`make bench`), so the planner evaluates predict
/// after cheaper filters.
///
/// The live model's prediction: the label itself for numeric labels, 0/1
/// for booleans, the class index for text labels, the estimate for
/// regression.
///
/// The row forms take `record`, not `anyelement`: with `anyelement`,
/// `predict('p', ARRAY[5.1, 3.5])` (a numeric[]) would match both forms and
/// Postgres would call it ambiguous.
#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict(project text, features float8[]) RETURNS float8
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_array(fcinfo: FunctionCallInfo) -> f64 {
    predict(fcinfo, Form::ProjectArray, value)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict(project text, "row" record) RETURNS float8
    STRICT STABLE PARALLEL SAFE COST 40 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_row(fcinfo: FunctionCallInfo) -> f64 {
    predict(fcinfo, Form::ProjectRow, value)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict(model_id bigint, features float8[]) RETURNS float8
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_pinned(fcinfo: FunctionCallInfo) -> f64 {
    predict(fcinfo, Form::PinnedArray, value)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_label(project text, features float8[]) RETURNS text
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_label_array(fcinfo: FunctionCallInfo) -> String {
    predict(fcinfo, Form::ProjectArray, label)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_label(project text, "row" record) RETURNS text
    STRICT STABLE PARALLEL SAFE COST 40 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_label_row(fcinfo: FunctionCallInfo) -> String {
    predict(fcinfo, Form::ProjectRow, label)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_label(model_id bigint, features float8[]) RETURNS text
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_label_pinned(fcinfo: FunctionCallInfo) -> String {
    predict(fcinfo, Form::PinnedArray, label)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_proba(project text, features float8[]) RETURNS float8[]
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_proba_array(fcinfo: FunctionCallInfo) -> Vec<f64> {
    predict(fcinfo, Form::ProjectArray, proba)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_proba(project text, "row" record) RETURNS float8[]
    STRICT STABLE PARALLEL SAFE COST 40 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_proba_row(fcinfo: FunctionCallInfo) -> Vec<f64> {
    predict(fcinfo, Form::ProjectRow, proba)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_proba(model_id bigint, features float8[]) RETURNS float8[]
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_proba_pinned(fcinfo: FunctionCallInfo) -> Vec<f64> {
    predict(fcinfo, Form::PinnedArray, proba)
}

/// The row form with a routing key: during a canary, the challenger
/// answers for its share of keys; the same key always gets the same model
/// (`ambient.route` says which).
#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict(project text, "row" record, key text) RETURNS float8
    STRICT STABLE PARALLEL SAFE COST 40 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_row_keyed(fcinfo: FunctionCallInfo) -> f64 {
    predict_keyed(fcinfo, value)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.predict_label(project text, "row" record, key text) RETURNS text
    STRICT STABLE PARALLEL SAFE COST 40 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn predict_label_row_keyed(fcinfo: FunctionCallInfo) -> String {
    predict_keyed(fcinfo, label)
}

/// The id of the model that answers for `key` in `project`: the live
/// model's, or a canary challenger's for the keys it serves. Record it
/// beside a keyed prediction to know which model made it.
#[pg_extern(sql = r#"
CREATE FUNCTION ambient.route(project text, key text) RETURNS bigint
    STRICT STABLE PARALLEL SAFE COST 20 LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn route(fcinfo: FunctionCallInfo) -> i64 {
    let site = call_site(fcinfo);
    // SAFETY: fcinfo is the live call of a STRICT function taking (text, text).
    unsafe {
        let project = pg_getarg::<&str>(fcinfo, 0).unwrap_or_default();
        let key = pg_getarg::<&str>(fcinfo, 1).unwrap_or_default();
        site.routed(project, key).map(|(_, _, id)| id)
    }
    .or_raise()
}
