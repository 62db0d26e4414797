"""Reading an OpenSSH public key that a buyer pasted: one function, `ssh_public_key_parse`.

A key we accept ends up in `authorized_keys` on the machines a buyer rents, so it is checked as
OpenSSH itself would read it - the base64 blob is decoded and its fields are parsed - and every
refusal says what is wrong and what to paste instead. Pure logic: no database, no subprocess.

Accepted types, and why the others are refused:
- ssh-ed25519, sk-ssh-ed25519@openssh.com (hardware key), ecdsa-sha2-nistp256/384/521,
  sk-ecdsa-sha2-nistp256@openssh.com (hardware key);
- ssh-rsa with a modulus of at least 2048 bits (shorter keys are factorable or close to it; "ssh-rsa"
  here names the key format, the signature algorithm - rsa-sha2-256/512 - is negotiated later);
- ssh-dss (DSA) is refused: OpenSSH disabled it by default in 7.0 and removed it in 9.8;
- certificates and anything else are refused as not supported.
"""

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _

MAX_KEY_TEXT_BYTES = 16 * 1024  # a 16,384-bit RSA key is under 3 KB; more is not a public key
MAX_COMMENT_CHARS = 255
MIN_RSA_BITS = 2048

ED25519 = "ssh-ed25519"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA_P256 = "sk-ecdsa-sha2-nistp256@openssh.com"
RSA = "ssh-rsa"
DSA = "ssh-dss"
# ECDSA key type -> (curve name inside the blob, bytes of one coordinate, bits)
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", 32, 256),
    "ecdsa-sha2-nistp384": ("nistp384", 48, 384),
    "ecdsa-sha2-nistp521": ("nistp521", 66, 521),
}
ACCEPTED_TYPES = (ED25519, *ECDSA_CURVES, SK_ED25519, SK_ECDSA_P256, RSA)

_GENERATE_HINT = _("Make one with `ssh-keygen -t ed25519` and paste the contents of ~/.ssh/id_ed25519.pub.")


@dataclass(frozen=True)
class ParsedSshKey:
    key_type: str
    key_data: str  # the base64 blob, as pasted (it was checked to decode to exactly `blob`)
    comment: str
    bits: int
    fingerprint: str  # as `ssh-keygen -lf` prints it: SHA256:<unpadded base64 of SHA-256(blob)>

    @property
    def authorized_keys_line(self) -> str:
        return f"{self.key_type} {self.key_data} {self.comment}".rstrip()


def ssh_fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _refuse(message, code: str, **params) -> ValidationError:
    """A refusal in the reader's language: `message` is lazily translated, with %(name)s `params`; the
    text is made when it is shown (in the request's language), and reads as finished text before."""
    return ValidationError(_interpolate_lazy(message, params) if params else message, code=code)


def _fill(message, params: dict) -> str:
    return str(message) % {name: str(value) for name, value in params.items()}


_interpolate_lazy = lazy(_fill, str)


def _looks_like_key_type(token: str) -> bool:
    """Any type OpenSSH knows (ours, DSA, certificates), to tell options and extra keys from a comment."""
    return token in ACCEPTED_TYPES or token == DSA or token.endswith("-cert-v01@openssh.com")


def _holds_a_key(tokens: list[str]) -> bool:
    """A key type followed by key data somewhere in `tokens`. Every key blob starts with a 4-byte length
    below 2**24, so its base64 starts with "AAAA"; a comment that merely mentions "ssh-rsa" is not a key."""
    return any(_looks_like_key_type(a) and b.startswith("AAAA") for a, b in zip(tokens, tokens[1:], strict=False))


