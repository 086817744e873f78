"""``iam bootstrap``: the tutorial's IAM preparation (group, policies, user, access key), idempotently.

Run with an administrator's credentials. Every step first looks, then creates only what is missing, so a
second run creates nothing. The new access key's secret goes straight into the AWS shared credentials file
(created with mode 0600 before a byte is written) and nowhere else: it is never returned, printed or logged —
botocore logs response bodies at DEBUG level, so its loggers are held above DEBUG during ``CreateAccessKey``.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pykops.errors import PykopsError

#: The AWS managed policies the tutorial attaches to the kops group.
TUTORIAL_POLICIES: tuple[str, ...] = (
    "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
    "arn:aws:iam::aws:policy/AmazonS3FullAccess",
    "arn:aws:iam::aws:policy/AmazonVPCFullAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
)
LEAST_PRIVILEGE_POLICY = "pykops-least-privilege"
ACCESS_KEY_LIMIT = 2  # AWS allows two access keys per IAM user
MAX_POLICY_VERSIONS = 5  # AWS keeps at most five versions of a managed policy

CREATED = "created"
EXISTS = "exists"
UPDATED = "updated"


@dataclass(frozen=True)
class Step:
    """One row of the bootstrap's report: what, which, and whether it was created or already there."""

    kind: str
    name: str
    status: str
    detail: str = ""


@dataclass
class BootstrapResult:
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, kind: str, name: str, status: str, detail: str = "") -> None:
        self.steps.append(Step(kind, name, status, detail))

    @property
    def created(self) -> list[Step]:
        return [s for s in self.steps if s.status != EXISTS]


def sandbox_dir() -> Path | None:
    """The running sandbox's directory when the environment points at it (``eval "$(pykops sandbox up)"``)."""
    from pykops.sandbox.manager import SANDBOX_DIR_ENV

    directory = os.environ.get(SANDBOX_DIR_ENV)
    return Path(directory) if directory and os.environ.get("AWS_ENDPOINT_URL") else None


def credentials_path() -> Path:
    """The shared credentials file: ``AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials``.

    In the sandbox (and without ``AWS_SHARED_CREDENTIALS_FILE``) it is the sandbox's own ``aws-credentials``:
    the emulator's keys are not real and must not land among the user's real profiles.
    """
    configured = os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
    if configured:
        return Path(configured).expanduser()
    sandbox = sandbox_dir()
    return sandbox / "aws-credentials" if sandbox else Path.home() / ".aws" / "credentials"


