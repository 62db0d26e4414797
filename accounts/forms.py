from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import Membership, NotificationKind, Organization


class SignInForm(AuthenticationForm):
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))


class SignUpForm(forms.Form):
    full_name = forms.CharField(max_length=150, label="Your name")
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    organization_name = forms.CharField(max_length=200, label="Organization")
    kind = forms.ChoiceField(
        choices=Organization.Kind.choices,
        label="We want to",
        help_text="Buyers rent capacity; providers list their data centers' capacity.",
    )

    def clean_password(self):
        password = self.cleaned_data["password"]
        password_validation.validate_password(password)
        return password


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this key, for example 'ci-runner'.")


class SshKeyForm(forms.Form):
    # Lengths are checked by accounts.services.ssh_key_add (it names the reason); the widget only stops
    # a browser from sending megabytes.
    name = forms.CharField(
        max_length=100, required=False, help_text="Where the key lives, e.g. 'work laptop'. Empty: the key's comment."
    )
    public_key = forms.CharField(
        label="Public key",
        strip=False,
        max_length=64 * 1024,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off",
                                     "placeholder": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... you@laptop"}),
        help_text="The one line of your .pub file, e.g. ~/.ssh/id_ed25519.pub (never the private key).",
    )


class MembershipForm(forms.Form):
    email = forms.EmailField(help_text="The person must have signed up already.")
    role = forms.ChoiceField(choices=Membership.Role.choices)


class OrganizationSwitchForm(forms.Form):
    """Which of the user's organizations to act for. Any other id (or garbage) is simply not a choice."""

    organization = forms.ModelChoiceField(queryset=Organization.objects.none())
    next = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, organizations, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = organizations


class NotificationPreferencesForm(forms.Form):
    """One checkbox per kind and channel: `<kind>__in_page` and `<kind>__email`."""

    CHANNELS = (("in_page", "in the page"), ("email", "by email"))

    def __init__(self, *args, choices: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = []
        for kind, label in NotificationKind.choices:
            names = []
            for channel, words in self.CHANNELS:
                name = f"{kind}__{channel}"
                self.fields[name] = forms.BooleanField(required=False, label=f"{label} {words}",
                                                       initial=getattr(choices[kind], channel))
                names.append(name)
            self.rows.append((label, [self[name] for name in names]))

    def choices(self) -> dict:
        from accounts.notifications import Choice

        return {kind: Choice(email=self.cleaned_data[f"{kind}__email"], in_page=self.cleaned_data[f"{kind}__in_page"])
                for kind in NotificationKind.values}
