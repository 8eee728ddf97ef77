//! The chat template of the GGUF file (ChatML: `<|im_start|>role\ncontent<|im_end|>\n`),
//! checked against the file's `tokenizer.chat_template` and rendered to token ids.
//!
//! The template is not run as Jinja: the pod verifies that the file's template is the ChatML
//! shape it implements and takes the default system prompt from it. The markers become their
//! control-token ids; everything a caller wrote is encoded as plain text (see
//! [`crate::tokenizer::from_meta`]), so content cannot forge a turn.

use tokenizers::Tokenizer;

use crate::error::PodError;
use crate::gguf_meta::ModelMeta;

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

/// The ChatML template of a model.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    im_start: u32,
    im_end: u32,
    default_system: Option<String>,
}

impl ChatTemplate {
    /// Checks that the file's template is ChatML and that its markers are control tokens.
    pub fn from_meta(meta: &ModelMeta) -> Result<Self, PodError> {
        let t = &meta.chat_template;
        for needle in [
            "'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'",
            "add_generation_prompt",
            "'<|im_start|>assistant\n'",
        ] {
            if !t.contains(needle) {
                return Err(PodError::Model(format!(
                    "the chat template is not ChatML (lacks {needle:?})"
                )));
            }
        }
        let control = |text: &str| {
            meta.token_id(text)
                .filter(|id| meta.control[*id as usize])
                .ok_or_else(|| PodError::Model(format!("{text} is not a control token")))
        };
        let default_system = if t.contains("messages[0]['role'] != 'system'") {
            let start = format!("{IM_START}system\n");
            t.split_once(start.as_str())
                .and_then(|(_, rest)| rest.split_once(IM_END))
                .map(|(text, _)| text.to_string())
        } else {
            None
        };
        Ok(ChatTemplate {
            im_start: control(IM_START)?,
            im_end: control(IM_END)?,
            default_system,
        })
    }

    /// The id of `<|im_end|>`, which ends the assistant's turn.
    pub fn end_of_turn(&self) -> u32 {
        self.im_end
    }

    /// The system prompt the template adds when the conversation has none.
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// The prompt's token ids: every message as a turn, then the opened assistant turn.
    pub fn render(
        &self,
        tokenizer: &Tokenizer,
        messages: &[Message],
    ) -> Result<Vec<u32>, PodError> {
        let mut ids = Vec::new();
        let mut turn = |role: &str, content: &str| -> Result<(), PodError> {
            ids.push(self.im_start);
            ids.extend(encode_text(tokenizer, &format!("{role}\n{content}"))?);
            ids.push(self.im_end);
            ids.extend(encode_text(tokenizer, "\n")?);
            Ok(())
        };
        if let (Some(system), Some(first)) = (&self.default_system, messages.first())
            && first.role != "system"
        {
            turn("system", system)?;
        }
        for m in messages {
            turn(&m.role, &m.content)?;
        }
        ids.push(self.im_start);
        ids.extend(encode_text(tokenizer, "assistant\n")?);
        Ok(ids)
    }
}

/// Plain text to ids (control-token text stays text: the tokenizer is built that way).
pub fn encode_text(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, PodError> {
    Ok(tokenizer.encode_fast(text, false)?.get_ids().to_vec())
}
