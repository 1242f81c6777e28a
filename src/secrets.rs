//! Patterns for credentials that must not be committed or exported: the one list both the
//! pre-commit hook and the export redaction use.
//!
//! Contract: [`scan`] finds every non-overlapping match of the built-in patterns in a text and
//! returns its kind and byte range; it never copies the secret anywhere. Kinds are stable,
//! kebab-case names (`private-key`, `aws-access-key`, `aws-secret-key`, `github-token`,
//! `gitlab-token`, `anthropic-api-key`, `openai-api-key`, `slack-token`, `slack-webhook`,
//! `stripe-key`, `google-api-key`, `npm-token`, `huggingface-token`, `sendgrid-key`, `pypi-token`,
//! `azure-storage-key`, `jwt`, `generic-secret`; [`kinds`] lists them) that hook messages, JSON
//! and the export markers use; the export adds its own rules under the same scheme
//! (`authorization`, `username`, `custom`, see [`crate::redact`]). A finding also names the
//! credential's own bytes ([`Finding::value_start`]): the whole match, or only the value when the
//! pattern includes a label (`aws_secret_access_key = <value>`), so redaction keeps the label.
//! [`redact`] replaces each value with [`marker`]`(kind)`, `<REDACTED:kind>`. The pre-commit hook
//! scans only staged *added* lines; the export scans whole texts, where a PEM private key is
//! matched from `BEGIN` to `END` (its body included) and a lone `BEGIN` line by itself.
//!
//! The patterns follow the issuers' documented token formats (prefixes such as `AKIA`, `ghp_`,
//! `glpat-`, `sk-ant-`, `xoxb-`, `sk_live_`), so they fire on real credentials and rarely on
//! prose. A line containing [`ALLOW_MARKER`] is never reported by the hook (known false positives).

use std::sync::OnceLock;

use regex::Regex;

/// Text that, anywhere on a line, lets the pre-commit hook pass a finding on that line.
pub const ALLOW_MARKER: &str = "hybrid: allow-secret";

/// One built-in pattern: its kind and regex (ASCII word boundaries keep the fast DFA usable).
struct Pattern {
    kind: &'static str,
    regex: &'static str,
}

