//! Export-time redaction: structured `<REDACTED:kind>` markers for secrets and user names.
//!
//! Contract: a [`Redactor`] applies its rules, in order, to every string of a JSON value (object
//! keys and non-strings are left alone) and counts the replacements per kind. Rules are
//! conservative (better to miss a secret than to mangle ordinary text):
//! private keys (PEM blocks), AWS access key ids and `aws_secret_access_key = ...` values,
//! GitHub and GitLab tokens, Anthropic and OpenAI keys, Slack tokens and webhooks, Stripe
//! secret/restricted keys, Google API keys, `Authorization:` header credentials, the user name
//! in `/home/<user>` and `/Users/<user>` (the rest of the path is kept: layout is signal), and
//! the custom regexes of `[export] redact` (kind `custom`). When a rule's regex has a capture
//! group named `secret`, only that group is replaced; otherwise the whole match is.
//! Redaction never touches stored data: it is applied to the exported copy only.

use std::collections::BTreeMap;

use regex::Regex;

/// The marker that replaces a redacted span.
pub fn marker(kind: &str) -> String {
    format!("<REDACTED:{kind}>")
}

/// One redaction rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Kind written in the marker (`aws_access_key`, `username`, `custom`...).
    pub kind: String,
    /// Name recorded in provenance (`custom[0]` for custom rules).
    pub name: String,
    re: Regex,
}

/// The built-in rules: (kind, regex).
const BUILTIN: &[(&str, &str)] = &[
    ("private_key", r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----"),
    ("aws_access_key", r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"),
    ("aws_secret_key", r#"(?i)aws_?secret_?(?:access_?)?key["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+=]{40})"#),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    (
        "openai_key",
        r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b|\bsk-[A-Za-z0-9]{48}\b",
    ),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9_/]+"),
    ("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    (
        "authorization",
        r#"(?i)\bauthorization["']?\s*[:=]\s*["']?(?:bearer|basic|token)\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})"#,
    ),
    ("username", r"(?:^|[^A-Za-z0-9._/-])/(?:home|Users)/(?P<secret>[A-Za-z0-9._-]+)"),
];

/// A set of rules applied in order.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
}

/// Replacements made, per kind.
pub type Counts = BTreeMap<String, usize>;

impl Redactor {
    /// No rules: a faithful copy.
    pub fn none() -> Redactor {
        Redactor { rules: Vec::new() }
    }

    /// The built-in rules plus `custom` regexes; a bad regex is `Err((index, message))`.
    pub fn new(custom: &[String]) -> Result<Redactor, (usize, String)> {
        let mut rules: Vec<Rule> = BUILTIN
            .iter()
            .map(|(kind, re)| Rule {
                kind: kind.to_string(),
                name: kind.to_string(),
                re: Regex::new(re).expect("built-in redaction regexes compile"),
            })
            .collect();
        for (i, pattern) in custom.iter().enumerate() {
            let re = Regex::new(pattern).map_err(|e| (i, e.to_string()))?;
            if re.is_match("") {
                return Err((i, "the pattern matches the empty string".into()));
            }
            rules.push(Rule { kind: "custom".into(), name: format!("custom[{i}]"), re });
        }
        Ok(Redactor { rules })
    }

    /// The names of the rules, for provenance.
    pub fn rule_names(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.name.clone()).collect()
    }

    /// `text` with every rule applied.
    pub fn redact_str(&self, text: &str, counts: &mut Counts) -> String {
        let mut cur = std::borrow::Cow::Borrowed(text);
        for rule in &self.rules {
            if !rule.re.is_match(&cur) {
                continue;
            }
            let mut out = String::with_capacity(cur.len());
            let mut last = 0;
            let mut hits = 0;
            for caps in rule.re.captures_iter(&cur) {
                let Some(m) = caps.name("secret").or_else(|| caps.get(0)) else { continue };
                if m.start() < last || m.is_empty() {
                    continue;
                }
                out.push_str(&cur[last..m.start()]);
                out.push_str(&marker(&rule.kind));
                last = m.end();
                hits += 1;
            }
            out.push_str(&cur[last..]);
            if hits > 0 {
                *counts.entry(rule.kind.clone()).or_default() += hits;
            }
            cur = std::borrow::Cow::Owned(out);
        }
        cur.into_owned()
    }

    /// Applies every rule to every string inside `value`, in place.
    pub fn redact_value(&self, value: &mut serde_json::Value, counts: &mut Counts) {
        if self.rules.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                let new = self.redact_str(s, counts);
                if new != *s {
                    *s = new;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v, counts)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v, counts)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(text: &str) -> (String, Counts) {
        let mut c = Counts::new();
        let r = Redactor::new(&["ACME-[0-9]{4}".to_string()]).unwrap();
        (r.redact_str(text, &mut c), c)
    }

    #[test]
    fn secrets_become_markers() {
        let key = ["AKIA", "ABCDEFGHIJKLMNOP"].concat();
        let (out, c) = red(&format!("key={key} ok"));
        assert_eq!(out, "key=<REDACTED:aws_access_key> ok");
        assert_eq!(c["aws_access_key"], 1);
        let gh = format!("ghp_{}", "a".repeat(36));
        assert_eq!(red(&gh).0, "<REDACTED:github_token>");
        assert_eq!(red(&format!("sk-ant-api03-{}", "x".repeat(30))).0, "<REDACTED:anthropic_key>");
        assert_eq!(red(&format!("sk-proj-{}", "x".repeat(30))).0, "<REDACTED:openai_key>");
        assert_eq!(red(&format!("glpat-{}", "x".repeat(20))).0, "<REDACTED:gitlab_token>");
        assert_eq!(red(&format!("xoxb-{}", "1".repeat(12))).0, "<REDACTED:slack_token>");
        assert_eq!(red(&format!("sk_live_{}", "x".repeat(24))).0, "<REDACTED:stripe_key>");
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----";
        assert_eq!(red(&format!("a {pem} b")).0, "a <REDACTED:private_key> b");
        assert_eq!(red("Authorization: Bearer abcdefgh1234").0, "Authorization: Bearer <REDACTED:authorization>");
        assert_eq!(red("ticket ACME-1234").0, "ticket <REDACTED:custom>");
    }

    #[test]
    fn user_names_keep_the_path() {
        assert_eq!(red("/home/alice/src/x.rs").0, "/home/<REDACTED:username>/src/x.rs");
        assert_eq!(
            red("cd /Users/bob.smith/p and /home/carol").0,
            "cd /Users/<REDACTED:username>/p and /home/<REDACTED:username>"
        );
        // Not a home directory: a path that merely contains `home/`.
        assert_eq!(red("docs/home/index.md").0, "docs/home/index.md");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "fn main() { let sk = 1; } // skeleton, AKIA is a prefix";
        assert_eq!(red(text).0, text);
        assert!(Redactor::new(&["(".into()]).is_err());
        assert!(Redactor::new(&["x*".into()]).is_err());
    }
}
