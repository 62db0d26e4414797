"""Finding interface text a page shows in the wrong language.

A page is read the way a person reads it: the text of its elements and the attributes people see or
hear (title, placeholder, alt, aria-label, a button's value), leaving out what is not prose (scripts,
styles, code, preformatted text, and anything marked translate="no", the HTML attribute for "a name,
not words"). From that text the values that come from data are taken away (a site's name, an email,
a model, a number, a time); what is left must be in the page's language:

- in Chinese, any Latin word that is not a name or a unit everybody writes in Latin letters (GB,
  ECU, SSH, ...) is an English string nobody translated;
- in English, any Chinese character is a translation shown to the wrong reader.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser

# Elements whose content is not interface prose.
SKIPPED_ELEMENTS = {"script", "style", "code", "pre", "kbd", "samp", "textarea", "svg", "template", "noscript"}
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SHOWN_ATTRIBUTES = ("title", "placeholder", "alt", "aria-label")

# Written in Latin letters in Chinese too: names, units, codes (locale/GLOSSARY.md "Names that are not
# translated"). A word here is never reported; keep it to what a Chinese page really writes this way.
LATIN_IN_CHINESE = {
    "Computeflow", "Stripe", "English",
    "ECU", "ECUs", "SSH", "API", "CSV", "JSON", "HTTP", "HTTPS", "URL", "ID", "IDs", "PDF", "Email",
    "GB", "GiB", "TB", "MB", "TFLOPS", "PFLOPS", "PFLOP", "TFLOP", "GBps", "Gbps", "kW", "W", "ms", "s",
    "CPU", "GPU", "NPU", "RAM", "BF", "FP", "INT", "HBM", "NVLink", "InfiniBand", "RoCE", "Ethernet", "PCIe",
    "CUDA", "ROCm", "CANN", "DTK", "MACA", "BANG", "Neuware",
    "CNY", "USD", "EUR", "UTC", "CST", "GMT", "HKT",
    "NVIDIA", "AMD", "Huawei", "Ascend", "Cambricon", "Hygon", "MetaX", "Kunlunxin", "Biren", "Moore", "Threads",
    "Iluvatar", "Enflame", "Intel", "Gaudi", "Google", "TPU", "XLA", "MXMACA", "MUSA", "SynapseAI", "TopsRider",
    "XRE", "BIRENSUPA", "CoreX", "ISO", "PUE", "MW", "Uptime", "Tier", "III", "IV", "AI", "SLA", "CN", "Connect",
    "OpenSSH", "keygen", "visa", "mastercard", "amex", "unionpay", "discover", "jcb",
    "Docker", "Linux", "Ubuntu", "vLLM", "PyTorch", "Chart", "js", "Redoc", "ReDoc", "Swagger", "OpenAPI",
    "Visa", "Mastercard", "UnionPay", "Amex", "ok",
}

LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Values that are data whatever the language. Emails and zones go before the database's values are
# taken out (so "Asia/Shanghai" goes whole, not as "Asia/" and a province); links and paths after them
# (a model's research notes quote links); ids, codes and file names last (so "Kunlun P800 (3rd gen)", a
# model's name, is still whole when its turn comes).
ADDRESS_PATTERNS = [
    re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),  # email
    re.compile(r"\b[A-Z][a-z]+(?:/[A-Za-z_]+)+\b"),  # time zones: Asia/Shanghai
    re.compile(r"\b[a-z_]+(?:\[?,[a-z_]+\]?)+"),  # a file's column names: hostname,node_id,token
]
LINK_PATTERNS = [
    re.compile(r"https?://\S+|/[\w./?=&%#-]+"),  # URLs and paths
]
CODE_PATTERNS = [
    re.compile(r"\b[0-9a-f]{8,}\b"),  # hashes, key prefixes
    re.compile(r"\b[\w-]*\d[\w-]*\b"),  # anything with a digit: H100, 910B, INV-2026-0001, draft-4, node-0001
    re.compile(r"\b[\w-]+\.(?:csv|json|png|pdf|txt)\b"),  # file names
    re.compile(r"\bssh(?:-ed25519|-rsa)?\b"),
]


@dataclass
class PageText:
    """The text people read on a page: one string per text node or shown attribute."""

    texts: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, skipped)
        self.page = PageText()

    @property
    def skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        # An element that names its own language (the switcher's "简体中文" / "English") is in that language
        # on purpose; translate="no" marks a name; hidden elements are not read.
        own_language = tag != "html" and "lang" in attrs
        skipped = (self.skipping or tag in SKIPPED_ELEMENTS or own_language or attrs.get("translate") == "no"
                   or "hidden" in attrs)
        if not skipped:
            for name in SHOWN_ATTRIBUTES:
                if attrs.get(name):
                    self.page.texts.append(attrs[name])
            if tag == "input" and attrs.get("type") in {"submit", "button", "reset"} and attrs.get("value"):
                self.page.texts.append(attrs["value"])
        if tag not in VOID_ELEMENTS:
            self.stack.append((tag, skipped))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_ELEMENTS and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        # Close up to the matching tag (HTML lets some end tags be left out).
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data):
        if not self.skipping and data.strip():
            self.page.texts.append(data)


def page_text(html: str) -> PageText:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page


class DataValues:
    """Strings that come from the database (names, hostnames, notes): taken out of the text before it
    is checked, longest first, so "Zhangjiakou North" goes as a whole and never leaves "North"."""

    def __init__(self, values: Iterable[str]):
        words = sorted({value.strip() for value in values if value and value.strip()}, key=len, reverse=True)
        # Whole values only: a short value ("flow") never bites into a longer word ("Computeflow").
        alternatives = "|".join(re.escape(word) for word in words)
        self._pattern = re.compile(rf"(?<![A-Za-z])(?:{alternatives})(?![A-Za-z])") if words else None

    def remove(self, text: str) -> str:
        return self._pattern.sub(" ", text) if self._pattern else text


def without_data(text: str, data: DataValues) -> str:
    for pattern in ADDRESS_PATTERNS:
        text = pattern.sub(" ", text)
    text = data.remove(text)
    for pattern in LINK_PATTERNS:
        text = pattern.sub(" ", text)
    for pattern in CODE_PATTERNS:
        text = pattern.sub(" ", text)
    return text


def untranslated(html: str, *, language: str, data: DataValues) -> list[str]:
    """The texts of the page that are in the other language: for Chinese, texts with a Latin word that
    is not a name or unit; for English, texts with a Chinese character. Each reported once, as shown."""
    found = []
    for text in page_text(html).texts:
        rest = without_data(text, data)
        if language.startswith("zh"):
            wrong = [word for word in LATIN_WORD.findall(rest) if word not in LATIN_IN_CHINESE]
        else:
            wrong = CJK.findall(rest)
        if wrong:
            shown = " ".join(text.split())
            if shown not in found:
                found.append(shown)
    return found
