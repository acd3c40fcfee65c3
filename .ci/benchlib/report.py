"""The benchmark's text. In `.ci/RESULTS.md`, between `<!-- bench:start -->`
and `<!-- bench:end -->`: the machine and how loaded it was, a table per
scenario (medians of the runs), the mixed loop per operation, the ratios
of the performance goals, revocation across instances and resident memory
against its budget (64 MiB plus the session cache). In README.md, between
the same markers: the headline figures of that run ([`headline`])."""

import os
import platform
import re
import time

BUDGET_MIB = 64


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            return m.group(1) if m else "unknown CPU"
    except OSError:
        return "unknown CPU"


def machine(args, load):
    cpu = cpu_model()
    return (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} vCPUs ({cpu}), "
            f"{platform.system()} {platform.release()}; server, PostgreSQL and load generator on "
            f"the same machine, **shared with other builds** (load average {load[0]:.2f} before, "
            f"{load[1]:.2f} after the bench, {load[2]:.2f} at most between scenarios); "
            f"median of {args.runs} runs per figure (throughput range over the runs in brackets); "
            f"{args.warmup} s warm-up + {args.duration} s per run; closed loop, keep-alive; release "
            f"build, rate limits off, fsync and synchronous_commit on, default settings otherwise.")


def errs(r):
    return ", ".join(f"{k}: {v}" for k, v in sorted(r.get("errors", {}).items())) or "0"


def spread(r):
    runs = r.get("rps_runs", [])
    return f" ({min(runs):.0f}–{max(runs):.0f})" if len(runs) > 1 else ""


def lat(r):
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['p999_ms']:.2f}"


def pct(a, b):
    return f"{a / b:.0%}" if b else "n/a"


def cpu_split(lines, all_results, stores, conns):
    """Where each request's CPU went: microseconds per request of authd,
    PostgreSQL, the load generator and idle CPU, in the metered window."""
    lines.append("")
    lines.append(f"Where each request's CPU went at {conns} connections (µs per request, from /proc "
                 f"during the metered window: authd, PostgreSQL's backends and writers, the load "
                 f"generator, and CPU left idle; {os.cpu_count()} vCPUs give "
                 f"{os.cpu_count() * 1e6:,.0f} µs per second):")
    lines.append("")
    lines.append("| scenario | " + " | ".join(
        f"{s} authd / PostgreSQL / load generator / idle" for s in stores) + " |")
    lines.append("| --- |" + " --- |" * len(stores))
    for scenario in ["health", "authorize", "refresh"]:
        row = [scenario]
        for s in stores:
            c = all_results[s].get(f"cost_{scenario}", {})
            if "authd_us_per_request" not in c:
                row.append("—")
                continue
            parts = [c.get(f"{w}_us_per_request") for w in ("authd", "pg", "load", "idle")]
            row.append(" / ".join("—" if v is None else f"{v:.1f}" for v in parts))
        lines.append("| " + " | ".join(row) + " |")


