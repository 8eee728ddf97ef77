//! The HTTP API: `/v1/chat/completions` (JSON or server-sent events), `/v1/completions`,
//! `/v1/models`, behind the upstream-key check; `/healthz` open (it says only "ok").
//!
//! Usage is reported in the body (`usage`) and, for non-streamed answers, in the headers
//! `x-usage-prompt-tokens`, `x-usage-completion-tokens` and `x-usage-total-tokens`, which
//! Envoy's access log can record next to the `x-request-id` that inferguard's audit record
//! carries. A stream knows only its prompt size when headers leave (`x-usage-prompt-tokens`);
//! its full usage is in the last event (`stream_options.include_usage`) and the pod's log line.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{ChatRequest, CompletionRequest, Resolved, Usage};
use crate::auth::{UpstreamKey, require_key};
use crate::chat::{ChatTemplate, Message};
use crate::engine::{Engine, Generated};
use crate::error::PodError;

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The model name served (`/v1/models`, `model` of answers; requests naming another are refused).
    pub model_id: String,
    /// `max_tokens` when a request names none.
    pub default_max_tokens: usize,
    /// The largest `max_tokens` accepted.
    pub max_tokens: usize,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    engine: Arc<Mutex<Engine>>,
    tokenizer: Arc<Tokenizer>,
    template: Arc<ChatTemplate>,
    context: usize,
    config: Arc<ApiConfig>,
    created: u64,
    counter: Arc<AtomicU64>,
}

impl AppState {
    /// State around a loaded engine.
    pub fn new(engine: Engine, config: ApiConfig) -> Self {
        AppState {
            tokenizer: Arc::new(engine.tokenizer().clone()),
            template: Arc::new(engine.template().clone()),
            context: engine.context_length(),
            engine: Arc::new(Mutex::new(engine)),
            config: Arc::new(config),
            created: unix_now(),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The router: every `/v1/*` route needs the upstream key.
pub fn router(state: AppState, key: UpstreamKey) -> Router {
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(key, require_key));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An OpenAI-style error answer.
pub fn openai_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": kind, "code": Value::Null}})),
    )
        .into_response()
}

fn error_response(e: &PodError) -> Response {
    match e {
        PodError::BadRequest(m) => {
            openai_error(StatusCode::BAD_REQUEST, "invalid_request_error", m)
        }
        other => {
            tracing::error!(error = %other, "generation failed");
            openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "generation failed",
            )
        }
    }
}

async fn models(State(s): State<AppState>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": s.config.model_id, "object": "model", "created": s.created, "owned_by": "candle-llm"}],
    }))
    .into_response()
}

/// What kind of answer a generation becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

async fn chat_completions(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<ChatRequest>(&body)
        .map_err(|e| PodError::BadRequest(format!("invalid body: {e}")))
        .and_then(|req| {
            check_model(&s, req.model.as_deref())?;
            if req.messages.is_empty() {
                return Err(PodError::BadRequest("messages is empty".into()));
            }
            let messages = req
                .messages
                .iter()
                .map(|m| m.to_message())
                .collect::<Result<Vec<Message>, _>>()?;
            let prompt = s.template.render(&s.tokenizer, &messages)?;
            Ok((
                prompt,
                req.params
                    .resolve(s.config.default_max_tokens, s.config.max_tokens)?,
            ))
        });
    match parsed {
        Ok((prompt, resolved)) => generate(s, headers, Kind::Chat, prompt, resolved).await,
        Err(e) => error_response(&e),
    }
}

async fn completions(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<CompletionRequest>(&body)
        .map_err(|e| PodError::BadRequest(format!("invalid body: {e}")))
        .and_then(|req| {
            check_model(&s, req.model.as_deref())?;
            let prompt = crate::chat::encode_text(&s.tokenizer, &req.prompt)?;
            Ok((
                prompt,
                req.params
                    .resolve(s.config.default_max_tokens, s.config.max_tokens)?,
            ))
        });
    match parsed {
        Ok((prompt, resolved)) => generate(s, headers, Kind::Text, prompt, resolved).await,
        Err(e) => error_response(&e),
    }
}

fn check_model(s: &AppState, model: Option<&str>) -> Result<(), PodError> {
    match model {
        Some(m) if m != s.config.model_id => Err(PodError::BadRequest(format!(
            "model {m:?} is not served here (only {:?})",
            s.config.model_id
        ))),
        _ => Ok(()),
    }
}

/// The id of an answer: the request id Envoy set (so the answer, the access log and
/// inferguard's audit record share it), else a counter.
fn answer_id(s: &AppState, headers: &HeaderMap, kind: Kind) -> (String, String) {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_string)
        .unwrap_or_else(|| format!("local-{}", s.counter.fetch_add(1, Ordering::Relaxed)));
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    (format!("{prefix}-{request_id}"), request_id)
}

