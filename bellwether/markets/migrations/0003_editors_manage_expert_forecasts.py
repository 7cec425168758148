"""Let the Editors group add, change and delete expert forecasts in the admin.

The permissions are created here if the post-migrate step has not made them
yet (it runs after all migrations), so a fresh database gets the grant too.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CODENAMES = ["add_expertforecast", "change_expertforecast", "delete_expertforecast", "view_expertforecast"]


def grant(apps, schema_editor):
    app_config = apps.get_app_config("markets")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Editors")
    group.permissions.add(*Permission.objects.filter(content_type__app_label="markets", codename__in=CODENAMES))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="Editors").first()
    if group:
        group.permissions.remove(*Permission.objects.filter(content_type__app_label="markets", codename__in=CODENAMES))


class Migration(migrations.Migration):
    dependencies = [
        ("markets", "0002_experts"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(grant, revoke)]
