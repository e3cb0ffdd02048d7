//! Reads training data with the caller's privileges: a role that cannot
//! SELECT a table cannot train on it. Relations reach SQL only as quoted
//! identifiers; a query must parse as exactly one SELECT before it is wrapped
//! as a subquery, and it is read through read-only SPI.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{PgList, PgRelation};

use crate::error::{AmbientError, AmbientResult};
use crate::ml::dataset::{Dataset, LabelKind, RawLabels};
use crate::ml::Task;

/// Rows fetched per round trip through the cursor.
const FETCH_BATCH: i64 = 10_000;

pub enum Source {
    Relation(PgRelation),
    Query(String),
}

impl Source {
    /// A query source, if its text is exactly one SELECT statement: text
    /// like `SELECT 1) AS a, (SELECT 2` would otherwise read differently
    /// once wrapped in parentheses.
    pub fn query(text: &str) -> AmbientResult<Source> {
        let text = text.trim().trim_end_matches(';').trim_end();
        if text.is_empty() {
            return Err(AmbientError::invalid("query is empty"));
        }
        let c_text = std::ffi::CString::new(text)
            .map_err(|_| AmbientError::invalid("query contains a NUL character"))?;
        // SAFETY: raw_parser only reads the string; a syntax error is raised
        // as a Postgres ERROR (42601), which pgrx passes on.
        let statements = unsafe {
            PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
                c_text.as_ptr(),
                pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
            ))
        };
        let is_select = |stmt: *mut pg_sys::RawStmt| unsafe {
            // SAFETY: raw_parser returns RawStmt nodes with a parse tree each.
            pgrx::is_a((*stmt).stmt, pg_sys::NodeTag::T_SelectStmt)
        };
        match (statements.len(), statements.get_ptr(0)) {
            (1, Some(stmt)) if is_select(stmt) => Ok(Source::Query(text.to_string())),
            (1, _) => Err(AmbientError::invalid("query must be a SELECT")
                .hint("to train on the rows a statement returns, put them in a table first")),
            (n, _) => Err(AmbientError::invalid(format!(
                "query must be one SELECT statement, got {n}"
            ))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Source::Relation(_) => "relation",
            Source::Query(_) => "query",
        }
    }

    /// The relation's qualified name, or the full query text, for the snapshot.
    pub fn describe(&self) -> String {
        match self {
            Source::Relation(rel) => qualified_name(rel),
            Source::Query(q) => q.clone(),
        }
    }

    fn sql_from(&self) -> String {
        match self {
            Source::Relation(rel) => qualified_name(rel),
            Source::Query(q) => format!("({q}\n) AS source"),
        }
    }

    fn primary_key(&self) -> AmbientResult<Vec<String>> {
        let Source::Relation(rel) = self else {
            return Ok(Vec::new());
        };
        Spi::connect(|client| {
            client
                .select(
                    "SELECT a.attname::text
                       FROM pg_catalog.pg_index i
                       JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                      WHERE i.indrelid = $1 AND i.indisprimary",
                    None,
                    &[rel.oid().into()],
                )?
                .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
                .collect()
        })
    }
}

fn qualified_name(rel: &PgRelation) -> String {
    format!(
        "{}.{}",
        quote_identifier(rel.namespace()),
        quote_identifier(rel.name())
    )
}

/// A column of the source, as the query's result describes it.
struct Column {
    name: String,
    type_oid: pg_sys::Oid,
}

fn columns(source: &Source) -> AmbientResult<Vec<Column>> {
    Spi::connect(|client| {
        let table = client.select(
            &format!("SELECT * FROM {} LIMIT 0", source.sql_from()),
            None,
            &[],
        )?;
        (1..=table.columns()?)
            .map(|i| {
                Ok(Column {
                    name: table.column_name(i)?,
                    type_oid: table.column_type_oid(i)?.value(),
                })
            })
            .collect()
    })
}

fn type_name(oid: pg_sys::Oid) -> AmbientResult<String> {
    Ok(Spi::connect(|client| {
        client
            .select(
                "SELECT pg_catalog.format_type($1, NULL)",
                None,
                &[oid.into()],
            )?
            .first()
            .get_one::<String>()
    })?
    .unwrap_or_else(|| format!("type {}", oid.to_u32())))
}

fn is_numeric(oid: pg_sys::Oid) -> bool {
    [
        pg_sys::INT2OID,
        pg_sys::INT4OID,
        pg_sys::INT8OID,
        pg_sys::FLOAT4OID,
        pg_sys::FLOAT8OID,
        pg_sys::NUMERICOID,
    ]
    .contains(&oid)
}

fn is_text(oid: pg_sys::Oid) -> bool {
    [
        pg_sys::TEXTOID,
        pg_sys::VARCHAROID,
        pg_sys::BPCHAROID,
        pg_sys::NAMEOID,
    ]
    .contains(&oid)
}

/// The task a label column implies: fractional numbers are regression;
/// integers, booleans and text are classes.
pub fn task_for_label(oid: pg_sys::Oid) -> Option<Task> {
    match oid {
        o if o == pg_sys::FLOAT4OID || o == pg_sys::FLOAT8OID || o == pg_sys::NUMERICOID => {
            Some(Task::Regression)
        }
        o if is_numeric(o) || o == pg_sys::BOOLOID || is_text(o) => Some(Task::Classification),
        _ => None,
    }
}

pub struct Request<'a> {
    pub source: &'a Source,
    pub target: &'a str,
    /// `None` picks the project's task from the label's type.
    pub task: Option<Task>,
    /// `None` means every column but the target and the primary key.
    pub features: Option<&'a [String]>,
}

