"""Local sandboxes for development and tests.

``pykops.sandbox.aws_emulator`` runs moto (with pykops' fidelity fixes) as a child process on a loopback
address; import it from there. This package imports nothing, so ``python -m pykops.sandbox.aws_emulator``
runs the module exactly once.
"""
