"""IAM kinds: the roles of the cluster (``masters.<cluster>``, ``nodes.<cluster>``, ``bastions.<cluster>``),
their inline policies, their instance profiles and the profile→role links.

IAM lists cannot filter by tag, so ownership is decided here: a role or instance profile belongs to the
cluster when its name is ``<word>.<cluster>`` (one word without dots before the cluster name, so that
``masters.other.<cluster>`` of a cluster named ``other.<cluster>`` never matches) **and** it carries
``KubernetesCluster=<cluster>`` (or the ``kubernetes.io/cluster/<cluster>`` tag).

Calls per find: roles and inline policies come from one paginated ``GetAccountAuthorizationDetails``
(``Filter=["Role"]``, which returns each role with its tags and inline policies); instance profiles from one
paginated ``ListInstanceProfiles`` (``GetAccountAuthorizationDetails`` only shows the profiles that hold a
role). If a listed profile comes back without tags (AWS documents that IAM list calls may omit them), its tags
are read with ``ListInstanceProfileTags``: one call per profile named like the cluster's, at most one per
role (never per instance group).

Policy documents are compared as dicts: what AWS returns (URL-encoded JSON, which botocore usually decodes
already) is parsed.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from pykops.cloud.aws.cloud import TAG_CLUSTER, error_code
from pykops.cloud.aws.compute import is_owned, paginate, project, tags_to_set
from pykops.engine.types import Actual, FieldChange, Kind, Resource, RetryableError
from pykops.errors import PykopsError

_NO_SUCH_ENTITY = "NoSuchEntity"


def policy_dict(document: Any) -> Any:
    """A policy document as a dict, whether AWS (or botocore) gave a dict, JSON or URL-encoded JSON."""
    if isinstance(document, dict):
        return document
    if document is None:
        return None
    text = str(document)
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(urllib.parse.unquote(text))


def _name_matches(name: str, cluster: str) -> bool:
    suffix = "." + cluster
    return name.endswith(suffix) and re.fullmatch(r"[A-Za-z0-9_+=,@-]+", name[: -len(suffix)]) is not None


def _policy_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def _cluster_roles(cloud: Any) -> list[dict[str, Any]]:
    """The cluster's roles, each with ``RolePolicyList`` and ``Tags`` (one paginated call)."""
    roles = paginate(cloud.iam, "get_account_authorization_details", "RoleDetailList", Filter=["Role"])
    return [
        role
        for role in roles
        if _name_matches(str(role["RoleName"]), cloud.cluster_name)
        and is_owned(cloud.tag_dict(role.get("Tags")), cloud.cluster_name)
    ]


def _cluster_profiles(cloud: Any) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """The cluster's instance profiles with their tags."""
    found = []
    for profile in paginate(cloud.iam, "list_instance_profiles", "InstanceProfiles"):
        name = str(profile["InstanceProfileName"])
        if not _name_matches(name, cloud.cluster_name):
            continue
        if "Tags" in profile:
            tags = cloud.tag_dict(profile.get("Tags"))
        else:
            tags = cloud.tag_dict(
                paginate(cloud.iam, "list_instance_profile_tags", "Tags", InstanceProfileName=name)
            )
        if is_owned(tags, cloud.cluster_name):
            found.append((profile, tags))
    return found


def _refuse_foreign(cloud: Any, what: str, name: str, tags: dict[str, str]) -> None:
    if not is_owned(tags, cloud.cluster_name):
        raise PykopsError(
            f"IAM {what} {name!r} already exists but is not tagged {TAG_CLUSTER}={cloud.cluster_name}: "
            "pykops will not take over an IAM identity it did not create",
            hint=f"delete it, or tag it {TAG_CLUSTER}={cloud.cluster_name} if it belongs to this cluster",
        )


def _tolerate_missing(exc: ClientError) -> None:
    if error_code(exc) != _NO_SUCH_ENTITY:
        raise exc


def _delete_conflict(exc: ClientError, message: str) -> None:
    if error_code(exc) == "DeleteConflict":
        raise RetryableError(message, code="DeleteConflict") from exc


class IAMRole:
    """An IAM role named after its logical name; props ``assume_role_policy`` (dict) and ``tags``."""

    kind: ClassVar[str] = "IAMRole"
    immutable: ClassVar[frozenset[str]] = frozenset()
    replaceable: ClassVar[bool] = False

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = {r.name: r for r in desired}
        found = []
        for role in _cluster_roles(cloud):
            name = str(role["RoleName"])
            props = {
                "assume_role_policy": policy_dict(role.get("AssumeRolePolicyDocument")),
                "tags": cloud.tag_dict(role.get("Tags")),
            }
            attrs = {"id": name, "name": name, "arn": str(role["Arn"])}
            found.append(Actual(self.kind, name, attrs, project(props, wanted.get(name))))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        name = desired.name
        tags = props.get("tags") or {}
        try:
            role = cloud.iam.create_role(
                RoleName=name,
                Path="/",
                AssumeRolePolicyDocument=_policy_json(props["assume_role_policy"]),
                Tags=cloud.tag_list(tags),
            )["Role"]
        except ClientError as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise
            role = cloud.iam.get_role(RoleName=name)["Role"]
            current_tags = cloud.tag_dict(role.get("Tags"))
            _refuse_foreign(cloud, "role", name, current_tags)
            # Ours (a create that went through before a retry, or a find that missed it): bring it in line.
            if policy_dict(role.get("AssumeRolePolicyDocument")) != props["assume_role_policy"]:
                cloud.iam.update_assume_role_policy(
                    RoleName=name, PolicyDocument=_policy_json(props["assume_role_policy"])
                )
            missing = tags_to_set(current_tags, tags)
            if missing:
                cloud.iam.tag_role(RoleName=name, Tags=cloud.tag_list(missing))
        return {"id": name, "name": name, "arn": str(role["Arn"])}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        if props.get("assume_role_policy") != actual.props.get("assume_role_policy"):
            cloud.iam.update_assume_role_policy(
                RoleName=actual.name, PolicyDocument=_policy_json(props["assume_role_policy"])
            )
        tags = tags_to_set(actual.props.get("tags"), props.get("tags"))
        if tags:
            cloud.iam.tag_role(RoleName=actual.name, Tags=cloud.tag_list(tags))
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.iam.delete_role(RoleName=actual.name)
        except ClientError as exc:
            _delete_conflict(exc, f"IAM role {actual.name} still has policies or instance profiles")
            _tolerate_missing(exc)


