//! The one error type of the pure-Rust ML layer. `crate::error` maps each kind
//! to a SQLSTATE; nothing here knows about Postgres.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlErrorKind {
    /// A parameter or input value is out of range or otherwise unusable.
    InvalidParameter,
    /// A value has the wrong JSON or SQL type.
    WrongType,
    /// The data cannot support what was asked (too few rows, one class, ...).
    InsufficientData,
    /// Stored model bytes do not decode.
    CorruptArtifact,
    /// A value is missing where the model cannot fill it in.
    NullValue,
    /// Something this algorithm does not do.
    Unsupported,
    /// A fit outgrew its memory budget.
    OutOfMemory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MlError {
    pub kind: MlErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl MlError {
    pub fn new(kind: MlErrorKind, message: impl Into<String>) -> Self {
        MlError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(MlErrorKind::InvalidParameter, message)
    }

    pub fn wrong_type(message: impl Into<String>) -> Self {
        Self::new(MlErrorKind::WrongType, message)
    }

    pub fn insufficient(message: impl Into<String>) -> Self {
        Self::new(MlErrorKind::InsufficientData, message)
    }

    pub fn null_value(message: impl Into<String>) -> Self {
        Self::new(MlErrorKind::NullValue, message)
    }

    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::new(MlErrorKind::OutOfMemory, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(MlErrorKind::Unsupported, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(MlErrorKind::CorruptArtifact, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for MlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MlError {}

pub type MlResult<T> = Result<T, MlError>;
