"""Computeflow settings. Everything that differs between machines comes from the environment.

See README.md ("Configuration") for the variables. With nothing set, `make run` / `make test`
provide embedded PostgreSQL and Redis (config/localservices.py).
"""

import dj_database_url

from config.env import BASE_DIR, env_bool, env_int, env_list, env_str

DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback key only suits a development machine: production sets DJANGO_SECRET_KEY
# (`manage.py check --deploy` warns about this one).
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "django-insecure-computeflow-development-key-change-me")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and ReDoc from our own static files, not a CDN (no internet, or a blocked CDN, in China).
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "accounts",
    "inventory",
    "marketplace",
    "billing",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the session's choice (the switcher), else the browser's Accept-Language, else English.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The signed-in person's stored language when there is no cookie (after authentication: it reads the user).
    "accounts.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "accounts.middleware.ActiveOrganizationMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.organizations",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/computeflow")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "computeflow"),
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # accounts: the same rule, its message translated (Django 5.2's zh_Hans catalog lacks it).
    {"NAME": "accounts.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "frontend:home"
LOGOUT_REDIRECT_URL = "frontend:home"

# English and Simplified Chinese. Catalogs in locale/ (`make messages` extracts, `make` compiles the
# .mo files, which are not committed); the terms are in locale/GLOSSARY.md.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Stored in UTC; shown in the viewer's zone (accounts.middleware activates the user's time zone).
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".local" / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise serves from finders until collectstatic fills it
# Browser libraries come from npm at setup (`npm ci` into node_modules/, never committed; the Makefile
# and the Dockerfile run it) and are served as static files under vendor/<package>/.
NODE_MODULES_DIR = BASE_DIR / "node_modules"
STATICFILES_DIRS = [("vendor/chart.js", NODE_MODULES_DIR / "chart.js" / "dist")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Bulk imports are validated in memory; anything larger is refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Computeflow API",
    "DESCRIPTION": "Rent AI-accelerator capacity of any vendor. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_ACKS_LATE = True  # tasks are idempotent, so a redelivery after a crash is safe
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = False

STRIPE_API_KEY = env_str("STRIPE_API_KEY", "sk_test_computeflow_local")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "http://127.0.0.1:8420")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "whsec_computeflow_local")
# The publishable key Stripe.js gets on the payment-method page, and where the page loads Stripe.js from
# (localstripe serves a stand-in at <STRIPE_API_BASE>/js.stripe.com/v3/; real Stripe: https://js.stripe.com/v3/).
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", "pk_test_computeflow_local")
STRIPE_JS_URL = env_str("STRIPE_JS_URL", "")  # "" = <STRIPE_API_BASE>/js.stripe.com/v3/ (localstripe)
# Connect transfers (provider payouts) go here. Real Stripe: the same https://api.stripe.com as everything
# else; localstripe has no Connect, so tests point this at tests/billing/stripe_connect_fake.py.
STRIPE_CONNECT_API_BASE = env_str("STRIPE_CONNECT_API_BASE", "")  # "" = STRIPE_API_BASE

# A node agent is considered gone after this many seconds without a heartbeat.
NODE_HEARTBEAT_TIMEOUT_SECONDS = env_int("NODE_HEARTBEAT_TIMEOUT_SECONDS", 180)
# Provisioning (marketplace.provisioning): a node must report a reservation's workload running within
# this many seconds of its publication, or the boot counts as failed (nothing billed).
PROVISIONING_BOOT_TIMEOUT_SECONDS = env_int("PROVISIONING_BOOT_TIMEOUT_SECONDS", 600)
# The host ports handed to reservations' SSH servers, distinct among a node's open assignments.
PROVISIONING_SSH_PORT_FIRST = env_int("PROVISIONING_SSH_PORT_FIRST", 2200)
PROVISIONING_SSH_PORT_LAST = env_int("PROVISIONING_SSH_PORT_LAST", 2299)
# The user the buyer logs in as (the container's; the buyer's keys are its authorized_keys).
PROVISIONING_SSH_USER = env_str("PROVISIONING_SSH_USER", "root")
# How often an agent should poll its assignments (told to it in every answer).
AGENT_POLL_SECONDS = env_int("AGENT_POLL_SECONDS", 15)
# Raw usage samples are kept this many days (daily partitions older than that are dropped); the
# hourly rollup that billing and dashboards read is kept. See marketplace/metering/.
USAGE_SAMPLE_RETENTION_DAYS = env_int("USAGE_SAMPLE_RETENTION_DAYS", 35)
# Daily partitions of the raw samples are created this many days ahead.
USAGE_SAMPLE_PARTITIONS_AHEAD_DAYS = env_int("USAGE_SAMPLE_PARTITIONS_AHEAD_DAYS", 3)

