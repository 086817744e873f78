"""``iam bootstrap`` against the AWS emulator: idempotent, 0600 credentials, and a secret nobody sees."""

from __future__ import annotations

import configparser
import json
import logging
import stat
import uuid
from pathlib import Path

import boto3
import pytest

from pykops.cli.main import main
from pykops.ops.iam_bootstrap import LEAST_PRIVILEGE_POLICY, TUTORIAL_POLICIES
from pykops.ops.iam_policy import policy_documents
from pykops.sandbox.aws_emulator import AwsEmulator


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def rows(out: str) -> dict[tuple[str, str], str]:
    """(RESOURCE, NAME) → STATUS from the bootstrap's table (columns split on 3+ spaces)."""
    import re

    table = [re.split(r" {3,}", line.strip()) for line in out.splitlines()[1:] if line.strip()]
    return {(r[0], r[1]): r[2] for r in table}


def test_bootstrap_twice_creates_everything_once_and_never_shows_the_secret(
    aws_env: AwsEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything boto3/botocore log, as --debug users might route it
    creds = tmp_path / "aws" / "credentials"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    group, user = unique("kops"), unique("kopsuser")

    out, err = run(capsys, "--debug", "iam", "bootstrap", "--group", group, "--user", user)
    first = rows(out)
    assert first[("group", group)] == "created"
    for arn in TUTORIAL_POLICIES:
        assert first[("policy attachment", f"{arn.rsplit('/', 1)[-1]} → {group}")] == "created"
    assert first[("user", user)] == "created"
    assert first[("membership", f"{user} ∈ {group}")] == "created"
    assert [status for (kind, _), status in first.items() if kind == "access key"] == ["created"]
    assert f"export AWS_PROFILE={user}" in err

    # The credentials file: created 0600 (directory 0700), the profile named after the user.
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
    parser = configparser.RawConfigParser()
    parser.read(creds)
    key_id = parser.get(user, "aws_access_key_id")
    secret = parser.get(user, "aws_secret_access_key")
    assert len(secret) >= 30

    # The secret is in no output and no log record, although botocore logged response bodies at DEBUG.
    assert any("Response body" in r.getMessage() for r in caplog.records)
    assert secret not in out and secret not in err
    assert secret not in caplog.text
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert key_id in out  # the key id is public and identifies the key

    # AWS has exactly what the tutorial makes.
    iam = boto3.client("iam")
    attached = {p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"]}
    assert attached == set(TUTORIAL_POLICIES)
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]] == [group]
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [key_id]

    # The written profile works: its key is the user's.
    identity = boto3.session.Session(profile_name=user).client("sts").get_caller_identity()
    assert identity["Arn"].endswith(f":user/{user}")

    # Second run: nothing created, every row "exists", the file untouched.
    before = creds.read_bytes()
    out, _ = run(capsys, "--debug", "iam", "bootstrap", "--group", group, "--user", user)
    second = rows(out)
    assert set(second) == set(first)
    assert set(second.values()) == {"exists"}
    assert len(iam.list_access_keys(UserName=user)["AccessKeyMetadata"]) == 1
    assert creds.read_bytes() == before
    assert secret not in caplog.text


