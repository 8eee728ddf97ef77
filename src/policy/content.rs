//! Content filters (`content:` in policy.yaml): forbidden terms, PII detectors and an optional
//! external DLP service.
//!
//! Which texts are read:
//! - forbidden terms: every text the model reads as a positive prompt (`Action::prompts` and the
//!   main prompt), not the negative prompt — listing a concept in a negative prompt steers the
//!   model *away* from it, and brand-safety policies ask for exactly that;
//! - PII detectors and the DLP service: every prompt text, the negative prompt included.
//!
//! A refusal is 400 `content_blocked`; its reason names the category ("the prompt contains a
//! forbidden term", "the prompt contains PII: credit_card") and never the matched text.
//! See [`terms`] and [`pii`] for exactly what matches.

mod dlp;
mod normalize;
pub mod pii;
mod terms;

use std::collections::BTreeMap;

pub use dlp::{DlpClient, DlpError, DlpSpec};
pub use pii::PiiCategory;
pub use terms::{ForbiddenTerms, TermError};

use crate::domain::{Action, Denial, DenyKind};

/// What to do when a PII detector matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiAction {
    /// Refuse the request (400 `content_blocked`).
    Deny,
    /// Let it through; the audit trail gets the text with the match replaced.
    Redact,
}

impl PiiAction {
    /// The action named `name` in policy.yaml.
    pub fn parse(name: &str) -> Option<PiiAction> {
        match name {
            "deny" => Some(PiiAction::Deny),
            "redact" => Some(PiiAction::Redact),
            _ => None,
        }
    }
}

/// The `content:` section, before compilation.
#[derive(Debug, Clone, Default)]
pub struct ContentSpec {
    pub forbidden_terms: Vec<String>,
    pub pii: BTreeMap<PiiCategory, PiiAction>,
    pub dlp: Option<DlpSpec>,
}

/// Why the `content:` section cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Term(#[from] TermError),
    #[error(transparent)]
    Dlp(#[from] DlpError),
}

/// The compiled content filters.
#[derive(Debug, Clone, Default)]
pub struct ContentPolicy {
    terms: ForbiddenTerms,
    pii: BTreeMap<PiiCategory, PiiAction>,
    dlp: Option<DlpClient>,
}

/// What the content scan found in one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentFindings {
    /// PII categories found by the configured detectors (deny and redact alike), in the order
    /// email, credit_card, us_ssn, phone, iban. This is `request.pii` for rules.
    pub pii: Vec<&'static str>,
    /// True when a forbidden term was found.
    pub forbidden_term: bool,
    /// The refusal, when a forbidden term or a `deny` PII category was found.
    pub denied: Option<Denial>,
}

impl ContentPolicy {
    /// Compiles the section.
    pub fn compile(spec: ContentSpec) -> Result<ContentPolicy, ContentError> {
        Ok(ContentPolicy {
            terms: ForbiddenTerms::new(&spec.forbidden_terms)?,
            pii: spec.pii,
            dlp: spec.dlp.as_ref().map(DlpClient::new).transpose()?,
        })
    }

    /// True when no filter is configured.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty() && self.pii.is_empty() && self.dlp.is_none()
    }

    /// True when at least one PII detector is enabled.
    pub fn detects_pii(&self) -> bool {
        !self.pii.is_empty()
    }

    /// True when a DLP service is configured.
    pub fn has_dlp(&self) -> bool {
        self.dlp.is_some()
    }

    /// Scans the request's texts with the forbidden terms and the enabled PII detectors.
    pub fn scan(&self, action: &Action) -> ContentFindings {
        let mut findings = ContentFindings::default();
        if !self.terms.is_empty() && positive_texts(action).any(|t| self.terms.matches(t)) {
            findings.forbidden_term = true;
            findings.denied = Some(
                Denial::new(
                    DenyKind::BadRequest,
                    "content_blocked",
                    "the prompt contains a forbidden term",
                )
                .with_rule("content.forbidden_terms"),
            );
        }
        if self.pii.is_empty() {
            return findings;
        }
        let mut found = [false; PiiCategory::ALL.len()];
        for text in all_texts(action) {
            for hit in pii::detect(&normalize::View::new(text)) {
                if self.pii.contains_key(&hit.category) {
                    found[hit.category as usize] = true;
                }
            }
        }
        let found: Vec<PiiCategory> = PiiCategory::ALL
            .into_iter()
            .filter(|c| found[*c as usize])
            .collect();
        findings.pii = found.iter().map(|c| c.as_str()).collect();
        let denied: Vec<&str> = found
            .iter()
            .filter(|c| self.pii.get(c) == Some(&PiiAction::Deny))
            .map(|c| c.as_str())
            .collect();
        if findings.denied.is_none() && !denied.is_empty() {
            findings.denied = Some(
                Denial::new(
                    DenyKind::BadRequest,
                    "content_blocked",
                    format!("the prompt contains PII: {}", denied.join(", ")),
                )
                .with_rule(format!("content.pii.{}", denied[0])),
            );
        }
        findings
    }

    /// `text` with every match of the enabled PII detectors replaced by
    /// `[REDACTED:category]`, for the audit trail. Text outside the matches is unchanged.
    pub fn redact(&self, text: &str) -> String {
        if self.pii.is_empty() {
            return text.to_string();
        }
        let view = normalize::View::new(text);
        let mut spans: Vec<(usize, usize, PiiCategory)> = pii::detect(&view)
            .into_iter()
            .filter(|h| self.pii.contains_key(&h.category) && h.end > h.start)
            .map(|h| (view.origin[h.start].0, view.origin[h.end - 1].1, h.category))
            .collect();
        if spans.is_empty() {
            return text.to_string();
        }
        spans.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut i = 0;
        while i < spans.len() {
            let (start, mut end, category) = spans[i];
            i += 1;
            while i < spans.len() && spans[i].0 < end {
                end = end.max(spans[i].1);
                i += 1;
            }
            out.push_str(&text[pos..start]);
            out.push_str("[REDACTED:");
            out.push_str(category.as_str());
            out.push(']');
            pos = end;
        }
        out.push_str(&text[pos..]);
        out
    }

    /// Asks the configured DLP service about every prompt text; `Ok` when none is configured
    /// or the request has no text.
    pub async fn check_dlp(&self, action: &Action) -> Result<(), Denial> {
        let Some(dlp) = &self.dlp else {
            return Ok(());
        };
        let texts: Vec<&str> = all_texts(action).collect();
        if texts.is_empty() {
            return Ok(());
        }
        dlp.check(&texts).await
    }
}

/// The main prompt (when not among `prompts`) and `prompts`, without empty ones.
pub(crate) fn positive_texts(action: &Action) -> impl Iterator<Item = &str> {
    let main = action
        .prompt
        .as_deref()
        .filter(|p| !action.prompts.iter().any(|q| q == p));
    main.into_iter()
        .chain(action.prompts.iter().map(String::as_str))
        .filter(|t| !t.trim().is_empty())
}

/// Every prompt text, the negative prompt included.
fn all_texts(action: &Action) -> impl Iterator<Item = &str> {
    let negative = action
        .negative_prompt
        .as_deref()
        .filter(|n| !n.trim().is_empty());
    positive_texts(action).chain(negative)
}

#[cfg(test)]
mod tests;
