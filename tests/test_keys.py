"""The key rules (mirrorkv.keys)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirrorkv import InvalidKey, MirrorKVError
from mirrorkv.keys import MAX_KEY_BYTES, check_key, check_keys, check_prefix, prefix_upper_bound
from mirrorkv.store import after_prefix


@pytest.mark.parametrize(
    "key",
    ["a", "a/b", "a//b", "../x", "/etc/passwd", ".", "..", "CON", "é", "\U0001f600", "x" * 1024],
)
def test_valid_keys_pass_unchanged(key: str) -> None:
    assert check_key(key) is key


@pytest.mark.parametrize(
    "key",
    ["", "a\x00b", "x" * 1025, "é" * 513, "\ud800", b"bytes", None, 42],
)
def test_invalid_keys_raise(key: object) -> None:
    with pytest.raises(InvalidKey) as raised:
        check_key(key)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, MirrorKVError)


def test_limit_is_counted_in_utf8_bytes() -> None:
    assert check_key("é" * 512)  # 1024 bytes
    assert check_key("\U0001f600" * 256)  # 1024 bytes
    with pytest.raises(InvalidKey, match="1024"):
        check_key("\U0001f600" * 256 + "a")
    assert MAX_KEY_BYTES == 1024


def test_prefix_may_be_empty() -> None:
    assert check_prefix("") == ""
    with pytest.raises(InvalidKey):
        check_prefix("a\x00")


keys = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1)


@given(st.lists(keys, min_size=2, max_size=20))
def test_str_order_is_utf8_byte_order(sample: list[str]) -> None:
    assert sorted(sample) == sorted(sample, key=lambda key: key.encode("utf-8"))


@given(keys, keys)
def test_prefix_upper_bound_bounds_every_extension(prefix: str, rest: str) -> None:
    bound = prefix_upper_bound(prefix)
    if bound is not None:
        assert prefix + rest < bound
        assert prefix <= bound


@given(keys, keys)
def test_after_prefix_sorts_after_every_valid_extension(prefix: str, rest: str) -> None:
    key = prefix + rest
    if len(key.encode()) <= MAX_KEY_BYTES:
        assert key < after_prefix(prefix)


@pytest.mark.parametrize(
    "batch",
    [["a", "b", ""], ["a", "b\x00"], ["ok", 7], ["x" * 1025], ["é" * 513], ["fine", "\ud800"]],
)
def test_check_keys_finds_the_one_bad_key(batch: list[str]) -> None:
    with pytest.raises(InvalidKey):
        check_keys(batch)


def test_check_keys_accepts_every_valid_batch() -> None:
    check_keys([])
    check_keys(["a", "a/b", "é" * 512, "\U0001f600", "x" * 1024])
