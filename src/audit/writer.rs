//! [`AuditTrail`]: appends chained records, one writer at a time across processes, and
//! `fsync`s and signs checkpoints in the background.
//!
//! # One writer at a time
//!
//! Every append takes an exclusive `flock` on `<base>.lock` (e.g. `audit.jsonl.lock`), then
//! checks by `stat` whether today's file is still the one this process last wrote and still
//! has the length it left it at. If another process (the CLI while `serve` runs, or a second
//! `serve`) appended meanwhile, the last line is read back from the end of the file and the
//! chain continues from it; so two processes produce one chain, never a fork. The day of the
//! file is taken under the lock and never goes backwards, so the chain moves from one daily
//! file to the next exactly once.
//!
//! # Durability
//!
//! [`AuditTrail::record`] returns once the `write(2)` holding its record has returned: the
//! record is in the kernel's page cache and survives the death of the process. Records of
//! concurrent callers share one write (group commit, see [`AuditTrail::record`]), so a busy
//! server takes the lock, `stat`s and writes once per batch, not once per record. A background
//! thread `fsync`s within [`FSYNC_BATCH`] (batching every record written meanwhile), then
//! signs a checkpoint when one is due. A power loss can lose what was written in that window
//! and not yet `fsync`ed; a checkpoint never covers records that were not `fsync`ed.
//!
//! # Repairs
//!
//! A file whose last line is incomplete (a write cut short by a crash or a full disk; such a
//! record was never acknowledged) is cut back to its last complete line when a writer next
//! opens it, and the first record written afterwards is an `audit.repair` admin event naming
//! the discarded byte count and their SHA-256.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use rustix::fs::FlockOperation;
use sha2::{Digest, Sha256};

use super::checkpoint::Checkpoint;
use super::files::{TrailPaths, scan_tail};
use super::keys::CheckpointKey;
use super::record::{self, GENESIS_HASH, parse_line};
use super::{AuditError, AuditEvent, EventSink, OnWriteFailure};
use crate::config::AuditConfig;
use crate::store::DynStore;

/// How long the background thread waits after a record before `fsync`, so that records
/// written meanwhile share one `fsync`.
pub const FSYNC_BATCH: Duration = Duration::from_millis(2);

/// Permissions of the files a trail creates: prompts and user ids are not for everyone.
const FILE_MODE: u32 = 0o640;

/// Where the time comes from (a fixed clock in tests).
pub(crate) type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The writer of one trail. Cheap to clone; every clone appends to the same chain. The last
/// clone dropped stops the background thread after a final `fsync` and checkpoint; call
/// [`AuditTrail::close`] to wait for those.
#[derive(Clone)]
pub struct AuditTrail {
    inner: Arc<Handle>,
    /// Where recorded events are also handed (the OTLP exporter), if anywhere.
    sink: Option<Arc<dyn EventSink>>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail")
            .field("dir", &self.inner.core.paths.dir())
            .field("kid", &self.inner.core.key.kid())
            .finish_non_exhaustive()
    }
}

struct Handle {
    core: Arc<Core>,
    wake: SyncSender<Msg>,
    /// Records waiting for the batch being gathered (see [`AuditTrail::record`]).
    batch: Mutex<Batch>,
}

impl Handle {
    fn lock_batch(&self) -> MutexGuard<'_, Batch> {
        // Nothing can be left half-done inside this lock: a push, a take or a flag.
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Records queued for one write, and whether a caller has taken on writing them.
#[derive(Default)]
struct Batch {
    queue: Vec<Waiting>,
    writing: bool,
}

/// One queued record and where its outcome goes.
struct Waiting {
    json: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Turn>,
}

/// What a queued caller hears.
enum Turn {
    /// Its record was written (or could not be).
    Written(Result<(), AuditError>),
    /// Its record is still queued and it now writes the batch (the previous writer had
    /// written [`WRITER_ROUNDS`] batches).
    Write(HandOff),
}

/// The writing handed to a queued caller. Should that caller be gone before it reads this
/// (its request cancelled), dropping the unread hand-off writes the queue, so the writing is
/// never left with nobody.
struct HandOff {
    /// Taken by the caller that takes over; still here when the hand-off is dropped unread.
    handle: Option<Arc<Handle>>,
    /// Where the new writer's own outcome comes.
    outcome: Option<tokio::sync::oneshot::Receiver<Turn>>,
}

impl Drop for HandOff {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            drop(BatchWriter(handle));
        }
    }
}

