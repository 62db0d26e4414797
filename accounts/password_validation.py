"""Password rules with messages in every language the site speaks.

Django 5.2's MinimumLengthValidator says "too short" with a msgid its own zh_Hans catalog does not
have yet (it changed the placeholder from %(min_length)d to %d), so a Chinese sign-up page showed that
one error in English. This subclass says it with a message of ours, translated in locale/.
"""

from django.contrib.auth import password_validation
from django.utils.translation import ngettext


class MinimumLengthValidator(password_validation.MinimumLengthValidator):
    def get_error_message(self):
        return ngettext(
            "This password is too short. It must contain at least %(min_length)d character.",
            "This password is too short. It must contain at least %(min_length)d characters.",
            self.min_length,
        ) % {"min_length": self.min_length}
