//! Reads training data with the caller's privileges: a role that cannot
//! SELECT a table cannot train on it. Relations reach SQL only as quoted
//! identifiers; a query must parse as exactly one SELECT before it is wrapped
//! as a subquery, and it is read through read-only SPI.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{PgList, PgRelation};

use crate::error::{AmbientError, AmbientResult};
use crate::ml::dataset::{ColumnKind, Dataset, LabelKind, RawColumn, RawLabels};
use crate::ml::{Interrupts, Task};

/// Rows fetched per round trip through the cursor.
const FETCH_BATCH: i64 = 10_000;

pub enum Source {
    Relation(PgRelation),
    Query(String),
    /// A training set, read through its view, always as its owner: its
    /// spine is SQL the owner stored (`Source::read`).
    TrainingSet {
        name: String,
        view: PgRelation,
        owner: pg_sys::Oid,
    },
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

    /// A stored source (a snapshot's kind and text) resolved again under
    /// the current role and search_path; `None` when its relation or
    /// training set is gone.
    pub fn stored(kind: &str, text: &str) -> AmbientResult<Option<Source>> {
        Ok(match kind {
            "relation" => PgRelation::open_with_name_and_share_lock(text)
                .ok()
                .map(Source::Relation),
            "training_set" => Source::training_set(text)?,
            _ => Some(Source::query(text)?),
        })
    }

    /// The training set `name`, read through its view; `None` if it is gone.
    pub fn training_set(name: &str) -> AmbientResult<Option<Source>> {
        let Some(set) = crate::catalog::feature_sets::find_training_set(name)? else {
            return Ok(None);
        };
        Ok(PgRelation::open_with_name_and_share_lock(&set.view)
            .ok()
            .map(|view| Source::TrainingSet {
                name: set.name,
                view,
                owner: set.owner,
            }))
    }

