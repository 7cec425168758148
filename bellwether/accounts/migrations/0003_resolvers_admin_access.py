"""Let resolvers into the Wagtail admin, where markets are resolved.

Wagtail gates its whole admin on the ``wagtailadmin.access_admin``
permission (not on ``is_staff``); its own migration gives it to Editors and
Moderators only.
"""

from django.db import migrations


def grant_admin_access(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="wagtailadmin", model="admin")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="access_admin", defaults={"name": "Can access Wagtail admin"}
    )
    group, _ = Group.objects.get_or_create(name="Resolvers")
    group.permissions.add(permission)


def revoke_admin_access(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="Resolvers").first()
    permission = Permission.objects.filter(content_type__app_label="wagtailadmin", codename="access_admin").first()
    if group and permission:
        group.permissions.remove(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_resolvers_group"),
        ("wagtailadmin", "0001_create_admin_access_permissions"),
    ]
    operations = [migrations.RunPython(grant_admin_access, revoke_admin_access)]
