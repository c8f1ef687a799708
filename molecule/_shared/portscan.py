"""TCP connect scan, run inside a throwaway lab container (site test_96).

argv: {address: [ports]} as JSON and the connect timeout in seconds. Prints
{"from": its own address, "found": {address: [ports that connected]}} as
JSON. A connection refused or timed out is a closed port; any other error
stops the scan.
"""

import asyncio
import json
import socket
import sys

CONCURRENT = 100


async def probe(limit: asyncio.Semaphore, address: str, port: int, timeout: float) -> int:
    async with limit:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        except (TimeoutError, ConnectionRefusedError):
            return 0
        writer.close()
        return port


async def main() -> None:
    targets = json.loads(sys.argv[1])
    timeout = float(sys.argv[2])
    limit = asyncio.Semaphore(CONCURRENT)
    per_host = [
        asyncio.gather(*(probe(limit, a, p, timeout) for p in ps)) for a, ps in targets.items()
    ]
    results = await asyncio.gather(*per_host)
    found = {a: sorted(p for p in ports if p) for a, ports in zip(targets, results, strict=True)}
    print(json.dumps({"from": socket.gethostbyname(socket.gethostname()), "found": found}))


asyncio.run(main())
