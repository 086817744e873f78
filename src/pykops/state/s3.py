"""A state store in an S3 bucket (``s3://bucket[/prefix]``).

This module imports boto3 at import time; :func:`pykops.state.store.open_store` imports it only when an
``s3://`` URL is opened, so commands that never touch S3 (``pykops --help``) stay fast.

* The endpoint comes from boto3's own configuration, which honours ``AWS_ENDPOINT_URL`` (and
  ``AWS_ENDPOINT_URL_S3``) since botocore 1.31; that is how the local AWS emulator is reached.
* The bucket's region is discovered with ``GetBucketLocation`` (``None`` means us-east-1, the legacy ``EU``
  means eu-west-1), falling back to the ``x-amz-bucket-region`` header of ``HeadBucket`` when
  ``GetBucketLocation`` is denied; the client for all other calls is built for that region.
* ``create`` is ``PutObject`` with ``If-None-Match: *`` and ``update`` is ``PutObject`` with
  ``If-Match: <etag>``: S3 evaluates the condition atomically, so exactly one of two racing writers wins.
  The loser gets 412 PreconditionFailed (or 409 ConditionalRequestConflict while the other write is still
  in flight); both become ConflictError. The version token is the object's ETag.
* Every object is written with SSE-S3 (``ServerSideEncryption='AES256'``).
"""

from __future__ import annotations

import builtins
import threading
from typing import Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from pykops.errors import ConflictError, NotFoundError, PykopsError, StateStoreError
from pykops.state.store import StateStore, Versioned, check_key, dir_prefix

_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60)
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _region_from_location(location: str | None) -> str:
    if not location:
        return "us-east-1"
    if location == "EU":
        return "eu-west-1"
    return location