const PATTERNS: &[Pattern] = &[
    // The body (base64, PEM headers, whitespace or `\n` escapes) up to the first END line is
    // part of the key; without an END line only the BEGIN line matches.
    Pattern {
        kind: "private-key",
        regex: r"-----BEGIN\s+(?:[A-Z0-9]+\s+)*PRIVATE\s+KEY(?:\s+BLOCK)?-----(?:[A-Za-z0-9+/=\s:,\\-]*?-----END\s+(?:[A-Z0-9]+\s+)*PRIVATE\s+KEY(?:\s+BLOCK)?-----)?",
    },
    Pattern { kind: "aws-access-key", regex: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?-u:\b)" },
    Pattern {
        kind: "aws-secret-key",
        regex: r#"(?i:aws_?secret_?(?:access_?)?key)["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+]{40})(?-u:\b)"#,
    },
    Pattern { kind: "github-token", regex: r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,255}(?-u:\b)" },
    Pattern { kind: "github-token", regex: r"(?-u:\b)github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}(?-u:\b)" },
    Pattern {
        kind: "gitlab-token",
        regex: r"(?-u:\b)(?:gl(?:pat|dt|rt|cbt|oas|soat|ft|imt|agent)-[A-Za-z0-9_-]{20,}|glptt-[0-9a-f]{40})",
    },
    Pattern { kind: "anthropic-api-key", regex: r"(?-u:\b)sk-ant-[a-z]{3,8}\d{2}-[A-Za-z0-9_-]{32,}" },
    Pattern {
        kind: "openai-api-key",
        regex: r"(?-u:\b)sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}",
    },
    Pattern { kind: "openai-api-key", regex: r"(?-u:\b)sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}" },
    // The legacy format: `sk-` and 48 letters and digits.
    Pattern { kind: "openai-api-key", regex: r"(?-u:\b)sk-[A-Za-z0-9]{48}(?-u:\b)" },
    Pattern { kind: "slack-token", regex: r"(?-u:\b)xox[abposr]-(?:[0-9]+-)?[A-Za-z0-9-]{10,}" },
    Pattern {
        kind: "slack-webhook",
        regex: r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_]+/[A-Za-z0-9_]+/[A-Za-z0-9_]+",
    },
    Pattern { kind: "stripe-key", regex: r"(?-u:\b)(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{16,}(?-u:\b)" },
    Pattern { kind: "google-api-key", regex: r"(?-u:\b)AIza[0-9A-Za-z_-]{35}(?-u:\b)" },
    Pattern { kind: "npm-token", regex: r"(?-u:\b)npm_[A-Za-z0-9]{36}(?-u:\b)" },
    Pattern { kind: "huggingface-token", regex: r"(?-u:\b)hf_[A-Za-z0-9]{30,}(?-u:\b)" },
    Pattern { kind: "sendgrid-key", regex: r"(?-u:\b)SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}" },
    Pattern { kind: "pypi-token", regex: r"(?-u:\b)pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}" },
    Pattern {
        kind: "azure-storage-key",
        regex: r"(?i:AccountKey|SharedAccessKey)\s*=\s*(?P<secret>[A-Za-z0-9+/]{40,}={0,2})",
    },
    Pattern { kind: "jwt", regex: r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}" },
    // `password = "..."`, `api_token: '...'`, `SECRET := "..."`: reported only when the value
    // looks random (see `high_entropy`), so placeholders and prose pass.
    Pattern {
        kind: GENERIC,
        regex: r#"(?i:[A-Za-z0-9_.-]*(?:password|passwd|secret|token)[A-Za-z0-9_.-]*)["']?\s*(?::=|=|:)\s*["'](?P<secret>[\x21\x23-\x26\x28-\x7e]{12,})["']"#,
    },
];

/// The kind of a `password|secret|token = "<random-looking value>"` assignment.
pub const GENERIC: &str = "generic-secret";

/// Whether an assigned value looks like a credential rather than a placeholder or a word:
/// letters and digits mixed, no template syntax, and at least 3.5 bits of Shannon entropy per
/// character.
fn high_entropy(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 12 || ["${", "{{", "%(", "<", "xxxx", "XXXX", "****"].iter().any(|p| value.contains(p)) {
        return false;
    }
    if !b.iter().any(u8::is_ascii_digit) || !b.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    let mut counts = [0u32; 256];
    for &c in b {
        counts[c as usize] += 1;
    }
    let n = b.len() as f64;
    let bits: f64 = counts.iter().filter(|c| **c > 0).map(|&c| -(f64::from(c) / n) * (f64::from(c) / n).log2()).sum();
    bits >= 3.5
}

/// Every kind [`scan`] can report, without duplicates, in pattern order.
pub fn kinds() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for p in PATTERNS {
        if !out.contains(&p.kind) {
            out.push(p.kind);
        }
    }
    out
}

/// One secret-looking match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Stable kind name, e.g. `aws-access-key`.
    pub kind: &'static str,
    /// Byte range of the match in the scanned text.
    pub start: usize,
    pub end: usize,
    /// Byte range of the credential itself: the pattern's `secret` group, or the whole match.
    pub value_start: usize,
    pub value_end: usize,
}

