#!/usr/bin/env python
"""The example Django shop: `python manage.py migrate`, `python manage.py runserver`, and
`python manage.py jobrunner start` to run its tasks (README, Django)."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
    # The crontab of the periodic task lives in jobrunner's config beside this file.
    os.environ.setdefault("JOBRUNNER_CONFIG", str(Path(__file__).with_name("jobrunner.toml")))
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
