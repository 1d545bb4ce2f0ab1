//! Secrets taken out of text that agents produce (task transcripts) before
//! it is stored or published. An agent reads files and environments: what
//! it prints may hold a key, and a transcript is read by everyone who may
//! read the task, kept, and streamed.
//!
//! The patterns, applied in this order, each match replaced whole by its
//! label:
//!
//! | what | pattern (Rust `regex`) | becomes |
//! |---|---|---|
//! | PEM private keys | `-----BEGIN … PRIVATE KEY-----` … `-----END … PRIVATE KEY-----` | `[REDACTED PRIVATE KEY]` |
//! | agenthub tokens | `mul_`, `mdt_`, `mat_` + 40 hex | `[REDACTED AGENTHUB TOKEN]` |
//! | Anthropic keys | `sk-ant-…` | `[REDACTED API KEY]` |
//! | OpenAI and similar keys | `sk-…`, `sk-proj-…` (20+ characters) | `[REDACTED API KEY]` |
//! | AWS access key ids | `AKIA` / `ASIA` + 16 | `[REDACTED AWS KEY]` |
//! | AWS secret keys | `aws_secret_access_key = <40>` | `[REDACTED AWS SECRET]` |
//! | GitHub tokens | `ghp_ gho_ ghu_ ghs_ ghr_` + 36+, `github_pat_` + 20+ | `[REDACTED GITHUB TOKEN]` |
//! | GitLab tokens | `glpat-` + 20+ | `[REDACTED GITLAB TOKEN]` |
//! | Slack tokens | `xoxb- xoxp- xoxa- xoxr- xoxs- xoxe-`, `xapp-` + 10+ | `[REDACTED SLACK TOKEN]` |
//! | Google API keys | `AIza` + 35 | `[REDACTED GOOGLE API KEY]` |
//! | Stripe keys | `sk_live_`, `rk_live_` + 16+ | `[REDACTED STRIPE KEY]` |
//! | JSON Web Tokens | `eyJ….….…` | `[REDACTED JWT]` |
//! | bearer credentials | `Bearer <token>` | `Bearer [REDACTED]` |
//! | passwords in URLs | `scheme://user:password@` | `scheme://user:[REDACTED]@` |
//! | credential assignments | `API_KEY=…`, `password: …`, `SECRET_KEY=…`, `ACCESS_TOKEN=…`, … | `NAME=[REDACTED]` |
//!
//! Strings inside a tool call's `input` are redacted the same way, to a
//! depth of [`MAX_DEPTH`] (deeper values are replaced by
//! `[REDACTED: nested too deep]`).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

/// How deep [`json`] walks objects and arrays.
pub const MAX_DEPTH: usize = 32;

/// What a pattern's match becomes.
enum Replace {
    /// The whole match becomes this text.
    Label(&'static str),
    /// Capture group 1 is kept and this text follows it (the name of a
    /// credential, the scheme and user of a URL).
    KeepFirst(&'static str),
}

struct Pattern {
    regex: Regex,
    replace: Replace,
}

fn pattern(regex: &str, replace: Replace) -> Pattern {
    Pattern {
        // the patterns are constants of this file, tested below
        regex: Regex::new(regex).unwrap_or_else(|e| panic!("redaction pattern {regex}: {e}")),
        replace,
    }
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    use Replace::{KeepFirst, Label};
    vec![
        pattern(
            r"(?s)-----BEGIN[A-Z ]*PRIVATE KEY-----.*?-----END[A-Z ]*PRIVATE KEY-----",
            Label("[REDACTED PRIVATE KEY]"),
        ),
        pattern(
            r"\b(?:mul|mdt|mat)_[0-9a-f]{40}\b",
            Label("[REDACTED AGENTHUB TOKEN]"),
        ),
        pattern(r"\bsk-ant-[A-Za-z0-9_\-]{20,}", Label("[REDACTED API KEY]")),
        pattern(r"\bsk-[A-Za-z0-9_\-]{20,}", Label("[REDACTED API KEY]")),
        pattern(
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
            Label("[REDACTED AWS KEY]"),
        ),
        pattern(
            r"(?i)\b(?:aws_secret_access_key|secret_?access_?key)\s*[=:]\s*[A-Za-z0-9/+=]{40}",
            Label("[REDACTED AWS SECRET]"),
        ),
        pattern(
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36,}",
            Label("[REDACTED GITHUB TOKEN]"),
        ),
        pattern(
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            Label("[REDACTED GITHUB TOKEN]"),
        ),
        pattern(
            r"\bglpat-[A-Za-z0-9_\-]{20,}",
            Label("[REDACTED GITLAB TOKEN]"),
        ),
        pattern(
            r"\b(?:xox[bpaers]|xapp)-[A-Za-z0-9\-]{10,}",
            Label("[REDACTED SLACK TOKEN]"),
        ),
        pattern(
            r"\bAIza[0-9A-Za-z_\-]{35}",
            Label("[REDACTED GOOGLE API KEY]"),
        ),
        pattern(
            r"\b(?:sk|rk)_live_[0-9A-Za-z]{16,}",
            Label("[REDACTED STRIPE KEY]"),
        ),
        pattern(
            r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",
            Label("[REDACTED JWT]"),
        ),
        pattern(
            r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*",
            KeepFirst(" [REDACTED]"),
        ),
        pattern(
            r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/?#\s@]+):[^@\s/]+@",
            KeepFirst(":[REDACTED]@"),
        ),
        pattern(
            r#"(?i)\b([A-Z0-9_]*(?:API_KEY|APIKEY|API_SECRET|SECRET_KEY|SECRET|ACCESS_TOKEN|AUTH_TOKEN|PRIVATE_KEY|PASSWORD|PASSWD|TOKEN)["']?\s*[=:]\s*)["']?[^\s"',;]+["']?"#,
            KeepFirst("[REDACTED]"),
        ),
    ]
});

