//! text-generation-inference bodies (`router/src/lib.rs`, `server.rs`).
//!
//! The model is the server's `--model-id`, so `model` is left unknown; on the OpenAI-style
//! routes TGI turns `model` into the LoRA `adapter_id` unless it is `"tgi"`. `n` is parsed
//! but unused (one choice); `best_of` asks for that many generations; a completion makes one
//! generation per prompt.

use crate::inference::json::Value;

use crate::domain::{Action, ApiKind, Request};

use super::InferenceError;
use super::json::{Obj, invalid};
use super::llm::{self, Ask};

/// Understands a TGI request at `path` (percent-decoded).
pub(super) fn understand(path: &str, req: &Request) -> Result<Action, InferenceError> {
    let map = llm::body(req)?;
    let obj = &Obj::root(&map);
    let mut ask = Ask::default();
    let name = if path == "/" || path.ends_with("/generate") || path.ends_with("/generate_stream") {
        generate(&mut ask, obj)?
    } else if path.ends_with("/chat/completions") {
        chat(&mut ask, obj)?
    } else if path.ends_with("/completions") {
        completion(&mut ask, obj)?
    } else if path.ends_with("/vertex") {
        vertex(&mut ask, obj)?
    } else {
        // `/invocations` (SageMaker) is untagged Generate | Chat | Completion, tried in that
        // order; unknown paths are read the same way.
        untagged(&mut ask, obj)?
    };
    Ok(ask.into_action(name, ApiKind::Llm))
}

