"""Seed a freshly started AWS emulator with what a new AWS account would already have.

Everything goes through boto3 against the emulator's endpoint, as a real client would:

* **Images.** The operating-system images pykops' release channels name (Ubuntu 24.04 amd64/arm64,
  owner 099720109477) and Amazon Linux 2023 (owner 137112412989), under their real names. On AWS these are
  public images of Canonical's and Amazon's accounts. The seeder does the same: it assumes a role in the
  owner's account (moto's STS switches accounts that way), registers the image there and makes it public; the
  emulator's ``ec2-shared-public-images`` fix makes public images of other accounts visible, so
  ``DescribeImages(Owners=["099720109477"], Filters=[{"Name": "name", ...}])`` from the caller's account finds
  them, with ``OwnerId`` 099720109477, and ``RunInstances`` can launch them. ``ec2-register-image-attributes``
  keeps their architecture and root device.
* **IAM managed policies.** The emulator's ``iam-aws-managed-policies`` fix loads them; the seeder checks that
  the ones pykops attaches exist.
* **State store** (optional): a versioned, encrypted bucket for ``KOPS_STATE_STORE``.

Seeding is idempotent: an image that is already registered is not registered again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pykops.errors import PykopsError

UBUNTU_OWNER = "099720109477"
AMAZON_OWNER = "137112412989"

#: AWS managed policies pykops (and kops) attach; the sandbox must have them.
REQUIRED_MANAGED_POLICIES: tuple[str, ...] = (
    "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
    "arn:aws:iam::aws:policy/AmazonS3FullAccess",
    "arn:aws:iam::aws:policy/AmazonVPCFullAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
)

#: Amazon Linux 2023 images (kernel 6.1, standard AMI) matching the channel's ``al2023`` image family.
AL2023_IMAGES: tuple[tuple[str, str], ...] = (
    ("al2023-ami-2023.7.20250609.0-kernel-6.1-x86_64", "x86_64"),
    ("al2023-ami-2023.7.20250609.0-kernel-6.1-arm64", "arm64"),
)

_PUBLISHER_ROLE = "pykops-sandbox-image-publisher"
_EC2_ARCH = {"amd64": "x86_64", "arm64": "arm64"}


class SeedError(PykopsError):
    """The emulator could not be seeded."""


@dataclass(frozen=True)
class SeedImage:
    """An image to publish: its owner account, AMI name and what ``DescribeImages`` reports about it."""

    owner: str
    name: str
    architecture: str  # EC2 spelling: x86_64 | arm64
    root_device_name: str
    boot_mode: str
    description: str

    @property
    def spec(self) -> str:
        """kops' ``<owner>/<AMI name>`` form, as in the channel files."""
        return f"{self.owner}/{self.name}"


@dataclass
class SeedResult:
    """What :func:`seed` found or created."""

    images: dict[str, str] = field(default_factory=dict)  # spec -> AMI id
    registered: list[str] = field(default_factory=list)  # specs registered by this call
    policies: list[str] = field(default_factory=list)
    state_bucket: str | None = None


def seed_images() -> list[SeedImage]:
    """Every image the shipped channels name (so ``update cluster`` resolves them), plus Amazon Linux 2023."""
    from pykops.api.channel import known_channels, load_channel

    images: dict[str, SeedImage] = {}
    for channel_name in known_channels():
        for image in load_channel(channel_name).images:
            if image.provider_id != "aws":
                continue
            arch = _EC2_ARCH[image.architecture_id]
            ubuntu = image.owner == UBUNTU_OWNER
            images.setdefault(
                image.name,
                SeedImage(
                    owner=image.owner,
                    name=image.ami_name,
                    architecture=arch,
                    root_device_name="/dev/sda1" if ubuntu else "/dev/xvda",
                    boot_mode="uefi" if arch == "arm64" else "uefi-preferred",
                    description=(
                        f"Canonical, Ubuntu, 24.04, {image.architecture_id} noble image"
                        if ubuntu
                        else image.ami_name
                    ),
                ),
            )
    for name, arch in AL2023_IMAGES:
        spec = f"{AMAZON_OWNER}/{name}"
        images.setdefault(
            spec,
            SeedImage(
                owner=AMAZON_OWNER,
                name=name,
                architecture=arch,
                root_device_name="/dev/xvda",
                boot_mode="uefi" if arch == "arm64" else "uefi-preferred",
                description="Amazon Linux 2023 AMI 2023.7.20250609.0 " + arch + " HVM kernel-6.1",
            ),
        )
    return list(images.values())


