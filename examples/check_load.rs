//! Load generator for an ext_authz gRPC server (inferguard, or `examples/noop_check.rs`).
//!
//! It sends one fixed CheckRequest — what Envoy sends for a Fooocus-API
//! `POST /v1/generation/text-to-image` with a ~2 KB JSON body in `raw_body` and the caller's
//! credential: an API key in `x-api-key` (`--key`), a JWT in `authorization: Bearer`
//! (`--bearer`) or a browser session in the `__Host-inferguard-session` cookie (`--session`) —
//! over `C` HTTP/2 connections with `M` concurrent streams each, and prints one JSON line:
//!
//! ```json
//! {"mode":"peak","checks":81234,"seconds":10.0,"checks_per_sec":8123.4,"p50_us":480.1,
//!  "p90_us":…,"p99_us":…,"max_us":…,"errors":0,"non_ok":0,"target_rate":null,
//!  "connections":4,"streams":16,"body_bytes":2284,"client_cpu_pct":93.0}
//! ```
//!
//! Two modes:
//! - **peak** (no `--rate`): closed loop, every stream sends its next Check as soon as the last
//!   one is answered, for `--duration` seconds (or `--checks N` in all). Latency is
//!   send → answer.
//! - **fixed rate** (`--rate R`): open loop, Check number `i` is *scheduled* at
//!   `start + i / R` by a pacing thread, whether or not earlier ones were answered (at most
//!   `C × M` in flight; later ones wait). Latency is measured from the scheduled time, so
//!   a stalled server is charged for the Checks it delayed (no coordinated omission).
//!
//! `checks` counts answered Checks; `errors` counts gRPC/transport failures; `non_ok` counts
//! answers that are not an allow (status code ≠ 0 or no `ok_response`) — a run against a
//! misconfigured server that only measures refusals shows up there. Latencies are of answered
//! Checks, allow or not.
//!
//! `--write-grpc-body FILE` writes the same request as a framed gRPC message (5-byte prefix +
//! protobuf) for a cross-check with h2load (Debian `nghttp2-client`):
//!
//! ```sh
//! h2load -n 100000 -c 4 -m 64 -d req.bin -H 'content-type: application/grpc' -H 'te: trailers' \
//!     http://127.0.0.1:9191/envoy.service.auth.v3.Authorization/Check
//! ```
//!
//! The client runs on as many tokio worker threads as the CPUs it may use (`taskset` narrows
//! that), or `--threads`. `client_cpu_pct` is the CPU it used during the measured run, in %
//! of one CPU: near `100 × threads` the client, not the server, set the pace.
//!
//! ```sh
//! cargo run --release --example check_load -- --target http://127.0.0.1:9191 --key fk_… \
//!     -c 4 -m 16 -d 10 [--rate 5000] [--warmup 3]
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address as CoreAddress, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use hdrhistogram::Histogram;
use prost::Message;
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

/// The path the fixed request asks for.
const PATH: &str = "/v1/generation/text-to-image";

