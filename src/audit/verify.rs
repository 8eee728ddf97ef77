//! `inferguard audit verify FILE... [--key K]`: checks the hash chain across daily files and
//! the signed checkpoints.
//!
//! What is detected, and where it is reported:
//!
//! * an edited record: its own hash no longer matches (that line);
//! * an inserted, deleted, swapped or reordered record: the `prev` of the first record after
//!   the change does not match (that line), and `seq` says which records are missing or out
//!   of order;
//! * a torn or truncated last line: a line without its newline (that line);
//! * a daily file missing from the sequence, or cut at its end while a later file exists: the
//!   first record of the next file does not link (its line 1);
//! * whole records cut from the end of the trail: a checkpoint covers more records than the
//!   files hold (the line after the last one), provided a checkpoint beyond the cut survives;
//! * rewritten records whose hashes were all recomputed (a forged chain): a checkpoint's
//!   hash differs (the checkpointed line); with `--key`, a forged or altered checkpoint fails
//!   its signature.
//!
//! Records after the last checkpoint are reported as an *unverified tail*: removing some of
//! them from the end cannot be detected from the files alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::checkpoint::Checkpoint;
use super::files::{checkpoint_name, date_in_name, is_checkpoint_name};
use super::record::{GENESIS_HASH, LineError, parse_line};

/// A line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as given (or found beside a given one).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What kind of problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file could not be read.
    Unreadable,
    /// A line is not a record (or not a checkpoint).
    Malformed,
    /// A record's content does not match its own hash: it was edited.
    Edited,
    /// A record does not follow the one before it: an insertion, deletion or reordering
    /// (or a missing file, at the first line of a file).
    ChainBroken,
    /// The last line has no newline: it was cut (or a write was torn by a crash).
    TruncatedLine,
    /// A checkpoint covers records the files do not hold: records were cut from the end.
    Truncated,
    /// A record differs from what a checkpoint says about it: the chain was rewritten.
    CheckpointMismatch,
    /// A checkpoint's signature fails, or it was signed by a key not given.
    BadSignature,
}

/// One problem, where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub at: Location,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// What one trail file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailFileSummary {
    pub file: PathBuf,
    /// Valid records read (up to the first problem).
    pub records: u64,
    /// `seq` of its first and last valid records.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// The outcome of [`verify_files`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The trail files, in chain order.
    pub files: Vec<TrailFileSummary>,
    /// The checkpoint sidecars read (given or found beside the trail files).
    pub checkpoint_files: Vec<PathBuf>,
    /// Valid records read.
    pub records: u64,
    /// Checkpoints read, and how many of them matched a record of the given files.
    pub checkpoints: u64,
    pub checkpoints_matched: u64,
    /// Whether checkpoint signatures were checked (a key was given).
    pub signatures_checked: bool,
    /// The `seq` of the first record, when it is not 1 (earlier files were not given: the
    /// first record's `prev` cannot be checked).
    pub starts_at_seq: Option<u64>,
    /// The highest `seq` a matching checkpoint covers.
    pub checkpointed_seq: Option<u64>,
    /// Records after the last matching checkpoint: where they start and how many.
    pub unverified_tail: Option<(Location, u64)>,
    /// Everything wrong, the trail's first break first. Empty = intact.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            match (file.first_seq, file.last_seq) {
                (Some(a), Some(b)) => writeln!(
                    f,
                    "{}: {} records (seq {a}..{b})",
                    file.file.display(),
                    file.records
                )?,
                _ => writeln!(f, "{}: no valid records", file.file.display())?,
            }
        }
        if let Some(seq) = self.starts_at_seq {
            writeln!(
                f,
                "note: the chain starts at seq {seq}; the files before it were not given, so its first link is not checked"
            )?;
        }
        let signatures = if self.signatures_checked {
            "signatures checked"
        } else {
            "signatures NOT checked (give --key)"
        };
        writeln!(
            f,
            "checkpoints: {} read, {} matching these files, {signatures}",
            self.checkpoints, self.checkpoints_matched
        )?;
        if let Some((at, n)) = &self.unverified_tail {
            writeln!(
                f,
                "unverified tail: {n} records from {at} on are after the last checkpoint (a cut there cannot be detected)"
            )?;
        }
        for p in &self.problems {
            writeln!(f, "BROKEN {p}")?;
        }
        if self.ok() {
            writeln!(f, "OK: {} records, chain intact", self.records)?;
        }
        Ok(())
    }
}

/// One checkpoint as read, with where it came from.
struct ReadCheckpoint {
    cp: Checkpoint,
    at: Location,
}