    /// Runs `work`, which reads this source: a training set as its owner
    /// (with the owner's rights only, whoever trains), anything else as
    /// the current role.
    pub fn read<R>(&self, work: impl FnOnce() -> AmbientResult<R>) -> AmbientResult<R> {
        match self {
            Source::TrainingSet { owner, .. } => {
                crate::catalog::as_author(&crate::catalog::Author::restricted(*owner), work)
            }
            _ => work(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Source::Relation(_) => "relation",
            Source::Query(_) => "query",
            Source::TrainingSet { .. } => "training_set",
        }
    }

    /// The relation's qualified name, or the full query text, for the snapshot.
    pub fn describe(&self) -> String {
        match self {
            Source::Relation(rel) => qualified_name(rel),
            Source::Query(q) => q.clone(),
            Source::TrainingSet { name, .. } => name.clone(),
        }
    }

    pub fn sql_from(&self) -> String {
        match self {
            Source::Relation(rel) | Source::TrainingSet { view: rel, .. } => qualified_name(rel),
            Source::Query(q) => format!("({q}\n) AS source"),
        }
    }

    /// The relations reading this source touches (for a query, every table
    /// and view its plan depends on, as Postgres records them to know
    /// when to plan it again), so DDL on them can be checked against the
    /// models trained from it (`ambient.guard_sources`). Run as the role
    /// that reads it.
    pub fn relations_read(&self) -> AmbientResult<Vec<pg_sys::Oid>> {
        match self {
            Source::Relation(rel) | Source::TrainingSet { view: rel, .. } => Ok(vec![rel.oid()]),
            Source::Query(q) => relations_of_query(q),
        }
    }

    fn primary_key(&self) -> AmbientResult<Vec<String>> {
        let Source::Relation(rel) = self else {
            return Ok(Vec::new());
        };
        Spi::connect(|client| {
            client
                .select(
                    // Runs as the caller: every operator is qualified.
                    "SELECT a.attname::pg_catalog.text
                       FROM pg_catalog.pg_index i
                       JOIN pg_catalog.pg_attribute a
                         ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                        AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey)
                      WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisprimary",
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

/// The feature columns a train reads: those named, or every column but
/// the target, the primary key and what attached triggers write.
fn chosen_features(
    req: &Request<'_>,
    columns: &[Column],
    missing: &dyn Fn(&str, &str) -> AmbientError,
) -> AmbientResult<Vec<String>> {
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    Ok(match req.features {
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
            // Nor what an attached trigger writes into the table: its
            // predictions would otherwise teach the next model.
            let mut left_out = req.source.primary_key()?;
            if let Source::Relation(rel) = req.source {
                for a in crate::catalog::attachments::on_relation(rel.oid())? {
                    left_out.extend([a.prediction_column, a.model_id_column]);
                }
            }
            columns
                .iter()
                .filter(|c| c.name != req.target && !left_out.contains(&c.name))
                .map(|c| c.name.clone())
                .collect()
        }
    })
}

/// The columns a train of `req` reads, features then the target, with
/// their types (`format_type`): what a copy of the training rows keeps.
pub fn columns_to_read(req: &Request<'_>) -> AmbientResult<Vec<(String, String)>> {
    let columns = columns(req.source)?;
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    let missing = |what: &str, name: &str| {
        AmbientError::undefined_column(format!("{what} column \"{name}\" does not exist"))
    };
    let target = find(req.target).ok_or_else(|| missing("target", req.target))?;
    let mut chosen = chosen_features(req, &columns, &missing)?;
    chosen.push(target.name.clone());
    // Schema-qualified: the copy is made under the pinned search_path.
    Ok(chosen
        .into_iter()
        .map(|name| {
            let type_oid = find(&name).map_or(pg_sys::Oid::INVALID, |c| c.type_oid);
            let type_sql = sql_type_name(type_oid, -1, true);
            (name, type_sql)
        })
        .collect())
}

/// Of `relations`, those whose owner has the privileges of `role` (the
/// project's or feature set's owner): the ones the source guard keeps. A
/// table someone else owns stays theirs to change, so no role can pin
/// another's tables by training on them, and whoever the guard refuses may
/// read the project and release it.
pub fn guarded_by(relations: &[pg_sys::Oid], role: pg_sys::Oid) -> AmbientResult<Vec<pg_sys::Oid>> {
    Ok(Spi::get_one_with_args::<Vec<pg_sys::Oid>>(
        "SELECT COALESCE(pg_catalog.array_agg(c.oid ORDER BY c.oid), '{}')
           FROM pg_catalog.pg_class c
          WHERE c.oid OPERATOR(pg_catalog.=) ANY ($1)
            AND pg_catalog.pg_has_role(c.relowner, $2, 'USAGE')",
        &[relations.to_vec().into(), role.into()],
    )?
    .unwrap_or_default())
}

/// Every relation a SELECT's plan depends on.
pub fn relations_of_query(query: &str) -> AmbientResult<Vec<pg_sys::Oid>> {
    let text = std::ffi::CString::new(query)
        .map_err(|_| AmbientError::invalid("query contains a NUL character"))?;
    Spi::connect(|_client| {
        // SAFETY: SPI is connected; SPI_prepare raises a Postgres ERROR on
        // a bad query; the plan and its plan sources live in SPI's memory
        // until SPI_finish, after this block, and relationOids is a list
        // of OIDs (T_OidList).
        unsafe {
            let plan = pg_sys::SPI_prepare(text.as_ptr(), 0, std::ptr::null_mut());
            if plan.is_null() {
                return Err(AmbientError::invalid("the query could not be prepared"));
            }
            let sources = PgList::<pg_sys::CachedPlanSource>::from_pg(
                pg_sys::SPI_plan_get_plan_sources(plan),
            );
            let mut relations = Vec::new();
            for source in sources.iter_ptr() {
                let oids = (*source).relationOids;
                if oids.is_null() {
                    continue;
                }
                for k in 0..(*oids).length {
                    let oid = (*(*oids).elements.add(k as usize)).oid_value;
                    if !relations.contains(&oid) {
                        relations.push(oid);
                    }
                }
            }
            Ok(relations)
        }
    })
}

/// The source's columns and their types, as it reads now.
pub fn column_types(source: &Source) -> AmbientResult<Vec<(String, pg_sys::Oid)>> {
    Ok(columns(source)?
        .into_iter()
        .map(|c| (c.name, c.type_oid))
        .collect())
}

/// A type's name with its modifier (`varchar(10)`), schema-qualified for
/// SQL or as `\d` shows it for messages.
pub fn sql_type_name(oid: pg_sys::Oid, typmod: i32, qualified: bool) -> String {
    let qualify = if qualified {
        pg_sys::FORMAT_TYPE_FORCE_QUALIFY
    } else {
        0
    };
    // SAFETY: format_type_extended returns a palloc'd string or raises.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::format_type_extended(
            oid,
            typmod,
            (pg_sys::FORMAT_TYPE_TYPEMOD_GIVEN | qualify) as u16,
        ))
        .to_string_lossy()
        .into_owned()
    }
}

/// A type as a model records its features' (`format_type`).
pub fn type_name(oid: pg_sys::Oid) -> AmbientResult<String> {
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

pub fn is_numeric(oid: pg_sys::Oid) -> bool {
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

/// How a feature column of this type is read, if it can be one.
pub fn feature_kind(oid: pg_sys::Oid) -> Option<ColumnKind> {
    // SAFETY: type_is_enum only reads the syscache.
    let is_enum = || unsafe { pg_sys::type_is_enum(oid) };
    match oid {
        o if o == pg_sys::BOOLOID => Some(ColumnKind::Boolean),
        o if is_numeric(o) => Some(ColumnKind::Numeric),
        o if is_text(o) => Some(ColumnKind::Categorical),
        o if [
            pg_sys::DATEOID,
            pg_sys::TIMESTAMPOID,
            pg_sys::TIMESTAMPTZOID,
        ]
        .contains(&o) =>
        {
            Some(ColumnKind::Timestamp)
        }
        _ if is_enum() => Some(ColumnKind::Categorical),
        _ => None,
    }
}

/// The select-list expression that reads a (quoted) column of `kind` as
/// training reads it: a float8 for numbers, booleans (0/1) and dates and
/// timestamps (seconds since 1970), text for categories. It runs as the
/// caller, under the caller's search_path, so the function and the types
/// are schema-qualified: a type of the caller's named `text` cannot stand
/// in.
pub fn read_as_feature(quoted: &str, kind: ColumnKind) -> String {
    match kind {
        ColumnKind::Boolean => format!("{quoted}::pg_catalog.int4::pg_catalog.float8"),
        ColumnKind::Numeric => format!("{quoted}::pg_catalog.float8"),
        ColumnKind::Categorical => format!("{quoted}::pg_catalog.text"),
        ColumnKind::Timestamp => {
            format!("pg_catalog.date_part('epoch'::pg_catalog.text, {quoted})::pg_catalog.float8")
        }
    }
}

/// Runs `sql` (with `args`) as the caller through a cursor and hands each
/// row to `each`: Postgres is asked for interrupts between batches, and
/// each batch is freed once read, so one batch is held at a time.
pub fn for_each_row(
    sql: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
    mut each: impl FnMut(&pgrx::spi::SpiHeapTupleData<'_>) -> AmbientResult<()>,
) -> AmbientResult<()> {
    Spi::connect(|client| {
        let mut cursor = client.try_open_cursor(sql, args)?;
        loop {
            pgrx::check_for_interrupts!();
            let batch = cursor.fetch(FETCH_BATCH)?;
            if batch.is_empty() {
                return Ok(());
            }
            for row in batch {
                each(&row)?;
            }
            // pgrx keeps every fetched batch until SPI ends.
            // SAFETY: SPI_tuptable is the batch just read, and nothing
            // borrows from it any more.
            unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
        }
    })
}

/// What a label column's type says about the task.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Implied {
    Task(Task),
    /// Integers: classes when there are few distinct values, else regression.
    ByDistinctValues,
}

/// Fractional numbers are regression; booleans and text are classes;
/// integers depend on how many distinct values they take.
fn implied_task(oid: pg_sys::Oid) -> Option<Implied> {
    match oid {
        o if o == pg_sys::FLOAT4OID || o == pg_sys::FLOAT8OID || o == pg_sys::NUMERICOID => {
            Some(Implied::Task(Task::Regression))
        }
        o if is_numeric(o) => Some(Implied::ByDistinctValues),
        o if o == pg_sys::BOOLOID || is_text(o) => Some(Implied::Task(Task::Classification)),
        _ => None,
    }
}

pub struct Request<'a> {
    pub source: &'a Source,
    pub target: &'a str,
    /// `None` infers the task from the label (see `implied_task`).
    pub task: Option<Task>,
    /// `None` means every column but the target, the primary key and the
    /// columns attached triggers write.
    pub features: Option<&'a [String]>,
    pub limits: Limits,
}

/// What reading may take before it is refused.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Rows read, labelled or not.
    pub max_rows: u64,
    /// Bytes the rows take in memory.
    pub max_bytes: u64,
    /// Classes a classifier may have; an integer label with more distinct
    /// values is inferred to be a regression target.
    pub max_classes: usize,
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
    let implied = implied_task(target.type_oid).ok_or_else(|| {
        AmbientError::wrong_type(format!(
            "target column \"{}\" has type {}, which cannot be a label",
            target.name,
            type_name(target.type_oid).unwrap_or_default()
        ))
        .hint("labels are numeric, boolean or text")
    })?;
    // Integer labels are read as classes first; see `classes_or_values`.
    let read_as = match (req.task, implied) {
        (Some(task), _) | (None, Implied::Task(task)) => task,
        (None, Implied::ByDistinctValues) => Task::Classification,
    };
    if read_as == Task::Regression && !is_numeric(target.type_oid) {
        return Err(AmbientError::wrong_type(format!(
            "regression needs a numeric target, and \"{}\" is {}",
            target.name,
            type_name(target.type_oid)?
        )));
    }

    let feature_names = chosen_features(req, &columns, &missing)?;
    if feature_names.is_empty() {
        return Err(AmbientError::invalid(format!(
            "{} has no feature columns besides the target",
            short(&source_name)
        ))
        .hint("name the feature columns in features => ARRAY[...]"));
    }
    let mut feature_types = Vec::with_capacity(feature_names.len());
    let mut kinds = Vec::with_capacity(feature_names.len());
    let mut select_list = Vec::with_capacity(feature_names.len() + 1);
    for name in &feature_names {
        let column = find(name).ok_or_else(|| missing("feature", name))?;
        let quoted = quote_identifier(name);
        let kind = feature_kind(column.type_oid).ok_or_else(|| {
            AmbientError::wrong_type(format!(
                "feature column \"{name}\" has type {}, which cannot be a feature",
                type_name(column.type_oid).unwrap_or_default()
            ))
            .hint("features are numeric, boolean, text, enum, date or timestamp columns; leave it out with features => ARRAY[...], or convert it in a query")
        })?;
        select_list.push(read_as_feature(&quoted, kind));
        kinds.push(kind);
        feature_types.push(type_name(column.type_oid)?);
    }
    let quoted_target = quote_identifier(req.target);
    select_list.push(match read_as {
        Task::Regression => format!("{quoted_target}::pg_catalog.float8"),
        Task::Classification => format!("{quoted_target}::pg_catalog.text"),
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
    // Per categorical column: each text's index, and the texts in the order
    // first read.
    let mut dictionaries: Vec<(std::collections::HashMap<String, u32>, Vec<String>)> =
        vec![Default::default(); width];
    let mut dictionary_bytes = 0u64;
    let mut records = Vec::new();
    let mut class_labels = Vec::new();
    let mut values = Vec::new();
    let mut unlabeled = 0usize;
    let mut label_bytes = 0u64;
    let limits = req.limits;
    Spi::connect(|client| {
        let mut cursor = client.try_open_cursor(sql.as_str(), &[])?;
        loop {
            pgrx::check_for_interrupts!();
            let batch = cursor.fetch(FETCH_BATCH)?;
            if batch.is_empty() {
                break;
            }
            let read = (records.len() / width.max(1) + unlabeled) as u64 + batch.len() as u64;
            if read > limits.max_rows {
                return Err(too_many_rows(&source_name, limits.max_rows));
            }
            for row in batch {
                let label_at = width + 1;
                let labeled = match read_as {
                    Task::Classification => row.get::<String>(label_at)?.map(|l| {
                        label_bytes += (l.len() + std::mem::size_of::<String>()) as u64;
                        class_labels.push(l)
                    }),
                    Task::Regression => row.get::<f64>(label_at)?.map(|v| values.push(v)),
                };
                if labeled.is_none() {
                    unlabeled += 1;
                    continue;
                }
                for (j, kind) in kinds.iter().enumerate() {
                    // A NULL is a missing value, NaN, for preprocessing to fill.
                    let value = match kind {
                        ColumnKind::Categorical => match row.get::<String>(j + 1)? {
                            None => f64::NAN,
                            Some(text) => {
                                let (index, texts) = &mut dictionaries[j];
                                let next = texts.len() as u32;
                                let code = *index.entry(text).or_insert_with_key(|text| {
                                    dictionary_bytes += 2 * text.len() as u64 + 64;
                                    texts.push(text.clone());
                                    next
                                });
                                f64::from(code)
                            }
                        },
                        _ => row.get::<f64>(j + 1)?.unwrap_or(f64::NAN),
                    };
                    records.push(value);
                }
            }
            // pgrx keeps every fetched batch until SPI ends; the rows are
            // copied out, so the batch is freed now.
            // SAFETY: SPI_tuptable is the batch just read, and nothing
            // borrows from it any more.
            unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
            // Vectors grow by doubling, so capacity is what is held; making
            // the dataset sorts the rows in place, holding a row order and
            // a class index per row, then the class indices in the new
            // order (8 bytes a row each), so those are counted before they
            // are allocated.
            let rows = (records.len() / width.max(1)) as u64;
            let held = (records.capacity() * 8 + values.capacity() * 8) as u64
                + label_bytes
                + dictionary_bytes
                + rows * 24;
            if held > limits.max_bytes {
                return Err(too_much_memory("the training data", held, limits.max_bytes));
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
    let labels = match read_as {
        Task::Regression => RawLabels::Values(values),
        Task::Classification => classes_or_values(req, implied, label_kind, class_labels)?,
    };
    let columns = feature_names
        .into_iter()
        .zip(kinds)
        .zip(dictionaries)
        .map(|((name, kind), (_, dictionary))| RawColumn {
            name,
            kind,
            dictionary,
        })
        .collect();
    Ok(Loaded {
        dataset: Dataset::new_interruptible(columns, records, labels, &check_interrupts())?,
        feature_types,
        unlabeled,
    })
}

/// Decides the task of labels read as classes: an integer label with more
/// distinct values than `max_classes` is a regression target unless the
/// caller asked for classes, and then it is refused.
fn classes_or_values(
    req: &Request<'_>,
    implied: Implied,
    kind: LabelKind,
    classes: Vec<String>,
) -> AmbientResult<RawLabels> {
    let max = req.limits.max_classes;
    let mut distinct = std::collections::HashSet::new();
    let too_many = classes.iter().any(|c| {
        distinct.insert(c.as_str());
        distinct.len() > max
    });
    if !too_many {
        return Ok(RawLabels::Classes(kind, classes));
    }
    if req.task.is_none() && implied == Implied::ByDistinctValues {
        let values = classes
            .iter()
            .map(|c| c.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| AmbientError::wrong_type("an integer label did not read as a number"))?;
        return Ok(RawLabels::Values(values));
    }
    Err(AmbientError::limit(format!(
        "target \"{}\" has more than {max} classes (ambient.max_classes)",
        req.target
    ))
    .hint("for a numeric target, train with task => 'regression'"))
}

fn too_many_rows(source: &str, max: u64) -> AmbientError {
    AmbientError::limit(format!(
        "{} has more than {max} rows (ambient.max_training_rows)",
        short(source)
    ))
    .hint("train on a sample, e.g. query => 'SELECT ... FROM t TABLESAMPLE SYSTEM (10)', or ask a superuser to raise the setting")
}

/// 53200 for work that would take more memory than the budget allows.
pub fn too_much_memory(what: &str, needed: u64, budget: u64) -> AmbientError {
    let mb = |b: u64| b.div_ceil(1 << 20);
    AmbientError::out_of_memory(format!(
        "{what} needs about {} MB, more than ambient.max_training_memory ({} MB)",
        mb(needed),
        mb(budget)
    ))
    .hint("train on fewer rows or features, limit the tree (max_depth, min_samples_leaf), or ask a superuser to raise the setting")
}

/// Postgres's interrupt check, as the pure-Rust layer takes it: a cancel
/// or `statement_timeout` raises its ERROR from inside the check.
pub fn check_interrupts() -> Interrupts<'static> {
    Interrupts::new(&|| {
        pgrx::check_for_interrupts!();
        Ok(())
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
