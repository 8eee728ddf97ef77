//! Reports against a seeded temporary store and a hand-written trail directory.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeZone;

use super::*;
use crate::domain::PrincipalKind;
use crate::store::{ApiKeyRecord, OwnerRef, ServiceAccountRecord, SqliteStore, Store, UserRecord};

/// 2026-11-22T12:00:00Z.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

const DAY: i64 = 86_400;

fn user(name: &str, role: Option<&str>, password: bool, disabled: bool) -> UserRecord {
    UserRecord {
        username: name.into(),
        email: None,
        role: role.map(String::from),
        attributes: BTreeMap::new(),
        disabled,
        password_hash: password.then(|| "$argon2id$v=19$m=19456,t=2,p=1$x$y".into()),
        created_at: 1,
    }
}

fn key(
    id: &str,
    owner: (PrincipalKind, &str),
    expires_in_days: i64,
    revoked: bool,
) -> ApiKeyRecord {
    let t = now().timestamp();
    ApiKeyRecord {
        id: id.into(),
        name: format!("{id}-name"),
        owner: OwnerRef {
            kind: owner.0,
            name: owner.1.into(),
        },
        secret_sha256: "ab".repeat(32),
        scopes: (id == "k1").then(|| vec!["generation:create".into(), "models:view".into()]),
        daily_images: None,
        created_at: t - 30 * DAY,
        expires_at: t + expires_in_days * DAY,
        revoked_at: revoked.then_some(t - DAY),
        allowed_networks: None,
        last_used_at: None,
    }
}

/// A few JSON records per day; `ts` and the fields the reports read, nothing chained.
const DAY1: &str = r#"{"seq":1,"prev":"0","ts":"2026-11-20T09:00:00.000000Z","event_type":"admin","event_id":"e1","actor":"cli:root","action":"user.set_role","target":"user:alice","details":{"previous_role":"viewer","role":"designer"},"result":"ok","hash":"h"}
{"seq":2,"prev":"h","ts":"2026-11-20T10:00:00.000000Z","event_type":"decision","event_id":"e2","request_id":"r1","user_id":"alice","principal_kind":"user","auth_method":"api_key","key_id":"k1","role":"designer","action":"text-to-image","permissions":["generation:create"],"preset":"Speed","loras":["a.safetensors","b, \"c\""],"image_number":2,"model":"juggernaut","result":"allow","hash":"h"}
{"seq":3,"prev":"h","ts":"2026-11-20T11:00:00.000000Z","event_type":"decision","event_id":"e3","user_id":"alice","principal_kind":"user","auth_method":"jwt","role":"designer","action":"text-to-image","permissions":["generation:create"],"preset":"Quality","result":"deny","error":"preset_not_allowed","hash":"h"}
{"seq":4,"prev":"h","ts":"2026-11-20T12:00:00.000000Z","event_type":"admin","event_id":"e4","actor":"system","action":"audit.trail_opened","result":"ok","hash":"h"}
"#;
const DAY2: &str = r#"{"seq":5,"prev":"h","ts":"2026-11-21T08:00:00.000000Z","event_type":"decision","event_id":"e5","request_id":"r2","user_id":"batch","principal_kind":"service_account","auth_method":"api_key","key_id":"k2","role":"batch","action":"llm-chat","permissions":["generation:create"],"model":"llama","image_number":1,"result":"allow","hash":"h"}
{"seq":6,"prev":"h","ts":"2026-11-21T09:00:00.000000Z","event_type":"admin","event_id":"e6","actor":"cli:root","action":"key.revoke","target":"key:k3","result":"ok","hash":"h"}
{"seq":7,"prev":"h","ts":"2026-11-21T10:00:00.000000Z","event_type":"decision","event_id":"e7","request_id":"r3","user_id":"alice","principal_kind":"user","auth_method":"session","role":"designer","action":"models","permissions":["models:view"],"result":"allow","hash":"h"}
{"seq":8,"prev":"h","ts":"2026-11-21T11:00:00.000000Z","event_type":"admin","event_id":"e8","actor":"system","action":"policy.reload","target":"policy:policy.yaml","result":"failed","hash":"h"}
{"seq":9,"prev":"h","ts":"2026-11-21T12:00:00.000000Z","event_type":"decision","event_id":"e9","request_id":"r4","user_id":"alice","principal_kind":"user","auth_method":"api_key","key_id":"k1","role":"designer","action":"upscale","permissions":["generation:upscale"],"image_number":1,"result":"allow","hash":"h"}
{"seq":10,"prev":"h","ts":"2026-11-21T13:0
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    sources: ReportSources,
}

