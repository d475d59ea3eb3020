"""Assign Hydrograph: permission, every CSV refusal (existing hydrograph untouched), and the
hydrograph page/JSON."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from sqlalchemy import text

from tests.unit.factories import dam_form
from tethysapp.dam_inventory.validation import MAX_CSV_BYTES

ASSIGN = "/apps/dam-inventory/hydrographs/assign/"


@pytest.fixture
def dam_id(editor_client, store_engine):
    assert editor_client.post("/apps/dam-inventory/dams/add/", dam_form()).status_code == 302
    with store_engine.connect() as conn:
        return conn.execute(text("SELECT id FROM dams")).scalar()


def csv_file(content, name="hydrograph.csv"):
    return SimpleUploadedFile(name, content, content_type="text/csv")


def points(store_engine, dam_id):
    with store_engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT p.time, p.flow FROM hydrograph_points p JOIN hydrographs h ON h.id = p.hydrograph_id "
            "WHERE h.dam_id = :d ORDER BY p.time"), {"d": dam_id})]


def test_viewer_gets_403(client, viewer, dam_id):
    client.force_login(viewer)
    assert client.get(ASSIGN).status_code == 403
    assert client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(b"0,1\n")}).status_code == 403


def test_assign_stores_sorted_points_and_replaces_the_previous(editor_client, store_engine, dam_id):
    r = editor_client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(b"time,flow\n2,30\n0,10\n1,20.5\n")})
    assert r.status_code == 302
    assert points(store_engine, dam_id) == [(0, 10), (1, 20.5), (2, 30)]
    r = editor_client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(b"\xef\xbb\xbf0,5\r\n1,6\r\n")})
    assert r.status_code == 302
    assert points(store_engine, dam_id) == [(0, 5), (1, 6)]
    with store_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hydrographs")).scalar() == 1


BAD_CSVS = [
    (b"", "The file is empty."),
    (b"   \n\n", "The file is empty."),
    (b"time,flow\n", "The file has no numeric rows (expected lines of time,flow)."),
    (b"0,10\nabc,12\n", "Line 2: time and flow must be numbers"),
    (b"0,10\n1\n", "Line 2: expected two columns, time and flow."),
    (b"0,10\n1,-5\n", "Line 2: time and flow must not be negative."),
    (b"-1,10\n", "Line 1: time and flow must not be negative."),
    (b"0,nan\n", "Line 1: time and flow must be finite numbers."),
    (b"0,10\n0,11\n", "Line 2: time 0 appears twice."),
    (b"\xff\xfe\x00\x01", "The file must be a UTF-8 text CSV file."),
    (b"0,1\x00\n", "The file must be a text CSV file, not binary data."),
    (b"0," + b"1" * (MAX_CSV_BYTES + 10), f"The file is too large ({MAX_CSV_BYTES + 12} bytes); the limit is {MAX_CSV_BYTES} bytes."),
]


@pytest.mark.parametrize("content, message", BAD_CSVS)
def test_bad_csv_is_refused_and_the_existing_hydrograph_is_untouched(editor_client, store_engine, dam_id, content, message):
    assert editor_client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(b"0,1\n1,2\n")}).status_code == 302
    r = editor_client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(content)})
    assert r.status_code == 400
    html = r.content.decode()
    assert 'id="error-hydrograph-file"' in html
    from django.utils.html import escape

    assert escape(message) in html
    assert points(store_engine, dam_id) == [(0, 1), (1, 2)]


@pytest.mark.parametrize("form, field, message", [
    ({}, "hydrograph-file", "A CSV file (time,flow) is required."),
    ({"dam-select": ""}, "dam-select", "Dam is required."),
    ({"dam-select": "abc"}, "dam-select", "Choose a dam from the list."),
    ({"dam-select": "99999999999999999999"}, "dam-select", "Choose a dam from the list."),
    ({"dam-select": "424242"}, "dam-select", "Choose a dam from the list."),
])
def test_missing_file_or_dam_is_a_clear_400(editor_client, dam_id, form, field, message):
    data = {"dam-select": dam_id}
    data.update(form)
    if field == "dam-select":
        data["hydrograph-file"] = csv_file(b"0,1\n")
    r = editor_client.post(ASSIGN, data)
    assert r.status_code == 400
    html = r.content.decode()
    assert f'id="error-{field}">' in html and message in html


def test_hydrograph_page_and_json(editor_client, store_engine, dam_id):
    editor_client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(b"0,1\n1,3\n")})
    page = editor_client.get(f"/apps/dam-inventory/dams/{dam_id}/hydrograph/")
    assert page.status_code == 200 and b'id="hydrograph-plot"' in page.content
    data = editor_client.get(f"/apps/dam-inventory/dams/{dam_id}/json/").json()
    assert data["hydrograph"] == [[0.0, 1.0], [1.0, 3.0]]
    assert data["dam"]["name"] == "Hoover"
    assert data["hydrograph_url"] == f"/apps/dam-inventory/dams/{dam_id}/hydrograph/"


@pytest.mark.parametrize("path", [
    "/apps/dam-inventory/dams/424242/hydrograph/",
    "/apps/dam-inventory/dams/99999999999999999999/hydrograph/",
    "/apps/dam-inventory/dams/abc/hydrograph/",
    "/apps/dam-inventory/dams/424242/json/",
    "/apps/dam-inventory/dams/99999999999999999999/json/",
    "/apps/dam-inventory/dams/424242/delete/",
    # odd ids: no dam yet, zero, leading zeros
    "/apps/dam-inventory/dams/1/json/",
    "/apps/dam-inventory/dams/0/json/",
    "/apps/dam-inventory/dams/0/hydrograph/",
    "/apps/dam-inventory/dams/00000000000000000000000000001/hydrograph/",
])
def test_unknown_dams_are_404(editor_client, store_engine, path):
    assert editor_client.get(path).status_code == 404


def test_row_limit_boundary(editor_client, store_engine, dam_id):
    from tethysapp.dam_inventory.validation import MAX_CSV_ROWS

    at_limit = "".join(f"{i},{i % 97}\n" for i in range(MAX_CSV_ROWS)).encode()
    assert len(at_limit) <= MAX_CSV_BYTES
    r = editor_client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(at_limit)})
    assert r.status_code == 302
    assert len(points(store_engine, dam_id)) == MAX_CSV_ROWS
    over = at_limit + f"{MAX_CSV_ROWS},1\n".encode()
    r = editor_client.post(ASSIGN, {"dam-select": dam_id, "hydrograph-file": csv_file(over)})
    assert r.status_code == 400
    assert f"The file has more than {MAX_CSV_ROWS} rows." in r.content.decode()
    assert len(points(store_engine, dam_id)) == MAX_CSV_ROWS