async fn generate(
    s: AppState,
    headers: HeaderMap,
    kind: Kind,
    prompt: Vec<u32>,
    r: Resolved,
) -> Response {
    if prompt.len() + r.max_tokens > s.context {
        return error_response(&PodError::BadRequest(format!(
            "prompt ({} tokens) + max_tokens ({}) exceeds the context of {} tokens",
            prompt.len(),
            r.max_tokens,
            s.context
        )));
    }
    let (id, request_id) = answer_id(&s, &headers, kind);
    if r.stream {
        return stream(s, kind, id, request_id, prompt, r);
    }
    let engine = s.engine.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut engine = engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        engine.generate(&prompt, r.max_tokens, r.sampling, |_| true)
    })
    .await;
    let g = match result {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return error_response(&e),
        Err(e) => return error_response(&PodError::Model(format!("generation task: {e}"))),
    };
    log_generation(&request_id, &g);
    let usage = Usage::new(g.prompt_tokens, g.completion_tokens);
    let choice = match kind {
        Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": g.text},
                             "logprobs": Value::Null, "finish_reason": g.finish.as_str()}),
        Kind::Text => {
            json!({"index": 0, "text": g.text, "logprobs": Value::Null, "finish_reason": g.finish.as_str()})
        }
    };
    let body = json!({
        "id": id,
        "object": if kind == Kind::Chat { "chat.completion" } else { "text_completion" },
        "created": unix_now(),
        "model": s.config.model_id,
        "choices": [choice],
        "usage": usage,
    });
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    for (name, value) in [
        ("x-usage-prompt-tokens", usage.prompt_tokens),
        ("x-usage-completion-tokens", usage.completion_tokens),
        ("x-usage-total-tokens", usage.total_tokens),
    ] {
        h.insert(name, HeaderValue::from(value));
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "prefill;dur={:.1}, decode;dur={:.1}",
        g.prefill.as_secs_f64() * 1e3,
        g.decode.as_secs_f64() * 1e3
    )) {
        h.insert("server-timing", v);
    }
    response
}

fn log_generation(request_id: &str, g: &Generated) {
    let secs = g.decode.as_secs_f64();
    let tps = if secs > 0.0 {
        g.completion_tokens as f64 / secs
    } else {
        0.0
    };
    tracing::info!(
        request_id,
        prompt_tokens = g.prompt_tokens,
        completion_tokens = g.completion_tokens,
        total_tokens = g.prompt_tokens + g.completion_tokens,
        finish = ?g.finish,
        prefill_ms = (g.prefill.as_secs_f64() * 1e3) as u64,
        tokens_per_second = format!("{tps:.1}"),
        "generated"
    );
}

fn stream(
    s: AppState,
    kind: Kind,
    id: String,
    request_id: String,
    prompt: Vec<u32>,
    r: Resolved,
) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let created = unix_now();
    let model = s.config.model_id.clone();
    let prompt_tokens = prompt.len();
    let chunk = move |content: Option<&str>, finish: Option<&str>, usage: Option<Usage>| -> Event {
        let choices = match (kind, usage) {
            (_, Some(_)) => json!([]),
            (Kind::Chat, None) => {
                let delta = match content {
                    Some(c) => json!({"content": c}),
                    None if finish.is_none() => json!({"role": "assistant", "content": ""}),
                    None => json!({}),
                };
                json!([{"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish}])
            }
            (Kind::Text, None) => {
                json!([{"index": 0, "text": content.unwrap_or(""), "logprobs": Value::Null, "finish_reason": finish}])
            }
        };
        let mut body = json!({
            "id": id,
            "object": if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": created,
            "model": model,
            "choices": choices,
        });
        if let Some(u) = usage {
            body["usage"] = json!(u);
        }
        Event::default().data(body.to_string())
    };
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || {
        if kind == Kind::Chat && tx.blocking_send(chunk(None, None, None)).is_err() {
            return;
        }
        let mut engine = engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = engine.generate(&prompt, r.max_tokens, r.sampling, |piece| {
            tx.blocking_send(chunk(Some(piece), None, None)).is_ok()
        });
        drop(engine);
        match result {
            Ok(g) => {
                log_generation(&request_id, &g);
                let _ = tx.blocking_send(chunk(None, Some(g.finish.as_str()), None));
                if r.include_usage {
                    let usage = Usage::new(g.prompt_tokens, g.completion_tokens);
                    let _ = tx.blocking_send(chunk(None, None, Some(usage)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, request_id, "streamed generation failed");
                let _ = tx.blocking_send(
                    Event::default().data(
                        json!({"error": {"message": "generation failed", "type": "server_error"}})
                            .to_string(),
                    ),
                );
            }
        }
        let _ = tx.blocking_send(Event::default().data("[DONE]"));
    });
    let events = tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok::<Event, Infallible>);
    let mut response = Sse::new(events).into_response();
    response
        .headers_mut()
        .insert("x-usage-prompt-tokens", HeaderValue::from(prompt_tokens));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}
