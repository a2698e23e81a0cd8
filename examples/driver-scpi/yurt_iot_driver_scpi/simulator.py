"""An SCPI instrument on 127.0.0.1 for the driver's tests and demos: settings by header, faults on demand.

It holds a value (the reply text) per header. ``HEADER?`` answers the value, ``HEADER value`` sets it (unless the
header is read-only), ``*IDN?`` identifies the instrument, ``*OPC?`` answers ``1``; commands joined by ``;`` run
in order and their answers are joined by ``;``. A line with an unknown header or a refused setting is answered
with ``ERR <code>,"<message>"`` alone, and sets nothing after the failing command.

`stop` and `start` switch it off and on, on the same port with the same values; while `silent` it reads lines
and answers none (an instrument that hangs); `requests` counts the lines received.

As a process: ``python -m yurt_iot_driver_scpi.simulator --port 5025 MEAS:TEMP=21.5 SOUR:VOLT=0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Collection, Mapping
from typing import Final

__all__ = ["ScpiSimulator"]

IDENTITY: Final = "yurt-iot,SCPI simulator,0,1.0"
UNDEFINED_HEADER: Final = 'ERR -113,"Undefined header"'
SETTINGS_CONFLICT: Final = 'ERR -221,"Settings conflict"'


class ScpiSimulator:
    """See the module docstring. Port 0 picks a free port at the first start and keeps it."""

    def __init__(
        self, values: Mapping[str, str], *, host: str = "127.0.0.1", port: int = 0, read_only: Collection[str] = ()
    ) -> None:
        self.values = {header.upper(): value for header, value in values.items()}
        self.read_only = {header.upper() for header in read_only}
        self.host, self.port = host, port
        self.silent = False
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for client in list(self._clients):
            client.close()
        if server is not None:
            await server.wait_closed()

    def answer(self, line: str) -> str:
        answers = []
        for command in line.split(";"):
            header, _, argument = command.strip().partition(" ")
            header = header.upper()
            if header == "*IDN?":
                answers.append(IDENTITY)
            elif header == "*OPC?":
                answers.append("1")
            elif header.endswith("?") and header[:-1] in self.values:
                answers.append(self.values[header[:-1]])
            elif header not in self.values:
                return UNDEFINED_HEADER
            elif header in self.read_only:
                return SETTINGS_CONFLICT
            else:
                self.values[header] = argument.strip()
        return ";".join(answers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while line := await reader.readline():
                self.requests += 1
                if not self.silent:
                    writer.write(self.answer(line.decode(errors="replace").strip()).encode() + b"\n")
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An SCPI instrument on 127.0.0.1")
    parser.add_argument("--port", type=int, default=5025)
    parser.add_argument("values", nargs="*", metavar="HEADER=VALUE")
    args = parser.parse_args(argv)
    values = dict(item.partition("=")[::2] for item in args.values)

    async def serve() -> None:
        simulator = ScpiSimulator(values, port=args.port)
        await simulator.start()
        print(f"{simulator.host}:{simulator.port}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
