"""The AWS connection shared by every resource kind: clients, tags, call accounting, error mapping.

boto3 is driven exactly as in production: the standard credential chain, the region of the cluster, and
``AWS_ENDPOINT_URL`` when set (the only thing that points pykops at an emulator).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from pykops.engine.types import RetryableError
from pykops.errors import PykopsError

# Tags kops puts on everything it owns (and that delete discovery looks for).
TAG_CLUSTER = "KubernetesCluster"
TAG_NAME = "Name"
TAG_INSTANCE_GROUP = "kops.k8s.io/instancegroup"


def cluster_owned_tag(cluster: str) -> str:
    return f"kubernetes.io/cluster/{cluster}"


# Error codes that mean "try again later" rather than "this is wrong".
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "DependencyViolation",
        "ResourceInUse",
        "ResourceInUseException",
        "IncorrectState",
        "IncorrectInstanceState",
        "InvalidGroup.InUse",
        "InvalidIPAddress.InUse",  # an Elastic IP still held by a NAT gateway being deleted
        "ScalingActivityInProgress",
        "InvalidVpcID.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidRouteTableID.NotFound",
        "InvalidInternetGatewayID.NotFound",
        "InvalidAllocationID.NotFound",
        "InvalidNatGatewayID.NotFound",
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateName.NotFoundException",
        "NoSuchEntity",
        "InvalidParameterValue",  # e.g. an instance profile not yet visible to EC2
        "ValidationError",  # e.g. autoscaling: launch template not yet visible
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
    }
)
# Among those, the ones only retried a few times (they may also be real mistakes).
SUSPECT_CODES = frozenset({"InvalidParameterValue", "ValidationError", "NoSuchEntity"})
READ_PREFIXES = ("Describe", "List", "Get")


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


@dataclass
class CallLog:
    """Counts every AWS API call by operation; thread-safe. Mutating = not Describe*/List*/Get*."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, service: str, operation: str) -> None:
        with self.lock:
            self.counts[f"{service}:{operation}"] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def mutating(self) -> dict[str, int]:
        return {op: n for op, n in self.counts.items() if not op.split(":", 1)[1].startswith(READ_PREFIXES)}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()


class AwsCloud:
    """Clients for one cluster in one region, with call accounting and tag helpers."""

    SERVICES = ("ec2", "iam", "autoscaling", "elbv2", "elb", "route53", "sts", "s3")

    def __init__(
        self, cluster_name: str, region: str, *, session: boto3.session.Session | None = None
    ) -> None:
        self.cluster_name = cluster_name
        self.region = region
        self.calls = CallLog()
        self._session = session or boto3.session.Session(region_name=region)
        self._config = Config(retries={"max_attempts": 8, "mode": "standard"}, max_pool_connections=32)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                client = self._session.client(service, region_name=self.region, config=self._config)
                client.meta.events.register("before-call", self._count)
                self._clients[service] = client
            return self._clients[service]

    def _count(self, model: Any, **_: Any) -> None:
        self.calls.record(model.service_model.service_name, model.name)

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def iam(self) -> Any:
        return self.client("iam")

    @property
    def autoscaling(self) -> Any:
        return self.client("autoscaling")

    @property
    def elbv2(self) -> Any:
        return self.client("elbv2")

    # --- tags ---------------------------------------------------------------------------------------
    def cluster_tags(
        self, name: str, extra: dict[str, str] | None = None, *, shared: bool = False
    ) -> dict[str, str]:
        tags = {
            TAG_CLUSTER: self.cluster_name,
            cluster_owned_tag(self.cluster_name): "shared" if shared else "owned",
            TAG_NAME: name,
        }
        tags.update(extra or {})
        return tags

    @staticmethod
    def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]

    @staticmethod
    def tag_dict(tags: Iterable[dict[str, str]] | None) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in tags or []}

    def tag_specifications(self, resource_type: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        return [{"ResourceType": resource_type, "Tags": self.tag_list(tags)}]

    def cluster_filter(self) -> list[dict[str, Any]]:
        """The EC2 filter that selects resources of this cluster (owned or shared)."""
        return [{"Name": "tag-key", "Values": [cluster_owned_tag(self.cluster_name)]}]


NO_CREDENTIALS = (
    "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
    "(or run pykops sandbox up for the local emulator)"
)


def require_credentials() -> None:
    """Fail early, with one line and before any change, when boto3 finds no credentials."""
    if boto3.session.Session().get_credentials() is None:
        raise PykopsError(NO_CREDENTIALS)


def classify(exc: BaseException) -> BaseException:
    """Map a botocore failure to RetryableError or a one-line PykopsError; others pass through."""
    code = error_code(exc)
    if code in RETRYABLE_CODES:
        return RetryableError(str(exc), code=code, max_attempts=4 if code in SUSPECT_CODES else None)
    if isinstance(exc, NoCredentialsError):
        return PykopsError(NO_CREDENTIALS)
    if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
        return PykopsError(f"AWS refused the call ({code}): the credentials lack a permission; {exc}")
    if isinstance(exc, BotoCoreError):
        return PykopsError(f"cannot reach AWS: {exc}")
    return exc