/// A realistic Fooocus-API v1 text-to-image body, allowed for `designer_basic` in
/// `examples/policy.yaml`: preset `Speed`, the allowed base model, 2 images of 1024×1024, no
/// LoRA chosen (the one listed is disabled, the other is `None`). Written pretty here; sent
/// the way Python's `requests.post(json=…)` sends it (see [`wire_body`]): 2284 bytes.
const FOOOCUS_BODY: &str = r#"{
  "prompt": "a weathered stone lighthouse on a basalt cliff at dawn, waves breaking on the rocks below, soft golden light through thin sea mist, gulls circling the lantern room, cinematic composition, ultra detailed, 35mm photograph, shallow depth of field, natural colour grading",
  "negative_prompt": "blurry, lowres, jpeg artifacts, watermark, text, signature, oversaturated, deformed, extra limbs, cartoon, illustration, painting",
  "style_selections": ["Fooocus V2", "Fooocus Enhance", "Fooocus Sharp", "Fooocus Photograph"],
  "performance_selection": "Speed",
  "aspect_ratios_selection": "1024*1024",
  "image_number": 2,
  "image_seed": 736281904,
  "sharpness": 2.0,
  "guidance_scale": 4.0,
  "base_model_name": "juggernautXL_v8Rundiffusion.safetensors",
  "refiner_model_name": "None",
  "refiner_switch": 0.5,
  "loras": [
    {"enabled": false, "model_name": "sd_xl_offset_example-lora_1.0.safetensors", "weight": 0.1},
    {"enabled": true, "model_name": "None", "weight": 1.0}
  ],
  "advanced_params": {
    "disable_preview": false,
    "disable_intermediate_results": false,
    "disable_seed_increment": false,
    "adm_scaler_positive": 1.5,
    "adm_scaler_negative": 0.8,
    "adm_scaler_end": 0.3,
    "adaptive_cfg": 7.0,
    "clip_skip": 2,
    "sampler_name": "dpmpp_2m_sde_gpu",
    "scheduler_name": "karras",
    "overwrite_step": -1,
    "overwrite_switch": -1,
    "overwrite_width": -1,
    "overwrite_height": -1,
    "overwrite_vary_strength": -1,
    "overwrite_upscale_strength": -1,
    "mixing_image_prompt_and_vary_upscale": false,
    "mixing_image_prompt_and_inpaint": false,
    "debugging_cn_preprocessor": false,
    "skipping_cn_preprocessor": false,
    "canny_low_threshold": 64,
    "canny_high_threshold": 128,
    "refiner_swap_method": "joint",
    "controlnet_softness": 0.25,
    "freeu_enabled": false,
    "freeu_b1": 1.01,
    "freeu_b2": 1.02,
    "freeu_s1": 0.99,
    "freeu_s2": 0.95,
    "debugging_inpaint_preprocessor": false,
    "inpaint_disable_initial_latent": false,
    "inpaint_engine": "v2.6",
    "inpaint_strength": 1.0,
    "inpaint_respective_field": 1.0,
    "inpaint_mask_upload_checkbox": false,
    "invert_mask_checkbox": false,
    "inpaint_erode_or_dilate": 0,
    "black_out_nsfw": false,
    "vae_name": "Default (model)"
  },
  "save_meta": true,
  "meta_scheme": "fooocus",
  "save_extension": "png",
  "save_name": "",
  "read_wildcards_in_order": false,
  "require_base64": false,
  "async_process": false
}"#;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Load generator for ext_authz Check (inferguard or examples/noop_check)")]
struct Args {
    /// The server, e.g. http://127.0.0.1:9191.
    #[arg(long, default_value = "http://127.0.0.1:9191")]
    target: String,
    /// The caller's API key, sent in `x-api-key`.
    #[arg(
        long,
        env = "BENCH_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    key: String,
    /// Send `authorization: Bearer TOKEN` instead of an API key (the JWT path).
    #[arg(long, env = "BENCH_BEARER", default_value = "", hide_env_values = true)]
    bearer: String,
    /// Send this session id in the `__Host-inferguard-session` cookie instead of an API key
    /// (the browser-session path; `examples/seed_session.rs` makes one).
    #[arg(
        long,
        env = "BENCH_SESSION",
        default_value = "",
        hide_env_values = true
    )]
    session: String,
    /// HTTP/2 connections.
    #[arg(short = 'c', long, default_value_t = 4)]
    connections: usize,
    /// Concurrent streams per connection (in flight at most C × M).
    #[arg(short = 'm', long, default_value_t = 16)]
    streams: usize,
    /// Measured seconds.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Peak mode: stop after this many Checks (or `--duration`, whichever comes first).
    #[arg(short = 'n', long, conflicts_with = "rate")]
    checks: Option<u64>,
    /// Seconds of unmeasured closed-loop load on the same connections first.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Checks per second, open loop; without it, peak (closed loop).
    #[arg(short = 'r', long)]
    rate: Option<f64>,
    /// tokio worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write the framed gRPC request body here (for h2load -d); with `--write-only`,
    /// only that.
    #[arg(long)]
    write_grpc_body: Option<PathBuf>,
    /// Write `--write-grpc-body` and exit without sending anything.
    #[arg(long, requires = "write_grpc_body")]
    write_only: bool,
}

/// Outcome counters and the latency histogram of one run (or one worker's part of it).
struct Tally {
    /// Latencies of answered Checks, in nanoseconds.
    hist: Histogram<u64>,
    errors: u64,
    non_ok: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            // 1 µs .. 60 s at 3 significant digits.
            hist: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
            non_ok: 0,
        }
    }

    /// Records one answer (or failure) that took `latency`.
    fn record(
        &mut self,
        result: &Result<tonic::Response<CheckResponse>, tonic::Status>,
        latency: Duration,
    ) {
        match result {
            Ok(resp) => {
                let ns = (latency.as_nanos() as u64).clamp(1_000, 60_000_000_000);
                self.hist.saturating_record(ns);
                if !is_allow(resp.get_ref()) {
                    self.non_ok += 1;
                }
            }
            Err(status) => {
                if self.errors == 0 {
                    eprintln!("check_load: first error: {status}");
                }
                self.errors += 1;
            }
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.errors += other.errors;
        self.non_ok += other.non_ok;
    }
}

