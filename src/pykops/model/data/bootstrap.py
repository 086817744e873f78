"""pykops machine bootstrap, run once by cloud-init (Python 3 standard library only).

IMDSv2 credentials -> SigV4-signed S3 GETs of the pinned release -> SHA-256 checks -> wheels unpacked into
/opt/pykops/lib -> `pykops nodeup --config $PYKOPS_NODEUP_CONFIG`. Settings: /opt/pykops/bootstrap.env,
which the environment overrides; also AWS_ENDPOINT_URL(_S3), AWS_EC2_METADATA_SERVICE_ENDPOINT,
PYKOPS_BOOTSTRAP_ROOT (stands for /), PYKOPS_BOOTSTRAP_ARGS (instead of nodeup's).
Log: /var/log/pykops-bootstrap.log.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = os.environ.get("PYKOPS_BOOTSTRAP_ROOT", "/")
BASE = os.path.join(ROOT, "opt/pykops")
LOG = os.path.join(ROOT, "var/log/pykops-bootstrap.log")
REQUIRED = ("PYKOPS_VERSION", "PYKOPS_STATE_BUCKET", "PYKOPS_RELEASE_PREFIX", "PYKOPS_NODEUP_CONFIG")
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ATTEMPTS = 8


class Fatal(Exception):
    """Stop: retrying would not help."""


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # never resend the signed request elsewhere


IMDS_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)  # no proxy
S3_OPENER = urllib.request.build_opener(NoRedirect)


def log(message: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} pykops-bootstrap: {message}"
    print(line, file=sys.stderr, flush=True)
    os.makedirs(os.path.dirname(LOG), exist_ok=True)
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def settings() -> dict[str, str]:
    values, path = {}, os.path.join(BASE, "bootstrap.env")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            values = dict(line.strip().split("=", 1) for line in f if "=" in line)
    values.update({k: v for k, v in os.environ.items() if k.startswith("PYKOPS_")})
    missing = [k for k in REQUIRED if not values.get(k)]
    if missing:
        raise Fatal(f"missing settings {', '.join(missing)} (in {path} or the environment)")
    if not values["PYKOPS_NODEUP_CONFIG"].startswith("s3://"):
        raise Fatal(f"machines can only reach an s3:// state store, not {values['PYKOPS_NODEUP_CONFIG']}")
    return values


def retry(what: str, call: Callable[[], T], transient: tuple[int, ...] = ()) -> T:
    """Retry network errors, HTTP 5xx, 408, 429 and ``transient`` with exponential backoff."""
    delay = float(os.environ.get("PYKOPS_BOOTSTRAP_BACKOFF", "1"))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except urllib.error.HTTPError as e:
            error = f"HTTP {e.code} {e.reason} {' '.join(e.read(400).decode(errors='replace').split())}"
            if e.code < 500 and e.code not in (408, 429, *transient):
                raise Fatal(f"{what}: {error}") from e
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, short reads
            error = str(e)
        if attempt == ATTEMPTS:
            raise Fatal(f"{what}: still failing after {ATTEMPTS} attempts: {error}")
        log(f"{what}: {error}; retrying in {delay:.1f}s ({attempt}/{ATTEMPTS})")
        time.sleep(delay)
        delay = min(delay * 2, 30)
    raise AssertionError


def imds(path: str, token: str = "") -> str:
    url = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254").rstrip("/") + path
    if token:
        request = urllib.request.Request(url, headers={"X-aws-ec2-metadata-token": token})
    else:
        request = urllib.request.Request(
            url, headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, method="PUT"
        )
    with IMDS_OPENER.open(request, timeout=5) as response:
        return str(response.read().decode())


def instance_facts() -> tuple[dict[str, str], str]:
    """The instance role's credentials and the region (404: the profile is not attached yet)."""
    token = retry("IMDSv2 token", lambda: imds("/latest/api/token"))
    base = "/latest/meta-data/iam/security-credentials/"
    roles = retry("IMDS role", lambda: imds(base, token), (404,)).split()
    if not roles:
        raise Fatal("the instance has no IAM instance profile")
    creds = json.loads(retry("IMDS credentials", lambda: imds(base + roles[0], token), (404,)))
    return creds, retry("IMDS region", lambda: imds("/latest/meta-data/placement/region", token)).strip()


def sign_v4(
    method: str, url: str, headers: dict[str, str], creds: dict[str, str], region: str, amz_date: str
) -> dict[str, str]:
    """``headers`` with host, x-amz-date, x-amz-content-sha256, the token and the S3 SigV4 Authorization."""
    parts = urllib.parse.urlsplit(url)
    signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed.update({"host": parts.netloc, "x-amz-date": amz_date})
    signed.setdefault("x-amz-content-sha256", EMPTY_SHA256)
    if creds.get("Token"):
        signed["x-amz-security-token"] = creds["Token"]
    names = sorted(signed)
    query = sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    canonical = [method, parts.path or "/", urllib.parse.urlencode(query, quote_via=urllib.parse.quote)]
    canonical += ["".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names)]
    canonical.append(signed["x-amz-content-sha256"])  # the path above is URI-encoded once (S3)
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    digest = hashlib.sha256("\n".join(canonical).encode()).hexdigest()
    key = ("AWS4" + creds["SecretAccessKey"]).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds['AccessKeyId']}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed


