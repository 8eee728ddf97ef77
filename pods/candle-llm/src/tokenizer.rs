//! The GGUF's byte-level BPE tokenizer, rebuilt with the `tokenizers` crate from the vocabulary
//! and merges in the file (nothing is downloaded).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::PodError;
use crate::gguf_meta::ModelMeta;

/// Builds the tokenizer llama.cpp would use for this file: BPE over GPT-2's byte-level
/// alphabet, the GPT-2 split regex (llama.cpp's `smollm` pre-tokenizer also splits every digit
/// alone), control tokens matched whole.
pub fn from_meta(meta: &ModelMeta) -> Result<Tokenizer, PodError> {
    let vocab: Vocab = meta
        .tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), id as u32))
        .collect();
    if vocab.len() != meta.tokens.len() {
        return Err(PodError::Model("duplicate tokens in the vocabulary".into()));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, meta.merges.clone())
        .build()
        .map_err(|e| PodError::Tokenizer(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(bpe);
    // add_prefix_space false (tokenizer.ggml.add_space_prefix), the GPT-2 regex on.
    let byte_level = ByteLevel::new(false, true, true);
    let pre: PreTokenizerWrapper = match meta.pre_tokenizer.as_str() {
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        "gpt2" | "default" => byte_level.into(),
        other => {
            return Err(PodError::Model(format!(
                "pre-tokenizer {other:?} is not supported (smollm, gpt2)"
            )));
        }
    };
    tokenizer.with_pre_tokenizer(Some(pre));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = meta
        .tokens
        .iter()
        .zip(&meta.control)
        .filter(|(_, control)| **control)
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    // Text is always text: "<|im_start|>" typed by a caller is encoded as plain characters, never
    // as the control token, so message content cannot forge a role turn. Control tokens enter
    // a prompt only as ids placed by the chat template (see crate::chat).
    tokenizer.set_encode_special_tokens(true);
    Ok(tokenizer)
}
