"""Writes for accounts: sign-up, organizations, memberships, API tokens, SSH public keys."""

import hashlib
import re
import secrets
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.models import ApiToken, Membership, Organization, SshPublicKey, User
from accounts.ssh_keys import ssh_public_key_parse

TOKEN_PREFIX = "cf_"  # noqa: S105 - a marker that makes leaked keys easy to spot, not a secret
# What a key can look like (the prefix, then token_urlsafe's alphabet). Anything else - a NUL byte, a
# space, a 10 KB header - is refused before it reaches the database, which cannot store a NUL.
LANGUAGE_CODES = frozenset(code for code, _name in settings.LANGUAGES)
_KEY_SHAPE = re.compile(r"[A-Za-z0-9_\-]{20,200}")


def _hash_key(key: str) -> str:
    # The key has 256 bits of randomness, so a plain SHA-256 is enough (no salt or stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(*, name: str, kind: str, owner: User, is_demo: bool = False) -> Organization:
    name = name.strip()
    if not name:
        raise ValidationError({"organization_name": _("Give the organization a name.")})
    if not name.isprintable():
        raise ValidationError({"organization_name": _("Use printable characters only.")})
    if kind not in Organization.Kind.values:
        raise ValidationError({"kind": _("Choose one of: %(choices)s.") % {"choices": ", ".join(Organization.Kind.values)}})
    if Organization.objects.filter(name__iexact=name).exists():
        raise ValidationError({"organization_name": _("An organization with this name already exists.")})
    try:
        with transaction.atomic():
            organization = Organization.objects.create(name=name, kind=kind, slug=_unique_slug(name), is_demo=is_demo)
    except IntegrityError:
        raise ValidationError({"organization_name": _("An organization with this name already exists.")}) from None
    Membership.objects.create(user=owner, organization=organization, role=Membership.Role.OWNER)
    return organization


@transaction.atomic
def user_sign_up(*, email: str, password: str, full_name: str, organization_name: str, kind: str,
                 language: str = "") -> User:
    """A new person with a new organization that they own. `language`: the language the sign-up page
    was shown in, kept so their emails come in it too (blank: follow the browser)."""
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": _("An account with this email already exists. Sign in instead.")})
    if not full_name.strip().isprintable():
        raise ValidationError({"full_name": _("Use printable characters only.")})
    user = User.objects.create_user(email=email, password=password, full_name=full_name.strip(),
                                    language=language if language in LANGUAGE_CODES else "")
    organization_create(name=organization_name, kind=kind, owner=user)
    return user


def user_language_set(*, user: User, language: str) -> User:
    """Keep the person's language (one of settings.LANGUAGES, or "" to follow the browser again)."""
    if language and language not in LANGUAGE_CODES:
        raise ValidationError({"language": _("Choose one of the languages offered.")})
    if user.language != language:
        user.language = language
        user.save(update_fields=["language"])
    return user


def user_time_zone_set(*, user: User, time_zone: str) -> User:
    """Keep the zone the person reads times in (an IANA name such as Asia/Shanghai)."""
    if time_zone not in zoneinfo.available_timezones():
        raise ValidationError({"time_zone": _("Choose a time zone from the list.")})
    if user.time_zone != time_zone:
        user.time_zone = time_zone
        user.save(update_fields=["time_zone"])
    return user


