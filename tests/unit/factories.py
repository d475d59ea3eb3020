"""Test data of the app's unit tests: portal users and Add Dam form posts."""


def make_user(django_user_model, username, *groups, superuser=False):
    from django.contrib.auth.models import Group

    if superuser:
        user = django_user_model.objects.create_superuser(username, f"{username}@example.org", "pw")
    else:
        user = django_user_model.objects.create_user(username, f"{username}@example.org", "pw")
    for g in groups:
        user.groups.add(Group.objects.get(name=g))
    return user


def dam_form(**overrides):
    data = {
        "name": "Hoover",
        "owner": "Reclamation",
        "river": "Colorado",
        "date-built": "1936-03-01",
        "geometry": '{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[-114.737,36.016]}]}',
        "add-button": "add",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
