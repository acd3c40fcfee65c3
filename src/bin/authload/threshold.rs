//! `--threshold` expressions for CI: `p99<10ms`, `errors<0.1%`,
//! `refresh.p50<=2ms`, `rps>=1000`, `dropped==0`. A metric, optionally
//! scoped to one operation (`refresh.`), a comparison and a value. Latency
//! values take `us`, `ms` (the default), `s`, `min` or `h`; counts may be a percentage
//! (of requests; for `late`, of requests sent; for `dropped`, of requests
//! scheduled).

use crate::ops::Op;
use crate::results::RunResult;
use crate::stats::ms;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Metric {
    /// Latency at this quantile (0..1).
    Quantile(f64),
    Max,
    Mean,
    Rps,
    Requests,
    Errors,
    Late,
    Dropped,
}

impl Metric {
    fn is_latency(self) -> bool {
        matches!(self, Metric::Quantile(_) | Metric::Max | Metric::Mean)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Cmp {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Cmp::Lt => actual < limit,
            Cmp::Le => actual <= limit,
            Cmp::Gt => actual > limit,
            Cmp::Ge => actual >= limit,
            Cmp::Eq => (actual - limit).abs() < 1e-9,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// As the user wrote it, for messages.
    pub expr: String,
    scope: Option<Op>,
    metric: Metric,
    cmp: Cmp,
    /// Milliseconds for latencies, a percentage when `percent`, else a number.
    limit: f64,
    percent: bool,
}

/// A threshold checked against a run.
pub struct Verdict {
    pub expr: String,
    pub passed: bool,
    /// The measured value, with its unit.
    pub actual: String,
}

impl Threshold {
    pub fn parse(raw: &str) -> Result<Threshold, String> {
        let expr: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        let at = expr
            .find(['<', '>', '='])
            .ok_or_else(|| format!("threshold {raw:?} has no comparison (<, <=, >, >=, ==)"))?;
        let (left, rest) = expr.split_at(at);
        let (cmp, right) = if let Some(r) = rest.strip_prefix("<=") {
            (Cmp::Le, r)
        } else if let Some(r) = rest.strip_prefix(">=") {
            (Cmp::Ge, r)
        } else if let Some(r) = rest.strip_prefix("==") {
            (Cmp::Eq, r)
        } else if let Some(r) = rest.strip_prefix('<') {
            (Cmp::Lt, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (Cmp::Gt, r)
        } else {
            return Err(format!("threshold {raw:?}: use <, <=, >, >= or =="));
        };
        let (scope, metric_name) = match left.split_once('.') {
            Some((op, metric)) if Op::from_label(op).is_some() => (Op::from_label(op), metric),
            _ => (None, left),
        };
        let metric = parse_metric(metric_name)
            .ok_or_else(|| format!("threshold {raw:?}: unknown metric {metric_name:?} (p50, p99, p99.9, max, mean, rps, requests, errors, late, dropped; optionally prefixed by an operation, e.g. refresh.p99)"))?;
        if scope.is_some() && matches!(metric, Metric::Late | Metric::Dropped) {
            return Err(format!(
                "threshold {raw:?}: late and dropped are counted for the whole run only"
            ));
        }
        let (limit, percent) = parse_limit(metric, right)
            .ok_or_else(|| format!("threshold {raw:?}: cannot read the value {right:?}"))?;
        Ok(Threshold {
            expr,
            scope,
            metric,
            cmp,
            limit,
            percent,
        })
    }

    pub fn check(&self, run: &RunResult) -> Verdict {
        let total = &run.total;
        let (requests, errors, latency) = match self.scope {
            Some(op) => {
                let o = total.op(op);
                (o.requests(), o.errors, o.latency.clone())
            }
            None => (total.requests(), total.error_count(), total.latency()),
        };
        let share = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                100.0 * part as f64 / whole as f64
            }
        };
        let (actual, unit) = match self.metric {
            Metric::Quantile(q) => (ms(latency.quantile(q)), " ms"),
            Metric::Max => (ms(latency.max()), " ms"),
            Metric::Mean => (latency.mean() / 1000.0, " ms"),
            Metric::Rps => (requests as f64 / run.seconds(), " req/s"),
            Metric::Requests => (requests as f64, ""),
            Metric::Errors if self.percent => (share(errors, requests), "%"),
            Metric::Errors => (errors as f64, ""),
            Metric::Late if self.percent => (share(total.late, total.sent), "%"),
            Metric::Late => (total.late as f64, ""),
            Metric::Dropped if self.percent => {
                (share(run.dropped(), run.scheduled.unwrap_or(0)), "%")
            }
            Metric::Dropped => (run.dropped() as f64, ""),
        };
        Verdict {
            expr: self.expr.clone(),
            passed: self.cmp.holds(actual, self.limit),
            actual: format!("{}{unit}", round(actual)),
        }
    }
}

fn round(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

fn parse_metric(name: &str) -> Option<Metric> {
    Some(match name {
        "max" => Metric::Max,
        "mean" | "avg" => Metric::Mean,
        "rps" => Metric::Rps,
        "requests" => Metric::Requests,
        "errors" => Metric::Errors,
        "late" => Metric::Late,
        "dropped" => Metric::Dropped,
        "median" => Metric::Quantile(0.5),
        _ => {
            let percentile: f64 = name.strip_prefix('p')?.parse().ok()?;
            if !(percentile > 0.0 && percentile <= 100.0) {
                return None;
            }
            Metric::Quantile(percentile / 100.0)
        }
    })
}

fn parse_limit(metric: Metric, raw: &str) -> Option<(f64, bool)> {
    if metric.is_latency() {
        let split = raw
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(raw.len());
        let (number, unit) = raw.split_at(split);
        let value: f64 = number.parse().ok()?;
        let factor = match unit {
            "us" | "µs" => 0.001,
            "ms" | "" => 1.0,
            "s" => 1000.0,
            "min" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        return Some((value * factor, false));
    }
    let (number, percent) = match raw.strip_suffix('%') {
        Some(number) => (number, true),
        None => (raw, false),
    };
    if percent && !matches!(metric, Metric::Errors | Metric::Late | Metric::Dropped) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    value.is_finite().then_some((value, percent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let t = Threshold::parse("p99<10ms").unwrap();
        assert_eq!(t.metric, Metric::Quantile(0.99));
        assert_eq!((t.cmp, t.limit, t.percent), (Cmp::Lt, 10.0, false));
        let t = Threshold::parse("errors < 0.1%").unwrap();
        assert_eq!((t.metric, t.limit, t.percent), (Metric::Errors, 0.1, true));
        assert_eq!(t.expr, "errors<0.1%");
        let t = Threshold::parse("refresh.p99.9<=2s").unwrap();
        assert_eq!(t.scope, Some(Op::Refresh));
        assert!((t.limit - 2000.0).abs() < 1e-9);
        assert!(matches!(t.metric, Metric::Quantile(q) if (q - 0.999).abs() < 1e-12));
        let t = Threshold::parse("rps>=100").unwrap();
        assert_eq!((t.metric, t.cmp), (Metric::Rps, Cmp::Ge));
        let t = Threshold::parse("dropped==0").unwrap();
        assert_eq!((t.metric, t.cmp, t.limit), (Metric::Dropped, Cmp::Eq, 0.0));
        let t = Threshold::parse("p50<500us").unwrap();
        assert!((t.limit - 0.5).abs() < 1e-9);
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "p99",
            "p99<",
            "p99<10xs",
            "p0<1ms",
            "p101<1ms",
            "latency<1ms",
            "rps>10%",
            "refresh.late<1",
            "errors<lots",
        ] {
            assert!(Threshold::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
