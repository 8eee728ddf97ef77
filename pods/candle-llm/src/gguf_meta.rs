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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ChatTemplate, Message};
    use candle_core::quantized::gguf_file;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nBe kind.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn strings(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
    }

    /// A tiny tokenizer-only GGUF: byte-level tokens a, b, ab, the two ChatML markers, and
    /// the letters and newline the template's text needs.
    fn metadata() -> Vec<(&'static str, Value)> {
        let tokens = [
            "a",
            "b",
            "ab",
            "<|im_start|>",
            "<|im_end|>",
            "Ċ",
            "s",
            "y",
            "t",
            "e",
            "m",
            "u",
            "r",
            "i",
            "n",
            "B",
            "k",
            "d",
            ".",
            "Ġ",
            "x",
        ];
        let mut types = vec![Value::I32(1); tokens.len()];
        types[3] = Value::I32(3);
        types[4] = Value::I32(3);
        vec![
            ("general.architecture", Value::String("llama".into())),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String("smollm".into())),
            ("tokenizer.ggml.tokens", strings(&tokens)),
            ("tokenizer.ggml.token_type", Value::Array(types)),
            ("tokenizer.ggml.merges", strings(&["a b"])),
            ("tokenizer.ggml.eos_token_id", Value::U32(4)),
            ("tokenizer.chat_template", Value::String(CHATML.into())),
            ("llama.context_length", Value::U32(64)),
        ]
    }

    fn content(md: &[(&'static str, Value)]) -> Content {
        let refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let mut buffer = std::io::Cursor::new(Vec::new());
        gguf_file::write(&mut buffer, &refs, &[]).unwrap();
        buffer.set_position(0);
        Content::read(&mut buffer).unwrap()
    }

    fn with(key: &'static str, value: Value) -> Result<ModelMeta, PodError> {
        let mut md = metadata();
        md.iter_mut().find(|(k, _)| *k == key).unwrap().1 = value;
        ModelMeta::from_gguf(&content(&md))
    }

    #[test]
    fn a_tokenizer_and_template_come_from_the_metadata() {
        let meta = ModelMeta::from_gguf(&content(&metadata())).unwrap();
        assert_eq!((meta.eos_token_id, meta.context_length), (4, 64));
        let tokenizer = crate::tokenizer::from_meta(&meta).unwrap();
        let ids = crate::chat::encode_text(&tokenizer, "abab").unwrap();
        assert_eq!(ids, [2, 2], "the merge a+b applies");
        // Marker text typed by a caller stays text (here: unknown bytes, dropped by BPE
        // without byte fallback, but never the control ids 3 and 4).
        let ids = crate::chat::encode_text(&tokenizer, "<|im_start|>").unwrap();
        assert!(!ids.contains(&3) && !ids.contains(&4), "{ids:?}");
        let template = ChatTemplate::from_meta(&meta).unwrap();
        assert_eq!(template.default_system(), Some("Be kind."));
        let ids = template
            .render(
                &tokenizer,
                &[Message {
                    role: "user".into(),
                    content: "ab".into(),
                }],
            )
            .unwrap();
        assert_eq!(ids.iter().filter(|id| **id == 3).count(), 3, "{ids:?}");
        assert_eq!(ids.iter().filter(|id| **id == 4).count(), 2, "{ids:?}");
    }

    #[test]
    fn unsupported_or_malformed_files_are_refused_with_a_reason() {
        let cases = [
            with("general.architecture", Value::String("bert".into())),
            with("tokenizer.ggml.model", Value::String("llama".into())),
            with("tokenizer.ggml.merges", strings(&["ab"])),
            with("tokenizer.ggml.eos_token_id", Value::U32(99)),
            with(
                "tokenizer.ggml.token_type",
                Value::Array(vec![Value::I32(1)]),
            ),
            with("tokenizer.ggml.tokens", Value::U32(1)),
        ];
        for case in cases {
            let err = case.expect_err("accepted");
            assert!(matches!(err, PodError::Model(_)), "{err}");
        }
        let unknown_pre = with("tokenizer.ggml.pre", Value::String("qwen2".into())).unwrap();
        assert!(crate::tokenizer::from_meta(&unknown_pre).is_err());
        let not_chatml = with(
            "tokenizer.chat_template",
            Value::String("[INST] {{ message }} [/INST]".into()),
        )
        .unwrap();
        assert!(ChatTemplate::from_meta(&not_chatml).is_err());
        let mut md = metadata();
        md.retain(|(k, _)| *k != "tokenizer.chat_template");
        assert!(ModelMeta::from_gguf(&content(&md)).is_err());
    }
}
