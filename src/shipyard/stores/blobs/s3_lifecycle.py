"""S3 bucket lifecycle rules that expire objects by key prefix (``S3BlobStore.set_expiry``).

Shipyard's rules are those whose ID starts with ``RULE_PREFIX`` (one per prefix: a tenant's key
folder); a bucket's other rules, an operator's own, are kept as they are. The configuration is
read, and written back only when Shipyard's rules changed (PutBucketLifecycleConfiguration
replaces the whole list; with no rule left it is deleted). S3 takes at most ``MAX_RULES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["MAX_RULES", "RULE_PREFIX", "current_rules", "reconcile"]

log = structlog.get_logger(__name__)

RULE_PREFIX = "shipyard-"
MAX_RULES = 1000
UNSUPPORTED = frozenset({"NotImplemented", "MethodNotAllowed", "UnsupportedOperation"})


def _rule(prefix: str, days: int) -> dict[str, Any]:
    return {
        "ID": RULE_PREFIX + prefix.rstrip("/"),
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
    }


def _ours(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("ID", "")).startswith(RULE_PREFIX)


def _key(rule: Mapping[str, Any]) -> tuple[str, str, int]:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    return str(prefix), str(rule.get("Status")), int(rule.get("Expiration", {}).get("Days", 0))


async def current_rules(s3: S3Client, bucket: str) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules (none: an empty list)."""
    from botocore.exceptions import ClientError

    try:
        found = await s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise
    return [dict(rule) for rule in found.get("Rules", [])]


async def reconcile(s3: S3Client, bucket: str, days: Mapping[str, int]) -> bool | None:
    """Make Shipyard's rules of ``bucket`` expire each prefix after its days; whether the
    configuration changed, None when the server has no lifecycle rules."""
    from botocore.exceptions import ClientError

    try:
        rules = await current_rules(s3, bucket)
        others = [rule for rule in rules if not _ours(rule)]
        wanted = [_rule(prefix, n) for prefix, n in sorted(days.items())]
        if len(others) + len(wanted) > MAX_RULES:
            log.warning("blob.lifecycle_rules_capped", bucket=bucket, wanted=len(wanted))
            wanted = wanted[: MAX_RULES - len(others)]
        if sorted(map(_key, filter(_ours, rules))) == sorted(map(_key, wanted)):
            return False
        if others or wanted:
            config: Any = {"Rules": [*others, *wanted]}
            put = s3.put_bucket_lifecycle_configuration
            await put(Bucket=bucket, LifecycleConfiguration=config)
        else:
            await s3.delete_bucket_lifecycle(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in UNSUPPORTED:
            raise
        log.info("blob.lifecycle_unsupported", bucket=bucket)
        return None
    return True
