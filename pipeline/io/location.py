"""Where an input lies: a local path, or the URL of a remote store read through fsspec.

Input images (``segment.raw``, ``evaluate.gt_labels``, the images the commands read) may be given as
URLs: ``s3://bucket/key``, ``gs://bucket/key`` or ``https://host/path`` (``http://`` too). They are
OME-Zarr stores read through zarr's ``FsspecStore``, only ever read: a remote store is opened read-only
and a write to it is refused. A run directory stays local (or on a mounted file system):
:func:`refuse_url`; its products are published to a URL by :mod:`pipeline.io.publish`.

A location is a :class:`~pathlib.Path` (local, exactly as before: relative paths, ``~``) or a :class:`URL`;
:func:`as_location` tells them apart (``file://`` URLs are local paths). Both join a child with ``/``
(``loc / "labels" / name``). A URL has no file-system methods (``exists``, ``resolve``): code that would
treat one as a local path fails loudly instead of reading a directory named ``s3:``.

Credentials and endpoints are those of fsspec and of each store's library, read from the environment
(every Dask worker inherits it): for S3, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or
``AWS_PROFILE`` (``~/.aws/credentials``), an S3-compatible endpoint in ``AWS_ENDPOINT_URL`` (boto's) or
``FSSPEC_S3_ENDPOINT_URL`` (fsspec's), a public bucket with ``FSSPEC_S3_ANON=true``; for ``gs://``,
gcsfs (``pip install gcsfs``) and ``GOOGLE_APPLICATION_CREDENTIALS``. Any ``FSSPEC_<PROTOCOL>_<OPTION>``
variable, or a JSON file in ``~/.config/fsspec/``, sets an option of that protocol's file system.

Examples
--------
>>> as_location("s3://bucket/brain.zarr") / "labels" / "ground_truth"
URL('s3://bucket/brain.zarr/labels/ground_truth')
>>> as_location("runs/phantom.zarr")
PosixPath('runs/phantom.zarr')
>>> is_url("https://example.org/brain.zarr"), is_url("brain.zarr")
(True, False)
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, GetCoreSchemaHandler
from pydantic_core import core_schema

from pipeline.errors import DependencyError, InputDataError, OutputError

if TYPE_CHECKING:
    import zarr

__all__ = [
    "InputLocation",
    "Location",
    "LocalPath",
    "OutputDir",
    "URL",
    "as_location",
    "describe",
    "is_file",
    "is_transient",
    "is_url",
    "looks_like_url",
    "open_group",
    "read_bytes",
    "read_json",
    "refuse_url",
    "remote_error",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: A URL after ``pathlib.Path`` collapsed its ``//`` (``Path("s3://b/k")`` is ``s3:/b/k``); two letters at
#: least, so that a Windows drive (``C:/``) is no URL.
_COLLAPSED = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):/")


@dataclass(frozen=True)
class URL:
    """The address of a remote store, ``scheme://host-or-bucket/path``, without a trailing ``/``.

    Join a child with ``/``; ``name`` is the last segment, ``parent`` the URL without it (never above
    the host or bucket). Not a path: it has no file-system methods and ``Path(url)`` is a TypeError.

    Raises
    ------
    ValueError
        If ``url`` has no scheme or host (bucket), or a query string or fragment (a store's keys are
        appended to its URL).
    """

    url: str

    def __post_init__(self) -> None:
        text = str(self.url).strip()
        match = _SCHEME.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a URL (scheme://host/path)")
        if "?" in text or "#" in text:
            raise ValueError(f"{text!r}: a store URL takes no query string or fragment (its keys are "
                             "appended to it); give the store's plain URL")
        rest = text[match.end():].rstrip("/")
        if not rest or rest.startswith("/"):
            raise ValueError(f"{text!r} names no host or bucket (expected {match.group(1)}://HOST/PATH)")
        object.__setattr__(self, "url", f"{match.group(1).lower()}://{rest}")

    @property
    def protocol(self) -> str:
        """The scheme: ``s3``, ``gs``, ``https``, ..."""
        return self.url.split("://", 1)[0]

    @property
    def name(self) -> str:
        """The last segment (``raw.zarr`` of ``s3://bucket/raw.zarr``)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def parent(self) -> URL:
        """The URL without its last segment; the host or bucket is its own parent."""
        scheme, rest = self.url.split("://", 1)
        return self if "/" not in rest else URL(f"{scheme}://{rest.rsplit('/', 1)[0]}")

    def __truediv__(self, child: str) -> URL:
        part = str(child).strip("/")
        return URL(f"{self.url}/{part}") if part else self

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"URL({self.url!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        """Validated from a string, written as one (configs, Prefect parameters)."""
        return core_schema.no_info_plain_validator_function(
            _url_of, json_schema_input_schema=core_schema.str_schema(),
            serialization=core_schema.to_string_ser_schema(),
        )


def _url_of(value: Any) -> URL:
    """A :class:`URL`, or a string made one (the validator of URL fields)."""
    if isinstance(value, URL):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a URL string; got {type(value).__name__}")
    return URL(value)


#: A local path or a URL.
Location = Path | URL


def is_url(value: object) -> bool:
    """Whether ``value`` is a :class:`URL` or a string of the form ``scheme://...`` (``file://`` is local)."""
    if isinstance(value, URL):
        return True
    if not isinstance(value, str):
        return False
    match = _SCHEME.match(value.strip())
    return match is not None and match.group(1).lower() != "file"


def looks_like_url(value: object) -> bool:
    """:func:`is_url`, or a path that was a URL before ``pathlib`` collapsed its ``//`` (``s3:/b/k``)."""
    if is_url(value):
        return True
    text = str(os.fspath(value)) if isinstance(value, str | os.PathLike) else ""
    return bool(_COLLAPSED.match(text)) and not text.lower().startswith("file:")


def as_location(value: str | os.PathLike[str] | URL) -> Location:
    """A :class:`URL` for ``scheme://...`` (``file://`` gives its local path), else a :class:`Path`.

    Raises
    ------
    ValueError
        For a malformed URL (no host or bucket, a query string).
    TypeError
        For anything but a string, a path or a URL.
    """
    if isinstance(value, URL | Path):
        return value
    if isinstance(value, str):
        text = value.strip()
        if is_url(text):
            return URL(text)
        if text.lower().startswith("file://"):
            from urllib.parse import unquote, urlparse

            return Path(unquote(urlparse(text).path))
        return Path(value)
    if isinstance(value, os.PathLike):
        return Path(value)
    raise TypeError(f"expected a path or a URL; got {type(value).__name__} {value!r}")


def describe(location: str | os.PathLike[str] | URL) -> str:
    """How a run records an input it names: the URL, or the resolved local path."""
    loc = as_location(location)
    return str(loc) if isinstance(loc, URL) else str(loc.expanduser().resolve())


def refuse_url(value: object, *, what: str) -> None:
    """Refuse a URL where an output (or another local file) must go, naming the setting ``what``.

    Raises
    ------
    OutputError
        If ``value`` is, or was before ``pathlib`` collapsed it, a URL.
    """
    if not looks_like_url(value):
        return
    raise OutputError(f"{what} {_shown(value)} is a URL: {_OUTPUTS_ARE_LOCAL}")


_OUTPUTS_ARE_LOCAL = ("a run directory must be local or mounted (its block state and lock need atomic "
                      "renames); run into a local directory and publish its products to the bucket: "
                      "set output.publish: s3://bucket/prefix, or run `neurorecon publish RUN URL`")


def _shown(value: object) -> str:
    """``value`` as the user wrote it: a URL that ``pathlib`` collapsed gets its ``//`` back."""
    text = str(value)
    return text if is_url(text) else _COLLAPSED.sub(lambda m: f"{m.group(1)}://", text, count=1)


# -- reading -------------------------------------------------------------------------------------------


def read_bytes(location: Location, *, what: str = "input") -> bytes:
    """The bytes of the file or object at ``location``.

    Raises
    ------
    FileNotFoundError
        If there is none (for a URL: the object, or its bucket, does not exist; the message says which).
    InputDataError
        If a remote store cannot be reached or read (no credentials, access denied, no connection),
        naming ``what``, the URL and the cause.
    DependencyError
        If the URL's protocol needs a package that is not installed (``gs://``: gcsfs).
    OSError
        A local file that cannot be read.
    """
    if not isinstance(location, URL):
        return Path(location).read_bytes()
    fs, key = _filesystem(location, what=what)
    try:
        return fs.cat_file(key)
    except FileNotFoundError as exc:  # its message says whether the object or the bucket is missing
        raise FileNotFoundError(errno.ENOENT, _cause(exc), str(location)) from None
    except Exception as exc:  # noqa: BLE001 - botocore, aiohttp, google: each their own error classes
        raise remote_error(location, exc, what=what) from None


def read_json(location: Location, *, what: str = "input") -> Any:
    """The JSON document at ``location`` (:func:`read_bytes`); a malformed one raises ValueError."""
    return json.loads(read_bytes(location, what=what))


def is_file(location: Location, *, what: str = "input") -> bool:
    """Whether a file (an object, for a URL: read whole, so only for metadata files) lies at ``location``."""
    if not isinstance(location, URL):
        return Path(location).is_file()
    try:
        read_bytes(location, what=what)
    except FileNotFoundError:
        return False
    return True


def open_group(location: Location, *, mode: str = "r", what: str = "input") -> zarr.Group:
    """The Zarr group at ``location``; a URL only for reading (zarr's ``FsspecStore``, read-only).

    Raises
    ------
    OutputError
        If ``mode`` is not ``"r"`` for a URL: remote stores are only ever read.
    InputDataError, DependencyError
        As :func:`read_bytes`; and if the store holds no Zarr group.
    """
    import zarr

    if not isinstance(location, URL):
        return zarr.open_group(str(location), mode=mode)
    if mode != "r":
        raise OutputError(f"{what} {location} is a URL: remote stores are only ever read (mode {mode!r}); "
                          f"{_OUTPUTS_ARE_LOCAL}")
    from zarr.storage import FsspecStore

    _filesystem(location, what=what)  # a missing protocol package is named before zarr's error
    try:
        store = FsspecStore.from_url(str(location), read_only=True)
        return zarr.open_group(store=store, mode="r", zarr_format=3)
    except Exception as exc:  # noqa: BLE001 - as read_bytes
        if isinstance(exc, FileNotFoundError) or type(exc).__name__ == "GroupNotFoundError":
            raise InputDataError(f"{what} {location}: no Zarr group there ({_cause(exc)})") from None
        raise remote_error(location, exc, what=what) from None


def _filesystem(url: URL, *, what: str) -> tuple[Any, str]:
    """fsspec's (synchronous) file system for ``url`` and the key of ``url`` in it."""
    import fsspec  # a dependency of dask; each protocol's package (s3fs, gcsfs, aiohttp) may be missing

    try:
        return fsspec.core.url_to_fs(str(url))
    except ImportError as exc:
        package = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp",
                   "az": "adlfs", "abfs": "adlfs"}.get(url.protocol)
        need = f"pip install {package}" if package else f"the fsspec implementation of {url.protocol}://"
        raise DependencyError(f"{what} {url}: reading {url.protocol}:// URLs needs {need} ({exc})") from None
    except ValueError as exc:  # "Protocol not known"
        raise InputDataError(f"{what} {url}: fsspec knows no protocol {url.protocol!r} ({exc}); use s3://, "
                             "gs://, https:// or a local path") from None


