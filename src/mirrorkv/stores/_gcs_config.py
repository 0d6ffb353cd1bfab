"""The GCS store's configuration: where its credentials come from, and its URL options."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import google.auth
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_errors
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from ..errors import AccessDenied, InvalidURL, InvalidValue, MirrorKVError
from ..urls import StoreURL, parse_bool, parse_size, reject_unknown

__all__ = ["EMULATOR_ENV", "OPTIONS", "SCOPE", "find_credentials", "url_arguments"]

#: The OAuth scope the store asks for: read and write objects.
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
#: The environment variable google-cloud-storage reads an emulator's address from.
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
#: Every option ``GCSStore.from_url`` accepts.
OPTIONS = (
    "project",
    "endpoint_url",
    "anonymous",
    "credentials",
    "credentials_file",
    "timeout",
    "retry_deadline",
    "workers",
    "chunk_size",
    "page_size",
    "url_expires",
)
#: Options that are keyword arguments only: credentials never go in a URL.
_SECRET_OPTIONS = ("credentials", "credentials_file")


def find_credentials(
    credentials: auth_credentials.Credentials | None,
    credentials_file: str | os.PathLike[str] | None,
    *,
    anonymous: bool,
    where: str,
) -> auth_credentials.Credentials:
    """The credentials a store uses, in the order ``GCSStore`` documents.

    ``where`` (e.g. ``gs://bucket/prefix``) starts error messages, which say
    what failed and never hold key material.
    """
    if credentials is not None:
        if not isinstance(credentials, auth_credentials.Credentials):
            raise InvalidValue("credentials takes a google.auth credentials object")
        return credentials
    if credentials_file:
        return _load_credentials_file(os.fspath(credentials_file), where)
    if anonymous:
        return auth_credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]
    try:
        found, _ = google.auth.default(scopes=[SCOPE])
    except auth_errors.GoogleAuthError as error:
        raise AccessDenied(
            f"{where}: no Google Cloud credentials found ({type(error).__name__}); set "
            "GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, "
            "or pass credentials_file= or credentials="
        ) from error
    return found


def _load_credentials_file(path: str, where: str) -> auth_credentials.Credentials:
    """Credentials from a service-account key or an authorized-user (gcloud) JSON file.

    Only these two kinds are read from a file named here (loading an arbitrary
    credential configuration is unsafe, google-auth warns); others go through
    ``GOOGLE_APPLICATION_CREDENTIALS``. Errors say which file and what kind of
    failure, never its contents.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        kind = info.get("type") if isinstance(info, dict) else None
        if kind == "service_account":
            found: auth_credentials.Credentials = (
                service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=[SCOPE]
                )
            )
        elif kind == "authorized_user":
            found = user_credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
                info, scopes=[SCOPE]
            )
        else:
            raise MirrorKVError(
                f"{where}: {path!r} is not a service-account or authorized-user key file "
                "(for other kinds, set GOOGLE_APPLICATION_CREDENTIALS)"
            )
    except (OSError, ValueError, auth_errors.GoogleAuthError) as error:
        raise MirrorKVError(
            f"{where}: cannot load Google credentials from {path!r} ({type(error).__name__})"
        ) from None
    return found


def url_arguments(url: StoreURL, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The name prefix and the keyword arguments of ``GCSStore`` that a ``gs://`` URL names.

    The path is a folder (a ``/`` is added). Raises :class:`InvalidURL` for
    user information in the URL, credentials in its query, unknown options
    and malformed values.
    """
    if url.username is not None or url.password is not None:
        raise InvalidURL(
            "gs:// URLs carry no credentials: use GOOGLE_APPLICATION_CREDENTIALS, "
            "application-default credentials, or the credentials_file= / credentials= "
            "keyword arguments"
        )
    reject_unknown(url, options, OPTIONS)
    for name in _SECRET_OPTIONS:
        if name in url.query:
            raise InvalidURL(
                f"{name} is not a URL option (credentials never go in a URL); "
                f"pass {name}= as a keyword argument"
            )
    if url.port is not None or not url.host:
        raise InvalidURL("a gs:// URL names a bucket: gs://bucket/optional/prefix")
    prefix = url.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    kwargs: dict[str, Any] = {}
    for name in ("project", "endpoint_url"):
        if options.get(name):
            kwargs[name] = str(options[name])
    if "anonymous" in options:
        kwargs["anonymous"] = parse_bool("anonymous", options["anonymous"])
    for name in ("timeout", "retry_deadline", "url_expires"):
        if name in options:
            kwargs[name] = _parse_seconds(name, options[name])
    for name in ("workers", "page_size"):
        if name in options:
            kwargs[name] = _parse_int(name, options[name])
    if "chunk_size" in options:
        kwargs["chunk_size"] = parse_size("chunk_size", options["chunk_size"])
    for name in _SECRET_OPTIONS:
        if options.get(name) is not None:
            kwargs[name] = options[name]
    return prefix, kwargs


def _parse_seconds(name: str, value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidURL(f"option {name} takes seconds, not {value!r}") from None
    return seconds


def _parse_int(name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise InvalidURL(f"option {name} takes a whole number, not {value!r}") from None
