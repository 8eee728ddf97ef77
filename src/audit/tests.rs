//! Trails written, tampered with in every way the issue names, and verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate};

use super::record::encode;
use super::*;
use crate::config::AuditConfig;
use crate::domain::{
    Action, Allow, AuthMethod, Denial, DenyKind, Permission, Principal, PrincipalKind, Request,
    RoleSource,
};

/// 2026-11-22T10:00:00Z
const T0: i64 = 1_795_341_600;
const DAY: i64 = 86_400;

struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> TestClock {
        TestClock(Arc::new(AtomicI64::new(T0)))
    }
    fn clock(&self) -> writer::Clock {
        let t = self.0.clone();
        Arc::new(move || {
            DateTime::from_timestamp(t.fetch_add(1, Ordering::SeqCst), 0).expect("time")
        })
    }
    fn advance_days(&self, days: i64) {
        self.0.fetch_add(days * DAY, Ordering::SeqCst);
    }
}

fn day(offset: i64) -> NaiveDate {
    DateTime::from_timestamp(T0 + offset * DAY, 0)
        .expect("time")
        .date_naive()
}

fn config() -> AuditConfig {
    AuditConfig {
        // Checkpoints only when the tests ask (close/record_durable), never by time.
        checkpoint_every: Duration::from_secs(3600),
        checkpoint_records: 1_000_000,
        ..AuditConfig::default()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    key: CheckpointKey,
    clock: TestClock,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
            key: CheckpointKey::generate(),
            clock: TestClock::new(),
        }
    }
    fn base(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
    fn open(&self) -> AuditTrail {
        self.open_with(&config())
    }
    fn open_with(&self, cfg: &AuditConfig) -> AuditTrail {
        let key = CheckpointKey::from_pem(&self.key.private_pem()).expect("key");
        writer::AuditTrail::open_with_clock(&self.base(), cfg, key, self.clock.clock())
            .expect("open")
    }
    fn file(&self, offset: i64) -> PathBuf {
        self.dir
            .path()
            .join(format!("audit-{}.jsonl", day(offset).format("%Y-%m-%d")))
    }
    fn keys(&self) -> Vec<ed25519_dalek::VerifyingKey> {
        vec![self.key.verifying_key()]
    }
}

fn admin(i: usize) -> AuditEvent {
    AuditEvent::admin(
        "cli:test",
        "user.set_role",
        &format!("user:u{i}"),
        serde_json::json!({"role": "viewer", "i": i}),
    )
}

async fn write(trail: &AuditTrail, range: std::ops::Range<usize>) {
    for i in range {
        trail.record(admin(i)).await.expect("record");
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write");
}

/// A trail of 13 records in one file: 10 covered by a checkpoint, 3 after it.
async fn checkpointed_trail() -> Fixture {
    let fx = Fixture::new();
    let trail = fx.open();
    write(&trail, 0..10).await;
    trail.close().await.expect("checkpoint");
    write(&trail, 10..13).await;
    // As if the process were killed: no final checkpoint for the last 3.
    std::mem::forget(trail);
    fx
}

fn only_problem(report: &VerifyReport) -> &Problem {
    assert_eq!(report.problems.len(), 1, "{report}");
    &report.problems[0]
}

#[tokio::test]
async fn an_untouched_trail_verifies_with_its_unverified_tail_reported() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let report = verify_files(std::slice::from_ref(&file), &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 13);
    assert_eq!(report.checkpoints, 1);
    assert_eq!(report.checkpoints_matched, 1);
    assert_eq!(report.checkpointed_seq, Some(10));
    assert!(report.signatures_checked);
    let (at, n) = report.unverified_tail.clone().expect("tail");
    assert_eq!((at.line, n), (11, 3));
    let text = report.to_string();
    assert!(text.contains("13 records (seq 1..13)"), "{text}");
    assert!(text.contains("unverified tail: 3 records from"), "{text}");

    // Every line is JSON with the chain members and the event.
    let first: serde_json::Value = serde_json::from_str(&lines(&file)[0]).expect("json");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], GENESIS_HASH);
    assert_eq!(first["event_type"], "admin");
    assert_eq!(first["target"], "user:u0");
    assert!(
        first["ts"]
            .as_str()
            .expect("ts")
            .starts_with("2026-11-22T10:00")
    );

    // Without a key the chain and checkpoint contents are still checked.
    let report = verify_files(std::slice::from_ref(&file), &[]);
    assert!(report.ok(), "{report}");
    assert!(!report.signatures_checked);
}

