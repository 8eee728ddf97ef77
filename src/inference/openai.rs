//! OpenAI-compatible bodies as mistral.rs and candle-vllm read them: chat, completions,
//! image generation and embeddings. `model` is the model; LoRAs come from mistral.rs'
//! `adapter` (current) or `adapters` (v0.5).

use crate::inference::json::Value;

use crate::domain::{Action, ApiKind, Request};

use super::InferenceError;
use super::json::{Obj, invalid};
use super::llm::{self, Ask};

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
    Image,
    Embedding,
}

/// Understands an OpenAI-compatible request at `path` (percent-decoded). The kind comes from
/// the path's end (so a proxy prefix does not matter), else from the body's shape.
pub(super) fn understand(path: &str, req: &Request) -> Result<Action, InferenceError> {
    let map = llm::body(req)?;
    let obj = &Obj::root(&map);
    let kind = if path.ends_with("/chat/completions") {
        Kind::Chat
    } else if path.ends_with("/completions") {
        Kind::Completion
    } else if path.ends_with("/images/generations") {
        Kind::Image
    } else if path.ends_with("/embeddings") {
        Kind::Embedding
    } else if obj.has("messages") {
        Kind::Chat
    } else if obj.has("prompt") {
        Kind::Completion
    } else if obj.has("input") {
        Kind::Embedding
    } else {
        return Err(InferenceError::Malformed(
            "the body is not an OpenAI chat, completion or embedding request".into(),
        ));
    };

    let mut ask = Ask {
        model: obj.nullable_string("model")?.map(str::to_string),
        ..Ask::default()
    };
    adapters(&mut ask, obj)?;
    let n = llm::count(obj, "n")?.unwrap_or(1);
    match kind {
        Kind::Chat => {
            ask.messages(obj, true)?;
            ask.choices = n.max(llm::count(obj, "best_of")?.unwrap_or(1));
            ask.max_tokens = llm::max_tokens(obj)?;
            Ok(ask.into_action("llm-chat", ApiKind::Llm))
        }
        Kind::Completion => {
            let prompts = ask.prompt_list(obj, "prompt")?;
            let per_prompt = n.max(llm::count(obj, "best_of")?.unwrap_or(1));
            ask.choices = per_prompt.saturating_mul(prompts);
            ask.max_tokens = llm::max_tokens(obj)?;
            Ok(ask.into_action("llm-completion", ApiKind::Llm))
        }
        Kind::Image => {
            let prompt = obj
                .string("prompt")?
                .ok_or_else(|| invalid("prompt", "is required"))?;
            ask.prompts.push(prompt.to_string());
            ask.choices = n;
            let width = obj.int("width", 1..=i64::from(u32::MAX))?.unwrap_or(1280) as u32;
            let height = obj.int("height", 1..=i64::from(u32::MAX))?.unwrap_or(720) as u32;
            let mut action = ask.into_action("image-generation", ApiKind::Image);
            action.width = Some(width);
            action.height = Some(height);
            Ok(action)
        }
        Kind::Embedding => {
            ask.choices = ask.prompt_list(obj, "input")?;
            Ok(ask.into_action("llm-embedding", ApiKind::Llm))
        }
    }
}

