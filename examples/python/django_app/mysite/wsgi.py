"""The WSGI entry point (gunicorn mysite.wsgi, and `manage.py runserver`): the app, and the sync of its SQLite file.

The sync starts here rather than in AppConfig.ready(): ready() also runs for `migrate` and every other management
command, and twice under runserver's autoreloader; this module is imported only by the process that serves. With
gunicorn -w 4 every worker imports it and one of them runs lite2pg (see docs/python.md).
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

import lite2pg

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()

sync = lite2pg.from_env(sqlite=str(settings.DATABASES["default"]["NAME"]))
if sync is not None:
    sync.start()  # returns once PostgreSQL holds a first copy; stopped when the process exits
