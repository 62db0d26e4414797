"""Reading a pasted OpenSSH public key (accounts.ssh_keys): plain unit tests, no database."""

import base64
import shutil
import struct
import subprocess

import pytest
from django.core.exceptions import ValidationError

from accounts.ssh_keys import MAX_KEY_TEXT_BYTES, ssh_public_key_parse
from tests.accounts import ssh_key_samples as samples


def _wire(*fields: bytes) -> str:
    """Base64 of SSH wire-format strings, to build damaged or mismatched key data."""
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


def _refusal(text: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        ssh_public_key_parse(text)
    return caught.value


ED25519_DATA = samples.ED25519.split()[1]
# Key data with a truncated or wrong field (built outside the f-strings: Python 3.11 allows no backslash there).
ED25519_31_BYTES = _wire(b"ssh-ed25519", bytes(31))
ED25519_TRAILING_BYTES = _wire(b"ssh-ed25519", bytes(32), b"extra")
ED25519_NO_KEY = _wire(b"ssh-ed25519")
ED25519_CUT_SHORT = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20short").decode()
ECDSA_WRONG_CURVE = _wire(b"ecdsa-sha2-nistp256", b"nistp384", b"\x04" + bytes(64))
ECDSA_COMPRESSED_POINT = _wire(b"ecdsa-sha2-nistp256", b"nistp256", b"\x02" + bytes(32))
RSA_NEGATIVE_MODULUS = _wire(b"ssh-rsa", b"\x01\x00\x01", b"\xff" * 256)
NOT_A_TYPE_INSIDE = _wire(b"\xff\xfe")


@pytest.mark.parametrize("key", list(samples.ACCEPTED), ids=[t for t, _, _ in samples.ACCEPTED.values()])
def test_each_accepted_type_is_read_with_its_bits_and_ssh_keygen_fingerprint(key):
    # given a public key of an accepted type, as ssh-keygen wrote it
    key_type, bits, fingerprint = samples.ACCEPTED[key]
    # when it is read
    parsed = ssh_public_key_parse(key)
    # then its type, size and fingerprint are those ssh-keygen -lf reports
    assert (parsed.key_type, parsed.bits, parsed.fingerprint) == (key_type, bits, fingerprint)
    assert parsed.authorized_keys_line == key


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed (the known vectors above still run)")
@pytest.mark.parametrize("key", list(samples.ACCEPTED), ids=[t for t, _, _ in samples.ACCEPTED.values()])
def test_the_fingerprint_equals_what_the_installed_ssh_keygen_prints(key, tmp_path):
    path = tmp_path / "key.pub"
    path.write_text(key + "\n")
    printed = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True).stdout
    assert printed.split()[1] == ssh_public_key_parse(key).fingerprint


def test_the_comment_is_kept_trimmed_and_the_surrounding_whitespace_is_ignored():
    parsed = ssh_public_key_parse(f"\r\n  ssh-ed25519\t{ED25519_DATA}   Li Wei's laptop (2025)  \r\n")
    assert parsed.comment == "Li Wei's laptop (2025)"
    assert parsed.authorized_keys_line == f"ssh-ed25519 {ED25519_DATA} Li Wei's laptop (2025)"


def test_a_key_without_a_comment_is_accepted():
    parsed = ssh_public_key_parse(f"ssh-ed25519 {ED25519_DATA}")
    assert parsed.comment == "" and parsed.authorized_keys_line == f"ssh-ed25519 {ED25519_DATA}"


def test_a_comment_that_mentions_a_key_type_is_only_a_comment():
    assert ssh_public_key_parse(f"ssh-ed25519 {ED25519_DATA} replaces my old ssh-rsa key").comment == "replaces my old ssh-rsa key"


