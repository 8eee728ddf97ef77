//! Generation: the quantized llama weights, the tokenizer and the chat template of one GGUF
//! file, and the decoding loop.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use tokenizers::Tokenizer;

use crate::chat::{self, ChatTemplate, Message};
use crate::error::PodError;
use crate::gguf_meta::ModelMeta;

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 (or absent) = greedy (argmax): deterministic.
    pub temperature: f64,
    /// Nucleus sampling mass, when below 1.
    pub top_p: Option<f64>,
    /// Seed of the sampler (used only when temperature > 0).
    pub seed: u64,
}

/// Why generation stopped (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The receiver of the tokens went away (client disconnected).
    Cancelled,
}

impl Finish {
    /// The OpenAI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length | Finish::Cancelled => "length",
        }
    }
}

/// The outcome of one generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The whole generated text.
    pub text: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the end-of-turn token included when the model produced it).
    pub completion_tokens: usize,
    /// Why it stopped.
    pub finish: Finish,
    /// Time to process the prompt (prefill).
    pub prefill: Duration,
    /// Time spent generating after the prefill.
    pub decode: Duration,
}

/// How the weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// Dequantized to f32 at load (the default): plain matrix products, the output of the
    /// unquantized model for the quantized file's weights. For a 135M model that is about
    /// 0.6 GB, and on CPU both prefill and decoding are faster than candle's quantized kernels.
    #[default]
    F32,
    /// Kept as stored (Q4_1 here): less memory; candle's quantized products also quantize the
    /// activations (to Q8_1), and SmolLM2-135M's greedy answers drift noticeably from it.
    Quantized,
}

/// A loaded model, ready to generate (one generation at a time: it holds the KV cache).
pub struct Engine {
    model: ModelWeights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop_ids: Vec<u32>,
    device: Device,
    context: usize,
    meta_name: String,
}

impl Engine {
    /// Loads a GGUF file (llama architecture, byte-level BPE tokenizer, ChatML template).
    pub fn load(path: &Path, device: Device, weights: Weights) -> Result<Self, PodError> {
        let mut file = std::fs::File::open(path)?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| PodError::Model(format!("{}: not a GGUF file: {e}", path.display())))?;
        let meta = ModelMeta::from_gguf(&content)?;
        let tokenizer = crate::tokenizer::from_meta(&meta)?;
        let template = ChatTemplate::from_meta(&meta)?;
        let model = match weights {
            Weights::Quantized => ModelWeights::from_gguf(content, &mut file, &device)?,
            Weights::F32 => dequantized(content, &mut file, &device)?,
        };
        let mut stop_ids = vec![meta.eos_token_id, template.end_of_turn()];
        if let Some(eot) = meta.token_id("<|endoftext|>") {
            stop_ids.push(eot);
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Engine {
            model,
            tokenizer,
            template,
            stop_ids,
            device,
            context: meta.context_length.min(MAX_SEQ_LEN),
            meta_name: meta.name,
        })
    }

    /// `general.name` of the file.
    pub fn model_name(&self) -> &str {
        &self.meta_name
    }

    /// The most tokens (prompt + completion) one generation can hold.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// The chat template in use.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The tokenizer in use.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// A chat's prompt ids.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, PodError> {
        self.template.render(&self.tokenizer, messages)
    }

    /// A raw completion prompt's ids.
    pub fn text_prompt(&self, prompt: &str) -> Result<Vec<u32>, PodError> {
        chat::encode_text(&self.tokenizer, prompt)
    }

    /// Generates up to `max_tokens` after `prompt`. `on_text` receives each new piece of text
    /// as soon as it is whole UTF-8; returning false stops generation ([`Finish::Cancelled`]).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: Sampling,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generated, PodError> {
        if prompt.is_empty() {
            return Err(PodError::BadRequest("the prompt is empty".into()));
        }
        if prompt.len() + max_tokens > self.context {
            return Err(PodError::BadRequest(format!(
                "prompt ({} tokens) + max_tokens ({max_tokens}) exceeds the context of {} tokens",
                prompt.len(),
                self.context
            )));
        }
        let temperature = (sampling.temperature > 0.0).then_some(sampling.temperature);
        let mut sampler = LogitsProcessor::new(sampling.seed, temperature, sampling.top_p);
        let mut decoder = self.tokenizer.decode_stream(true);
        let mut text = String::new();
        let mut generated = 0usize;
        let mut finish = Finish::Length;

        let started = Instant::now();
        // Position 0 resets the model's KV cache: every generation starts fresh.
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let mut logits = self.model.forward(&input, 0)?.squeeze(0)?;
        let prefill = started.elapsed();
        let decode_start = Instant::now();
        while generated < max_tokens {
            let next = sampler.sample(&logits)?;
            generated += 1;
            if self.stop_ids.contains(&next) {
                finish = Finish::Stop;
                break;
            }
            if let Some(piece) = decoder.step(next)? {
                text.push_str(&piece);
                if !on_text(&piece) {
                    finish = Finish::Cancelled;
                    break;
                }
            }
            if generated == max_tokens {
                break;
            }
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            logits = self
                .model
                .forward(&input, prompt.len() + generated - 1)?
                .squeeze(0)?;
        }
        Ok(Generated {
            text,
            prompt_tokens: prompt.len(),
            completion_tokens: generated,
            finish,
            prefill,
            decode: decode_start.elapsed(),
        })
    }
}

/// The model with every tensor converted to f32: candle's loader keeps f32 tensors as plain
/// matrices. The converted tensors go through an in-memory GGUF, the only input
/// `ModelWeights` takes.
fn dequantized(
    content: gguf_file::Content,
    file: &mut std::fs::File,
    device: &Device,
) -> Result<ModelWeights, PodError> {
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let q = content.tensor(file, name, device)?;
        let q = if q.dtype() == GgmlDType::F32 {
            q
        } else {
            QTensor::quantize(&q.dequantize(device)?, GgmlDType::F32)?
        };
        tensors.push((name.clone(), q));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buffer = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buffer, &metadata, &refs)?;
    drop(refs);
    drop(tensors);
    buffer.set_position(0);
    let converted = gguf_file::Content::read(&mut buffer)?;
    Ok(ModelWeights::from_gguf(converted, &mut buffer, device)?)
}