def test_existing_credentials_file_keeps_other_profiles_and_becomes_0600(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = othersecret\n")
    creds.chmod(0o644)
    group, user = unique("kops"), unique("kopsuser")
    out, _ = run(
        capsys, "iam", "bootstrap", "--group", group, "--user", user, "--profile", "kops",
        "--credentials-file", str(creds),
    )  # fmt: skip
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    parser = configparser.RawConfigParser()
    parser.read(creds)
    assert parser.get("default", "aws_secret_access_key") == "othersecret"
    assert parser.get("kops", "aws_access_key_id").startswith(("AKIA", "ASIA"))
    assert parser.get("kops", "aws_secret_access_key") not in out
    assert not list(tmp_path.glob(".credentials-*"))  # no temporary file left behind


def test_a_user_with_two_keys_and_none_in_the_profile_is_refused(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group, user = unique("kops"), unique("kopsuser")
    iam = boto3.client("iam")
    iam.create_user(UserName=user)
    ids = sorted(iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"] for _ in range(2))
    creds = tmp_path / "credentials"
    _, err = run(
        capsys, "iam", "bootstrap", "--group", group, "--user", user, "--credentials-file", str(creds),
        expect=1,
    )  # fmt: skip
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"user {user} already has 2 access keys" in line and "AWS's limit" in line
    assert all(i in line for i in ids) and "aws iam delete-access-key" in line
    assert not creds.exists()
    assert len(iam.list_access_keys(UserName=user)["AccessKeyMetadata"]) == 2


def test_least_privilege_attaches_one_generated_policy_idempotently(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group, user = unique("kops"), unique("kopsuser")
    creds = tmp_path / "credentials"
    args = ["iam", "bootstrap", "--group", group, "--user", user, "--least-privilege"]
    args += ["--credentials-file", str(creds)]
    iam = boto3.client("iam")
    existing = {p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]}
    out, _ = run(capsys, *args)
    documents = policy_documents()
    names = [LEAST_PRIVILEGE_POLICY] if len(documents) == 1 else []
    names = names or [f"{LEAST_PRIVILEGE_POLICY}-{n}" for n in range(1, len(documents) + 1)]
    first = rows(out)
    for name in names:
        assert first[("policy", name)] in ("created", "exists")  # another test may have made it first
    attached = iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"]
    assert sorted(p["PolicyName"] for p in attached) == sorted(names)
    assert not any(p["PolicyArn"].startswith("arn:aws:iam::aws:") for p in attached)
    for policy, document in zip(sorted(attached, key=lambda p: p["PolicyName"]), documents, strict=True):
        meta = iam.get_policy(PolicyArn=policy["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=policy["PolicyArn"], VersionId=meta["DefaultVersionId"])
        stored = version["PolicyVersion"]["Document"]
        assert (json.loads(stored) if isinstance(stored, str) else stored) == document
    if not existing & set(names):
        assert all(first[("policy", n)] == "created" for n in names)

    out, _ = run(capsys, *args)
    assert set(rows(out).values()) == {"exists"}
    assert len(iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"]) == len(names)


def test_an_outdated_generated_policy_gets_a_new_default_version(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_env.reset()  # the generated policy's name is fixed: start from an account without it
    iam = boto3.client("iam")
    documents = policy_documents()
    name = LEAST_PRIVILEGE_POLICY if len(documents) == 1 else f"{LEAST_PRIVILEGE_POLICY}-1"
    old = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:X", "Resource": "*"}]}
    arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(old))["Policy"]["Arn"]
    group, user = unique("kops"), unique("kopsuser")
    out, _ = run(
        capsys, "iam", "bootstrap", "--group", group, "--user", user, "--least-privilege",
        "--credentials-file", str(tmp_path / "credentials"),
    )  # fmt: skip
    assert rows(out)[("policy", name)] == "updated"
    meta = iam.get_policy(PolicyArn=arn)["Policy"]
    assert meta["DefaultVersionId"] != "v1"
    stored = iam.get_policy_version(PolicyArn=arn, VersionId=meta["DefaultVersionId"])["PolicyVersion"]
    document = stored["Document"]
    assert (json.loads(document) if isinstance(document, str) else document) == documents[0]


def test_no_credentials_is_one_line(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    _, err = run(capsys, "iam", "bootstrap", "--credentials-file", str(tmp_path / "c"), expect=1)
    assert err.startswith("Error: ") and err.count("\n") == 1 and "credentials" in err


def test_in_the_sandbox_keys_go_to_the_sandbox_not_to_the_users_aws_files(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home, sandbox = tmp_path / "home", tmp_path / "sandbox"
    sandbox.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE")
    monkeypatch.setenv("PYKOPS_SANDBOX_DIR", str(sandbox))
    user = unique("kopsuser")
    _, err = run(capsys, "iam", "bootstrap", "--group", unique("kops"), "--user", user)
    assert "local simulation" in err
    written = sandbox / "aws-credentials"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    parser = configparser.RawConfigParser()
    parser.read(written)
    assert parser.has_option(user, "aws_secret_access_key")
    assert not (home / ".aws").exists()


def test_switching_to_least_privilege_warns_about_the_broad_policies(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group, user = unique("kops"), unique("kopsuser")
    args = ["iam", "bootstrap", "--group", group, "--user", user, "--credentials-file", str(tmp_path / "c")]
    run(capsys, *args)
    _, err = run(capsys, *args, "--least-privilege")
    assert f"group {group} still has AmazonEC2FullAccess" in err and "detach-group-policy" in err
    attached = boto3.client("iam").list_attached_group_policies(GroupName=group)["AttachedPolicies"]
    assert len(attached) == len(TUTORIAL_POLICIES) + len(policy_documents())  # nothing detached silently


def test_a_profile_holding_a_foreign_key_is_kept_with_a_warning(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("[kopsuser]\naws_access_key_id = AKIAFOREIGN\naws_secret_access_key = x\n")
    user = unique("kopsuser")
    args = ["iam", "bootstrap", "--group", unique("kops"), "--user", user, "--profile", "kopsuser"]
    out, err = run(capsys, *args, "--credentials-file", str(creds))
    assert rows(out)[("access key", "AKIAFOREIGN")] == "exists"
    assert "AKIAFOREIGN, which is not one of" in err
    assert boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"] == []
    assert "AKIAFOREIGN" in creds.read_text()


def test_an_unwritable_credentials_file_leaves_no_orphan_key(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    if os.geteuid() == 0:
        blocker = tmp_path / "not-a-dir"  # root ignores directory modes: make the parent a file instead
        blocker.write_text("")
        creds = blocker / "credentials"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        creds = locked / "credentials"
    user = unique("kopsuser")
    args = ["iam", "bootstrap", "--group", unique("kops"), "--user", user, "--credentials-file", str(creds)]
    _, err = run(capsys, *args, expect=1)
    assert "cannot write the AWS credentials file" in err and "was deleted again" in err
    assert boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"] == []
