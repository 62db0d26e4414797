"""Node-agent credentials (and, later in this module, what agents report)."""

import hashlib
import secrets

from django.utils import timezone

from inventory.models import Node, NodeAgentToken

AGENT_KEY_PREFIX = "cfa_"  # noqa: S105 - a marker that makes leaked keys easy to spot, not a secret


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def node_agent_token_create(*, node: Node) -> tuple[NodeAgentToken, str]:
    """A new agent key for the node; earlier keys stay valid until revoked. The key is shown once."""
    key = AGENT_KEY_PREFIX + secrets.token_urlsafe(32)
    token = NodeAgentToken.objects.create(node=node, prefix=key[:12], key_hash=_hash_key(key))
    return token, key


def node_agent_token_revoke(*, token: NodeAgentToken) -> NodeAgentToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def node_agent_authenticate(*, key: str) -> NodeAgentToken | None:
    """The active agent token for this key, or None."""
    if not key.startswith(AGENT_KEY_PREFIX) or len(key) < 20:
        return None
    token = NodeAgentToken.objects.select_related("node").filter(prefix=key[:12], revoked_at__isnull=True).first()
    if token is None or not secrets.compare_digest(token.key_hash, _hash_key(key)):
        return None
    return token
