"""The official image's site and branding variables, applied by the web image's own setup step
(images/web/portal_setup.py, `site_settings`): inspected first, applied only when they differ,
an empty variable leaving the portal's value alone. And the check of ADD_BACKENDS."""

import pytest


@pytest.fixture
def setup():
    from stackctl.dev import portal_setup_module

    return portal_setup_module()


def content(name):
    from tethys_config.models import Setting

    return Setting.objects.get(name=name).content


def test_set_variables_become_site_settings_and_empty_ones_change_nothing(setup, db, monkeypatch):
    for variable in setup.SITE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    footer = content("Footer Copyright")
    monkeypatch.setenv("SITE_TITLE", "Dams of the Basin")
    monkeypatch.setenv("PRIMARY_COLOR", "#7a3b8f")
    monkeypatch.setenv("HOME_PAGE_CSS", "body {\\n  color: #222;\\n}")
    monkeypatch.setenv("FOOTER_COPYRIGHT", "")

    planned = setup.inspect("site_settings")
    assert set(planned.changes) == {"SITE_TITLE", "PRIMARY_COLOR", "HOME_PAGE_CSS"}
    assert content("Site Title") != "Dams of the Basin"  # inspecting changed nothing

    setup.apply("site_settings")
    assert content("Site Title") == "Dams of the Basin"
    assert content("Primary Color") == "#7a3b8f"
    assert content("Home Page CSS") == "body {\n  color: #222;\n}"  # the official image's "\n"
    assert content("Footer Copyright") == footer
    assert setup.inspect("site_settings").changes == {}


def test_every_official_variable_names_a_site_setting_of_this_tethys(setup, db):
    from tethys_cli.site_commands import uncodify
    from tethys_config.models import Setting

    names = set(Setting.objects.values_list("name", flat=True))
    missing = [v for v in setup.SITE_VARIABLES if uncodify(v) not in names]
    assert not missing, missing


def test_backends_that_import_pass_and_a_typo_stops_the_start_naming_the_variable(setup):
    ok = setup.inspect("backends_importable", variable="ADD_BACKENDS",
                       backends=["social_core.backends.github.GithubOAuth2"])
    assert ok.changes == {}
    with pytest.raises(setup.StepError, match="ADD_BACKENDS: cannot import the backend 'social_core.backends.gitbub.GithubOAuth2'"):
        setup.inspect("backends_importable", variable="ADD_BACKENDS",
                      backends=["social_core.backends.gitbub.GithubOAuth2"])
