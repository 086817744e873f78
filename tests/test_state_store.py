"""The state store: the same semantics on every backend (file, memfs, s3 via the AWS emulator)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from pykops.errors import ConflictError, NotFoundError, StateStoreError
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.state import StateStore, Versioned, open_store
from pykops.state.file import FileStore
from pykops.state.memfs import MemFsStore, reset_memfs
from pykops.state.s3 import S3Store

BACKENDS = ["file", "memfs", "s3"]
REGION = "eu-west-1"


def _s3_client(region: str = REGION) -> Any:
    return boto3.session.Session().client("s3", region_name=region)


def _new_bucket(region: str = REGION) -> str:
    bucket = f"pykops-test-{uuid.uuid4().hex[:16]}"
    if region == "us-east-1":
        _s3_client(region).create_bucket(Bucket=bucket)
    else:
        _s3_client(region).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
    return bucket


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL of the backend named by the test's ``backend`` parameter."""
    backend: str = request.param
    if backend == "file":
        yield f"file://{tmp_path / 'state'}"
    elif backend == "memfs":
        name = f"test-{uuid.uuid4().hex}"
        yield f"memfs://{name}"
        reset_memfs(name)
    else:
        request.getfixturevalue("aws_env")
        yield f"s3://{_new_bucket()}/state/prefix"


@pytest.fixture
def store(store_url: str) -> StateStore:
    return open_store(store_url)