/// How many batches one caller writes before handing the writing on to the next caller in
/// the queue, so that under sustained load no caller's answer waits on many others' records.
const WRITER_ROUNDS: usize = 2;

/// The caller that writes the batch: on drop it writes what is queued, batch after batch; after
/// [`WRITER_ROUNDS`] it hands the writing on to a queued caller, and with the queue empty it
/// lets the next caller take it on.
struct BatchWriter(Arc<Handle>);

impl Drop for BatchWriter {
    fn drop(&mut self) {
        for round in 0.. {
            let waiting = {
                let mut batch = self.0.lock_batch();
                if batch.queue.is_empty() {
                    batch.writing = false;
                    return;
                }
                if round >= WRITER_ROUNDS && hand_on(&self.0, &mut batch.queue) {
                    return; // `writing` stays set: the caller handed to writes next
                }
                std::mem::take(&mut batch.queue)
            };
            let events: Vec<&[u8]> = waiting.iter().map(|w| w.json.as_slice()).collect();
            // A panic here must not leave `writing` set with callers waiting forever.
            let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.0.core.append(&events)
            }))
            .unwrap_or_else(|_| {
                Err(AuditError::io(
                    self.0.core.paths.dir(),
                    io::Error::other("the audit writer panicked while appending"),
                ))
            });
            if written.is_ok() {
                // Also for records whose callers went away: they are written, so `fsync` them.
                let _ = self.0.wake.try_send(Msg::Wake);
            }
            for w in waiting {
                let outcome = match &written {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.duplicate()),
                };
                if let Err(Turn::Written(Err(e))) = w.done.send(Turn::Written(outcome)) {
                    // Its caller went away: nobody else will report this record missing.
                    let failures = self.0.core.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::error!(
                        error = %e, failures,
                        "audit record NOT written (its request had been cancelled)"
                    );
                }
            }
        }
    }
}

/// Hands the writing on to the first queued caller still waiting; false when every queued
/// caller went away (the current writer then writes their records itself).
fn hand_on(handle: &Arc<Handle>, queue: &mut [Waiting]) -> bool {
    for waiting in queue.iter_mut() {
        let (next, outcome) = tokio::sync::oneshot::channel();
        let previous = std::mem::replace(&mut waiting.done, next);
        let handoff = HandOff {
            handle: Some(handle.clone()),
            outcome: Some(outcome),
        };
        match previous.send(Turn::Write(handoff)) {
            Ok(()) => return true,
            // Never delivered: defuse it (the batch lock is held here).
            Err(Turn::Write(mut refused)) => refused.handle = None,
            Err(Turn::Written(_)) => {}
        }
    }
    false
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The thread flushes, signs a last checkpoint and ends.
        let _ = self.wake.try_send(Msg::Stop);
    }
}

enum Msg {
    Wake,
    Stop,
}

struct Core {
    paths: TrailPaths,
    /// The open lock file, `flock`ed around every append.
    lock: File,
    /// The same lock file opened again for the flusher thread's checkpoints: `flock` belongs
    /// to an open file description, so on one shared descriptor a checkpoint would "take" the
    /// lock an append holds and release it under that append.
    checkpoint_lock: File,
    key: CheckpointKey,
    on_failure: OnWriteFailure,
    redact: bool,
    checkpoint_every: Duration,
    checkpoint_records: u64,
    clock: Clock,
    head: Mutex<Head>,
    flush: Mutex<FlushState>,
    failures: AtomicU64,
}