/// Checks trail files (and checkpoint sidecars, given or found beside them) with `keys` to
/// check checkpoint signatures (none: signatures are not checked, but checkpoints still are
/// compared with the records).
///
/// Trail files are taken in the order of the date in their names when every name has one,
/// else in the order given; sidecars are recognised by `.checkpoints` in their names.
pub fn verify_files(files: &[PathBuf], keys: &[VerifyingKey]) -> VerifyReport {
    let mut report = VerifyReport {
        signatures_checked: !keys.is_empty(),
        ..VerifyReport::default()
    };
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };

    let mut trails: Vec<PathBuf> = Vec::new();
    let mut sidecars: Vec<PathBuf> = Vec::new();
    for f in files {
        let list = if is_checkpoint_name(&name_of(f)) {
            &mut sidecars
        } else {
            &mut trails
        };
        if !list.contains(f) {
            list.push(f.clone());
        }
    }
    if trails.iter().all(|t| date_in_name(&name_of(t)).is_some()) {
        trails.sort_by_key(|t| date_in_name(&name_of(t)));
    }
    for t in &trails {
        let beside = t.with_file_name(checkpoint_name(&name_of(t)));
        if beside.is_file() && !sidecars.contains(&beside) {
            sidecars.push(beside);
        }
    }

    // Checkpoints first: each is compared when the chain reaches its record.
    let mut by_seq: BTreeMap<u64, Vec<ReadCheckpoint>> = BTreeMap::new();
    let mut checkpoint_problems = Vec::new();
    let mut checkpoints = 0;
    for path in &sidecars {
        report.checkpoint_files.push(path.clone());
        read_lines(path, &mut checkpoint_problems, |line, at, problems| {
            let cp: Checkpoint = match serde_json::from_slice(line) {
                Ok(cp) => cp,
                Err(e) => {
                    problems.push(Problem {
                        kind: ProblemKind::Malformed,
                        at,
                        message: format!("not a checkpoint: {e}"),
                    });
                    return false;
                }
            };
            checkpoints += 1;
            if !keys.is_empty()
                && let Err(why) = cp.verify(keys)
            {
                problems.push(Problem {
                    kind: ProblemKind::BadSignature,
                    at,
                    message: format!("checkpoint for seq {}: {why}", cp.seq),
                });
                return true;
            }
            by_seq
                .entry(cp.seq)
                .or_default()
                .push(ReadCheckpoint { cp, at });
            true
        });
    }
    report.checkpoints = checkpoints;
    report.problems = checkpoint_problems;

    // The chain.
    let trail_names: BTreeSet<String> = trails.iter().map(|t| name_of(t)).collect();
    let mut prev: Option<(u64, String, Location)> = None;
    let mut tail_start: Option<Location> = None;
    let mut last_matched: Option<u64> = None;
    let mut chain_problem = None;
    'files: for path in &trails {
        let name = name_of(path);
        let mut summary = TrailFileSummary {
            file: path.clone(),
            records: 0,
            first_seq: None,
            last_seq: None,
        };
        let mut file_problems = Vec::new();
        read_lines(path, &mut file_problems, |line, at, problems| {
            let record = match parse_line(line) {
                Ok(r) => r,
                Err(LineError::HashMismatch) => {
                    problems.push(Problem {
                        kind: ProblemKind::Edited,
                        at,
                        message: "the record does not match its own hash: it was edited".into(),
                    });
                    return false;
                }
                Err(LineError::Malformed(why)) => {
                    problems.push(Problem {
                        kind: ProblemKind::Malformed,
                        at,
                        message: why,
                    });
                    return false;
                }
            };
            if let Some(message) = link_problem(prev.as_ref(), &record.prev, record.seq, &at) {
                problems.push(Problem {
                    kind: ProblemKind::ChainBroken,
                    at,
                    message,
                });
                return false;
            }
            if prev.is_none() && record.seq > 1 {
                report.starts_at_seq = Some(record.seq);
            }
            for rc in by_seq.get(&record.seq).into_iter().flatten() {
                if rc.cp.hash != record.hash || rc.cp.file != name {
                    problems.push(Problem {
                        kind: ProblemKind::CheckpointMismatch,
                        at,
                        message: format!(
                            "the checkpoint at {} says record {} is {} in {}: the records up to here were rewritten",
                            rc.at, rc.cp.seq, rc.cp.hash, rc.cp.file
                        ),
                    });
                    return false;
                }
                report.checkpoints_matched += 1;
                last_matched = Some(record.seq);
                tail_start = None;
            }
            if last_matched != Some(record.seq) && tail_start.is_none() {
                tail_start = Some(at.clone());
            }
            summary.records += 1;
            summary.first_seq.get_or_insert(record.seq);
            summary.last_seq = Some(record.seq);
            report.records += 1;
            prev = Some((record.seq, record.hash, at));
            true
        });
        report.files.push(summary);
        if let Some(p) = file_problems.into_iter().next() {
            chain_problem = Some(p);
            break 'files;
        }
    }

    match chain_problem {
        Some(p) => report.problems.insert(0, p),
        None => {
            // Checkpoints beyond the end: records were cut off.
            let last_seq = prev.as_ref().map_or(0, |p| p.0);
            let first_seq = report.files.iter().find_map(|f| f.first_seq).unwrap_or(1);
            let beyond = by_seq
                .range(last_seq + 1..)
                .flat_map(|(_, v)| v)
                .max_by_key(|rc| rc.cp.seq);
            if let Some(rc) = beyond {
                let at = match trails.iter().find(|t| name_of(t) == rc.cp.file) {
                    Some(t) => Location {
                        file: t.clone(),
                        line: count_lines(t) + 1,
                    },
                    None => rc.at.clone(),
                };
                let cut = rc.cp.seq - last_seq;
                let message = if trail_names.contains(&rc.cp.file) {
                    format!(
                        "truncated: the checkpoint at {} covers records up to seq {}, but the trail ends at seq {last_seq}: {cut} records were cut from the end",
                        rc.at, rc.cp.seq
                    )
                } else {
                    format!(
                        "the checkpoint here covers records up to seq {} in {}, which was not given (or was deleted): the trail ends at seq {last_seq}",
                        rc.cp.seq, rc.cp.file
                    )
                };
                report.problems.insert(
                    0,
                    Problem {
                        kind: ProblemKind::Truncated,
                        at,
                        message,
                    },
                );
            }
            if let (Some(at), Some((last, _, _))) = (tail_start.take(), &prev) {
                let from = last_matched.unwrap_or(first_seq.saturating_sub(1));
                report.unverified_tail = Some((at, last - from));
            }
        }
    }
    report.checkpointed_seq = last_matched;
    report
}