def _read_credentials(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    if path.exists():
        try:
            parser.read_string(path.read_text(encoding="utf-8"), str(path))
        except (OSError, configparser.Error) as exc:
            raise PykopsError(f"cannot read the AWS credentials file {path}: {exc}") from None
    return parser


def profile_key_id(path: Path, profile: str) -> str | None:
    """The access key id stored for ``profile``, if any."""
    parser = _read_credentials(path)
    if parser.has_option(profile, "aws_access_key_id"):
        return parser.get(profile, "aws_access_key_id").strip() or None
    return None


def write_profile(path: Path, profile: str, key_id: str, secret: str) -> None:
    """Add/replace ``profile`` in the credentials file, keeping every other profile; the file stays 0600.

    The new content goes to a temporary file created with mode 0600 in the same directory (so it is never
    readable by others, not even briefly) and replaces the old file atomically.
    """
    parser = _read_credentials(path)
    if not parser.has_section(profile):
        parser.add_section(profile)
    parser.set(profile, "aws_access_key_id", key_id)
    parser.set(profile, "aws_secret_access_key", secret)
    text = io.StringIO()
    parser.write(text)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)  # mkstemp creates it 0600
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text.getvalue())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _botocore_quiet() -> Iterator[None]:
    """Keep botocore from logging response bodies (which would contain the secret) for one call."""
    logger = logging.getLogger("botocore")
    previous = logger.level
    logger.setLevel(max(logging.INFO, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class IamBootstrap:
    """The bootstrap steps against one IAM client (``iam`` from ``boto3``'s standard credential chain)."""

    def __init__(self, iam: Any, sts: Any = None) -> None:
        self.iam = iam
        self.sts = sts
        self.result = BootstrapResult()

    def group(self, name: str) -> None:
        try:
            self.iam.get_group(GroupName=name, MaxItems=1)
            self.result.add("group", name, EXISTS)
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            self.iam.create_group(GroupName=name)
            self.result.add("group", name, CREATED)

    def attached(self, group: str) -> set[str]:
        arns: set[str] = set()
        for page in self.iam.get_paginator("list_attached_group_policies").paginate(GroupName=group):
            arns.update(p["PolicyArn"] for p in page["AttachedPolicies"])
        return arns

    def attach(self, group: str, arns: list[str]) -> None:
        present = self.attached(group)
        for arn in arns:
            name = arn.rsplit("/", 1)[-1]
            if arn in present:
                self.result.add("policy attachment", f"{name} → {group}", EXISTS)
                continue
            self.iam.attach_group_policy(GroupName=group, PolicyArn=arn)
            self.result.add("policy attachment", f"{name} → {group}", CREATED)

    def customer_policies(self, base: str, documents: list[dict[str, object]]) -> list[str]:
        """Create (or bring up to date) one customer-managed policy per document; their ARNs."""
        account = self.iam_account()
        arns = []
        for n, document in enumerate(documents, 1):
            name = base if len(documents) == 1 else f"{base}-{n}"
            arn = f"arn:aws:iam::{account}:policy/{name}"
            text = json.dumps(document, separators=(",", ":"))
            try:
                policy = self.iam.get_policy(PolicyArn=arn)["Policy"]
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise
                self.iam.create_policy(
                    PolicyName=name,
                    PolicyDocument=text,
                    Description="pykops: the AWS actions pykops uses (pykops iam print-policy)",
                )
                self.result.add("policy", name, CREATED)
                arns.append(arn)
                continue
            version = self.iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
            current = version["PolicyVersion"]["Document"]
            if isinstance(current, str):  # URL-encoded JSON on the wire; boto3 decodes it to a dict
                current = json.loads(current)
            if current == document:
                self.result.add("policy", name, EXISTS)
            else:
                self._prune_versions(arn)
                self.iam.create_policy_version(PolicyArn=arn, PolicyDocument=text, SetAsDefault=True)
                self.result.add("policy", name, UPDATED, "new default version")
            arns.append(arn)
        return arns

    def _prune_versions(self, arn: str) -> None:
        versions = self.iam.list_policy_versions(PolicyArn=arn)["Versions"]
        if len(versions) >= MAX_POLICY_VERSIONS:
            oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
            self.iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])

    def iam_account(self) -> str:
        """The account of the caller (an IAM user, a role or the root user alike)."""
        if self.sts is None:
            self.sts = boto3.session.Session().client("sts")
        return str(self.sts.get_caller_identity()["Account"])

    def user(self, name: str, group: str) -> None:
        try:
            self.iam.get_user(UserName=name)
            self.result.add("user", name, EXISTS)
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            self.iam.create_user(UserName=name)
            self.result.add("user", name, CREATED)
        groups = {
            g["GroupName"]
            for page in self.iam.get_paginator("list_groups_for_user").paginate(UserName=name)
            for g in page["Groups"]
        }
        if group in groups:
            self.result.add("membership", f"{name} ∈ {group}", EXISTS)
        else:
            self.iam.add_user_to_group(GroupName=group, UserName=name)
            self.result.add("membership", f"{name} ∈ {group}", CREATED)

    def access_key(self, user: str, profile: str, path: Path) -> None:
        keys = [k["AccessKeyId"] for k in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
        stored = profile_key_id(path, profile)
        if stored is not None:
            detail = f"profile {profile} in {path}"
            if stored not in keys:
                self.result.warnings.append(
                    f"profile {profile} in {path} holds access key {stored}, which is not one of {user}'s "
                    "keys; kept as it is (remove the profile to get a new key)"
                )
            self.result.add("access key", stored, EXISTS, detail)
            return
        if len(keys) >= ACCESS_KEY_LIMIT:
            raise PykopsError(
                f"user {user} already has {len(keys)} access keys ({', '.join(keys)}), AWS's limit, and none "
                f"is in profile {profile} of {path}",
                hint=f"delete one with: aws iam delete-access-key --user-name {user} --access-key-id KEY_ID",
            )
        with _botocore_quiet():
            created = self.iam.create_access_key(UserName=user)["AccessKey"]
        key_id = str(created["AccessKeyId"])
        try:
            write_profile(path, profile, key_id, str(created.pop("SecretAccessKey")))
        except OSError as exc:
            # The secret can never be shown again: a key whose secret was not saved is deleted at once.
            self.iam.delete_access_key(UserName=user, AccessKeyId=key_id)
            raise PykopsError(
                f"cannot write the AWS credentials file {path} ({exc.strerror or exc}); "
                f"the new access key {key_id} was deleted again"
            ) from None
        self.result.add("access key", key_id, CREATED, f"profile {profile} in {path} (mode 0600)")


def bootstrap(
    *,
    group: str = "kops",
    user: str = "kopsuser",
    profile: str | None = None,
    least_privilege: bool = False,
    credentials_file: Path | None = None,
    iam: Any = None,
) -> BootstrapResult:
    """The tutorial's IAM steps; see the module docstring. ``profile`` defaults to the user's name."""
    if iam is None:
        iam = boto3.session.Session().client("iam")
    steps = IamBootstrap(iam)
    path = credentials_file or credentials_path()
    try:
        steps.group(group)
        if least_privilege:
            from pykops.ops.iam_policy import policy_documents

            arns = steps.customer_policies(LEAST_PRIVILEGE_POLICY, policy_documents())
        else:
            arns = list(TUTORIAL_POLICIES)
        steps.attach(group, arns)
        if least_privilege:
            broad = sorted(steps.attached(group) & set(TUTORIAL_POLICIES))
            if broad:
                steps.result.warnings.append(
                    f"group {group} still has {', '.join(a.rsplit('/', 1)[-1] for a in broad)} attached, "
                    "so it is not least-privilege; detach with: aws iam detach-group-policy "
                    f"--group-name {group} --policy-arn {broad[0]}"
                )
        steps.user(user, group)
        steps.access_key(user, profile or user, path)
    except ClientError as exc:
        raise PykopsError(f"IAM refused a bootstrap step ({_code(exc)}): {exc}") from None
    except BotoCoreError as exc:
        raise PykopsError(f"cannot reach AWS IAM: {exc}") from None
    return steps.result
