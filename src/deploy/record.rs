//! What hoist writes into an alias's description, so that the next run — in
//! a later job, on another machine — can see what the last one did or is
//! doing. It lives on the alias itself, and changes in the same UpdateAlias
//! call that moves the traffic, so it cannot disagree with the routing.
//!
//! Two kinds of record (Lambda allows 256 characters of description):
//! - a finished deploy or rollback, `hoist: current=5 previous=4 image=…`,
//!   which `hoist rollback` goes back by;
//! - a shift in progress, `hoist: shifting from=4 to=5 image=sha256:…
//!   strategy=canary:10%:5m until=… id=… before=3 run=…`, written with every
//!   weighted step. A re-run of the same image that finds the alias split
//!   exactly so knows it is looking at its own interrupted deployment (a
//!   runner lost mid-shift: SIGKILL, a dead machine) and completes it; a
//!   deployment of another image knows whom it is waiting for. `until` is
//!   the time by which the holder writes the alias again (the step's bake
//!   and waits, and a margin): once it has passed, the holder is gone.

use crate::env::Env;
use crate::image::Digest;

/// Lambda's limit on an alias description (API reference, UpdateAlias).
pub const MAX: usize = 256;

const PREFIX: &str = "hoist:";

/// A finished deploy (or rollback): what the alias serves now, and what it
/// served before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub current: String,
    pub previous: String,
}

impl Record {
    pub fn description(&self, digest: Option<&Digest>) -> String {
        let mut s = format!(
            "{PREFIX} current={} previous={}",
            self.current, self.previous
        );
        if let Some(d) = digest {
            s.push_str(&format!(" image={}", d.short()));
        }
        s
    }

    pub fn parse(description: &str) -> Option<Record> {
        let words = words(description)?;
        if words.iter().any(|(k, _)| *k == "shifting") {
            return None;
        }
        Some(Record {
            current: field(&words, "current")?.to_string(),
            previous: field(&words, "previous")?.to_string(),
        })
    }
}

/// A shift in progress: from version `from` to version `to` (running
/// `digest`), by the hoist process `id` of CI run `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shifting {
    pub from: String,
    pub to: String,
    pub digest: Digest,
    /// The strategy, as `--strategy` takes it (`canary:10%:5m`).
    pub strategy: String,
    /// Unix seconds ([`crate::clock::unix_now`]): the holder writes the
    /// alias again before then.
    pub until: i64,
    /// The hoist process (random, per process).
    pub id: String,
    /// The version the alias's record named as previous before this deploy
    /// (what a restore writes back), if it had a record.
    pub before: Option<String>,
    /// The CI run (its URL), when hoist runs in CI.
    pub run: Option<String>,
}

impl Shifting {
    /// The description, at most [`MAX`] characters: the run's URL is left
    /// out when it does not fit (everything else always does).
    pub fn description(&self) -> String {
        let mut s = format!(
            "{PREFIX} shifting from={} to={} image={} strategy={} until={} id={}",
            self.from, self.to, self.digest, self.strategy, self.until, self.id
        );
        for (k, v) in [("before", &self.before), ("run", &self.run)] {
            if let Some(v) = v.as_deref().filter(|v| !v.contains(char::is_whitespace)) {
                let part = format!(" {k}={v}");
                if s.len() + part.len() <= MAX {
                    s.push_str(&part);
                }
            }
        }
        s
    }

    pub fn parse(description: &str) -> Option<Shifting> {
        let words = words(description)?;
        if !words.iter().any(|(k, _)| *k == "shifting") {
            return None;
        }
        let get = |k| field(&words, k).map(str::to_string);
        Some(Shifting {
            from: get("from")?,
            to: get("to")?,
            digest: field(&words, "image")?.parse().ok()?,
            strategy: get("strategy").unwrap_or_default(),
            // Written as unsigned seconds: a negative lease is a damaged record.
            until: field(&words, "until")?.parse().ok().filter(|u| *u >= 0)?,
            id: get("id").unwrap_or_default(),
            before: get("before"),
            run: get("run"),
        })
    }