def parametrize_backends(func: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.parametrize("store_url", BACKENDS, indirect=True)(func)


# --- basic semantics ------------------------------------------------------------------------------


@parametrize_backends
def test_create_then_read(store: StateStore) -> None:
    assert store.read("c1/config") is None
    version = store.create("c1/config", b"spec: 1\n")
    assert store.read("c1/config") == Versioned(b"spec: 1\n", version)


@parametrize_backends
def test_binary_and_large_content_round_trips(store: StateStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB with NULs
    version = store.put("c1/blob", data)
    found = store.read("c1/blob")
    assert found is not None and found.data == data and found.version == version


@parametrize_backends
def test_create_conflict(store: StateStore) -> None:
    store.create("c1/config", b"first")
    with pytest.raises(ConflictError) as err:
        store.create("c1/config", b"second")
    message = str(err.value)
    assert "\n" not in message
    assert "c1/config already exists in the state store " + store.url in message
    assert "someone else created it" in message
    found = store.read("c1/config")
    assert found is not None and found.data == b"first"


@parametrize_backends
def test_update_with_current_version(store: StateStore) -> None:
    v1 = store.create("c1/config", b"one")
    v2 = store.update("c1/config", b"two", expected_version=v1)
    assert v2 != v1
    assert store.read("c1/config") == Versioned(b"two", v2)


@parametrize_backends
def test_stale_update_conflicts_and_writes_nothing(store: StateStore) -> None:
    v1 = store.create("c1/config", b"one")
    v2 = store.update("c1/config", b"two", expected_version=v1)
    with pytest.raises(ConflictError) as err:
        store.update("c1/config", b"three", expected_version=v1)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("c1/config in the state store " + store.url)
    assert "was changed by someone else since it was read; re-run the command" in message
    assert store.read("c1/config") == Versioned(b"two", v2)


@parametrize_backends
def test_update_missing_key_is_not_found(store: StateStore) -> None:
    with pytest.raises(NotFoundError, match="c1/config does not exist"):
        store.update("c1/config", b"x", expected_version="whatever")
    assert store.read("c1/config") is None


@parametrize_backends
def test_put_is_unconditional(store: StateStore) -> None:
    v1 = store.put("c1/derived", b"one")
    v2 = store.put("c1/derived", b"two")
    assert store.read("c1/derived") == Versioned(b"two", v2)
    assert v1 != v2


@parametrize_backends
def test_delete(store: StateStore) -> None:
    store.delete("c1/absent")  # no error
    store.delete("c1/absent", expected_version="anything")  # no error either
    v1 = store.create("c1/config", b"one")
    store.update("c1/config", b"two", expected_version=v1)
    with pytest.raises(ConflictError, match="changed by someone else"):
        store.delete("c1/config", expected_version=v1)
    current = store.read("c1/config")
    assert current is not None
    store.delete("c1/config", expected_version=current.version)
    assert store.read("c1/config") is None
    store.put("c1/other", b"x")
    store.delete("c1/other")
    assert store.read("c1/other") is None
    assert store.list("") == []


@parametrize_backends
def test_create_after_delete(store: StateStore) -> None:
    store.create("c1/config", b"one")
    store.delete("c1/config")
    version = store.create("c1/config", b"again")
    assert store.read("c1/config") == Versioned(b"again", version)


@parametrize_backends
def test_list_is_recursive_sorted_and_directory_scoped(store: StateStore) -> None:
    keys = ["c1/config", "c1/instancegroup/nodes", "c1/instancegroup/master-a", "c10/config", "c1x", "top"]
    for key in keys:
        store.put(key, key.encode())
    assert store.list("") == sorted(keys)
    assert store.list("c1") == ["c1/config", "c1/instancegroup/master-a", "c1/instancegroup/nodes"]
    assert store.list("c1/") == store.list("c1")
    assert store.list("c1/instancegroup") == ["c1/instancegroup/master-a", "c1/instancegroup/nodes"]
    assert store.list("nope") == []
    assert store.list("top") == []  # a key is not a directory


@parametrize_backends
def test_list_dirs(store: StateStore) -> None:
    assert store.list_dirs("") == []
    keys = ["b.k8s.local/config", "a.k8s.local/config", "a.k8s.local/pki/ca", "a.k8s.local/ig/nodes", "x"]
    for key in keys:
        store.put(key, b"-")
    assert store.list_dirs("") == ["a.k8s.local", "b.k8s.local"]
    assert store.list_dirs("a.k8s.local") == ["ig", "pki"]
    assert store.list_dirs("a.k8s.local/pki/") == []
    store.delete("b.k8s.local/config")
    assert store.list_dirs("") == ["a.k8s.local"]


@parametrize_backends
def test_delete_prefix(store: StateStore) -> None:
    for key in ["c1/config", "c1/ig/a", "c1/ig/b", "c10/config"]:
        store.put(key, b"-")
    assert store.delete_prefix("c1") == 3
    assert store.list("") == ["c10/config"]
    assert store.list_dirs("") == ["c10"]
    assert store.delete_prefix("c1/") == 0
    with pytest.raises(StateStoreError, match="refusing to delete everything"):
        store.delete_prefix("")
    assert store.list("") == ["c10/config"]


@parametrize_backends
@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\\b"])
def test_invalid_keys(store: StateStore, key: str) -> None:
    with pytest.raises(StateStoreError, match="invalid state store key"):
        store.create(key, b"x")


@parametrize_backends
def test_stores_opened_twice_share_data(store: StateStore) -> None:
    version = store.create("c1/config", b"one")
    again = open_store(store.url)
    assert again.read("c1/config") == Versioned(b"one", version)


# --- opening stores -------------------------------------------------------------------------------


def test_unknown_scheme_names_supported_ones() -> None:
    with pytest.raises(StateStoreError) as err:
        open_store("gs://bucket/prefix")
    message = str(err.value)
    assert "unsupported state store scheme gs://" in message
    for scheme in ("s3://", "file://", "memfs://"):
        assert scheme in message
    assert "\n" not in message


@pytest.mark.parametrize("url", ["/var/lib/pykops", "state", ""])
def test_url_without_scheme_is_refused(url: str) -> None:
    with pytest.raises(StateStoreError, match="has no scheme"):
        open_store(url)


def test_backend_types_and_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(f"file://{tmp_path}/"), FileStore)
    assert open_store(f"file://{tmp_path}/x/../state/").url == f"file://{tmp_path}/state"
    assert isinstance(open_store("memfs://t"), MemFsStore)
    s3 = open_store("s3://bucket/a/b/")
    assert isinstance(s3, S3Store) and s3.url == "s3://bucket/a/b"
    assert open_store("s3://bucket").url == "s3://bucket"


@pytest.mark.parametrize("url", ["file://relative/path", "memfs://", "s3://", "s3:///prefix"])
def test_malformed_urls(url: str) -> None:
    with pytest.raises(StateStoreError):
        open_store(url)


def test_importing_the_store_does_not_import_boto3() -> None:
    import subprocess
    import sys

    code = "import sys, pykops.state; pykops.state.open_store('memfs://x'); print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- file backend ---------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_secret_modes(tmp_path: Path) -> None:
    root = tmp_path / "state"
    store = open_store(f"file://{root}")
    store.put("c1/config", b"public")
    store.create("c1/pki/private/ca/keyset.yaml", b"key", secret=True)
    assert _mode(root / "c1/config") == 0o644
    assert _mode(root / "c1/pki/private/ca/keyset.yaml") == 0o600
    assert _mode(root / "c1/pki") == 0o700
    assert _mode(root / "c1/pki/private/ca") == 0o700
    assert _mode(root) == 0o700  # the store holds private keys
    # Rewriting a private file never makes it readable by others, even without secret=True.
    found = store.read("c1/pki/private/ca/keyset.yaml")
    assert found is not None
    store.update("c1/pki/private/ca/keyset.yaml", b"key2", expected_version=found.version)
    assert _mode(root / "c1/pki/private/ca/keyset.yaml") == 0o600
    store.put("c1/secret2", b"s", secret=True)
    assert _mode(root / "c1/secret2") == 0o600


def test_file_leaves_no_temporary_files_and_hides_its_own(tmp_path: Path) -> None:
    root = tmp_path / "state"
    store = open_store(f"file://{root}")
    v = store.create("c1/config", b"one")
    with pytest.raises(ConflictError):
        store.create("c1/config", b"two")
    with pytest.raises(ConflictError):
        store.update("c1/config", b"two", expected_version="stale")
    store.update("c1/config", b"two", expected_version=v)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert names == [".pykops-lock", "c1", "c1/config"]
    assert store.list("") == ["c1/config"]
    with pytest.raises(StateStoreError, match="reserved"):
        store.put(".pykops-lock", b"x")


def test_file_delete_prunes_empty_directories(tmp_path: Path) -> None:
    root = tmp_path / "state"
    store = open_store(f"file://{root}")
    store.put("c1/ig/nodes", b"-")
    store.delete("c1/ig/nodes")
    assert not (root / "c1").exists()
    assert root.exists()


def test_file_file_and_directory_clash_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'state'}")
    store.put("c1", b"-")
    with pytest.raises(StateStoreError, match="cannot write c1/config"):
        store.put("c1/config", b"-")