/// mistral.rs LoRA selection: `adapter: "name" | {"generation": "<hash>"}` (current) and
/// `adapters: ["name", …]` (v0.5).
fn adapters(ask: &mut Ask, obj: &Obj<'_>) -> Result<(), InferenceError> {
    match obj.get("adapter") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => ask.adapters.push(name.to_string()),
        Some(Value::Object(map)) => match map.get("generation") {
            Some(Value::String(hash)) if map.len() == 1 => {
                ask.adapters.push(format!("generation:{hash}"));
            }
            _ => return Err(invalid("adapter", "must be a name or {\"generation\": …}")),
        },
        Some(_) => return Err(invalid("adapter", "must be a name or {\"generation\": …}")),
    }
    if let Some(list) = obj.array("adapters")? {
        for (i, item) in list.iter().enumerate() {
            let name = item
                .as_str()
                .ok_or_else(|| invalid(format!("adapters[{i}]"), "must be a string"))?;
            ask.adapters.push(name.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::domain::{ApiKind, Request};
    use crate::inference::InferenceError;

    use super::understand;

    fn req(path: &str, body: &str) -> Request {
        let mut r = Request {
            method: "POST".into(),
            path: path.into(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        };
        r.headers
            .insert("content-type".into(), "application/json".into());
        r
    }

    fn chat(body: &str) -> Result<crate::domain::Action, InferenceError> {
        understand("/v1/chat/completions", &req("/v1/chat/completions", body))
    }

    #[test]
    fn chat_with_text_and_image_parts() {
        let a = chat(
            r#"{
              "model": "mistral-7b-instruct",
              "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [
                  {"type": "text", "text": "What is in this image?"},
                  {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                  {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"q\": \"x\"}"}}
                ]}
              ],
              "max_tokens": 256,
              "n": 2
            }"#,
        )
        .unwrap();
        assert_eq!(a.name, "llm-chat");
        assert_eq!(a.api, Some(ApiKind::Llm));
        assert_eq!(a.model.as_deref(), Some("mistral-7b-instruct"));
        assert_eq!(a.image_number, Some(2));
        assert_eq!(a.max_tokens, Some(256));
        assert_eq!(a.prompt.as_deref(), Some("What is in this image?"));
        assert_eq!(
            a.prompts,
            ["You are terse.", "What is in this image?", "{\"q\": \"x\"}"]
        );
        assert_eq!(a.urls, ["https://example.com/cat.png"]);
        assert!(a.loras.is_empty());
        assert!(a.permissions.is_empty());
    }

    #[test]
    fn chat_defaults_aliases_and_best_of() {
        let a = chat(r#"{"messages": [{"role": "user", "content": "hi"}]}"#).unwrap();
        assert_eq!(
            (a.image_number, a.max_tokens, a.model),
            (Some(1), None, None)
        );
        let a = chat(
            r#"{"messages": "raw prompt", "max_completion_tokens": "64", "n": 1, "best_of": 3}"#,
        )
        .unwrap();
        assert_eq!(a.prompts, ["raw prompt"]);
        assert_eq!(a.max_tokens, Some(64));
        assert_eq!(a.image_number, Some(3));
        let a = chat(r#"{"messages": [], "n": 4, "best_of": 2, "max_tokens": null}"#).unwrap();
        assert_eq!((a.image_number, a.max_tokens), (Some(4), None));

        let err =
            chat(r#"{"messages": [], "max_tokens": 10, "max_completion_tokens": 10}"#).unwrap_err();
        assert!(matches!(err, InferenceError::Invalid { field, .. } if field == "max_tokens"));
        for bad in [
            r#"{"messages": [], "n": 0}"#,
            r#"{"messages": [], "n": 1.5}"#,
            r#"{"messages": [], "max_tokens": -1}"#,
            r#"{"messages": [], "max_tokens": 4.5}"#,
            r#"{"messages": 5}"#,
            r#"{"model": "m"}"#,
            r#"{"messages": [{"role": "user", "content": 7}]}"#,
            r#"{"messages": [{"role": "user", "content": [{"type": "text"}]}]}"#,
            r#"{"messages": [], "model": 3}"#,
        ] {
            assert!(
                matches!(chat(bad), Err(InferenceError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn mistralrs_adapters_are_loras() {
        let a = chat(r#"{"messages": [], "adapter": "sql-lora"}"#).unwrap();
        assert_eq!(a.loras, ["sql-lora"]);
        let a = chat(r#"{"messages": [], "adapter": {"generation": "ab12"}}"#).unwrap();
        assert_eq!(a.loras, ["generation:ab12"]);
        let a = chat(r#"{"messages": [], "adapters": ["a", "b", "a"]}"#).unwrap();
        assert_eq!(a.loras, ["a", "b"]);
        assert!(chat(r#"{"messages": [], "adapter": 5}"#).is_err());
        assert!(chat(r#"{"messages": [], "adapters": [5]}"#).is_err());
    }

    #[test]
    fn completions_count_every_prompt() {
        let p = "/v1/completions";
        let a = understand(
            p,
            &req(
                p,
                r#"{"model": "m", "prompt": "Once upon", "max_tokens": 16}"#,
            ),
        )
        .unwrap();
        assert_eq!(
            (a.name.as_str(), a.image_number, a.max_tokens),
            ("llm-completion", Some(1), Some(16))
        );
        assert_eq!(a.prompt.as_deref(), Some("Once upon"));
        let a = understand(
            p,
            &req(p, r#"{"prompt": ["a", "b", "c"], "n": 2, "best_of": 3}"#),
        )
        .unwrap();
        assert_eq!(a.image_number, Some(9));
        assert_eq!(a.prompts, ["a", "b", "c"]);
        for bad in [
            r#"{"prompt": [1, 2, 3]}"#,
            r#"{"prompt": []}"#,
            r#"{"n": 1}"#,
        ] {
            assert!(
                matches!(
                    understand(p, &req(p, bad)),
                    Err(InferenceError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn image_generation_and_embeddings() {
        let p = "/v1/images/generations";
        let a = understand(
            p,
            &req(p, r#"{"model": "flux", "prompt": "a red fox", "n": 3}"#),
        )
        .unwrap();
        assert_eq!(a.name, "image-generation");
        assert_eq!(a.api, Some(ApiKind::Image));
        assert_eq!(
            (a.image_number, a.width, a.height),
            (Some(3), Some(1280), Some(720))
        );
        let a = understand(
            p,
            &req(p, r#"{"prompt": "x", "width": 512, "height": "512"}"#),
        )
        .unwrap();
        assert_eq!((a.width, a.height), (Some(512), Some(512)));
        assert!(understand(p, &req(p, r#"{"n": 1}"#)).is_err());

        let p = "/v1/embeddings";
        let a = understand(p, &req(p, r#"{"model": "e5", "input": ["one", "two"]}"#)).unwrap();
        assert_eq!(
            (a.name.as_str(), a.image_number),
            ("llm-embedding", Some(2))
        );
        assert_eq!(a.prompts, ["one", "two"]);
    }

    #[test]
    fn kind_from_path_suffix_or_shape() {
        let a = understand(
            "/llm/v1/chat/completions",
            &req("/x", r#"{"messages": []}"#),
        )
        .unwrap();
        assert_eq!(a.name, "llm-chat");
        let a = understand("/custom", &req("/custom", r#"{"prompt": "x"}"#)).unwrap();
        assert_eq!(a.name, "llm-completion");
        assert!(matches!(
            understand("/custom", &req("/custom", r#"{"foo": 1}"#)),
            Err(InferenceError::Malformed(_))
        ));
    }

    #[test]
    fn content_type_and_garbage() {
        let mut r = req("/v1/chat/completions", r#"{"messages": []}"#);
        r.headers.insert("content-type".into(), "text/plain".into());
        assert!(matches!(
            understand("/v1/chat/completions", &r),
            Err(InferenceError::Malformed(_))
        ));
        r.headers.remove("content-type");
        assert!(understand("/v1/chat/completions", &r).is_ok());
        for garbage in ["", "null", "[]", "{", "\u{0}", &"[".repeat(10_000)] {
            assert!(
                matches!(chat(garbage), Err(InferenceError::Malformed(_))),
                "{}",
                garbage.len()
            );
        }
    }
}
