"""nodeup: what turns a fresh machine into a Kubernetes node or control-plane member.

``config`` (the per-instance-group NodeupConfig that ``update cluster`` writes), ``assets`` (pinned
downloads), ``render`` (the machine's files, pure), ``volumes`` (attaching the etcd volumes of a
control-plane machine); the I/O shell is ``pykops nodeup`` (:mod:`pykops.cli.nodeup`).
"""
