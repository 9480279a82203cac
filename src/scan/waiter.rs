//! Waiting for one image's scan: look (DescribeImageScanFindings), let
//! `status::next` decide, carry the decision out — wait, ask for a scan once
//! (StartImageScan), or stop — until the result is final, unavailable, or
//! the deadline passes. The decisions are status.rs's; this file keeps the
//! state they need and does the I/O.

use std::time::{Duration, Instant};

use super::ecr::{Scan, ScanApi, Started};
use super::status::{self, Frequency, Next, Observation, Refusal, Registry, ScanType, Situation};
use super::verdict::{Finding, Severity};
use super::{Mode, Target};
use crate::error::Error;

/// What the wait for one image came to.
#[derive(Debug)]
pub enum Obtained {
    Findings {
        status: String,
        description: Option<String>,
        findings: Vec<Finding>,
        /// Inspector's findings (the answer said so, or the registry).
        enhanced: bool,
    },
    Unavailable {
        /// The last status ECR reported, if any.
        status: Option<String>,
        message: String,
        hint: String,
    },
}

impl Obtained {
    fn unavailable(status: Option<String>, message: String, hint: String) -> Obtained {
        Obtained::Unavailable {
            status,
            message,
            hint,
        }
    }
}

/// What every platform's wait shares: the registry as the gate found it,
/// the limits, and where to say what it is waiting for.
pub struct Waiter<'a> {
    pub api: &'a ScanApi,
    pub repository: &'a str,
    pub scan_type: ScanType,
    pub frequency: Frequency,
    pub registry: Registry,
    pub mode: Mode,
    /// When the gate gives up; `timeout` is the flag that set it.
    pub deadline: Instant,
    pub timeout: Duration,
    /// The first pause between looks (they grow from it).
    pub poll_interval: Duration,
    /// How long an empty or unmatched result must hold still.
    pub settle: Duration,
    pub say: &'a (dyn Fn(String) + Sync),
}

/// What to do after a StartImageScan decision.
enum Step {
    /// Say this, and look again.
    Say(String),
    /// The wait is over.
    Stop(Obtained),
}

impl Waiter<'_> {
    /// Poll `target`'s scan until it is final, unavailable, or the
    /// deadline. The first look is at once (after the push, the scan may be
    /// done already), and so is the first look after StartImageScan; the
    /// pauses between later looks grow (`status::pause`).
    pub async fn wait(&self, target: &Target) -> Result<Obtained, Error> {
        let digest = target.digest.to_string();
        let who = target.platform.as_deref().unwrap_or("image");
        let mut w = Watch::new(self.scan_type, Instant::now());
        loop {
            self.pause(w.looks).await;
            w.looks += 1;
            let scan = self.api.findings(self.repository, &digest).await?;
            let now = Instant::now();
            let observation = w.observe(scan.as_ref(), now);
            let situation = w.situation(self, now);
            let message = match (
                status::next(&observation, &situation, self.repository),
                scan,
            ) {
                (Next::Done, Some(s)) => return Ok(w.findings(s)),
                (Next::Unavailable { message, hint }, _) => {
                    return Ok(Obtained::unavailable(w.last_status, message, hint));
                }
                (Next::StartScan, _) => match self.start_scan(&digest, &mut w).await? {
                    Step::Say(m) => m,
                    Step::Stop(o) => return Ok(o),
                },
                (Next::Wait(m), _) => m,
                // Done always follows a status; should it not, look again.
                (Next::Done, None) => "waiting for ECR to report the scan".to_string(),
            };
            if message != w.last_message {
                (self.say)(format!("gate: {who}: {message}"));
                w.last_message.clone_from(&message);
            }
            if Instant::now() >= self.deadline {
                return Ok(Obtained::unavailable(
                    w.last_status,
                    format!(
                        "no final scan result within --timeout {}: {message}",
                        crate::duration::show(self.timeout)
                    ),
                    status::timeout_hint(&situation, w.seen),
                ));
            }
        }
    }

    /// The pause before look number `looks`, never past the deadline.
    async fn pause(&self, looks: u32) {
        let pause = status::pause(looks, self.poll_interval);
        if !pause.is_zero() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
        }
    }

    /// No scan exists and one should be asked for: a look (`ship
    /// --dry-run`) ends here; a wait asks once, then looks again at once —
    /// the scan may be quick, and a refusal says the registry scans by
    /// itself.
    async fn start_scan(&self, digest: &str, w: &mut Watch) -> Result<Step, Error> {
        if self.mode == Mode::Look {
            return Ok(Step::Stop(Obtained::unavailable(
                None,
                "no scan of this image yet (a dry run starts none)".into(),
                "the real run starts the scan and waits for it".into(),
            )));
        }
        w.started = true;
        let said = match self.api.start_scan(self.repository, digest).await? {
            Started::Started => "no scan yet: asked ECR to scan the image (StartImageScan)".into(),
            Started::AlreadyScanned => {
                "ECR says the image was scanned in the last 24 hours; waiting for that scan".into()
            }
            Started::Refused { code, message } => {
                match status::refused(w.scan_type, &code, &message) {
                    Refusal::Enhanced(m) => {
                        w.scan_type = ScanType::Enhanced;
                        m
                    }
                    Refusal::Unavailable { message, hint } => {
                        return Ok(Step::Stop(Obtained::unavailable(None, message, hint)));
                    }
                }
            }
        };
        w.looks = 0;
        Ok(Step::Say(said))
    }
}

/// A result as one look saw it, to tell whether the next look saw the
/// same: the status, every finding (id, package, severity) and the counts.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: String,
    findings: Vec<(String, Option<String>, Severity)>,
    counted: Option<u32>,
    enhanced: bool,
}

