#!/usr/bin/env python3
"""Idle kept-alive connections against a release build: open N connections, one request each,
then leave them idle; report the proxy's RSS before, while holding them, and after the listener's
keep-alive timeout closed them, and when the closes came. A measurement for the docs, not a
pass/fail test. Loopback only; bounded by the keep-alive timeout plus 60 s.

    python3 benches/load/idle-connections.py [--connections 5000] [--keepalive-ms 60000]
        [--waves 2] [--proxy target/release/sticky-proxy] [--backend target/release/demo-backend]

Build first: cargo build --release --bin sticky-proxy, and the demo backend with
cargo build --release --features demo --bin demo-backend (any build of it will do: --backend).
"""
import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time

PROXY_PORT = 6231
closing = []
BACKEND_PORT = 9131


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def config(dir, keepalive_ms, threads):
    return f"""version: 1
threads: {threads}
pid_file: {dir}/proxy.pid
upgrade_sock: {dir}/upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
sticky:
  listeners:
    - addr: 127.0.0.1:{PROXY_PORT}
      timeouts: {{ keepalive_ms: {keepalive_ms} }}
  pools:
    - name: web
      backends: [{{ name: iis1, addr: "127.0.0.1:{BACKEND_PORT}" }}]
      affinity: {{ cookie: {{ secret: idle-connections-0123456789abcdef }} }}
"""


async def wait_port(port, deadline):
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


async def one(i, opened, closed_at):
    r, w = await asyncio.open_connection("127.0.0.1", PROXY_PORT)
    w.write(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    if b"close" in head.lower():
        closing.append(head)
    length = next(
        int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")
    )
    await r.readexactly(length)
    idle = time.monotonic()
    opened.append(idle)
    # Idle from here: the proxy must close it.
    rest = await r.read()
    closed_at.append((time.monotonic() - idle, rest))
    w.close()


async def one_wave(args, proxy, wave):
    """Open the connections, hold them idle, wait for the proxy to close them; print figures."""
    opened, closed_at = [], []
    closing.clear()
    started = time.monotonic()
    tasks = []
    for i in range(args.connections):
        tasks.append(asyncio.create_task(one(i, opened, closed_at)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    while len(opened) < args.connections and time.monotonic() - started < 60:
        await asyncio.sleep(0.1)
    idle_since = time.monotonic()
    opening = idle_since - started
    await asyncio.sleep(1)
    holding = rss_kib(proxy.pid)
    limit = idle_since + args.keepalive_ms / 1000 + 60
    done, pending = await asyncio.wait(tasks, timeout=max(0, limit - time.monotonic()))
    for t in pending:
        t.cancel()
    errors = [t.exception() for t in done if t.exception() is not None]
    await asyncio.sleep(2)
    after = rss_kib(proxy.pid)
    await asyncio.sleep(10)
    later = rss_kib(proxy.pid)
    times = sorted(t for t, _ in closed_at)
    silent = sum(1 for _, rest in closed_at if rest == b"")
    print(
        f"wave {wave}: connections opened and answered: {len(opened)} of {args.connections} "
        f"(in {opening:.1f} s)"
    )
    if times:
        print(
            f"closed by the proxy: {len(times)} ({silent} without a byte), "
            f"{times[0]:.2f}-{times[-1]:.2f} s after each went idle"
        )
    early = sum(1 for t, _ in closed_at if t < args.keepalive_ms / 1000 * 0.9)
    print(f"closed before 90 % of the timeout: {early}; answers saying close: {len(closing)}")
    if closing:
        print(closing[0].decode(errors="replace"))
    print(f"still open at the limit: {len(pending)}; client errors: {len(errors)}")
    print(f"proxy RSS holding them idle: {holding / 1024:.1f} MiB")
    print(
        f"proxy RSS after the closes: {after / 1024:.1f} MiB (2 s), {later / 1024:.1f} MiB (12 s)"
    )


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 100
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    dir = tempfile.mkdtemp(prefix="idle-conns-")
    with open(f"{dir}/proxy.yaml", "w") as f:
        f.write(config(dir, args.keepalive_ms, args.threads))
    backend = subprocess.Popen(
        [args.backend, f"iis1=127.0.0.1:{BACKEND_PORT}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = subprocess.Popen(
        ["/bin/sh", "-c", f"ulimit -n {2 * need}; exec {args.proxy} -c {dir}/proxy.yaml"],
        stdout=subprocess.DEVNULL,
        stderr=open(f"{dir}/proxy.log", "w"),
        env=dict(os.environ, RUST_LOG="warn"),
    )
    try:
        await wait_port(BACKEND_PORT, time.monotonic() + 20)
        await wait_port(PROXY_PORT, time.monotonic() + 20)
        await asyncio.sleep(1)
        before = rss_kib(proxy.pid)
        print(f"keep-alive timeout: {args.keepalive_ms} ms; proxy threads: {args.threads}")
        print(f"proxy RSS before: {before / 1024:.1f} MiB")
        for wave in range(1, args.waves + 1):
            await one_wave(args, proxy, wave)
    finally:
        proxy.terminate()
        backend.terminate()
        proxy.wait()
        backend.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--keepalive-ms", type=int, default=60000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--waves", type=int, default=2, help="open and let close this many times")
    p.add_argument("--proxy", default="target/release/sticky-proxy")
    p.add_argument("--backend", default="target/release/demo-backend")
    asyncio.run(main(p.parse_args()))