/// True when Envoy would let the request through.
fn is_allow(resp: &CheckResponse) -> bool {
    resp.status.as_ref().is_some_and(|s| s.code == 0)
        && matches!(resp.http_response, Some(HttpResponse::OkResponse(_)))
}

/// [`FOOOCUS_BODY`] on one line, as Python's `json.dumps` writes it (`", "` and `": "`).
fn wire_body() -> String {
    let mut out = String::with_capacity(FOOOCUS_BODY.len());
    let mut lines = FOOOCUS_BODY.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        if line.ends_with(',') && lines.peek().is_some() {
            out.push(' ');
        }
    }
    out
}

/// The CheckRequest Envoy builds for the benchmark request (`with_request_body` with
/// `pack_as_bytes: true`, so the body travels in `raw_body`).
/// The credential a request carries: `(header, value)`.
fn credential(args: &Args) -> (&'static str, String) {
    if !args.bearer.is_empty() {
        ("authorization", format!("Bearer {}", args.bearer))
    } else if !args.session.is_empty() {
        // A browser sends its other cookies too; the session one is not first.
        (
            "cookie",
            format!(
                "_ga=GA1.1.2094; theme=dark; __Host-inferguard-session={}",
                args.session
            ),
        )
    } else {
        ("x-api-key", args.key.clone())
    }
}

