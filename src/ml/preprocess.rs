//! Preprocessing that lives inside the model: imputation, scaling and
//! encoding per input column, fitted on the training rows only and applied
//! identically by every predict form.
//!
//! A column's options come from `preprocess => '{"col": {...}}'`, over
//! defaults that suit the algorithm (`ColumnOptions::default_for`):
//!
//! - numeric and boolean columns: `impute` `median` (booleans: `mode`),
//!   `scale` `standard` for algorithms that need it, else `none`;
//! - text and enum columns: `impute` `mode`, `encode` `one_hot` with at
//!   most `max_categories` (20) slots, the rarest categories sharing an
//!   "(other)" slot;
//! - dates and timestamps: expanded to year, month, day, day of week (0 is
//!   Sunday) and hour, in UTC; `impute` (on the timestamp) and `scale` (per
//!   part) as for numbers.
//!
//! At predict time an unseen category goes to the "(other)" slot when the
//! column has one, else to all zeros (one-hot), -1 (ordinal) or the overall
//! mean (target); a NULL is imputed, unless the column's `impute` is
//! `error`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use super::dataset::{ColumnKind, Dataset, Labels};
use super::{Interrupts, MlError, MlResult};

/// One input value as predict or training hands it over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Missing,
    /// A number, a boolean as 0/1, or a timestamp in epoch seconds.
    Number(f64),
    Text(&'a str),
}

/// The categories a one-hot column keeps at most, by default.
pub const DEFAULT_MAX_CATEGORIES: usize = 20;
/// The prior's weight in target encoding, in rows.
const TARGET_SMOOTHING: f64 = 10.0;
const TIME_PARTS: [&str; 5] = ["year", "month", "day", "day_of_week", "hour"];

#[derive(Debug, Clone, PartialEq)]
pub enum Impute {
    Mean,
    Median,
    Mode,
    Constant(Json),
    Error,
    /// `"none"`: a missing number stays missing (NaN) for an algorithm that
    /// handles it (hist_gbm's missing-value bin). Stored as a fill of NaN.
    Keep,
}

/// What an algorithm takes as input, which sets its preprocessing
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputStyle {
    /// Numbers as they are, NULLs imputed, text one-hot (trees, naive
    /// Bayes).
    Plain,
    /// Numbers standardised (linear models, kNN, SVM).
    Scaled,
    /// Missing numbers kept, text as categories (`ordinal`, up to
    /// `NATIVE_MAX_CATEGORIES`), which the algorithm splits on itself
    /// (hist_gbm).
    Native,
}

/// The categories a column keeps at most for an algorithm that takes
/// categories natively: one histogram bin each.
pub const NATIVE_MAX_CATEGORIES: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Standard,
    MinMax,
    Robust,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    OneHot,
    Ordinal,
    Target,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnOptions {
    pub impute: Impute,
    pub scale: Scale,
    pub encode: Encode,
    pub max_categories: usize,
}

impl ColumnOptions {
    /// The defaults for a column of `kind` for an algorithm taking
    /// `style`.
    pub fn default_for(kind: ColumnKind, style: InputStyle) -> Self {
        let native = style == InputStyle::Native;
        ColumnOptions {
            impute: match kind {
                ColumnKind::Categorical => Impute::Mode,
                _ if native => Impute::Keep,
                ColumnKind::Numeric | ColumnKind::Timestamp => Impute::Median,
                ColumnKind::Boolean => Impute::Mode,
            },
            scale: if style == InputStyle::Scaled {
                Scale::Standard
            } else {
                Scale::None
            },
            encode: if native {
                Encode::Ordinal
            } else {
                Encode::OneHot
            },
            max_categories: if native {
                NATIVE_MAX_CATEGORIES
            } else {
                DEFAULT_MAX_CATEGORIES
            },
        }
    }
}

const KEYS: [&str; 5] = ["impute", "scale", "encode", "max_categories", "fill_value"];

