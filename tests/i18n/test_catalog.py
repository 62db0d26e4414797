"""The message catalogs are complete and consistent: every string in the code is in the catalog
(makemessages finds nothing new), every entry has a real translation with the same placeholders, and
the domain terms are translated as locale/GLOSSARY.md says."""

import re
import shutil
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.test import override_settings

from config.i18n import CATALOG_LOCALES, DOMAINS, EXTRACT_IGNORE, LOCALE_DIR, extract

GLOSSARY = LOCALE_DIR / "GLOSSARY.md"
PLACEHOLDER = re.compile(r"%\([a-z_0-9]+\)[sdf]|\{[a-z_0-9]*\}|%[sd]")
MARKUP = re.compile(r"<[^>]*>")
COLUMN_NAMES = re.compile(r"\b[a-z_]+(?:\[?,[a-z_]+\]?)+")  # a file's header, "hostname,cluster,...": code


def catalogs(locale_dir: Path = LOCALE_DIR) -> dict[str, object]:
    found = {}
    for locale in CATALOG_LOCALES:
        for domain in DOMAINS:
            path = locale_dir / locale / "LC_MESSAGES" / f"{domain}.po"
            if path.exists():
                with path.open("rb") as po_file:
                    found[f"{locale}/{domain}"] = read_po(po_file, locale=locale)
    return found


def entries(catalog):
    """(msgid, msgstr) pairs, one per plural form, header left out."""
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, (tuple, list)) else (message.id,)
        strs = message.string if isinstance(message.string, (tuple, list)) else (message.string,)
        yield message, ids, strs


def test_every_message_has_a_translation_with_the_same_placeholders():
    found = catalogs()
    assert "zh_Hans/django" in found
    problems = []
    for name, catalog in found.items():
        for message, ids, strs in entries(catalog):
            if message.fuzzy:
                problems.append(f"{name}: fuzzy: {ids[0]!r}")
            if not all(strs):
                problems.append(f"{name}: not translated: {ids[0]!r}")
                continue
            wanted = sorted(PLACEHOLDER.findall(ids[-1]))
            for translated in strs:
                if sorted(PLACEHOLDER.findall(translated)) != wanted:
                    problems.append(f"{name}: placeholders differ: {ids[0]!r} -> {translated!r}")
    assert not problems, "\n".join(problems)


def glossary_terms() -> list[tuple[str, str]]:
    """(English, Chinese) from the glossary's checked tables ("... (checked)" headings)."""
    terms, checked = [], False
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            checked = line.rstrip().endswith("(checked)")
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if checked and line.startswith("|") and len(cells) >= 2 and cells[0] not in {"English", ""} and not set(cells[0]) <= {"-"}:
            terms.append((cells[0], cells[1]))
    return terms


def glossary_problems(found: dict) -> list[str]:
    """Messages whose translation lacks the glossary's Chinese for an English term they contain."""
    terms = glossary_terms()
    problems = []
    for name, catalog in found.items():
        for _message, ids, strs in entries(catalog):
            # the words a reader reads: not placeholders (%(site)s), HTML markup nor a file's column names
            words = COLUMN_NAMES.sub(" ", MARKUP.sub(" ", PLACEHOLDER.sub(" ", ids[0])))
            for english, chinese in terms:
                # the term as a word (plurals too), not inside another word: "site" is not in "website"
                if re.search(rf"(?<![\w-]){re.escape(english)}(?:s|es)?(?![\w])", words, re.IGNORECASE):
                    for translated in strs:
                        if translated and chinese not in translated:
                            problems.append(f"{name}: {ids[0]!r} -> {translated!r}: {english!r} should be {chinese!r}")
    return problems


def test_domain_terms_are_translated_as_the_glossary_says():
    assert len(glossary_terms()) > 30
    problems = glossary_problems(catalogs())
    assert not problems, "\n".join(problems)


def test_the_glossary_check_catches_a_wrong_term_and_passes_the_right_one(tmp_path):
    # Given a catalog translating "invoice" as 发票 where the glossary says 账单 (a check that cannot fail
    # proves nothing), and one translating it as the glossary says
    path = tmp_path / "zh_Hans" / "LC_MESSAGES"
    path.mkdir(parents=True)
    header = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
    (path / "django.po").write_text(header + 'msgid "Your invoices"\nmsgstr "您的发票"\n', encoding="utf-8")
    wrong = glossary_problems(catalogs(tmp_path))
    (path / "django.po").write_text(header + 'msgid "Your invoices"\nmsgstr "您的账单"\n', encoding="utf-8")
    right = glossary_problems(catalogs(tmp_path))
    # Then only the wrong one is reported, naming the term
    assert len(wrong) == 1 and "'invoice' should be '账单'" in wrong[0]
    assert right == []


def msgids(locale_dir: Path) -> dict[str, set[str]]:
    return {name: {ids[0] for _m, ids, _s in entries(catalog)} for name, catalog in catalogs(locale_dir).items()}


def test_makemessages_finds_nothing_new(tmp_path, monkeypatch):
    """Every marked string of the code and templates is in the catalog, and the catalog has nothing the
    code no longer uses. On failure: `make messages`, then translate the new entries.

    makemessages writes into ./locale of the directory it runs in, whatever LOCALE_PATHS says, so it
    runs in a copy of the sources: the repository's catalog is never touched by the test."""
    if not shutil.which("xgettext"):
        pytest.fail("xgettext is missing: install gettext (make test runs scripts/ensure-gettext.sh)")
    copy = tmp_path / "src"
    shutil.copytree(settings.BASE_DIR, copy, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.mo", "*.pyc", ".pytest_cache", ".ruff_cache", ".hypothesis", *EXTRACT_IGNORE))
    monkeypatch.chdir(copy)
    with override_settings(LOCALE_PATHS=[copy / "locale"]):
        extract(verbosity=0)
    before, after = msgids(LOCALE_DIR), msgids(copy / "locale")
    problems = []
    for name in sorted(set(before) | set(after)):
        new = after.get(name, set()) - before.get(name, set())
        gone = before.get(name, set()) - after.get(name, set())
        problems += [f"{name}: not in the catalog: {msgid!r}" for msgid in sorted(new)]
        problems += [f"{name}: no longer used: {msgid!r}" for msgid in sorted(gone)]
    assert not problems, "run `make messages` and translate:\n" + "\n".join(problems)