/// What this process knows about the end of the chain.
struct Head {
    /// The day of the file appended to.
    day: NaiveDate,
    path: PathBuf,
    file: Arc<File>,
    dev: u64,
    ino: u64,
    /// The file's length after our last write or read.
    len: u64,
    /// The last record of the chain: its `seq` (0 before the first), `hash`, and the file
    /// (name, day) holding it.
    seq: u64,
    hash: String,
    tail_name: String,
    tail_day: NaiveDate,
    /// Re-open and re-read before the next append (after an error).
    stale: bool,
    /// Files written since the last `fsync`.
    dirty: Vec<Arc<File>>,
    /// Serialised events to write before the next one (repair notes).
    pending: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

struct FlushState {
    last_checkpoint: Instant,
    last_checkpoint_seq: u64,
}

/// The end of the chain as found in a file.
struct FoundTail {
    seq: u64,
    hash: String,
    name: String,
    day: NaiveDate,
}

/// The longest an append waits for another process's lock before failing (a writer that
/// holds the lock for longer is stuck, e.g. a stopped CLI process).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// An exclusive `flock`, released on drop.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// Takes the lock, waiting at most [`LOCK_TIMEOUT`] (polling: another writer holds it for
    /// microseconds, so the first retries succeed).
    fn exclusive(file: &'a File) -> io::Result<FileLock<'a>> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(FileLock(file)),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) if started.elapsed() < LOCK_TIMEOUT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "another process has held the trail's lock for over {} s",
                            LOCK_TIMEOUT.as_secs()
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, FlockOperation::Unlock);
    }
}

