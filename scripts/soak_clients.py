#!/usr/bin/env python3
"""Small HTTP/1.1 clients for scripts/soak.sh and scripts/idle-conns.sh.

Standard library only. Each command prints one JSON line of counts at the end.

  slow      clients that send their request head slowly and read the answer slowly
  classify  one request per connection at a steady rate; sorts answers into
            ok, the upstream's own errors (the upstream's `x-upstream` header),
            breaker rejections (`x-sluice-error: breaker_open` or a
            `x-sluice-fallback`), and failures (anything else, transport errors too)
  idle      opens N keep-alive connections, one request each, then holds them idle
"""

import argparse
import asyncio
import json
import resource
import signal
import sys
import time


async def read_response(reader, slowly=False):
    """Reads one HTTP/1.1 response; returns (status, headers dict, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            chunk = await reader.read(min(left, 16 if slowly else 65536))
            if not chunk:
                raise ConnectionError("closed in the body")
            body += chunk
            left -= len(chunk)
            if slowly:
                await asyncio.sleep(0.05)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            body += data[:-2]
            if size == 0:
                break
    else:
        body = await reader.read()
    return status, headers, body


def request(path, host, close):
    connection = "close" if close else "keep-alive"
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n".encode()


async def slow(args):
    counts = {"ok": 0, "failed": 0, "errors": []}
    deadline = time.monotonic() + args.seconds

    async def client():
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(args.host, args.port)
                data = request(args.path, "web", close=True)
                # The head in 6 pieces over ~3 s: slow, but within header_read_timeout.
                step = max(1, len(data) // 6)
                for i in range(0, len(data), step):
                    writer.write(data[i : i + step])
                    await writer.drain()
                    await asyncio.sleep(0.5)
                status, _, _ = await asyncio.wait_for(read_response(reader, slowly=True), 60)
                writer.close()
                if 200 <= status < 300:
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    counts["errors"].append(f"status {status}")
            except Exception as error:  # noqa: BLE001 - every failure is counted
                counts["failed"] += 1
                counts["errors"].append(repr(error))

    await asyncio.gather(*(client() for _ in range(args.clients)))
    counts["errors"] = counts["errors"][:20]
    print(json.dumps(counts), flush=True)


async def classify(args):
    counts = {"ok": 0, "upstream_errors": 0, "breaker": 0, "failed": 0, "errors": []}
    deadline = time.monotonic() + args.seconds
    pause = 1.0 / args.rate

    async def one():
        try:
            reader, writer = await asyncio.open_connection(args.host, args.port)
            writer.write(request(args.path, "web", close=True))
            await writer.drain()
            status, headers, _ = await asyncio.wait_for(read_response(reader), 60)
            writer.close()
            if 200 <= status < 300:
                counts["ok"] += 1
            elif "x-upstream" in headers:
                counts["upstream_errors"] += 1
            elif headers.get("x-sluice-error") == "breaker_open" or "x-sluice-fallback" in headers:
                counts["breaker"] += 1
            else:
                counts["failed"] += 1
                counts["errors"].append(f"status {status} {headers}")
        except Exception as error:  # noqa: BLE001
            counts["failed"] += 1
            counts["errors"].append(repr(error))

    tasks = set()
    while time.monotonic() < deadline:
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(pause)
    if tasks:
        await asyncio.gather(*tasks)
    counts["errors"] = counts["errors"][:20]
    print(json.dumps(counts), flush=True)


async def idle(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    connections = []
    failed = []
    gate = asyncio.Semaphore(args.parallel)

    async def open_one():
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(args.host, args.port)
                writer.write(request(args.path, "web", close=False))
                await writer.drain()
                status, _, _ = await asyncio.wait_for(read_response(reader), 60)
                if status != 200:
                    failed.append(f"status {status}")
                connections.append((reader, writer))
            except Exception as error:  # noqa: BLE001
                failed.append(repr(error))

    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(args.count)))
    print(
        json.dumps({"open": len(connections), "failed": len(failed), "errors": failed[:10],
                    "seconds_to_open": round(time.monotonic() - started, 1)}),
        flush=True,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.hold)
    except asyncio.TimeoutError:
        pass
    # A connection the server closed while idle reads EOF at once.
    closed = 0
    for reader, _ in connections:
        try:
            data = await asyncio.wait_for(reader.read(1), 0.001)
            if data == b"":
                closed += 1
        except asyncio.TimeoutError:
            pass
    for _, writer in connections:
        writer.close()
    print(json.dumps({"held": len(connections), "closed_by_server": closed}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["slow", "classify", "idle"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4, help="slow: concurrent slow clients")
    parser.add_argument("--rate", type=float, default=20, help="classify: requests per second")
    parser.add_argument("--count", type=int, default=10000, help="idle: connections")
    parser.add_argument("--parallel", type=int, default=200, help="idle: connections opened at once")
    parser.add_argument("--hold", type=float, default=3600, help="idle: seconds to hold (or until SIGTERM)")
    args = parser.parse_args()
    asyncio.run({"slow": slow, "classify": classify, "idle": idle}[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
