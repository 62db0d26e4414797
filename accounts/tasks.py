from celery import shared_task

from accounts.notifications import notification_emails_send, notification_emails_sweep


@shared_task(name="accounts.notification_emails_send", acks_late=True)
def notification_emails_send_task(dedupe_key: str) -> int:
    """Email the users told of one event who want email (accounts.notifications). Idempotent: a sent
    notification is marked under its row lock, so a redelivery sends nothing twice."""
    return notification_emails_send(dedupe_key=dedupe_key)


@shared_task(name="accounts.notification_emails_sweep")
def notification_emails_sweep_task() -> int:
    """Send notification emails whose task never ran (lost with the broker). Idempotent, like the task."""
    return notification_emails_sweep()
