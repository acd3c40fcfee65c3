"""Minutes of mixed load with nothing scraping /metrics, resident memory
sampled every few seconds; reports the slope (least squares, after the
first minute's warm-up) in MiB per minute, per store. Cheap hashing
(labelled) so the sign-ins of the mixed loop do not dominate."""

import time

from .proc import Server, authload, parse


def soak(args):
    """Minutes of mixed load with nothing scraping /metrics, resident memory
    sampled every few seconds; reports the slope (least squares, after the
    first minute's warm-up) in MiB per minute, per store."""
    seconds = int(args.soak_minutes * 60)
    warm = min(60, seconds // 3)
    results = {}
    for store in args.stores.split(","):
        # Cheap hashing so the sign-ins of the mixed loop do not dominate;
        # labelled as such in the output.
        server = Server(store, {"AUTHD_ARGON2_M_KIB": "1024", "AUTHD_ARGON2_T": "1"})
        idle = server.rss_mib()
        loads = [
            authload(server.base, "refresh", 24, seconds, 0, background=True),
            authload(server.base, "authorize", 16, seconds, 0, background=True),
            authload(server.base, "mixed", 8, seconds, 0, background=True),
        ]
        samples = []
        started = time.time()
        try:
            while time.time() - started < seconds:
                time.sleep(5)
                samples.append((time.time() - started, server.rss_mib()))
            outs = [p.communicate()[0] for p in loads]
        finally:
            server.stop()
        runs = [parse(o, "soak", 0) for o in outs]
        tail = [(t, m) for t, m in samples if t >= warm] or samples
        n = len(tail)
        mt = sum(t for t, _ in tail) / n
        mm = sum(m for _, m in tail) / n
        var = sum((t - mt) ** 2 for t, _ in tail) or 1e-9
        slope = sum((t - mt) * (m - mm) for t, m in tail) / var * 60
        requests = sum(r["requests"] for r in runs)
        errors = sum(sum(r["errors"].values()) for r in runs)
        results[store] = dict(idle=idle, start=tail[0][1], end=tail[-1][1], peak=max(m for _, m in samples),
                              slope=slope, requests=requests, errors=errors, rps=requests / seconds)
        print(f"soak {store:8} idle {idle:.1f} MiB, after warm-up {tail[0][1]:.1f} -> {tail[-1][1]:.1f} MiB "
              f"(peak {results[store]['peak']:.1f}), slope {slope:+.3f} MiB/min over {seconds - warm} s; "
              f"{requests} requests ({requests / seconds:.0f}/s: refresh 24 + authorize 16 + mixed 8 "
              f"connections, argon2 m=1024 t=1), errors {errors}, no /metrics scrape")
        last = [m for t, m in samples if t >= seconds - 60]
        results[store]["last_minute_mib"] = (last[-1] - last[0]) if len(last) > 1 else 0.0
        print(f"  change over the last minute: {results[store]['last_minute_mib']:+.2f} MiB")
        print("  samples (s, MiB): " + ", ".join(f"{t:.0f}:{m:.1f}" for t, m in samples))
    return results