def table(all_results, args, extra):
    stores = list(all_results)
    low, high = args.connections, args.connections_high
    lines = [machine(args, extra["load"]), ""]
    lines.append("| scenario | connections | hashing | " + " | ".join(
        f"{s} req/s | {s} p50 / p99 / p99.9 ms | {s} errors" for s in stores) + " |")
    lines.append("|" + " --- |" * (3 + 3 * len(stores)))
    rows = [(f"{n}", low, n) for n in ["health", "authorize", "refresh", "mixed", "signin", "signup"]]
    rows += [(n, high, f"{n}_{high}") for n in ["health", "authorize", "refresh"]]
    rows += [("refresh during sign-in storm", low, "refresh_storm")]
    for name, conns, key in rows:
        row = [name, str(conns), "default"]
        for s in stores:
            r = all_results[s][key]
            row += [f"{r['rps']:.0f}{spread(r)}", lat(r), errs(r)]
        lines.append("| " + " | ".join(row) + " |")
    for name, key in [("refresh (cheap-hash server)", "refresh"), ("revoke alone (cheap-hash server)", "revoke")]:
        row = [name, str(low), "cheap"]
        for s in stores:
            r = all_results[s]["revoke_pair"][key]
            row += [f"{r['rps']:.0f}{spread(r)}", lat(r), errs(r)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    any_store = all_results[stores[0]]
    lines.append(f"Hashing: *default* is {any_store['hash_label']}; *cheap* is "
                 f"{any_store['revoke_pair']['hash_label']}, a fresh server per run whose sign-ins made "
                 f"the revoked sessions in authload's setup, before the timed window "
                 f"(`authload --scenario revoke --pool N`). *mixed* is, per connection, a sign-in, "
                 f"20 times a refresh followed by 5 authorizes, then a revoke, looping; per operation "
                 f"(default hashing, {low} connections):")
    lines.append("")
    lines.append("| mixed: operation | " + " | ".join(f"{s} req/s | {s} p50 / p99 ms" for s in stores) + " |")
    lines.append("|" + " --- |" * (1 + 2 * len(stores)))
    for op in ["signin", "refresh", "authorize", "revoke"]:
        row = [op]
        for s in stores:
            e = all_results[s]["mixed"].get("endpoints", {}).get(op)
            row += [f"{e['rps']:.0f}", f"{e['p50_ms']:.2f} / {e['p99_ms']:.2f}"] if e else ["—", "—"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("| ratio / figure | " + " | ".join(stores) + " |")
    lines.append("| --- |" + " --- |" * len(stores))

    def ratio_row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(all_results[s]) for s in stores) + " |")

    for conns, sfx in [(low, ""), (high, f"_{high}")]:
        ratio_row(f"refresh / health at {conns} connections",
                  lambda r: pct(r[f"refresh{sfx}"]["rps"], r[f"health{sfx}"]["rps"]))
        ratio_row(f"authorize / health at {conns} connections",
                  lambda r: pct(r[f"authorize{sfx}"]["rps"], r[f"health{sfx}"]["rps"]))
        ratio_row(f"refresh p99 / authorize p99 at {conns} connections (ms)",
                  lambda r: f"{r[f'refresh{sfx}']['p99_ms']:.2f} / {r[f'authorize{sfx}']['p99_ms']:.2f}")
    ratio_row("revoke alone / refresh (cheap-hash server; median of the per-run ratios)",
              lambda r: f"{sorted(r['revoke_pair']['ratios'])[len(r['revoke_pair']['ratios']) // 2]:.0%} "
                        f"(runs: {', '.join(f'{x:.0%}' for x in r['revoke_pair']['ratios'])})")
    ratio_row("revoke alone p99 / refresh p99 (ms)",
              lambda r: f"{r['revoke_pair']['revoke']['p99_ms']:.2f} / {r['revoke_pair']['refresh']['p99_ms']:.2f}")
    ratio_row("one argon2 hash (ms), hashing threads",
              lambda r: f"{r['hash']['hash_ms']:.1f}, {r['hash']['hash_threads']:.0f}")
    ratio_row("signin / hash-bound limit",
              lambda r: f"{r['signin']['rps']:.0f} / {r['hash']['hash_bound_per_s']:.0f} = "
                        f"{pct(r['signin']['rps'], r['hash']['hash_bound_per_s'])}")
    ratio_row("refresh p99 during storm / without (ms)",
              lambda r: f"{r['refresh_storm']['p99_ms']:.2f} / {r['refresh']['p99_ms']:.2f} = "
                        f"{r['refresh_storm']['p99_ms'] / max(r['refresh']['p99_ms'], 1e-9):.1f}x")
    cache = extra["cache"]
    per = cache["bytes_per_session"]

    def memory(rss, cached):
        budget = BUDGET_MIB + cached * per / 2 ** 20
        verdict = "within" if rss <= budget else f"{rss - budget:.1f} MiB over"
        return f"{rss:.1f} MiB vs 64 + {cached:,.0f} × {per:.0f} B = {budget:.1f} MiB ({verdict})"

    ratio_row("idle resident memory (MiB)", lambda r: f"{r['idle_rss_mib']:.1f}")
    ratio_row("resident memory after the whole bench, default server (vs budget)",
              lambda r: memory(r["final_rss_mib"], r["cached_sessions"]))
    ratio_row("resident memory after the revoke runs, cheap-hash server (vs budget)",
              lambda r: memory(r["revoke_pair"]["rss_mib"], r["revoke_pair"]["cached_sessions"]))
    cpu_split(lines, all_results, stores, low)
    lines.append("")
    lines.append(f"Session cache: {per:.0f} bytes per session with {cache['sessions']:,} sessions "
                 f"(`authd cache-footprint`; entry {cache['entry_size']} bytes); the budget counts the "
                 f"sessions the server reported cached (`authd_token_cache_sessions`, read after the "
                 f"memory).")
    seen = extra.get("propagation")
    if seen:
        lines.append("")
        lines.append(
            f"Revocation seen by another instance ({seen['setup']}, {seen['hash_label']}; "
            f"background load {seen['load']['refresh_rps']:.0f} refreshes/s + "
            f"{seen['load']['authorize_rps']:.0f} authorizes/s in total): from the acknowledged revoke "
            f"at one instance to the first 401 at the other, p50 {seen['p50_ms']:.2f} ms, p99 "
            f"{seen['p99_ms']:.2f} ms, max {seen['max_ms']:.2f} ms (medians of {args.runs} runs of "
            f"~{seen['samples']:.0f} samples; worst max {seen['worst_max_ms']:.2f} ms; never seen "
            f"within 5 s: {seen['never_seen_total']}; errors {seen['errors']}). "
            f"`authload --scenario revoke-seen --url A --url B`.")
    lines.append("")
    lines += goals(all_results, args, extra)
    if "startup_1m_s" in extra:
        lines.append("")
        lines.append(f"Start-up with 1,000,000 live sessions in PostgreSQL: {extra['startup_1m_s']:.2f} s "
                     f"to a healthy `/health` (sessions are read through on first use).")
    return "\n".join(lines)