impl Seen {
    fn of(s: &Scan) -> Seen {
        let mut findings: Vec<_> = s
            .findings
            .iter()
            .map(|f| (f.id.clone(), f.package.clone(), f.severity))
            .collect();
        findings.sort();
        Seen {
            status: s.status.clone(),
            findings,
            counted: s.counted,
            enhanced: s.enhanced,
        }
    }
}

/// One image's wait as it stands.
#[derive(Debug)]
struct Watch {
    /// What the registry's scanning is; a refused StartImageScan can show
    /// it is enhanced.
    scan_type: ScanType,
    began: Instant,
    /// StartImageScan was asked for (once per run).
    started: bool,
    /// Looks since the wait began or a scan was asked for.
    looks: u32,
    /// The result last seen, and since when it has been final and
    /// unchanged: "held still" is measured from its last change, not from
    /// the first COMPLETE.
    last: Option<Seen>,
    held_since: Option<Instant>,
    /// Any scan of the image was ever reported.
    seen: bool,
    last_status: Option<String>,
    last_message: String,
}

impl Watch {
    fn new(scan_type: ScanType, began: Instant) -> Watch {
        Watch {
            scan_type,
            began,
            started: false,
            looks: 0,
            last: None,
            held_since: None,
            seen: false,
            last_status: None,
            last_message: String::new(),
        }
    }

    /// Take in one look's answer (`None`: no scan exists) made at `now`.
    fn observe(&mut self, scan: Option<&Scan>, now: Instant) -> Observation {
        let Some(s) = scan else {
            self.last = None;
            self.held_since = None;
            return Observation::NotFound;
        };
        self.seen = true;
        let this = Seen::of(s);
        let unchanged = self.last.as_ref() == Some(&this);
        if !status::is_final(&s.status) {
            self.held_since = None;
        } else if !unchanged || self.held_since.is_none() {
            self.held_since = Some(now);
        }
        self.last = Some(this);
        self.last_status = Some(s.status.clone());
        Observation::Status {
            status: s.status.clone(),
            description: s.description.clone(),
            enhanced: self.enhanced(s),
            findings: s.findings.len(),
            counted: s.counted,
            unchanged,
        }
    }

    fn enhanced(&self, s: &Scan) -> bool {
        s.enhanced || self.scan_type == ScanType::Enhanced
    }

    fn situation(&self, waiter: &Waiter, now: Instant) -> Situation {
        Situation {
            scan_type: self.scan_type,
            frequency: waiter.frequency,
            registry: waiter.registry,
            started: self.started,
            waited: now.saturating_duration_since(self.began),
            held: self.held_since.map(|c| now.saturating_duration_since(c)),
            settle: waiter.settle,
        }
    }

    /// The final result, its description made printable.
    fn findings(&self, s: Scan) -> Obtained {
        Obtained::Findings {
            enhanced: self.enhanced(&s),
            status: s.status,
            description: s.description.map(|d| status::outside(&d)),
            findings: s.findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(status: &str, ids: &[&str], counted: Option<u32>) -> Scan {
        Scan {
            status: status.into(),
            description: None,
            findings: ids
                .iter()
                .map(|id| Finding::new(id, Severity::High))
                .collect(),
            counted,
            enhanced: true,
        }
    }

    /// "Held still" counts from the last change of a final result, and any
    /// other status (or no scan) starts it over.
    #[test]
    fn a_final_result_holds_still_from_its_last_change() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = Watch::new(ScanType::Enhanced, t0);
        // (seconds, answer, unchanged, held seconds)
        type Look = (u64, Option<Scan>, Option<bool>, Option<u64>);
        let steps: Vec<Look> = vec![
            (0, None, None, None),
            (2, Some(scan("IN_PROGRESS", &[], None)), Some(false), None),
            (4, Some(scan("COMPLETE", &[], None)), Some(false), Some(0)),
            (9, Some(scan("COMPLETE", &[], None)), Some(true), Some(5)),
            (
                12,
                Some(scan("COMPLETE", &["CVE-1"], Some(2))),
                Some(false),
                Some(0),
            ),
            (
                20,
                Some(scan("COMPLETE", &["CVE-1"], Some(2))),
                Some(true),
                Some(8),
            ),
            (
                25,
                Some(scan("ACTIVE", &["CVE-1"], Some(2))),
                Some(false),
                Some(0),
            ),
            (
                31,
                Some(scan("ACTIVE", &["CVE-1"], Some(2))),
                Some(true),
                Some(6),
            ),
            (
                33,
                Some(scan("IN_PROGRESS", &["CVE-1"], Some(2))),
                Some(false),
                None,
            ),
            (40, None, None, None),
            (
                41,
                Some(scan("COMPLETE", &["CVE-1"], Some(2))),
                Some(false),
                Some(0),
            ),
        ];
        let waiter_free =
            |w: &Watch, now: Instant| w.held_since.map(|c| now.saturating_duration_since(c));
        for (secs, answer, unchanged, held) in steps {
            let now = t0 + s * secs as u32;
            let o = w.observe(answer.as_ref(), now);
            let got = match o {
                Observation::NotFound => None,
                Observation::Status { unchanged, .. } => Some(unchanged),
            };
            assert_eq!(got, unchanged, "at {secs}s");
            assert_eq!(
                waiter_free(&w, now),
                held.map(|h| s * h as u32),
                "at {secs}s"
            );
        }
        assert!(w.seen);
        assert_eq!(w.last_status.as_deref(), Some("COMPLETE"));
    }
}
