//! `ambient.explain` and `ambient.feature_importance`: why a model
//! predicts what it does (see `ml::explain`).

use pgrx::pg_sys::FunctionCallInfo;
use pgrx::prelude::*;

use super::model_cache;
use super::predict::{read_input, CallSite, Form};
use crate::catalog::{models, Caller};
use crate::error::{AmbientResult, OrRaise};

type Contributions = TableIterator<
    'static,
    (
        name!(feature, String),
        name!(contribution, f64),
        name!(explains, String),
    ),
>;

/// One prediction split into its bias and a contribution per input column;
/// they add up to the number `explains` names (see docs/reference.md).
/// These are set-returning, so the call site is not kept in `fn_extra`
/// (the set-returning machinery keeps its own state there).
fn explain(fcinfo: FunctionCallInfo, form: Form) -> Contributions {
    let mut site = CallSite::default();
    // SAFETY: fcinfo is the live call of a function declared with `form`'s
    // signature.
    let outcome = unsafe { read_input(&mut site, fcinfo, form) }.and_then(|model| {
        let e = model.explain(&site.features)?;
        let rows: Vec<(String, f64, String)> = std::iter::once(("(bias)".to_string(), e.bias))
            .chain(
                model
                    .input_names()
                    .into_iter()
                    .map(str::to_string)
                    .zip(e.contributions),
            )
            .map(|(feature, c)| (feature, c, e.explains.clone()))
            .collect();
        Ok(rows)
    });
    TableIterator::new(outcome.or_raise())
}

// The return types below are spelled out, not `Contributions`: pgrx's schema
// generator does not resolve a type alias in a #[pg_extern] signature.
#[pg_extern(sql = r#"
CREATE FUNCTION ambient.explain(project text, "row" record)
    RETURNS TABLE (feature text, contribution float8, explains text)
    STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn explain_row(
    fcinfo: FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(feature, String),
        name!(contribution, f64),
        name!(explains, String),
    ),
> {
    explain(fcinfo, Form::ProjectRow)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.explain(project text, features float8[])
    RETURNS TABLE (feature text, contribution float8, explains text)
    STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn explain_array(
    fcinfo: FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(feature, String),
        name!(contribution, f64),
        name!(explains, String),
    ),
> {
    explain(fcinfo, Form::ProjectArray)
}

#[pg_extern(sql = r#"
CREATE FUNCTION ambient.explain(model_id bigint, features float8[])
    RETURNS TABLE (feature text, contribution float8, explains text)
    STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn explain_pinned(
    fcinfo: FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(feature, String),
        name!(contribution, f64),
        name!(explains, String),
    ),
> {
    explain(fcinfo, Form::PinnedArray)
}

type Importances = TableIterator<
    'static,
    (
        name!(feature, String),
        name!(method, String),
        name!(importance, f64),
    ),
>;

/// The live model's importances: its own (impurity, gain or coefficients,
/// per feature it sees) and permutation importance (per input column).
// PARALLEL RESTRICTED: the permutation importances are read through SPI's
// read-write path, which a parallel worker cannot take.
#[pg_extern(stable, parallel_restricted, name = "feature_importance")]
fn feature_importance_live(
    project: &str,
) -> TableIterator<
    'static,
    (
        name!(feature, String),
        name!(method, String),
        name!(importance, f64),
    ),
> {
    let caller = Caller::current();
    importances(
        model_cache::live_model(project, &caller).map(|(id, _)| id),
        &caller,
    )
    .or_raise()
}

#[pg_extern(stable, parallel_restricted, name = "feature_importance")]
fn feature_importance_pinned(
    model_id: i64,
) -> TableIterator<
    'static,
    (
        name!(feature, String),
        name!(method, String),
        name!(importance, f64),
    ),
> {
    let caller = Caller::current();
    importances(Ok(model_id), &caller).or_raise()
}

fn importances(model_id: AmbientResult<i64>, caller: &Caller) -> AmbientResult<Importances> {
    let model_id = model_id?;
    // Checks the caller's right to the model, and decodes it.
    let model = model_cache::pinned_model(model_id, caller)?;
    let mut rows = Vec::new();
    if let Some((method, values)) = model.native_importances() {
        rows.extend(
            model
                .feature_names
                .iter()
                .zip(values)
                .map(|(f, v)| (f.clone(), method.to_string(), v)),
        );
    }
    if let Some(pgrx::JsonB(serde_json::Value::Object(permutation))) =
        models::permutation_importance_of(model_id)?
    {
        rows.extend(model.input_names().into_iter().filter_map(|name| {
            permutation
                .get(name)
                .and_then(serde_json::Value::as_f64)
                .map(|v| (name.to_string(), "permutation".to_string(), v))
        }));
    }
    Ok(TableIterator::new(rows))
}
