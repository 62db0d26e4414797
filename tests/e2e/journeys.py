"""What the four journeys (tests/e2e/test_journeys.py) share: a browser context in the interface language,
screenshots at every step, sign-in and waiting that work the same in English and Chinese.

The language is the browser's: Playwright's `locale` sets Accept-Language (zh-CN for Chinese), which
Django's LocaleMiddleware maps to zh-hans - the way a visitor from China first meets the site. Selectors
use data-testid, URLs and form field names; a visible label is looked up with Django's gettext in the
journey's language (`Journey.t`), so the same test reads the English and the Chinese page.

Screenshots land in $JOURNEY_SCREENSHOTS (default test-results/journeys)/<language>/<journey>/NN-<step>.png.
"""

import os
import shutil
from pathlib import Path

from django.utils import translation

from tests.factories import DEFAULT_PASSWORD
from tests.marketplace.test_operations_e2e import wait_for

BASE_DIR = Path(__file__).resolve().parent.parent.parent
LANGUAGES = ["en", "zh-hans"]
# What the browser sends as Accept-Language: a Chinese browser says zh-CN, never Django's zh-hans.
BROWSER_LOCALES = {"en": "en-US", "zh-hans": "zh-CN"}


def screenshots_root() -> Path:
    configured = os.environ.get("JOURNEY_SCREENSHOTS")
    return Path(configured) if configured else BASE_DIR / "test-results" / "journeys"


class Journey:
    """One journey in one language: its browser pages, its screenshots, its language checks."""

    __test__ = False

    def __init__(self, *, name: str, language: str, browser, base_url: str):
        self.name = name
        self.language = language
        self.browser = browser
        self.base_url = base_url
        self.directory = screenshots_root() / language / name
        shutil.rmtree(self.directory, ignore_errors=True)  # the numbering restarts: no stale step from a longer run
        self.directory.mkdir(parents=True)
        self.step = 0
        self.contexts = []
        # Headings whose Chinese is missing or not on the page: collected over the whole journey and
        # reported at the end, so one run in Chinese lists every gap instead of stopping at the first.
        self.untranslated: list[str] = []

    # --- browser -----------------------------------------------------------------------------------------------

    def new_page(self):
        """A fresh browser (its own cookies: a second person) speaking the journey's language."""
        context = self.browser.new_context(base_url=self.base_url, locale=BROWSER_LOCALES[self.language],
                                           viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context.new_page()

    def shot(self, page, step: str) -> Path:
        """Save the page as NN-<step>.png (NN counts the journey's steps across all its pages)."""
        self.step += 1
        path = self.directory / f"{self.step:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts = []

    # --- language ----------------------------------------------------------------------------------------------

    def t(self, message) -> str:
        """`message` as the journey's interface shows it (the catalog's translation, or English). Also a
        lazy label (a choice's .label once it is gettext_lazy): str() inside the override translates it."""
        with translation.override(self.language):
            return translation.gettext(str(message))

    def money(self, amount_minor: int, currency: str) -> str:
        """An amount as the journey's interface formats it (inventory.pricing.format_money, in its language)."""
        from inventory.pricing import format_money

        with translation.override(self.language):
            return format_money(amount_minor, currency)

    def expect_page_language(self, page, heading: str) -> None:
        """The page is in the journey's language: <html lang> says so, and `heading` (an English h1/h2/h3
        text of the page) is shown as the catalog translates it. In Chinese a heading the catalog leaves
        English is noted (see assert_translated), never passed over."""
        assert page.locator("html").get_attribute("lang") == self.language
        expected = self.t(heading)
        if self.language != "en" and expected == heading:
            self.untranslated.append(f"{heading!r} (no translation in the catalog)")
            return
        headings = page.locator("h1, h2, h3").filter(has_text=expected)
        if headings.count() == 0:
            if self.language == "en":
                raise AssertionError(f"no heading {heading!r} on {page.url}")
            self.untranslated.append(f"{heading!r} (translated {expected!r}, not on {page.url})")

    def assert_translated(self) -> None:
        assert not self.untranslated, f"{self.language}: headings shown untranslated: " + "; ".join(self.untranslated)

    # --- people ------------------------------------------------------------------------------------------------

    def sign_in(self, page, user, *, password: str = DEFAULT_PASSWORD) -> None:
        """Through the sign-in form, by its field names (the labels change with the language)."""
        page.goto("/accounts/login/")
        page.fill('input[name="username"]', user.email)
        page.fill('input[name="password"]', password)
        page.locator('main form button[type="submit"]').click()
        page.wait_for_selector('[data-testid="signed-in-as"]')
        self.shot(page, "signed-in")


def reload_until(page, selector: str, *, timeout: float = 60.0, what: str | None = None, agents=()):
    """Reload `page` until `selector` is on it (pages that do not refresh themselves: reservation, operator)."""

    def present():
        page.reload()
        return page.locator(selector).count() > 0

    wait_for(present, timeout=timeout, what=what or f"{selector} on {page.url}", agents=agents)
    return page.locator(selector)
