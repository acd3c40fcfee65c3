"""Medians of repeated runs: every figure of a scenario (throughput and each
latency quantile, overall and per endpoint, and any extra numeric field) is
the median over the runs, separately; errors are summed over the runs, and
the throughput of every run is kept (`rps_runs`) to show the spread."""

import statistics

FIGURES = ("rps", "p50_ms", "p99_ms", "p999_ms", "max_ms")


def median_of(results):
    """One result in the shape authload prints, from several runs of it."""
    if len(results) == 1:
        out = dict(results[0])
        out["rps_runs"] = [results[0].get("rps", 0.0)]
        return out
    out = dict(results[-1])
    for key in FIGURES:
        values = [r[key] for r in results if key in r]
        if values:
            out[key] = statistics.median(values)
    errors = {}
    for r in results:
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    out["errors"] = errors
    endpoints = {}
    for op in {op for r in results for op in r.get("endpoints", {})}:
        per = [r["endpoints"][op] for r in results if op in r.get("endpoints", {})]
        endpoints[op] = {key: statistics.median(p[key] for p in per) for key in per[0]
                         if isinstance(per[0][key], (int, float))}
        endpoints[op]["errors"] = sum(p.get("errors", 0) for p in per)
    if endpoints:
        out["endpoints"] = endpoints
    out["rps_runs"] = [r.get("rps", 0.0) for r in results]
    return out


def median_dict(dicts):
    """Field-wise median of flat dicts of numbers (e.g. database cost meters)."""
    keys = set.intersection(*(set(d) for d in dicts)) if dicts else set()
    return {k: statistics.median(d[k] for d in dicts) for k in keys
            if all(isinstance(d[k], (int, float)) for d in dicts)}


def error_count(result):
    return sum(result.get("errors", {}).values())