def ssh_public_key_parse(text: str) -> ParsedSshKey:
    """The key in `text` (one OpenSSH public-key line), or a ValidationError saying why it is refused.

    The error's code names the reason (not_openssh, private_key, bad_base64, type_mismatch, rsa_too_short,
    dsa_refused, options_refused, multiple_keys, too_long, control_characters, ...).
    """
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_KEY_TEXT_BYTES:
        raise _refuse(
            _("This is over %(kb)s KB - far longer than any public key. Paste one key (the .pub file)."),
            "too_long", kb=MAX_KEY_TEXT_BYTES // 1024,
        )
    if ("-----BEGIN" in text and "PRIVATE KEY-----" in text) or "PuTTY-User-Key-File" in text:
        raise _refuse(
            _("This is a PRIVATE key - never paste it anywhere; paste the .pub file "
              "(for example ~/.ssh/id_ed25519.pub) instead. If you shared it, make a new key pair."),
            "private_key",
        )
    text = text.strip()
    if not text:
        raise _refuse(_("Paste your public key. %(hint)s"), "required", hint=_GENERATE_HINT)
    # Tabs are allowed as separators (OpenSSH reads them so); line breaks are dealt with below.
    if any((ord(c) < 32 and c not in "\t\r\n") or 0x7F <= ord(c) < 0xA0 for c in text):
        raise _refuse(_("The key contains control characters (such as NUL or escape). Paste the .pub file's text only."),
                      "control_characters")
    if "BEGIN SSH2 PUBLIC KEY" in text:
        raise _refuse(
            _("This is an RFC 4716 (SSH2/PuTTY) public key. Convert it to OpenSSH format with "
              "`ssh-keygen -i -f key.pub` and paste the one line it prints."),
            "not_openssh",
        )
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        if sum(1 for line in lines if line.split()[0] in ACCEPTED_TYPES or line.split()[0] == DSA) > 1:
            raise _refuse(_("Paste one key per entry: this field holds several keys. Add each key separately."), "multiple_keys")
        raise _refuse(_("A public key is one line: this text has line breaks. Paste the .pub file's single line."), "not_openssh")

    tokens = text.split()
    declared = tokens[0]
    if not _looks_like_key_type(declared):
        if _holds_a_key(tokens[1:]):
            raise _refuse(
                _("Options before the key (from=..., command=..., no-pty, ...) are not accepted here: "
                  "paste the key alone, starting with its type (for example ssh-ed25519)."),
                "options_refused",
            )
        raise _refuse(
            _("This is not an OpenSSH public key: expected '<type> <base64 key> [comment]', starting with one of "
              "%(types)s. %(hint)s"),
            "not_openssh", types=", ".join(ACCEPTED_TYPES), hint=_GENERATE_HINT,
        )
    if declared == DSA:
        raise _refuse(_("DSA (ssh-dss) keys are refused: OpenSSH no longer accepts them. %(hint)s"), "dsa_refused",
                      hint=_GENERATE_HINT)
    if declared not in ACCEPTED_TYPES:
        raise _refuse(_("%(type)s keys are not supported: paste a plain public key, one of %(types)s."), "unsupported_type",
                      type=declared, types=", ".join(ACCEPTED_TYPES))
    if len(tokens) < 2:
        raise _refuse(_("The key data is missing after the type: paste the whole line of the .pub file."), "not_openssh")
    key_data = tokens[1]
    if _holds_a_key(tokens[2:]):
        raise _refuse(_("Paste one key per entry: this field holds several keys. Add each key separately."), "multiple_keys")

    try:
        blob = base64.b64decode(key_data, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(
            _("The key data is not valid base64 (was part of it cut off or changed when copying?)."), "bad_base64"
        ) from None
    bits = _check_blob(declared=declared, blob=blob)

    # The comment is whatever follows the key data, kept as written apart from the outer spaces.
    comment = text.split(None, 2)[2].strip() if len(tokens) > 2 else ""
    if not comment.isprintable():
        raise _refuse(_("The comment after the key must be printable characters only."), "comment_invalid")
    if len(comment) > MAX_COMMENT_CHARS:
        raise _refuse(_("The comment after the key is too long (at most %(max)s characters)."), "comment_invalid",
                      max=MAX_COMMENT_CHARS)
    return ParsedSshKey(key_type=declared, key_data=key_data, comment=comment, bits=bits, fingerprint=ssh_fingerprint(blob))


class _Truncated(Exception):
    pass


class _BlobReader:
    """The SSH wire format (RFC 4251): uint32 length-prefixed strings and mpints."""

    def __init__(self, blob: bytes):
        self.blob = blob
        self.at = 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.blob):
            raise _Truncated
        (length,) = struct.unpack(">I", self.blob[self.at : self.at + 4])
        start, self.at = self.at + 4, self.at + 4 + length
        if self.at > len(self.blob):
            raise _Truncated
        return self.blob[start : self.at]

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    @property
    def finished(self) -> bool:
        return self.at == len(self.blob)


def _check_blob(*, declared: str, blob: bytes) -> int:
    """The key's size in bits, after checking the blob holds exactly a key of the declared type."""
    damaged = _refuse(
        _("The key data is damaged: it does not hold a complete %(type)s key (was it cut off when copying?)."),
        "damaged", type=declared,
    )
    reader = _BlobReader(blob)
    try:
        inner = reader.string()
        if inner != declared.encode():
            shown = inner.decode() if len(inner) <= 64 and inner.isascii() and inner.decode().isprintable() else "different"
            raise _refuse(
                _("The key says it is %(type)s but its data is a %(shown)s key: the type and the key data do not "
                  "belong together. Paste the line exactly as it is in the .pub file."),
                "type_mismatch", type=declared, shown=shown,
            )
        if declared in (ED25519, SK_ED25519):
            if len(reader.string()) != 32:
                raise _refuse(_("The key data is damaged: an ed25519 public key is exactly 32 bytes."), "damaged")
            if declared == SK_ED25519:
                reader.string()  # the FIDO application, usually "ssh:"
            bits = 256
        elif declared in ECDSA_CURVES or declared == SK_ECDSA_P256:
            curve, coordinate_bytes, bits = ECDSA_CURVES["ecdsa-sha2-nistp256" if declared == SK_ECDSA_P256 else declared]
            if reader.string() != curve.encode():
                raise _refuse(_("The key data is damaged: a %(type)s key must be on the %(curve)s curve."), "damaged",
                              type=declared, curve=curve)
            point = reader.string()
            # An uncompressed point, as OpenSSH writes it: 0x04, then x and y.
            if len(point) != 1 + 2 * coordinate_bytes or point[0] != 4:
                raise damaged
            if declared == SK_ECDSA_P256:
                reader.string()  # the FIDO application
        else:  # RSA
            exponent, modulus = reader.mpint(), reader.mpint()
            if exponent < 3 or modulus <= 0:
                raise damaged
            bits = modulus.bit_length()
            if bits < MIN_RSA_BITS:
                raise _refuse(
                    _("This RSA key has %(bits)s bits; at least %(min)s are needed. %(hint)s"),
                    "rsa_too_short", bits=bits, min=MIN_RSA_BITS, hint=_GENERATE_HINT,
                )
    except _Truncated:
        raise damaged from None
    if not reader.finished:
        raise damaged
    return bits
