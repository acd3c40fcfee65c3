//! `--out FILE`: the per-second time series, one row per second of the
//! measured window and operation used: count, successes, errors by status,
//! p50/p99/max. JSON lines or CSV (the csv crate), by the file's
//! extension. A request is in the second its answer arrived (open loop:
//! the drain after the window adds seconds past its end).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::ops::{ErrKind, Op};
use crate::results::RunResult;
use crate::stats::ms;
use crate::timeline::SecondOp;

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

/// One row: an operation in one second.
struct Row<'a> {
    second: usize,
    op: Op,
    stats: &'a SecondOp,
}

impl Row<'_> {
    fn latencies(&self) -> [f64; 3] {
        let h = &self.stats.latency;
        [ms(h.quantile(0.50)), ms(h.quantile(0.99)), ms(h.max())]
    }
}

/// Writes the series of `run` to `path`.
pub fn write(path: &Path, run: &RunResult, format: Format) -> Result<(), String> {
    let ops = run.total.used_ops();
    let rows = run.timeline.iter().enumerate().flat_map(|(second, slot)| {
        ops.iter().map(move |op| Row {
            second,
            op: *op,
            stats: &slot.ops[op.index()],
        })
    });
    let failed = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    match format {
        Format::Csv => {
            let kinds: BTreeSet<ErrKind> = run
                .timeline
                .iter()
                .flat_map(|s| s.ops.iter().flat_map(|o| o.errors.keys().copied()))
                .collect();
            let mut out = csv::Writer::from_path(path).map_err(|e| failed(&e))?;
            write_csv(&mut out, &kinds, rows).map_err(|e| failed(&e))?;
            out.flush().map_err(|e| failed(&e))
        }
        Format::JsonLines => {
            let file = File::create(path).map_err(|e| failed(&e))?;
            let mut out = BufWriter::new(file);
            for row in rows {
                writeln!(out, "{}", json_row(&row)).map_err(|e| failed(&e))?;
            }
            out.flush().map_err(|e| failed(&e))
        }
    }
}

/// A header, then a row per second and operation, with one `errors_<kind>`
/// column per kind of error seen anywhere in the run.
fn write_csv<'a, W: Write>(
    out: &mut csv::Writer<W>,
    kinds: &BTreeSet<ErrKind>,
    rows: impl Iterator<Item = Row<'a>>,
) -> csv::Result<()> {
    let mut header = vec!["second".to_owned(), "op".into(), "count".into()];
    header.extend(["ok".into(), "errors".into()]);
    header.extend(kinds.iter().map(|k| format!("errors_{k}")));
    header.extend(["p50_ms".into(), "p99_ms".into(), "max_ms".into()]);
    out.write_record(&header)?;
    for row in rows {
        let o = row.stats;
        let mut record = vec![
            row.second.to_string(),
            row.op.label().to_owned(),
            o.requests().to_string(),
            o.ok.to_string(),
            o.error_count().to_string(),
        ];
        record.extend(
            kinds
                .iter()
                .map(|k| o.errors.get(k).copied().unwrap_or(0).to_string()),
        );
        record.extend(row.latencies().iter().map(|v| format!("{v:.3}")));
        out.write_record(&record)?;
    }
    Ok(())
}

fn json_row(row: &Row<'_>) -> Value {
    let o = row.stats;
    let errors: Map<String, Value> = o
        .errors
        .iter()
        .map(|(k, n)| (k.to_string(), (*n).into()))
        .collect();
    let [p50, p99, max] = row.latencies();
    json!({
        "second": row.second,
        "op": row.op.label(),
        "count": o.requests(),
        "ok": o.ok,
        "errors": errors,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
    })
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
