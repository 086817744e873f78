"""Fixtures for tests that need a Kubernetes API (the sandbox's emulator backed by a real etcd)."""