def test_file_reads_missing_root_as_empty(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'missing'}")
    assert store.read("c1/config") is None
    assert store.list("") == []
    assert store.list_dirs("") == []
    assert not (tmp_path / "missing").exists()


# --- memfs backend --------------------------------------------------------------------------------


def test_memfs_records_secret_and_reset() -> None:
    name = f"t-{uuid.uuid4().hex}"
    store = open_store(f"memfs://{name}")
    assert isinstance(store, MemFsStore)
    store.put("c1/key", b"k", secret=True)
    assert store.is_secret("c1/key")
    reset_memfs(name)
    assert open_store(f"memfs://{name}").read("c1/key") is None


# --- s3 backend -----------------------------------------------------------------------------------


def test_s3_objects_are_encrypted(aws_env: AwsEmulator) -> None:
    bucket = _new_bucket()
    store = open_store(f"s3://{bucket}/p")
    v = store.create("c1/config", b"one")
    store.update("c1/config", b"two", expected_version=v)
    store.put("c1/derived", b"d")
    store.create("c1/pki/private/key", b"k", secret=True)
    s3 = _s3_client()
    for key in ("p/c1/config", "p/c1/derived", "p/c1/pki/private/key"):
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_s3_version_is_the_etag(aws_env: AwsEmulator) -> None:
    bucket = _new_bucket()
    store = open_store(f"s3://{bucket}")
    version = store.create("c1/config", b"one")
    assert version == _s3_client().head_object(Bucket=bucket, Key="c1/config")["ETag"]


