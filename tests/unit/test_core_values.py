"""Each default, bound and error code the Rust core has is written once, in the core
(rust/core/src/config.rs, h3.rs), and read by Python through ``fastwt._core``: the
configs' defaults, the congestion names, ``ErrorCodes``, the rejection status range.
The pure backend's copy for a process without the extension
(``fastwt/_pure/core_values.py``) must be the same values."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastwt import ClientConfig, ConfigurationError, ErrorCodes, ServerConfig, _backend
from fastwt._pure import core_values
from fastwt.config import check_cert_pair
from fastwt.framework import MiddlewareRejected

rust_only = pytest.mark.skipif(
    not _backend.rust_available(), reason="compares against the compiled extension"
)


def _defaults(cls: type[Any]) -> dict[str, Any]:
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


@rust_only
@pytest.mark.parametrize(
    ("cls", "name"), [(ServerConfig, "SERVER_DEFAULTS"), (ClientConfig, "CLIENT_DEFAULTS")]
)
def test_every_config_default_the_core_has_is_the_cores(cls: type[Any], name: str) -> None:
    from fastwt import _core

    core: dict[str, Any] = dict(getattr(_core, name))
    ours = _defaults(cls)
    missing = sorted(set(core) - set(ours))
    assert not missing, f"{cls.__name__} has no field for the core's {missing}"
    differ = {
        k: (ours[k], v) for k, v in core.items() if ours[k] != v or type(ours[k]) is not type(v)
    }
    assert not differ, f"{cls.__name__} defaults (ours, core's) differ: {differ}"


@rust_only
def test_the_pure_backends_copy_equals_the_extensions_values() -> None:
    from fastwt import _core

    for name in core_values.NAMES:
        assert getattr(core_values, name) == getattr(_core, name), name


@rust_only
def test_error_codes_are_the_cores() -> None:
    from fastwt import _core

    for name, value in _core.ERROR_CODES.items():
        assert ErrorCodes[name] == value


@rust_only
def test_transport_takes_the_cores_defaults_for_what_is_left_out() -> None:
    # Transport() writes no default of its own: without arguments it is the core's
    # TransportOptions::default(), whose values SERVER_DEFAULTS shows; a bad value still
    # fails, naming the knob.
    from fastwt import _core

    _core.Transport()
    with pytest.raises(ValueError, match="congestion_control must be"):
        _core.Transport(congestion_control="vegas")
    assert _core.Transport(congestion_control="Reno") is not None


def test_congestion_names_are_the_cores() -> None:
    from fastwt import _core

    for name in _core.CONGESTION_CONTROLS:
        assert ServerConfig(congestion_control_algorithm=name).congestion_control_algorithm == name
    with pytest.raises(ConfigurationError, match="congestion_control_algorithm"):
        ServerConfig(congestion_control_algorithm="vegas")


def test_the_rejection_status_range_is_the_cores() -> None:
    from fastwt import _core

    low, high = _core.REJECTION_STATUS
    assert (low, high) == (300, 599)
    for ok in (low, high):
        assert MiddlewareRejected(status_code=ok).status_code == ok
    for bad in (101, 200, low - 1, high + 1):
        with pytest.raises(ValueError, match=f"refusal status \\({low}..{high}\\)"):
            MiddlewareRejected(status_code=bad)


@pytest.mark.parametrize(
    "kwargs", [{"certfile": "cert.pem"}, {"keyfile": "key.pem"}], ids=["cert", "key"]
)
def test_a_certificate_without_its_key_is_refused_by_one_rule(kwargs: dict[str, str]) -> None:
    message = "certfile and keyfile go together"
    with pytest.raises(ConfigurationError, match=message):
        ServerConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=message):
        ClientConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=message):
        check_cert_pair(kwargs.get("certfile"), kwargs.get("keyfile"))
    check_cert_pair(None, None)
    check_cert_pair("cert.pem", "key.pem")