#[tokio::test]
async fn an_edited_field_is_caught_at_its_line() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let mut l = lines(&file);
    l[3] = l[3].replace("\"role\":\"viewer\"", "\"role\":\"admin\"");
    write_lines(&file, &l);
    let report = verify_files(&[file], &fx.keys());
    let p = only_problem(&report);
    assert_eq!((p.kind, p.at.line), (ProblemKind::Edited, 4), "{report}");
}

#[tokio::test]
async fn an_inserted_line_is_caught_at_its_line() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let mut l = lines(&file);
    let copy = l[2].clone();
    l.insert(5, copy);
    write_lines(&file, &l);
    let report = verify_files(&[file], &fx.keys());
    let p = only_problem(&report);
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::ChainBroken, 6),
        "{report}"
    );
    assert!(p.message.contains("inserted"), "{}", p.message);
}

#[tokio::test]
async fn a_deleted_line_is_caught_where_it_was() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let mut l = lines(&file);
    l.remove(4);
    write_lines(&file, &l);
    let report = verify_files(&[file], &fx.keys());
    let p = only_problem(&report);
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::ChainBroken, 5),
        "{report}"
    );
    assert!(p.message.contains("record 5 is missing"), "{}", p.message);
}

#[tokio::test]
async fn swapped_lines_are_caught_at_the_first() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let mut l = lines(&file);
    l.swap(3, 6);
    write_lines(&file, &l);
    let report = verify_files(&[file], &fx.keys());
    let p = only_problem(&report);
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::ChainBroken, 4),
        "{report}"
    );
}

#[tokio::test]
async fn a_truncated_last_line_is_caught() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let bytes = std::fs::read(&file).expect("read");
    std::fs::write(&file, &bytes[..bytes.len() - 20]).expect("cut");
    let report = verify_files(&[file], &fx.keys());
    let p = only_problem(&report);
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::TruncatedLine, 13),
        "{report}"
    );
}

#[tokio::test]
async fn records_cut_before_the_last_checkpoint_are_caught() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let l = lines(&file);
    write_lines(&file, &l[..7]);
    let report = verify_files(std::slice::from_ref(&file), &fx.keys());
    let p = only_problem(&report);
    assert_eq!((p.kind, p.at.line), (ProblemKind::Truncated, 8), "{report}");
    assert!(p.message.contains("3 records were cut"), "{}", p.message);

    // Cutting only the unverified tail cannot be detected: the report says so.
    write_lines(&file, &l[..11]);
    let report = verify_files(&[file], &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.unverified_tail.as_ref().map(|t| t.1), Some(1));
}

#[tokio::test]
async fn a_rewritten_chain_is_caught_by_the_checkpoint() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    // An attacker without the key edits line 3 and recomputes every hash after it.
    let l = lines(&file);
    let mut prev = GENESIS_HASH.to_string();
    let mut forged = Vec::new();
    for (i, line) in l.iter().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).expect("json");
        if i == 2 {
            v["details"]["role"] = "admin".into();
        }
        let ts = v["ts"].as_str().expect("ts").to_string();
        let obj = v.as_object_mut().expect("object");
        for k in ["seq", "prev", "ts", "hash"] {
            obj.remove(k);
        }
        let event = serde_json::to_vec(&v).expect("json");
        let mut buf = Vec::new();
        prev = encode(&mut buf, i as u64 + 1, &prev, &ts, &event);
        forged.push(String::from_utf8(buf).expect("utf8").trim_end().to_string());
    }
    write_lines(&file, &forged);
    let report = verify_files(std::slice::from_ref(&file), &[]);
    let p = only_problem(&report);
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::CheckpointMismatch, 10),
        "{report}"
    );
}

