#!/usr/bin/python3
"""Open-loop (fixed-rate) HTTP load for alignd's endpoints.

Requests are scheduled at a fixed rate whatever the server does, and each
latency counts from the request's scheduled send time, not from when a
connection was free to send it: a stalled server shows up as latency
instead of slowing the client down (no coordinated omission, as wrk2 does;
Debian 12 has wrk but not wrk2). Keep-alive HTTP/1.1 connections, opened as
needed up to --connections; a request whose time has come waits for a free
connection, and that wait counts.

    bench/http_load.py --url http://127.0.0.1:8080/v1/fine_tuning/jobs \\
        --rate 1000 --seconds 10 [--connections 64] [--json]

Prints the achieved rate, errors and latency percentiles (ms). Run it with
the server on the same machine: both share the cores, as in production on a
small host. Standard library only (asyncio).
"""
import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


class Conn:
    def __init__(self, r, w):
        self.r, self.w = r, w


async def read_response(r):
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await r.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            await r.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await r.readexactly(length)
    return status


async def run(args):
    u = urlsplit(args.url)
    host, port = u.hostname, u.port or 80
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    hdr = "GET %s HTTP/1.1\r\nHost: %s:%d\r\n" % (path, host, port)
    if args.key:
        hdr += "Authorization: Bearer %s\r\n" % args.key
    req = (hdr + "\r\n").encode()
    idle = []
    n_open = 0
    free = asyncio.Condition()
    lat, errors = [], [0]
    n = int(args.rate * args.seconds)
    period = 1.0 / args.rate
    t0 = time.monotonic() + 0.2

    async def get_conn():
        nonlocal n_open
        async with free:
            while True:
                if idle:
                    return idle.pop()
                if n_open < args.connections:
                    n_open += 1
                    break
                await free.wait()
        try:
            r, w = await asyncio.open_connection(host, port)
            return Conn(r, w)
        except OSError:
            async with free:
                n_open -= 1
                free.notify()
            raise

    async def put_conn(c, ok):
        nonlocal n_open
        async with free:
            if ok:
                idle.append(c)
            else:
                n_open -= 1
                c.w.close()
            free.notify()

    async def one(i):
        sched = t0 + i * period
        d = sched - time.monotonic()
        if d > 0:
            await asyncio.sleep(d)
        try:
            c = await get_conn()
        except OSError:
            errors[0] += 1
            return
        ok = False
        try:
            c.w.write(req)
            st = await asyncio.wait_for(read_response(c.r), args.timeout)
            ok = True
            if st != 200:
                errors[0] += 1
            else:
                lat.append((time.monotonic() - sched) * 1e3)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            errors[0] += 1
        await put_conn(c, ok)

    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    await asyncio.gather(*tasks)
    wall = time.monotonic() - t0
    lat.sort()
    out = {
        "url": args.url, "target_rate": args.rate, "seconds": args.seconds,
        "requests": n, "ok": len(lat), "errors": errors[0],
        "achieved_rate": round(len(lat) / wall, 1),
        "p50_ms": round(pct(lat, 50), 2), "p90_ms": round(pct(lat, 90), 2),
        "p99_ms": round(pct(lat, 99), 2), "max_ms": round(lat[-1], 2) if lat else None,
        "connections": n_open,
    }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True, help="requests per second, scheduled")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--key", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        print("%(url)s rate %(target_rate)s/s for %(seconds)ss: %(ok)d ok, %(errors)d errors, "
              "achieved %(achieved_rate)s/s, p50 %(p50_ms)s ms, p90 %(p90_ms)s ms, "
              "p99 %(p99_ms)s ms, max %(max_ms)s ms" % out)
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