async fn fixture(with_trail: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let store = Arc::new(SqliteStore::connect(&url).await.expect("store"));
    for u in [
        user("alice", Some("designer"), true, false),
        user("bob", None, true, false),
        user("carol", None, false, true),
    ] {
        store.create_user(&u).await.expect("user");
    }
    store
        .create_service_account(&ServiceAccountRecord {
            name: "batch".into(),
            role: "batch".into(),
            attributes: BTreeMap::new(),
            daily_images: None,
            daily_tokens: None,
            disabled: false,
            created_at: 1,
        })
        .await
        .expect("sa");
    for k in [
        key("k1", (PrincipalKind::User, "alice"), 10, false),
        key("k2", (PrincipalKind::ServiceAccount, "batch"), 60, false),
        key("k3", (PrincipalKind::User, "alice"), 60, true),
        key("k4", (PrincipalKind::User, "bob"), -1, false),
    ] {
        store.create_key(&k).await.expect("key");
    }
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs");
    std::fs::write(logs.join("audit-2026-11-20.jsonl"), DAY1).expect("day1");
    std::fs::write(logs.join("audit-2026-11-21.jsonl"), DAY2).expect("day2");
    // Neither a checkpoint sidecar nor another trail's file is read.
    std::fs::write(
        logs.join("audit-2026-11-21.checkpoints.jsonl"),
        r#"{"file":"x","seq":1,"hash":"h","ts":"2026-11-21T08:00:00Z","event_type":"decision","user_id":"bob","result":"allow"}"#,
    )
    .expect("sidecar");
    std::fs::write(logs.join("other-2026-11-21.jsonl"), DAY2).expect("other");
    Fixture {
        sources: ReportSources {
            store,
            trail_base: with_trail.then(|| logs.join("audit.jsonl")),
            default_role: Some("viewer".into()),
        },
        _dir: dir,
    }
}

async fn json(cmd: ReportCommand, f: &Fixture) -> Vec<Value> {
    let text = cmd.render(&f.sources, now()).await.expect("render");
    match serde_json::from_str(&text).expect("json") {
        Value::Array(rows) => rows,
        other => panic!("not an array: {other}"),
    }
}

fn by<'a>(rows: &'a [Value], key: &str, value: &str) -> &'a Value {
    rows.iter().find(|r| r[key] == value).expect("row")
}

