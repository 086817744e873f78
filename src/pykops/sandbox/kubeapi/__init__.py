"""The sandbox's Kubernetes API emulator (a simulation), backed by a real etcd.

``KubeApiServer(etcd_endpoints, certfile=..., keyfile=..., client_ca_file=..., prefix=..., host=...,
port=..., service_cidr=..., version=...)`` serves the Kubernetes REST API on a loopback address for the Python
client and kubectl 1.32: legacy discovery, ``/version``, health endpoints, create/get/list/watch/update/patch/
delete for a table of built-in resources (``registry.RESOURCES``), label and field selectors, status and scale
subresources, ``pods/binding``, ``pods/eviction`` honouring PodDisruptionBudgets, server-side Table printing,
client-certificate authentication (CN = user, O = groups) and RBAC authorization from the stored roles.

Objects live in etcd v3 (``<prefix>/<resource>/<namespace>/<name>``, JSON), written with etcd transactions;
resourceVersion is etcd's mod_revision. Without etcd (no endpoint, no quorum) requests fail with etcd's error
(503/500/504): availability is etcd's, never a rule of ours.

A few controllers' effects happen inside the API at once: a new namespace gets the ``default``
ServiceAccount and the ``kube-root-ca.crt`` ConfigMap; a CRD is Established as soon as it is created and its
custom resources are served (NAME/AGE tables, no schema validation); deleting a namespace or a CRD deletes its
contents. Defaults at first start: namespaces default, kube-system, kube-public, kube-node-lease; the
system-cluster-critical and system-node-critical PriorityClasses; the ``kubernetes`` Service (first address of
the service range); the bootstrap ClusterRoles (cluster-admin, admin, edit, view, system:discovery, ...) and
their bindings.

What it does NOT do (by design or not yet):

* no admission webhooks or admission plugins beyond: namespace must exist, priority from priorityClassName,
  service clusterIP/nodePort allocation, pod defaults (phase Pending, schedulerName, priority...);
* validation is ObjectMeta's (names, labels) and the shape of spec/status only; unknown fields are stored as
  sent, and status sent on create is kept (the apiserver drops it for most kinds);
* server-side apply is a strategic merge of the applied configuration: managedFields are recorded, but field
  ownership conflicts are never reported and fields dropped from the applied config are not removed;
* strategic merge knows the common merge keys by field name (``patch.MERGE_KEYS``), not the full schemas;
* deletion is immediate (no graceful pod termination); finalizers and Foreground/Orphan propagation are
  recorded (deletionTimestamp + finalizer) for a garbage collector to act on;
* no protobuf (kubectl create <kind> sends protobuf and gets 415: use kubectl apply), no aggregated discovery
  (kubectl falls back), OpenAPI v3 only as much as kubectl needs to validate on the server (no schemas, so
  ``kubectl explain`` shows nothing useful), no limit/continue paging, no watch bookmarks, no pod
  exec/port-forward (``pods/log`` says the pod is simulated), no API aggregation (APIServices are only
  stored);
* no controllers (deployments, GC, disruption, node lifecycle): PDB allowed disruptions are computed from the
  live pods at eviction time, and evictions record the pod in ``status.disruptedPods``;
* without ``client_ca_file`` every request is served as a member of system:masters;
* RBAC role aggregation rules are not evaluated;
* a watch on an etcd member that lost its quorum ends within ~10 s (a periodic quorum read), not at once.
"""

from __future__ import annotations

from pykops.sandbox.kubeapi.server import DEFAULT_VERSION, KubeApiServer

__all__ = ["DEFAULT_VERSION", "KubeApiServer"]
