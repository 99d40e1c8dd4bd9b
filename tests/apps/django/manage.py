#!/usr/bin/env python3
"""A small Django project whose migrations lite2pg must follow while it streams (tests/it/realapps.rs)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