pub struct Loaded {
    pub dataset: Dataset,
    pub feature_types: Vec<String>,
    pub unlabeled: usize,
}

pub fn load(req: &Request<'_>) -> AmbientResult<Loaded> {
    let columns = columns(req.source)?;
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    let source_name = req.source.describe();
    let missing = |what: &str, name: &str| {
        AmbientError::undefined_column(format!(
            "{what} column \"{name}\" does not exist in {}",
            short(&source_name)
        ))
        .hint(format!(
            "columns: {}",
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };

    let target = find(req.target).ok_or_else(|| missing("target", req.target))?;
    let implied = task_for_label(target.type_oid).ok_or_else(|| {
        AmbientError::wrong_type(format!(
            "target column \"{}\" has type {}, which cannot be a label",
            target.name,
            type_name(target.type_oid).unwrap_or_default()
        ))
        .hint("labels are numeric, boolean or text")
    })?;
    let task = req.task.unwrap_or(implied);
    if task == Task::Regression && !is_numeric(target.type_oid) {
        return Err(AmbientError::wrong_type(format!(
            "regression needs a numeric target, and \"{}\" is {}",
            target.name,
            type_name(target.type_oid)?
        )));
    }

    let feature_names: Vec<String> = match req.features {
        Some(list) => {
            if list.is_empty() {
                return Err(AmbientError::invalid(
                    "features must name at least one column",
                ));
            }
            for name in list {
                find(name).ok_or_else(|| missing("feature", name))?;
                if name == req.target {
                    return Err(AmbientError::invalid(format!(
                        "\"{name}\" is the target and cannot also be a feature"
                    )));
                }
            }
            list.to_vec()
        }
        None => {
            let key = req.source.primary_key()?;
            columns
                .iter()
                .filter(|c| c.name != req.target && !key.contains(&c.name))
                .map(|c| c.name.clone())
                .collect()
        }
    };
    let mut feature_types = Vec::with_capacity(feature_names.len());
    let mut select_list = Vec::with_capacity(feature_names.len() + 1);
    for name in &feature_names {
        let column = find(name).ok_or_else(|| missing("feature", name))?;
        let quoted = quote_identifier(name);
        select_list.push(if column.type_oid == pg_sys::BOOLOID {
            format!("{quoted}::integer::float8")
        } else if is_numeric(column.type_oid) {
            format!("{quoted}::float8")
        } else {
            return Err(AmbientError::wrong_type(format!(
                "feature column \"{name}\" has type {}; features must be numeric or boolean",
                type_name(column.type_oid)?
            ))
            .hint("leave it out with features => ARRAY[...], or convert it in a query"));
        });
        feature_types.push(type_name(column.type_oid)?);
    }
    let quoted_target = quote_identifier(req.target);
    select_list.push(match task {
        Task::Regression => format!("{quoted_target}::float8"),
        Task::Classification => format!("{quoted_target}::text"),
    });
    let label_kind = if target.type_oid == pg_sys::BOOLOID {
        LabelKind::Boolean
    } else if is_numeric(target.type_oid) {
        LabelKind::Numeric
    } else {
        LabelKind::Text
    };

    let sql = format!(
        "SELECT {} FROM {}",
        select_list.join(", "),
        req.source.sql_from()
    );
    let width = feature_names.len();
    let mut records = Vec::new();
    let mut class_labels = Vec::new();
    let mut values = Vec::new();
    let mut unlabeled = 0usize;
    Spi::connect(|client| {
        let mut cursor = client.try_open_cursor(sql.as_str(), &[])?;
        loop {
            let batch = cursor.fetch(FETCH_BATCH)?;
            if batch.is_empty() {
                break;
            }
            for row in batch {
                let label_at = width + 1;
                let labeled = match task {
                    Task::Classification => {
                        row.get::<String>(label_at)?.map(|l| class_labels.push(l))
                    }
                    Task::Regression => row.get::<f64>(label_at)?.map(|v| values.push(v)),
                };
                if labeled.is_none() {
                    unlabeled += 1;
                    continue;
                }
                for (j, name) in feature_names.iter().enumerate() {
                    match row.get::<f64>(j + 1)? {
                        Some(v) => records.push(v),
                        None => {
                            return Err(AmbientError::null_value(format!(
                                "feature column \"{name}\" has NULL values"
                            ))
                            .hint("filter them out with a query, or fill them in; imputation is not supported yet"))
                        }
                    }
                }
            }
        }
        AmbientResult::Ok(())
    })?;
    let labeled = records.len() / width.max(1);
    if labeled == 0 {
        return Err(AmbientError::invalid(format!(
            "{} has no labeled rows to train on",
            short(&source_name)
        ))
        .hint(if unlabeled > 0 {
            format!("all {unlabeled} rows have a NULL \"{}\"", req.target)
        } else {
            "the source is empty".to_string()
        }));
    }
    let labels = match task {
        Task::Classification => RawLabels::Classes(label_kind, class_labels),
        Task::Regression => RawLabels::Values(values),
    };
    Ok(Loaded {
        dataset: Dataset::new(feature_names, records, labels)?,
        feature_types,
        unlabeled,
    })
}

/// A source for messages: long query texts are cut.
fn short(source: &str) -> String {
    let one_line = source.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 60 {
        format!(
            "the query \"{}...\"",
            one_line.chars().take(57).collect::<String>()
        )
    } else if source.contains(char::is_whitespace) {
        format!("the query \"{one_line}\"")
    } else {
        one_line
    }
}
