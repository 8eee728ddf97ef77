//! A listener's TLS configuration that follows its files: new connections use whatever the
//! certificate, key and client-CA files held at the last successful reload.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::TlsFiles;
use super::load::{Protocols, TlsError, build_from, read_material};

/// How often the files are re-read (they are small; reading them is cheaper than trusting
/// mtimes across Kubernetes' Secret-volume symlink swaps).
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One listener's current rustls configuration, swapped atomically when its files change.
///
/// A reload that fails (a half-written file, a key that does not match the new certificate)
/// keeps the previous configuration and is retried at the next tick, so replacing the two files
/// one after the other never takes the listener down.
pub struct ReloadableServerConfig {
    listener: &'static str,
    files: TlsFiles,
    protocols: Protocols,
    current: ArcSwap<ServerConfig>,
    /// Digest of the files behind `current`.
    loaded: Mutex<[u8; 32]>,
}

impl ReloadableServerConfig {
    /// Loads `files` (already resolved against the config directory) for the listener named
    /// `listener`; fails when they cannot serve (the server must not start half-secured).
    pub fn load(
        listener: &'static str,
        files: &TlsFiles,
        protocols: Protocols,
    ) -> Result<Arc<Self>, TlsError> {
        let material = read_material(files)?;
        let config = build_from(files, &material, protocols)?;
        Ok(Arc::new(ReloadableServerConfig {
            listener,
            files: files.clone(),
            protocols,
            current: ArcSwap::from_pointee(config),
            loaded: Mutex::new(material.digest),
        }))
    }

    /// The configuration a new connection should use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Whether callers must present a client certificate.
    pub fn requires_client_certificate(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Re-reads the files; `Ok(true)` when changed contents took effect, `Ok(false)` when
    /// nothing changed, `Err` when changed contents are unusable (the previous configuration
    /// stays in place).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let material = read_material(&self.files)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if material.digest == *loaded {
            return Ok(false);
        }
        let config = build_from(&self.files, &material, self.protocols)?;
        self.current.store(Arc::new(config));
        *loaded = material.digest;
        Ok(true)
    }

    /// Re-reads the files every `every` in a background task for as long as this
    /// configuration is in use; reloads and failures are logged (failures once per content).
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            // The last failure reported, so a lasting problem is logged once, not every tick.
            let mut reported: Option<String> = None;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                match this.reload_if_changed() {
                    Ok(changed) => {
                        if changed {
                            tracing::info!(
                                listener = this.listener,
                                cert = %this.files.cert.display(),
                                "TLS files changed: new connections use the new certificate"
                            );
                        }
                        reported = None;
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if reported.as_deref() != Some(text.as_str()) {
                            tracing::warn!(
                                listener = this.listener,
                                error = %text,
                                "TLS files changed but cannot be used; keeping the previous certificate"
                            );
                            reported = Some(text);
                        }
                    }
                }
            }
        })
    }
}
