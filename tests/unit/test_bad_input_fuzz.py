"""Property: no input gives a 500. Arbitrary form values, files and query strings get a 2xx/3xx
or a 4xx, and a refused add never leaves a row behind."""

from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.unit.factories import dam_form

FUZZ = settings(
    max_examples=60,
    deadline=None,  # real database round trips: no per-example time limit
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Text that survives a form POST (no NUL, which Django's test client cannot encode anyway).
form_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300)
json_like = st.one_of(
    form_text,
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), form_text),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(form_text, children, max_size=4),
        max_leaves=12,
    ).map(lambda v: __import__("json").dumps(v)),
)


def dams(store_engine):
    with store_engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM dams")).scalar()


@FUZZ
@given(name=form_text, owner=form_text, river=form_text, date=form_text, geometry=json_like)
def test_add_dam_never_500(editor_client, store_engine, name, owner, river, date, geometry):
    before = dams(store_engine)
    r = editor_client.post("/apps/dam-inventory/dams/add/", dam_form(
        name=name, owner=owner, river=river, **{"date-built": date}, geometry=geometry))
    assert r.status_code in (302, 400, 409)
    assert dams(store_engine) == before + (1 if r.status_code == 302 else 0)


@FUZZ
@given(content=st.binary(max_size=2000), dam_select=form_text)
def test_assign_hydrograph_never_500(editor_client, content, dam_select):
    r = editor_client.post("/apps/dam-inventory/hydrographs/assign/", {
        "dam-select": dam_select,
        "hydrograph-file": SimpleUploadedFile("h.csv", content, content_type="text/csv"),
    })
    assert r.status_code in (302, 400)


@FUZZ
@given(since=form_text, deleted=form_text)
def test_since_never_500(editor_client, since, deleted):
    r = editor_client.get("/apps/dam-inventory/dams/since/", {"since": since, "deleted_since": deleted})
    assert r.status_code in (200, 400)


@FUZZ
@given(content=st.binary(max_size=3000))
def test_csv_parser_refuses_with_a_message_or_returns_valid_points(content):
    from tethysapp.dam_inventory.validation import ValidationError, parse_hydrograph_csv

    try:
        points = parse_hydrograph_csv(content)
    except ValidationError as e:
        assert str(e)
        return
    assert points and all(t >= 0 and f >= 0 for t, f in points)
    assert [t for t, _ in points] == sorted({t for t, _ in points})