# Billing: the platform's share of every charge, in basis points (1500 = 15%); the provider gets the rest.
PLATFORM_FEE_BPS = env_int("PLATFORM_FEE_BPS", 1500)
# SLA credit: the buyer is credited this many times the hourly price for each card-hour down, capped at
# the charge line. A decimal string (exact: never a float in money); "0" switches credits off.
BILLING_SLA_CREDIT_MULTIPLIER = env_str("BILLING_SLA_CREDIT_MULTIPLIER", "1")

# Notifications by email (accounts.notifications): the console under `make run` (printed by the worker);
# production sets an SMTP backend and its EMAIL_HOST / EMAIL_PORT / EMAIL_HOST_USER / EMAIL_HOST_PASSWORD.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / ".local" / "mail"))  # for the file-based backend
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Computeflow <notifications@computeflow.test>")
# Where the site is reached from outside: emails link to pages under it.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

CELERY_BEAT_SCHEDULE = {
    "network-totals-refresh": {"task": "inventory.network_totals_refresh", "schedule": 60.0},
    # Nodes whose agent went quiet turn unhealthy (NODE_HEARTBEAT_TIMEOUT_SECONDS); failover follows.
    "nodes-mark-stale": {"task": "inventory.nodes_mark_stale", "schedule": 60.0},
    # Reliability scores: events older than the window (30 days) stop counting.
    "reliability-refresh": {"task": "inventory.reliability_refresh", "schedule": 3600.0},
    # Reservations move with the clock: start reached -> provisioning (through the agents), end -> completed.
    "reservations-advance": {"task": "marketplace.reservations_advance", "schedule": 30.0},
    # Re-drives reservations stuck in a transitional state (a task lost with Redis down, a worker killed),
    # fails boots past their deadline and re-publishes unconfirmed stops.
    "reservations-sweep": {"task": "marketplace.reservations_sweep", "schedule": 60.0},
    # Metering: hours that received usage samples are rolled up (every 5 minutes: each refresh re-reads
    # a touched hour's samples, so the open hour costs ~12 reads of itself); raw-sample partitions kept
    # ahead and dropped after the retention.
    "usage-rollup-refresh": {"task": "marketplace.usage_rollup_refresh", "schedule": 300.0},
    "usage-partitions-maintain": {"task": "marketplace.usage_partitions_maintain", "schedule": 3600.0},
    # Billing: hourly, each buyer whose local month ended (the 1st, 00:00 in the buyer's zone) gets its
    # month invoiced; a missed hour is caught up by the next (the cursor decides, not the clock).
    "billing-run-due": {"task": "billing.billing_run", "schedule": 3600.0},
    # Payouts: providers' shares of paid invoices go out as Connect transfers; in-transit ones are
    # re-read and settled. Idempotent (deterministic keys, one live payout per provider and invoice).
    "billing-payout-run": {"task": "billing.payout_run", "schedule": 3600.0},
    # Webhook events whose processing failed (or whose task was lost) are processed again; then refunds
    # left pending or never made (their task lost) are driven again with their own key.
    "billing-stripe-events-sweep": {"task": "billing.stripe_events_sweep", "schedule": 600.0},
    # Notifications: reservations ending within the hour are told once (the dedupe key holds the end).
    "reservations-notify-ending-soon": {"task": "marketplace.reservations_notify_ending_soon", "schedule": 300.0},
    # Notification emails whose task was lost (enqueued on commit while the broker was down) are sent late, not never.
    "notification-emails-sweep": {"task": "accounts.notification_emails_sweep", "schedule": 300.0},
    # The network dashboard's figures (operators' page, landing-page summary) kept warm in the cache.
    "network-dashboard-refresh": {"task": "marketplace.network_dashboard_refresh", "schedule": 60.0},
}