def test_s3_missing_bucket(aws_env: AwsEmulator) -> None:
    store = open_store("s3://pykops-no-such-bucket-4711/prefix")
    with pytest.raises(StateStoreError) as err:
        store.read("c1/config")
    assert str(err.value) == (
        "state store bucket pykops-no-such-bucket-4711 does not exist; "
        "create it with: pykops state create-bucket s3://pykops-no-such-bucket-4711"
    )


def test_s3_bucket_deleted_after_open(aws_env: AwsEmulator) -> None:
    bucket = _new_bucket()
    store = open_store(f"s3://{bucket}")
    assert store.list("") == []
    _s3_client().delete_bucket(Bucket=bucket)
    with pytest.raises(StateStoreError, match=f"state store bucket {bucket} does not exist"):
        store.put("c1/config", b"x")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2"])
def test_s3_discovers_the_bucket_region(aws_env: AwsEmulator, region: str) -> None:
    bucket = _new_bucket(region)
    store = open_store(f"s3://{bucket}")
    assert isinstance(store, S3Store)
    store.put("c1/config", b"x")
    assert store.region == region
    client = store._s3()
    assert client.meta.region_name == region
    assert client.meta.endpoint_url == aws_env.endpoint_url  # from AWS_ENDPOINT_URL, natively


def test_s3_prefixes_isolate_stores(aws_env: AwsEmulator) -> None:
    bucket = _new_bucket()
    one = open_store(f"s3://{bucket}/one")
    two = open_store(f"s3://{bucket}/two/deeper")
    whole = open_store(f"s3://{bucket}")
    one.put("c1/config", b"1")
    two.put("c2/config", b"2")
    assert one.list("") == ["c1/config"] and one.list_dirs("") == ["c1"]
    assert two.list("") == ["c2/config"] and two.list_dirs("") == ["c2"]
    assert whole.list("") == ["one/c1/config", "two/deeper/c2/config"]
    assert whole.list_dirs("") == ["one", "two"]


