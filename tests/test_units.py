"""Units as people write them, and back."""

from __future__ import annotations

import pytest

from socmem.units import (
    format_address,
    format_bandwidth,
    format_duration,
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_frequency,
    parse_hex_int,
    parse_pixel_rate,
    parse_size,
    parse_transfer_rate,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("4K", 4096),
        ("4k", 4096),
        ("4KiB", 4096),
        ("512MiB", 512 << 20),
        ("512M", 512 << 20),
        ("2G", 2 << 30),
        ("1.5GiB", 3 << 29),
        ("16MB", 16_000_000),
        ("0x8000_0000", 0x8000_0000),
        ("0X10", 16),
        ("100B", 100),
        (" 64 KiB ", 65536),
    ],
)
def test_parse_size(text: object, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "abc", "4X", "-4K", "1.5B", "4Ki", "4kb", True, None, [1]])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize("n", [0, 1, 100, 4096, 12_441_600, 512 << 20, 3 << 29, 8 << 30, 0x1234])
def test_size_round_trips(n: int) -> None:
    assert parse_size(format_size(n)) == n


def test_format_size_human() -> None:
    assert format_size(512 << 20) == "512MiB"
    assert format_size(4096) == "4KiB"
    assert format_size(12_441_600, exact=False) == "11.87MiB"


def test_address_format() -> None:
    assert format_address(0x8000_0000) == "0x8000_0000"
    assert format_address(0x1_0000_0000) == "0x1_0000_0000"
    assert format_address(0) == "0x0"


def test_rates_and_times() -> None:
    assert parse_bandwidth("51.2GB/s") == pytest.approx(51.2e9)
    assert parse_bandwidth("1GiB/s") == 1 << 30
    assert format_bandwidth(51.2e9) == "51.2GB/s"
    assert parse_transfer_rate("6400MT/s") == 6.4e9
    assert parse_frequency("60Hz") == 60.0
    assert parse_frequency("30fps") == 30.0
    assert parse_pixel_rate("2Gpix/s") == 2e9
    assert parse_duration("33ms") == pytest.approx(0.033)
    assert parse_duration("10us") == pytest.approx(10e-6)
    assert format_duration(0.0167) == "16.7ms"
    with pytest.raises(ValueError, match="needs a unit"):
        parse_duration(33)
    with pytest.raises(ValueError, match="bandwidth"):
        parse_bandwidth("51.2 furlongs")


def test_hex_int() -> None:
    assert parse_hex_int("0x2100") == 0x2100
    assert parse_hex_int(42) == 42
    with pytest.raises(ValueError):
        parse_hex_int("0xZZ")