/// `text` with every secret the patterns know replaced (borrowed when
/// there is none).
pub fn text(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for p in PATTERNS.iter() {
        if !p.regex.is_match(&out) {
            continue;
        }
        let replaced = match p.replace {
            Replace::Label(label) => p.regex.replace_all(&out, label).into_owned(),
            Replace::KeepFirst(after) => p
                .regex
                .replace_all(&out, |c: &Captures<'_>| {
                    format!("{}{after}", c.get(1).map_or("", |m| m.as_str()))
                })
                .into_owned(),
        };
        out = Cow::Owned(replaced);
    }
    out
}

/// `value` with the strings in it redacted as [`text`], object keys kept.
pub fn json(value: Value) -> Value {
    walk(value, 0)
}

fn walk(value: Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::String("[REDACTED: nested too deep]".into());
    }
    match value {
        Value::String(s) => Value::String(text(&s).into_owned()),
        Value::Array(items) => items.into_iter().map(|v| walk(v, depth + 1)).collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, walk(v, depth + 1)))
            .collect(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pattern_takes_its_secret_out_and_leaves_the_rest() {
        let hex40 = "0123456789abcdef0123456789abcdef01234567";
        let cases = [
            (
                "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\ndone",
                "key:\n[REDACTED PRIVATE KEY]\ndone",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----",
                "[REDACTED PRIVATE KEY]",
            ),
            (&format!("token mul_{hex40} ok"), "token [REDACTED AGENTHUB TOKEN] ok"),
            (&format!("mdt_{hex40}"), "[REDACTED AGENTHUB TOKEN]"),
            (&format!("(mat_{hex40})"), "([REDACTED AGENTHUB TOKEN])"),
            ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz_0123", "[REDACTED API KEY]"),
            ("key=sk-proj-abcdefghijklmnopqrstuvwxyz", "key=[REDACTED API KEY]"),
            ("use sk-abcdefghijklmnopqrstuvwxyz now", "use [REDACTED API KEY] now"),
            ("AKIAIOSFODNN7EXAMPLE in use", "[REDACTED AWS KEY] in use"),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "[REDACTED AWS SECRET]",
            ),
            (
                "ghp_abcdefghijklmnopqrstuvwxyz0123456789 pushed",
                "[REDACTED GITHUB TOKEN] pushed",
            ),
            ("github_pat_11ABCDEFG0123456789_abcdefghij", "[REDACTED GITHUB TOKEN]"),
            ("glpat-abcdefghijklmnopqrst", "[REDACTED GITLAB TOKEN]"),
            ("xoxb-1234567890-abcdefghij", "[REDACTED SLACK TOKEN]"),
            ("xapp-1-A0123456789-abc", "[REDACTED SLACK TOKEN]"),
            (
                "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234 ok",
                "[REDACTED GOOGLE API KEY] ok",
            ),
            ("sk_live_abcdefghijklmnop1234", "[REDACTED STRIPE KEY]"),
            ("rk_live_abcdefghijklmnop1234", "[REDACTED STRIPE KEY]"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "jwt [REDACTED JWT]",
            ),
            (
                "curl -H 'Authorization: Bearer abc.def-123' x",
                "curl -H 'Authorization: Bearer [REDACTED]' x",
            ),
            (
                "postgres://ada:hunter2@db.example.com/prod",
                "postgres://ada:[REDACTED]@db.example.com/prod",
            ),
            (
                "https://bot:s3cr3t@github.com/org/repo.git",
                "https://bot:[REDACTED]@github.com/org/repo.git",
            ),
            ("export OPENAI_API_KEY=abc123", "export OPENAI_API_KEY=[REDACTED]"),
            ("password: hunter2", "password: [REDACTED]"),
            (r#"{"DB_PASSWORD": "hunter2"}"#, r#"{"DB_PASSWORD": [REDACTED]}"#),
            ("GITHUB_TOKEN=abc,next", "GITHUB_TOKEN=[REDACTED],next"),
        ];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for plain in [
            "cargo test passed: 287 tests",
            "https://github.com/org/repo/pull/12",
            "the token count is 1200",
            "sk-short",
            "ask-anything-about-this-codebase-please",
            "ssh git@github.com",
        ] {
            assert!(matches!(text(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn strings_in_json_are_redacted_keys_kept_depth_bounded() {
        let input = serde_json::json!({
            "command": "curl -H 'Authorization: Bearer abc123'",
            "env": {"list": ["AKIAIOSFODNN7EXAMPLE", 3, null]},
        });
        assert_eq!(
            json(input),
            serde_json::json!({
                "command": "curl -H 'Authorization: Bearer [REDACTED]'",
                "env": {"list": ["[REDACTED AWS KEY]", 3, null]},
            })
        );
        let mut deep = Value::String("x".into());
        for _ in 0..40 {
            deep = Value::Array(vec![deep]);
        }
        let mut walked = json(deep);
        let mut depth = 0;
        while let Value::Array(mut items) = walked {
            walked = items.remove(0);
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH + 1);
        assert_eq!(walked, "[REDACTED: nested too deep]");
    }
}