/// Checks the user's `preprocess` JSON against the columns and fills in the
/// defaults, one `ColumnOptions` per column.
pub fn parse_options(
    given: &Json,
    columns: &[(String, ColumnKind)],
    style: InputStyle,
) -> MlResult<Vec<ColumnOptions>> {
    let empty = Map::new();
    let given = match given {
        Json::Null => &empty,
        Json::Object(map) => map,
        _ => {
            return Err(MlError::wrong_type(
                "preprocess must be a JSON object of column name to options",
            )
            .with_hint(r#"e.g. '{"age": {"impute": "mean", "scale": "robust"}}'"#))
        }
    };
    if let Some(unknown) = given.keys().find(|k| !columns.iter().any(|(n, _)| n == *k)) {
        return Err(MlError::invalid(format!(
            "preprocess names \"{unknown}\", which is not a feature"
        ))
        .with_hint(format!(
            "features: {}",
            columns
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    columns
        .iter()
        .map(|(name, kind)| {
            let mut options = ColumnOptions::default_for(*kind, style);
            let Some(spec) = given.get(name) else {
                return Ok(options);
            };
            let spec = spec.as_object().ok_or_else(|| {
                MlError::wrong_type(format!(
                    "preprocess options of \"{name}\" must be a JSON object"
                ))
            })?;
            if let Some(key) = spec.keys().find(|k| !KEYS.contains(&k.as_str())) {
                return Err(MlError::invalid(format!(
                    "unknown preprocess key \"{key}\" for \"{name}\""
                ))
                .with_hint(format!("keys: {}", KEYS.join(", "))));
            }
            let text = |key: &str| -> MlResult<Option<&str>> {
                match spec.get(key) {
                    None => Ok(None),
                    Some(Json::String(s)) => Ok(Some(s.as_str())),
                    Some(_) => Err(MlError::wrong_type(format!(
                        "preprocess \"{key}\" of \"{name}\" must be a string"
                    ))),
                }
            };
            let categorical = *kind == ColumnKind::Categorical;
            let bad = |key: &str, value: &str, valid: &str| {
                MlError::invalid(format!(
                    "preprocess {key} \"{value}\" does not apply to \"{name}\" ({} column)",
                    kind_name(*kind)
                ))
                .with_hint(format!("{key} is one of: {valid}"))
            };
            if let Some(impute) = text("impute")? {
                options.impute = match (impute, categorical) {
                    ("mean", false) => Impute::Mean,
                    ("median", false) => Impute::Median,
                    ("mode", _) => Impute::Mode,
                    ("constant", _) => {
                        let fill = spec.get("fill_value").cloned().ok_or_else(|| {
                            MlError::invalid(format!(
                                "impute \"constant\" of \"{name}\" needs a fill_value"
                            ))
                        })?;
                        match (&fill, categorical) {
                            (Json::String(_), true) => {}
                            (Json::Number(n), false) if n.as_f64().is_some_and(f64::is_finite) => {}
                            _ => {
                                return Err(MlError::wrong_type(format!(
                                    "fill_value of \"{name}\" must be {}",
                                    if categorical { "a string" } else { "a number" }
                                )))
                            }
                        }
                        Impute::Constant(fill)
                    }
                    ("error", _) => Impute::Error,
                    ("none", false) if style == InputStyle::Native => Impute::Keep,
                    ("none", false) => {
                        return Err(MlError::invalid(format!(
                            "impute \"none\" of \"{name}\" keeps NULLs, which only hist_gbm takes"
                        ))
                        .with_hint("impute it (mean, median, mode, constant), or train hist_gbm"))
                    }
                    (other, true) => return Err(bad("impute", other, "mode, constant, error")),
                    (other, false) => {
                        return Err(bad("impute", other, "mean, median, mode, constant, error, none"))
                    }
                };
            }
            if spec.contains_key("fill_value") && !matches!(options.impute, Impute::Constant(_)) {
                return Err(MlError::invalid(format!(
                    "fill_value of \"{name}\" needs impute \"constant\""
                )));
            }
            let only_for = |key: &str, kinds: &str| {
                MlError::invalid(format!(
                    "preprocess \"{key}\" is for {kinds}, and \"{name}\" is {} column",
                    kind_name(*kind)
                ))
            };
            if let Some(scale) = text("scale")? {
                if categorical {
                    return Err(only_for("scale", "numbers and timestamps"));
                }
                options.scale = match scale {
                    "standard" => Scale::Standard,
                    "min_max" => Scale::MinMax,
                    "robust" => Scale::Robust,
                    "none" => Scale::None,
                    other => return Err(bad("scale", other, "standard, min_max, robust, none")),
                };
            }
            if let Some(encode) = text("encode")? {
                if !categorical {
                    return Err(only_for("encode", "text columns"));
                }
                options.encode = match encode {
                    "one_hot" => Encode::OneHot,
                    "ordinal" => Encode::Ordinal,
                    "target" => Encode::Target,
                    other => return Err(bad("encode", other, "one_hot, ordinal, target")),
                };
            }
            if let Some(cap) = spec.get("max_categories") {
                if !categorical {
                    return Err(only_for("max_categories", "text columns"));
                }
                options.max_categories = match cap.as_i64() {
                    Some(n @ 2..=10_000) => n as usize,
                    _ => {
                        return Err(MlError::invalid(format!(
                            "max_categories of \"{name}\" must be an integer from 2 to 10000, got {cap}"
                        )))
                    }
                };
            }
            Ok(options)
        })
        .collect()
}

/// The most features `options` can make of `data`'s columns, known before
/// anything is fitted, so memory can be checked first.
pub fn max_width(data: &Dataset, options: &[ColumnOptions]) -> usize {
    let classes = data.encoding().map_or(1, |e| e.classes.len());
    data.kinds
        .iter()
        .zip(&data.dictionaries)
        .zip(options)
        .map(|((kind, dictionary), o)| match (kind, o.encode) {
            (ColumnKind::Timestamp, _) => TIME_PARTS.len(),
            (ColumnKind::Categorical, Encode::OneHot) => o.max_categories.min(dictionary.len() + 1),
            (ColumnKind::Categorical, Encode::Target) if classes > 2 => classes,
            _ => 1,
        })
        .sum()
}

/// The default options for every column of `data`.
pub fn default_options(data: &Dataset, style: InputStyle) -> Vec<ColumnOptions> {
    data.kinds
        .iter()
        .map(|&kind| ColumnOptions::default_for(kind, style))
        .collect()
}

fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Numeric => "a numeric",
        ColumnKind::Boolean => "a boolean",
        ColumnKind::Categorical => "a text",
        ColumnKind::Timestamp => "a timestamp",
    }
}

/// `(x - shift) / scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    pub shift: f64,
    pub scale: f64,
}

impl Affine {
    const IDENTITY: Affine = Affine {
        shift: 0.0,
        scale: 1.0,
    };

    fn apply(self, x: f64) -> f64 {
        (x - self.shift) / self.scale
    }

    /// Fitted to `values` (none missing); a spread of 0 leaves the scale 1.
    fn fit(rule: Scale, values: &mut [f64]) -> Affine {
        if values.is_empty() || rule == Scale::None {
            return Affine::IDENTITY;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let quantile = |q: f64| {
            let pos = q * (values.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
        };
        let (shift, spread) = match rule {
            Scale::Standard => {
                let mean = values.iter().sum::<f64>() / n;
                let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                (mean, var.sqrt())
            }
            Scale::MinMax => (values[0], values[values.len() - 1] - values[0]),
            Scale::Robust => (quantile(0.5), quantile(0.75) - quantile(0.25)),
            Scale::None => (0.0, 1.0),
        };
        Affine {
            shift,
            scale: if spread > 0.0 && spread.is_finite() {
                spread
            } else {
                1.0
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Encoding {
    /// One slot per category, plus "(other)" when rarer ones were folded.
    OneHot {
        categories: Vec<String>,
        other: bool,
    },
    /// The category's position; folded and unseen ones are -1.
    Ordinal { categories: Vec<String> },
    /// The smoothed mean target per category, one value per output (the
    /// target; or each class's share), then the overall mean for folded and
    /// unseen ones.
    Target {
        categories: Vec<String>,
        outputs: usize,
        means: Vec<f64>,
    },
}

impl Encoding {
    fn categories(&self) -> &[String] {
        match self {
            Encoding::OneHot { categories, .. }
            | Encoding::Ordinal { categories }
            | Encoding::Target { categories, .. } => categories,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// `fill`: the value a missing one takes; `None` makes it an error,
    /// and NaN keeps it missing (impute "none").
    Number { fill: Option<f64>, affine: Affine },
    /// Imputed as epoch seconds, then expanded to `TIME_PARTS`.
    Timestamp {
        fill: Option<f64>,
        parts: Vec<Affine>,
    },
    Category {
        fill: Option<String>,
        encoding: Encoding,
        /// Category → position, rebuilt after decoding.
        #[serde(skip)]
        index: HashMap<String, usize>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    pub kind: ColumnKind,
    pub step: Step,
}

/// The fitted preprocessing of a model: its raw inputs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub inputs: Vec<Input>,
    /// Whether every input is a number passed through as it is, so a row
    /// of finite numbers is its own encoding (`encode_numbers`); worked out
    /// by `prepared`.
    #[serde(skip)]
    numbers_as_given: bool,
}

impl Preprocessor {
    /// Numeric inputs passed through unchanged, a missing value an error:
    /// how models from before preprocessing behave.
    pub fn identity(names: &[String]) -> Self {
        Preprocessor {
            numbers_as_given: true,
            inputs: names
                .iter()
                .map(|name| Input {
                    name: name.clone(),
                    kind: ColumnKind::Numeric,
                    step: Step::Number {
                        fill: None,
                        affine: Affine::IDENTITY,
                    },
                })
                .collect(),
        }
    }

    /// Fills the fields serde skips; call after decoding.
    pub fn prepared(mut self) -> Self {
        self.numbers_as_given = self.inputs.iter().all(
            |input| matches!(input.step, Step::Number { affine, .. } if affine == Affine::IDENTITY),
        );
        for input in &mut self.inputs {
            if let Step::Category {
                encoding, index, ..
            } = &mut input.step
            {
                *index = encoding
                    .categories()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), i))
                    .collect();
            }
        }
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| i.name.as_str())
    }

    /// The names of the features the estimator sees.
    pub fn feature_names(&self) -> Vec<String> {
        self.features().into_iter().map(|(_, name)| name).collect()
    }

    /// For each feature the estimator sees, the input column it comes from.
    pub fn feature_inputs(&self) -> Vec<usize> {
        self.features()
            .into_iter()
            .map(|(input, _)| input)
            .collect()
    }

    /// For each feature the estimator sees, whether it is a category's
    /// index (an `ordinal` text column, which hist_gbm splits on as a set of
    /// categories) or a number.
    pub fn feature_kinds(&self) -> Vec<ColumnKind> {
        self.features()
            .into_iter()
            .map(|(input, _)| match &self.inputs[input].step {
                Step::Category {
                    encoding: Encoding::Ordinal { .. },
                    ..
                } => ColumnKind::Categorical,
                _ => ColumnKind::Numeric,
            })
            .collect()
    }

    /// Every feature the estimator sees: its input column, and its name.
    fn features(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let name = &input.name;
            let mut push = |feature: String| out.push((i, feature));
            match &input.step {
                Step::Number { .. } => push(name.clone()),
                Step::Timestamp { .. } => TIME_PARTS
                    .iter()
                    .for_each(|part| push(format!("{name}.{part}"))),
                Step::Category { encoding, .. } => match encoding {
                    Encoding::OneHot { categories, other } => {
                        categories.iter().for_each(|c| push(format!("{name}={c}")));
                        if *other {
                            push(format!("{name}=(other)"));
                        }
                    }
                    Encoding::Ordinal { .. } => push(name.clone()),
                    Encoding::Target { outputs: 1, .. } => push(format!("{name}:target")),
                    Encoding::Target { outputs, .. } => {
                        (0..*outputs).for_each(|k| push(format!("{name}:target{k}")))
                    }
                },
            }
        }
        out
    }

    /// Checks, after decoding, what encoding relies on.
    pub fn validate(&self, n_features: usize) -> MlResult<()> {
        let bad = |what: &str| Err(MlError::corrupt(format!("preprocessing artifact: {what}")));
        for input in &self.inputs {
            match &input.step {
                Step::Timestamp { parts, .. } if parts.len() != TIME_PARTS.len() => {
                    return bad("a timestamp without its parts")
                }
                Step::Category {
                    encoding:
                        Encoding::Target {
                            categories,
                            outputs,
                            means,
                        },
                    ..
                } if means.len() != (categories.len() + 1) * outputs => {
                    return bad("target means do not match the categories")
                }
                _ => {}
            }
        }
        if self.feature_names().len() != n_features {
            return bad("it does not give the estimator's features");
        }
        Ok(())
    }

    /// Whether every input is a number passed through as it is.
    pub fn takes_numbers_as_given(&self) -> bool {
        self.numbers_as_given
    }

    /// Puts a row of numbers, in input order, into `out` (cleared first)
    /// as it is, when that is its encoding: every input a number passed
    /// through, every value finite (a NaN or NULL is imputed, an infinity
    /// refused, by `encode`). Returns whether it did; the predict path asks
    /// this first, per row, and falls back to `encode`.
    pub fn encode_numbers(&self, row: &[f64], out: &mut Vec<f64>) -> bool {
        if !self.numbers_as_given
            || row.len() != self.inputs.len()
            || !row.iter().all(|v| v.is_finite())
        {
            return false;
        }
        out.clear();
        out.extend_from_slice(row);
        true
    }

    /// Encodes one row of raw inputs, in input order, onto `out`.
    pub fn encode(&self, values: &[Value<'_>], out: &mut Vec<f64>) -> MlResult<()> {
        if values.len() != self.inputs.len() {
            return Err(MlError::invalid(format!(
                "the model takes {} features, got {}",
                self.inputs.len(),
                values.len()
            ))
            .with_hint(format!(
                "features, in order: {}",
                self.names().collect::<Vec<_>>().join(", ")
            )));
        }
        for (input, &value) in self.inputs.iter().zip(values) {
            input.encode(value, out)?;
        }
        Ok(())
    }

    /// Fits every column's step on the training `rows` of `data`, whose
    /// columns are matched by position with `options`.
    pub fn fit(
        data: &Dataset,
        rows: &[usize],
        options: &[ColumnOptions],
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Self> {
        let inputs = (0..data.width())
            .map(|j| {
                interrupts.check()?;
                fit_column(data, j, rows, &options[j])
            })
            .collect::<MlResult<Vec<_>>>()?;
        Ok(Preprocessor {
            inputs,
            numbers_as_given: false,
        }
        .prepared())
    }

    /// Encodes every row of `data` (whose columns are this preprocessor's
    /// inputs, in order) into a dataset for the estimator.
    pub fn transform(&self, data: &Dataset, interrupts: &Interrupts<'_>) -> MlResult<Dataset> {
        let names = self.feature_names();
        let mut records = Vec::with_capacity(data.n_rows() * names.len());
        let mut values = Vec::with_capacity(data.width());
        for i in 0..data.n_rows() {
            if i % CHECK_EVERY == 0 {
                interrupts.check()?;
            }
            values.clear();
            values.extend(raw_values(data, i));
            self.encode(&values, &mut records)?;
        }
        data.encoded(names, self.feature_kinds(), records)
    }

    /// `transform`, taking the rows: when each input becomes one feature
    /// (as for `InputStyle::Native`), each row is encoded where it lies, so
    /// the fit holds one copy of the rows, not two.
    pub fn transform_into(
        &self,
        mut data: Dataset,
        interrupts: &Interrupts<'_>,
    ) -> MlResult<Dataset> {
        let names = self.feature_names();
        let width = data.width();
        if names.len() != width {
            return self.transform(&data, interrupts);
        }
        let mut records = std::mem::take(&mut data.records);
        let mut values = Vec::with_capacity(width);
        let mut encoded = Vec::with_capacity(width);
        for (i, row) in records.chunks_exact_mut(width).enumerate() {
            if i % CHECK_EVERY == 0 {
                interrupts.check()?;
            }
            values.clear();
            values.extend(values_of(&data.kinds, &data.dictionaries, row));
            encoded.clear();
            self.encode(&values, &mut encoded)?;
            row.copy_from_slice(&encoded);
        }
        data.into_encoded(names, self.feature_kinds(), records)
    }

    /// What each input column becomes, for `ambient.models`.
    pub fn describe(&self) -> Json {
        Json::Array(
            self.inputs
                .iter()
                .map(|input| {
                    let mut out = Map::new();
                    out.insert("column".into(), json!(input.name));
                    out.insert("kind".into(), json!(input.kind));
                    let fill = |f: &Option<f64>| match f {
                        None => json!("error"),
                        Some(v) if v.is_nan() => json!("none"),
                        Some(v) => json!(v),
                    };
                    let affine = |a: &Affine| {
                        if *a == Affine::IDENTITY {
                            Json::Null
                        } else {
                            json!({"shift": a.shift, "scale": a.scale})
                        }
                    };
                    match &input.step {
                        Step::Number { fill: f, affine: a } => {
                            out.insert("impute".into(), fill(f));
                            out.insert("scale".into(), affine(a));
                        }
                        Step::Timestamp { fill: f, parts } => {
                            out.insert("impute".into(), fill(f));
                            out.insert("parts".into(), json!(TIME_PARTS));
                            out.insert(
                                "scale".into(),
                                Json::Array(parts.iter().map(affine).collect()),
                            );
                        }
                        Step::Category { fill, encoding, .. } => {
                            out.insert(
                                "impute".into(),
                                fill.as_ref().map_or(json!("error"), |v| json!(v)),
                            );
                            out.insert(
                                "encode".into(),
                                match encoding {
                                    Encoding::OneHot { categories, other } => {
                                        json!({"one_hot": categories, "other": other})
                                    }
                                    Encoding::Ordinal { categories } => {
                                        json!({"ordinal": categories})
                                    }
                                    Encoding::Target { categories, .. } => {
                                        json!({"target": categories})
                                    }
                                },
                            );
                        }
                    }
                    Json::Object(out)
                })
                .collect(),
        )
    }
}

/// Rows encoded between two interrupt checks.
const CHECK_EVERY: usize = 65_536;

/// Row `i` of a raw dataset as input values.
pub fn raw_values(data: &Dataset, i: usize) -> impl Iterator<Item = Value<'_>> {
    values_of(&data.kinds, &data.dictionaries, data.row(i))
}

/// A raw row as input values; a text borrows from `dictionaries`, not from
/// the row, so the row can be overwritten while they live.
fn values_of<'d, 'r>(
    kinds: &'d [ColumnKind],
    dictionaries: &'d [Vec<String>],
    row: &'r [f64],
) -> impl Iterator<Item = Value<'d>> + use<'d, 'r> {
    row.iter()
        .zip(kinds)
        .zip(dictionaries)
        .map(|((&v, kind), dictionary)| {
            if v.is_nan() {
                Value::Missing
            } else if *kind == ColumnKind::Categorical {
                dictionary
                    .get(v as usize)
                    .map_or(Value::Missing, |text| Value::Text(text))
            } else {
                Value::Number(v)
            }
        })
}

impl Input {
    fn encode(&self, value: Value<'_>, out: &mut Vec<f64>) -> MlResult<()> {
        let missing = || {
            MlError::null_value(format!("feature \"{}\" is NULL", self.name)).with_hint(
                "its preprocessing says impute \"error\"; fill it in, or train with another impute",
            )
        };
        let wrong = |expected: &str| {
            MlError::wrong_type(format!("feature \"{}\" must be {expected}", self.name))
        };
        let number = |fill: &Option<f64>| -> MlResult<f64> {
            match value {
                Value::Number(x) if x.is_nan() => fill.ok_or_else(missing),
                Value::Number(x) if x.is_infinite() => Err(MlError::invalid(format!(
                    "feature \"{}\" is {x}",
                    self.name
                ))),
                Value::Number(x) => Ok(x),
                Value::Missing => fill.ok_or_else(missing),
                Value::Text(_) => Err(wrong("a number")),
            }
        };
        match &self.step {
            Step::Number { fill, affine } => out.push(affine.apply(number(fill)?)),
            Step::Timestamp { fill, parts } => {
                let epoch = number(fill)?;
                for (part, affine) in time_parts(epoch).into_iter().zip(parts) {
                    out.push(affine.apply(part));
                }
            }
            Step::Category {
                fill,
                encoding,
                index,
            } => {
                let text = match value {
                    Value::Text(t) => t,
                    Value::Missing => fill.as_deref().ok_or_else(missing)?,
                    Value::Number(x) if x.is_nan() => fill.as_deref().ok_or_else(missing)?,
                    Value::Number(_) => return Err(wrong("text")),
                };
                let position = index.get(text).copied();
                match encoding {
                    Encoding::OneHot { categories, other } => {
                        let start = out.len();
                        out.resize(start + categories.len() + usize::from(*other), 0.0);
                        match (position, other) {
                            (Some(p), _) => out[start + p] = 1.0,
                            (None, true) => out[start + categories.len()] = 1.0,
                            (None, false) => {}
                        }
                    }
                    Encoding::Ordinal { .. } => out.push(position.map_or(-1.0, |p| p as f64)),
                    Encoding::Target {
                        categories,
                        outputs,
                        means,
                    } => {
                        let row = position.unwrap_or(categories.len());
                        out.extend_from_slice(&means[row * outputs..(row + 1) * outputs]);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Year, month, day, day of week (0 = Sunday) and hour of a UTC time.
fn time_parts(epoch_seconds: f64) -> [f64; 5] {
    if epoch_seconds.is_nan() {
        // Kept missing (impute "none"): every part is missing.
        return [f64::NAN; 5];
    }
    let days = (epoch_seconds / 86_400.0).floor();
    let hour = ((epoch_seconds - days * 86_400.0) / 3_600.0).floor();
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday.
    let weekday = (days as i64 + 4).rem_euclid(7);
    [year as f64, month as f64, day as f64, weekday as f64, hour]
}

/// The training rows' values of column `j`, missing ones left out.
fn present(data: &Dataset, j: usize, rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .map(|&i| data.row(i)[j])
        .filter(|v| !v.is_nan())
        .collect()
}

fn no_values(data: &Dataset, j: usize) -> MlError {
    MlError::insufficient(format!(
        "feature \"{}\" has no values in the training rows",
        data.feature_names[j]
    ))
    .with_hint("leave it out, or impute it with a constant")
}

fn fill_number(impute: &Impute, values: &[f64], data: &Dataset, j: usize) -> MlResult<Option<f64>> {
    let needs_values = !matches!(impute, Impute::Constant(_) | Impute::Error | Impute::Keep);
    if !needs_values {
        return Ok(match impute {
            Impute::Constant(fill) => fill.as_f64(),
            Impute::Keep => Some(f64::NAN),
            _ => None,
        });
    }
    if values.is_empty() {
        return Err(no_values(data, j));
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(match impute {
        Impute::Mean => Some(sorted.iter().sum::<f64>() / sorted.len() as f64),
        Impute::Median => {
            let n = sorted.len();
            Some(if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            })
        }
        // The most frequent value, the smallest on ties.
        Impute::Mode => {
            let mut best = (sorted[0], 0usize);
            let mut run = (sorted[0], 0usize);
            for &v in &sorted {
                run = if v == run.0 { (v, run.1 + 1) } else { (v, 1) };
                if run.1 > best.1 {
                    best = run;
                }
            }
            Some(best.0)
        }
        Impute::Constant(_) | Impute::Error | Impute::Keep => unreachable!("returned above"),
    })
}

fn fit_column(
    data: &Dataset,
    j: usize,
    rows: &[usize],
    options: &ColumnOptions,
) -> MlResult<Input> {
    let name = data.feature_names[j].clone();
    let kind = data.kinds[j];
    let step = match kind {
        ColumnKind::Numeric | ColumnKind::Boolean => {
            let values = present(data, j, rows);
            let fill = fill_number(&options.impute, &values, data, j)?;
            let affine = if options.scale == Scale::None {
                Affine::IDENTITY
            } else {
                let mut imputed: Vec<f64> = rows
                    .iter()
                    .filter_map(|&i| Some(data.row(i)[j]).filter(|v| !v.is_nan()).or(fill))
                    .filter(|v| !v.is_nan())
                    .collect();
                Affine::fit(options.scale, &mut imputed)
            };
            Step::Number { fill, affine }
        }
        ColumnKind::Timestamp => {
            let values = present(data, j, rows);
            let fill = fill_number(&options.impute, &values, data, j)?;
            let expanded: Vec<[f64; 5]> = rows
                .iter()
                .filter_map(|&i| Some(data.row(i)[j]).filter(|v| !v.is_nan()).or(fill))
                .map(time_parts)
                .collect();
            let parts = (0..TIME_PARTS.len())
                .map(|p| {
                    let mut column: Vec<f64> = expanded
                        .iter()
                        .map(|e| e[p])
                        .filter(|v| !v.is_nan())
                        .collect();
                    Affine::fit(options.scale, &mut column)
                })
                .collect();
            Step::Timestamp { fill, parts }
        }
        ColumnKind::Categorical => fit_category(data, j, rows, options)?,
    };
    Ok(Input { name, kind, step })
}

fn fit_category(
    data: &Dataset,
    j: usize,
    rows: &[usize],
    options: &ColumnOptions,
) -> MlResult<Step> {
    let dictionary = &data.dictionaries[j];
    let mut counts = vec![0usize; dictionary.len()];
    let mut missing = 0usize;
    for &i in rows {
        match data.text(j, data.row(i)[j]) {
            Some(_) => counts[data.row(i)[j] as usize] += 1,
            None => missing += 1,
        }
    }
    let fill = match &options.impute {
        Impute::Mode => {
            // The most frequent category, the first in text order on ties.
            let best = counts
                .iter()
                .enumerate()
                .fold(None, |best: Option<(usize, usize)>, (k, &c)| match best {
                    Some((_, b)) if b >= c => best,
                    _ if c > 0 => Some((k, c)),
                    _ => best,
                })
                .ok_or_else(|| no_values(data, j))?;
            Some(dictionary[best.0].clone())
        }
        Impute::Constant(Json::String(text)) => Some(text.clone()),
        _ => None,
    };
    // Missing rows count for the category they are imputed with.
    let mut seen: Vec<(String, usize)> = dictionary
        .iter()
        .cloned()
        .zip(counts)
        .filter(|(_, c)| *c > 0)
        .collect();
    if let Some(fill) = &fill {
        match seen.iter_mut().find(|(c, _)| c == fill) {
            Some(entry) => entry.1 += missing,
            None if missing > 0 || matches!(options.impute, Impute::Constant(_)) => {
                seen.push((fill.clone(), missing))
            }
            None => {}
        }
    }
    if seen.is_empty() {
        return Err(no_values(data, j));
    }
    // Beyond the cap, the most frequent keep their slots (ties in text
    // order) and the rest share "(other)".
    let other = seen.len() > options.max_categories;
    if other {
        seen.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        seen.truncate(options.max_categories - 1);
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let categories: Vec<String> = seen.into_iter().map(|(c, _)| c).collect();
    let encoding = match options.encode {
        Encoding_::OneHot => Encoding::OneHot { categories, other },
        Encoding_::Ordinal => Encoding::Ordinal { categories },
        Encoding_::Target => target_means(data, j, rows, categories, fill.as_deref()),
    };
    Ok(Step::Category {
        fill,
        encoding,
        index: HashMap::new(),
    })
}

use Encode as Encoding_;

/// Smoothed per-category means of the target (regression), of the second
/// class (binary), or of each class; the last row is the overall mean.
fn target_means(
    data: &Dataset,
    j: usize,
    rows: &[usize],
    categories: Vec<String>,
    fill: Option<&str>,
) -> Encoding {
    let outputs = match &data.labels {
        Labels::Classes { encoding, .. } if encoding.classes.len() > 2 => encoding.classes.len(),
        _ => 1,
    };
    let target = |i: usize, o: usize| -> f64 {
        match &data.labels {
            Labels::Values(values) => values[i],
            Labels::Classes { index, .. } if outputs == 1 => f64::from(u8::from(index[i] == 1)),
            Labels::Classes { index, .. } => f64::from(u8::from(index[i] == o)),
        }
    };
    let position: HashMap<&str, usize> = categories
        .iter()
        .enumerate()
        .map(|(k, c)| (c.as_str(), k))
        .collect();
    let k = categories.len();
    let mut sums = vec![0.0; (k + 1) * outputs];
    let mut counts = vec![0.0; k + 1];
    for &i in rows {
        let text = data.text(j, data.row(i)[j]).or(fill);
        let row = text.and_then(|t| position.get(t).copied()).unwrap_or(k);
        counts[row] += 1.0;
        for o in 0..outputs {
            sums[row * outputs + o] += target(i, o);
        }
    }
    let n = rows.len().max(1) as f64;
    let prior: Vec<f64> = (0..outputs)
        .map(|o| (0..=k).map(|r| sums[r * outputs + o]).sum::<f64>() / n)
        .collect();
    let mut means = Vec::with_capacity((k + 1) * outputs);
    for row in 0..k {
        for o in 0..outputs {
            means.push(
                (sums[row * outputs + o] + TARGET_SMOOTHING * prior[o])
                    / (counts[row] + TARGET_SMOOTHING),
            );
        }
    }
    means.extend_from_slice(&prior);
    Encoding::Target {
        categories,
        outputs,
        means,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::dataset::{RawColumn, RawLabels};

    fn data() -> Dataset {
        // colour: red ×4, blue ×2, green ×1, NULL ×1; age with a NULL.
        let colours = ["red", "blue", "green"];
        let codes = [0.0, 0.0, 1.0, 0.0, 2.0, 1.0, f64::NAN, 0.0];
        let ages = [30.0, 40.0, f64::NAN, 50.0, 20.0, 60.0, 35.0, 45.0];
        let mut records = Vec::new();
        for i in 0..8 {
            records.extend([codes[i], ages[i], 86_400.0 * 365.0 + 3_600.0 * i as f64]);
        }
        Dataset::new_interruptible(
            vec![
                RawColumn {
                    name: "colour".into(),
                    kind: ColumnKind::Categorical,
                    dictionary: colours.iter().map(|s| s.to_string()).collect(),
                },
                RawColumn {
                    name: "age".into(),
                    kind: ColumnKind::Numeric,
                    dictionary: Vec::new(),
                },
                RawColumn {
                    name: "seen".into(),
                    kind: ColumnKind::Timestamp,
                    dictionary: Vec::new(),
                },
            ],
            records,
            RawLabels::Values((0..8).map(f64::from).collect()),
            &Interrupts::none(),
        )
        .unwrap()
    }

    fn fitted(spec: Json, style: InputStyle) -> Preprocessor {
        let d = data();
        let columns: Vec<(String, ColumnKind)> = d
            .feature_names
            .iter()
            .cloned()
            .zip(d.kinds.iter().copied())
            .collect();
        let options = parse_options(&spec, &columns, style).unwrap();
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        Preprocessor::fit(&d, &rows, &options, &Interrupts::none()).unwrap()
    }

    #[test]
    fn encoding_in_place_gives_the_copy_s_bytes() {
        let bits = |d: &Dataset| d.records.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        // A timestamp becomes several features, so `data()` takes the copy;
        // without it, each input is one feature for hist_gbm's style, and
        // the rows are encoded where they lie.
        let full = data();
        let narrow = Dataset::new_interruptible(
            vec![
                RawColumn {
                    name: "colour".into(),
                    kind: ColumnKind::Categorical,
                    dictionary: full.dictionaries[0].clone(),
                },
                RawColumn {
                    name: "age".into(),
                    kind: ColumnKind::Numeric,
                    dictionary: Vec::new(),
                },
            ],
            (0..full.n_rows())
                .flat_map(|i| full.row(i)[..2].to_vec())
                .collect(),
            RawLabels::Values((0..8).map(f64::from).collect()),
            &Interrupts::none(),
        )
        .unwrap();
        let rows: Vec<usize> = (0..5).collect();
        for d in [full, narrow] {
            for style in [InputStyle::Plain, InputStyle::Scaled, InputStyle::Native] {
                let p =
                    Preprocessor::fit(&d, &rows, &default_options(&d, style), &Interrupts::none())
                        .unwrap();
                let copied = p.transform(&d, &Interrupts::none()).unwrap();
                let in_place = p.transform_into(d.clone(), &Interrupts::none()).unwrap();
                assert_eq!(
                    bits(&copied),
                    bits(&in_place),
                    "{style:?}, {} inputs",
                    d.width()
                );
                assert_eq!(copied.feature_names, in_place.feature_names);
                assert_eq!(copied.kinds, in_place.kinds);
                assert_eq!(copied.labels, in_place.labels);
            }
        }
    }

    fn encode(p: &Preprocessor, values: &[Value<'_>]) -> MlResult<Vec<f64>> {
        let mut out = Vec::new();
        p.encode(values, &mut out)?;
        Ok(out)
    }

    #[test]
    fn defaults_impute_median_and_mode_and_one_hot_text() {
        let p = fitted(Json::Null, InputStyle::Plain);
        assert_eq!(
            p.feature_names(),
            vec![
                "colour=blue",
                "colour=green",
                "colour=red",
                "age",
                "seen.year",
                "seen.month",
                "seen.day",
                "seen.day_of_week",
                "seen.hour"
            ]
        );
        // NULL colour is the mode (red); NULL age the median of seven (40).
        let row = encode(&p, &[Value::Missing, Value::Missing, Value::Number(0.0)]).unwrap();
        assert_eq!(row[..4], [0.0, 0.0, 1.0, 40.0]);
        // 1970-01-01 00:00 UTC: a Thursday.
        assert_eq!(row[4..], [1970.0, 1.0, 1.0, 4.0, 0.0]);
        // An unseen category with no "(other)" slot is all zeros.
        let row = encode(
            &p,
            &[Value::Text("mauve"), Value::Number(1.0), Value::Number(0.0)],
        )
        .unwrap();
        assert_eq!(row[..3], [0.0, 0.0, 0.0]);
    }

    #[test]
    fn native_inputs_keep_missing_numbers_and_text_as_categories() {
        let p = fitted(Json::Null, InputStyle::Native);
        assert_eq!(
            p.feature_names()[..2],
            ["colour".to_string(), "age".to_string()]
        );
        assert_eq!(
            p.feature_kinds()[..2],
            [ColumnKind::Categorical, ColumnKind::Numeric]
        );
        // A NULL colour is the mode (red, index 2); a NULL age and a NULL
        // time stay missing, every part of the time too.
        let row = encode(&p, &[Value::Missing, Value::Missing, Value::Missing]).unwrap();
        assert_eq!(row[0], 2.0);
        assert!(row[1..].iter().all(|v| v.is_nan()), "{row:?}");
        // An unseen category is -1, which hist_gbm treats as missing.
        let row = encode(
            &p,
            &[Value::Text("mauve"), Value::Number(1.0), Value::Number(0.0)],
        )
        .unwrap();
        assert_eq!(row[..2], [-1.0, 1.0]);
        assert_eq!(p.describe()[1]["impute"], json!("none"));
        // Other algorithms cannot take a NULL: "none" is refused for them,
        // and for text columns.
        let columns = vec![
            ("age".to_string(), ColumnKind::Numeric),
            ("colour".to_string(), ColumnKind::Categorical),
        ];
        let none = json!({"age": {"impute": "none"}});
        assert!(parse_options(&none, &columns, InputStyle::Native).is_ok());
        let err = parse_options(&none, &columns, InputStyle::Plain).unwrap_err();
        assert!(
            err.message.contains("only hist_gbm takes"),
            "{}",
            err.message
        );
        let text = json!({"colour": {"impute": "none"}});
        assert!(parse_options(&text, &columns, InputStyle::Native).is_err());
    }

    #[test]
    fn a_row_of_finite_numbers_is_its_own_encoding_when_nothing_changes_it() {
        let names = ["a".to_string(), "b".to_string()];
        let plain = Preprocessor::identity(&names).prepared();
        assert!(plain.takes_numbers_as_given());
        let mut out = vec![9.0];
        assert!(plain.encode_numbers(&[1.5, -2.0], &mut out));
        assert_eq!(out, [1.5, -2.0]);
        // A NaN (imputed or refused), an infinity (refused) or a row of
        // the wrong width takes the general path, which says what is wrong.
        for row in [&[f64::NAN, 1.0][..], &[f64::INFINITY, 1.0], &[1.0]] {
            assert!(!plain.encode_numbers(row, &mut out), "{row:?}");
        }
        // Scaled numbers, text or times are never passed through.
        assert!(!fitted(Json::Null, InputStyle::Scaled).takes_numbers_as_given());
        assert!(!fitted(Json::Null, InputStyle::Plain).takes_numbers_as_given());
    }

    #[test]
    fn the_cap_folds_rare_categories_into_other() {
        let p = fitted(json!({"colour": {"max_categories": 2}}), InputStyle::Plain);
        assert_eq!(p.feature_names()[..2], ["colour=red", "colour=(other)"]);
        let row = encode(
            &p,
            &[Value::Text("mauve"), Value::Number(1.0), Value::Number(0.0)],
        )
        .unwrap();
        assert_eq!(row[..2], [0.0, 1.0]);
        let row = encode(
            &p,
            &[Value::Text("blue"), Value::Number(1.0), Value::Number(0.0)],
        )
        .unwrap();
        assert_eq!(row[..2], [0.0, 1.0]);
    }

    #[test]
    fn scaling_and_constant_and_error_imputation() {
        let p = fitted(
            json!({"age": {"impute": "constant", "fill_value": 0, "scale": "min_max"},
                   "colour": {"impute": "error", "encode": "ordinal"}}),
            InputStyle::Plain,
        );
        // ages with NULL as 0: min 0, max 60.
        let row = encode(
            &p,
            &[Value::Text("green"), Value::Missing, Value::Number(0.0)],
        )
        .unwrap();
        assert_eq!(row[..2], [1.0, 0.0]);
        let err = encode(
            &p,
            &[Value::Missing, Value::Number(1.0), Value::Number(0.0)],
        )
        .unwrap_err();
        assert_eq!(err.kind, crate::ml::MlErrorKind::NullValue);
        let err = encode(
            &p,
            &[Value::Number(3.0), Value::Number(1.0), Value::Number(0.0)],
        )
        .unwrap_err();
        assert_eq!(err.kind, crate::ml::MlErrorKind::WrongType);
        let standard = fitted(Json::Null, InputStyle::Scaled);
        let Step::Number { affine, .. } = standard.inputs[1].step else {
            panic!()
        };
        assert!((affine.shift - 40.0).abs() < 1e-12, "{affine:?}");
    }

    #[test]
    fn target_encoding_is_smoothed_toward_the_mean() {
        let p = fitted(json!({"colour": {"encode": "target"}}), InputStyle::Plain);
        let Step::Category {
            encoding: Encoding::Target { means, .. },
            ..
        } = &p.inputs[0].step
        else {
            panic!()
        };
        // Targets 0..7, mean 3.5; green is row 4 alone: (4 + 10·3.5) / 11.
        assert!((means[1] - 39.0 / 11.0).abs() < 1e-12, "{means:?}");
        assert_eq!(*means.last().unwrap(), 3.5);
    }

    #[test]
    fn bad_options_are_refused() {
        let columns = vec![
            ("colour".to_string(), ColumnKind::Categorical),
            ("age".to_string(), ColumnKind::Numeric),
        ];
        for (spec, wanted) in [
            (json!({"height": {}}), "not a feature"),
            (
                json!({"age": {"impute": "sideways"}}),
                "impute \"sideways\"",
            ),
            (json!({"colour": {"impute": "mean"}}), "impute \"mean\""),
            (
                json!({"age": {"encode": "one_hot"}}),
                "\"encode\" is for text columns",
            ),
            (json!({"colour": {"max_categories": 1}}), "from 2 to 10000"),
            (json!({"age": {"impute": "constant"}}), "needs a fill_value"),
            (json!({"age": {"colour": 1}}), "unknown preprocess key"),
            (
                json!({"age": {"fill_value": 1}}),
                "needs impute \"constant\"",
            ),
        ] {
            let err = parse_options(&spec, &columns, InputStyle::Plain).unwrap_err();
            assert!(err.message.contains(wanted), "{spec}: {}", err.message);
        }
    }

    #[test]
    fn time_parts_match_the_calendar() {
        // 2024-02-29 13:30 UTC, a Thursday; 1969-12-31 23:00, a Wednesday.
        assert_eq!(time_parts(1_709_213_400.0), [2024.0, 2.0, 29.0, 4.0, 13.0]);
        assert_eq!(time_parts(-3_600.0), [1969.0, 12.0, 31.0, 3.0, 23.0]);
    }
}
