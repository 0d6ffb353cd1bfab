"""How `AzureBlobStore` finds its account and credentials, and reads its URL.

Credentials come from arguments or the environment, never from a URL. In
order: a ``connection_string`` argument; an ``account_url`` argument with a
``credential`` argument, else with the key in ``$AZURE_STORAGE_KEY`` (the
account named by ``$AZURE_STORAGE_ACCOUNT`` or by the URL), else with
azure-identity's ``DefaultAzureCredential`` where that package is installed;
with neither argument, ``$AZURE_STORAGE_CONNECTION_STRING``. No message here
quotes a connection string or a key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.storage.blob import BlobServiceClient

from ..errors import InvalidURL, InvalidValue
from ..urls import StoreURL, parse_bool, parse_size, reject_unknown

__all__ = [
    "ACCOUNT_KEY_ENV",
    "ACCOUNT_NAME_ENV",
    "CONNECTION_STRING_ENV",
    "check_container",
    "check_settings",
    "connect",
    "url_arguments",
]

#: The environment variable read for a connection string.
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
#: The environment variable read for an account key (with ``account_url``).
ACCOUNT_KEY_ENV = "AZURE_STORAGE_KEY"
#: The environment variable read for the account name (with ``AZURE_STORAGE_KEY``).
ACCOUNT_NAME_ENV = "AZURE_STORAGE_ACCOUNT"

_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
# Query options that would put a secret into a URL.
_SECRET_OPTIONS = frozenset(
    {"connection_string", "credential", "account_key", "key", "sas_token", "sig"}
)
_SIZE_OPTIONS = ("block_size",)
_INT_OPTIONS = ("max_concurrency", "retries")
_FLOAT_OPTIONS = ("timeout", "url_expiry")
_BOOL_OPTIONS = ("create_container",)
#: Options an ``azure://`` URL (or ``mirrorkv.open``'s keywords) may give.
URL_OPTIONS = ("account_url", *_SIZE_OPTIONS, *_INT_OPTIONS, *_FLOAT_OPTIONS, *_BOOL_OPTIONS)
#: Options that only keyword arguments may give (they carry secrets).
KEYWORD_OPTIONS = ("connection_string", "credential")


def check_container(container: object) -> str:
    """``container`` if it is a valid container name; :class:`InvalidValue` if not."""
    if not isinstance(container, str) or not _CONTAINER.match(container):
        raise InvalidValue(
            f"not an Azure container name: {container!r} (3-63 lowercase letters, digits, "
            "single hyphens)"
        )
    return container


def check_settings(block_size: object, max_concurrency: object, retries: object) -> None:
    """Raise :class:`InvalidValue` unless the numeric settings of a store are usable."""
    for name, number in (("block_size", block_size), ("max_concurrency", max_concurrency)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise InvalidValue(f"{name} must be a positive int, not {number!r}")
    if isinstance(block_size, int) and block_size > 4000 << 20:
        raise InvalidValue("block_size is at most 4000 MiB (the service's limit)")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidValue(f"retries must be an int >= 0, not {retries!r}")


def connect(
    connection_string: str | None,
    account_url: str | None,
    credential: Any,
    **settings: Any,
) -> BlobServiceClient:
    """A service client from the arguments, else the environment (see the module docstring)."""
    if connection_string is None and account_url is None:
        connection_string = os.environ.get(CONNECTION_STRING_ENV) or None
        if connection_string is None:
            raise InvalidValue(
                "no Azure credentials: pass connection_string=, or account_url= (with "
                f"credential=, ${ACCOUNT_KEY_ENV}, or azure-identity installed), or set "
                f"${CONNECTION_STRING_ENV}"
            )
    if connection_string is not None:
        try:
            return BlobServiceClient.from_connection_string(
                connection_string, credential=credential, **settings
            )
        except ValueError:
            # The SDK's message may quote the string, key and all.
            raise InvalidValue("the Azure connection string is malformed") from None
    assert account_url is not None
    if credential is None:
        credential = _credential_from_environment(account_url)
    try:
        return BlobServiceClient(account_url, credential=credential, **settings)
    except ValueError as error:
        raise InvalidValue(f"not a usable Azure account URL: {error}") from None


def url_arguments(url: StoreURL, options: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The container, prefix and keyword arguments an ``azure://`` URL and options stand for.

    :class:`InvalidURL` where the URL carries a credential (user info, a key,
    a SAS token, a connection string in its query or in its ``account_url``)
    or an unknown option.
    """
    if url.username is not None or url.password is not None:
        raise InvalidURL(
            "azure:// URLs never carry credentials (found user info before the container); "
            f"use ${CONNECTION_STRING_ENV}, ${ACCOUNT_KEY_ENV} or keyword arguments"
        )
    secrets = sorted(set(url.query) & _SECRET_OPTIONS)
    if secrets:
        raise InvalidURL(
            f"azure:// URLs never carry credentials (found {', '.join(secrets)} in the "
            "query); pass them as keyword arguments or through the environment"
        )
    queried = url.query.get("account_url")
    if queried is not None:
        parts = urlsplit(queried)
        if "@" in parts.netloc or "sig=" in parts.query:
            raise InvalidURL(
                "the account_url in an azure:// URL carries a credential (user info or a SAS "
                "token); pass credential= as a keyword argument instead"
            )
    if not url.host:
        raise InvalidURL("an azure:// URL names its container: azure://container/prefix")
    try:
        container = check_container(url.host)
    except InvalidValue as error:
        raise InvalidURL(str(error)) from None
    reject_unknown(url, options, URL_OPTIONS + KEYWORD_OPTIONS)
    arguments: dict[str, Any] = {
        name: options[name] for name in ("account_url", *KEYWORD_OPTIONS) if name in options
    }
    for name, value in options.items():
        if name in _SIZE_OPTIONS:
            arguments[name] = parse_size(name, value)
        elif name in _INT_OPTIONS:
            arguments[name] = _parse_number(name, value, int)
        elif name in _FLOAT_OPTIONS:
            arguments[name] = _parse_number(name, value, float)
        elif name in _BOOL_OPTIONS:
            arguments[name] = parse_bool(name, value)
    return container, url.path.lstrip("/"), arguments


def _credential_from_environment(account_url: str) -> Any:
    key = os.environ.get(ACCOUNT_KEY_ENV)
    if key:
        account = os.environ.get(ACCOUNT_NAME_ENV) or _account_of(account_url)
        return {"account_name": account, "account_key": key}
    try:
        from azure.identity import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
            DefaultAzureCredential,
        )
    except ImportError:
        raise InvalidValue(
            f"no credential for {_without_query(account_url)}: pass credential=, set "
            f"${ACCOUNT_KEY_ENV}, or install azure-identity"
        ) from None
    return DefaultAzureCredential()


def _account_of(account_url: str) -> str:
    """The account an account URL names: ``https://<account>.blob...`` or ``http://host/<account>``."""
    parts = urlsplit(account_url)
    path = parts.path.strip("/")
    if path:
        return path.split("/", 1)[0]
    return (parts.hostname or "").split(".", 1)[0]


def _without_query(account_url: str) -> str:
    parts = urlsplit(account_url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


def _parse_number(name: str, value: object, kind: type[int | float]) -> int | float:
    if isinstance(value, bool):
        raise InvalidURL(f"option {name} takes a number, not {value!r}")
    try:
        return kind(str(value))
    except ValueError:
        raise InvalidURL(f"option {name} takes a number, not {value!r}") from None