#[tokio::test]
async fn a_checkpoint_whose_signature_fails_is_caught() {
    let fx = checkpointed_trail().await;
    let file = fx.file(0);
    let sidecar = fx.dir.path().join(format!(
        "audit-{}.checkpoints.jsonl",
        day(0).format("%Y-%m-%d")
    ));
    let l = lines(&sidecar);
    assert_eq!(l.len(), 1);
    // Claim the checkpoint covers 13 records instead of 10, with line 13's hash.
    let mut cp: Checkpoint = serde_json::from_str(&l[0]).expect("checkpoint");
    let last: serde_json::Value = serde_json::from_str(&lines(&file)[12]).expect("json");
    cp.seq = 13;
    cp.hash = last["hash"].as_str().expect("hash").into();
    write_lines(&sidecar, &[serde_json::to_string(&cp).expect("json")]);
    let report = verify_files(std::slice::from_ref(&file), &fx.keys());
    let p = only_problem(&report);
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::BadSignature, 1),
        "{report}"
    );
    assert_eq!(p.at.file, sidecar);

    // A key that did not sign it fails too.
    let other = CheckpointKey::generate();
    let report = verify_files(std::slice::from_ref(&file), &[other.verifying_key()]);
    assert_eq!(report.problems[0].kind, ProblemKind::BadSignature);
    assert!(report.problems[0].message.contains("not among the keys"));
}

/// Three daily files, a checkpoint at the end of each day.
async fn three_days() -> Fixture {
    let fx = Fixture::new();
    let trail = fx.open();
    for d in 0..3 {
        write(&trail, d * 5..d * 5 + 5).await;
        trail.close().await.expect("checkpoint");
        fx.clock.advance_days(1);
    }
    fx
}

#[tokio::test]
async fn the_chain_continues_across_daily_files() {
    let fx = three_days().await;
    let files: Vec<PathBuf> = (0..3).map(|d| fx.file(d)).collect();
    for f in &files {
        assert_eq!(lines(f).len(), 5, "{}", f.display());
    }
    // The first record of a day carries the last hash of the day before.
    let last0: serde_json::Value = serde_json::from_str(&lines(&files[0])[4]).expect("json");
    let first1: serde_json::Value = serde_json::from_str(&lines(&files[1])[0]).expect("json");
    assert_eq!(first1["prev"], last0["hash"]);
    assert_eq!(first1["seq"], 6);

    // Given in any order, verified in date order.
    let shuffled = vec![files[2].clone(), files[0].clone(), files[1].clone()];
    let report = verify_files(&shuffled, &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 15);
    assert_eq!(report.checkpoints_matched, 3);
    assert_eq!(report.unverified_tail, None);

    // A later file alone: its first link cannot be checked, the rest can.
    let report = verify_files(&files[2..], &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.starts_at_seq, Some(11));
}

#[tokio::test]
async fn a_missing_middle_file_is_caught_at_the_next_file() {
    let fx = three_days().await;
    let report = verify_files(&[fx.file(0), fx.file(2)], &fx.keys());
    let p = only_problem(&report);
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::ChainBroken, 1),
        "{report}"
    );
    assert_eq!(p.at.file, fx.file(2));
    assert!(
        p.message.contains("records 6..10 are missing") && p.message.contains("daily file"),
        "{}",
        p.message
    );
}

#[tokio::test]
async fn a_day_file_cut_at_its_end_is_caught_by_the_next_day() {
    let fx = three_days().await;
    let l = lines(&fx.file(1));
    write_lines(&fx.file(1), &l[..3]);
    // Its own checkpoint is beside it, and the next day does not link either.
    let files: Vec<PathBuf> = (0..3).map(|d| fx.file(d)).collect();
    let report = verify_files(&files, &fx.keys());
    let p = &report.problems[0];
    assert_eq!(
        (p.kind, p.at.line),
        (ProblemKind::ChainBroken, 1),
        "{report}"
    );
    assert_eq!(p.at.file, fx.file(2));
}

#[tokio::test]
async fn two_writers_on_one_trail_make_one_chain() {
    let fx = Fixture::new();
    let serve = fx.open();
    let cli = fx.open();
    let a = serve.clone();
    let b = cli.clone();
    let t1 = std::thread::spawn(move || {
        for i in 0..400 {
            a.record_now(&admin(i)).expect("a");
        }
    });
    let t2 = std::thread::spawn(move || {
        for i in 400..800 {
            b.record_now(&admin(i)).expect("b");
            if i % 100 == 0 {
                std::thread::yield_now();
            }
        }
    });
    t1.join().expect("a");
    t2.join().expect("b");
    // Interleaved appends through the async API too.
    for i in 800..810 {
        let trail = if i % 2 == 0 { &serve } else { &cli };
        trail.record(admin(i)).await.expect("record");
    }
    serve.close().await.expect("close");
    cli.close().await.expect("close");
    let file = fx.file(0);
    let report = verify_files(std::slice::from_ref(&file), &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 810);
    assert_eq!(report.unverified_tail, None);
    let targets: std::collections::BTreeSet<String> = lines(&file)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["target"]
                .as_str()
                .expect("target")
                .to_string()
        })
        .collect();
    assert_eq!(targets.len(), 810, "every record once");
}

