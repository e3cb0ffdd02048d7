//! The extension's one error type and its mapping to SQLSTATEs. Every user
//! error leaves through `AmbientError::raise`, as an ERROR with a code, a
//! message naming the thing at fault and, where it helps, a hint.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::ml::{MlError, MlErrorKind};

#[derive(Debug, Clone)]
pub struct AmbientError {
    code: PgSqlErrorCode,
    message: String,
    hint: Option<String>,
}

pub type AmbientResult<T> = Result<T, AmbientError>;

impl AmbientError {
    fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        AmbientError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// 42704: an unknown project or model.
    pub fn undefined_object(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, message)
    }

    /// 42703: a column the source does not have.
    pub fn undefined_column(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, message)
    }

    /// 42710: something that exists already (a table attached twice).
    pub fn duplicate_object(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, message)
    }

    /// 42809: an object of the wrong kind (a view where a table is needed).
    pub fn wrong_object_type(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, message)
    }

    /// 42P01: a relation that does not exist.
    pub fn undefined_table(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, message)
    }

    /// 23505: two rows where one is allowed (a source's duplicate keys).
    pub fn unique_violation(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, message)
    }

    /// 22023: a bad argument value.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
    }

    /// 22004: NULL where none is allowed.
    pub fn null_value(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, message)
    }

    /// 42804: a column or value of the wrong type.
    pub fn wrong_type(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH, message)
    }

    /// 42501: the caller may not do this.
    pub fn privilege(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, message)
    }

    /// 55000: the catalog is not in a state that allows this (nothing to roll back to).
    pub fn not_in_state(message: impl Into<String>) -> Self {
        Self::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            message,
        )
    }

    /// 25006: a write in a read-only transaction or on a hot standby.
    pub fn read_only(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION, message)
    }

    /// 2BP01: something still depends on what is being dropped.
    pub fn dependents(message: impl Into<String>) -> Self {
        Self::new(
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            message,
        )
    }

    /// 22003: a number beyond the range of its target type.
    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, message)
    }

    /// 54000: more than a configured limit allows (rows, classes).
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, message)
    }

    /// 53200: more memory than `ambient.max_training_memory` allows.
    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY, message)
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Reports the error to Postgres; never returns.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.code, self.message, "pg_ambient");
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

impl From<MlError> for AmbientError {
    fn from(e: MlError) -> Self {
        let code = match e.kind {
            MlErrorKind::InvalidParameter | MlErrorKind::InsufficientData => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            MlErrorKind::WrongType => PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            MlErrorKind::CorruptArtifact => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            MlErrorKind::NullValue => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            MlErrorKind::Unsupported => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            MlErrorKind::OutOfMemory => PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
        };
        AmbientError {
            code,
            message: e.message,
            hint: e.hint,
        }
    }
}

impl From<pgrx::spi::SpiError> for AmbientError {
    fn from(e: pgrx::spi::SpiError) -> Self {
        // SQL errors inside SPI arrive as Postgres ERRORs with their own
        // SQLSTATE and never get here; an SpiError is our own misuse.
        Self::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("SPI: {e}"))
    }
}

/// Unwraps a result at the SQL boundary, raising the error if there is one.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T, E: Into<AmbientError>> OrRaise<T> for Result<T, E> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.into().raise(),
        }
    }
}
