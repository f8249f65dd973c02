"""The sequence live counts draw their versions from (``caching.counts``)."""

from django.db import migrations


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE caching_count_version",
            "DROP SEQUENCE caching_count_version",
        ),
    ]
