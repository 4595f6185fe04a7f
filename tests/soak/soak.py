#!/usr/bin/env python3
"""Soak test of `mammogan serve` (issue 11), Python 3.11 standard library only.

For DURATION seconds, against a server already running (started by tests/soak/run, under a cgroup
memory limit): valid clients POST mammograms and must get 200 (a 503 with Retry-After is retried, and
counted); hostile clients POST an oversized-declared PNG, a truncated DICOM and garbage and must get 400;
a staller keeps connections holding half a header, and one holding half a body, open and renews them as
the server drops them; a pinger (its own process, so other threads cannot delay its clock) GETs /ping
every 50 ms. Prints one JSON line of figures; exits 1 if any check failed.
"""

import argparse
import json
import multiprocessing
import os
import random
import socket
import struct
import sys
import threading
import time
import zlib


def request(addr, method, path, body=b"", headers=(), timeout=60.0):
    """One request on a fresh connection: (status, headers dict, body). Raises OSError on failure."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        for k, v in headers:
            head += f"{k}: {v}\r\n"
        s.sendall(head.encode() + b"\r\n")
        try:
            s.sendall(body)
        except OSError:
            pass  # answered (and closed) before the body was read: the answer is still there to read
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    raw = b"".join(chunks)
    if b"\r\n\r\n" not in raw:
        raise OSError(f"no complete response ({len(raw)} bytes)")
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, rest


def png_declaring(width, height):
    """A 16-bit grayscale PNG whose IHDR declares width x height, with one tiny IDAT: a few hundred bytes."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def fail(self, what):
        with self.lock:
            self.failures.append(what)
            self.counts["failures"] = self.counts.get("failures", 0) + 1