/// Records of concurrent Checks are written together: one `write(2)` for all that were ready,
/// so they carry one timestamp (the real clock has microseconds), in one valid chain.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_records_are_written_as_one_batch_in_one_chain() {
    let fx = Fixture::new();
    let key = CheckpointKey::from_pem(&fx.key.private_pem()).expect("key");
    let trail = AuditTrail::open_with_key(&fx.base(), &config(), key).expect("open");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let trail = trail.clone();
        tasks.spawn(async move { trail.record(admin(i)).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("record");
    }
    trail.close().await.expect("close");
    let file = trail.current_file();
    let records: Vec<serde_json::Value> = lines(&file)
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 64);
    let stamps: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["ts"].as_str().expect("ts"))
        .collect();
    assert_eq!(stamps.len(), 1, "written in {} writes", stamps.len());
    let targets: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["target"].as_str().expect("target"))
        .collect();
    assert_eq!(targets.len(), 64, "every record once");
    let report = verify_files(std::slice::from_ref(&file), &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 64);
}

/// The caller writing a batch may be cancelled while it lets the others queue (its Check's
/// client went away): the records queued behind it are still written and their callers
/// answered.
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_batch_writer_still_writes_the_records_waiting_on_it() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let fx = Fixture::new();
    let trail = fx.open();
    let mut cx = Context::from_waker(Waker::noop());
    let mut leader = Box::pin(trail.record(admin(0)));
    assert!(
        leader.as_mut().poll(&mut cx).is_pending(),
        "the writer yields first"
    );
    let mut follower = Box::pin(trail.record(admin(1)));
    assert!(
        follower.as_mut().poll(&mut cx).is_pending(),
        "queued behind the writer"
    );
    drop(leader);
    match follower.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result.expect("written"),
        Poll::Pending => panic!("the follower was stranded"),
    }
    let written = lines(&fx.file(0));
    assert_eq!(
        written.len(),
        2,
        "the cancelled writer's record is written too"
    );
    trail
        .record(admin(2))
        .await
        .expect("a later record still gets a writer");
    trail.close().await.expect("close");
    let report = verify_files(&[fx.file(0)], &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 3);
}

/// Many Checks at once on several threads, some cancelled wherever they are (their clients
/// went away): every acknowledged record is written exactly once, nothing is written twice,
/// the chain verifies, and the writing is never left with nobody (a later record still goes
/// through). Enough records that writers hand the writing on under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_and_cancelled_records_on_many_threads_make_one_valid_chain() {
    let fx = Fixture::new();
    let trail = fx.open();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3000 {
        let trail = trail.clone();
        tasks.spawn(async move {
            if i % 5 == 0 {
                let attempt = trail.record(admin(i));
                let done = tokio::time::timeout(Duration::from_micros(30), attempt).await;
                (i, done.ok().map(|r| r.is_ok()))
            } else {
                (i, Some(trail.record(admin(i)).await.is_ok()))
            }
        });
    }
    let mut acknowledged = std::collections::BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            (i, Some(true)) => {
                acknowledged.insert(i);
            }
            (i, Some(false)) => panic!("record {i} failed"),
            (_, None) => {} // cancelled: written or not
        }
    }
    tokio::time::timeout(Duration::from_secs(5), trail.record(admin(99_999)))
        .await
        .expect("a later record is not stuck")
        .expect("record");
    trail.close().await.expect("close");
    let written: Vec<usize> = lines(&fx.file(0))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let target = v["target"].as_str().expect("target");
            target.trim_start_matches("user:u").parse().expect("index")
        })
        .collect();
    let unique: std::collections::BTreeSet<usize> = written.iter().copied().collect();
    assert_eq!(unique.len(), written.len(), "a record written twice");
    let missing: Vec<_> = acknowledged.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not written: {missing:?}"
    );
    assert!(
        acknowledged.len() >= 2400,
        "{} acknowledged",
        acknowledged.len()
    );
    let report = verify_files(&[fx.file(0)], &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, written.len() as u64);
}