class S3Store(StateStore):
    """A state store in an S3 bucket; see the module docstring."""

    def __init__(self, url: str) -> None:
        if not url.startswith("s3://"):
            raise StateStoreError(f"not an s3:// state store URL: {url!r}")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise StateStoreError(f"state store URL {url!r} names no bucket; use s3://BUCKET[/PREFIX]")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.region: str | None = None
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- reads ---------------------------------------------------------------------------------------------

    def read(self, key: str) -> Versioned | None:
        s3 = self._s3()
        try:
            resp = s3.get_object(Bucket=self.bucket, Key=self._full_key(key))
            data = resp["Body"].read()
        except ClientError as err:
            if _error_code(err) in ("NoSuchKey", "404"):
                return None
            self._raise(err, "read", key)
        except BotoCoreError as err:
            self._raise(err, "read", key)
        return Versioned(bytes(data), str(resp["ETag"]))

    def list(self, prefix: str) -> builtins.list[str]:
        full = self._full_prefix(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: builtins.list[str] = []
        try:
            for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(str(obj["Key"])[strip:] for obj in page.get("Contents", []))
        except (ClientError, BotoCoreError) as err:
            self._raise(err, "list", prefix or "/")
        return sorted(keys)

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        full = self._full_prefix(prefix)
        names: set[str] = set()
        try:
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = str(common["Prefix"])[len(full) :].rstrip("/")
                    if name:
                        names.add(name)
        except (ClientError, BotoCoreError) as err:
            self._raise(err, "list", prefix or "/")
        return sorted(names)

    # -- writes --------------------------------------------------------------------------------------------

    def create(self, key: str, data: bytes, *, secret: bool = False) -> str:
        try:
            return self._put(key, data, IfNoneMatch="*")
        except ClientError as err:
            if _error_code(err) in _CONFLICT_CODES or _status(err) in (409, 412):
                raise ConflictError(self._exists_message(key)) from None
            self._raise(err, "write", key)

    def update(self, key: str, data: bytes, *, expected_version: str, secret: bool = False) -> str:
        try:
            return self._put(key, data, IfMatch=expected_version)
        except ClientError as err:
            if _error_code(err) in _CONFLICT_CODES or _status(err) in (409, 412):
                raise ConflictError(self._changed_message(key)) from None
            if _error_code(err) == "NoSuchKey":
                raise NotFoundError(self._missing_message(key)) from None
            self._raise(err, "write", key)

    def put(self, key: str, data: bytes, *, secret: bool = False) -> str:
        try:
            return self._put(key, data)
        except ClientError as err:
            self._raise(err, "write", key)

    def delete(self, key: str, *, expected_version: str | None = None) -> None:
        extra = {} if expected_version is None else {"IfMatch": expected_version}
        try:
            self._s3().delete_object(Bucket=self.bucket, Key=self._full_key(key), **extra)
        except ClientError as err:
            if _error_code(err) in _CONFLICT_CODES or _status(err) in (409, 412):
                raise ConflictError(self._changed_message(key)) from None
            if _error_code(err) == "NoSuchKey":
                return  # a conditional delete of a missing key: already gone
            self._raise(err, "delete", key)
        except BotoCoreError as err:
            self._raise(err, "delete", key)

    def delete_prefix(self, prefix: str) -> int:
        if not dir_prefix(prefix):
            raise StateStoreError(f"refusing to delete everything in the state store {self.url}")
        keys = self.list(prefix)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": self._full_key(k)} for k in keys[start : start + _DELETE_BATCH]]
            try:
                resp = self._s3().delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (ClientError, BotoCoreError) as err:
                self._raise(err, "delete", prefix)
            errors = resp.get("Errors", [])
            if errors:
                first = errors[0]
                raise StateStoreError(
                    f"cannot delete {len(errors)} objects under {prefix} in the state store {self.url}: "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        return len(keys)

    # -- helpers -------------------------------------------------------------------------------------------

    def _put(self, key: str, data: bytes, **conditions: str) -> str:
        """PutObject with SSE-S3; ClientError propagates for the caller to interpret."""
        s3 = self._s3()
        try:
            resp = s3.put_object(
                Bucket=self.bucket,
                Key=self._full_key(key),
                Body=bytes(data),
                ServerSideEncryption="AES256",
                **conditions,
            )
        except BotoCoreError as err:
            self._raise(err, "write", key)
        return str(resp["ETag"])

    def _full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _full_prefix(self, prefix: str) -> str:
        base = dir_prefix(prefix)
        return f"{self.prefix}/{base}" if self.prefix else base

    def _s3(self) -> Any:
        """The S3 client for the bucket's region, created (and the region discovered) on first use."""
        with self._client_lock:
            if self._client is None:
                session = boto3.session.Session()
                region = self._discover_region(session)
                self._client = session.client("s3", region_name=region, config=_CLIENT_CONFIG)
                self.region = region
            return self._client

    def _discover_region(self, session: Any) -> str:
        probe = session.client("s3", region_name="us-east-1", config=_CLIENT_CONFIG)
        try:
            resp = probe.get_bucket_location(Bucket=self.bucket)
            return _region_from_location(resp.get("LocationConstraint"))
        except ClientError as err:
            if _error_code(err) == "NoSuchBucket":
                self._raise(err, "open", "/")
            if _error_code(err) not in _DENIED_CODES and _status(err) != 403:
                self._raise(err, "open", "/")
        except BotoCoreError as err:
            self._raise(err, "open", "/")
        # GetBucketLocation was denied: HeadBucket reports the region in a header, even when it is denied too.
        try:
            head = probe.head_bucket(Bucket=self.bucket)
            headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        except ClientError as err:
            if _status(err) == 404:
                raise self._missing_bucket() from None
            headers = err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if "x-amz-bucket-region" not in headers:
                self._raise(err, "open", "/")
        except BotoCoreError as err:
            self._raise(err, "open", "/")
        return str(headers.get("x-amz-bucket-region") or "us-east-1")

    def _missing_bucket(self) -> StateStoreError:
        return StateStoreError(
            f"state store bucket {self.bucket} does not exist",
            hint=f"create it with: pykops state create-bucket s3://{self.bucket}",
        )

    def _raise(self, err: Exception, action: str, key: str) -> NoReturn:
        """Translate a boto error into a one-line PykopsError."""
        raise self._translate(err, action, key) from err

    def _translate(self, err: Exception, action: str, key: str) -> PykopsError:
        where = f"{key} in the state store {self.url}" if key != "/" else f"the state store {self.url}"
        if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
            return StateStoreError(
                f"no AWS credentials to {action} {where}",
                hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        if isinstance(err, ClientError):
            code = _error_code(err)
            message = err.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket":
                return self._missing_bucket()
            if code in _DENIED_CODES or _status(err) == 403:
                return StateStoreError(
                    f"access denied: cannot {action} {where} ({code or 'HTTP 403'})",
                    hint="check the AWS credentials in use and the bucket's policy",
                )
            return StateStoreError(f"cannot {action} {where}: {code or _status(err)} {message}".rstrip())
        return StateStoreError(f"cannot {action} {where}: {err}")