#[tokio::test]
async fn access_review_in_every_format() {
    let f = fixture(true).await;
    let rows = json(
        ReportCommand::AccessReview {
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    assert_eq!(rows.len(), 4);
    let alice = by(&rows, "name", "alice");
    assert_eq!(alice["kind"], "user");
    assert_eq!(alice["role"], "designer");
    assert_eq!(alice["role_source"], "binding");
    assert_eq!(alice["last_activity"], "2026-11-21T12:00:00Z");
    assert_eq!(alice["active_keys"], 1, "k3 is revoked");
    let bob = by(&rows, "name", "bob");
    assert_eq!(bob["role"], "viewer");
    assert_eq!(bob["role_source"], "default");
    assert_eq!(bob["last_activity"], Value::Null);
    assert_eq!(bob["active_keys"], 0, "k4 is expired");
    let carol = by(&rows, "name", "carol");
    assert_eq!(carol["role_source"], "idp-groups (resolved at login)");
    assert_eq!(carol["disabled"], true);
    let batch = by(&rows, "name", "batch");
    assert_eq!(batch["kind"], "service_account");
    assert_eq!(batch["role_source"], "binding");
    assert_eq!(batch["last_activity"], "2026-11-21T08:00:00Z");
    assert_eq!(batch["active_keys"], 1);

    let table = ReportCommand::AccessReview {
        format: ReportFormat::Table,
    }
    .render(&f.sources, now())
    .await
    .expect("table");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME  "), "{table}");
    assert!(lines[0].contains("LAST ACTIVITY"));
    assert!(table.contains("idp-groups (resolved at login)"));
    assert_eq!(lines.len(), 5);

    let csv = ReportCommand::AccessReview {
        format: ReportFormat::Csv,
    }
    .render(&f.sources, now())
    .await
    .expect("csv");
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "name,kind,role,role_source,disabled,last_activity,active_keys"
    );
    assert!(lines.contains(&"alice,user,designer,binding,false,2026-11-21T12:00:00Z,1"));
    assert!(lines.contains(&"bob,user,viewer,default,false,—,0"));
}

#[tokio::test]
async fn without_a_trail_the_trail_columns_say_so_and_trail_reports_fail() {
    let f = fixture(false).await;
    let rows = json(
        ReportCommand::AccessReview {
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    assert!(rows.iter().all(|r| r["last_activity"] == NO_TRAIL));
    let rows = json(
        ReportCommand::Keys {
            format: ReportFormat::Json,
            expiring_within: EXPIRY_REMINDER_DAYS,
        },
        &f,
    )
    .await;
    assert!(rows.iter().all(|r| r["last_used"] == NO_TRAIL));
    for cmd in [
        ReportCommand::PermissionChanges {
            since: None,
            format: ReportFormat::Table,
        },
        ReportCommand::Generations {
            since: Some("7d".into()),
            sample: None,
            format: ReportFormat::Table,
        },
    ] {
        let err = cmd.render(&f.sources, now()).await.expect_err("no trail");
        assert!(err.to_string().contains("audit.file"), "{err}");
    }
}

#[tokio::test]
async fn key_inventory_with_status_reminders_and_last_use() {
    let f = fixture(true).await;
    let rows = json(
        ReportCommand::Keys {
            format: ReportFormat::Json,
            expiring_within: EXPIRY_REMINDER_DAYS,
        },
        &f,
    )
    .await;
    assert_eq!(rows.len(), 4);
    let k1 = by(&rows, "id", "k1");
    assert_eq!(k1["owner_kind"], "user");
    assert_eq!(k1["owner"], "alice");
    assert_eq!(k1["scopes"][0], "generation:create");
    assert_eq!(k1["status"], "active");
    assert_eq!(k1["days_until_expiry"], 10);
    assert_eq!(k1["reminder"], "expires_soon");
    assert_eq!(k1["last_used"], "2026-11-21T12:00:00Z");
    let k2 = by(&rows, "id", "k2");
    assert_eq!(k2["scopes"], "(role)");
    assert_eq!(k2["days_until_expiry"], 60);
    assert_eq!(k2["reminder"], Value::Null);
    assert_eq!(k2["last_used"], "2026-11-21T08:00:00Z");
    let k3 = by(&rows, "id", "k3");
    assert_eq!(k3["status"], "revoked");
    assert_eq!(k3["days_until_expiry"], Value::Null);
    assert_eq!(k3["last_used"], Value::Null);
    assert_eq!(by(&rows, "id", "k4")["status"], "expired");
    let text = serde_json::to_string(&rows).expect("text");
    assert!(!text.contains(&"ab".repeat(32)), "no secret hashes");

    let table = ReportCommand::Keys {
        format: ReportFormat::Table,
        expiring_within: EXPIRY_REMINDER_DAYS,
    }
    .render(&f.sources, now())
    .await
    .expect("table");
    let k3_line = table.lines().find(|l| l.starts_with("k3 ")).expect("k3");
    assert!(
        k3_line.contains("revoked") && k3_line.contains('—'),
        "{k3_line}"
    );
    let csv = ReportCommand::Keys {
        format: ReportFormat::Csv,
        expiring_within: EXPIRY_REMINDER_DAYS,
    }
    .render(&f.sources, now())
    .await
    .expect("csv");
    let k1_line = csv
        .split("\r\n")
        .find(|l| l.starts_with("k1,"))
        .expect("k1");
    assert!(
        k1_line.contains(",\"generation:create,models:view\","),
        "{k1_line}"
    );
    assert!(k1_line.contains(",10,expires_soon,"), "{k1_line}");
}

#[tokio::test]
async fn key_inventory_uses_stored_last_use_and_the_reminder_window() {
    let f = fixture(true).await;
    let later = chrono::Utc
        .with_ymd_and_hms(2026, 11, 22, 9, 30, 0)
        .unwrap()
        .timestamp();
    let earlier = chrono::Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    f.sources
        .store
        .record_key_uses(&[("k1".into(), later), ("k2".into(), earlier)])
        .await
        .expect("uses");
    let rows = json(
        ReportCommand::Keys {
            format: ReportFormat::Json,
            expiring_within: 60,
        },
        &f,
    )
    .await;
    let k1 = by(&rows, "id", "k1");
    assert_eq!(
        k1["last_used"], "2026-11-22T09:30:00Z",
        "stored use is later"
    );
    let k2 = by(&rows, "id", "k2");
    assert_eq!(
        k2["last_used"], "2026-11-21T08:00:00Z",
        "trail use is later"
    );
    assert_eq!(k2["reminder"], "expires_soon", "60 days is within 60");
    let rows = json(
        ReportCommand::Keys {
            format: ReportFormat::Json,
            expiring_within: 5,
        },
        &f,
    )
    .await;
    assert_eq!(by(&rows, "id", "k1")["reminder"], Value::Null);

    let f = fixture(false).await;
    f.sources
        .store
        .record_key_uses(&[("k1".into(), later)])
        .await
        .expect("uses");
    let rows = json(
        ReportCommand::Keys {
            format: ReportFormat::Json,
            expiring_within: EXPIRY_REMINDER_DAYS,
        },
        &f,
    )
    .await;
    assert_eq!(
        by(&rows, "id", "k1")["last_used"],
        "2026-11-22T09:30:00Z",
        "stored uses need no trail"
    );
}

#[tokio::test]
async fn permission_changes_since_a_date_or_duration() {
    let f = fixture(true).await;
    let all = json(
        ReportCommand::PermissionChanges {
            since: None,
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    let actions: Vec<&str> = all
        .iter()
        .map(|r| r["action"].as_str().expect("a"))
        .collect();
    assert_eq!(actions, ["user.set_role", "key.revoke", "policy.reload"]);
    assert_eq!(all[0]["actor"], "cli:root");
    assert_eq!(all[0]["target"], "user:alice");
    assert_eq!(all[0]["details"]["previous_role"], "viewer");
    assert_eq!(all[2]["result"], "failed");

    let since_date = json(
        ReportCommand::PermissionChanges {
            since: Some("2026-11-21".into()),
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    assert_eq!(since_date.len(), 2);
    // 2026-11-22T12:00 minus 27h = 2026-11-21T09:00: key.revoke is exactly at the bound.
    let since_duration = json(
        ReportCommand::PermissionChanges {
            since: Some("27h".into()),
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    assert_eq!(since_duration.len(), 2);
    assert_eq!(since_duration[0]["action"], "key.revoke");

    let csv = ReportCommand::PermissionChanges {
        since: None,
        format: ReportFormat::Csv,
    }
    .render(&f.sources, now())
    .await
    .expect("csv");
    assert!(csv.starts_with("ts,actor,action,target,result,details\r\n"));
    assert!(
        csv.contains(r#","{""previous_role"":""viewer"",""role"":""designer""}""#),
        "{csv}"
    );
    let table = ReportCommand::PermissionChanges {
        since: None,
        format: ReportFormat::Table,
    }
    .render(&f.sources, now())
    .await
    .expect("table");
    assert_eq!(table.lines().count(), 4);
    assert!(table.starts_with("TIME "));
}

#[tokio::test]
async fn generations_filter_and_sample() {
    let f = fixture(true).await;
    let rows = json(
        ReportCommand::Generations {
            since: None,
            sample: None,
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    let requests: Vec<&str> = rows
        .iter()
        .map(|r| r["request_id"].as_str().expect("id"))
        .collect();
    // Not the denied one (e3), not the models:view one (r3), not the torn last line.
    assert_eq!(requests, ["r1", "r2", "r4"]);
    assert_eq!(rows[0]["user_id"], "alice");
    assert_eq!(rows[0]["auth_method"], "api_key");
    assert_eq!(rows[0]["key_id"], "k1");
    assert_eq!(rows[0]["preset"], "Speed");
    assert_eq!(rows[0]["model"], "juggernaut");
    assert_eq!(rows[0]["image_number"], 2);
    assert_eq!(rows[0]["loras"][1], "b, \"c\"");
    assert_eq!(rows[1]["role"], "batch");

    let sampled = json(
        ReportCommand::Generations {
            since: None,
            sample: Some(2),
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    let ids: Vec<&str> = sampled
        .iter()
        .map(|r| r["request_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["r1", "r2"]);

    let since = json(
        ReportCommand::Generations {
            since: Some("2026-11-21T10:00:00Z".into()),
            sample: None,
            format: ReportFormat::Json,
        },
        &f,
    )
    .await;
    assert_eq!(since.len(), 1);
    assert_eq!(since[0]["request_id"], "r4");

    let csv = ReportCommand::Generations {
        since: None,
        sample: None,
        format: ReportFormat::Csv,
    }
    .render(&f.sources, now())
    .await
    .expect("csv");
    let first = csv.split("\r\n").nth(1).expect("row");
    assert!(
        first.contains(r#",Speed,juggernaut,"a.safetensors,b, ""c""",2,r1"#),
        "{first}"
    );
    let table = ReportCommand::Generations {
        since: None,
        sample: None,
        format: ReportFormat::Table,
    }
    .render(&f.sources, now())
    .await
    .expect("table");
    assert_eq!(table.lines().count(), 4);
}

#[test]
fn since_parsing() {
    let n = now();
    assert_eq!(
        parse_since("2026-11-01", n).expect("date"),
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
    );
    assert_eq!(
        parse_since("7d", n).expect("7d"),
        Utc.with_ymd_and_hms(2026, 11, 15, 12, 0, 0).unwrap()
    );
    assert_eq!(
        parse_since("12h", n).expect("12h"),
        Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap()
    );
    assert_eq!(
        parse_since("2026-11-20T08:30:00+01:00", n).expect("rfc3339"),
        Utc.with_ymd_and_hms(2026, 11, 20, 7, 30, 0).unwrap()
    );
    for bad in ["yesterday", "2026-13-01", "", "-3d"] {
        let err = parse_since(bad, n).expect_err(bad);
        assert!(err.to_string().contains("--since"), "{err}");
    }
}

#[test]
fn even_samples_are_deterministic() {
    let rows: Vec<u32> = (0..10).collect();
    assert_eq!(sample_evenly(rows.clone(), 3), [0, 3, 6]);
    assert_eq!(sample_evenly(rows.clone(), 5), [0, 2, 4, 6, 8]);
    assert_eq!(sample_evenly(rows.clone(), 1), [0]);
    assert_eq!(sample_evenly(rows.clone(), 10), rows);
    assert_eq!(sample_evenly(rows.clone(), 50), rows);
    assert_eq!(sample_evenly(Vec::<u32>::new(), 3), Vec::<u32>::new());
}

#[test]
fn csv_fields_are_quoted_and_defused() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv_field(" padded"), "\" padded\"");
    assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    assert_eq!(csv_field("@cmd"), "'@cmd");
    assert_eq!(csv_field("-3"), "-3");
    assert_eq!(csv_field("-x"), "'-x");
    assert_eq!(csv_field(""), "");
}

#[test]
fn clap_parses_the_report_commands() {
    use clap::Parser;
    let cli = crate::cli::Cli::try_parse_from([
        "inferguard",
        "report",
        "generations",
        "--since",
        "7d",
        "--sample",
        "5",
        "--format",
        "csv",
    ])
    .expect("parse");
    assert!(matches!(
        cli.command,
        crate::cli::Command::Report(ReportCommand::Generations {
            sample: Some(5),
            format: ReportFormat::Csv,
            ..
        })
    ));
    assert!(
        crate::cli::Cli::try_parse_from(["inferguard", "report", "generations", "--sample", "0"])
            .is_err()
    );
    let cli = crate::cli::Cli::try_parse_from(["inferguard", "report", "keys"]).expect("parse");
    assert!(matches!(
        cli.command,
        crate::cli::Command::Report(ReportCommand::Keys {
            format: ReportFormat::Table,
            expiring_within: EXPIRY_REMINDER_DAYS,
        })
    ));
    let cli = crate::cli::Cli::try_parse_from([
        "inferguard",
        "report",
        "keys",
        "--expiring-within",
        "90",
    ])
    .expect("parse");
    assert!(matches!(
        cli.command,
        crate::cli::Command::Report(ReportCommand::Keys {
            expiring_within: 90,
            ..
        })
    ));
}
