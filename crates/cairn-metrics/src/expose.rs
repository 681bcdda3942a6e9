//! The Prometheus text exposition format, version 0.0.4: escaping and sample lines.
//!
//! Reference: <https://prometheus.io/docs/instrumenting/exposition_formats/>. `HELP` text escapes
//! `\` and newline; label values escape `\`, `"` and newline; floats are `+Inf`, `-Inf`, `NaN` or
//! a decimal.

use std::fmt::Write as _;

/// Appends the `# HELP` and `# TYPE` lines of metric `name`.
pub(crate) fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Appends one sample line: `name{label="value",...} value`. `extra` is a label appended after
/// the declared ones (a histogram bucket's `le`).
pub(crate) fn sample(
    out: &mut String,
    name: &str,
    label_names: &[String],
    label_values: &[String],
    extra: Option<(&str, &str)>,
    value: &str,
) {
    debug_assert_eq!(label_names.len(), label_values.len());
    out.push_str(name);
    let pairs = label_names.iter().map(String::as_str).zip(label_values.iter().map(String::as_str));
    let mut pairs = pairs.chain(extra).peekable();
    if pairs.peek().is_some() {
        out.push('{');
        for (index, (label, value)) in pairs.enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Appends `value` escaped for use inside a quoted label value.
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Formats a float as the exposition format spells it: the shortest decimal that round-trips,
/// or `+Inf`, `-Inf`, `NaN`.
pub(crate) fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = write!(text, "{value}");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(2.5), "2.5");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(1e21), "1000000000000000000000");
    }

    #[test]
    fn label_value_escaping() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\\b\"c\nd\te");
        assert_eq!(out, "a\\\\b\\\"c\\nd\te");
    }
}
