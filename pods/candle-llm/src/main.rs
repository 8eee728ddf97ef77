//! `candle-llm --model FILE.gguf [--listen ADDR]`: serves the model on loopback; the key that
//! every request must carry comes from the environment (`CANDLE_LLM_API_KEY` by default).

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::HeaderName;
use candle_core::Device;
use clap::Parser;

use candle_llm::auth::UpstreamKey;
use candle_llm::engine::{Engine, Weights};
use candle_llm::server::{ApiConfig, AppState, router};

/// An OpenAI-compatible server for one GGUF llama model, for use behind inferguard.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The GGUF model file (e.g. SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long, env = "CANDLE_LLM_MODEL")]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "CANDLE_LLM_LISTEN", default_value = "127.0.0.1:8888")]
    listen: SocketAddr,
    /// The model name served and accepted in requests.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model_id: String,
    /// The header carrying the upstream key (inferguard's `upstream.header`).
    #[arg(long, default_value = "x-api-key")]
    key_header: HeaderName,
    /// The environment variable holding the upstream key (never passed on the command line).
    #[arg(long, default_value = "CANDLE_LLM_API_KEY")]
    key_env: String,
    /// `max_tokens` for requests that name none.
    #[arg(long, default_value_t = 256)]
    default_max_tokens: usize,
    /// The largest `max_tokens` accepted.
    #[arg(long, default_value_t = 2048)]
    max_tokens: usize,
    /// Keep the weights quantized as stored (less memory, slower on CPU, answers drift).
    #[arg(long)]
    keep_quantized: bool,
    /// Run on the first CUDA device (needs the `cuda` feature).
    #[arg(long)]
    cuda: bool,
}

/// A start-up failure: printed on one line, exit status 1.
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(Fail(message)) = run(Args::parse()).await {
        eprintln!("candle-llm: {message}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Fail> {
    let secret = std::env::var(&args.key_env).map_err(|_| {
        Fail(format!(
            "{} is not set: the pod never runs without its upstream key",
            args.key_env
        ))
    })?;
    let key = UpstreamKey::new(args.key_header.clone(), secret).map_err(Fail)?;
    let device = if args.cuda {
        Device::new_cuda(0)?
    } else {
        Device::Cpu
    };
    let started = std::time::Instant::now();
    let model = args.model.clone();
    let weights = if args.keep_quantized {
        Weights::Quantized
    } else {
        Weights::F32
    };
    let engine =
        tokio::task::spawn_blocking(move || Engine::load(&model, device, weights)).await??;
    tracing::info!(
        model = %args.model.display(),
        name = engine.model_name(),
        context = engine.context_length(),
        load_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    if args.max_tokens >= engine.context_length() || args.default_max_tokens > args.max_tokens {
        return Err(Fail(
            "need default-max-tokens <= max-tokens < the model's context".into(),
        ));
    }
    let state = AppState::new(
        engine,
        ApiConfig {
            model_id: args.model_id,
            default_max_tokens: args.default_max_tokens,
            max_tokens: args.max_tokens,
        },
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "serving");
    axum::serve(listener, router(state, key))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