/// Why a record with `prev_hash` and `seq` does not follow `prev` (None when it does).
fn link_problem(
    prev: Option<&(u64, String, Location)>,
    prev_hash: &str,
    seq: u64,
    at: &Location,
) -> Option<String> {
    let Some((last_seq, last_hash, last_at)) = prev else {
        // The first record given: only the very first record of a trail can be checked.
        return (seq == 1 && prev_hash != GENESIS_HASH)
            .then(|| "the first record (seq 1) does not start from the genesis hash".into());
    };
    if prev_hash == last_hash && seq == last_seq + 1 {
        return None;
    }
    let first_of_file = at.line == 1 && last_at.file != at.file;
    let after = if first_of_file {
        format!(
            "the last record of {} (seq {last_seq})",
            last_at.file.display()
        )
    } else {
        format!("line {} (seq {last_seq})", last_at.line)
    };
    Some(if seq > last_seq + 1 {
        let missing = if seq == last_seq + 2 {
            format!("record {} is missing", last_seq + 1)
        } else {
            format!("records {}..{} are missing", last_seq + 1, seq - 1)
        };
        if first_of_file {
            format!(
                "chain broken: seq {seq} follows {after}: {missing} (a daily file missing from the sequence, or cut at its end)"
            )
        } else {
            format!("chain broken: seq {seq} follows {after}: {missing} (deleted lines)")
        }
    } else if seq <= *last_seq {
        format!("chain broken: seq {seq} follows {after}: a record inserted, duplicated or moved")
    } else if prev_hash != last_hash {
        format!(
            "chain broken: its prev hash is not the hash of {after}: a record replaced or inserted"
        )
    } else {
        format!("chain broken: seq {seq} follows {after}")
    })
}

/// Reads `path` line by line, calling `each(line, location, problems)` until it returns
/// false. Reports an unreadable file, and a last line without newline (which is not passed
/// to `each`).
fn read_lines(
    path: &Path,
    problems: &mut Vec<Problem>,
    mut each: impl FnMut(&[u8], Location, &mut Vec<Problem>) -> bool,
) {
    let at = |line| Location {
        file: path.to_path_buf(),
        line,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            problems.push(Problem {
                kind: ProblemKind::Unreadable,
                at: at(0),
                message: format!("cannot read: {e}"),
            });
            return;
        }
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                problems.push(Problem {
                    kind: ProblemKind::Unreadable,
                    at: at(n + 1),
                    message: format!("cannot read: {e}"),
                });
                return;
            }
        }
        n += 1;
        if line.last() != Some(&b'\n') {
            problems.push(Problem {
                kind: ProblemKind::TruncatedLine,
                at: at(n),
                message: format!(
                    "the last line is incomplete ({} bytes, no newline): the file was cut or a write was torn",
                    line.len()
                ),
            });
            return;
        }
        line.pop();
        if !each(&line, at(n), problems) {
            return;
        }
    }
}

fn count_lines(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut n = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) | Err(_) => return n,
            Ok(buf) => buf,
        };
        n += memchr::memchr_iter(b'\n', buf).count() as u64;
        let len = buf.len();
        reader.consume(len);
    }
}