def valid_client(addr, images, stop, tally, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        path, body = rng.choice(images)
        started = time.monotonic()
        while True:
            try:
                status, hdrs, resp = request(addr, "POST", path, body)
            except OSError as e:
                tally.fail(f"valid {path}: {e}")
                break
            if status == 503 and hdrs.get("retry-after"):
                tally.add("valid_503")
                if time.monotonic() - started > 60:
                    tally.fail(f"valid {path}: still 503 after 60 s")
                    break
                time.sleep(min(float(hdrs["retry-after"]), 1.0) * rng.uniform(0.2, 1.0))
                continue
            if status == 200 and b'"score"' in resp:
                tally.add("valid_200")
            else:
                tally.fail(f"valid {path}: {status} {resp[:200]!r}")
            break


def hostile_client(addr, hostile, stop, tally, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        name, path, body = rng.choice(hostile)
        try:
            status, _, resp = request(addr, "POST", path, body)
        except OSError as e:
            tally.fail(f"hostile {name}: {e}")
            continue
        if status == 503:
            tally.add("hostile_503")
            time.sleep(0.2)
        elif status == 400 and b'"error"' in resp:
            tally.add(f"hostile_400_{name}")
        else:
            tally.fail(f"hostile {name}: {status} {resp[:200]!r}")
        time.sleep(rng.uniform(0.0, 0.05))


def staller(addr, stop, tally, half_heads, half_bodies):
    """Keeps `half_heads` connections holding half a request head and `half_bodies` holding half a body;
    a connection the server closed (its timeout) is replaced."""
    held = []

    def open_one(kind):
        try:
            s = socket.create_connection(addr, timeout=5)
            s.setblocking(False)
            if kind == "head":
                s.send(b"POST /invocations HTTP/1.1\r\nHost: soak\r\nContent-Le")
            else:
                s.send(b"POST /invocations HTTP/1.1\r\nHost: soak\r\nContent-Length: 1000000\r\n\r\n" + b"\0" * 1000)
            held.append((kind, s))
            tally.add(f"stalled_{kind}")
        except OSError:
            tally.add("stalled_refused")

    while not stop.is_set():
        alive = []
        for kind, s in held:
            try:
                if s.recv(4096) == b"":
                    s.close()  # closed by the server
                    tally.add(f"stalled_{kind}_dropped")
                    continue
                alive.append((kind, s))  # an answer (408): it closes next
            except BlockingIOError:
                alive.append((kind, s))
            except OSError:
                s.close()
                tally.add(f"stalled_{kind}_dropped")
        held[:] = alive
        for kind, want in (("head", half_heads), ("body", half_bodies)):
            for _ in range(want - sum(1 for k, _ in held if k == kind)):
                open_one(kind)
        time.sleep(0.2)
    for _, s in held:
        s.close()


def pinger(addr, seconds, out):
    lat, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            status, _, _ = request(addr, "GET", "/ping", timeout=5)
            if status == 200:
                lat.append(time.monotonic() - t)
            else:
                failed += 1
        except OSError:
            failed += 1
        time.sleep(0.05)
    out.put((lat, failed))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True, help="HOST:PORT")
    ap.add_argument("--images", required=True, help="a folder of valid mammograms (DICOM, PNG)")
    ap.add_argument("--png-spacing", default="0.4")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--valid-clients", type=int, default=4)
    ap.add_argument("--hostile-clients", type=int, default=8)
    ap.add_argument("--half-heads", type=int, default=40)
    ap.add_argument("--half-bodies", type=int, default=1)
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    addr = (host, int(port))

    images = []
    for n in sorted(os.listdir(a.images)):
        body = open(os.path.join(a.images, n), "rb").read()
        path = f"/invocations?spacing_mm={a.png_spacing}" if n.endswith(".png") else "/invocations"
        images.append((path, body))
    dicom = min((b for p, b in images if p == "/invocations"), key=len)  # the hostile variants stay small
    rng = random.Random(1)
    hostile = [
        ("png_20000x20000", "/invocations", png_declaring(20000, 20000)),
        ("png_65535x65535", "/invocations", png_declaring(65535, 65535)),
        ("dicom_truncated", "/invocations", dicom[: len(dicom) // 2]),
        ("dicom_header_only", "/invocations", dicom[:400]),
        ("garbage", "/invocations", bytes(rng.getrandbits(8) for _ in range(5000))),
        ("spacing_1e300", "/invocations?spacing_mm=1e300", dicom),
    ]

    tally, stop = Tally(), threading.Event()
    pings = multiprocessing.Queue()
    ping_proc = multiprocessing.Process(target=pinger, args=(addr, a.seconds, pings))
    ping_proc.start()
    threads = [threading.Thread(target=staller, args=(addr, stop, tally, a.half_heads, a.half_bodies))]
    threads += [threading.Thread(target=valid_client, args=(addr, images, stop, tally, i)) for i in range(a.valid_clients)]
    threads += [
        threading.Thread(target=hostile_client, args=(addr, hostile, stop, tally, 100 + i))
        for i in range(a.hostile_clients)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    lat, ping_failed = pings.get()
    ping_proc.join()
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    c = tally.counts
    fig = {
        "seconds": round(elapsed, 1),
        "valid_200": c.get("valid_200", 0),
        "valid_503_retried": c.get("valid_503", 0),
        "hostile_400": sum(v for k, v in c.items() if k.startswith("hostile_400")),
        "hostile_503": c.get("hostile_503", 0),
        "stalled_opened": c.get("stalled_head", 0) + c.get("stalled_body", 0),
        "stalled_dropped_by_server": c.get("stalled_head_dropped", 0) + c.get("stalled_body_dropped", 0),
        "pings": len(lat),
        "ping_failed": ping_failed,
        "ping_p50_ms": round(pct(lat, 50) * 1000, 1),
        "ping_p99_ms": round(pct(lat, 99) * 1000, 1),
        "ping_max_ms": round(max(lat) * 1000, 1) if lat else None,
        "failures": tally.failures[:20],
    }
    print(json.dumps(fig), flush=True)
    ok = True
    if tally.failures:
        print(f"FAIL: {len(tally.failures)} failed requests, first: {tally.failures[0]}", file=sys.stderr)
        ok = False
    if fig["valid_200"] == 0 or fig["hostile_400"] == 0:
        print("FAIL: no valid or no hostile request was answered", file=sys.stderr)
        ok = False
    if ping_failed or not lat or fig["ping_p99_ms"] >= 100:
        print(f"FAIL: /ping p99 {fig['ping_p99_ms']} ms, {ping_failed} failed (wanted < 100 ms, 0)", file=sys.stderr)
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