def test_s3_pagination(aws_env: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.paginate

    bucket = _new_bucket()
    store = open_store(f"s3://{bucket}/p")
    keys = [f"c{i % 3}/k{i:02d}" for i in range(12)]
    for key in keys:
        store.put(key, b"-")
    paginate = botocore.paginate.Paginator.paginate

    def small_pages(self: Any, **kwargs: Any) -> Any:
        return paginate(self, PaginationConfig={"PageSize": 2}, **kwargs)

    monkeypatch.setattr(botocore.paginate.Paginator, "paginate", small_pages)
    monkeypatch.setattr("pykops.state.s3._DELETE_BATCH", 2)
    assert store.list("") == sorted(keys)
    assert store.list_dirs("") == ["c0", "c1", "c2"]
    assert store.delete_prefix("c1") == 4
    assert store.list("") == sorted(k for k in keys if not k.startswith("c1/"))


def test_s3_access_denied(aws_env: AwsEmulator) -> None:
    bucket = _new_bucket()
    store = open_store(f"s3://{bucket}")
    store.put("c1/config", b"x")
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    _s3_client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    with pytest.raises(StateStoreError) as err:
        store.read("c1/config")
    message = str(err.value)
    assert message.startswith(f"access denied: cannot read c1/config in the state store s3://{bucket}")
    assert "AccessDenied" in message and "\n" not in message
    with pytest.raises(StateStoreError, match="access denied: cannot write"):
        store.create("c1/new", b"x")


def test_s3_no_credentials(aws_env: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store("s3://some-bucket")
    with pytest.raises(StateStoreError, match="no AWS credentials"):
        store.read("c1/config")


# --- racing writers -------------------------------------------------------------------------------

RACE_ROUNDS = {"file": 60, "memfs": 200, "s3": 40}


def _race_threads(stores: list[StateStore], rounds: int, mode: str) -> list[list[str]]:
    """Each round all writers read, then all update (or create) at once; return each round's outcomes."""
    barrier = threading.Barrier(len(stores))
    outcomes: list[list[str]] = [[] for _ in range(rounds)]
    versions: list[set[str]] = [set() for _ in range(rounds)]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(n: int, store: StateStore) -> None:
        try:
            for i in range(rounds):
                data = f"round {i} writer {n}".encode()
                expected = ""
                if mode == "update":
                    current = store.read("race/key")
                    assert current is not None
                    expected = current.version
                    with lock:
                        versions[i].add(expected)
                barrier.wait()
                try:
                    if mode == "update":
                        store.update("race/key", data, expected_version=expected)
                    else:
                        store.create(f"race/key-{i}", data)
                    outcome = f"win:{n}"
                except ConflictError:
                    outcome = "conflict"
                with lock:
                    outcomes[i].append(outcome)
                barrier.wait()
        except BaseException as err:
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    if mode == "update":
        assert all(len(v) == 1 for v in versions), "writers must read the same version each round"
    return outcomes


def _check_one_winner_per_round(
    store: StateStore, outcomes: list[list[str]], writers: int, mode: str
) -> None:
    for i, round_outcomes in enumerate(outcomes):
        winners = [o for o in round_outcomes if o.startswith("win:")]
        assert len(round_outcomes) == writers
        assert len(winners) == 1, f"round {i}: {round_outcomes}"
        key = "race/key" if mode == "update" else f"race/key-{i}"
        if mode == "create" or i == len(outcomes) - 1:
            found = store.read(key)
            assert found is not None
            assert found.data == f"round {i} writer {winners[0][4:]}".encode()


@parametrize_backends
@pytest.mark.parametrize("mode", ["update", "create"])
def test_racing_threads_exactly_one_wins(store_url: str, mode: str) -> None:
    rounds = RACE_ROUNDS[store_url.split(":", 1)[0]]
    writers = 3
    stores = [open_store(store_url) for _ in range(writers)]  # as if separate pykops runs
    if mode == "update":
        stores[0].create("race/key", b"initial")
    outcomes = _race_threads(stores, rounds, mode)
    _check_one_winner_per_round(stores[0], outcomes, writers, mode)


def _process_racer(url: str, rounds: int, mode: str, writer: int, barrier: Any, results: Any) -> None:
    """A writer in its own process: same protocol as the threads in _race_threads."""
    store = open_store(url)
    out: list[tuple[int, str, str]] = []
    try:
        for i in range(rounds):
            data = f"round {i} writer {writer}".encode()
            version = ""
            if mode == "update":
                current = store.read("race/key")
                assert current is not None
                version = current.version
            barrier.wait()
            try:
                if mode == "update":
                    store.update("race/key", data, expected_version=version)
                else:
                    store.create(f"race/key-{i}", data)
                out.append((i, version, f"win:{writer}"))
            except ConflictError:
                out.append((i, version, "conflict"))
            barrier.wait()
    finally:
        results.put((writer, out))


@pytest.mark.parametrize("mode", ["update", "create"])
def test_file_racing_processes_exactly_one_wins(tmp_path: Path, mode: str) -> None:
    url = f"file://{tmp_path / 'state'}"
    store = open_store(url)
    if mode == "update":
        store.create("race/key", b"initial")
    rounds, writers = 40, 2
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers, timeout=60)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_process_racer, args=(url, rounds, mode, n, barrier, results))
        for n in range(writers)
    ]
    for p in procs:
        p.start()
    collected = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(collected) == list(range(writers))
    outcomes: list[list[str]] = [[] for _ in range(rounds)]
    for writer in range(writers):
        rows = collected[writer]
        assert len(rows) == rounds
        for i, _version, outcome in rows:
            outcomes[i].append(outcome)
    if mode == "update":
        for i in range(rounds):
            assert collected[0][i][1] == collected[1][i][1], "both processes read the same version"
    _check_one_winner_per_round(store, outcomes, writers, mode)
    assert os.listdir(tmp_path / "state" / "race")  # sanity: the processes wrote into this store
