//! File names of a trail (daily files, checkpoint sidecars, the lock) and reading the last
//! line of a file from its end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};

/// The infix that marks a checkpoint sidecar: `audit-2026-11-22.checkpoints.jsonl`.
pub(crate) const CHECKPOINTS_INFIX: &str = ".checkpoints";

/// The files of one trail, derived from its configured base name (`dir/audit.jsonl`).
#[derive(Debug, Clone)]
pub(crate) struct TrailPaths {
    dir: PathBuf,
    stem: String,
    /// The extension with its dot (`.jsonl`), or empty.
    ext: String,
    lock: PathBuf,
}

impl TrailPaths {
    /// The files of the trail whose base name is `base` (already resolved).
    pub fn new(base: &Path) -> TrailPaths {
        let dir = match base.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = base
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        let ext = base
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let name = base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        TrailPaths {
            lock: dir.join(format!("{name}.lock")),
            dir,
            stem,
            ext,
        }
    }

    /// The directory holding the trail.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file every writer holds while appending.
    pub fn lock_file(&self) -> &Path {
        &self.lock
    }

    /// The name (no directory) of the trail file of `day`: `audit-2026-11-22.jsonl`.
    pub fn day_name(&self, day: NaiveDate) -> String {
        format!(
            "{}-{:04}-{:02}-{:02}{}",
            self.stem,
            day.year(),
            day.month(),
            day.day(),
            self.ext
        )
    }

    /// The trail file of `day`.
    pub fn day_file(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(self.day_name(day))
    }

    /// The checkpoint sidecar of `day`: `audit-2026-11-22.checkpoints.jsonl`.
    pub fn checkpoint_file(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(checkpoint_name(&self.day_name(day)))
    }

    /// The day of a trail file name of this trail (not a sidecar).
    fn day_of(&self, name: &str) -> Option<NaiveDate> {
        let rest = name.strip_prefix(&self.stem)?.strip_prefix('-')?;
        let date = rest.strip_suffix(self.ext.as_str())?;
        if date.len() != 10 {
            return None;
        }
        NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
    }

    /// The days that have a trail file, newest first.
    pub fn days(&self) -> io::Result<Vec<NaiveDate>> {
        let mut days = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(days),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if let Some(day) = entry.file_name().to_str().and_then(|n| self.day_of(n)) {
                days.push(day);
            }
        }
        days.sort_unstable_by(|a, b| b.cmp(a));
        Ok(days)
    }
}

/// The sidecar name of a trail file name: `.checkpoints` before the extension.
pub(crate) fn checkpoint_name(trail_name: &str) -> String {
    match trail_name.rfind('.') {
        Some(dot) if dot > 0 => format!(
            "{}{CHECKPOINTS_INFIX}{}",
            &trail_name[..dot],
            &trail_name[dot..]
        ),
        _ => format!("{trail_name}{CHECKPOINTS_INFIX}"),
    }
}

/// Whether a file name is a checkpoint sidecar's.
pub(crate) fn is_checkpoint_name(name: &str) -> bool {
    let without_ext = match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    };
    without_ext.ends_with(CHECKPOINTS_INFIX) || name.ends_with(CHECKPOINTS_INFIX)
}

/// The `YYYY-MM-DD` date in a daily file name, if any (for ordering the files to verify).
pub(crate) fn date_in_name(name: &str) -> Option<NaiveDate> {
    let bytes = name.as_bytes();
    (0..bytes.len().saturating_sub(9)).rev().find_map(|i| {
        let s = name.get(i..i + 10)?;
        let b = s.as_bytes();
        let shaped = b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(j, c)| j == 4 || j == 7 || c.is_ascii_digit());
        shaped
            .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .flatten()
    })
}

/// The end of a file as lines: its last complete line and any incomplete tail after it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TailScan {
    /// The last line that ends in a newline (without the newline).
    pub last_line: Option<Vec<u8>>,
    /// Where bytes after the last newline start, when the file does not end in a newline.
    pub partial_from: Option<u64>,
}

/// Reads the end of a `len`-byte file backwards until its last complete line is found.
pub(crate) fn scan_tail(file: &File, len: u64) -> io::Result<TailScan> {
    let mut scan = TailScan::default();
    if len == 0 {
        return Ok(scan);
    }
    // `buf` holds the bytes [start, len).
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    let mut chunk: u64 = 8 * 1024;
    loop {
        let n = chunk.min(start);
        let mut more = vec![0u8; n as usize];
        file.read_exact_at(&mut more, start - n)?;
        more.extend_from_slice(&buf);
        buf = more;
        start -= n;
        chunk = chunk.saturating_mul(2);

        // The last newline in the file ends the last complete line.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                scan.partial_from = Some(0);
                return Ok(scan);
            }
            continue;
        };
        let begin = match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => continue,
        };
        if (end as u64) + start + 1 < len {
            scan.partial_from = Some(start + end as u64 + 1);
        }
        scan.last_line = Some(buf[begin..end].to_vec());
        return Ok(scan);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn names_follow_the_base_name() {
        let p = TrailPaths::new(Path::new("/var/log/ig/audit.jsonl"));
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
        assert_eq!(
            p.day_file(day),
            PathBuf::from("/var/log/ig/audit-2026-11-22.jsonl")
        );
        assert_eq!(
            p.checkpoint_file(day),
            PathBuf::from("/var/log/ig/audit-2026-11-22.checkpoints.jsonl")
        );
        assert_eq!(p.lock_file(), Path::new("/var/log/ig/audit.jsonl.lock"));
        assert_eq!(p.day_of("audit-2026-11-22.jsonl"), Some(day));
        assert_eq!(p.day_of("audit-2026-11-22.checkpoints.jsonl"), None);
        assert_eq!(p.day_of("other-2026-11-22.jsonl"), None);
        let bare = TrailPaths::new(Path::new("trail"));
        assert_eq!(bare.day_name(day), "trail-2026-11-22");
        assert_eq!(
            checkpoint_name("trail-2026-11-22"),
            "trail-2026-11-22.checkpoints"
        );
        assert!(is_checkpoint_name("trail-2026-11-22.checkpoints"));
        assert!(is_checkpoint_name("audit-2026-11-22.checkpoints.jsonl"));
        assert!(!is_checkpoint_name("audit-2026-11-22.jsonl"));
        assert_eq!(date_in_name("audit-2026-11-22.jsonl"), Some(day));
        assert_eq!(date_in_name("audit.jsonl"), None);
    }

    #[test]
    fn tail_scan_finds_the_last_line_and_a_partial_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        let scan = |content: &[u8]| {
            let mut f = File::create(&path).expect("create");
            f.write_all(content).expect("write");
            let f = File::open(&path).expect("open");
            scan_tail(&f, content.len() as u64).expect("scan")
        };
        assert_eq!(scan(b""), TailScan::default());
        assert_eq!(
            scan(b"one\ntwo\n"),
            TailScan {
                last_line: Some(b"two".to_vec()),
                partial_from: None
            }
        );
        assert_eq!(
            scan(b"one\ntwo\nthr"),
            TailScan {
                last_line: Some(b"two".to_vec()),
                partial_from: Some(8)
            }
        );
        assert_eq!(
            scan(b"par"),
            TailScan {
                last_line: None,
                partial_from: Some(0)
            }
        );
        let long = vec![b'x'; 100_000];
        let mut content = b"first\n".to_vec();
        content.extend_from_slice(&long);
        content.push(b'\n');
        assert_eq!(scan(&content).last_line.as_deref(), Some(&long[..]));
    }
}
