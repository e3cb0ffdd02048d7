//! Hyper-parameters: each algorithm declares the keys it takes, and user JSON
//! is checked against that list before anything is trained.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{MlError, MlResult};

#[derive(Debug, Clone, Copy)]
pub enum ParamKind {
    /// An integer in `min..=max`; `null` allowed when `nullable`.
    Integer {
        min: i64,
        max: i64,
        nullable: bool,
    },
    /// A finite number in `min..=max`; `null` allowed when `nullable`.
    Float {
        min: f64,
        max: f64,
        nullable: bool,
    },
    Choice(&'static [&'static str]),
    Boolean,
}

#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The default, as JSON text.
    pub default: &'static str,
}

/// Validated hyper-parameters with every default filled in, so a model row
/// records exactly what it was trained with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hyperparams(BTreeMap<String, Value>);

impl Hyperparams {
    pub fn validate(algorithm: &str, specs: &[ParamSpec], given: &Value) -> MlResult<Self> {
        let empty = Map::new();
        let given = match given {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => {
                return Err(MlError::wrong_type(format!(
                    "hyperparams must be a JSON object, got {}",
                    json_type(other)
                )))
            }
        };
        let valid = || specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
        if let Some(unknown) = given
            .keys()
            .find(|k| !specs.iter().any(|s| s.name == k.as_str()))
        {
            let known = valid();
            return Err(MlError::invalid(format!(
                "unknown hyperparameter \"{unknown}\" for algorithm {algorithm}"
            ))
            .with_hint(if known.is_empty() {
                format!("{algorithm} takes no hyperparameters")
            } else {
                format!("valid hyperparameters: {known}")
            }));
        }
        let mut values = BTreeMap::new();
        for spec in specs {
            let value = match given.get(spec.name) {
                Some(v) => check(algorithm, spec, v)?,
                None => serde_json::from_str(spec.default).unwrap_or(Value::Null),
            };
            values.insert(spec.name.to_string(), value);
        }
        Ok(Hyperparams(values))
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.0.clone().into_iter().collect())
    }

    pub fn integer(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(Value::as_i64)
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        self.0.get(name).and_then(Value::as_f64)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn boolean(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(Value::as_bool)
    }
}

fn check(algorithm: &str, spec: &ParamSpec, value: &Value) -> MlResult<Value> {
    let wrong_type = |expected: &str| {
        MlError::wrong_type(format!(
            "hyperparameter \"{}\" of {algorithm} must be {expected}, got {}",
            spec.name,
            json_type(value)
        ))
    };
    let out_of_range = |range: String| {
        MlError::invalid(format!(
            "hyperparameter \"{}\" of {algorithm} must be {range}, got {value}",
            spec.name
        ))
    };
    match spec.kind {
        ParamKind::Integer { min, max, nullable } => {
            if value.is_null() && nullable {
                return Ok(Value::Null);
            }
            let n = value.as_i64().ok_or_else(|| wrong_type("an integer"))?;
            if n < min || n > max {
                return Err(out_of_range(format!("between {min} and {max}")));
            }
            Ok(Value::from(n))
        }
        ParamKind::Float { min, max, nullable } => {
            if value.is_null() && nullable {
                return Ok(Value::Null);
            }
            let x = value.as_f64().ok_or_else(|| wrong_type("a number"))?;
            if !(min..=max).contains(&x) {
                return Err(out_of_range(format!("between {min} and {max}")));
            }
            Ok(Value::from(x))
        }
        ParamKind::Choice(choices) => {
            let s = value.as_str().ok_or_else(|| wrong_type("a string"))?;
            if !choices.contains(&s) {
                return Err(out_of_range(format!("one of {}", choices.join(", "))));
            }
            Ok(Value::from(s))
        }
        ParamKind::Boolean => value
            .as_bool()
            .map(Value::from)
            .ok_or_else(|| wrong_type("a boolean")),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::MlErrorKind;
    use serde_json::json;

    const SPECS: &[ParamSpec] = &[
        ParamSpec {
            name: "max_depth",
            kind: ParamKind::Integer {
                min: 1,
                max: 100,
                nullable: true,
            },
            default: "null",
        },
        ParamSpec {
            name: "criterion",
            kind: ParamKind::Choice(&["gini", "entropy"]),
            default: "\"gini\"",
        },
    ];

    #[test]
    fn defaults_are_filled_in() {
        let p = Hyperparams::validate("t", SPECS, &json!({"max_depth": 3})).unwrap();
        assert_eq!(p.to_json(), json!({"max_depth": 3, "criterion": "gini"}));
    }

    #[test]
    fn unknown_key_lists_the_valid_ones() {
        let e = Hyperparams::validate("t", SPECS, &json!({"depth": 3})).unwrap_err();
        assert_eq!(e.kind, MlErrorKind::InvalidParameter);
        assert_eq!(
            e.hint.as_deref(),
            Some("valid hyperparameters: max_depth, criterion")
        );
    }

    #[test]
    fn wrong_type_and_range_are_told_apart() {
        let e = Hyperparams::validate("t", SPECS, &json!({"max_depth": "3"})).unwrap_err();
        assert_eq!(e.kind, MlErrorKind::WrongType);
        let e = Hyperparams::validate("t", SPECS, &json!({"max_depth": 0})).unwrap_err();
        assert_eq!(e.kind, MlErrorKind::InvalidParameter);
        let e = Hyperparams::validate("t", SPECS, &json!({"criterion": "mse"})).unwrap_err();
        assert_eq!(e.kind, MlErrorKind::InvalidParameter);
        let e = Hyperparams::validate("t", SPECS, &json!([1])).unwrap_err();
        assert_eq!(e.kind, MlErrorKind::WrongType);
    }
}