REFUSED = [
    ("", "required", "Paste your public key"),
    ("hello world", "not_openssh", "not an OpenSSH public key"),
    ("AAAAC3NzaC1lZDI1NTE5AAAAIL5B4gyaN", "not_openssh", "not an OpenSSH public key"),
    ("ssh-ed25519", "not_openssh", "key data is missing"),
    (f"ssh-ed25519 {ED25519_DATA[:40]}\n{ED25519_DATA[40:]}", "not_openssh", "one line"),
    ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAAB3Nza\n---- END SSH2 PUBLIC KEY ----", "not_openssh", "ssh-keygen -i"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
     "private_key", "This is a PRIVATE key - never paste it anywhere; paste the .pub file"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private_key", "PRIVATE key"),
    ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none", "private_key", "PRIVATE key"),
    ("ssh-ed25519 AAAA!!not-base64 me@host", "bad_base64", "not valid base64"),
    (f"ssh-ed25519 {ED25519_DATA[:-1]} me@host", "bad_base64", "not valid base64"),
    (f"ssh-rsa {ED25519_DATA} me@host", "type_mismatch", "says it is ssh-rsa but its data is a ssh-ed25519 key"),
    (f"ecdsa-sha2-nistp256 {samples.ECDSA_384.split()[1]}", "type_mismatch", "ecdsa-sha2-nistp384"),
    (samples.RSA_1024, "rsa_too_short", "1024 bits; at least 2048"),
    (samples.DSA, "dsa_refused", "DSA"),
    (f'from="10.0.0.0/8",command="/bin/true" {samples.ED25519}', "options_refused", "Options before the key"),
    (f'command="echo hello world" {samples.ED25519}', "options_refused", "Options before the key"),
    (f"restrict {samples.ED25519}", "options_refused", "Options before the key"),
    (f"{samples.ED25519}\n{samples.ECDSA_256}", "multiple_keys", "several keys"),
    (f"{samples.ED25519} {samples.ECDSA_256}", "multiple_keys", "several keys"),
    (samples.ED25519 + " " + "x" * MAX_KEY_TEXT_BYTES, "too_long", "16 KB"),
    (f"ssh-ed25519 {ED25519_DATA} me\x00@host", "control_characters", "control characters"),
    (f"ssh-ed25519\x00{ED25519_DATA}", "control_characters", "control characters"),
    (f"ssh-ed25519 {ED25519_DATA} \x1b[31mred", "control_characters", "control characters"),
    (f"ssh-ed25519 {ED25519_DATA} zero\u200bwidth", "comment_invalid", "printable"),
    (f"ssh-ed25519 {ED25519_DATA} " + "c" * 256, "comment_invalid", "too long"),
    (f"ssh-ed25519-cert-v01@openssh.com {ED25519_DATA}", "unsupported_type", "not supported"),
    (f"ssh-ed25519 {ED25519_31_BYTES}", "damaged", "exactly 32 bytes"),
    (f"ssh-ed25519 {ED25519_TRAILING_BYTES}", "damaged", "damaged"),
    (f"ssh-ed25519 {ED25519_NO_KEY}", "damaged", "damaged"),
    (f"ssh-ed25519 {ED25519_CUT_SHORT}", "damaged", "damaged"),
    (f"ecdsa-sha2-nistp256 {ECDSA_WRONG_CURVE}", "damaged", "nistp256 curve"),
    (f"ecdsa-sha2-nistp256 {ECDSA_COMPRESSED_POINT}", "damaged", "damaged"),
    (f"ssh-rsa {RSA_NEGATIVE_MODULUS}", "damaged", "damaged"),  # a negative modulus
    (f"ssh-rsa {NOT_A_TYPE_INSIDE}", "type_mismatch", "a different key"),
]


@pytest.mark.parametrize(("text", "code", "says"), REFUSED, ids=[f"{i}-{code}" for i, (_, code, _) in enumerate(REFUSED)])
def test_each_malformed_key_is_refused_with_a_reason_the_user_can_act_on(text, code, says):
    # given text that is not an acceptable OpenSSH public key
    # when it is read
    error = _refusal(text)
    # then it is refused, with the reason named by the code and said in the message
    assert error.code == code
    assert says in error.message


def test_the_16_kb_limit_is_on_the_text_and_a_key_just_under_it_is_still_read():
    # given a key whose comment brings the text to exactly the limit
    text = f"ssh-ed25519 {ED25519_DATA} "
    padded = text + "c" * (MAX_KEY_TEXT_BYTES - len(text))
    # then the length rule lets it through (the comment rule then refuses the long comment, not the size)
    assert _refusal(padded).code == "comment_invalid"
    assert _refusal(padded + "c").code == "too_long"
