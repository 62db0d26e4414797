"""In the browser: a buyer adds an SSH key, sees a refusal next to the field, and revokes after confirming."""

import pytest

from accounts.models import SshPublicKey
from tests.accounts import ssh_key_samples as samples
from tests.factories import DEFAULT_PASSWORD, member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_buyer_adds_a_key_sees_a_refusal_by_the_field_and_revokes_after_confirming(page):
    # Given a signed-in buyer
    user = member(kind="buyer")
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # When they follow the account navigation to SSH keys and paste a private key by mistake
    page.get_by_role("link", name="SSH keys").click()
    page.get_by_label("Public key").fill("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----")
    page.get_by_role("button", name="Add key").click()
    # Then the warning is next to the field, and nothing is stored
    assert "PRIVATE key - never paste it anywhere" in page.locator('.field-error[data-field="public_key"]').inner_text()
    assert not SshPublicKey.objects.exists()

    # When they paste the public key instead
    page.get_by_label("Name").fill("work laptop")
    page.get_by_label("Public key").fill(samples.ED25519)
    page.get_by_role("button", name="Add key").click()
    # Then it is listed with the fingerprint ssh-keygen shows
    row = page.locator(f'tr[data-fingerprint="{samples.ACCEPTED[samples.ED25519][2]}"]')
    assert "work laptop" in row.inner_text() and "valid" in row.inner_text()

    # When they revoke it and dismiss the confirmation, nothing changes; when they accept, it is revoked
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Revoke").click()
    assert SshPublicKey.objects.get().is_active
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    page.get_by_text("revoked: new machines will no longer accept it").wait_for()
    assert not SshPublicKey.objects.get().is_active
    assert "revoked" in page.locator(f'tr[data-fingerprint="{samples.ACCEPTED[samples.ED25519][2]}"]').inner_text()
