"""Documentation fragment ``stackops.webstack.redis_login``: how the redis modules log in."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description: Address of the server (and the Sentinel).
    type: str
    default: 127.0.0.1
  login_user:
    description: ACL user to authenticate as; empty for the password of the default user.
    type: str
  login_password:
    description: Password; empty for no authentication.
    type: str
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  tls_ca_file:
    description: CA bundle that signed the server certificates (host names are not checked).
    type: path
  tls_cert_file:
    description: Client certificate, when the server asks for one.
    type: path
  tls_key_file:
    description: Key of the client certificate.
    type: path
"""
