//! `--out FILE`: the per-second time series, one row per second of the
//! measured window and operation used: count, successes, errors by status,
//! p50/p99/max. JSON lines or CSV, by the file's extension. A request is
//! in the second its answer arrived (open loop: the drain after the window
//! adds seconds past its end).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::ops::ErrKind;
use crate::results::RunResult;
use crate::stats::ms;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("json" | "jsonl" | "ndjson") => Ok(Format::JsonLines),
            _ => Err(format!(
                "--out {}: name it .csv, .json, .jsonl or .ndjson",
                path.display()
            )),
        }
    }
}

pub fn render(run: &RunResult, format: Format) -> String {
    let ops = run.total.used_ops();
    let kinds: BTreeSet<ErrKind> = run
        .timeline
        .iter()
        .flat_map(|s| s.ops.iter().flat_map(|o| o.errors.keys().copied()))
        .collect();
    let mut out = String::new();
    if format == Format::Csv {
        out.push_str("second,op,count,ok,errors");
        for kind in &kinds {
            let _ = write!(out, ",errors_{kind}");
        }
        out.push_str(",p50_ms,p99_ms,max_ms\n");
    }
    for (second, slot) in run.timeline.iter().enumerate() {
        for op in &ops {
            let o = &slot.ops[op.index()];
            let (p50, p99, max) = (
                ms(o.latency.quantile(0.50)),
                ms(o.latency.quantile(0.99)),
                ms(o.latency.max),
            );
            match format {
                Format::JsonLines => {
                    let errors: Map<String, Value> = o
                        .errors
                        .iter()
                        .map(|(k, n)| (k.to_string(), (*n).into()))
                        .collect();
                    let row = json!({
                        "second": second,
                        "op": op.label(),
                        "count": o.requests(),
                        "ok": o.ok,
                        "errors": errors,
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "max_ms": max,
                    });
                    let _ = writeln!(out, "{row}");
                }
                Format::Csv => {
                    let _ = write!(
                        out,
                        "{second},{},{},{},{}",
                        op.label(),
                        o.requests(),
                        o.ok,
                        o.error_count()
                    );
                    for kind in &kinds {
                        let _ = write!(out, ",{}", o.errors.get(kind).copied().unwrap_or(0));
                    }
                    let _ = writeln!(out, ",{p50:.3},{p99:.3},{max:.3}");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_by_extension() {
        assert_eq!(Format::of(Path::new("a/b.csv")), Ok(Format::Csv));
        assert_eq!(Format::of(Path::new("b.JSONL")), Ok(Format::JsonLines));
        assert_eq!(Format::of(Path::new("b.json")), Ok(Format::JsonLines));
        assert!(Format::of(Path::new("b.txt")).is_err());
        assert!(Format::of(Path::new("b")).is_err());
    }
}
