from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views import i18n as django_i18n
from django.views.decorators.http import require_POST

from accounts.forms import (
    ApiTokenForm,
    LanguagePreferenceForm,
    MembershipForm,
    NotificationPreferencesForm,
    OrganizationSwitchForm,
    SignInForm,
    SignUpForm,
    SshKeyForm,
)
from accounts.middleware import SESSION_KEY
from accounts.models import ApiToken, Membership, SshPublicKey
from accounts.notifications import (
    notification_list,
    notification_mark_read,
    notification_preferences_get,
    notification_preferences_set,
    notifications_mark_all_read,
)
from accounts.selectors import api_token_list, organization_members, ssh_key_list, user_can, user_organizations
from accounts.services import (
    LANGUAGE_CODES,
    api_token_create,
    api_token_revoke,
    membership_add,
    membership_remove,
    ssh_key_add,
    ssh_key_revoke,
    user_language_set,
    user_sign_up,
    user_time_zone_set,
)


def add_service_errors(form, error: ValidationError) -> None:
    """Show a service's ValidationError next to the form fields it names."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)


def set_language_cookie(response, language: str) -> None:
    """The cookie LocaleMiddleware reads, with Django's own settings for it (as set_language sets it)."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME, language, max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH, domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE, httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


def set_language(request):
    """The language switcher: Django's set_language (the cookie, back to `next`), and for a signed-in
    person the choice is kept on their account too, so other devices and their emails follow it."""
    response = django_i18n.set_language(request)
    language = request.POST.get(django_i18n.LANGUAGE_QUERY_PARAMETER, "") if request.method == "POST" else ""
    if request.user.is_authenticated and language:
        try:
            # one of settings.LANGUAGES; Django has catalogs for many more ("fr"), which are not ours to save
            # (it answers the code as sent: "zh-Hans" stays "zh-Hans", and settings.LANGUAGES is lower case)
            supported = translation.get_supported_language_variant(language.lower())
        except LookupError:
            return response
        if supported in LANGUAGE_CODES:
            user_language_set(user=request.user, language=supported)
    return response


class SignInView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        """Signed in: the person's stored language becomes this browser's language (the cookie)."""
        response = super().form_valid(form)
        language = form.get_user().language
        if language and translation.check_for_language(language):
            set_language_cookie(response, language)
        return response


def sign_up(request):
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            # The language the sign-up page was shown in: their emails will be in it too.
            user = user_sign_up(**form.cleaned_data, language=translation.get_language() or "")
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Welcome to Computeflow."))
            return redirect("frontend:home")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
@require_POST
def switch_organization(request):
    form = OrganizationSwitchForm(request.POST, organizations=user_organizations(user=request.user))
    if not form.is_valid():
        # Not one of the user's organizations (or not an id at all): as if it did not exist.
        raise Http404
    request.session[SESSION_KEY] = form.cleaned_data["organization"].pk
    next_url = form.cleaned_data["next"]
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        next_url = "frontend:home"  # only ever back to a page of this site
    return redirect(next_url)


@login_required
def api_tokens(request):
    organization = request.organization
    if organization is None:
        raise Http404
    # Any member may hold keys; a key acts with its holder's role, so it can do no more than they can.
    allowed = user_can(user=request.user, organization=organization, action="view")
    form = ApiTokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and allowed and form.is_valid():
        _token, new_key = api_token_create(user=request.user, organization=organization, name=form.cleaned_data["name"])
        form = ApiTokenForm()
    tokens = api_token_list(user=request.user, organization=organization)
    return render(
        request, "accounts/tokens.html", {"form": form, "tokens": tokens, "new_key": new_key, "allowed": allowed}
    )


@login_required
@require_POST
def api_token_revoke_view(request, pk: int):
    try:
        token = api_token_list(user=request.user, organization=request.organization).get(pk=pk)
    except ApiToken.DoesNotExist:
        raise Http404 from None
    api_token_revoke(token=token)
    messages.success(request, _("Token '%(name)s' revoked.") % {"name": token.name})
    return redirect("accounts:tokens")


