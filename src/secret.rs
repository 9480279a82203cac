//! Secrets (the ECR password, STS credentials, OIDC tokens) live in a type
//! that never prints. Reading the value takes an explicit `reveal()`.
//!
//! Every secret hoist handles is also registered here, with the forms it
//! travels in (the registry password inside base64 `AWS:<password>`), so
//! that text from outside — an error body that echoes a request header —
//! can be scrubbed before it is printed (see `text::external`).

use std::fmt;
use std::sync::{Mutex, OnceLock};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn known() -> &'static Mutex<Vec<String>> {
    static KNOWN: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember `value` as a secret, so `scrub` hides it. Short values are not
/// registered: hiding every "a" would make text unreadable, and a secret
/// that short is not one.
pub fn register(value: &str) {
    if value.len() < 8 {
        return;
    }
    let mut known = known().lock().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_string());
        // Longest first, so a secret that contains another is hidden whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// The registry password and the Basic credentials it travels in.
pub fn register_registry_password(password: &str) {
    use base64::Engine;
    register(password);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
    register(&basic);
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> String {
    hide(text, &known().lock().unwrap_or_else(|p| p.into_inner()))
}

/// [`scrub`] for the panic hook, which must not wait for ever: the panic may
/// have struck while this very thread held the list of secrets. None when
/// the list stays locked for a second.
pub fn try_scrub(text: &str) -> Option<String> {
    for _ in 0..100 {
        match known().try_lock() {
            Ok(known) => return Some(hide(text, &known)),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(hide(text, &p.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
        }
    }
    None
}

fn hide(text: &str, known: &[String]) -> String {
    let mut out = text.to_string();
    for k in known {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "<redacted> <redacted> Some(<redacted>)"
        );
        assert_eq!(s.reveal(), "hunter2");
    }

    #[test]
    fn scrubs_every_form_of_the_registry_password() {
        register_registry_password("pw-for-scrub-test-123");
        let basic = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode("AWS:pw-for-scrub-test-123")
        };
        assert_eq!(
            scrub(&format!(
                "Authorization: Basic {basic} / pw-for-scrub-test-123"
            )),
            "Authorization: Basic *** / ***"
        );
        assert_eq!(scrub("nothing here"), "nothing here");
    }
}
