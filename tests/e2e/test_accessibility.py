"""Accessibility in a real browser: axe-core (from npm, node_modules/axe-core) run on every main page,
signed in as the role that uses it, over the seeded demo network with bookings and invoices; the
keyboard reaches the submit buttons of the search and booking forms with a visible focus; and the
search, reservation and invoice pages fit a 390 px wide phone without scrolling sideways."""

import zoneinfo
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from billing.models import Invoice, InvoiceLine
from inventory.management.demo_network import DEMO_LOGINS, DEMO_PASSWORD
from inventory.models import Node, Offer, Site
from marketplace.models import Reservation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.x A and AA plus axe's best practices; a page fails on any violation axe rates serious or
# critical, and on the structure rules below whatever their impact (axe rates them moderate or minor,
# but a screen reader user finds the page by its main landmark and its headings).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING_IMPACTS = {"serious", "critical"}
STRUCTURE_RULES = {"landmark-one-main", "region", "page-has-heading-one", "heading-order", "empty-heading",
                   "empty-table-header", "landmark-unique", "landmark-no-duplicate-main"}
PHONE_WIDTH = 390


@pytest.fixture
def demo(catalog, stripe_settings):
    """The demo network, its bookings and two months of invoices (some approved, some for review)."""
    call_command("seed_demo", "--seed", "42", "--cards", "400", "--no-progress", stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo_market", stdout=StringIO())
    call_command("seed_demo_billing", verbosity=0, stdout=StringIO())


def sign_in(page, role):
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(DEMO_LOGINS[role])
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('[data-testid="signed-in-as"]')


def axe_violations(page) -> list[dict]:
    """Run axe-core in the page; the violations that fail a page, one dict per rule."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` (make test does)")
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async (tags) => {
             const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
             return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))}));
           }""",
        AXE_TAGS,
    )
    return [v for v in violations if v["impact"] in FAILING_IMPACTS or v["id"] in STRUCTURE_RULES]


def describe(url: str, violations: list[dict]) -> str:
    lines = [f"{url}:"]
    for violation in violations:
        lines.append(f"  [{violation['impact']}] {violation['id']}: {violation['help']}")
        for node in violation["nodes"][:5]:
            summary = " / ".join(line.strip() for line in (node["summary"] or "").splitlines()[1:3])
            lines.append(f"      {node['target']}  ({summary})")
        if len(violation["nodes"]) > 5:
            lines.append(f"      ... and {len(violation['nodes']) - 5} more")
    return "\n".join(lines)


def demo_objects() -> dict:
    """Ids of the demo's objects each role can open."""
    buyer = User.objects.get(email=DEMO_LOGINS["buyer"]).memberships.first().organization
    provider = User.objects.get(email=DEMO_LOGINS["provider"]).memberships.first().organization
    reservation = Reservation.objects.filter(buyer=buyer).order_by("-pk").first()
    buyer_invoice = Invoice.objects.filter(buyer=buyer).order_by("-pk").first()
    review_invoice = Invoice.objects.filter(status__in=["draft", "pending_review"]).order_by("pk").first()
    line = InvoiceLine.objects.filter(invoice=review_invoice).order_by("pk").first()
    site = Site.objects.filter(owner=provider).order_by("pk").first()
    node = Node.objects.filter(cluster__site=site).order_by("pk").first()
    cluster = node.cluster if node else None
    offer = Offer.objects.filter(cluster__site__lifecycle="online").order_by("pk").first()
    found = {"reservation": reservation, "buyer_invoice": buyer_invoice, "review_invoice": review_invoice,
             "line": line, "site": site, "cluster": cluster, "node": node, "offer": offer}
    missing = [name for name, value in found.items() if value is None]
    assert not missing, f"the demo seed has no {missing}"
    return {name: value.pk for name, value in found.items()}