fn format_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn open_rw(path: &Path, create: bool, append: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(!append)
        .append(append)
        .create(create)
        .mode(FILE_MODE)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl AuditTrail {
    /// Opens the trail `cfg.file` names (relative to `base_dir`) with the checkpoint key from
    /// `audit.signing_key_env`, `audit.signing_key_file` or the store (purpose `audit`,
    /// generated at first start), creating the directory and today's file when needed, and
    /// starts the background `fsync`/checkpoint thread.
    pub async fn open(
        cfg: &AuditConfig,
        base_dir: &Path,
        store: DynStore,
    ) -> Result<AuditTrail, AuditError> {
        cfg.validate().map_err(AuditError::Config)?;
        let Some(file) = &cfg.file else {
            return Err(AuditError::Config(
                "audit.file is not set: there is no local trail to open".into(),
            ));
        };
        let key = CheckpointKey::load(cfg, base_dir, &store).await?;
        AuditTrail::open_with_key(&base_dir.join(file), cfg, key)
    }

    /// Opens the trail whose base name is `base` (already resolved) with a given key.
    pub fn open_with_key(
        base: &Path,
        cfg: &AuditConfig,
        key: CheckpointKey,
    ) -> Result<AuditTrail, AuditError> {
        AuditTrail::open_with_clock(base, cfg, key, Arc::new(Utc::now))
    }

    pub(crate) fn open_with_clock(
        base: &Path,
        cfg: &AuditConfig,
        key: CheckpointKey,
        clock: Clock,
    ) -> Result<AuditTrail, AuditError> {
        cfg.validate().map_err(AuditError::Config)?;
        let paths = TrailPaths::new(base);
        std::fs::create_dir_all(paths.dir()).map_err(|e| AuditError::io(paths.dir(), e))?;
        let checkpoint_lock = open_rw(paths.lock_file(), true, false)
            .map_err(|e| AuditError::io(paths.lock_file(), e))?;
        let lock = open_rw(paths.lock_file(), true, false)
            .map_err(|e| AuditError::io(paths.lock_file(), e))?;
        let head = {
            let _guard =
                FileLock::exclusive(&lock).map_err(|e| AuditError::io(paths.lock_file(), e))?;
            // Never behind the newest file (a clock that went back must not fork the chain).
            let newest = paths.days().map_err(|e| AuditError::io(paths.dir(), e))?;
            let day = clock()
                .date_naive()
                .max(newest.first().copied().unwrap_or(NaiveDate::MIN));
            let mut pending = Vec::new();
            let mut head = Head::open(&paths, day, None, &mut pending)?;
            head.pending = pending;
            head
        };
        let core = Arc::new(Core {
            paths,
            lock,
            checkpoint_lock,
            key,
            on_failure: cfg.on_write_failure,
            redact: cfg.redact_prompts,
            checkpoint_every: cfg.checkpoint_every,
            checkpoint_records: cfg.checkpoint_records,
            clock,
            flush: Mutex::new(FlushState {
                last_checkpoint: Instant::now(),
                last_checkpoint_seq: head.seq,
            }),
            head: Mutex::new(head),
            failures: AtomicU64::new(0),
        });
        // Repair notes found while opening are written now, not with the next decision.
        if !core.lock_head().pending.is_empty() {
            core.append(&[])?;
        }
        let (wake, rx) = sync_channel(1);
        let thread_core = core.clone();
        std::thread::Builder::new()
            .name("inferguard-audit-sync".into())
            .spawn(move || run_flusher(thread_core, rx))
            .map_err(|e| AuditError::io(core.paths.dir(), e))?;
        tracing::info!(
            dir = %core.paths.dir().display(),
            file = %core.lock_head().path.display(),
            kid = %core.key.kid(),
            "audit trail open"
        );
        Ok(AuditTrail {
            sink: None,
            inner: Arc::new(Handle {
                core,
                wake,
                batch: Mutex::default(),
            }),
        })
    }

    /// Appends one event and returns once its record has been written to the file (not yet
    /// `fsync`ed: that follows within a few milliseconds).
    ///
    /// On failure (disk full, permissions, a trail that no longer ends in a valid record)
    /// the error is returned when `audit.on_write_failure` is `deny` (the default: the
    /// caller must refuse the request, 503); with `allow_and_alarm` it is logged, counted in
    /// [`AuditTrail::write_failures`], and `Ok` is returned.
    ///
    /// Records of concurrent callers are written together (group commit): the first caller
    /// to find no write in progress lets the other tasks that are ready run first, then
    /// writes every record waiting by then with one lock, one `stat` and one `write(2)`, and
    /// hands each caller its outcome. The write is a short blocking system call made on
    /// that caller's thread; it waits only for another process's append in progress.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let written = match serde_json::to_vec(&event) {
            Ok(json) => self.write_batched(json).await,
            Err(e) => Err(e.into()),
        };
        self.settle(&event, written)
    }

    /// [`record`](AuditTrail::record) for callers outside async code (written alone).
    pub fn record_now(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let written = serde_json::to_vec(event)
            .map_err(AuditError::from)
            .and_then(|json| self.inner.core.append(&[&json]));
        if written.is_ok() {
            let _ = self.inner.wake.try_send(Msg::Wake);
        }
        self.settle(event, written)
    }

    /// Queues `json` and returns once it is written (or could not be), as part of a batch.
    async fn write_batched(&self, json: Vec<u8>) -> Result<(), AuditError> {
        let (done, mut written) = tokio::sync::oneshot::channel();
        let lead = {
            let mut batch = self.inner.lock_batch();
            batch.queue.push(Waiting { json, done });
            !std::mem::replace(&mut batch.writing, true)
        };
        if lead {
            // The batch is written when `writer` drops: after the yield, or, should this
            // task be cancelled while yielding, then; either way nothing queued is stranded.
            let writer = BatchWriter(self.inner.clone());
            tokio::task::yield_now().await;
            drop(writer);
        }
        loop {
            match written.await {
                Ok(Turn::Written(result)) => return result,
                Ok(Turn::Write(mut handoff)) => {
                    // Handed the writing: this record is in the queue written now.
                    match (handoff.handle.take(), handoff.outcome.take()) {
                        (Some(handle), Some(outcome)) => {
                            written = outcome;
                            drop(BatchWriter(handle));
                        }
                        _ => return Err(self.writer_stopped()),
                    }
                }
                Err(_) => return Err(self.writer_stopped()),
            }
        }
    }

    fn writer_stopped(&self) -> AuditError {
        AuditError::io(
            self.inner.core.paths.dir(),
            io::Error::other("the audit batch writer stopped before writing the record"),
        )
    }

    /// What a write's outcome means for the caller, per `audit.on_write_failure`; hands
    /// the event to the sink. (Whoever wrote the record has already woken the `fsync`.)
    fn settle(
        &self,
        event: &AuditEvent,
        written: Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let core = &self.inner.core;
        match written {
            Ok(()) => {
                if let Some(sink) = &self.sink {
                    sink.emit(event);
                }
                Ok(())
            }
            Err(e) => {
                let failures = core.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let allowed = core.on_failure == OnWriteFailure::AllowAndAlarm;
                let consequence = if allowed {
                    "deciding anyway (audit.on_write_failure: allow_and_alarm)"
                } else {
                    "refusing (audit.on_write_failure: deny)"
                };
                tracing::error!(
                    error = %e, failures, event_type = ?event.event_type,
                    request_id = event.request_id.as_deref().unwrap_or(""),
                    action = event.action.as_deref().unwrap_or(""),
                    "audit record NOT written; {consequence}"
                );
                if !allowed {
                    return Err(e);
                }
                // Decided anyway: the exporter still sees the event.
                if let Some(sink) = &self.sink {
                    sink.emit(event);
                }
                Ok(())
            }
        }
    }

    /// Appends one event, then `fsync`s and signs a checkpoint covering it before
    /// returning: for one-off writers such as the CLI, whose process ends right after.
    /// Failures are returned whatever `audit.on_write_failure` says.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditError> {
        let json = serde_json::to_vec(&event)?;
        self.inner.core.append(&[&json])?;
        if let Some(sink) = &self.sink {
            sink.emit(&event);
        }
        self.close().await
    }

    /// `fsync`s everything written and signs a checkpoint covering it (at shutdown).
    pub async fn close(&self) -> Result<(), AuditError> {
        let core = self.inner.core.clone();
        tokio::task::spawn_blocking(move || core.flush(true))
            .await
            .map_err(|e| AuditError::io(self.inner.core.paths.dir(), io::Error::other(e)))?
    }

    /// Also hands every event this trail records to `sink`, once written (or, with
    /// `on_write_failure: allow_and_alarm`, once the failure is logged). The sink must not
    /// block: it runs on the deciding thread.
    pub fn with_sink(mut self, sink: Arc<dyn EventSink>) -> AuditTrail {
        self.sink = Some(sink);
        self
    }

    /// Whether prompts are stored as SHA-256 (`audit.redact_prompts`).
    pub fn redact_prompts(&self) -> bool {
        self.inner.core.redact
    }

    /// Records that could not be written since the trail was opened.
    pub fn write_failures(&self) -> u64 {
        self.inner.core.failures.load(Ordering::Relaxed)
    }

    /// The key id of the checkpoint key.
    pub fn key_id(&self) -> &str {
        self.inner.core.key.kid()
    }

    /// The file the next record goes to (today's, unless another day started).
    pub fn current_file(&self) -> PathBuf {
        self.inner.core.lock_head().path.clone()
    }
}

