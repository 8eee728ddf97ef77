use crate::domain::Permission;

/// Which family of inference API a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// Fooocus-API / FooocusAPI image generation.
    Image,
    /// LLM servers (OpenAI-compatible, text-generation-inference).
    Llm,
    /// A route judged on headers alone.
    Other,
}

/// What a request asks of the model, in effective (not literal) values.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Action {
    /// Every permission the request needs (the route's, plus e.g. `generation:upscale` when a
    /// text-to-image body also runs an upscale stage).
    pub permissions: Vec<Permission>,
    /// The API family (`Other` for routes judged on headers alone).
    pub api: Option<ApiKind>,
    /// A short action name such as `text-to-image`, `upscale-vary`, `llm-chat`.
    pub name: String,
    /// Fooocus performance preset in effect (`Speed`, `Quality`, …).
    pub preset: Option<String>,
    /// LoRAs the caller chose (enabled, not `None`, plus `<lora:…>` prompt tags).
    pub loras: Vec<String>,
    /// Images (or LLM choices) this request produces.
    pub image_number: Option<u32>,
    /// Base model (Fooocus `base_model_name`) or LLM `model`.
    pub model: Option<String>,
    /// Fooocus refiner model when not `None`.
    pub refiner_model: Option<String>,
    /// Output width × height in pixels when known.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// True when an upscale or vary stage runs.
    pub upscale: bool,
    /// The main prompt (all prompt-like texts the model reads are in `prompts`).
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    /// Every text the model will read as a prompt (main, additional, enhance prompts, LLM
    /// messages), for content filters.
    pub prompts: Vec<String>,
    /// LLM token budget asked for one choice (`max_tokens`, `max_new_tokens`).
    pub max_tokens: Option<u64>,
    /// URLs the pod would fetch (input images, webhooks).
    pub urls: Vec<String>,
}

impl Action {
    /// Pixels per image when both dimensions are known.
    pub fn pixels(&self) -> Option<u64> {
        Some(u64::from(self.width?) * u64::from(self.height?))
    }
}
