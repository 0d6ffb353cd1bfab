"""``s3://`` URLs: from a parsed URL and its options to :class:`S3Store`'s arguments.

Credentials never come from a URL: user info, or a credential in the query
string, is an :class:`InvalidURL` saying so. They may still be passed as
keyword arguments of :func:`mirrorkv.open` (which arrive with the options).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidURL
from ..urls import StoreURL, parse_bool, parse_size, reject_unknown

__all__ = ["CREDENTIAL_OPTIONS", "URL_OPTIONS", "parse_s3_url"]

CREDENTIAL_OPTIONS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
#: The options an ``s3://`` URL's query string (or :func:`mirrorkv.open`) accepts.
URL_OPTIONS = (
    "endpoint_url",
    "region",
    "profile",
    "addressing_style",
    "retry_mode",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
    "multipart_threshold",
    "multipart_chunksize",
    "max_concurrency",
    "verify",
)
_TEXT = ("endpoint_url", "region", "profile", "addressing_style", "retry_mode")


def parse_s3_url(url: StoreURL, options: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The bucket, prefix and keyword arguments an ``s3://bucket/prefix?...`` URL names."""
    if url.username is not None or url.password is not None:
        raise InvalidURL(
            "an s3:// URL carries no credentials: boto3 finds them (environment, "
            "profile, instance role), or pass them as arguments"
        )
    leaked = sorted(set(url.query) & set(CREDENTIAL_OPTIONS))
    if leaked:
        raise InvalidURL(
            f"an s3:// URL carries no credentials ({', '.join(leaked)}): "
            "pass them as arguments or let boto3 find them"
        )
    if url.port is not None:
        raise InvalidURL("an s3:// URL names a bucket, not host:port (use endpoint_url=)")
    if not url.host:
        raise InvalidURL("an s3:// URL needs a bucket: s3://bucket/prefix")
    reject_unknown(url, options, URL_OPTIONS + CREDENTIAL_OPTIONS)
    kwargs: dict[str, Any] = {}
    for name in _TEXT:
        if name in options:
            kwargs[name] = str(options[name])
    for name in CREDENTIAL_OPTIONS:
        if name in options:
            kwargs[name] = options[name]
    for name in ("max_attempts", "max_concurrency"):
        if name in options:
            kwargs[name] = _parse_int(name, options[name])
    for name in ("connect_timeout", "read_timeout"):
        if name in options:
            kwargs[name] = _parse_seconds(name, options[name])
    for name in ("multipart_threshold", "multipart_chunksize"):
        if name in options:
            kwargs[name] = parse_size(name, options[name])
    if "verify" in options:
        kwargs["verify"] = parse_bool("verify", options["verify"])
    return url.host, url.path, kwargs


def _parse_int(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidURL(f"option {name} takes a whole number, not {value!r}") from None
    if number < 1:
        raise InvalidURL(f"option {name} takes a whole number >= 1, not {value!r}")
    return number


def _parse_seconds(name: str, value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        raise InvalidURL(f"option {name} takes seconds, not {value!r}") from None
    if seconds <= 0:
        raise InvalidURL(f"option {name} takes seconds > 0, not {value!r}")
    return seconds
