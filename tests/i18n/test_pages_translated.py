"""Every page, in English and in Simplified Chinese, over the seeded demo network: each answers, says
which language it is in (<html lang>), and shows no interface text in the other language (the
untranslated-string finder in tests/i18n/untranslated.py). Forms are also sent with bad input, so their
error messages are read too."""

import pytest
from django.conf import settings
from django.urls import resolve

from tests.demo_pages import (
    NOT_PAGES,
    ROLES,
    all_pages,
    data_values,
    demo_objects,
    demo_seed,
    demo_user,
    page_url_names,
)
from tests.i18n.untranslated import DataValues, untranslated

LANGUAGES = [code for code, _name in settings.LANGUAGES]

# Bad input, by role: (method, url, data). Each page answers 200 or 400 with its errors shown.
BAD_INPUT = {
    None: [("post", "/accounts/signup/", {"email": "not-an-email", "password1": "1", "password2": "2"}),
           ("post", "/accounts/login/", {"username": "nobody@example.com", "password": "wrong"})],
    "buyer": [("post", "/accounts/ssh-keys/", {"public_key": "not a key", "name": ""}),
              ("get", "/market/", {"min_free_cards": "abc", "max_price_per_ecu_hour": "-1"}),
              ("get", "/market/quote/", {"cards": "0", "start": "yesterday", "duration_hours": "-3"})],
    "provider": [("post", "/provider/sites/new/", {"name": ""})],
}


def test_every_page_url_is_walked():
    """A page added to the site is walked in both languages (or named in NOT_PAGES with a reason)."""
    ids = dict.fromkeys(["billing_job", "reservation", "buyer_invoice", "buyer_line", "review_invoice", "line", "site",
                         "cluster", "node", "offer", "provider_offer", "job"], 1)
    walked = {resolve(url.split("?")[0]).url_name for urls in all_pages(ids).values() for url in urls}
    missing = page_url_names() - walked - set(NOT_PAGES)
    assert not missing, f"pages nobody walks: add them to tests/demo_pages.py all_pages (or NOT_PAGES): {sorted(missing)}"
    assert not walked & set(NOT_PAGES)


@pytest.mark.django_db(transaction=True)
def test_every_page_reads_entirely_in_the_chosen_language(client, catalog, stripe_settings):
    demo_seed()
    ids = demo_objects()
    data = DataValues(data_values())
    pages = all_pages(ids)
    failures, checked = [], 0
    for language in LANGUAGES:
        for role in ROLES:
            client.logout()
            if role:
                client.force_login(demo_user(role))
            client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
            requests = [("get", url, None) for url in pages[role]] + BAD_INPUT.get(role, [])
            for method, url, form in requests:
                response = getattr(client, method)(url, form)
                where = f"{method.upper()} {url} {form or ''} as {role or 'a visitor'} in {language}"
                if response.status_code not in ({200} if form is None else {200, 400}):
                    failures.append(f"{where}: HTTP {response.status_code}")
                    continue
                html = response.content.decode()
                checked += 1
                if f'<html lang="{language}"' not in html:
                    failures.append(f"{where}: <html lang> is not {language}")
                wrong = untranslated(html, language=language, data=data)
                if wrong:
                    failures.append(f"{where}: {len(wrong)} text(s) in the other language:\n    " + "\n    ".join(wrong[:40]))
    assert checked >= 2 * 55
    assert not failures, "\n".join(failures)
