//! The metric names a PromQL expression selects, to check them against what
//! authd exports. A small scanner, not a parser: it drops strings, label
//! matchers, range and subquery brackets, numbers and durations, Grafana
//! variables, keywords, the label lists of `by`/`without`/`on`/`ignoring`/
//! `group_left`/`group_right`, and names called as functions; every other
//! identifier is a metric name.

/// Words that are never metric names here: aggregation operators, set and
/// comparison keywords, and the special float values.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` selects, in order of appearance, repeated as
/// often as they appear.
pub fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i = match c {
            '"' | '\'' | '`' => skip_string(&chars, i),
            '{' => skip_until(&chars, i, '}'),
            '[' => skip_until(&chars, i, ']'),
            '#' => skip_line(&chars, i),
            '$' => skip_word(&chars, i + 1),
            c if c.is_ascii_digit() || c == '.' => skip_word(&chars, i),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = skip_word(&chars, i);
                let word: String = chars[i..end].iter().collect();
                let next = next_visible(&chars, end);
                if LABEL_LISTS.contains(&word.as_str()) {
                    match next {
                        Some(open) if chars[open] == '(' => skip_until(&chars, open, ')'),
                        _ => end,
                    }
                } else {
                    let called = next.is_some_and(|n| chars[n] == '(');
                    if !called && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                        names.push(word);
                    }
                    end
                }
            }
            _ => i + 1,
        };
    }
    names
}

/// The selector of a Grafana `label_values(<selector>, <label>)` variable
/// query, or `None` for another kind of query.
pub fn label_values_selector(query: &str) -> Option<&str> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim())
}

/// Past the string opening at `start` (its quote kind, with escapes).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Past the first `close` after `start`, skipping strings on the way.
fn skip_until(chars: &[char], start: usize, close: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn skip_line(chars: &[char], start: usize) -> usize {
    chars[start..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(chars.len(), |n| start + n + 1)
}

/// Past the identifier, number or duration starting at `start`.
fn skip_word(chars: &[char], start: usize) -> usize {
    chars[start..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.'))
        .map_or(chars.len(), |n| start + n)
}

fn next_visible(chars: &[char], from: usize) -> Option<usize> {
    (from..chars.len()).find(|&i| !chars[i].is_whitespace())
}

#[test]
fn names_are_told_from_functions_labels_and_durations() {
    let expr = r#"
        histogram_quantile(0.99, sum by (job, route, le) (
          rate(authd_a_seconds_bucket{route=~"refresh|b_total", x='{'}[$__rate_interval] offset 5m)
        )) > 0.25
        and on (instance) group_left (actor) increase(authd_b_total[1h:1m]) # c_total
          / ignoring(x) max without(y) (authd_c) unless sum(authd_d:rate5m) > bool Inf
    "#;
    assert_eq!(
        metric_names(expr),
        [
            "authd_a_seconds_bucket",
            "authd_b_total",
            "authd_c",
            "authd_d:rate5m"
        ]
    );
    assert_eq!(metric_names(r#"up{job="authd"} == 0"#), ["up"]);
    assert_eq!(metric_names("1 + 2e3"), Vec::<String>::new());
}

#[test]
fn a_label_values_query_gives_its_selector() {
    assert_eq!(
        label_values_selector(r#"label_values(authd_x_total{job="$job"}, instance)"#),
        Some(r#"authd_x_total{job="$job"}"#)
    );
    assert_eq!(label_values_selector("authd_x_total"), None);
}