@login_required
def members(request):
    organization = request.organization
    if organization is None:
        raise Http404
    can_manage = user_can(user=request.user, organization=organization, action="manage_members")
    form = MembershipForm(request.POST or None)
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied
        if form.is_valid():
            try:
                membership_add(organization=organization, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                role = Membership.Role(form.cleaned_data["role"]).label
                messages.success(request, _("%(email)s is now %(role)s.") % {"email": form.cleaned_data["email"], "role": role})
                return redirect("accounts:members")
    return render(
        request,
        "accounts/members.html",
        {"form": form, "memberships": organization_members(organization=organization), "can_manage": can_manage},
    )


@login_required
@require_POST
def member_remove(request, pk: int):
    organization = request.organization
    membership = organization_members(organization=organization).filter(pk=pk).first() if organization else None
    if membership is None:
        raise Http404
    if not user_can(user=request.user, organization=organization, action="manage_members"):
        raise PermissionDenied
    try:
        membership_remove(membership=membership, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("%(email)s was removed.") % {"email": membership.user.email})
    return redirect("accounts:members")


@login_required
def ssh_keys(request):
    """The signed-in person's SSH public keys: they are personal, whichever organization is active."""
    form = SshKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key = ssh_key_add(user=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Key '%(name)s' added (%(fingerprint)s).") % {"name": key.name, "fingerprint": key.fingerprint})
            return redirect("accounts:ssh-keys")
    return render(request, "accounts/ssh_keys.html", {"form": form, "keys": ssh_key_list(user=request.user)})


@login_required
@require_POST
def ssh_key_revoke_view(request, pk: int):
    try:
        key = ssh_key_list(user=request.user).get(pk=pk)
    except SshPublicKey.DoesNotExist:
        raise Http404 from None
    ssh_key_revoke(key=key)
    messages.success(request, _("Key '%(name)s' revoked: new machines will no longer accept it.") % {"name": key.name})
    return redirect("accounts:ssh-keys")


@login_required
def notifications(request):
    """The signed-in person's notifications (their own, whatever organization is active)."""
    page = Paginator(notification_list(user=request.user), 50).get_page(request.GET.get("page"))
    return render(request, "accounts/notifications.html", {"page": page})


@login_required
@require_POST
def notification_read(request, pk: int):
    notification = get_object_or_404(notification_list(user=request.user), pk=pk)
    notification_mark_read(notification=notification)
    # Opening a notification's page marks it read on the way (a relative link on this site only).
    if request.POST.get("open") and notification.link.startswith("/") and not notification.link.startswith("//"):
        return redirect(notification.link)
    return redirect("accounts:notifications")


@login_required
@require_POST
def notifications_read_all(request):
    count = notifications_mark_all_read(user=request.user)
    messages.success(request, ngettext("%(count)s notification marked read.", "%(count)s notifications marked read.",
                                        count) % {"count": count})
    return redirect("accounts:notifications")


@login_required
def notification_preferences(request):
    """Which notifications the person gets, and (a second form on the same page) in which language and
    time zone they read pages and emails."""
    is_language = request.method == "POST" and "language" in request.POST
    form = NotificationPreferencesForm(None if is_language else request.POST or None,
                                       choices=notification_preferences_get(user=request.user))
    language_form = LanguagePreferenceForm(request.POST if is_language else None,
                                           initial={"language": request.user.language, "time_zone": request.user.time_zone})
    if is_language and language_form.is_valid():
        language = language_form.cleaned_data["language"]
        user_language_set(user=request.user, language=language)
        user_time_zone_set(user=request.user, time_zone=language_form.cleaned_data["time_zone"])
        response = redirect("accounts:notification-preferences")
        if language:
            translation.activate(language)  # the confirmation in the language just chosen
            set_language_cookie(response, language)
        else:  # follow the browser again: the cookie would hold the old choice
            response.delete_cookie(settings.LANGUAGE_COOKIE_NAME, path=settings.LANGUAGE_COOKIE_PATH,
                                   domain=settings.LANGUAGE_COOKIE_DOMAIN)
        messages.success(request, _("Your language and time zone are saved."))
        return response
    if request.method == "POST" and not is_language and form.is_valid():
        notification_preferences_set(user=request.user, choices=form.choices())
        messages.success(request, _("Your notification choices are saved."))
        return redirect("accounts:notification-preferences")
    return render(request, "accounts/notification_preferences.html", {"form": form, "language_form": language_form})