fn run_flusher(core: Arc<Core>, rx: Receiver<Msg>) {
    loop {
        let stop = match rx.recv_timeout(core.checkpoint_every) {
            Ok(Msg::Wake) => {
                std::thread::sleep(FSYNC_BATCH);
                let mut stop = false;
                loop {
                    match rx.try_recv() {
                        Ok(Msg::Wake) => {}
                        Ok(Msg::Stop) | Err(TryRecvError::Disconnected) => {
                            stop = true;
                            break;
                        }
                        Err(TryRecvError::Empty) => break,
                    }
                }
                stop
            }
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };
        if let Err(e) = core.flush(stop) {
            core.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "audit trail fsync or checkpoint failed");
        }
        if stop {
            return;
        }
    }
}

impl Core {
    fn lock_head(&self) -> MutexGuard<'_, Head> {
        // A panic while holding the lock leaves a head that `stale` makes us re-read.
        self.head.lock().unwrap_or_else(|poisoned| {
            self.head.clear_poison();
            let mut head = poisoned.into_inner();
            head.stale = true;
            head
        })
    }

    /// Appends the pending repair notes, then `events` (one write for all of them), under
    /// the file lock.
    fn append(&self, events: &[&[u8]]) -> Result<(), AuditError> {
        let mut head = self.lock_head();
        let _guard = FileLock::exclusive(&self.lock)
            .map_err(|e| AuditError::io(self.paths.lock_file(), e))?;
        let now = (self.clock)();
        self.sync_head(&mut head, now.date_naive())?;
        let ts = format_ts(now);
        while !head.pending.is_empty() {
            let note = head.pending.remove(0);
            if let Err(e) = head.write_records(&ts, &[&note]) {
                head.pending.insert(0, note);
                return Err(e);
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        head.write_records(&ts, events)
    }

    /// Makes `head` describe the end of the chain as it is on disk now (the lock is held).
    fn sync_head(&self, head: &mut Head, today: NaiveDate) -> Result<(), AuditError> {
        let day = today.max(head.day);
        if !head.stale && day == head.day {
            match std::fs::metadata(&head.path) {
                Ok(md) if md.dev() == head.dev && md.ino() == head.ino => {
                    if md.len() == head.len {
                        return Ok(());
                    }
                    // Another writer appended (or something cut the file): read its end.
                    let file = head.file.clone();
                    let found = read_tail(&file, &head.path, day, md.len(), &mut head.pending)?;
                    head.len = found.0;
                    head.adopt(found.1);
                    head.dirty_push();
                    return Ok(());
                }
                _ => {} // replaced, moved away or removed: open it anew
            }
        }
        let prior = FoundTail {
            seq: head.seq,
            hash: head.hash.clone(),
            name: head.tail_name.clone(),
            day: head.tail_day,
        };
        let fresh = Head::open(&self.paths, day, Some(prior), &mut head.pending)?;
        let dirty = std::mem::take(&mut head.dirty);
        let buf = std::mem::take(&mut head.buf);
        let pending = std::mem::take(&mut head.pending);
        *head = Head {
            dirty,
            buf,
            pending,
            ..fresh
        };
        head.dirty_push();
        Ok(())
    }

    /// `fsync`s the files written, then signs a checkpoint when one is due (or `force`).
    fn flush(&self, force: bool) -> Result<(), AuditError> {
        let mut state = self.flush.lock().unwrap_or_else(|p| p.into_inner());
        let (files, tail) = {
            let mut head = self.lock_head();
            let files = std::mem::take(&mut head.dirty);
            let tail = FoundTail {
                seq: head.seq,
                hash: head.hash.clone(),
                name: head.tail_name.clone(),
                day: head.tail_day,
            };
            (files, tail)
        };
        for file in &files {
            if let Err(e) = file.sync_data() {
                // Whatever is wrong with the disk, find out on the next append.
                self.lock_head().stale = true;
                return Err(AuditError::io(self.paths.dir(), e));
            }
        }
        let due = tail.seq > state.last_checkpoint_seq
            && (force
                || tail.seq - state.last_checkpoint_seq >= self.checkpoint_records
                || state.last_checkpoint.elapsed() >= self.checkpoint_every);
        if due {
            self.write_checkpoint(&tail)?;
            state.last_checkpoint_seq = tail.seq;
            state.last_checkpoint = Instant::now();
        }
        Ok(())
    }

    /// Appends a signed checkpoint for `tail` to its day's sidecar and `fsync`s it.
    fn write_checkpoint(&self, tail: &FoundTail) -> Result<(), AuditError> {
        let ts = format_ts((self.clock)());
        let cp = Checkpoint::sign(&self.key, &tail.name, tail.seq, &tail.hash, &ts);
        let mut line = serde_json::to_vec(&cp)?;
        line.push(b'\n');
        let path = self.paths.checkpoint_file(tail.day);
        let io_err = |e| AuditError::io(&path, e);
        let existed = path.exists();
        let file = open_rw(&path, true, true).map_err(io_err)?;
        {
            let _guard = FileLock::exclusive(&self.checkpoint_lock)
                .map_err(|e| AuditError::io(self.paths.lock_file(), e))?;
            // A checkpoint cut short by a crash is dropped, so lines stay whole.
            let len = file.metadata().map_err(io_err)?.len();
            if len > 0 {
                let scan = scan_tail(&file, len).map_err(io_err)?;
                if let Some(from) = scan.partial_from {
                    tracing::warn!(file = %path.display(), bytes = len - from, "dropping an incomplete checkpoint line");
                    file.set_len(from).map_err(io_err)?;
                }
            }
            let n = (&file).write(&line).map_err(io_err)?;
            if n != line.len() {
                let _ = file.set_len(len);
                return Err(io_err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write ({n} of {} bytes)", line.len()),
                )));
            }
        }
        file.sync_data().map_err(io_err)?;
        if !existed {
            sync_dir(self.paths.dir()).map_err(|e| AuditError::io(self.paths.dir(), e))?;
        }
        Ok(())
    }
}

