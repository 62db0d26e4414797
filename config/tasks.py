"""Enqueueing Celery tasks after the caller's transaction commits, without ever raising there."""

import logging

from django.db import transaction
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Few quick retries: a request must not hang for long on a dead broker.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def enqueue_after_commit(task, *args, **kwargs) -> None:
    """Enqueue `task(*args, **kwargs)` once the caller's transaction commits. The work has committed by
    then, so a broker that is down is logged, never raised (an exception there would turn a done action
    into a 500); every caller has a sweep that re-drives what was not enqueued."""

    def enqueue():
        try:
            task.apply_async(args=args, kwargs=kwargs, retry=True, retry_policy=_RETRY_POLICY)
        except (KombuError, RedisError, OSError):
            logger.exception("could not enqueue %s (args %s, kwargs %s); its sweep will", task.name, args, kwargs)

    transaction.on_commit(enqueue)