/// Lower-case literals, per pattern (same order as [`PATTERNS`]), at least one of which every
/// match of that pattern contains. Checking them is far cheaper than running (and compiling)
/// the regexes: a pattern's regex is compiled the first time a text holds one of its needles,
/// so a process that never sees, say, `hf_` never pays for that automaton.
const NEEDLES: &[&[&str]] = &[
    &["private"],
    &["akia", "asia", "abia", "acca", "a3t"],
    &["secret"],
    &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
    &["github_pat_"],
    &["glpat-", "gldt-", "glrt-", "glcbt-", "gloas-", "glsoat-", "glft-", "glimt-", "glagent-", "glptt-"],
    &["sk-ant-"],
    &["sk-"],
    &["sk-"],
    &["sk-"],
    &["xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"],
    &["hooks.slack.com"],
    &["sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_"],
    &["aiza"],
    &["npm_"],
    &["hf_"],
    &["sg."],
    &["pypi-"],
    &["accountkey", "sharedaccesskey"],
    &["eyj"],
    &["password", "passwd", "secret", "token"],
];

/// Pattern `i` compiled (once per process).
fn regex(i: usize) -> &'static Regex {
    static EACH: [OnceLock<Regex>; PATTERNS.len()] = [const { OnceLock::new() }; PATTERNS.len()];
    // The patterns are constants tested below; a failure here is a programming error.
    // ASCII mode: tokens are ASCII, and Unicode classes would make the automata far larger.
    EACH[i]
        .get_or_init(|| Regex::new(&format!("(?-u){}", PATTERNS[i].regex)).expect("built-in secret pattern compiles"))
}

/// Whether `text` may hold a secret (no false negatives: every pattern needs one needle).
pub fn might_contain_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    NEEDLES.iter().flat_map(|n| n.iter()).any(|n| lower.contains(n))
}

/// Finds secret-looking matches in `text`, sorted by position, overlaps removed (first wins).
pub fn scan(text: &str) -> Vec<Finding> {
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<Finding> = Vec::new();
    for (i, needles) in NEEDLES.iter().enumerate() {
        if !needles.iter().any(|n| lower.contains(n)) {
            continue;
        }
        let re = regex(i);
        let kind = PATTERNS[i].kind;
        if re.capture_names().any(|n| n == Some("secret")) {
            for caps in re.captures_iter(text) {
                let (Some(m), Some(v)) = (caps.get(0), caps.name("secret")) else { continue };
                if kind == GENERIC && !high_entropy(v.as_str()) {
                    continue;
                }
                found.push(Finding {
                    kind,
                    start: m.start(),
                    end: m.end(),
                    value_start: v.start(),
                    value_end: v.end(),
                });
            }
        } else {
            for m in re.find_iter(text) {
                found.push(Finding {
                    kind,
                    start: m.start(),
                    end: m.end(),
                    value_start: m.start(),
                    value_end: m.end(),
                });
            }
        }
    }
    // By position; at one position a named kind before the generic assignment, longer first.
    found.sort_by(|a, b| {
        a.start.cmp(&b.start).then((a.kind == GENERIC).cmp(&(b.kind == GENERIC))).then(b.end.cmp(&a.end))
    });
    let mut out: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        if out.last().is_some_and(|l| f.start < l.end) {
            continue;
        }
        out.push(f);
    }
    out
}

/// The marker that replaces a redacted credential: `<REDACTED:kind>`.
pub fn marker(kind: &str) -> String {
    format!("<REDACTED:{kind}>")
}

/// `text` with the value of every finding replaced by its [`marker`].
pub fn redact(text: &str) -> String {
    redact_findings(text, &scan(text))
}

/// `text` with the value of each of `findings` (from [`scan`] of `text`) replaced by its
/// [`marker`].
pub fn redact_findings(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.value_start]);
        out.push_str(&marker(f.kind));
        at = f.value_end;
    }
    out.push_str(&text[at..]);
    out
}

/// Known false positives from `[hooks] allow_secrets`: each entry is matched as literal text
/// contained in the secret, or (when it compiles) as a regex that matches inside the secret.
#[derive(Debug, Default)]
pub struct Allowlist {
    literals: Vec<String>,
    regexes: Vec<Regex>,
}

impl Allowlist {
    pub fn new(entries: &[String]) -> Allowlist {
        let mut a = Allowlist::default();
        for e in entries.iter().filter(|e| !e.is_empty()) {
            a.literals.push(e.clone());
            if let Ok(r) = Regex::new(e) {
                a.regexes.push(r);
            }
        }
        a
    }

