"""Why a reservation changed: reason codes with parameters, and the one map that turns them into text.

A status event stores `reason_code` and `reason_params` (JSON), never a finished sentence, so the
text can be translated later and every amount and time is shown the way the *reader* needs it:
money through inventory.pricing.format_money ("CNY 16.40"), times in the viewer's zone with the zone
named ("2026-12-10 09:00 CST"). Parameters are stored raw: money as {"minor": 1640, "currency":
"CNY"} (see money_param), times as ISO 8601 in UTC (see time_param), counts as integers, an
operator's note as the text they typed.

Rows written before reason codes existed keep their old free text in `reason` (the data migration
gives the ones it recognises a code as well); render_reason falls back to that text for an unknown or
empty code, so an old timeline never goes blank.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.timezones import format_local_time
from inventory.models import Node
from inventory.pricing import format_money


@dataclass(frozen=True)
class ReasonTemplate:
    text: str  # a lazy translatable template with {name} placeholders
    times: tuple[str, ...] = ()  # parameters that are instants (stored as ISO 8601 UTC)
    money: tuple[str, ...] = ()  # parameters that are amounts (stored as {"minor", "currency"})


class ReasonCode:
    BOOKED = "booked"
    START_REACHED = "start_reached"
    HANDED_OVER = "handed_over"
    PERIOD_ENDED = "period_ended"
    NEVER_HANDED_OVER = "never_handed_over"
    UNHEALTHY_AT_ACTIVATION = "unhealthy_at_activation"
    CANCELLED_BY_BUYER = "cancelled_by_buyer"
    RELEASED_EARLY = "released_early"
    RELEASED_BEFORE_ACTIVE = "released_before_active"
    EXTENDED = "extended"
    OPERATOR_CANCELLED = "operator_cancelled"
    OPERATOR_RELEASED = "operator_released"
    OPERATOR_RELEASED_BEFORE_ACTIVE = "operator_released_before_active"
    CAPACITY_LOST = "capacity_lost"
    REHOMED = "rehomed"
    REHOMED_HEALTHY = "rehomed_healthy"
    FAILOVER_MOVED = "failover_moved"
    FAILOVER_NO_CAPACITY = "failover_no_capacity"
    FAILOVER_NOT_MOVED = "failover_not_moved"
    WORKLOAD_FAILED_MOVED = "workload_failed_moved"
    WORKLOAD_FAILED_ENDED = "workload_failed_ended"
    MOVE_BOOT_FAILED = "move_boot_failed"
    PROVISIONING_PUBLISHED = "provisioning_published"
    BOOT_FAILED = "boot_failed"
    BOOT_DEADLINE_MISSED = "boot_deadline_missed"
    NO_IMAGE_AT_START = "no_image_at_start"


# THE map: code -> message template. Add a code here (and only here) to give a new reason.
REASON_TEMPLATES: dict[str, ReasonTemplate] = {
    ReasonCode.BOOKED: ReasonTemplate(_("Booked {cards} cards at {price} per card-hour."), money=("price",)),
    ReasonCode.START_REACHED: ReasonTemplate(_("The start time was reached.")),
    ReasonCode.HANDED_OVER: ReasonTemplate(_("Devices handed over.")),
    ReasonCode.PERIOD_ENDED: ReasonTemplate(_("The booked period ended.")),
    ReasonCode.NEVER_HANDED_OVER: ReasonTemplate(_(
        "The booked period ended before the cards were handed over (the scheduler was not running); "
        "it never became active, so nothing is billed."
    )),
    ReasonCode.UNHEALTHY_AT_ACTIVATION: ReasonTemplate(_(
        "{count} of the {cards} cards sit on a node that is not online or is flagged, or on a site that is not "
        "online; billing starts only after the node passes its health check, so nothing is billed."
    )),
    ReasonCode.CANCELLED_BY_BUYER: ReasonTemplate(_("Cancelled by the buyer before the start; nothing to pay.")),
    ReasonCode.RELEASED_EARLY: ReasonTemplate(_("Released early by the buyer (booked until {booked_until})."), times=("booked_until",)),
    ReasonCode.RELEASED_BEFORE_ACTIVE: ReasonTemplate(
        _("Released early by the buyer (booked until {booked_until}). It never became active."), times=("booked_until",)
    ),
    ReasonCode.EXTENDED: ReasonTemplate(_("Extended from {old_end} to {new_end} on the same cards."), times=("old_end", "new_end")),
    ReasonCode.OPERATOR_CANCELLED: ReasonTemplate(_("Cancelled by a platform operator before the start; nothing to pay. Note: {note}")),
    ReasonCode.OPERATOR_RELEASED: ReasonTemplate(
        _("Released early by a platform operator (booked until {booked_until}). Note: {note}"), times=("booked_until",)
    ),
    ReasonCode.OPERATOR_RELEASED_BEFORE_ACTIVE: ReasonTemplate(
        _("Released early by a platform operator (booked until {booked_until}); it never became active. Note: {note}"),
        times=("booked_until",),
    ),
    ReasonCode.CAPACITY_LOST: ReasonTemplate(
        _("{cards} of these cards sit on node {node}, whose status became {node_status} at {at}."), times=("at",)
    ),
    ReasonCode.REHOMED: ReasonTemplate(_("{cards} cards are moving to other devices from {at}."), times=("at",)),
    ReasonCode.REHOMED_HEALTHY: ReasonTemplate(_("The new devices are healthy; handed over again.")),
    ReasonCode.FAILOVER_MOVED: ReasonTemplate(_(
        "Node {node} failed (last heard from at {at}); {cards} cards were moved to {target}. "
        "The time from {at} until the new cards are healthy is not billed."
    ), times=("at",)),
    ReasonCode.FAILOVER_NO_CAPACITY: ReasonTemplate(_(
        "Node {node} failed (last heard from at {at}) and no equivalent cards were free to move {cards} cards to "
        "(same model in this cluster or national hub{alternatives}), so the reservation ended at {at}. "
        "Nothing after {at} is billed."
    ), times=("at",)),
    ReasonCode.FAILOVER_NOT_MOVED: ReasonTemplate(_(
        "Node {node}, which holds {cards} of these cards, failed and no equivalent cards are free yet. "
        "If it is not back online by the start, the reservation fails with nothing to pay."
    )),
    ReasonCode.WORKLOAD_FAILED_MOVED: ReasonTemplate(_(
        "The workload stopped on node {node} at {at}; {cards} cards were moved to {target}. "
        "The time from {at} until the new cards are healthy is not billed."
    ), times=("at",)),
    ReasonCode.WORKLOAD_FAILED_ENDED: ReasonTemplate(_(
        "The workload stopped on node {node} at {at} and no equivalent cards were free to move {cards} cards to "
        "(same model in this cluster or national hub{alternatives}), so the reservation ended at {at}. "
        "Nothing after {at} is billed."
    ), times=("at",)),
    ReasonCode.MOVE_BOOT_FAILED: ReasonTemplate(_(
        "The workload could not start on node {node}, where the reservation was being moved: {reason}. "
        "The reservation ended at {at}; the time since service stopped is not billed."
    ), times=("at",)),
    ReasonCode.PROVISIONING_PUBLISHED: ReasonTemplate(
        _("The workload was sent to {nodes} node(s); they must report it running by {deadline}."), times=("deadline",)
    ),
    ReasonCode.BOOT_FAILED: ReasonTemplate(_(
        "The workload failed to start on node {node}: {reason}. It never became active, so nothing is billed; "
        "the cards were freed."
    )),
    ReasonCode.BOOT_DEADLINE_MISSED: ReasonTemplate(_(
        "Node {node} did not report the workload running by {deadline}. It never became active, so nothing is "
        "billed; the cards were freed."
    ), times=("deadline",)),
    ReasonCode.NO_IMAGE_AT_START: ReasonTemplate(_(
        "The workload {template} has no container image for the {stack} software stack any more, so it could not "
        "be started; nothing is billed and the cards were freed."
    )),
}


def money_param(amount_minor: int, currency: str) -> dict:
    return {"minor": int(amount_minor), "currency": currency}


def time_param(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def render_reason(code: str, params: dict | None, fallback: str = "", *, tz=None) -> str:
    """The reason as text for the current reader (active language and time zone, or `tz`).

    An empty or unknown code, or parameters that do not fit its template, give `fallback` (the free
    text stored with the event) instead of an error: a timeline must always render.
    """
    template = REASON_TEMPLATES.get(code or "")
    if template is None:
        return fallback
    values = dict(params or {})
    try:
        for name in template.times:
            values[name] = format_local_time(datetime.fromisoformat(values[name]), tz=tz)
        for name in template.money:
            values[name] = format_money(values[name]["minor"], values[name]["currency"])
        _add_phrases(values)
        return str(template.text).format(**values)
    except (KeyError, TypeError, ValueError):
        return fallback


def _add_phrases(values: dict) -> None:
    """The parameters that are words, in the reader's language: built here from the stored data (a model
    and where it is, the models a buyer accepted, a node status code), never stored as English text.
    Events written before these were data keep their stored `target` / `alternatives` text."""
    if "target_model" in values:
        values["target"] = gettext("%(model)s in %(site)s / %(cluster)s") % {
            "model": values["target_model"], "site": values["target_site"], "cluster": values["target_cluster"]}
    if "accepted_models" in values:
        models = values["accepted_models"]
        # Translators: appended to "same model in this cluster or national hub" in a failover reason.
        values["alternatives"] = gettext(", or the models you accepted: %(models)s") % {"models": ", ".join(models)} if models else ""
    if "node_status" in values:
        try:
            values["node_status"] = str(Node.Status(values["node_status"]).label).lower()
        except ValueError:  # a status the catalog no longer has: shown as stored
            pass
