"""The echo app behind ``fastwt dev`` (``fastwt.devserver.app``, a ServerApp): ``/echo``
echoes streams and datagrams, ``/close`` closes with the asked code and reason once the
client ends a unidirectional stream, a bad ``/close`` query is refused with 400 and any
other path with 404; the demo page and its script come from the package's static files."""

from __future__ import annotations

import functools

import anyio
import pytest

from fastwt import ClientConfig, SessionRejectedError, WebTransportClient, devserver

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


async def test_echo_close_and_refusals() -> None:
    async with anyio.create_task_group() as tg:
        serve = functools.partial(devserver.serve, hosts=("127.0.0.1",), port=0)
        info: devserver.DevServerInfo = await tg.start(serve)
        base = info.url.rsplit("/", 1)[0]
        config = ClientConfig(server_certificate_hashes=[info.certificate_hash])
        async with WebTransportClient(config=config) as client:
            with anyio.fail_after(10):
                echo = await client.connect(url=info.url)
                stream = await echo.create_bidirectional_stream()
                await stream.write(data=b"hello", end_stream=True)
                assert await stream.read_all() == b"hello"
                await echo.send_datagram(data=b"ping")
                assert await echo.read_datagram() == b"ping"

                closing = await client.connect(url=f"{base}/close?code=7&reason=bye")
                uni = await closing.create_unidirectional_stream()
                await uni.write(data=b"now", end_stream=True)
                assert await closing.wait_closed() == (7, "bye")

                for path, status in (("/close?code=x", 400), ("/close?code=-1", 400), ("/no", 404)):
                    with pytest.raises(SessionRejectedError) as rejected:
                        await client.connect(url=f"{base}{path}")
                    assert rejected.value.status_code == status, path
        tg.cancel_scope.cancel()


def test_the_demo_page_is_built_from_the_static_files() -> None:
    page = devserver.demo_page("https://127.0.0.1:1/echo", "ab" * 32)
    assert devserver.CLIENT_JS.startswith("// fastwt browser helpers")
    assert devserver.CLIENT_JS in page
    assert '"url": "https://127.0.0.1:1/echo"' in page and "ab" * 32 in page
    assert "__CLIENT_JS__" not in page and "__CONFIG__" not in page
