"""The pure-Python backend's contract with the Python layer, without a network: its
handles have the Rust extension's surface (as ``_core.pyi`` declares it), the options it
cannot honour are refused when the configuration is made, its wire codecs follow the
Rust core's, and ``import fastwt`` falls back to it, with a warning, when the extension
cannot be imported."""

from __future__ import annotations

import ast
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastwt import ClientConfig, ConfigurationError, ServerConfig
from fastwt._pure import client as pure_client
from fastwt._pure import handles, server, wire

STUB = Path(__file__).resolve().parents[2] / "python" / "fastwt" / "_core.pyi"

PURE_CLASSES = {
    "SessionHandle": handles.SessionHandle,
    "SendStreamHandle": handles.SendStreamHandle,
    "RecvStreamHandle": handles.RecvStreamHandle,
    "ServerHandle": server.ServerHandle,
    "ClientHandle": pure_client.ClientHandle,
}
# The constructors differ on purpose: the pure handles take the config itself.
CONSTRUCTORS = {"__new__", "__init__"}


def _stub_members() -> dict[str, dict[str, list[str]]]:
    """class -> member -> parameter names (properties have none), from _core.pyi."""
    tree = ast.parse(STUB.read_text())
    out: dict[str, dict[str, list[str]]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in PURE_CLASSES:
            members: dict[str, list[str]] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name not in CONSTRUCTORS:
                    args = item.args
                    names = [a.arg for a in args.args + args.kwonlyargs][1:]
                    members[item.name] = names
            out[node.name] = members
    return out


@pytest.mark.parametrize("name", sorted(PURE_CLASSES))
def test_pure_handles_have_the_rust_surface(name: str) -> None:
    import inspect

    cls = PURE_CLASSES[name]
    for member, params in _stub_members()[name].items():
        attr = inspect.getattr_static(cls, member, None)
        assert attr is not None, f"{name}.{member} is missing"
        if isinstance(attr, property):
            assert not params, f"{name}.{member} should be a method"
            continue
        got = list(inspect.signature(attr).parameters)[1:]
        assert got == params, f"{name}.{member}: {got} != {params}"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("congestion_control_algorithm", "bbr"),
        ("max_concurrent_bidi_streams", 1000),
        ("max_concurrent_uni_streams", 10),
        ("send_window", 1 << 20),
    ],
)
@pytest.mark.parametrize("config", [ServerConfig, ClientConfig])
def test_options_the_pure_backend_cannot_honour_are_refused(
    config: type[ServerConfig] | type[ClientConfig], option: str, value: object
) -> None:
    with pytest.raises(ConfigurationError, match=option):
        config(backend="python", **{option: value})  # type: ignore[arg-type]
    config(backend="rust", **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retry", True),
        ("verify_mode", ssl.CERT_REQUIRED),
        ("verify_mode", ssl.CERT_OPTIONAL),
        ("max_sessions_per_connection", 2),
    ],
)
def test_server_options_the_pure_backend_cannot_honour_are_refused(
    option: str, value: object, tmp_path: Path
) -> None:
    """Stateless Retry, client certificates (mutual TLS) and pooling exist on the Rust
    server only."""
    extra = {"ca_certs": tmp_path / "ca.pem"} if option == "verify_mode" else {}
    match = "verify_mode" if option == "verify_mode" else option
    with pytest.raises(ConfigurationError, match=match):
        ServerConfig(backend="python", **{option: value}, **extra)  # type: ignore[arg-type]
    ServerConfig(backend="rust", **{option: value}, **extra)  # type: ignore[arg-type]


def test_the_pure_backend_refuses_quic_lb_connection_ids() -> None:
    """aioquic draws its CIDs at random: a server id (or key) it would silently drop."""
    with pytest.raises(ConfigurationError, match=r"server_id .* pure-Python"):
        ServerConfig(backend="python", server_id="0a")
    with pytest.raises(ConfigurationError, match=r"server_id .* pure-Python"):
        ServerConfig(backend="python", server_id="0a", cid_key="00" * 16)
    ServerConfig(backend="rust", server_id="0a", cid_key="00" * 16)