def write_between(marker, text, path):
    """Replaces what lies between the lines `<!-- marker:start -->` and
    `<!-- marker:end -->` (each a line of its own, so prose quoting them is
    left alone) in the file at `path`; False when one is missing (the file
    is then left as it is)."""
    content = open(path).read()
    pattern = re.compile(rf"^(<!-- {marker}:start -->\n).*?^(<!-- {marker}:end -->)$", re.M | re.S)
    if not pattern.search(content):
        return False
    content = pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), content, count=1)
    open(path, "w").write(content)
    return True


def headline(all_results, args, extra):
    """The README's short table: the figures a reader compares first, from
    the same run as the full results, which it links."""
    stores = [s for s in ("postgres", "sqlite") if s in all_results]
    names = {"postgres": "PostgreSQL", "sqlite": "SQLite"}
    low, high = args.connections, args.connections_high
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} shared vCPUs ({cpu_model()}) with "
             f"authd, PostgreSQL and the load generator on the same machine; medians of "
             f"{args.runs} runs of {args.duration} s, closed loop, {low} connections unless said, "
             f"fsync on. Every figure, the method and the profiles: "
             f"[.ci/RESULTS.md](.ci/RESULTS.md).", ""]
    lines.append("| figure | " + " | ".join(names[s] for s in stores) + " |")
    lines.append("| --- |" + " --- |" * len(stores))

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(all_results[s]) for s in stores) + " |")

    def rate(r):
        return f"{r['rps']:,.0f} req/s, p99 {r['p99_ms']:.1f} ms"

    row("health (the HTTP ceiling)", lambda r: f"{r['health']['rps']:,.0f} req/s")
    row("authorize", lambda r: rate(r["authorize"]))
    row("refresh", lambda r: rate(r["refresh"]))
    row(f"refresh, {high} connections", lambda r: rate(r[f"refresh_{high}"]))
    row("revoke", lambda r: rate(r["revoke_pair"]["revoke"]))
    row("sign-in (one argon2id hash)",
        lambda r: f"{r['signin']['rps']:,.0f} req/s ({r['hash']['hash_ms']:.1f} ms, "
                  f"{r['hash']['hash_threads']:.0f} hashing thread)")
    row("refresh p99 during a sign-in storm",
        lambda r: f"{r['refresh_storm']['p99_ms']:.1f} ms "
                  f"({r['refresh_storm']['p99_ms'] / max(r['refresh']['p99_ms'], 1e-9):.1f}× without)")
    seen = extra.get("propagation")
    if seen:
        lines.append("| a revocation seen by another instance, p99 | " + " | ".join(
            f"{seen['p99_ms']:.1f} ms" if s == "postgres" else "—" for s in stores) + " |")
    row("resident memory idle / after the bench",
        lambda r: f"{r['idle_rss_mib']:.1f} / {r['final_rss_mib']:.1f} MiB")
    per = extra["cache"]["bytes_per_session"]
    row("session cache per million live sessions", lambda r: f"{per * 1e6 / 2 ** 20:.0f} MiB")
    return "\n".join(lines)


