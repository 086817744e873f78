"""Keys and certificates (pure): CAs, issued certificates and kubeconfig documents.

The state-store side (keysets in kops' layout) is :mod:`pykops.state.keystore`.
"""

from pykops.pki.ca import Keypair, PKIError, issue, load_keypair, new_ca, new_service_account_key

__all__ = ["Keypair", "PKIError", "issue", "load_keypair", "new_ca", "new_service_account_key"]