impl Head {
    /// Opens (creating) the file of `day` and finds the end of the chain: the file's last
    /// record, else the last record of the newest older file, else `prior` (what this
    /// process knew), else the genesis. A chain found behind `prior` means records were
    /// removed: the chain continues from `prior`, so the gap stays visible to `verify`.
    fn open(
        paths: &TrailPaths,
        day: NaiveDate,
        prior: Option<FoundTail>,
        pending: &mut Vec<Vec<u8>>,
    ) -> Result<Head, AuditError> {
        let path = paths.day_file(day);
        let existed = path.exists();
        let file = open_rw(&path, true, true).map_err(|e| AuditError::io(&path, e))?;
        let md = file.metadata().map_err(|e| AuditError::io(&path, e))?;
        if !existed {
            sync_dir(paths.dir()).map_err(|e| AuditError::io(paths.dir(), e))?;
        }
        let (len, found) = read_tail(&file, &path, day, md.len(), pending)?;
        let found = match found {
            Some(found) => Some(found),
            None => tail_before(paths, day, pending)?,
        };
        let found = match (found, prior) {
            (Some(found), Some(prior)) if found.seq < prior.seq => {
                tracing::error!(
                    file = %path.display(), on_disk = found.seq, written = prior.seq,
                    "the audit trail on disk ends before the last record written: records were removed; continuing from the last record written"
                );
                Some(prior)
            }
            (None, Some(prior)) if prior.seq > 0 => {
                tracing::error!(file = %path.display(), written = prior.seq, "the audit trail files were removed; continuing from the last record written");
                Some(prior)
            }
            (found, _) => found,
        };
        let found = found.unwrap_or(FoundTail {
            seq: 0,
            hash: GENESIS_HASH.into(),
            name: file_name(&path),
            day,
        });
        Ok(Head {
            day,
            dev: md.dev(),
            ino: md.ino(),
            len,
            path,
            file: Arc::new(file),
            seq: found.seq,
            hash: found.hash,
            tail_name: found.name,
            tail_day: found.day,
            stale: false,
            dirty: Vec::new(),
            pending: Vec::new(),
            buf: Vec::with_capacity(1024),
        })
    }

