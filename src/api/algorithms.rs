//! `ambient.algorithms()`: every algorithm, the tasks it does and each
//! hyper-parameter with its type, range and default, straight from the
//! specs `train` validates against, so the listing cannot drift.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::ml::algorithms::{self, ALGORITHMS};
use crate::ml::hyperparams::ParamKind;

// STABLE, not IMMUTABLE: a new library version may list more.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_safe)]
fn algorithms() -> TableIterator<
    'static,
    (
        name!(algorithm, String),
        name!(task, String),
        name!(is_default, bool),
        name!(parameter, Option<String>),
        name!(type, Option<String>),
        name!(range, Option<String>),
        name!(default, Option<JsonB>),
        name!(description, String),
    ),
> {
    let mut rows = Vec::new();
    for spec in ALGORITHMS {
        for task_params in spec.tasks {
            let task = task_params.task;
            let is_default = algorithms::default_for(task) == spec.name;
            let row = |parameter, kind, range, default| {
                (
                    spec.name.to_string(),
                    task.as_str().to_string(),
                    is_default,
                    parameter,
                    kind,
                    range,
                    default,
                    spec.description.to_string(),
                )
            };
            if task_params.params.is_empty() {
                rows.push(row(None, None, None, None));
            }
            for param in task_params.params {
                let (kind, range) = describe(param.kind);
                let default = serde_json::from_str(param.default).ok().map(JsonB);
                rows.push(row(
                    Some(param.name.to_string()),
                    Some(kind.to_string()),
                    range,
                    default,
                ));
            }
        }
    }
    TableIterator::new(rows)
}

fn describe(kind: ParamKind) -> (&'static str, Option<String>) {
    match kind {
        ParamKind::Integer { min, max, nullable } => (
            "integer",
            Some(format!(
                "[{min}, {max}]{}",
                if nullable { " or null" } else { "" }
            )),
        ),
        // The smallest positive float stands for "above zero".
        ParamKind::Float { min, max, nullable } => {
            let range = if min == f64::MIN_POSITIVE {
                format!("(0, {}]", number(max))
            } else {
                format!("[{}, {}]", number(min), number(max))
            };
            let or_null = if nullable { " or null" } else { "" };
            ("float", Some(format!("{range}{or_null}")))
        }
        ParamKind::Choice(choices) => ("text", Some(choices.join(" | "))),
        ParamKind::Boolean => ("boolean", None),
    }
}

fn number(v: f64) -> String {
    if v == 0.0 || (1e-4..1e7).contains(&v.abs()) {
        v.to_string()
    } else {
        format!("{v:e}")
    }
}