def client(
    service: str,
    endpoint_url: str,
    region: str,
    *,
    access_key: str = "testing",
    secret_key: str = "testing",
    session_token: str | None = None,
) -> Any:
    """A boto3 client for the emulator: explicit endpoint and credentials, no profile, no HTTP proxy."""
    import boto3
    import botocore.session
    from botocore.config import Config

    core = botocore.session.Session()
    core.set_config_variable("profile", None)  # ignore AWS_PROFILE: it may name a profile that is not here
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
        region_name=region,
    )
    config = Config(proxies={}, retries={"mode": "standard", "max_attempts": 3})
    return session.client(service, endpoint_url=endpoint_url, config=config)


def _publisher(endpoint_url: str, region: str, owner: str) -> Any:
    """An EC2 client acting as account ``owner`` (moto's STS AssumeRole switches accounts)."""
    sts = client("sts", endpoint_url, region)
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{owner}:role/{_PUBLISHER_ROLE}", RoleSessionName="pykops-sandbox-seed"
    )["Credentials"]
    return client(
        "ec2",
        endpoint_url,
        region,
        access_key=credentials["AccessKeyId"],
        secret_key=credentials["SecretAccessKey"],
        session_token=credentials["SessionToken"],
    )


def publish_images(endpoint_url: str, region: str, images: list[SeedImage], result: SeedResult) -> None:
    """Register each image in its owner's account (unless it is there) and make it public."""
    by_owner: dict[str, list[SeedImage]] = {}
    for image in images:
        by_owner.setdefault(image.owner, []).append(image)
    for owner, owned in by_owner.items():
        ec2 = _publisher(endpoint_url, region, owner)
        existing = {
            str(raw["Name"]): str(raw["ImageId"])
            for raw in ec2.describe_images(
                Owners=["self"], Filters=[{"Name": "name", "Values": [i.name for i in owned]}]
            )["Images"]
        }
        for image in owned:
            image_id = existing.get(image.name)
            if image_id is None:
                image_id = str(
                    ec2.register_image(
                        Name=image.name,
                        Description=image.description,
                        Architecture=image.architecture,
                        RootDeviceName=image.root_device_name,
                        VirtualizationType="hvm",
                        BootMode=image.boot_mode,
                        EnaSupport=True,
                        BlockDeviceMappings=[
                            {
                                "DeviceName": image.root_device_name,
                                "Ebs": {"VolumeSize": 8, "VolumeType": "gp3", "DeleteOnTermination": True},
                            }
                        ],
                    )["ImageId"]
                )
                result.registered.append(image.spec)
            ec2.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
            result.images[image.spec] = image_id


def check_managed_policies(endpoint_url: str, region: str, result: SeedResult) -> None:
    """Raise :class:`SeedError` unless every policy of :data:`REQUIRED_MANAGED_POLICIES` exists."""
    from botocore.exceptions import ClientError

    iam = client("iam", endpoint_url, region)
    for arn in REQUIRED_MANAGED_POLICIES:
        try:
            iam.get_policy(PolicyArn=arn)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise
            raise SeedError(
                f"the AWS emulator has no AWS managed policy {arn}",
                hint="start it with the iam-aws-managed-policies fix (the default)",
            ) from err
        result.policies.append(arn)


def ensure_state_bucket(endpoint_url: str, region: str, bucket: str) -> None:
    """Create ``bucket`` (if missing) with versioning, default encryption and no public access."""
    from botocore.exceptions import ClientError

    s3 = client("s3", endpoint_url, region)
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
            ]
        },
    )
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def seed(endpoint_url: str, region: str, *, state_bucket: str | None = None) -> SeedResult:
    """Seed the emulator at ``endpoint_url``: images in ``region``, IAM check, and the state bucket if named.

    The images are regional, like on AWS: seed every region clusters will use.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    result = SeedResult()
    try:
        publish_images(endpoint_url, region, seed_images(), result)
        check_managed_policies(endpoint_url, region, result)
        if state_bucket is not None:
            ensure_state_bucket(endpoint_url, region, state_bucket)
            result.state_bucket = state_bucket
    except (BotoCoreError, ClientError) as err:
        raise SeedError(f"could not seed the AWS emulator at {endpoint_url}: {err}") from err
    return result