    /// Takes the end of the chain read back from our file (another writer appended).
    fn adopt(&mut self, found: Option<FoundTail>) {
        match found {
            Some(found) if found.seq >= self.seq => {
                self.seq = found.seq;
                self.hash = found.hash;
                self.tail_name = found.name;
                self.tail_day = found.day;
            }
            found => tracing::error!(
                file = %self.path.display(), on_disk = found.map_or(0, |f| f.seq), written = self.seq,
                "the audit trail file shrank: records were removed; continuing from the last record written"
            ),
        }
    }

    fn dirty_push(&mut self) {
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &self.file)) {
            self.dirty.push(self.file.clone());
        }
    }

    /// Writes records (one or a batch) with a single `write(2)`; on a short write the file
    /// is cut back and none of them counts as written.
    fn write_records(&mut self, ts: &str, events: &[&[u8]]) -> Result<(), AuditError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut seq = self.seq;
        let mut hash = self.hash.clone();
        for event in events {
            seq += 1;
            hash = record::encode(&mut buf, seq, &hash, ts, event);
        }
        let result = (&*self.file).write(&buf);
        let wanted = buf.len();
        if buf.capacity() <= 256 * 1024 {
            self.buf = buf;
        }
        match result {
            Ok(n) if n == wanted => {
                self.len += n as u64;
                self.seq = seq;
                self.hash = hash;
                // The tail's file name changes only with the file (no allocation per write).
                if self.tail_day != self.day || !self.path.ends_with(&self.tail_name) {
                    self.tail_name = file_name(&self.path);
                }
                self.tail_day = self.day;
                self.dirty_push();
                Ok(())
            }
            Ok(n) => {
                if self.file.set_len(self.len).is_err() {
                    self.stale = true;
                }
                Err(AuditError::io(
                    &self.path,
                    io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write ({n} of {wanted} bytes): disk full?"),
                    ),
                ))
            }
            Err(e) => {
                self.stale = true;
                Err(AuditError::io(&self.path, e))
            }
        }
    }
}

