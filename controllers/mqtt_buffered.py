"""Fewer system calls per MQTT message for `parkgrid ingest`: buffered reads, one send for many PUBACKs.

paho-mqtt reads a packet with three or more `recv` calls (one byte of type, the length byte by byte, then the
rest) and aiomqtt runs one `loop_read` per readable event, so each QoS 1 message cost several system calls,
an event-loop turn and one `send` for its PUBACK: most of the consumer's CPU per message. This paho client
reads up to 64 KiB at a time, decodes every packet in the buffer on one readable event, and writes the PUBACKs
queued meanwhile with one `send`. The protocol, the order of packets and the acknowledgements are paho's own.

It is installed on an aiomqtt client by `buffered(client)`; paho internals it relies on are checked first, and
the client is left as it is (plain paho) when they are missing.
"""

from __future__ import annotations

import logging
from typing import Any

import aiomqtt
import paho.mqtt._packet as paho_packet
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

READ_SIZE = 65536
_PUBACK = 0x40


class BufferedPaho(mqtt.Client):
    """paho's client with a read buffer in front of the socket and PUBACKs coalesced into one write."""

    _rbuf: bytes = b""
    _rpos: int = 0
    _rsock: Any = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: nothing read from the old one belongs to it
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._sock_recv(READ_SIZE)  # BlockingIOError when nothing is there, as before
            if not buf:
                return buf  # connection closed
            pos = 0
            self._rbuf = buf
        end = min(pos + bufsize, len(buf))
        self._rpos = end
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Decode every packet already read, not only the first (nothing would wake us for the rest)."""
        rc = super().loop_read(max_packets)
        while (rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._sock is self._rsock
               and self._rpos < len(self._rbuf)):
            rc = super().loop_read(max_packets)
        return rc

    def _packet_write(self) -> mqtt.MQTTErrorCode:
        queue: Any = self._out_packet
        if len(queue) > 1 and queue[0]["command"] & 0xF0 == _PUBACK and queue[0]["pos"] == 0:
            acks = []
            while queue and queue[0]["command"] & 0xF0 == _PUBACK and queue[0]["pos"] == 0:
                acks.append(queue.popleft())
            data = b"".join(bytes(p["packet"]) for p in acks)
            queue.appendleft({"command": _PUBACK, "mid": 0, "qos": 0, "pos": 0, "to_process": len(data),
                              "packet": data, "info": None})
        return super()._packet_write()


_PRIVATE = frozenset({"packetType", "types", "names", "properties"})
_TEMPLATE = Properties(PacketTypes.PUBLISH)


class SharedTableProperties(Properties):
    """paho's MQTT 5 Properties with its constant name and type tables shared, not rebuilt for every PUBLISH
    decoded (building them, and clearing attributes name by name, was most of a message's decoding)."""

    def __init__(self, packetType: int) -> None:
        attrs = self.__dict__
        attrs["packetType"] = packetType
        attrs["types"], attrs["names"], attrs["properties"] = _TEMPLATE.types, _TEMPLATE.names, _TEMPLATE.properties

    def clear(self) -> None:
        for name in [n for n in self.__dict__ if n not in _PRIVATE]:
            del self.__dict__[name]


_REQUIRED = ("_sock_recv", "loop_read", "_packet_write", "_out_packet")


def buffered(client: aiomqtt.Client) -> aiomqtt.Client:
    """The same aiomqtt client, its paho client made a BufferedPaho (before it connects)."""
    inner = getattr(client, "_client", None)
    if type(inner) is not mqtt.Client or not all(hasattr(inner, name) for name in _REQUIRED):
        log.warning("paho-mqtt internals changed: MQTT ingest reads without a buffer")
        return client
    inner.__class__ = BufferedPaho
    if getattr(paho_packet, "Properties", None) is Properties and set(vars(_TEMPLATE)) == _PRIVATE:
        paho_packet.Properties = SharedTableProperties  # type: ignore[misc]  # what decode_publish builds
    return client
