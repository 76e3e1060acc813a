//! Errors. Each stage has its own enum with semantic variants; [`ErrorKind`] is what the
//! supervisor uses to decide what to do (restart a stream, drop a frame, give up).

use std::path::PathBuf;

/// What kind of failure this is: drives the policy, not the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A library, device or backend is not present on this host.
    Unavailable,
    /// The input (file, bitstream, model, config) is malformed.
    BadInput,
    /// Data was lost (corrupt picture, dropped message); the stream continues.
    DataLoss,
    /// A fixed-size pool or buffer is too small for what arrived.
    ResourceExhausted,
    /// Connection or device I/O failed; retrying may help.
    Io,
    /// A bug or broken invariant in jetwatch itself.
    Internal,
}

/// A backend that is not available on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{backend} is not available on this host: {reason}")]
pub struct Unavailable {
    pub backend: &'static str,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("unsupported codec in {path}: {what} (jetwatch reads H.264 and H.265)")]
    UnsupportedCodec { path: PathBuf, what: String },
    #[error("access unit {index} is {size} bytes, larger than the {capacity}-byte buffer (raise pipeline.max_access_unit_bytes)")]
    TooLarge {
        index: u64,
        size: usize,
        capacity: usize,
    },
    #[error("{path}: read failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl SourceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SourceError::Open { .. } | SourceError::Io { .. } => ErrorKind::Io,
            SourceError::Format { .. } | SourceError::UnsupportedCodec { .. } => {
                ErrorKind::BadInput
            }
            SourceError::TooLarge { .. } => ErrorKind::ResourceExhausted,
            SourceError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("{codec} cannot be decoded by the {backend} decoder{hint}")]
    UnsupportedCodec {
        codec: &'static str,
        backend: &'static str,
        hint: &'static str,
    },
    #[error("corrupt bitstream at access unit {index}: {msg}")]
    Corrupt { index: u64, msg: String },
    #[error("picture {width}x{height} exceeds the configured maximum {max_width}x{max_height}")]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error("{backend}: {msg}")]
    Backend { backend: &'static str, msg: String },
}

impl DecodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::Unavailable(_) => ErrorKind::Unavailable,
            DecodeError::UnsupportedCodec { .. } => ErrorKind::BadInput,
            DecodeError::Corrupt { .. } => ErrorKind::DataLoss,
            DecodeError::TooLarge { .. } => ErrorKind::ResourceExhausted,
            DecodeError::Backend { .. } => ErrorKind::Internal,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("model file {path}: {msg}")]
    Model { path: PathBuf, msg: String },
    #[error("model {path} does not fit jetwatch: {msg}")]
    Layout { path: PathBuf, msg: String },
    #[error("{backend}: {msg}")]
    Backend { backend: &'static str, msg: String },
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Unavailable(_) => ErrorKind::Unavailable,
            EngineError::Model { .. } | EngineError::Layout { .. } => ErrorKind::BadInput,
            EngineError::Backend { .. } => ErrorKind::Internal,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("preprocess: {0}")]
    Preprocess(String),
    #[error("postprocess: {0}")]
    Postprocess(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}