    /// What the alias's description becomes when the shift is undone (the
    /// alias back on `from`): the record it had before, or nothing.
    pub fn undone(&self) -> String {
        match &self.before {
            Some(b) => Record {
                current: self.from.clone(),
                previous: b.clone(),
            }
            .description(None),
            None => String::new(),
        }
    }
}

/// Who is deploying: this hoist process, and the CI run it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// Random, per process: tells this process's records from others'.
    pub id: String,
    /// The CI run's URL (the same across a re-run of the run).
    pub run: Option<String>,
    /// This process lost a race for the alias (someone moved it under it):
    /// from then on it never takes over a live deployment because the run
    /// matches — the other process of the same run is alive.
    pub yielded: bool,
}

impl Runner {
    pub fn new(env: &Env) -> Runner {
        Runner {
            id: random_id(),
            run: super::provenance::from_env(env).1,
            yielded: false,
        }
    }
}

/// Eight hex digits, different in every process. std's RandomState is
/// seeded from the operating system's randomness once per process, which is
/// all this needs (an identity, not a secret); no random-number crate.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:08x}", h.finish() as u32)
}

/// `hoist: a=b c d=e` as (key, value) pairs (a bare word has an empty
/// value); None when it is not a hoist record.
fn words(description: &str) -> Option<Vec<(&str, &str)>> {
    let rest = description.trim().strip_prefix(PREFIX)?;
    Some(
        rest.split_whitespace()
            .map(|w| w.split_once('=').unwrap_or((w, "")))
            .collect(),
    )
}

fn field<'a>(words: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn finished_records() {
        let r = Record {
            current: "5".into(),
            previous: "4".into(),
        };
        let text = r.description(Some(&d('a')));
        assert_eq!(text, "hoist: current=5 previous=4 image=aaaaaaaaaaaa");
        assert_eq!(Record::parse(&text), Some(r.clone()));
        assert_eq!(Record::parse("my alias"), None);
        assert_eq!(Record::parse("hoist: current=5"), None);
        assert_eq!(Shifting::parse(&text), None);
    }

    #[test]
    fn shifts_in_progress() {
        let s = Shifting {
            from: "4".into(),
            to: "5".into(),
            digest: d('b'),
            strategy: "linear:10%:10m".into(),
            until: 1_767_225_600,
            id: "0123abcd".into(),
            before: Some("3".into()),
            run: Some("https://github.com/acme/app/actions/runs/77".into()),
        };
        let text = s.description();
        assert!(text.len() <= MAX, "{}", text.len());
        assert_eq!(Shifting::parse(&text), Some(s.clone()));
        // Not a finished record: rollback cannot mistake it for one.
        assert_eq!(Record::parse(&text), None);
        assert_eq!(s.undone(), "hoist: current=4 previous=3");
        let fresh = Shifting {
            before: None,
            ..s.clone()
        };
        assert_eq!(fresh.undone(), "");

        // The longest versions and strategy still fit; a long run URL is
        // dropped rather than cut.
        let long = Shifting {
            from: "4294967295".into(),
            to: "4294967296".into(),
            strategy: "linear:10%:1h30m".into(),
            before: Some("4294967294".into()),
            run: Some(format!("https://ci.example.com/{}", "x".repeat(100))),
            ..s.clone()
        };
        let text = long.description();
        assert!(text.len() <= MAX, "{}", text.len());
        assert_eq!(
            Shifting::parse(&text),
            Some(Shifting {
                run: None,
                ..long.clone()
            })
        );
        // Damaged records are no records.
        for bad in [
            "hoist: shifting from=4 to=5",
            "hoist: shifting from=4 to=5 image=sha256:xyz until=1",
            "hoist: shifting from=4 to=5 image=sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb until=soon",
            "hoist: shifting from=4 to=5 image=sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb until=-1",
        ] {
            assert_eq!(Shifting::parse(bad), None, "{bad}");
        }
    }
}