def remote_error(
    url: URL, exc: BaseException, *, what: str = "input", writing: bool = False
) -> InputDataError | OutputError:
    """One clear message for a remote store that cannot be read (or, ``writing``, written: an
    :class:`OutputError`): ``what``, the URL, the cause, the fix."""
    names = {c.__name__ for c in type(exc).__mro__}
    cause = _cause(exc)
    s3 = url.protocol in ("s3", "s3a")
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                "DefaultCredentialsError", "RefreshError"}:
        fix = ("no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
               "(~/.aws/credentials), or FSSPEC_S3_ANON=true for a public bucket" if s3 else
               "no credentials were found: set GOOGLE_APPLICATION_CREDENTIALS (or run `gcloud auth "
               "application-default login`)" if url.protocol in ("gs", "gcs") else
               "no credentials were found for this store")
    elif isinstance(exc, PermissionError) or "AccessDenied" in cause or "Forbidden" in cause:
        fix = f"access was denied: check that these credentials may {'write' if writing else 'read'} it"
    elif isinstance(exc, FileNotFoundError):
        fix = "it does not exist: check the URL"
    elif names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
                  "ServerTimeoutError", "ConnectionError"} or isinstance(exc, OSError | TimeoutError):
        fix = "it cannot be reached: check the URL and the network" + (
            " and, for an S3-compatible server, its endpoint (AWS_ENDPOINT_URL or FSSPEC_S3_ENDPOINT_URL)"
            if s3 else "")
    else:
        fix = "check the URL and the credentials for it"
    if writing:
        if isinstance(exc, FileNotFoundError):
            fix = "its bucket does not exist: create it, or check the URL"
        return OutputError(f"{what} {url} cannot be written: {cause}; {fix}")
    return InputDataError(f"{what} {url} cannot be read: {cause}; {fix}")


