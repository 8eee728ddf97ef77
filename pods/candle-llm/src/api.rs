//! The OpenAI-compatible request and response bodies the pod reads and writes.

use serde::{Deserialize, Serialize};

use crate::chat::Message;
use crate::error::PodError;

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The served model's name (optional; another name is refused).
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    /// Sampling and length.
    pub params: Params,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The served model's name (optional; another name is refused).
    pub model: Option<String>,
    /// The text to continue (one string).
    pub prompt: String,
    #[serde(flatten)]
    /// Sampling and length.
    pub params: Params,
}

/// Fields shared by both endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    /// Most tokens to generate (`max_completion_tokens` is the newer name).
    pub max_tokens: Option<u64>,
    /// Newer spelling of `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    /// 0 = greedy.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Sampler seed.
    pub seed: Option<u64>,
    /// Choices: only 1 is served.
    pub n: Option<u64>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a last event with the usage.
    pub stream_options: Option<StreamOptions>,
    /// Stop sequences: not supported (refused unless empty).
    pub stop: Option<serde_json::Value>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a usage event before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// A message as sent: `content` is a string or an array of `{"type": "text", "text": ...}`.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: serde_json::Value,
}

impl ChatMessage {
    /// The message as the template takes it; other roles and non-text parts are refused.
    pub fn to_message(&self) -> Result<Message, PodError> {
        if !matches!(self.role.as_str(), "system" | "user" | "assistant") {
            return Err(PodError::BadRequest(format!(
                "role {:?} is not supported (system, user, assistant)",
                self.role
            )));
        }
        let content = match &self.content {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(parts) => {
                let mut text = String::new();
                for part in parts {
                    match (
                        part.get("type").and_then(|t| t.as_str()),
                        part.get("text").and_then(|t| t.as_str()),
                    ) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        _ => {
                            return Err(PodError::BadRequest(
                                "only text content parts are supported".into(),
                            ));
                        }
                    }
                }
                text
            }
            _ => {
                return Err(PodError::BadRequest(
                    "message content must be a string or text parts".into(),
                ));
            }
        };
        Ok(Message {
            role: self.role.clone(),
            content,
        })
    }
}

/// The generation settings a request resolves to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// Sampling.
    pub sampling: crate::engine::Sampling,
    /// Stream as server-sent events.
    pub stream: bool,
    /// Add a usage event to the stream.
    pub include_usage: bool,
}

impl Params {
    /// Checks the fields and applies the defaults; `ceiling` is the pod's `--max-tokens`.
    pub fn resolve(&self, default_max_tokens: usize, ceiling: usize) -> Result<Resolved, PodError> {
        let bad = |m: String| Err(PodError::BadRequest(m));
        let max_tokens = match (self.max_tokens, self.max_completion_tokens) {
            (Some(_), Some(_)) => {
                return bad("give max_tokens or max_completion_tokens, not both".into());
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => default_max_tokens as u64,
        };
        if max_tokens == 0 || max_tokens > ceiling as u64 {
            return bad(format!("max_tokens must be between 1 and {ceiling}"));
        }
        if let Some(n) = self.n
            && n != 1
        {
            return bad("n must be 1 (this server generates one choice)".into());
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return bad("temperature must be between 0 and 2".into());
        }
        let top_p = match self.top_p {
            Some(p) if !(p > 0.0 && p <= 1.0) => return bad("top_p must be in (0, 1]".into()),
            Some(p) if p < 1.0 => Some(p),
            _ => None,
        };
        match &self.stop {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(a)) if a.is_empty() => {}
            Some(_) => return bad("stop sequences are not supported".into()),
        }
        Ok(Resolved {
            max_tokens: max_tokens as usize,
            sampling: crate::engine::Sampling {
                temperature,
                top_p,
                seed: self.seed.unwrap_or(299_792_458),
            },
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
        })
    }
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

impl Usage {
    /// Usage from the two counts.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> Params {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_limits() {
        let r = params("{}").resolve(64, 512).unwrap();
        assert_eq!(
            (r.max_tokens, r.stream, r.include_usage),
            (64, false, false)
        );
        assert_eq!(r.sampling.temperature, 1.0);
        let r = params(
            r#"{"max_completion_tokens": 7, "temperature": 0, "top_p": 1, "stream": true,
            "stream_options": {"include_usage": true}, "stop": null, "n": 1}"#,
        )
        .resolve(64, 512)
        .unwrap();
        assert_eq!(
            (r.max_tokens, r.stream, r.include_usage, r.sampling.top_p),
            (7, true, true, None)
        );
        for bad in [
            r#"{"max_tokens": 0}"#,
            r#"{"max_tokens": 513}"#,
            r#"{"max_tokens": 5, "max_completion_tokens": 5}"#,
            r#"{"n": 2}"#,
            r#"{"temperature": 2.5}"#,
            r#"{"top_p": 0}"#,
            r#"{"stop": ["\n"]}"#,
        ] {
            assert!(params(bad).resolve(64, 512).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn message_content_forms() {
        let m: ChatMessage =
            serde_json::from_str(r#"{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}"#).unwrap();
        assert_eq!(m.to_message().unwrap().content, "ab");
        let m: ChatMessage = serde_json::from_str(r#"{"role": "tool", "content": "x"}"#).unwrap();
        assert!(m.to_message().is_err());
        let m: ChatMessage = serde_json::from_str(
            r#"{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}"#,
        )
        .unwrap();
        assert!(m.to_message().is_err());
    }
}
