//! Text that comes from outside hoist — registry and AWS error bodies, image
//! annotations and platform strings, token claims, Lambda's messages — made
//! safe to print: one line, no control characters (no ANSI escapes, no
//! newline that would start a line GitHub's runner reads as a workflow
//! command such as `::add-mask::`), bounded in length, and with every secret
//! hoist knows of replaced.

/// `text` as one printable line of at most `max` characters (an ellipsis
/// marks a cut). Control characters are shown escaped (`\n`, `\x1b`), so a
/// body that tries to forge a log line or a terminal sequence stays visible
/// but inert.
pub fn external(text: &str, max: usize) -> String {
    let text = crate::secret::scrub(text);
    let mut out = String::new();
    for (shown, c) in text.trim().chars().enumerate() {
        if shown >= max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            // Bidirectional overrides and other invisible format characters
            // can reorder what a reader sees.
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// The longest stretch of an outside body hoist puts in a message.
pub const SNIPPET: usize = 300;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_text_is_one_inert_line() {
        let table = [
            ("plain", "plain"),
            ("  padded \n", "padded"),
            ("a\n::error::forged", "a\\n::error::forged"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
            ("cr\rlf", "cr\\rlf"),
            ("tab\there", "tab here"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
        ];
        for (input, want) in table {
            assert_eq!(external(input, 100), want, "{input:?}");
        }
        assert_eq!(external("abcdef", 3), "abc…");
        assert_eq!(external(&"é".repeat(10), 4), "éééé…");
    }

    #[test]
    fn known_secrets_are_scrubbed() {
        crate::secret::register("s3cr3t-value-for-text-test");
        assert_eq!(
            external("token s3cr3t-value-for-text-test echoed", 100),
            "token *** echoed"
        );
    }
}
