"""Ports for test servers: one free right now on a loopback address."""

from __future__ import annotations

import socket


def free_port(addr: str = "127.0.0.1") -> int:
    """A port free right now on `addr`. A server that loses it to another process before it binds
    must be retried on a new one by its caller."""
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]
