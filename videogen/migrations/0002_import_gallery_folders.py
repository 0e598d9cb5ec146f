"""The gallery folders written before jobs existed become Video rows, once."""

from django.conf import settings
from django.db import migrations


def forwards(apps, schema_editor):
    from videogen.gallery.folders import import_folders

    user_app, user_model = settings.AUTH_USER_MODEL.split(".")
    import_folders(apps.get_model("videogen", "Video"), apps.get_model(user_app, user_model))


class Migration(migrations.Migration):
    dependencies = [("videogen", "0001_initial"), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
