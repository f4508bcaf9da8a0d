"""Type aliases shared by the package."""

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview
"""What send and write calls take: any bytes-like object."""