def test_an_event_loop_name_in_fastwt_backend_keeps_the_rust_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``FASTWT_BACKEND=trio`` is ``fastwt run --backend trio``'s variable from before the
    pure backend: it names the event loop and leaves the implementation alone."""
    for loop in ("asyncio", "uvloop", "trio"):
        monkeypatch.setenv("FASTWT_BACKEND", loop)
        assert ServerConfig().backend == ClientConfig().backend == "rust"


def test_wt_protocol_fields_parse_like_the_rust_core() -> None:
    assert wire.parse_sf_string_list(r'"v\"2";q=1, "v1"') == ['v"2', "v1"]
    assert wire.parse_sf_string_list("") == []
    for bad in ('"a",', "a", '"a" "b"', '"unterminated', '"a";q="x'):
        assert wire.parse_sf_string_list(bad) is None, bad
    assert wire.parse_sf_string_item(' "chat";v=2') == "chat"
    assert wire.parse_sf_string_item('"a", "b"') is None
    assert wire.sf_string('v"2\\') == r'"v\"2\\"'
    with pytest.raises(ValueError, match="printable ASCII"):
        wire.sf_string("é")


def test_unknown_backend_is_refused_and_the_environment_sets_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match="backend"):
        ServerConfig(backend="go")
    assert ServerConfig().backend == "rust"
    monkeypatch.setenv("FASTWT_BACKEND", "python")
    assert ServerConfig().backend == "python"
    assert ClientConfig().backend == "python"


def test_webtransport_codes_map_like_the_rust_core() -> None:
    assert wire.wt_code_to_h3(0) == 0x52E4A40FA8DB
    assert wire.wt_code_to_h3(0xFFFFFFFF) == 0x52E5AC983162
    for code in [0, 1, 29, 30, 31, 255, 65535, 0xFFFFFFFF]:
        h3 = wire.wt_code_to_h3(code)
        assert (h3 - 0x21) % 0x1F != 0, "a GREASE code point"
        assert wire.h3_code_to_wt(h3) == code
    assert wire.h3_code_to_wt(0x100) == 0  # outside the WebTransport range


def test_capsules_parse_incrementally_and_bad_ones_are_errors() -> None:
    data = bytearray(wire.encode_close_capsule(7, "bye"))
    head, tail = data[:3], data[3:]
    buf = bytearray(head)
    assert wire.parse_capsules(buf) == []
    buf += tail
    ((kind, payload),) = wire.parse_capsules(buf)
    assert kind == wire.CAPSULE_CLOSE_SESSION and wire.parse_close_capsule(payload) == (7, "bye")
    assert buf == b""
    with pytest.raises(wire.CapsuleError):
        wire.parse_close_capsule(b"\x00\x00\x00\x01\xff")  # not UTF-8
    with pytest.raises(wire.CapsuleError):
        wire.parse_capsules(bytearray(wire.encode_close_capsule(1, "x" * 1025)))


def test_close_info_of_a_lost_connection_matches_the_rust_core() -> None:
    info = wire.close_info_of_connection(0x10E, "bad CONNECT", transport=False, idle=False)
    assert (info.code, info.reason) == (0, "H3_MESSAGE_ERROR: bad CONNECT")
    assert wire.close_info_of_connection(0x100, "bye", transport=False, idle=False).reason == "bye"
    assert wire.close_info_of_connection(4242, "x", transport=False, idle=False).code == 4242
    assert wire.close_info_of_connection(0x21 + 0x1F * 3, "", transport=False, idle=False).code == 0
    assert "timed out" in wire.close_info_of_connection(0, "", transport=True, idle=True).reason


FALLBACK = textwrap.dedent(
    """
    import importlib.abc, logging, sys, warnings

    class NoExtension(importlib.abc.MetaPathFinder):
        # what a platform without a fitting wheel looks like to Python
        def find_spec(self, name, path=None, target=None):
            if name == "fastwt._core":
                raise ImportError("no fastwt._core for this platform (test)")
            return None

    sys.meta_path.insert(0, NoExtension())
    logging.basicConfig(level=logging.WARNING, format="LOG %(name)s %(message)s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastwt
    assert any("pure-Python backend" in str(w.message) for w in caught), caught

    import anyio
    from fastwt import ServerConfig, ClientConfig, WebTransportServer, WebTransportClient
    from fastwt import _backend

    assert not _backend.rust_available()
    cert, key, digest = fastwt.generate_dev_certificate()
    assert len(digest) == 64 and "BEGIN CERTIFICATE" in cert

    async def main():
        config = ServerConfig(bind_host="127.0.0.1", bind_port=0)  # asks for "rust"
        async with WebTransportServer(config=config) as srv, anyio.create_task_group() as tg:
            await srv.listen()
            port = srv.local_addresses[0][1]

            async def serve():
                async for s in srv.incoming_sessions():
                    await s.accept()
                    st = await s.accept_bidirectional_stream()
                    await st.write(data=await st.read_all(), end_stream=True)

            tg.start_soon(serve)
            client_config = ClientConfig(server_certificate_hashes=[srv.certificate_hash])
            async with WebTransportClient(config=client_config) as client:
                session = await client.connect(url=f"https://127.0.0.1:{port}/")
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"no wheel needed", end_stream=True)
                print("ECHO", (await stream.read_all()).decode())
            tg.cancel_scope.cancel()

    anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_without_the_extension_fastwt_runs_on_the_pure_backend_with_a_warning(
    loop: str,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK, loop],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ECHO no wheel needed" in proc.stdout
    assert "LOG fastwt fastwt's Rust extension cannot be imported" in proc.stderr


def test_pure_io_driver_stats_have_the_rust_keys() -> None:
    """Code that reads ``io_driver_stats()`` (diagnostics, the benchmarks) finds the same
    keys on either backend (the stand-in lacked ``work_waiting`` until the eleventh
    session)."""
    from fastwt import _core
    from fastwt._pure import _core_standin

    assert set(_core_standin.io_driver_stats()) == set(_core.io_driver_stats())
