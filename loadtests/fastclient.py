"""A minimal keep-alive HTTP/1.1 GET/POST client on raw asyncio streams.

httpx spends more CPU per request than a 2-worker uvicorn does per /healthz, so on a 2-core machine it
would cap the baseline and flatter every ratio against it; this client costs a few microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        return await self.request("GET", path, headers=headers)

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """POST a JSON body (already encoded)."""
        return await self.request("POST", path, body=body,
                                  headers={"Content-Type": "application/json", **(headers or {})})

    async def request(self, method: str, path: str, *, body: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if body is not None:
            extra += f"Content-Length: {len(body)}\r\n"
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{extra}\r\n".encode() + (body or b""))
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            body = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            return status, bytes(body)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None