def main_pages(ids: dict) -> dict[str | None, list[str]]:
    """The main pages by the role that uses them (None: signed out)."""
    tomorrow = (timezone.localtime(timezone.now(), zoneinfo.ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).strftime("%Y-%m-%dT%H:00")
    return {
        None: ["/", "/accounts/login/", "/accounts/signup/", "/catalog/"],
        "buyer": [
            "/market/", "/market/?min_free_cards=8", f"/market/offers/{ids['offer']}/", f"/market/quote/?cards=8&start={tomorrow}&duration_hours=24&currency=CNY",
            "/market/reservations/", f"/market/reservations/{ids['reservation']}/", "/market/dashboard/",
            "/market/invoices/", f"/market/invoices/{ids['buyer_invoice']}/", "/market/billing/payment/",
            "/accounts/ssh-keys/", "/accounts/notifications/", "/accounts/notifications/preferences/",
            "/accounts/members/", "/accounts/tokens/",
        ],
        "provider": [
            "/provider/", f"/provider/sites/{ids['site']}/", f"/provider/clusters/{ids['cluster']}/",
            f"/provider/clusters/{ids['cluster']}/maintenance/", f"/provider/nodes/{ids['node']}/",
            "/provider/nodes/import/", "/provider/earnings/", "/provider/dashboard/",
        ],
        "finance": [
            "/finance/", f"/finance/invoices/{ids['review_invoice']}/",
            f"/finance/invoices/{ids['review_invoice']}/lines/{ids['line']}/",
            "/finance/invoices/", "/finance/aging/", "/finance/revenue/", "/finance/reconciliation/",
        ],
        "operator": ["/operator/", "/network/"],
    }


def test_the_main_pages_have_no_serious_accessibility_violations(page, demo):
    ids = demo_objects()
    failures, checked = [], []
    for role, urls in main_pages(ids).items():
        if role:
            sign_in(page, role)
        for url in urls:
            response = page.goto(url)
            assert response.ok, f"{url} as {role}: HTTP {response.status}"
            violations = axe_violations(page)
            checked.append(url)
            if violations:
                failures.append(describe(f"{url} (as {role or 'a visitor'})", violations))
    assert len(checked) >= 35
    assert not failures, "axe-core found violations:\n" + "\n".join(failures)


def test_axe_does_catch_a_serious_violation(page, demo):
    # Given a page with an unlabelled field and an empty button (a check that cannot fail proves nothing)
    page.goto("/accounts/login/")
    page.evaluate("""() => { const f = document.createElement('input'); f.type = 'text';
        const b = document.createElement('button'); document.querySelector('main').append(f, b); }""")
    # Then axe reports both
    found = {violation["id"] for violation in axe_violations(page)}
    assert {"label", "button-name"} <= found, found


def focused(page) -> dict:
    """The focused element and whether its focus is visible: an outline of at least 2 px (the browser's
    own ring is 1 px and faint; app.css draws 3 px)."""
    return page.evaluate("""() => { const el = document.activeElement; const style = getComputedStyle(el);
        return {tag: el.tagName.toLowerCase(), type: el.type || '', text: (el.innerText || el.value || '').trim(),
                form: el.form ? (el.form.dataset.testid || '') : '',
                visible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2}; }""")


def tab_to_submit(page, form_testid: str, limit: int = 60) -> list[dict]:
    """Press Tab from the top of the page until the form's submit button has the focus."""
    page.locator("body").focus()
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        state = focused(page)
        seen.append(state)
        if state["form"] == form_testid and state["type"] == "submit":
            return seen
    pytest.fail(f"Tab never reached the submit button of {form_testid}: {seen}")


def test_the_keyboard_reaches_submit_in_the_search_and_booking_forms_with_a_visible_focus(page, demo):
    ids = demo_objects()
    sign_in(page, "buyer")
    for url, form in [("/market/", "search-form"), (f"/market/offers/{ids['offer']}/", "booking-form")]:
        page.goto(url)
        seen = tab_to_submit(page, form)
        in_form = [state for state in seen if state["form"] == form]
        # every field of the form was on the way, and each showed where the focus was
        assert len(in_form) >= 3, (url, in_form)
        assert all(state["visible"] for state in seen), (url, [s for s in seen if not s["visible"]])
        # and Enter on the focused submit button sends the form
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.locator('[data-testid="signed-in-as"]').count() == 1


def test_search_reservation_and_invoice_pages_fit_a_390_px_phone(page, demo):
    ids = demo_objects()
    page.set_viewport_size({"width": PHONE_WIDTH, "height": 844})
    sign_in(page, "buyer")
    too_wide, failures = {}, []
    for url in ["/market/", "/market/?min_free_cards=8", f"/market/reservations/{ids['reservation']}/",
                "/market/reservations/", "/market/invoices/", f"/market/invoices/{ids['buyer_invoice']}/"]:
        page.goto(url)
        width = page.evaluate("() => document.scrollingElement.scrollWidth")
        if width > PHONE_WIDTH:
            too_wide[url] = (width, page.evaluate("""(limit) => [...document.querySelectorAll('main *')]
                .filter(el => el.getBoundingClientRect().right > limit)
                .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''))""", PHONE_WIDTH))
        # a table that scrolls inside itself must still be reachable by keyboard (axe: scrollable-region-focusable)
        if violations := axe_violations(page):
            failures.append(describe(f"{url} at {PHONE_WIDTH} px", violations))
    assert not too_wide, f"pages wider than {PHONE_WIDTH} px: {too_wide}"
    assert not failures, "axe-core at phone width:\n" + "\n".join(failures)