/// Reads the last record of a `len`-byte trail file, first cutting off an incomplete last
/// line (noting it in `pending`). Returns the file's length afterwards and the record.
fn read_tail(
    file: &File,
    path: &Path,
    day: NaiveDate,
    len: u64,
    pending: &mut Vec<Vec<u8>>,
) -> Result<(u64, Option<FoundTail>), AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let scan = scan_tail(file, len).map_err(io_err)?;
    let mut len = len;
    if let Some(from) = scan.partial_from {
        let mut torn = vec![0u8; (len - from) as usize];
        file.read_exact_at(&mut torn, from).map_err(io_err)?;
        // `file` may be read-only (an older day's file): cut through a handle of our own.
        let writable = OpenOptions::new().write(true).open(path).map_err(io_err)?;
        writable.set_len(from).map_err(io_err)?;
        writable.sync_data().map_err(io_err)?;
        let sha = hex::encode(Sha256::digest(&torn));
        tracing::warn!(
            file = %path.display(), offset = from, bytes = torn.len(), sha256 = %sha,
            "cut an incomplete record (a write cut short by a crash or a full disk) off the audit trail"
        );
        let note = AuditEvent::admin(
            "system",
            "audit.repair",
            &format!("file:{}", file_name(path)),
            serde_json::json!({
                "discarded_offset": from,
                "discarded_bytes": torn.len(),
                "discarded_sha256": sha,
            }),
        );
        pending.push(serde_json::to_vec(&note)?);
        len = from;
    }
    let Some(line) = scan.last_line else {
        return Ok((len, None));
    };
    let record = parse_line(&line).map_err(|e| AuditError::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "its last line is not a valid audit record ({e:?}), so the chain cannot continue; check it with `inferguard audit verify` and move the file aside"
        ),
    })?;
    Ok((
        len,
        Some(FoundTail {
            seq: record.seq,
            hash: record.hash,
            name: file_name(path),
            day,
        }),
    ))
}

/// The last record of the newest non-empty trail file older than `day`.
fn tail_before(
    paths: &TrailPaths,
    day: NaiveDate,
    pending: &mut Vec<Vec<u8>>,
) -> Result<Option<FoundTail>, AuditError> {
    let days = paths.days().map_err(|e| AuditError::io(paths.dir(), e))?;
    for older in days.into_iter().filter(|d| *d < day) {
        let path = paths.day_file(older);
        let file = File::open(&path).map_err(|e| AuditError::io(&path, e))?;
        let len = file.metadata().map_err(|e| AuditError::io(&path, e))?.len();
        if let (_, Some(found)) = read_tail(&file, &path, older, len, pending)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}
