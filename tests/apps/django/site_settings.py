"""Settings: the SQLite file comes from SHOP_SQLITE; with SHOP_POSTGRES set (a postgres:// URL), the app runs on
PostgreSQL instead, in the schema SHOP_PG_SCHEMA names (default: public)."""
import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = "lite2pg-test-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "shop",
    "ledger",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# IMMEDIATE transactions and a busy timeout, as Django recommends when another process writes the file too
# (here lite2pg pruning its change log): a DEFERRED transaction that reads first fails at once instead of waiting.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_SQLITE", "shop.db"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    }
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("SHOP_POSTGRES"):
    url = urlsplit(os.environ["SHOP_POSTGRES"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(url.path.lstrip("/")),
            "USER": unquote(url.username or ""),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "",
            "PORT": url.port or "",
            "OPTIONS": {"options": f"-c search_path={os.environ.get('SHOP_PG_SCHEMA', 'public')}"},
        }
    }
