"""A tiny HTTP/1.1 keep-alive backend for the proxy tests: `python backend.py HOST PORT NAME`.

Plain asyncio (cheap per request, so a loaded machine still drives hundreds a second). GET /slow
waits SLOW seconds (env, default 2) before answering; GET /ms/N waits N milliseconds; GET
/status/N answers status N; a path may hold both (/ms/30/status/500); every answer's body is NAME. It
prints "ready" once it listens. On SIGTERM it stops listening, finishes the requests it has and
exits (what the app contract asks). With HOLD=1 it first waits for a line on stdin, so a test
can start it ahead and have it listen at an exact moment.
"""

import asyncio
import os
import re
import signal
import sys

NAME = sys.argv[3].encode()
SLOW = float(os.environ.get("SLOW", "2"))
busy = 0
idle: asyncio.Event  # set while no request is being served


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global busy
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            busy += 1
            idle.clear()
            try:
                path = head.split(b" ", 2)[1]
                if path.startswith(b"/slow"):
                    await asyncio.sleep(SLOW)
                wait = re.search(rb"/ms/(\d+)", path)
                if wait:
                    await asyncio.sleep(int(wait.group(1)) / 1000)
                status = re.search(rb"/status/(\d{3})", path)
                line = b"%s Status" % status.group(1) if status else b"200 OK"
                writer.write(b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                             % (line, len(NAME), NAME))
                await writer.drain()
            finally:
                busy -= 1
                if not busy:
                    idle.set()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    global idle
    idle = asyncio.Event()
    idle.set()
    if os.environ.get("HOLD"):
        print("held", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    server = await asyncio.start_server(serve, sys.argv[1], int(sys.argv[2]), backlog=256)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()  # no new connections; the requests being served finish
    await idle.wait()


if __name__ == "__main__":
    asyncio.run(main())
