#!/usr/bin/env python3
"""Relay memory probe: RSS of a fresh relay when idle, while holding N long-polls
of one user (raw HTTP/1.1 sockets on loopback), and after they are answered.

Usage: rss_probe.py KAVRO_SERVER_BINARY N [NAME=VALUE ...]
The NAME=VALUE pairs go into the relay's environment, e.g.
MIMALLOC_PURGE_DELAY=1000 MIMALLOC_ARENA_EAGER_COMMIT=2 (mimalloc's defaults,
which also stop the relay's own allocator settings: kavro-server/src/allocator.rs).
Needs `ulimit -n` above N + 100. Lighter than `kavro-bench idle-polls` (one
registration, no Argon2 per poll), so it also runs against a debug build.
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HOLD = 25  # seconds each long-poll asks to wait


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))


async def poll(port, token):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /messages/inbox?wait={HOLD} HTTP/1.1\r\nhost: relay\r\n"
        f"authorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    line = await reader.readline()
    writer.close()
    return line.startswith(b"HTTP/1.1 200")


async def hold(port, token, count, pid):
    tasks = []
    for i in range(count):  # bounded: count polls, 2,000 per second
        tasks.append(asyncio.create_task(poll(port, token)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.sleep(HOLD / 2)
    held = rss_kib(pid)
    answered = sum(await asyncio.gather(*tasks))
    return held, answered


def main():
    binary, count = sys.argv[1], int(sys.argv[2])
    env = dict(os.environ, KAVRO_LOG_LEVEL="warn", KAVRO_RATE_LIMITS="off",
               KAVRO_MAX_LONG_POLLS_PER_USER=str(count + 10),
               KAVRO_MAX_CONNECTIONS=str(count + 100))
    env.update(pair.split("=", 1) for pair in sys.argv[3:])
    with tempfile.TemporaryDirectory() as data:
        relay = subprocess.Popen(
            [binary, "--data-dir", data, "--bind", "127.0.0.1:0"],
            env=env, stdout=subprocess.PIPE, text=True)
        try:
            port = int(re.search(r":(\d+)$", relay.stdout.readline().strip()).group(1))
            time.sleep(3)
            idle = rss_kib(relay.pid)
            body = json.dumps({"username": "poller", "password": "Passw0rd!"}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/auth/register", data=body,
                headers={"content-type": "application/json"})
            token = json.load(urllib.request.urlopen(request))["access_token"]
            held, answered = asyncio.run(hold(port, token, count, relay.pid))
            time.sleep(2)
            after = rss_kib(relay.pid)
        finally:
            relay.terminate()
            relay.wait()
    per_poll = (held - idle) / count if count else 0
    print(f"idle {idle / 1024:.1f} MiB; {count} held {held / 1024:.1f} MiB "
          f"({per_poll:.1f} KiB each over idle); answered 200: {answered}; "
          f"after {after / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
