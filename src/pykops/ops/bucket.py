"""``state create-bucket``: the state-store bucket, versioned, encrypted by default and never public.

Idempotent: each setting is read first and written only when it differs, so a second run changes nothing.
``us-east-1`` is created without a ``LocationConstraint`` (S3 rejects one naming us-east-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pykops.errors import PykopsError, UsageError

CREATED = "created"
EXISTS = "exists"
UPDATED = "updated"

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@dataclass
class BucketResult:
    bucket: str
    region: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (setting, status)

    @property
    def changed(self) -> bool:
        return any(status != EXISTS for _, status in self.steps)


def parse_bucket_url(url: str) -> str:
    """``s3://NAME`` (or a bare NAME) → NAME; a prefix or another scheme is refused."""
    name = url[len("s3://") :] if url.startswith("s3://") else url
    name = name.rstrip("/")
    if not name or "/" in name or ("://" in url and not url.startswith("s3://")):
        raise UsageError(f"{url!r}: expected s3://BUCKET (the bucket only, no prefix)")
    if not (3 <= len(name) <= 63) or not all(c.islower() or c.isdigit() or c in ".-" for c in name):
        raise UsageError(
            f"{name!r} is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens"
        )
    return name


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def existing_region(s3: Any, bucket: str) -> str | None:
    """An existing bucket's region (HeadBucket's ``x-amz-bucket-region``); None when it is missing."""
    try:
        resp = s3.head_bucket(Bucket=bucket)
        headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if status == 404 or _code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return None
        if status == 403:
            raise PykopsError(
                f"bucket {bucket} exists but belongs to another account (or you may not use it)",
                hint="bucket names are global: choose another name",
            ) from None
        if "x-amz-bucket-region" not in headers:  # 301: it is elsewhere, and S3 says where
            raise
    return str(headers.get("x-amz-bucket-region") or s3.meta.region_name)


def _create_bucket(s3: Any, bucket: str, region: str) -> str:
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _code(exc) == "BucketAlreadyOwnedByYou":
            return EXISTS
        if _code(exc) == "BucketAlreadyExists":
            raise PykopsError(
                f"bucket {bucket} already exists in another account", hint="bucket names are global"
            ) from None
        raise
    return CREATED


def _ensure_versioning(s3: Any, bucket: str) -> str:
    if s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled":
        return EXISTS
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return UPDATED


def _ensure_encryption(s3: Any, bucket: str, kms_key: str | None) -> str:
    """SSE-S3 by default, or SSE-KMS with ``kms_key``. Without ``kms_key`` an existing default encryption
    (SSE-S3 or a KMS key the owner chose) is kept; with it, the bucket must use exactly that key."""
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if _code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    defaults = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    if kms_key is None:
        if any(d.get("SSEAlgorithm") in ("AES256", "aws:kms", "aws:kms:dsse") for d in defaults):
            return EXISTS
        wanted: dict[str, str] = {"SSEAlgorithm": "AES256"}
    else:
        wanted = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key}
        if any(d == wanted for d in defaults):
            return EXISTS
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": wanted, "BucketKeyEnabled": True}]
        },
    )
    return UPDATED


def _ensure_public_access_block(s3: Any, bucket: str) -> str:
    try:
        current = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if _code(exc) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if all(current.get(k) is True for k in PUBLIC_ACCESS_BLOCK):
        return EXISTS
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    return UPDATED


def create_state_bucket(bucket: str, region: str, *, kms_key: str | None = None) -> BucketResult:
    """Create or complete the state-store bucket; see the module docstring.

    ``kms_key`` (a KMS key id, ARN or alias) selects SSE-KMS instead of SSE-S3. An existing bucket stays in
    its own region (``BucketResult.region``), whatever ``region`` says.
    """
    session = boto3.session.Session()
    s3 = session.client("s3", region_name=region)
    try:
        found = existing_region(s3, bucket)
        if found is None:
            status = _create_bucket(s3, bucket, region)
        else:
            status, region = EXISTS, found
            s3 = session.client("s3", region_name=region)
        result = BucketResult(bucket, region, [("bucket", status)])
        result.steps.append(("versioning", _ensure_versioning(s3, bucket)))
        result.steps.append(("default encryption", _ensure_encryption(s3, bucket, kms_key)))
        result.steps.append(("public access block", _ensure_public_access_block(s3, bucket)))
    except ClientError as exc:
        raise PykopsError(f"S3 refused a step on bucket {bucket} ({_code(exc)}): {exc}") from None
    except BotoCoreError as exc:
        raise PykopsError(f"cannot reach S3: {exc}") from None
    return result