fn untagged(ask: &mut Ask, obj: &Obj<'_>) -> Result<&'static str, InferenceError> {
    if obj.has("inputs") {
        generate(ask, obj)
    } else if obj.has("messages") {
        chat(ask, obj)
    } else if obj.has("prompt") {
        completion(ask, obj)
    } else {
        Err(InferenceError::Malformed(
            "the body is not a TGI generate, chat or completion request".into(),
        ))
    }
}

/// `{inputs, parameters: {max_new_tokens, best_of, adapter_id, …}}`.
fn generate(ask: &mut Ask, obj: &Obj<'_>) -> Result<&'static str, InferenceError> {
    let inputs = obj
        .string("inputs")?
        .ok_or_else(|| invalid("inputs", "is required"))?;
    ask.prompts.push(inputs.to_string());
    ask.prompt = Some(inputs.to_string());
    let mut choices = 1;
    if let Some(params) = obj.object("parameters")? {
        let p = &Obj::nested(params, "parameters");
        ask.max_tokens = p
            .nullable_int("max_new_tokens", 0..=i64::from(u32::MAX))?
            .map(|n| n as u64);
        choices = llm::count(p, "best_of")?.unwrap_or(1);
        if let Some(adapter) = p.nullable_string("adapter_id")?.filter(|a| !a.is_empty()) {
            ask.adapters.push(adapter.to_string());
        }
    }
    ask.choices = ask.choices.saturating_add(choices);
    Ok("llm-generate")
}

/// `model` on the OpenAI-style routes: a LoRA adapter unless it is `"tgi"`.
fn model_adapter(ask: &mut Ask, obj: &Obj<'_>) -> Result<(), InferenceError> {
    if let Some(model) = obj
        .nullable_string("model")?
        .filter(|m| *m != "tgi" && !m.is_empty())
    {
        ask.adapters.push(model.to_string());
    }
    Ok(())
}

fn chat(ask: &mut Ask, obj: &Obj<'_>) -> Result<&'static str, InferenceError> {
    model_adapter(ask, obj)?;
    ask.messages(obj, false)?;
    let max = llm::max_tokens(obj)?;
    ask.max_tokens = max_of(ask.max_tokens, max, ask.choices == 0);
    ask.choices = ask.choices.saturating_add(1);
    Ok("llm-chat")
}

fn completion(ask: &mut Ask, obj: &Obj<'_>) -> Result<&'static str, InferenceError> {
    model_adapter(ask, obj)?;
    let prompts = ask.prompt_list(obj, "prompt")?;
    let max = llm::max_tokens(obj)?;
    ask.max_tokens = max_of(ask.max_tokens, max, ask.choices == 0);
    ask.choices = ask.choices.saturating_add(prompts);
    Ok("llm-completion")
}

/// The larger budget; an absent one means the server's limit, which is larger than any.
fn max_of(current: Option<u64>, new: Option<u64>, first: bool) -> Option<u64> {
    if first {
        return new;
    }
    Some(current?.max(new?))
}

/// `{instances: [GenerateVertexInstance | ChatRequest, …]}`: every instance is a generation.
fn vertex(ask: &mut Ask, obj: &Obj<'_>) -> Result<&'static str, InferenceError> {
    let instances = obj
        .array("instances")?
        .ok_or_else(|| invalid("instances", "is required"))?;
    if instances.is_empty() {
        return Err(invalid("instances", "must not be empty"));
    }
    for (i, instance) in instances.iter().enumerate() {
        let path = format!("instances[{i}]");
        let Value::Object(map) = instance else {
            return Err(invalid(path, "must be an object"));
        };
        let inst = &Obj::nested(map, path.clone());
        let mut one = Ask::default();
        if inst.has("inputs") {
            generate(&mut one, inst)?;
        } else {
            chat(&mut one, inst)?;
        }
        let first = ask.choices == 0;
        ask.max_tokens = max_of(ask.max_tokens, one.max_tokens, first);
        ask.choices = ask.choices.saturating_add(one.choices);
        ask.prompts.append(&mut one.prompts);
        ask.urls.append(&mut one.urls);
        ask.adapters.append(&mut one.adapters);
        if ask.prompt.is_none() {
            ask.prompt = one.prompt;
        }
    }
    Ok("llm-generate")
}

#[cfg(test)]
mod tests {
    use crate::domain::{Action, ApiKind, Request};
    use crate::inference::InferenceError;

    use super::understand;

    fn run(path: &str, body: &str) -> Result<Action, InferenceError> {
        let mut r = Request {
            method: "POST".into(),
            path: path.into(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        };
        r.headers
            .insert("content-type".into(), "application/json".into());
        understand(path, &r)
    }

    #[test]
    fn generate_reads_parameters() {
        let a = run(
            "/generate",
            r#"{"inputs": "What is Deep Learning?", "parameters": {"max_new_tokens": 20, "best_of": 2, "adapter_id": "predibase/customer_support", "do_sample": true}}"#,
        )
        .unwrap();
        assert_eq!(a.name, "llm-generate");
        assert_eq!(a.api, Some(ApiKind::Llm));
        assert_eq!(a.prompts, ["What is Deep Learning?"]);
        assert_eq!(a.prompt.as_deref(), Some("What is Deep Learning?"));
        assert_eq!((a.max_tokens, a.image_number), (Some(20), Some(2)));
        assert_eq!(a.loras, ["predibase/customer_support"]);
        assert_eq!(a.model, None);

        let a = run("/generate_stream", r#"{"inputs": "x"}"#).unwrap();
        assert_eq!((a.max_tokens, a.image_number), (None, Some(1)));
        let a = run(
            "/",
            r#"{"inputs": "x", "parameters": {"max_new_tokens": null}, "stream": true}"#,
        )
        .unwrap();
        assert_eq!(a.name, "llm-generate");
        assert_eq!(a.max_tokens, None);

        for bad in [
            r#"{"parameters": {}}"#,
            r#"{"inputs": 5}"#,
            r#"{"inputs": "x", "parameters": null}"#,
            r#"{"inputs": "x", "parameters": {"best_of": 0}}"#,
            r#"{"inputs": "x", "parameters": {"max_new_tokens": 2.5}}"#,
        ] {
            assert!(
                matches!(run("/generate", bad), Err(InferenceError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn chat_model_is_an_adapter_unless_tgi() {
        let a = run(
            "/v1/chat/completions",
            r#"{"model": "tgi", "messages": [{"role": "user", "content": "hi"}], "n": 5, "max_tokens": 30}"#,
        )
        .unwrap();
        assert_eq!(a.name, "llm-chat");
        assert!(a.loras.is_empty());
        assert_eq!(
            (a.image_number, a.max_tokens, a.model),
            (Some(1), Some(30), None)
        );
        let a = run(
            "/v1/chat/completions",
            r#"{"model": "my-lora", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "http://internal/x.png"}}]}], "max_completion_tokens": 9}"#,
        )
        .unwrap();
        assert_eq!(a.loras, ["my-lora"]);
        assert_eq!(a.urls, ["http://internal/x.png"]);
        assert_eq!(a.max_tokens, Some(9));
        // TGI takes no bare-string messages.
        assert!(run("/v1/chat/completions", r#"{"messages": "hi"}"#).is_err());
        assert!(
            run(
                "/v1/chat/completions",
                r#"{"messages": [], "max_tokens": 1, "max_completion_tokens": 1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn completions_make_one_generation_per_prompt() {
        let a = run(
            "/v1/completions",
            r#"{"model": "adapter-a", "prompt": ["a", "b"], "max_tokens": 5}"#,
        )
        .unwrap();
        assert_eq!(
            (a.name.as_str(), a.image_number, a.max_tokens),
            ("llm-completion", Some(2), Some(5))
        );
        assert_eq!(a.loras, ["adapter-a"]);
    }

    #[test]
    fn vertex_and_invocations() {
        let a = run(
            "/vertex",
            r#"{"instances": [
                {"inputs": "one", "parameters": {"max_new_tokens": 10, "best_of": 2}},
                {"messages": [{"role": "user", "content": "two"}], "max_tokens": 50, "model": "l1"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(a.image_number, Some(3));
        assert_eq!(a.max_tokens, Some(50));
        assert_eq!(a.prompts, ["one", "two"]);
        assert_eq!(a.loras, ["l1"]);
        let a = run("/vertex", r#"{"instances": [{"inputs": "a", "parameters": {"max_new_tokens": 10}}, {"inputs": "b"}]}"#).unwrap();
        assert_eq!(a.max_tokens, None);
        assert!(run("/vertex", r#"{"instances": []}"#).is_err());

        let a = run("/invocations", r#"{"inputs": "x", "messages": []}"#).unwrap();
        assert_eq!(a.name, "llm-generate");
        let a = run(
            "/invocations",
            r#"{"messages": [{"role": "user", "content": "q"}]}"#,
        )
        .unwrap();
        assert_eq!(a.name, "llm-chat");
        let a = run("/invocations", r#"{"prompt": "q"}"#).unwrap();
        assert_eq!(a.name, "llm-completion");
        assert!(matches!(
            run("/invocations", r#"{"x": 1}"#),
            Err(InferenceError::Malformed(_))
        ));
    }
}