def s3_url(bucket: str, region: str, key: str) -> str:
    path = urllib.parse.quote(key, safe="/-_.~")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{path}"
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    if "." in bucket:  # a dotted name does not match the wildcard certificate
        return f"https://s3.{region}.{domain}/{bucket}/{path}"
    return f"https://{bucket}.s3.{region}.{domain}/{path}"


def s3_get(where: dict[str, Any], key: str, dest: str) -> str:
    """Download ``key`` into ``dest``; return its SHA-256. Follows the bucket to its region."""

    def attempt() -> str:
        url = s3_url(where["bucket"], where["region"], key)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = sign_v4("GET", url, {}, where["creds"], where["region"], now)
        try:
            response = S3_OPENER.open(urllib.request.Request(url, headers=headers), timeout=60)
        except urllib.error.HTTPError as e:
            region = e.headers.get("x-amz-bucket-region")
            if not region or region == where["region"]:
                raise
            log(f"the bucket {where['bucket']} is in {region}")
            where["region"] = region
            return attempt()
        digest = hashlib.sha256()
        with response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    return retry(f"s3://{where['bucket']}/{key}", attempt, (403,))  # 403: a new role may not be live yet


def unpack(wheel: str, lib: str) -> None:
    """A wheel is a zip of its install tree (``*.data/purelib|platlib`` go to the root too)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            parts = info.filename.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data
                parts = parts[2:]
            if info.filename.startswith("/") or "\\" in info.filename or ".." in parts:
                raise Fatal(f"{wheel}: unsafe path {info.filename!r}")
            if not info.is_dir():
                target = os.path.join(lib, *parts)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.chmod(target, 0o755 if (info.external_attr >> 16) & 0o111 else 0o644)


def install(config: dict[str, str]) -> str:
    """Download, verify and unpack the release; return the lib directory."""
    arch = ARCHES.get(platform.machine().lower(), platform.machine())
    creds, region = instance_facts()
    where = {"bucket": config["PYKOPS_STATE_BUCKET"], "region": region, "creds": creds}
    prefix = config["PYKOPS_RELEASE_PREFIX"].strip("/") + "/"
    downloads, lib = os.path.join(BASE, "downloads"), os.path.join(BASE, "lib")
    os.makedirs(downloads, mode=0o700, exist_ok=True)
    s3_get(where, prefix + "manifest.json", os.path.join(downloads, "manifest.json"))
    with open(os.path.join(downloads, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("version") != config["PYKOPS_VERSION"]:
        raise Fatal(f"the manifest is for pykops {manifest.get('version')}, not {config['PYKOPS_VERSION']}")
    if not manifest.get("arches", {}).get(arch):
        raise Fatal(
            f"the release has no dependency wheels for {arch}: run `pykops release prepare --arch {arch}` "
            "and `pykops update cluster --yes`, then replace this machine"
        )
    shutil.rmtree(lib + ".new", ignore_errors=True)
    files = [f for f in manifest["files"] if arch in f["arches"]]
    for entry in files:
        name = entry["name"]
        if "/" in name or not name.endswith(".whl"):
            raise Fatal(f"unexpected file in the manifest: {name!r}")
        digest = s3_get(where, prefix + name, os.path.join(downloads, name))
        if not hmac.compare_digest(digest, entry["sha256"]):
            raise Fatal(f"{name}: SHA-256 {digest} does not match the manifest's {entry['sha256']}")
        unpack(os.path.join(downloads, name), lib + ".new")
    shutil.rmtree(lib + ".old", ignore_errors=True)
    if os.path.exists(lib):
        os.rename(lib, lib + ".old")
    os.rename(lib + ".new", lib)
    shutil.rmtree(lib + ".old", ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)
    log(f"pykops {config['PYKOPS_VERSION']} ({len(files)} wheels, {arch}) unpacked into {lib}")
    return lib


def main() -> int:
    try:
        config = settings()
        lib = install(config)
        args = os.environ.get("PYKOPS_BOOTSTRAP_ARGS", "").split()
        args = args or ["nodeup", "--config", config["PYKOPS_NODEUP_CONFIG"]]
        # -S: only the release and the standard library are importable, not the distribution's packages.
        code = "import sys; sys.path.insert(0, sys.argv[1]); from pykops.cli.main import main; "
        code += "sys.exit(main(sys.argv[2:]))"
        what = "pykops " + " ".join(args)
        log(f"running {what}")
        status = subprocess.call([sys.executable, "-S", "-c", code, lib, *args])
        if status:
            raise Fatal(f"{what} failed with exit code {status}")
        log(f"{what} succeeded")
        return 0
    except Fatal as e:
        log(f"FAILED: {e}")
    except Exception:
        log(f"FAILED: {traceback.format_exc()}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
