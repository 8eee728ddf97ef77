//! candle-llm: a small OpenAI-compatible LLM server on candle, for running a real model
//! behind inferguard (the demo and the end-to-end tests). It loads one GGUF file (llama
//! architecture, byte-level BPE tokenizer and ChatML template read from the file itself) and
//! answers only requests that carry the upstream key inferguard injects.

pub mod api;
pub mod auth;
pub mod chat;
pub mod engine;
pub mod error;
pub mod gguf_meta;
pub mod server;
pub mod tokenizer;
