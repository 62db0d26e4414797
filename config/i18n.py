"""The message catalogs: locale/<language>/LC_MESSAGES/<domain>.po, compiled to .mo.

The .po files are the source (`make messages` extracts new strings into them; translators edit them);
the .mo files Django reads are built from them by `make`, the Dockerfile and the test session with
Babel's pure-Python compiler, so no system gettext is needed to serve Chinese. The .mo files are not
committed. Fuzzy entries are not compiled: a guess is never shown as a translation.

    python -m config.i18n            # compile every catalog whose .po is newer than its .mo
    python -m config.i18n extract    # `make messages`: add new strings to the .po files, drop gone ones
"""

import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
LOCALE_DIR = BASE_DIR / "locale"
# The translated languages (their catalogs' directory names) and what makemessages never reads.
CATALOG_LOCALES = ["zh_Hans"]
EXTRACT_IGNORE = [".venv", "node_modules", ".local", "tests", "bench", "scripts", "test-results"]
DOMAINS = ["django", "djangojs"]


def in_chinese() -> bool:
    """Whether the active language (the page's, the email's) is Chinese."""
    from django.utils.translation import get_language

    return (get_language() or "").lower().startswith("zh")


def local_text(name: str | None, name_zh: str | None) -> str | None:
    """A place's name in the reader's language: name_zh in Chinese when the catalog has one, else name
    (hubs, provinces and hub clusters carry both, from shared/data/regions.csv)."""
    return name_zh if name_zh and in_chinese() else name


def extract(*, verbosity: int = 1) -> None:
    """Django's makemessages for every catalog and domain, as `make messages` runs it: no source
    locations (so a moved line does not rewrite the catalog) and no obsolete entries. Run from the
    repository root; writes to settings.LOCALE_PATHS[0]. Needs xgettext (Debian's gettext)."""
    from django.core.management import call_command

    for domain in DOMAINS:
        call_command("makemessages", locale=CATALOG_LOCALES, domain=domain, no_location=True, no_obsolete=True,
                     ignore_patterns=EXTRACT_IGNORE, verbosity=verbosity)


def compile_catalogs(locale_dir: Path = LOCALE_DIR, *, force: bool = False) -> list[Path]:
    """Compile each .po under locale_dir to its .mo (only stale ones unless force); the .mo files written."""
    # Imported here: the web and worker processes import this module for in_chinese/local_text and
    # never compile, so they need not load Babel's catalog machinery at start-up.
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po_path in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        mo_path = po_path.with_suffix(".mo")
        if not force and mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parent.parent.name)
        tmp = mo_path.with_suffix(".mo.tmp")
        with tmp.open("wb") as mo_file:
            write_mo(mo_file, catalog, use_fuzzy=False)
        tmp.replace(mo_path)  # a server reading the catalog never sees half a file
        written.append(mo_path)
    return written


if __name__ == "__main__":
    if "extract" in sys.argv:
        import os

        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        django.setup()
        os.chdir(BASE_DIR)
        extract()
    for path in compile_catalogs(force="--force" in sys.argv):
        print(f"compiled {path.relative_to(LOCALE_DIR.parent)}")