def is_transient(exc: BaseException) -> bool:
    """Whether reading a remote store failed for the network or the store (no connection, a timeout, an
    error answer: may succeed when tried again), not for the data it returned."""
    names = {c.__name__ for c in type(exc).__mro__}
    return isinstance(exc, OSError | TimeoutError) or bool(names & {"BotoCoreError", "ClientError"})


def _cause(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- configuration types -------------------------------------------------------------------------------


def _to_location(value: Any) -> Any:
    """Strings of the form ``scheme://...`` become :class:`URL` (``file://`` a path); the rest is left to
    pydantic's ``Path``."""
    if isinstance(value, str) and (is_url(value) or value.strip().lower().startswith("file://")):
        return as_location(value)
    return value


def _local_only(kind: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, URL | str) and is_url(value):
            raise ValueError(f"{value} is a URL: {kind}")
        return value

    return check


#: A config field naming an input image: a local path (as a plain ``Path`` field takes it) or a URL.
InputLocation = Annotated[Path | URL, BeforeValidator(_to_location)]
#: A config field naming an output directory: local (or mounted) only, a URL is refused.
OutputDir = Annotated[Path, BeforeValidator(_local_only(_OUTPUTS_ARE_LOCAL))]
#: A config field naming a local input (a folder of files): a URL is refused.
LocalPath = Annotated[Path, BeforeValidator(_local_only(
    "this setting takes a local (or mounted) path; only OME-Zarr images may be URLs"))]