#[tokio::test]
async fn a_writer_continues_after_another_rolled_over_to_a_new_day() {
    let fx = Fixture::new();
    let serve = fx.open();
    write(&serve, 0..3).await;
    let cli = fx.open();
    fx.clock.advance_days(1);
    write(&cli, 3..5).await;
    write(&serve, 5..7).await;
    write(&cli, 7..8).await;
    serve.close().await.expect("close");
    let report = verify_files(&[fx.file(0), fx.file(1)], &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 8);
    assert_eq!(lines(&fx.file(1)).len(), 5);
    assert_eq!(serve.current_file(), fx.file(1));
}

#[tokio::test]
async fn reopening_continues_the_chain_and_repairs_a_torn_line() {
    let fx = Fixture::new();
    let trail = fx.open();
    write(&trail, 0..3).await;
    drop(trail);
    // A crash in the middle of a write leaves half a line.
    let file = fx.file(0);
    let mut bytes = std::fs::read(&file).expect("read");
    bytes.extend_from_slice(br#"{"seq":4,"prev":"ab"#);
    std::fs::write(&file, &bytes).expect("write");
    assert_eq!(
        verify_files(std::slice::from_ref(&file), &[]).problems[0].kind,
        ProblemKind::TruncatedLine
    );

    let trail = fx.open();
    write(&trail, 3..5).await;
    trail.close().await.expect("close");
    let report = verify_files(std::slice::from_ref(&file), &fx.keys());
    assert!(report.ok(), "{report}");
    let l = lines(&file);
    assert_eq!(l.len(), 6, "3 + repair note + 2");
    let note: serde_json::Value = serde_json::from_str(&l[3]).expect("json");
    assert_eq!(note["action"], "audit.repair");
    assert_eq!(note["details"]["discarded_bytes"], 19);
}

#[tokio::test]
async fn a_trail_that_does_not_end_in_a_record_is_refused() {
    let fx = Fixture::new();
    std::fs::write(fx.file(0), "not a record\n").expect("write");
    let key = CheckpointKey::generate();
    let err = AuditTrail::open_with_key(&fx.base(), &config(), key).expect_err("corrupt");
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn an_unwritable_trail_makes_record_fail() {
    // A trail whose directory cannot exist.
    let fx = Fixture::new();
    let blocker = fx.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").expect("write");
    let err = AuditTrail::open_with_key(
        &blocker.join("audit.jsonl"),
        &config(),
        CheckpointKey::generate(),
    )
    .expect_err("unwritable");
    assert!(matches!(err, AuditError::Io { .. }), "{err}");

    // A full disk: today's file is replaced by /dev/full while the trail is open.
    let trail = fx.open();
    write(&trail, 0..2).await;
    let today = trail.current_file();
    std::fs::remove_file(&today).expect("remove");
    std::os::unix::fs::symlink("/dev/full", &today).expect("symlink");
    let err = trail.record(admin(2)).await.expect_err("disk full");
    assert!(matches!(err, AuditError::Io { .. }), "{err}");
    assert_eq!(trail.write_failures(), 1);

    // allow_and_alarm decides anyway, and counts.
    let lenient = fx.open_with(&AuditConfig {
        on_write_failure: OnWriteFailure::AllowAndAlarm,
        ..config()
    });
    lenient.record(admin(3)).await.expect("allowed");
    assert_eq!(lenient.write_failures(), 1);

    // A read-only directory (meaningless for root, who may write anyway).
    let ro = fx.dir.path().join("ro");
    std::fs::create_dir(&ro).expect("dir");
    set_mode(&ro, 0o500);
    let privileged = std::fs::write(ro.join("probe"), "").is_ok();
    if !privileged {
        let err = AuditTrail::open_with_key(
            &ro.join("audit.jsonl"),
            &config(),
            CheckpointKey::generate(),
        )
        .expect_err("read-only");
        assert!(matches!(err, AuditError::Io { .. }), "{err}");
    }
    set_mode(&ro, 0o700);
}

#[tokio::test]
async fn a_writer_stuck_holding_the_lock_makes_record_fail_not_hang() {
    let fx = Fixture::new();
    let trail = fx.open();
    write(&trail, 0..1).await;
    let lock = std::fs::File::open(fx.dir.path().join("audit.jsonl.lock")).expect("lock");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    let started = Instant::now();
    let err = trail.record(admin(1)).await.expect_err("stuck");
    assert!(started.elapsed() >= writer::LOCK_TIMEOUT);
    assert!(err.to_string().contains("held the trail's lock"), "{err}");
    drop(lock);
    write(&trail, 2..3).await;
    trail.close().await.expect("close");
    assert!(verify_files(&[fx.file(0)], &fx.keys()).ok());
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn principal() -> Principal {
    Principal {
        subject: "alice".into(),
        kind: PrincipalKind::User,
        email: Some("alice@example.com".into()),
        groups: vec!["designers".into()],
        role: "designer_basic".into(),
        role_source: RoleSource::Group,
        auth: AuthMethod::Session,
        key_id: None,
        scopes: None,
        session_id: Some("raw-session-id-0123456789".into()),
        mfa: false,
        attributes: BTreeMap::new(),
    }
}

fn request() -> Request {
    let mut req = Request {
        id: "req-1".into(),
        method: "POST".into(),
        path: "/v1/generation/text-to-image".into(),
        query: "api_key=fk_secret".into(),
        peer: Some("198.51.100.7".into()),
        ..Request::default()
    };
    req.headers.insert("user-agent".into(), "curl/8".into());
    req.headers.insert(
        "x-api-key".into(),
        "fk_0123456789abcdef_secretsecret".into(),
    );
    req
}

fn action() -> Action {
    Action {
        permissions: vec![Permission::GenerationCreate],
        name: "text-to-image".into(),
        preset: Some("Speed".into()),
        loras: vec!["sdxl_film".into()],
        image_number: Some(2),
        model: Some("juggernautXL_v8Rundiffusion.safetensors".into()),
        prompt: Some("a secret lighthouse at dawn".into()),
        negative_prompt: Some("blurry watermark".into()),
        prompts: vec!["a secret lighthouse at dawn".into()],
        ..Action::default()
    }
}

#[tokio::test]
async fn prompts_are_hashed_when_redacted_and_secrets_never_written() {
    let fx = Fixture::new();
    let trail = fx.open();
    assert!(trail.redact_prompts());
    let allow = Allow {
        principal: principal(),
        action: action(),
        extra_headers: vec![],
        policy_version: "v42".into(),
    };
    let req = request();
    let event = AuditEvent::decision(
        &req,
        Ok(&allow),
        "v41",
        Duration::from_micros(250),
        trail.redact_prompts(),
    );
    trail.record(event).await.expect("record");
    let denial = Denial::new(
        DenyKind::PendingApproval {
            approval_id: "ap-1".into(),
        },
        "approval_required",
        "rule cost_control requires an approval",
    )
    .with_rule("rules.cost_control");
    let event = AuditEvent::decision(&req, Err(&denial), "v42", Duration::from_micros(90), true)
        .with_principal(&allow.principal)
        .with_action(&allow.action, true)
        .with_status(403);
    trail.record(event).await.expect("record");
    trail.close().await.expect("close");

    let text = std::fs::read_to_string(fx.file(0)).expect("read");
    for secret in [
        "lighthouse",
        "blurry",
        "raw-session-id",
        "fk_",
        "secretsecret",
        "api_key=",
    ] {
        assert!(!text.contains(secret), "`{secret}` in {text}");
    }
    let l = lines(&fx.file(0));
    let allow: serde_json::Value = serde_json::from_str(&l[0]).expect("json");
    let sha = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
    assert_eq!(allow["prompt_sha256"], sha("a secret lighthouse at dawn"));
    assert_eq!(allow["negative_prompt_sha256"], sha("blurry watermark"));
    assert_eq!(allow["session_sha256"], sha("raw-session-id-0123456789"));
    assert_eq!(allow["event_type"], "decision");
    assert_eq!(allow["result"], "allow");
    assert_eq!(allow["request_id"], "req-1");
    assert_eq!(allow["user_id"], "alice");
    assert_eq!(allow["auth_method"], "session");
    assert_eq!(allow["role"], "designer_basic");
    assert_eq!(allow["role_source"], "group");
    assert_eq!(allow["action"], "text-to-image");
    assert_eq!(allow["path"], "/v1/generation/text-to-image");
    assert_eq!(allow["preset"], "Speed");
    assert_eq!(allow["loras"][0], "sdxl_film");
    assert_eq!(allow["image_number"], 2);
    assert_eq!(allow["model"], "juggernautXL_v8Rundiffusion.safetensors");
    assert_eq!(allow["client_address"], "198.51.100.7");
    assert_eq!(allow["user_agent"], "curl/8");
    assert_eq!(allow["policy_version"], "v42");
    assert_eq!(allow["duration_us"], 250);
    assert!(allow.get("prompt").is_none());
    let deny: serde_json::Value = serde_json::from_str(&l[1]).expect("json");
    assert_eq!(deny["result"], "deny");
    assert_eq!(deny["status"], 403);
    assert_eq!(deny["error"], "approval_required");
    assert_eq!(deny["rule"], "rules.cost_control");
    assert_eq!(deny["approval_id"], "ap-1");
    assert_eq!(deny["user_id"], "alice");
    assert_ne!(deny["event_id"], allow["event_id"]);

    // Unredacted, the prompt is kept (and long ones are cut).
    let mut long = action();
    long.prompt = Some("é".repeat(event::MAX_PROMPT_BYTES));
    let event = AuditEvent::decision(&req, Ok(&allow_with(long)), "v", Duration::ZERO, false);
    assert_eq!(
        event.prompt.as_deref().map(str::len),
        Some(event::MAX_PROMPT_BYTES)
    );
    assert!(event.prompt_truncated && event.prompt_sha256.is_none());
    let event = AuditEvent::decision(&req, Ok(&allow_with(action())), "v", Duration::ZERO, false);
    assert_eq!(event.prompt.as_deref(), Some("a secret lighthouse at dawn"));
}

fn allow_with(action: Action) -> Allow {
    Allow {
        principal: principal(),
        action,
        extra_headers: vec![],
        policy_version: String::new(),
    }
}

#[tokio::test]
async fn the_checkpoint_key_comes_from_the_environment_or_the_store() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store: crate::store::DynStore = Arc::new(
        crate::store::SqliteStore::connect(&url)
            .await
            .expect("store"),
    );
    let cfg = AuditConfig::default();
    let a = AuditTrail::open(&cfg, dir.path(), store.clone())
        .await
        .expect("open");
    let b = AuditTrail::open(&cfg, dir.path(), store.clone())
        .await
        .expect("open");
    assert_eq!(a.key_id(), b.key_id(), "generated once, kept in the store");
    a.record(admin(0)).await.expect("record");
    a.close().await.expect("close");
    let stored = store
        .get_or_create_signing_key(AUDIT_KEY_PURPOSE, &|| unreachable!("exists"))
        .await
        .expect("stored");
    assert_eq!(stored.kid, a.key_id());

    let key = CheckpointKey::generate();
    let pem = key.private_pem();
    let env_cfg = AuditConfig {
        signing_key_env: Some("AUDIT_KEY".into()),
        ..AuditConfig::default()
    };
    let getenv = move |var: &str| (var == "AUDIT_KEY").then(|| pem.clone());
    let from_env = CheckpointKey::load_with_env(&env_cfg, dir.path(), &store, &getenv)
        .await
        .expect("from env");
    assert_eq!(from_env.kid(), key.kid());
    let missing = AuditConfig {
        signing_key_env: Some("INFERGUARD_TEST_UNSET_VAR_91c2".into()),
        ..AuditConfig::default()
    };
    let err = AuditTrail::open(&missing, dir.path(), store.clone())
        .await
        .expect_err("unset");
    assert!(err.to_string().contains("not set"), "{err}");
    let both = AuditConfig {
        signing_key_file: Some("k.pem".into()),
        ..env_cfg
    };
    assert!(matches!(
        AuditTrail::open(&both, dir.path(), store.clone()).await,
        Err(AuditError::Config(_))
    ));
    std::fs::write(dir.path().join("k.pem"), key.private_pem()).expect("write");
    let file_cfg = AuditConfig {
        signing_key_file: Some("k.pem".into()),
        ..AuditConfig::default()
    };
    let from_file = AuditTrail::open(&file_cfg, dir.path(), store)
        .await
        .expect("from file");
    assert_eq!(from_file.key_id(), key.kid());
}

/// Appends decisions as fast as one task can and prints the rate (run with
/// `cargo test --release --lib audit_append_rate -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing, not a check"]
async fn audit_append_rate() {
    let fx = Fixture::new();
    let key = CheckpointKey::from_pem(&fx.key.private_pem()).expect("key");
    let trail = AuditTrail::open_with_key(&fx.base(), &config(), key).expect("open");
    let allow = allow_with(action());
    let req = request();
    let n = 200_000;

    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let event = AuditEvent::decision(&req, Ok(&allow), "v1", Duration::from_micros(80), true);
        bytes += serde_json::to_vec(&event).expect("json").len();
    }
    let build = started.elapsed();
    println!(
        "build + serialise only: {:.1} µs/event, {} bytes of event JSON",
        build.as_secs_f64() * 1e6 / n as f64,
        bytes / n
    );

    let started = Instant::now();
    for _ in 0..n {
        let event = AuditEvent::decision(&req, Ok(&allow), "v1", Duration::from_micros(80), true);
        trail.record(event).await.expect("record");
    }
    let elapsed = started.elapsed();
    trail.close().await.expect("close");
    let file = trail.current_file();
    println!(
        "{n} records in {elapsed:?}: {:.0} records/s, {:.1} µs each, {} bytes/record",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / n as f64,
        std::fs::metadata(&file).expect("md").len() / n as u64
    );

    // Four tasks on the two-worker runtime share one trail.
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let trail = trail.clone();
            let (req, allow) = (req.clone(), allow.clone());
            tokio::spawn(async move {
                for _ in 0..n / 4 {
                    let event = AuditEvent::decision(&req, Ok(&allow), "v1", Duration::ZERO, true);
                    trail.record(event).await.expect("record");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = started.elapsed();
    println!(
        "4 tasks, 2 workers: {:.0} records/s",
        n as f64 / elapsed.as_secs_f64()
    );
    trail.close().await.expect("close");

    let verify_started = Instant::now();
    let report = verify_files(&[file], &fx.keys());
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 2 * n as u64);
    println!(
        "verified {} records in {:?}",
        report.records,
        verify_started.elapsed()
    );
}

#[test]
fn the_audit_section_parses_and_validates() {
    let path = Path::new("/etc/inferguard/inferguard.yaml");
    let cfg = crate::config::ServerConfig::parse(
        path,
        "policy: {file: policy.yaml}\n\
         audit:\n  file: /var/log/inferguard/audit.jsonl\n  redact_prompts: false\n  \
         checkpoint_every: 30s\n  checkpoint_records: 500\n  signing_key_env: AUDIT_KEY\n  \
         on_write_failure: allow_and_alarm\n",
    )
    .expect("parses");
    let audit = cfg.audit.expect("audit");
    assert!(!audit.redact_prompts);
    assert_eq!(audit.checkpoint_every, Duration::from_secs(30));
    assert_eq!(audit.checkpoint_records, 500);
    assert_eq!(audit.signing_key_env.as_deref(), Some("AUDIT_KEY"));
    assert_eq!(audit.on_write_failure, OnWriteFailure::AllowAndAlarm);
    assert_eq!(audit.validate(), Ok(()));

    let cfg = crate::config::ServerConfig::parse(
        path,
        "policy: {file: p.yaml}\naudit: {file: a.jsonl}\n",
    )
    .expect("parses");
    let audit = cfg.audit.expect("audit");
    assert!(audit.redact_prompts, "redacted by default");
    assert_eq!(
        audit.on_write_failure,
        OnWriteFailure::Deny,
        "fail closed by default"
    );
    assert_eq!(audit.checkpoint_every, Duration::from_secs(10));

    for bad in [
        "checkpoint_every: soon",
        "on_write_failure: ignore",
        "checkpoint_records: -1",
    ] {
        let text = format!("policy: {{file: p.yaml}}\naudit:\n  file: a.jsonl\n  {bad}\n");
        assert!(
            crate::config::ServerConfig::parse(path, &text).is_err(),
            "{bad}"
        );
    }
    let zero = AuditConfig {
        checkpoint_records: 0,
        ..AuditConfig::default()
    };
    assert!(zero.validate().is_err());
    let too_rare = AuditConfig {
        checkpoint_every: Duration::from_secs(7200),
        ..AuditConfig::default()
    };
    assert!(too_rare.validate().is_err());
}
