from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from accounts.models import TIME_ZONE_CHOICES, Membership, NotificationKind, Organization


class SignInForm(AuthenticationForm):
    username = forms.EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))


class SignUpForm(forms.Form):
    full_name = forms.CharField(max_length=150, label=_("Your name"))
    email = forms.EmailField(label=_("Email"))
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    organization_name = forms.CharField(max_length=200, label=_("Organization"))
    kind = forms.ChoiceField(
        choices=Organization.Kind.choices,
        label=_("We want to"),
        help_text=_("Buyers rent capacity; providers list their data centers' capacity."),
    )

    def clean_password(self):
        password = self.cleaned_data["password"]
        password_validation.validate_password(password)
        return password


class ApiTokenForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("What uses this key, for example 'ci-runner'."))


class SshKeyForm(forms.Form):
    # Lengths are checked by accounts.services.ssh_key_add (it names the reason); the widget only stops
    # a browser from sending megabytes.
    name = forms.CharField(
        label=_("Name"), max_length=100, required=False,
        help_text=_("Where the key lives, e.g. 'work laptop'. Empty: the key's comment."),
    )
    public_key = forms.CharField(
        label=_("Public key"),
        strip=False,
        max_length=64 * 1024,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off",
                                     "placeholder": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... you@laptop"}),
        help_text=_("The one line of your .pub file, e.g. ~/.ssh/id_ed25519.pub (never the private key)."),
    )


class MembershipForm(forms.Form):
    email = forms.EmailField(label=_("Email"), help_text=_("The person must have signed up already."))
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices)


class OrganizationSwitchForm(forms.Form):
    """Which of the user's organizations to act for. Any other id (or garbage) is simply not a choice."""

    organization = forms.ModelChoiceField(label=_("Organization"), queryset=Organization.objects.none())
    next = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, organizations, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations


class NotificationPreferencesForm(forms.Form):
    """One checkbox per kind and channel: `<kind>__in_page` and `<kind>__email`."""

    # Translators: completes a notification kind, e.g. "Invoice issued in the page".
    CHANNELS = (("in_page", _("in the page")), ("email", _("by email")))

    def __init__(self, *args, choices: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = []
        for kind, label in NotificationKind.choices:
            names = []
            for channel, words in self.CHANNELS:
                name = f"{kind}__{channel}"
                self.fields[name] = forms.BooleanField(
                    required=False, initial=getattr(choices[kind], channel),
                    # Translators: a checkbox label: the notification kind, then the channel ("by email").
                    label=_("%(kind)s %(channel)s") % {"kind": label, "channel": words},
                )
                names.append(name)
            self.rows.append((label, [self[name] for name in names]))

    def choices(self) -> dict:
        from accounts.notifications import Choice

        return {kind: Choice(email=self.cleaned_data[f"{kind}__email"], in_page=self.cleaned_data[f"{kind}__in_page"])
                for kind in NotificationKind.values}


class LanguageSelect(forms.Select):
    """Each language's name in its own language, marked so (lang="zh-hans"): screen readers pronounce it
    right, and "简体中文" on an English page is a name, not an untranslated string."""

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        if value:
            option["attrs"]["lang"] = value
        return option


class LanguagePreferenceForm(forms.Form):
    """The language and time zone of the person's pages and emails. A blank language follows the browser
    (emails: the site's default)."""

    language = forms.ChoiceField(
        label=_("Language of your pages and emails"), required=False,
        choices=[("", _("As my browser asks"))] + list(settings.LANGUAGES), widget=LanguageSelect,
        help_text=_("Pages and emails are shown in this language."),
    )
    time_zone = forms.ChoiceField(
        label=_("Time zone"), choices=TIME_ZONE_CHOICES,
        # IANA names (Asia/Shanghai) are identifiers in every language: translate="no" says so.
        widget=forms.Select(attrs={"translate": "no"}),
        help_text=_("Times on pages and in emails are shown in this zone, with its name."),
    )
