"""Accessibility in a real browser: axe-core (from npm, node_modules/axe-core) run on every main page,
signed in as the role that uses it, over the seeded demo network with bookings and invoices; the
keyboard reaches the submit buttons of the search and booking forms with a visible focus; and the
search, reservation and invoice pages fit a 390 px wide phone without scrolling sideways."""

from pathlib import Path

import pytest
from django.conf import settings

from inventory.management.demo_network import DEMO_LOGINS, DEMO_PASSWORD
from tests.demo_pages import demo_objects, demo_seed, main_pages

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
    demo_seed()


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


def use_language(page, language: str, live_server_url: str) -> None:
    """Show the following pages in `language` (the cookie the language switcher sets)."""
    page.context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": live_server_url}])


@pytest.mark.parametrize("language", [code for code, _name in settings.LANGUAGES])
def test_the_main_pages_have_no_serious_accessibility_violations(page, demo, live_server, language):
    ids = demo_objects()
    failures, checked = [], []
    for role, urls in main_pages(ids).items():
        if role:
            sign_in(page, role)
        use_language(page, language, live_server.url)
        for url in urls:
            response = page.goto(url)
            assert response.ok, f"{url} as {role}: HTTP {response.status}"
            assert page.locator("html").get_attribute("lang") == language, url
            violations = axe_violations(page)
            checked.append(url)
            if violations:
                failures.append(describe(f"{url} (as {role or 'a visitor'}, {language})", violations))
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
