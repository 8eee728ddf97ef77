//! An external DLP (data-loss prevention) service, asked about every prompt.
//!
//! Protocol: `POST <url>` with `{"prompts": ["…", …]}` (every prompt text, the negative prompt
//! included) and, when `token_env` is set, `Authorization: Bearer <value of that variable>`.
//! The service answers 2xx with `{"allow": true|false, "categories": ["…"]}`. A refusal is
//! 400 `content_blocked` naming the categories; anything else (timeout, connection error,
//! non-2xx status, a body that is not that JSON or over 64 KiB) is 503 `dlp_unavailable`: the
//! check fails closed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Denial, DenyKind};

/// Longest accepted answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The `content.dlp` settings.
#[derive(Debug, Clone)]
pub struct DlpSpec {
    /// `http://` or `https://` URL of the service.
    pub url: String,
    /// Time allowed for the whole exchange.
    pub timeout_ms: u64,
    /// Environment variable holding a bearer token for the service.
    pub token_env: Option<String>,
}

/// Why the DLP settings are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlpError {
    #[error("dlp.url `{0}` is not an http(s) URL")]
    BadUrl(String),
    #[error("dlp.timeout_ms must be between 1 and 30000")]
    BadTimeout,
    #[error("dlp: cannot build the HTTP client: {0}")]
    Client(String),
}

/// A configured DLP client.
#[derive(Debug, Clone)]
pub struct DlpClient {
    url: reqwest::Url,
    token_env: Option<String>,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct Ask<'a> {
    prompts: &'a [&'a str],
}

#[derive(Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    categories: Vec<String>,
}

impl DlpClient {
    /// Validates the settings and builds the client (no request is made).
    pub fn new(spec: &DlpSpec) -> Result<DlpClient, DlpError> {
        let url = reqwest::Url::parse(&spec.url).map_err(|_| DlpError::BadUrl(spec.url.clone()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(DlpError::BadUrl(spec.url.clone()));
        }
        if !(1..=30_000).contains(&spec.timeout_ms) {
            return Err(DlpError::BadTimeout);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(spec.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DlpError::Client(e.to_string()))?;
        Ok(DlpClient {
            url,
            token_env: spec.token_env.clone(),
            http,
        })
    }

    /// Asks the service about `prompts`.
    pub async fn check(&self, prompts: &[&str]) -> Result<(), Denial> {
        let answer = self.ask(prompts).await.map_err(|why| {
            // The reason is ours (never the service's body or the prompts).
            tracing::warn!(reason = %why, "DLP check failed; refusing (fail closed)");
            Denial::new(
                DenyKind::Unavailable,
                "dlp_unavailable",
                "the content inspection service did not answer; try again",
            )
            .with_rule("content.dlp")
        })?;
        if answer.allow {
            return Ok(());
        }
        let categories: Vec<String> = answer
            .categories
            .iter()
            .filter_map(|c| safe_category(c))
            .take(5)
            .collect();
        let reason = if categories.is_empty() {
            "the content inspection service refused the prompt".to_string()
        } else {
            format!(
                "the content inspection service refused the prompt: {}",
                categories.join(", ")
            )
        };
        Err(Denial::new(DenyKind::BadRequest, "content_blocked", reason).with_rule("content.dlp"))
    }

    async fn ask(&self, prompts: &[&str]) -> Result<Answer, String> {
        let mut req = self.http.post(self.url.clone()).json(&Ask { prompts });
        if let Some(var) = &self.token_env {
            let token = std::env::var(var).map_err(|_| format!("{var} is not set"))?;
            req = req.bearer_auth(token.trim());
        }
        let mut resp = req.send().await.map_err(|e| kind_of(&e))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| kind_of(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err("answer too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| "the answer is not the expected JSON".into())
    }
}

fn kind_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// A category name fit for a refusal body: short, and only letters, digits and `_.:-`.
fn safe_category(c: &str) -> Option<String> {
    let ok = !c.is_empty()
        && c.len() <= 40
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | ':' | '-'));
    ok.then(|| c.to_string())
}
