"""The Celery app: Redis broker (its own Redis database), beat schedule from settings."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chainlearn.settings")

app = Celery("chainlearn")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