def goals(all_results, args, extra):
    """The performance issue's goals, checked against this run's medians."""
    low, high = args.connections, args.connections_high
    rows = ["| goal (issue 15) | " + " | ".join(all_results) + " |",
            "| --- |" + " --- |" * len(all_results)]

    def verdict(ok, text):
        return f"met: {text}" if ok else f"**not met**: {text}"

    def row(name, fn):
        rows.append(f"| {name} | " + " | ".join(fn(r) for r in all_results.values()) + " |")

    def share(r, key, health, goal, p99=None):
        ratio = r[key]["rps"] / r[health]["rps"]
        ok = ratio >= goal and (p99 is None or r[key]["p99_ms"] < p99)
        text = f"{ratio:.0%}" + (f", p99 {r[key]['p99_ms']:.1f} ms" if p99 else "")
        if ratio < goal:
            text += f" ({goal - ratio:.0%} short)"
        return verdict(ok, text)

    row(f"refresh ≥ 50% of health at {low} connections, p99 < 10 ms",
        lambda r: share(r, "refresh", "health", 0.5, 10))
    row(f"refresh ≥ 60% of health at {high} connections",
        lambda r: share(r, f"refresh_{high}", f"health_{high}", 0.6))
    row(f"authorize ≥ 75% of health at {low} connections",
        lambda r: share(r, "authorize", "health", 0.75))

    def revoke(r):
        ratios = sorted(r["revoke_pair"]["ratios"])
        m = ratios[len(ratios) // 2]
        return verdict(m >= 0.9, f"{m:.0%} of refresh" + ("" if m >= 0.9 else f" ({0.9 - m:.0%} short)"))

    row("revoke alone ≥ 90% of refresh", revoke)
    per = extra["cache"]["bytes_per_session"]

    def memory(r):
        budget = BUDGET_MIB + r["cached_sessions"] * per / 2 ** 20
        rss = r["final_rss_mib"]
        return verdict(rss <= budget, f"{rss:.1f} of {budget:.1f} MiB"
                       + ("" if rss <= budget else f" ({rss - budget:.1f} MiB over)"))

    row("resident memory after the bench ≤ 64 MiB + session cache", memory)
    seen = extra.get("propagation")
    if seen:
        ok = seen["p99_ms"] < 50 and seen["never_seen_total"] == 0
        cell = verdict(ok, f"p99 {seen['p99_ms']:.1f} ms, max {seen['worst_max_ms']:.1f} ms")
        rows.append("| revocation seen by another instance, p99 < 50 ms | " + " | ".join(
            cell if s == "postgres" else "—" for s in all_results) + " |")
    return rows