    /// Whether the matched text is a listed false positive.
    pub fn allows(&self, secret: &str) -> bool {
        self.literals.iter().any(|l| secret.contains(l.as_str())) || self.regexes.iter().any(|r| r.is_match(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fake credentials are assembled at run time so that this file holds no secret-looking text.
    fn fake(prefix: &str, body: &str, n: usize) -> String {
        format!("{prefix}{}", body.repeat(n))
    }

    #[test]
    fn finds_each_kind() {
        let cases = [
            ("private-key", format!("-----BEGIN {}PRIVATE KEY-----", "RSA ")),
            ("aws-access-key", fake("AKI", "A", 1) + &"Q".repeat(16)),
            ("github-token", fake("gh", "p_", 1) + &"a1".repeat(18)),
            ("gitlab-token", fake("glp", "at-", 1) + &"x".repeat(20)),
            ("anthropic-api-key", fake("sk-", "ant-api03-", 1) + &"Z".repeat(40)),
            ("openai-api-key", fake("sk-", "proj-", 1) + &"b".repeat(48)),
            ("slack-token", fake("xo", "xb-", 1) + "1234-" + &"c".repeat(20)),
            ("stripe-key", fake("sk_", "live_", 1) + &"d".repeat(24)),
        ];
        for (kind, secret) in cases {
            let text = format!("let k = \"{secret}\";");
            let f = scan(&text);
            assert_eq!(f.len(), 1, "{kind}: {f:?}");
            assert_eq!(f[0].kind, kind);
            assert_eq!(&text[f[0].start..f[0].end], secret);
            assert!(!redact(&text).contains(&secret), "{kind}");
        }
    }

    #[test]
    fn labelled_values_and_key_blocks() {
        let value = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY".to_string() + &"Q".repeat(10);
        let text = format!("aws_secret_access_key = {value}\n");
        let f = scan(&text);
        assert_eq!((f.len(), f[0].kind), (1, "aws-secret-key"));
        assert_eq!(&text[f[0].value_start..f[0].value_end], value);
        assert_eq!(redact(&text), "aws_secret_access_key = <REDACTED:aws-secret-key>\n");

        let begin = format!("-----BEGIN {}PRIVATE KEY-----", "RSA ");
        let end = format!("-----END {}PRIVATE KEY-----", "RSA ");
        let block = format!("{begin}\nProc-Type: 4,ENCRYPTED\nMIIEow+/=\nAbC\n{end}");
        assert_eq!(redact(&format!("a {block} b")), "a <REDACTED:private-key> b");
        // The same block inside a JSON string of a captured stream (`\n` escapes).
        let escaped = block.replace('\n', "\\n");
        assert_eq!(redact(&format!("{{\"k\":\"{escaped}\"}}")), "{\"k\":\"<REDACTED:private-key>\"}");
        // No END line: the BEGIN line alone, and text after it survives.
        assert_eq!(redact(&format!("{begin}\nnot base64!")), "<REDACTED:private-key>\nnot base64!");

        let legacy = fake("sk-", "a1B2", 12);
        assert_eq!(scan(&format!("OPENAI={legacy}"))[0].kind, "openai-api-key");
        let google = fake("AI", "za", 1) + &"x".repeat(35);
        assert_eq!(scan(&format!("k: {google}"))[0].kind, "google-api-key");
        let hook = fake("https://hooks.slack", ".com/services/T0/B1/", 1) + "abc";
        assert_eq!(redact(&hook), "<REDACTED:slack-webhook>");
    }

    #[test]
    fn gate_kinds() {
        let cases = [
            ("huggingface-token", fake("hf", "_", 1) + &"aB3d".repeat(9)),
            ("gitlab-token", fake("glp", "at-", 1) + &"Xy9_".repeat(5)),
            ("stripe-key", fake("rk_", "live_", 1) + &"d4".repeat(12)),
            ("sendgrid-key", format!("{}{}.{}", fake("S", "G.", 1), "a1B2c3D4e5F6g7H8i9J0kL", "m".repeat(43))),
            ("npm-token", fake("np", "m_", 1) + &"a1".repeat(18)),
            ("pypi-token", fake("pyp", "i-AgEIcHlwaS5vcmc", 1) + &"Qx7_".repeat(14)),
            (
                "jwt",
                format!(
                    "{}.{}.{}",
                    fake("ey", "JhbGciOiJIUzI1NiJ9", 1),
                    fake("ey", "JzdWIiOiIxIn0", 1),
                    "s1g".repeat(8)
                ),
            ),
        ];
        for (kind, secret) in cases {
            let text = format!("value: \"{secret}\"\n");
            let f = scan(&text);
            assert_eq!(f.len(), 1, "{kind}: {f:?}");
            assert_eq!((f[0].kind, &text[f[0].value_start..f[0].value_end]), (kind, secret.as_str()));
        }
        let azure =
            format!("DefaultEndpointsProtocol=https;AccountName=x;{}={}==;", "AccountKey", "k9Z/".repeat(21) + "ab");
        let f = scan(&azure);
        assert_eq!(f[0].kind, "azure-storage-key", "{f:?}");
        // PEM headers with any whitespace between the words.
        let pem = format!("-----BEGIN{}RSA\tPRIVATE  KEY-----", "  ");
        assert_eq!(scan(&pem)[0].kind, "private-key");
    }

    #[test]
    fn generic_assignments_need_a_random_looking_value() {
        let random = format!("{}{}", "q8Zr2LmX", "v0Kp7Tn4Wd");
        for text in [
            format!("password = \"{random}\""),
            format!("DB_PASSWORD: '{random}'"),
            format!("api_token := \"{random}\""),
            format!("\"client_secret\": \"{random}\""),
        ] {
            let f = scan(&text);
            assert_eq!(f.len(), 1, "{text}: {f:?}");
            assert_eq!((f[0].kind, &text[f[0].value_start..f[0].value_end]), (GENERIC, random.as_str()));
        }
        for text in [
            "password = \"correcthorsebattery\"",
            "token = \"${GITHUB_TOKEN}\"",
            "secret = \"<your secret here>\"",
            "password = \"aaaaaaaaaaaa1111\"",
            "let token = next_token(input);",
        ] {
            assert!(scan(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn prose_is_clean() {
        assert!(scan("the task skips AKIA because it is short; sk-ant is a prefix").is_empty());
    }

    #[test]
    fn allowlist_literal_and_regex() {
        let secret = fake("AKI", "A", 1) + "EXAMPLEEXAMPLE12";
        assert!(Allowlist::new(&["EXAMPLE".into()]).allows(&secret));
        assert!(Allowlist::new(&["^AKIA.*12$".into()]).allows(&secret));
        assert!(!Allowlist::new(&["nope".into()]).allows(&secret));
    }

    #[test]
    fn every_pattern_needs_a_needle() {
        // Each pattern's fake from finds_each_kind passes the prefilter; prose does not.
        assert!(!might_contain_secret("fn main() { println!(\"hello\"); }"));
        assert!(might_contain_secret(&(fake("AKI", "A", 1) + &"Q".repeat(16))));
    }

    #[test]
    fn one_needle_list_per_pattern() {
        assert_eq!(NEEDLES.len(), PATTERNS.len());
        for (i, p) in PATTERNS.iter().enumerate() {
            regex(i); // compiles
            assert!(NEEDLES[i].iter().all(|n| *n == n.to_ascii_lowercase()), "{}", p.kind);
        }
    }

    #[test]
    fn kinds_are_unique() {
        let k = kinds();
        assert!(k.contains(&"slack-token") && k.contains(&"stripe-key"));
    }
}