def membership_set(*, organization: Organization, user: User, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise ValidationError({"role": _("Choose one of: %(choices)s.") % {"choices": ", ".join(Membership.Role.values)}})
    membership, _created = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


def api_token_create(*, user: User, organization: Organization, name: str) -> tuple[ApiToken, str]:
    """Returns the token row and the key. The key is not stored and cannot be shown again."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": _("Name the token (for example, the machine that uses it).")})
    if not Membership.objects.filter(user=user, organization=organization).exists():
        raise ValidationError(_("You are not a member of this organization."))
    key = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, organization=organization, name=name[:100], prefix=key[:12], key_hash=_hash_key(key)
    )
    return token, key


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(*, key: str) -> ApiToken | None:
    """The active token for this key, or None. Compares hashes in constant time."""
    if not key.startswith(TOKEN_PREFIX) or not _KEY_SHAPE.fullmatch(key):
        return None
    token = (
        ApiToken.objects.select_related("user", "organization")
        .filter(prefix=key[:12], revoked_at__isnull=True)
        .first()
    )
    if token is None or not secrets.compare_digest(token.key_hash, _hash_key(key)):
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


@transaction.atomic
def membership_add(*, organization: Organization, email: str, role: str, actor: User) -> Membership:
    """Add an existing user (by email) to the organization, or change their role."""
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise ValidationError({"email": _("No account uses this email yet: ask them to sign up, then add them.")})
    if role not in Membership.Role.values:
        raise ValidationError({"role": _("Choose one of: %(choices)s.") % {"choices": ", ".join(Membership.Role.values)}})
    current = Membership.objects.select_for_update().filter(organization=organization, user=user).first()
    touches_owner = role == Membership.Role.OWNER or (current is not None and current.role == Membership.Role.OWNER)
    if touches_owner:
        _refuse_unless_owner(organization=organization, actor=actor)
    if current and current.role == Membership.Role.OWNER and role != Membership.Role.OWNER:
        _refuse_losing_last_owner(organization=organization, leaving=current)
    return membership_set(organization=organization, user=user, role=role)


def _refuse_unless_owner(*, organization: Organization, actor: User) -> None:
    """Only owners make or unmake owners: an admin cannot promote themselves and remove the founders."""
    if not Membership.objects.filter(organization=organization, user=actor, role=Membership.Role.OWNER).exists():
        raise ValidationError({"role": _("Only an owner can make someone owner or change an owner's role.")})


def _refuse_losing_last_owner(*, organization: Organization, leaving: Membership) -> None:
    owners = Membership.objects.select_for_update().filter(organization=organization, role=Membership.Role.OWNER)
    if not owners.exclude(pk=leaving.pk).exists():
        raise ValidationError(_("An organization needs at least one owner: make someone else owner first."))


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User) -> None:
    if membership.role == Membership.Role.OWNER:
        _refuse_unless_owner(organization=membership.organization, actor=actor)
        _refuse_losing_last_owner(organization=membership.organization, leaving=membership)
    membership.delete()


MAX_ACTIVE_SSH_KEYS = 50  # per user: plenty for every laptop and hardware token, and a bounded authorized_keys


@transaction.atomic
def ssh_key_add(*, user: User, name: str, public_key: str) -> SshPublicKey:
    """Add a public key the user logs in with. Refusals name the field: `public_key` or `name`."""
    try:
        parsed = ssh_public_key_parse(public_key)
    except ValidationError as error:
        raise ValidationError({"public_key": error}) from None
    name = name.strip() or parsed.comment[:100]
    if not name:
        raise ValidationError({"name": _("Name the key (for example, the laptop it lives on).")})
    if not name.isprintable() or len(name) > 100:
        raise ValidationError({"name": _("Use at most 100 printable characters.")})
    # The user's row is the lock: two adds of the same key at once queue here, and the second sees the first.
    User.objects.select_for_update().filter(pk=user.pk).first()
    active = SshPublicKey.objects.filter(user=user, revoked_at__isnull=True)
    duplicate = active.filter(fingerprint=parsed.fingerprint).first()
    if duplicate is not None:
        raise ValidationError({"public_key": _("You already added this key (as '%(name)s', %(fingerprint)s).") % {"name": duplicate.name, "fingerprint": parsed.fingerprint}})
    if active.count() >= MAX_ACTIVE_SSH_KEYS:
        raise ValidationError({"public_key": _("You already have %(count)s keys that are not revoked: revoke one you no longer use first.") % {"count": MAX_ACTIVE_SSH_KEYS}})
    return SshPublicKey.objects.create(
        user=user, name=name, key_type=parsed.key_type, key_data=parsed.key_data, comment=parsed.comment,
        bits=parsed.bits, fingerprint=parsed.fingerprint,
    )


def ssh_key_revoke(*, key: SshPublicKey) -> SshPublicKey:
    """Stop giving this key to machines. Kept, not deleted, for the history; revoking twice is harmless."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key
