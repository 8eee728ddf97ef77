//! Pieces shared by the OpenAI-compatible and text-generation-inference extractors: chat
//! messages, prompt lists, token budgets and the resulting [`Action`].

use crate::inference::json::{Map, Value};

use crate::domain::{Action, ApiKind, Request};

use super::InferenceError;
use super::http::{MediaType, media_type};
use super::json::{Obj, invalid, parse_object};

/// Parses an LLM server's JSON body. These servers parse JSON whatever the Content-Type
/// says (or refuse a non-JSON one), so only a missing or JSON Content-Type is read.
pub(crate) fn body(req: &Request) -> Result<Map<'_>, InferenceError> {
    match media_type(req)? {
        MediaType::Missing | MediaType::Json => parse_object(&req.body),
        _ => Err(InferenceError::Malformed(
            "this endpoint takes a JSON body (Content-Type: application/json)".into(),
        )),
    }
}

/// What an LLM request asks for, before it becomes an [`Action`].
#[derive(Debug, Default)]
pub(crate) struct Ask {
    pub prompts: Vec<String>,
    /// The main prompt: the last user message, or the first prompt.
    pub prompt: Option<String>,
    pub urls: Vec<String>,
    pub model: Option<String>,
    pub adapters: Vec<String>,
    /// Choices (or generations) produced.
    pub choices: u32,
    pub max_tokens: Option<u64>,
}

impl Ask {
    /// The action for this request.
    pub(crate) fn into_action(self, name: &str, api: ApiKind) -> Action {
        let mut loras = Vec::new();
        for a in self.adapters {
            if !loras.contains(&a) {
                loras.push(a);
            }
        }
        Action {
            api: Some(api),
            name: name.to_string(),
            loras,
            image_number: Some(self.choices),
            model: self.model,
            prompt: self.prompt.or_else(|| self.prompts.first().cloned()),
            prompts: self.prompts,
            max_tokens: self.max_tokens,
            urls: self.urls,
            ..Action::default()
        }
    }

    /// Reads `messages`: a list of `{role, content, tool_calls?}` where `content` is a string,
    /// a list of `text` / `image_url` parts, or null; with `allow_string`, a bare string too
    /// (mistral.rs, candle-vllm).
    pub(crate) fn messages(
        &mut self,
        obj: &Obj<'_>,
        allow_string: bool,
    ) -> Result<(), InferenceError> {
        let list = match obj.get("messages") {
            None => return Err(invalid("messages", "is required")),
            Some(Value::String(s)) if allow_string => {
                self.prompt = Some(s.to_string());
                self.prompts.push(s.to_string());
                return Ok(());
            }
            Some(Value::Array(list)) => list,
            Some(_) => return Err(invalid("messages", "must be a list of messages")),
        };
        for (i, message) in list.iter().enumerate() {
            let path = format!("messages[{i}]");
            let Value::Object(map) = message else {
                return Err(invalid(path, "must be an object"));
            };
            let m = &Obj::nested(map, path.clone());
            let role = m.nullable_string("role")?.unwrap_or("");
            let text = self.content(m)?;
            if role == "user" && text.is_some() {
                self.prompt = text;
            }
            if let Some(calls) = m.array("tool_calls")? {
                for call in calls {
                    let args = call.pointer("/function/arguments").and_then(Value::as_str);
                    if let Some(args) = args.filter(|a| !a.is_empty()) {
                        self.prompts.push(args.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// One message's `content`: its texts join the prompts, its image URLs the URLs.
    fn content(&mut self, m: &Obj<'_>) -> Result<Option<String>, InferenceError> {
        let parts = match m.get("content") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => {
                if !s.is_empty() {
                    self.prompts.push(s.to_string());
                }
                return Ok(Some(s.to_string()));
            }
            Some(Value::Array(parts)) => parts,
            Some(_) => {
                return Err(invalid(
                    m.field("content"),
                    "must be a string or a list of parts",
                ));
            }
        };
        let mut texts = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let path = format!("{}[{i}]", m.field("content"));
            let Value::Object(map) = part else {
                return Err(invalid(path, "must be an object"));
            };
            let p = &Obj::nested(map, path.clone());
            match p.string("type")? {
                Some("text") => {
                    let text = p
                        .string("text")?
                        .ok_or_else(|| invalid(p.field("text"), "is required"))?;
                    if !text.is_empty() {
                        self.prompts.push(text.to_string());
                    }
                    texts.push(text);
                }
                Some("image_url") => {
                    let url = match p.get("image_url") {
                        Some(Value::String(u)) => Some(u.as_ref()),
                        Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
                        _ => None,
                    };
                    let url =
                        url.ok_or_else(|| invalid(p.field("image_url"), "must hold a url"))?;
                    if url.starts_with("http") {
                        self.urls.push(url.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(Some(texts.join("\n")))
    }

    /// Reads a prompt that is a string or a list of strings (one generation each). Token-id
    /// prompts are refused: their text cannot be checked.
    pub(crate) fn prompt_list(&mut self, obj: &Obj<'_>, key: &str) -> Result<u32, InferenceError> {
        let texts: Vec<&str> = match obj.get(key) {
            None => return Err(invalid(key, "is required")),
            Some(Value::String(s)) => vec![s.as_ref()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    invalid(
                        key,
                        "must be text or a list of texts (token ids are not accepted)",
                    )
                })?,
            Some(_) => return Err(invalid(key, "must be text or a non-empty list of texts")),
        };
        for t in &texts {
            self.prompts.push((*t).to_string());
        }
        Ok(texts.len() as u32)
    }
}

/// `max_tokens`, also spelled `max_completion_tokens`; giving both is refused (TGI and
/// mistral.rs reject the duplicate field). Absent or null: the server's own limit.
pub(crate) fn max_tokens(obj: &Obj<'_>) -> Result<Option<u64>, InferenceError> {
    if obj.has("max_tokens") && obj.has("max_completion_tokens") {
        return Err(invalid(
            "max_tokens",
            "give max_tokens or max_completion_tokens, not both",
        ));
    }
    let key = if obj.has("max_completion_tokens") {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    Ok(obj.nullable_int(key, 0..=i64::MAX)?.map(|n| n as u64))
}

/// A count field of at least 1 (`n`, `best_of`); `null` means absent.
pub(crate) fn count(obj: &Obj<'_>, key: &str) -> Result<Option<u32>, InferenceError> {
    Ok(obj
        .nullable_int(key, 1..=i64::from(u32::MAX))?
        .map(|n| n as u32))
}
