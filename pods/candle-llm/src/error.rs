//! The pod's errors.

/// Why the pod could not load its model or answer a request.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The model file is unusable (wrong architecture, missing metadata, ...).
    #[error("model: {0}")]
    Model(String),
    /// The model file could not be read.
    #[error("reading the model file: {0}")]
    Io(#[from] std::io::Error),
    /// A tensor operation failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Tokenising or detokenising failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The request cannot be served as asked (a 400 to the caller).
    #[error("{0}")]
    BadRequest(String),
}

impl From<tokenizers::Error> for PodError {
    fn from(e: tokenizers::Error) -> Self {
        PodError::Tokenizer(e.to_string())
    }
}
