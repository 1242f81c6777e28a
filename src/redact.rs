//! Export-time redaction: structured `<REDACTED:kind>` markers for secrets and user names.
//!
//! Contract: a [`Redactor`] redacts every string of a JSON value (object keys and non-strings
//! are left alone) and counts the replacements per kind. First the credentials of
//! [`crate::secrets`] — the same patterns and kebab-case kind names as the pre-commit hook
//! (`aws-access-key`, `github-token`, `private-key`, ...; only a labelled value such as
//! `aws_secret_access_key = <value>` loses just the value) — then, in order, the export-only
//! rules under the same naming scheme: `authorization` (the credential of an `Authorization:`
//! header: `Bearer`/`Basic`/`token`), `username` (the user name in `/home/<user>` and
//! `/Users/<user>`; the rest of the path is kept: layout is signal), and the custom regexes of
//! `[export] redact` (kind `custom`). When a rule's regex has a capture group named `secret`,
//! only that group is replaced; otherwise the whole match is. Rules are conservative (better
//! to miss a secret than to mangle ordinary text). Redaction never touches stored data: it is
//! applied to the exported copy only.

use std::collections::BTreeMap;

use regex::Regex;

use crate::secrets;

pub use crate::secrets::marker;

/// One export-only redaction rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Kind written in the marker (`username`, `custom`...).
    pub kind: String,
    /// Name recorded in provenance (`custom[0]` for custom rules).
    pub name: String,
    re: Regex,
}

/// The export-only built-in rules, applied after the [`crate::secrets`] patterns: (kind, regex).
const EXPORT_RULES: &[(&str, &str)] = &[
    (
        "authorization",
        r#"(?i)\bauthorization["']?\s*[:=]\s*["']?(?:bearer|basic|token)\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})"#,
    ),
    ("username", r"(?:^|[^A-Za-z0-9._/-])/(?:home|Users)/(?P<secret>[A-Za-z0-9._-]+)"),
];

/// The credential patterns of [`crate::secrets`] and then a list of rules, applied in order.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Whether the [`crate::secrets`] patterns apply.
    secrets: bool,
    rules: Vec<Rule>,
}

/// Replacements made, per kind.
pub type Counts = BTreeMap<String, usize>;

impl Redactor {
    /// No rules: a faithful copy.
    pub fn none() -> Redactor {
        Redactor { secrets: false, rules: Vec::new() }
    }

    /// The secret patterns, the export-only rules, then `custom` regexes; a bad regex is
    /// `Err((index, message))`.
    pub fn new(custom: &[String]) -> Result<Redactor, (usize, String)> {
        let mut rules: Vec<Rule> = EXPORT_RULES
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
        Ok(Redactor { secrets: true, rules })
    }

    /// The names of the rules (secret kinds first), for provenance.
    pub fn rule_names(&self) -> Vec<String> {
        let secret_kinds = if self.secrets { secrets::kinds() } else { Vec::new() };
        secret_kinds.into_iter().map(String::from).chain(self.rules.iter().map(|r| r.name.clone())).collect()
    }

    /// `text` with every rule applied.
    pub fn redact_str(&self, text: &str, counts: &mut Counts) -> String {
        let mut cur = std::borrow::Cow::Borrowed(text);
        if self.secrets {
            let findings = secrets::scan(text);
            if !findings.is_empty() {
                for f in &findings {
                    *counts.entry(f.kind.to_string()).or_default() += 1;
                }
                cur = std::borrow::Cow::Owned(secrets::redact_findings(text, &findings));
            }
        }
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
        if !self.secrets && self.rules.is_empty() {
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
        assert_eq!(out, "key=<REDACTED:aws-access-key> ok");
        assert_eq!(c["aws-access-key"], 1);
        let gh = format!("ghp_{}", "a".repeat(36));
        assert_eq!(red(&gh).0, "<REDACTED:github-token>");
        assert_eq!(red(&format!("sk-ant-api03-{}", "x".repeat(32))).0, "<REDACTED:anthropic-api-key>");
        assert_eq!(red(&format!("sk-proj-{}", "x".repeat(40))).0, "<REDACTED:openai-api-key>");
        assert_eq!(red(&format!("glpat-{}", "x".repeat(20))).0, "<REDACTED:gitlab-token>");
        assert_eq!(red(&format!("xoxb-{}", "1".repeat(12))).0, "<REDACTED:slack-token>");
        assert_eq!(red(&format!("sk_live_{}", "x".repeat(24))).0, "<REDACTED:stripe-key>");
        let pem = ["-----BEGIN RSA PRIVATE", " KEY-----\nabc\n-----END RSA PRIVATE KEY-----"].concat();
        assert_eq!(red(&format!("a {pem} b")).0, "a <REDACTED:private-key> b");
        let (out, c) = red(&format!("AWS_SECRET_ACCESS_KEY={}", "k".repeat(40)));
        assert_eq!(out, "AWS_SECRET_ACCESS_KEY=<REDACTED:aws-secret-key>");
        assert_eq!(c["aws-secret-key"], 1);
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
    fn rule_names_list_secret_kinds_then_export_rules() {
        let names = Redactor::new(&["x+".into()]).unwrap().rule_names();
        assert_eq!(names[..secrets::kinds().len()], secrets::kinds()[..]);
        assert_eq!(names[secrets::kinds().len()..], ["authorization", "username", "custom[0]"]);
        assert!(Redactor::none().rule_names().is_empty());
        assert_eq!(Redactor::none().redact_str(&format!("ghp_{}", "a".repeat(36)), &mut Counts::new()).len(), 40);
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "fn main() { let sk = 1; } // skeleton, AKIA is a prefix";
        assert_eq!(red(text).0, text);
        assert!(Redactor::new(&["(".into()]).is_err());
        assert!(Redactor::new(&["x*".into()]).is_err());
    }
}