fn check_request(credential_header: &str, credential_value: &str) -> CheckRequest {
    let body = wire_body().into_bytes();
    let headers: HashMap<String, String> = [
        (":authority", "fooocus.internal:10000"),
        (":method", "POST"),
        (":path", PATH),
        (":scheme", "http"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("content-length", &body.len().to_string()),
        ("user-agent", "python-requests/2.32.3"),
        (credential_header, credential_value),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5f0c6b1e-2a4d-4f7e-9c3b-8e1d2a7f6b40"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let peer = |ip: &str, port: u32| Peer {
        address: Some(CoreAddress {
            address: Some(Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer("10.0.3.17", 51234)),
            destination: Some(peer("10.0.1.5", 10000)),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    id: "13370411762939283733".into(),
                    method: "POST".into(),
                    headers,
                    path: PATH.into(),
                    host: "fooocus.internal:10000".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    size: body.len() as i64,
                    raw_body: body,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The request as one gRPC length-prefixed message (uncompressed).
fn grpc_frame(req: &CheckRequest) -> Vec<u8> {
    let proto = req.encode_to_vec();
    let mut framed = Vec::with_capacity(proto.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(proto.len() as u32).to_be_bytes());
    framed.extend_from_slice(&proto);
    framed
}

/// Closed loop on one stream until `until`; records only Checks sent at or after `from`.
async fn closed_loop(
    mut client: AuthorizationClient<Channel>,
    req: Arc<CheckRequest>,
    until: Instant,
    budget: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let sent = Instant::now();
        if sent >= until || !take_one(&budget) {
            return tally;
        }
        let result = client.check((*req).clone()).await;
        tally.record(&result, sent.elapsed());
        if result.is_err() {
            // Don't spin on a dead server.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (Linux;
/// clock ticks of 1/100 s, the USER_HZ of every Linux architecture this runs on).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Takes one Check from the budget; false once it is spent.
fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Peak: C × M closed loops for `seconds`, or until `checks` Checks were sent. Returns the
/// tally and the measured wall time.
async fn peak(
    clients: &[AuthorizationClient<Channel>],
    streams: usize,
    req: &Arc<CheckRequest>,
    seconds: f64,
    checks: Option<u64>,
) -> (Tally, f64) {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let budget = Arc::new(AtomicU64::new(checks.unwrap_or(u64::MAX)));
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..streams {
            tasks.push(tokio::spawn(closed_loop(
                client.clone(),
                req.clone(),
                until,
                budget.clone(),
            )));
        }
    }
    let mut total = Tally::new();
    for t in tasks {
        total.merge(&t.await.expect("load task panicked"));
    }
    (total, start.elapsed().as_secs_f64())
}

/// Fixed rate: `rate` Checks/s scheduled for `seconds` by a pacing thread, latency from the
/// scheduled time. Returns the tally and the wall time from start to the last answer.
async fn fixed_rate(
    clients: &[AuthorizationClient<Channel>],
    in_flight: usize,
    req: &Arc<CheckRequest>,
    rate: f64,
    seconds: f64,
) -> (Tally, f64) {
    let tally = Arc::new(Mutex::new(Tally::new()));
    let permits = Arc::new(Semaphore::new(in_flight));
    let done = Arc::new(AtomicU64::new(0));
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);

    let pacer = {
        let clients = clients.to_vec();
        let (tally, permits, done, req) =
            (tally.clone(), permits.clone(), done.clone(), req.clone());
        std::thread::spawn(move || {
            let mut i: u64 = 0;
            loop {
                let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                if scheduled >= end {
                    return i;
                }
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                }
                let mut client = clients[i as usize % clients.len()].clone();
                let (tally, permits, done, req) =
                    (tally.clone(), permits.clone(), done.clone(), req.clone());
                handle.spawn(async move {
                    let _permit = permits.acquire_owned().await.expect("semaphore open");
                    let result = client.check((*req).clone()).await;
                    let latency = scheduled.elapsed();
                    tally.lock().expect("tally lock").record(&result, latency);
                    done.fetch_add(1, Ordering::Release);
                });
                i += 1;
            }
        })
    };
    let scheduled = tokio::task::spawn_blocking(move || pacer.join().expect("pacer panicked"))
        .await
        .expect("pacer join");
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while done.load(Ordering::Acquire) < scheduled && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut total = Tally::new();
    total.merge(&tally.lock().expect("tally lock"));
    // Checks still unanswered after the drain deadline count as errors.
    total.errors += scheduled.saturating_sub(done.load(Ordering::Acquire));
    (total, seconds)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (header, value) = credential(&args);
    let req = check_request(header, &value);
    if let Some(path) = &args.write_grpc_body {
        std::fs::write(path, grpc_frame(&req))?;
        eprintln!(
            "check_load: wrote {} ({} bytes of JSON body, {} bytes framed)",
            path.display(),
            wire_body().len(),
            grpc_frame(&req).len()
        );
        if args.write_only {
            return Ok(());
        }
    }
    if args.key.is_empty() && args.bearer.is_empty() && args.session.is_empty() {
        eprintln!(
            "check_load: no --key, --bearer or --session: inferguard will refuse every Check"
        );
    }
    if args.connections == 0 || args.streams == 0 {
        return Err("--connections and --streams must be at least 1".into());
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args, req))
}

async fn run(args: Args, req: CheckRequest) -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = Endpoint::from_shared(args.target.clone())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // One `connect` per client: each is its own HTTP/2 connection.
        let channel = endpoint.connect().await?;
        clients.push(AuthorizationClient::new(channel).max_decoding_message_size(64 << 20));
    }
    let req = Arc::new(req);

    if args.warmup > 0.0 {
        let (w, _) = peak(&clients, args.streams, &req, args.warmup, None).await;
        if w.errors > 0 || w.non_ok > 0 {
            eprintln!(
                "check_load: warm-up saw {} errors, {} non-ok answers",
                w.errors, w.non_ok
            );
        }
    }

    let cpu_before = own_cpu_seconds();
    let (tally, seconds) = match args.rate {
        None => peak(&clients, args.streams, &req, args.duration, args.checks).await,
        Some(rate) if rate > 0.0 => {
            fixed_rate(
                &clients,
                args.connections * args.streams,
                &req,
                rate,
                args.duration,
            )
            .await
        }
        Some(_) => return Err("--rate must be positive".into()),
    };

    // The client shares the machine with the server: a client near 100% of its CPUs measures
    // itself, not the server.
    let client_cpu_pct = match (cpu_before, own_cpu_seconds()) {
        (Some(a), Some(b)) => Some(((b - a) / seconds * 1000.0).round() / 10.0),
        _ => None,
    };
    let h = &tally.hist;
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    let checks = h.len();
    let line = serde_json::json!({
        "mode": if args.rate.is_some() { "fixed_rate" } else { "peak" },
        "checks": checks,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "checks_per_sec": (checks as f64 / seconds * 10.0).round() / 10.0,
        "p50_us": if checks > 0 { us(h.value_at_quantile(0.50)) } else { 0.0 },
        "p90_us": if checks > 0 { us(h.value_at_quantile(0.90)) } else { 0.0 },
        "p99_us": if checks > 0 { us(h.value_at_quantile(0.99)) } else { 0.0 },
        "max_us": if checks > 0 { us(h.max()) } else { 0.0 },
        "errors": tally.errors,
        "non_ok": tally.non_ok,
        "target_rate": args.rate,
        "connections": args.connections,
        "streams": args.streams,
        "body_bytes": wire_body().len(),
        "client_cpu_pct": client_cpu_pct,
    });
    println!("{line}");
    Ok(())
}
