"""The Python side of the client scenario: the same load as client.lua with
httpx (Debian's python3-httpx), an AsyncClient keeping up to 50
connections alive.   python3 client.py PORT REQUESTS"""
import asyncio
import sys
import time

import httpx


async def run(client, url, n):
    state = {"next": 0}

    async def worker():
        while state["next"] < n:
            state["next"] += 1
            res = await client.get(url)
            if res.text != "Hello, world!":
                raise RuntimeError("wrong body")

    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(50)))
    return time.monotonic() - t0, time.process_time() - cpu0


async def main():
    port, total = int(sys.argv[1]), int(sys.argv[2])
    url = f"http://127.0.0.1:{port}/"
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(limits=limits) as client:
        await run(client, url, 2000)
        wall, cpu = await run(client, url, total)
    print(f"RESULT ops={total} wall={wall:.3f} cpu={cpu:.3f}")


asyncio.run(main())