class IAMRolePolicy:
    """The inline policy of a role, named after the role; props ``role`` (name) and ``policy_document``."""

    kind: ClassVar[str] = "IAMRolePolicy"
    immutable: ClassVar[frozenset[str]] = frozenset({"role"})
    replaceable: ClassVar[bool] = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = {r.name: r for r in desired}
        found = []
        for role in _cluster_roles(cloud):
            role_name = str(role["RoleName"])
            for policy in role.get("RolePolicyList") or []:
                name = str(policy["PolicyName"])
                if name != role_name:
                    continue  # not one of ours (ours are named after the role)
                props = {"role": role_name, "policy_document": policy_dict(policy.get("PolicyDocument"))}
                found.append(Actual(self.kind, name, {"id": name}, project(props, wanted.get(name))))
        return found

    def _put(self, cloud: Any, name: str, props: dict[str, Any]) -> dict[str, Any]:
        cloud.iam.put_role_policy(
            RoleName=props["role"], PolicyName=name, PolicyDocument=_policy_json(props["policy_document"])
        )
        return {"id": name}

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        return self._put(cloud, desired.name, props)

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        return self._put(cloud, actual.name, props)

    def delete(self, cloud: Any, actual: Actual) -> None:
        role = str(actual.props.get("role") or actual.name)
        try:
            cloud.iam.delete_role_policy(RoleName=role, PolicyName=actual.name)
        except ClientError as exc:
            _tolerate_missing(exc)


class IAMInstanceProfile:
    """An instance profile named after its logical name; prop ``tags``."""

    kind: ClassVar[str] = "IAMInstanceProfile"
    immutable: ClassVar[frozenset[str]] = frozenset()
    replaceable: ClassVar[bool] = False

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = {r.name: r for r in desired}
        found = []
        for profile, tags in _cluster_profiles(cloud):
            name = str(profile["InstanceProfileName"])
            attrs = {"id": name, "name": name, "arn": str(profile["Arn"])}
            found.append(Actual(self.kind, name, attrs, project({"tags": tags}, wanted.get(name))))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        name = desired.name
        tags = props.get("tags") or {}
        try:
            profile = cloud.iam.create_instance_profile(
                InstanceProfileName=name, Path="/", Tags=cloud.tag_list(tags)
            )["InstanceProfile"]
        except ClientError as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise
            profile = cloud.iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            current_tags = cloud.tag_dict(profile.get("Tags"))
            _refuse_foreign(cloud, "instance profile", name, current_tags)
            missing = tags_to_set(current_tags, tags)
            if missing:
                cloud.iam.tag_instance_profile(InstanceProfileName=name, Tags=cloud.tag_list(missing))
        return {"id": name, "name": name, "arn": str(profile["Arn"])}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        tags = tags_to_set(actual.props.get("tags"), props.get("tags"))
        if tags:
            cloud.iam.tag_instance_profile(InstanceProfileName=actual.name, Tags=cloud.tag_list(tags))
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.iam.delete_instance_profile(InstanceProfileName=actual.name)
        except ClientError as exc:
            _delete_conflict(exc, f"IAM instance profile {actual.name} still holds a role")
            _tolerate_missing(exc)


class IAMInstanceProfileRole:
    """The role an instance profile holds (named after the profile); props ``instance_profile``, ``role``."""

    kind: ClassVar[str] = "IAMInstanceProfileRole"
    immutable: ClassVar[frozenset[str]] = frozenset({"instance_profile", "role"})
    replaceable: ClassVar[bool] = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        wanted = {r.name: r for r in desired}
        found = []
        for profile, _tags in _cluster_profiles(cloud):
            name = str(profile["InstanceProfileName"])
            for role in profile.get("Roles") or []:
                role_name = str(role["RoleName"])
                props = {"instance_profile": name, "role": role_name}
                attrs = {"id": f"{name}/{role_name}"}
                found.append(Actual(self.kind, name, attrs, project(props, wanted.get(name))))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        profile, role = str(props["instance_profile"]), str(props["role"])
        try:
            cloud.iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)
        except ClientError as exc:
            if error_code(exc) != "LimitExceeded":
                raise
            held = cloud.iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"].get(
                "Roles", []
            )
            if [r.get("RoleName") for r in held] != [role]:
                raise PykopsError(
                    f"IAM instance profile {profile!r} already holds role "
                    f"{', '.join(str(r.get('RoleName')) for r in held)}, not {role!r}"
                ) from exc
        return {"id": f"{profile}/{role}"}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        return dict(actual.attrs)  # both props are immutable: a change is a replacement

    def delete(self, cloud: Any, actual: Actual) -> None:
        profile = str(actual.props.get("instance_profile") or actual.name)
        role = str(actual.props.get("role") or "")
        try:
            cloud.iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role)
        except ClientError as exc:
            _tolerate_missing(exc)


IAM_KINDS: list[Kind] = [IAMRole(), IAMRolePolicy(), IAMInstanceProfile(), IAMInstanceProfileRole()]
