#!/usr/bin/env python3
"""Resource bounds under abuse, against the real release binary on loopback.

    cargo build --release && python3 scripts/bounds.py

Starts `target/release/agenthub` on a fresh database in a temporary
directory and, from one member's credentials, tries what used to exhaust
the server; after each phase it prints the server's resident memory
(VmRSS) and what the server answered. Every loop is bounded in count and
time and talks only to 127.0.0.1.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BINARY = os.path.join(os.path.dirname(__file__), "..", "target", "release", "agenthub")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port, token):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, ws=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        if ws:
            headers["X-Workspace-ID"] = ws
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers=headers)
        res = self.conn.getresponse()
        raw = res.read()
        try:
            return res.status, json.loads(raw) if raw else None
        except ValueError:
            return res.status, raw


def stalled_stream(port, token, ws):
    """An event stream whose client never reads."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(
        f"GET /api/events?workspace_id={ws} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    head = s.recv(12)
    return s, head.decode(errors="replace")


def main():
    binary = os.path.abspath(BINARY)
    if not os.path.exists(binary):
        sys.exit("build first: cargo build --release")
    tmp = tempfile.mkdtemp(prefix="agenthub-bounds-")
    db = os.path.join(tmp, "bounds.db")
    out = subprocess.run(
        [binary, "init", "--email", "a@example.com", "--db", db, "--json"],
        check=True, capture_output=True, text=True,
    )
    init = json.loads(out.stdout)
    token, ws = init["token"], init["workspace_id"]
    port = free_port()
    env = dict(os.environ, AGENTHUB_LISTEN=f"127.0.0.1:{port}", RUST_LOG="error")
    server = subprocess.Popen([binary, "serve", "--db", db], env=env, cwd=tmp)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("server did not start")
                time.sleep(0.05)
        run(server.pid, port, token, ws)
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(pid, port, token, ws):
    c = Client(port, token)
    print(f"{'phase':<58} {'RSS MiB':>8}  answers")
    print(f"{'idle':<58} {rss_mib(pid):>8.1f}")

    # 1. distinct HTTP methods (metric labels)
    anon = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = {}
    for i in range(10_000):
        anon.request(f"X{i:05d}", "/health")
        r = anon.getresponse()
        r.read()
        statuses[r.status] = statuses.get(r.status, 0) + 1
    status, text = Client(port, "").call("GET", "/metrics")
    series = sum(1 for line in text.decode().splitlines() if line.startswith("agenthub_http_requests_total{"))
    print(f"{'10,000 requests with distinct methods':<58} {rss_mib(pid):>8.1f}  "
          f"{statuses}; /metrics {len(text)} bytes, {series} request series")

    # 2. a stalled stream while a daemon relays large progress bodies
    status, reg = c.call("POST", "/api/daemon/register", {
        "workspace_id": ws, "daemon_id": "mbp", "runtimes": [{"type": "claude"}]})
    runtime = reg["runtimes"][0]["id"]
    status, agent = c.call("POST", "/api/agents", {"name": "a", "runtime_id": runtime}, ws=ws)
    status, task = c.call("POST", f"/api/agents/{agent['id']}/tasks", {"prompt": "x"})
    c.call("POST", f"/api/daemon/runtimes/{runtime}/tasks/claim", {})
    stalled, head = stalled_stream(port, token, ws)
    codes = {}
    for size in (1 << 20, 60 << 10):
        for _ in range(150):
            status, _ = c.call("POST", f"/api/daemon/tasks/{task['id']}/progress", {"blob": "x" * size})
            codes[(size, status)] = codes.get((size, status), 0) + 1
    print(f"{'stalled stream + 150 x 1 MiB and 150 x 60 KiB progress':<58} {rss_mib(pid):>8.1f}  "
          f"{ {f'{s >> 10} KiB': st for (s, st) in codes} }")
    stalled.close()

    # 3. many event streams from one member
    opened, refused, socks = 0, 0, []
    for _ in range(1000):
        s, head = stalled_stream(port, token, ws)
        if head.endswith("200"):
            opened += 1
            socks.append(s)
        else:
            refused += 1
            s.close()
    t0 = time.time()
    status, _ = Client(port, "").call("GET", "/health")
    health_ms = (time.time() - t0) * 1000
    print(f"{'1,000 event streams requested by one member':<58} {rss_mib(pid):>8.1f}  "
          f"{opened} open, {refused} refused; /health {status} in {health_ms:.1f} ms")
    for s in socks:
        s.close()

    # 4. pings with large outputs
    codes = {}
    for _ in range(300):
        status, ping = c.call("POST", f"/api/runtimes/{runtime}/ping", {})
        codes[("ping", status)] = codes.get(("ping", status), 0) + 1
        if status != 200:
            continue
        c.call("POST", "/api/daemon/heartbeat", {"runtime_id": runtime})
        status, _ = c.call("POST", f"/api/daemon/runtimes/{runtime}/ping/{ping['id']}/result",
                           {"status": "completed", "output": "o" * (600 << 10), "error": "e" * (300 << 10)})
        codes[("result", status)] = codes.get(("result", status), 0) + 1
    print(f"{'300 pings answered with 900 KiB of output each':<58} {rss_mib(pid):>8.1f}  {codes}")


if __name__ == "__main__":
    main()
