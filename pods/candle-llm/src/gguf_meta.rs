//! What the pod needs from a GGUF file's metadata besides the weights: the architecture, the
//! byte-level BPE tokenizer (tokens, token types, merges, special ids) and the chat template.

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::PodError;

/// `tokenizer.ggml.token_type` of a control token (`<|im_start|>`, `<|endoftext|>`, ...).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// The tokenizer and chat parts of a GGUF file's metadata, checked.
#[derive(Debug, Clone)]
pub struct ModelMeta {
    /// `general.name`, for the logs.
    pub name: String,
    /// Token text by id (`tokenizer.ggml.tokens`), GPT-2 byte-level alphabet.
    pub tokens: Vec<String>,
    /// Whether each token is a control token (type 3), matched whole and never split.
    pub control: Vec<bool>,
    /// BPE merges in rank order (`tokenizer.ggml.merges`, "left right").
    pub merges: Vec<(String, String)>,
    /// llama.cpp's pre-tokenizer name (`tokenizer.ggml.pre`), e.g. `smollm`.
    pub pre_tokenizer: String,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: u32,
    /// `tokenizer.chat_template` (Jinja text).
    pub chat_template: String,
    /// `llama.context_length`.
    pub context_length: usize,
}

fn get<'a>(content: &'a Content, key: &str) -> Result<&'a Value, PodError> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| PodError::Model(format!("GGUF metadata lacks {key}")))
}

fn string(content: &Content, key: &str) -> Result<String, PodError> {
    get(content, key)?
        .to_string()
        .cloned()
        .map_err(|e| PodError::Model(format!("GGUF {key}: {e}")))
}

fn array<'a>(content: &'a Content, key: &str) -> Result<&'a Vec<Value>, PodError> {
    get(content, key)?
        .to_vec()
        .map_err(|e| PodError::Model(format!("GGUF {key}: {e}")))
}

impl ModelMeta {
    /// Reads and checks the metadata: a llama model with a `gpt2` (byte-level BPE) tokenizer.
    pub fn from_gguf(content: &Content) -> Result<Self, PodError> {
        let arch = string(content, "general.architecture")?;
        if arch != "llama" {
            return Err(PodError::Model(format!(
                "architecture {arch:?} is not supported (llama only)"
            )));
        }
        let tokenizer_model = string(content, "tokenizer.ggml.model")?;
        if tokenizer_model != "gpt2" {
            return Err(PodError::Model(format!(
                "tokenizer model {tokenizer_model:?} is not supported (gpt2 byte-level BPE only)"
            )));
        }
        let tokens = array(content, "tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PodError::Model(format!("GGUF tokenizer.ggml.tokens: {e}")))?;
        let control = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .and_then(|types| {
                    types
                        .iter()
                        .map(|t| t.to_i32())
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(|e| PodError::Model(format!("GGUF tokenizer.ggml.token_type: {e}")))?
                .into_iter()
                .map(|t| t == TOKEN_TYPE_CONTROL)
                .collect(),
            None => vec![false; tokens.len()],
        };
        if control.len() != tokens.len() {
            return Err(PodError::Model(
                "tokenizer.ggml.token_type and tokenizer.ggml.tokens differ in length".into(),
            ));
        }
        let merges = array(content, "tokenizer.ggml.merges")?
            .iter()
            .map(|v| {
                let line = v
                    .to_string()
                    .map_err(|e| PodError::Model(format!("GGUF tokenizer.ggml.merges: {e}")))?;
                line.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| PodError::Model(format!("malformed BPE merge {line:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let eos_token_id = get(content, "tokenizer.ggml.eos_token_id")?
            .to_u32()
            .map_err(|e| PodError::Model(format!("GGUF tokenizer.ggml.eos_token_id: {e}")))?;
        if eos_token_id as usize >= tokens.len() {
            return Err(PodError::Model(
                "eos token id outside the vocabulary".into(),
            ));
        }
        let context_length = get(content, "llama.context_length")?
            .to_u32()
            .map_err(|e| PodError::Model(format!("GGUF llama.context_length: {e}")))?
            as usize;
        Ok(ModelMeta {
            name: string(content, "general.name").unwrap_or_default(),
            tokens,
            control,
            merges,
            pre_tokenizer: string(content, "tokenizer.ggml.pre")
                .unwrap_or_else(|_| "default".into()),
            eos_token_id,
            chat_template: string(content, "tokenizer.chat_template")?,
            context_length,
        })
    }

    /// The id of a token by its exact text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens.iter().position(|t| t == text).map(|i| i as u32)
    }
}
