"""Fixtures of the cluster tests: a real ``redis-server`` (Debian's package) on a Unix
socket in a fresh temporary directory, and cluster nodes as separate processes
(``node_app.py``); the classes are in cluster_support.py."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_support import NODE_APP, Node, RedisServer
from process_support import OutputProcess


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server, stopped after the test. Missing redis-server skips the
    test (fails it under CI, where scripts/test.sh installs it)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (scripts/test.sh installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    # A short path: Unix socket paths are limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="fwredis"))
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start_node(redis_server: RedisServer) -> Iterator[Callable[..., Node]]:
    """Start cluster nodes on ``redis_server``; each is stopped (SIGINT, then killed)
    after the test."""
    nodes: list[Node] = []

    def start(*args: str) -> Node:
        process = OutputProcess(
            [sys.executable, str(NODE_APP), redis_server.url, *args], label=f"node {args}"
        )
        match = process.wait_for(r"NODE READY port=(\d+) hash=(\w+) node=(\w+)", timeout=60)
        node = Node(process, int(match[1]), match[2], match[3])
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.process.stop()
