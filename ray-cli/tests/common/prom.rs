//! A strict parser of Prometheus' text exposition format (0.0.4), as `promtool check metrics`
//! reads it: `# HELP name text` and `# TYPE name type` comments (at most one of each per family,
//! TYPE before the family's samples), samples `name{label="value",...} value [timestamp]` with
//! valid metric and label names, escapes only `\\`, `\"` and `\n` in label values, numbers Go's
//! `ParseFloat` accepts (`NaN`, `+Inf`, `-Inf` included), each family's samples together, and no
//! series twice. Panics, saying which line and why, on anything else.

use std::collections::{BTreeMap, BTreeSet};

/// One sample: metric name, labels (sorted by name), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

fn metric_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with("__")
}

fn number(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t if t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => t.parse().ok(),
        _ => None,
    }
}

/// The family a sample name belongs to (histogram and summary samples carry suffixes).
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            )
        {
            return base;
        }
    }
    name
}

/// Parses `text`; panics with the offending line on any deviation.
pub fn parse(text: &str) -> Vec<Sample> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    let mut enter = |family: &str, current: &mut Option<String>, line: &str| {
        if current.as_deref() != Some(family) {
            assert!(
                !finished.contains(family),
                "family {family} resumes after another family: {line:?}"
            );
            if let Some(old) = current.take() {
                finished.insert(old);
            }
            *current = Some(family.to_string());
        }
    };
    for (no, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", no + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap_or("");
            if kw != "HELP" && kw != "TYPE" {
                continue; // a plain comment
            }
            let name = parts
                .next()
                .unwrap_or_else(|| panic!("no metric name: {at}"));
            assert!(metric_name(name), "bad metric name: {at}");
            enter(name, &mut current, line);
            if kw == "HELP" {
                assert!(helps.insert(name.to_string()), "HELP twice: {at}");
                let help = parts.next().unwrap_or("");
                let mut chars = help.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        assert!(
                            matches!(chars.next(), Some('\\' | 'n')),
                            "bad escape in HELP: {at}"
                        );
                    }
                }
            } else {
                let t = parts.next().unwrap_or_else(|| panic!("no type: {at}"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "unknown type: {at}"
                );
                assert!(
                    !samples.iter().any(|s: &Sample| s.name == name),
                    "TYPE after samples: {at}"
                );
                assert!(
                    types.insert(name.to_string(), t.to_string()).is_none(),
                    "TYPE twice: {at}"
                );
            }
            continue;
        }
        // name[{labels}] value [timestamp]
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {at}"));
        let name = &line[..name_end];
        assert!(metric_name(name), "bad metric name: {at}");
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let mut s = after;
            loop {
                s = s.trim_start();
                if let Some(r) = s.strip_prefix('}') {
                    s = r;
                    break;
                }
                let eq = s
                    .find('=')
                    .unwrap_or_else(|| panic!("label without '=': {at}"));
                let key = s[..eq].trim();
                assert!(label_name(key), "bad label name {key:?}: {at}");
                s = s[eq + 1..]
                    .trim_start()
                    .strip_prefix('"')
                    .unwrap_or_else(|| panic!("label value not quoted: {at}"));
                let mut value = String::new();
                let mut chars = s.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => panic!("bad escape in a label value: {at}"),
                        },
                        Some((i, '"')) => break i,
                        Some((_, '\n')) | None => panic!("unterminated label value: {at}"),
                        Some((_, c)) => value.push(c),
                    }
                };
                assert!(
                    labels.insert(key.to_string(), value).is_none(),
                    "label {key} twice: {at}"
                );
                s = s[end + 1..].trim_start();
                if let Some(r) = s.strip_prefix(',') {
                    s = r;
                } else {
                    assert!(s.starts_with('}'), "expected ',' or '}}': {at}");
                }
            }
            rest = s;
        }
        assert!(rest.starts_with(' '), "no space before the value: {at}");
        let mut fields = rest.split_whitespace();
        let value = fields.next().unwrap_or_else(|| panic!("no value: {at}"));
        let value = number(value).unwrap_or_else(|| panic!("bad value: {at}"));
        if let Some(ts) = fields.next() {
            assert!(ts.parse::<i64>().is_ok(), "bad timestamp: {at}");
        }
        assert!(fields.next().is_none(), "text after the timestamp: {at}");
        let family = family_of(name, &types).to_string();
        enter(&family, &mut current, line);
        let key = format!("{name}{labels:?}");
        assert!(series.insert(key), "series twice: {at}");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The value of the one sample of `name` whose labels include `labels`; panics naming what is
/// missing.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .collect();
    assert!(
        !found.is_empty(),
        "no sample {name}{labels:?} among {} samples",
        samples.len()
    );
    found.iter().map(|s| s.value).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_is_strict() {
        let ok = "# HELP a_b A thing.\n# TYPE a_b gauge\na_b{x=\"1\",y=\"q\\\"\"} 2.5\na_b 3 1700000000\n";
        let s = parse(ok);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["y"], "q\"");
        for bad in [
            "a b\n",
            "# TYPE a gauge\na{x=1} 1\n",
            "# TYPE a gauge\na{1x=\"1\"} 1\n",
            "# TYPE a gauge\na 1\na 2\n",
            "# TYPE a gauge\n# TYPE a gauge\n",
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"y\"} 2\n",
            "# TYPE a gauge\na{x=\"\\t\"} 1\n",
            "# TYPE a gauge\na 1",
        ] {
            assert!(
                std::panic::catch_unwind(|| parse(bad)).is_err(),
                "accepted {bad:?}"
            );
        }
    }
}
