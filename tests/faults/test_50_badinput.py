"""Bad input against the running stack, through nginx: malformed Add Dam posts, hydrograph CSV
uploads, catch-up queries and WebSocket frames. No input may produce a 500, write anything, or be
refused without a clear message. CSRF is enforced; nginx refuses an oversized body with 413.

Every generated input is invalid BY CONSTRUCTION (a valid form with at least one field broken in
a known way), so the expected outcome is always "refused" and never depends on the app's own
validation code as an oracle.

Example counts: profile `stack` (default, `make test`: about a minute) or `thorough`
(`make fuzz`: over 10,000 inputs). tests/faults/conftest.py counts them and checks the
database around each property. The thorough profile keeps every failing input in
build/fuzz-examples, and the next run tries it first; its report also prints the
`@reproduce_failure` line that replays it.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import socket
import ssl
import string
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from stackctl import docker
from stackctl.portal import (
    ADD_PATH,
    APP_PATH,
    CATCHUP_PATH,
    EVENTS_PATH,
    HYDROGRAPH_ASSIGN_PATH,
    WS_PATH,
    Portal,
    add_succeeded,
    dam_form,
    dam_json_path,
    unique_name,
    visible_text,
)
from stackctl.settings import BUILD_DIR, Stack
from tests.notifications import ws_headers, ws_origin
from tethysapp.dam_inventory.validation import MAX_CSV_BYTES

settings.register_profile(
    "stack", max_examples=40, deadline=None, derandomize=False, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, print_blob=True,
    database=DirectoryBasedExampleDatabase(str(BUILD_DIR / "fuzz-examples")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "stack")
settings.load_profile(PROFILE)
# The cheap checks (one GET each) get more examples than the form posts.
MORE = {"stack": 80, "thorough": 4000}[PROFILE]
FEW = {"stack": 15, "thorough": 600}[PROFILE]

# What nginx's 413 page says (images/web, the body size limits).
TOO_LARGE = r"\btoo large\b"
FIELD_MESSAGES = {
    "name": r"\bName (is|must)\b",
    "river": r"\bRiver (is|must)\b",
    "owner": r"\bOwner (is|must)\b",
    "date-built": r"\bDate Built (is|must)\b",
    "geometry": r"\b(Location|Longitude|Latitude)\b[\w ]{0,25}?\b(is|must)\b",
}


@pytest.fixture(scope="module")
def admin(target, credentials) -> Portal:
    return Portal.of(target).login(*credentials)


_known_last = [0]


def last_dam_id(portal: Portal) -> int:
    """The highest dam id. Asks only for dams after the last id seen (the answer's last_id is
    max(real last id, since)), so the check stays one small request however many dams exist."""
    resp = portal.get(CATCHUP_PATH, params={"since": _known_last[0]})
    resp.raise_for_status()
    _known_last[0] = int(resp.json()["last_id"])
    return _known_last[0]


def assert_clear_refusal(resp, expected: list[str], what: str):
    text = visible_text(resp.text)
    assert resp.status_code != 500 and "Traceback" not in resp.text, f"{what}: HTTP {resp.status_code}: {text[:500]}"
    assert 400 <= resp.status_code < 500, f"{what}: expected a 4xx refusal, got HTTP {resp.status_code}: {text[:300]}"
    for pattern in expected:
        assert re.search(pattern, text, re.I), f"{what}: no message matching {pattern!r} in: {text[:600]}"


# ------------------------------------------------------------------ malformed Add Dam forms

letters = string.ascii_letters
blank = st.text(alphabet=" \t\r\n\u00a0\u2003", max_size=5)
too_long = st.text(alphabet=letters + "é水 ", min_size=201, max_size=300).filter(lambda s: len(s.strip()) > 200)
control = st.tuples(st.text(alphabet=letters, min_size=1, max_size=10),
                    st.characters(max_codepoint=31).filter(lambda c: c not in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"),
                    st.text(alphabet=letters, min_size=1, max_size=10)).map("".join)
bad_text = st.one_of(blank, too_long, control, st.just(None))  # None: the field is left out

bad_owner = st.one_of(st.just(None), blank,
                      st.text(max_size=40).filter(lambda s: s.strip() not in ("Reclamation", "Army Corp", "Other")))

TODAY = dt.date.today()
bad_date = st.one_of(
    st.just(None), blank,
    st.integers(2, 3_000_000).map(lambda d: (TODAY + dt.timedelta(days=min(d, 2_900_000))).isoformat()),
    st.sampled_from(["2021-02-30", "2019-13-01", "2020-00-10", "2020-1-32", "0999-12-31", "31/12/2020", "yesterday"]),
    st.text(alphabet=letters, min_size=1, max_size=20),
)


def _floatable(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _not_json(s: str) -> bool:
    try:
        json.loads(s)
    except (ValueError, RecursionError):
        return True
    return False


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
lon_ok = st.floats(-180, 180)
lat_ok = st.floats(-90, 90)
out_lon = st.one_of(st.floats(min_value=180.000001, max_value=1e300), st.floats(max_value=-180.000001, min_value=-1e300))
out_lat = st.one_of(st.floats(min_value=90.000001, max_value=1e300), st.floats(max_value=-90.000001, min_value=-1e300))
point = st.tuples(lon_ok, lat_ok).map(lambda c: {"type": "Point", "coordinates": list(c)})
bad_geometry = st.one_of(
    st.just(None), blank,
    st.text(min_size=1, max_size=60).filter(lambda s: s.strip() and _not_json(s)),
    st.one_of(st.integers(), finite, st.lists(st.integers(), max_size=3), st.text(max_size=10), st.booleans()).map(json.dumps),
    st.tuples(out_lon, lat_ok).map(lambda c: json.dumps({"type": "Point", "coordinates": list(c)})),
    st.tuples(lon_ok, out_lat).map(lambda c: json.dumps({"type": "Point", "coordinates": list(c)})),
    st.sampled_from([
        '{"type": "Point", "coordinates": [NaN, 1]}',
        '{"type": "Point", "coordinates": [1, Infinity]}',
        '{"type": "Point", "coordinates": ["1", "2"]}',
        '{"type": "Point", "coordinates": [true, false]}',
        '{"type": "Point", "coordinates": [1]}',
        '{"type": "Point", "coordinates": [1, 2, 3, 4]}',
        '{"type": "Point"}',
        '{"type": "LineString", "coordinates": [[1, 2], [3, 4]]}',
        '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}',
        '{"type": "MultiPoint", "coordinates": [[1, 2]]}',
        '{"type": "GeometryCollection", "geometries": []}',
        '{"type": "FeatureCollection", "features": null}',
        '{"coordinates": [1, 2]}',
    ]),
    st.lists(point, min_size=2, max_size=4).map(lambda ps: json.dumps({"type": "GeometryCollection", "geometries": ps})),
    st.integers(1000, 50_000).map(lambda n: "[" * n + "]" * n),
    st.just(json.dumps({"type": "Point", "coordinates": [1, 2], "pad": "x" * 100_001})),
)
# With no geometry the app reads longitude/latitude fields: only ever send broken ones.
bad_lonlat = st.one_of(
    st.just({}),
    st.tuples(st.text(alphabet=letters, min_size=1, max_size=8), st.text(alphabet=letters, max_size=8))
    .map(lambda t: {"longitude": t[0], "latitude": t[1]}),
    st.tuples(out_lon, lat_ok).map(lambda t: {"longitude": repr(t[0]), "latitude": repr(t[1])}),
    st.sampled_from([{"longitude": "nan", "latitude": "1"}, {"longitude": "1", "latitude": "inf"},
                     {"longitude": "10"}, {"latitude": "10"}]),
)

BREAKERS = {"name": bad_text, "river": bad_text, "owner": bad_owner, "date-built": bad_date, "geometry": bad_geometry}


@st.composite
def broken_forms(draw):
    fields = draw(st.sets(st.sampled_from(sorted(BREAKERS)), min_size=1, max_size=5))
    form = dam_form("bad-" + uuid.uuid4().hex[:12])
    for f in fields:
        value = draw(BREAKERS[f])
        if value is None:
            form.pop(f)
        else:
            form[f] = value
    if "geometry" in fields and not (form.get("geometry") or "").strip():
        # Only the lon/lat fallback would be read: keep it broken too (never a valid point).
        form.update(draw(bad_lonlat))
    return sorted(fields), form


@given(case=broken_forms())
def test_malformed_dam_forms_are_refused_clearly_and_write_nothing(admin, case):
    fields, form = case
    before = last_dam_id(admin)
    resp = admin.post(ADD_PATH, form)
    # A form whose encoded body is over nginx's limit never reaches the app: nginx's 413 page
    # is then the clear refusal (tests of the limit itself are below).
    expected = [TOO_LARGE] if resp.status_code == 413 else ["Please fix errors"] + [FIELD_MESSAGES[f] for f in fields]
    assert_clear_refusal(resp, expected, f"add dam with broken {fields}")
    assert last_dam_id(admin) == before, f"a refused add (broken {fields}) wrote a dam"


# ------------------------------------------------------------------ malformed hydrograph CSVs

GOOD_CSV = b"time,flow\n0,10\n1,25.5\n2,12\n"
GOOD_POINTS = [[0.0, 10.0], [1.0, 25.5], [2.0, 12.0]]


@pytest.fixture(scope="module")
def hydro_dam(admin) -> int:
    dam_id = admin.add_dam_checked(unique_name("badinput-hydrograph"))
    resp = admin.assign_hydrograph(dam_id, GOOD_CSV)
    assert add_succeeded(resp), f"assigning a valid hydrograph failed: HTTP {resp.status_code}"
    assert admin.hydrograph(dam_id) == GOOD_POINTS
    return dam_id


num = st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda x: f"{x:g}")
rows = st.lists(st.tuples(st.integers(0, 10**6), num), min_size=1, max_size=30, unique_by=lambda r: r[0]) \
    .map(lambda rs: [f"{t},{f}" for t, f in rs])


@st.composite
def broken_csvs(draw):
    """(bytes, message pattern) pairs: a plausible CSV with one defect of a known kind."""
    kind = draw(st.sampled_from(["empty", "header", "one-column", "text", "negative", "non-finite",
                                 "duplicate", "not-utf8", "nul"]))
    good = draw(rows)
    pos = draw(st.integers(1, len(good)))  # never line 1: a text first line is a header
    if kind == "empty":
        return draw(st.sampled_from([b"", b" ", b"\n\n", b"\r\n \r\n"])), r"empty|CSV file .* is required"
    if kind == "header":
        return draw(st.sampled_from([b"time,flow\n", b"time,flow\n\n", b"a,b\n"])), r"no numeric rows"
    if kind == "one-column":
        good.insert(draw(st.integers(0, len(good))), draw(st.sampled_from(["5", "x", ""])) or "7")
        return "\n".join(good).encode(), r"two columns"
    if kind == "text":
        word = draw(st.text(alphabet=letters, min_size=1, max_size=6).filter(lambda w: not _floatable(w)))
        good.insert(pos, f"{word},1")
        return "\n".join(good).encode(), r"must be numbers"
    if kind == "negative":
        good.insert(draw(st.integers(0, len(good))), f"{10**7 + draw(st.integers(0, 99))},-{draw(st.integers(1, 10**6))}")
        return "\n".join(good).encode(), r"must not be negative"
    if kind == "non-finite":
        good.insert(draw(st.integers(0, len(good))), draw(st.sampled_from(["inf,1", "1e999,1", f"{10**8},nan", f"{10**8},-inf"])))
        return "\n".join(good).encode(), r"finite"
    if kind == "duplicate":
        t = good[0].split(",")[0]
        good.insert(pos, f"{t},3")
        return "\n".join(good).encode(), r"appears twice"
    if kind == "not-utf8":
        return "\n".join(good).encode() + draw(st.binary(max_size=20)) + b"\xff\xfe\xfa", r"UTF-8"
    return "\n".join(good).encode() + b"\x00" + draw(st.binary(max_size=20)).replace(b"\xff", b""), r"(binary|UTF-8)"


@given(case=broken_csvs())
def test_malformed_csv_uploads_are_refused_clearly_and_keep_the_hydrograph(admin, hydro_dam, case):
    content, message = case
    resp = admin.post(HYDROGRAPH_ASSIGN_PATH, {"dam-select": str(hydro_dam)},
                      files={"hydrograph-file": ("h.csv", content, "text/csv")})
    assert_clear_refusal(resp, ["Please fix errors", message], f"CSV upload {content[:80]!r}")
    assert admin.hydrograph(hydro_dam) == GOOD_POINTS, "a refused upload changed the hydrograph"


@settings(max_examples=FEW)
@given(dam=st.one_of(st.just(None), blank, st.text(alphabet=letters, min_size=1, max_size=8),
                     st.integers(-10**12, 0).map(str), st.integers(2**31, 10**20).map(str),
                     st.sampled_from(["1.5", "0x10", "1e3", "1 0"])),
       with_file=st.booleans())
def test_bad_dam_choice_or_missing_file_is_refused(admin, hydro_dam, dam, with_file):
    data = {} if dam is None else {"dam-select": dam}
    files = {"hydrograph-file": ("h.csv", b"0,1\n1,2\n", "text/csv")} if with_file else None
    resp = admin.post(HYDROGRAPH_ASSIGN_PATH, data, files=files)
    expected = [r"\bDam is required|Choose a dam from the list"] + ([] if with_file else [r"CSV file .* is required"])
    assert_clear_refusal(resp, expected, f"assign with dam-select={dam!r}, file={with_file}")
    assert admin.hydrograph(hydro_dam) == GOOD_POINTS


def test_too_many_rows_is_refused_and_keeps_the_hydrograph(admin, hydro_dam):
    content = "\n".join(f"{i},{i % 97}" for i in range(20_001)).encode()
    resp = admin.post(HYDROGRAPH_ASSIGN_PATH, {"dam-select": str(hydro_dam)},
                      files={"hydrograph-file": ("h.csv", content, "text/csv")})
    assert_clear_refusal(resp, [r"more than \d+ rows"], "CSV with 20,001 rows")
    assert admin.hydrograph(hydro_dam) == GOOD_POINTS


# ------------------------------------------------------------------ catch-up and JSON queries

@settings(max_examples=MORE)
@given(since=st.one_of(st.text(max_size=12), st.integers(-10**20, 10**20).map(str)),
       deleted=st.one_of(st.none(), st.text(max_size=12)))
def test_catch_up_query_never_500(admin, since, deleted):
    params = {"since": since} | ({} if deleted is None else {"deleted_since": deleted})
    resp = admin.get(CATCHUP_PATH, params=params)
    assert resp.status_code in (200, 400), f"catch-up with {params!r}: HTTP {resp.status_code}: {resp.text[:300]}"
    body = resp.json()
    if resp.status_code == 400:
        assert body.get("errors"), f"400 without a message for {params!r}: {body}"
    else:
        assert isinstance(body.get("dams"), list)


@settings(max_examples=MORE)
@given(after=st.one_of(st.text(max_size=12), st.integers(-10**20, 10**20).map(str), st.just(str(2**63))))
def test_events_query_never_500(admin, after):
    resp = admin.get(EVENTS_PATH, params={"after": after})
    assert resp.status_code in (200, 400), f"events after {after!r}: HTTP {resp.status_code}: {resp.text[:300]}"
    body = resp.json()
    if resp.status_code == 400:
        assert body.get("errors"), f"400 without a message for after={after!r}: {body}"
    else:
        assert isinstance(body.get("events"), list) and [e["seq"] for e in body["events"]] == sorted(
            e["seq"] for e in body["events"]), body


# Request headers: any name a client may send (but those that frame the request itself) with
# any value HTTP allows, on a page, the catch-up and the events endpoint.
TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "expect"}
header_names = st.one_of(
    st.sampled_from(["Cookie", "Accept", "Accept-Language", "Accept-Encoding", "Content-Type", "Range", "If-None-Match",
                     "If-Modified-Since", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP",
                     "X-Requested-With", "Referer", "Origin", "User-Agent", "Authorization", "Forwarded"]),
    st.text(alphabet=TOKEN, min_size=1, max_size=30),
).filter(lambda name: name.lower() not in FRAMING)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
                        max_size=300).filter(lambda v: v == v.strip())


@settings(max_examples=FEW * 2)
@given(headers=st.dictionaries(header_names, header_values, min_size=1, max_size=4),
       path=st.sampled_from([APP_PATH, CATCHUP_PATH, EVENTS_PATH]))
def test_odd_request_headers_never_500(admin, headers, path):
    resp = admin.get(path, headers=headers)
    assert resp.status_code < 500, f"GET {path} with {headers!r}: HTTP {resp.status_code}: {resp.text[:300]}"


@settings(max_examples=FEW)
@given(dam_id=st.one_of(st.integers(0, 10**30), st.just(2**31 - 1), st.just(2**31)))
def test_dam_json_unknown_ids_are_404_with_a_message(admin, dam_id):
    before = last_dam_id(admin)
    if 0 < dam_id <= before:
        dam_id = before + 10**6  # never one of the real dams
    resp = admin.get(dam_json_path(dam_id))
    assert resp.status_code == 404, f"dam {dam_id}: HTTP {resp.status_code}: {resp.text[:200]}"
    assert resp.json().get("error"), "404 without a message"


# ------------------------------------------------------------------ CSRF and size limits

def test_csrf_is_enforced_on_add_and_upload(target, admin):
    before = last_dam_id(admin)
    for token in (None, "x" * 64):
        data = dam_form(unique_name("csrf"))
        if token:
            data["csrfmiddlewaretoken"] = token
        resp = admin.post(ADD_PATH, data, csrf=False)
        assert resp.status_code == 403, f"add without a valid CSRF token: HTTP {resp.status_code}"
    resp = admin.post(HYDROGRAPH_ASSIGN_PATH, {"dam-select": "1"}, csrf=False,
                      files={"hydrograph-file": ("h.csv", GOOD_CSV, "text/csv")})
    assert resp.status_code == 403, f"upload without a CSRF token: HTTP {resp.status_code}"
    # A cross-site post carrying a valid token but a foreign Origin is refused as well.
    resp = admin.post(ADD_PATH, dam_form(unique_name("csrf-origin")),
                      headers={"Origin": "http://evil.example", "Referer": "http://evil.example/"})
    assert resp.status_code == 403, f"add with a foreign Origin: HTTP {resp.status_code}"
    assert last_dam_id(admin) == before, "a post refused for CSRF wrote a dam"


SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _nginx_body_limits(containers) -> dict[str, int]:
    """{"forms": bytes, "upload": bytes}: what nginx passes on, read from the config Salt
    rendered at start (the server's limit, and the hydrograph upload location's)."""
    conf = docker.docker("exec", containers["web"], "sh", "-c", 'cat "$TETHYS_RUN_DIR/nginx.conf"').stdout
    upload_block = conf.split(f"location = {HYDROGRAPH_ASSIGN_PATH} {{", 1)[-1].split("}", 1)[0]
    limits = {}
    for name, text in (("forms", conf), ("upload", upload_block)):
        m = re.search(r"client_max_body_size\s+(\d+)([kKmMgG]?);", text)
        assert m, f"no client_max_body_size for {name} in the web container's nginx.conf"
        limits[name] = int(m.group(1)) * SIZE_UNITS[m.group(2).lower()]
    return limits


def tls_context(target: Stack) -> ssl.SSLContext | None:
    """What a raw client needs to speak to the stack's edge: TLS trusting its CA, or nothing."""
    return ssl.create_default_context(cafile=target.ca_file) if target.scheme == "https" else None


def tls_wrapped(target: Stack, raw: socket.socket) -> socket.socket:
    context = tls_context(target)
    return context.wrap_socket(raw, server_hostname=target.host) if context else raw


def _post_raw(target, admin, path: str, size: int, *, whole: bool = False) -> bytes:
    """Declares a SIZE-byte multipart body and sends its start (nginx judges the declared
    length), or with WHOLE all of it (a body nginx accepts is read in full first)."""
    host, port = target.host_port.rsplit(":", 1)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {target.host_port}\r\n"
        f"Cookie: {admin.cookie_header}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = b""
    with tls_wrapped(target, socket.create_connection((host, int(port)), timeout=30)) as s:
        s.sendall(head + b"--x\r\n" + b"0" * ((size - 5) if whole else 65536))
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return answer


@pytest.mark.parametrize("where", ["forms", "upload"])
def test_a_body_over_its_location_limit_gets_413_and_a_clear_page_from_nginx(target, admin, containers, where):
    limits = _nginx_body_limits(containers)
    assert 0 < limits["forms"] < limits["upload"], f"forms must be bounded far below the upload: {limits}"
    assert limits["upload"] >= MAX_CSV_BYTES, f"the upload limit is below what the app accepts: {limits}"
    path = HYDROGRAPH_ASSIGN_PATH if where == "upload" else ADD_PATH
    size = limits[where] + 1024 * 1024
    answer = _post_raw(target, admin, path, size)
    status = answer.split(b"\r\n", 1)[0].decode("latin1")
    assert " 413 " in status + " ", f"a {size}-byte body to {path} (limit {limits[where]}) got {status!r}"
    assert b"server: nginx" in answer.lower(), "the 413 did not come from nginx (the body reached the app)"
    assert b"too large" in answer.lower(), f"the 413 page does not say what happened: {answer[-400:]!r}"


def test_a_body_within_the_upload_limit_reaches_the_app(target, admin, containers):
    # Above the forms limit, within the upload's: nginx passes it on and the app answers.
    size = _nginx_body_limits(containers)["forms"] + 64 * 1024
    answer = _post_raw(target, admin, HYDROGRAPH_ASSIGN_PATH, size, whole=True)
    status = answer.split(b"\r\n", 1)[0].decode("latin1")
    assert " 413 " not in status + " ", f"a {size}-byte upload was refused by nginx: {status!r}"
    assert b"x-asgi-worker: " in answer.lower(), f"the upload did not reach a worker: {answer[:300]!r}"


# ------------------------------------------------------------------ WebSocket frames

async def _ws_round(portal: Portal, frames: list[str | bytes]):
    """Sends frames on a fresh socket, then a "ping": returns (pong?, close code)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(portal.ws_url, additional_headers=ws_headers(portal), origin=ws_origin(portal),
                       proxy=None, compression=None, max_size=2**20, open_timeout=10,
                       **portal.ws_options()) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            await ws.send("ping")
            while True:
                reply = await asyncio.wait_for(ws.recv(), 5)
                if reply == "pong":
                    return True, None
        except ConnectionClosed as exc:
            return False, exc.rcvd.code if exc.rcvd else None
        except asyncio.TimeoutError:
            return False, "no pong within 5 s"


frames = st.lists(st.one_of(
    st.text(max_size=2000),
    st.binary(max_size=4096),
    st.sampled_from(['{"type": "dam_notifications", "dam": {"id": -1}}', '{"type": "websocket.disconnect"}',
                     "null", "[]", "{" * 1000, "\x00", "ping" * 1000]),
    st.integers(10_000, 200_000).map(lambda n: "x" * n),
), min_size=1, max_size=5)


@settings(max_examples=FEW * 2)
@given(batch=frames)
def test_garbage_websocket_frames_do_not_break_the_socket(admin, batch):
    ok, code = asyncio.run(_ws_round(admin, batch))
    assert code != 1011, "a frame crashed the consumer (close 1011: server error)"
    # Alive, or a clean protocol-level refusal (unsupported data, policy, too big).
    assert ok or code in (1003, 1008, 1009), f"after frames {[f[:40] for f in batch]!r} the socket stopped answering: {code}"


async def _raw_garbage(target: Stack, portal: Portal, garbage: bytes) -> bytes:
    """A real handshake, then raw bytes that are not valid WebSocket framing."""
    host, port = target.host_port.rsplit(":", 1)
    context = tls_context(target)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=context,
                                                   server_hostname=host if context else None)
    try:
        writer.write((
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {target.host_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {portal.base_url}\r\nCookie: {portal.cookie_header}\r\n\r\n"
        ).encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b" 101 " in head.split(b"\r\n", 1)[0], f"handshake refused: {head[:200]!r}"
        writer.write(garbage)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(4096), 0.5)
        except asyncio.TimeoutError:
            return b""
    finally:
        writer.close()


@settings(max_examples=FEW)
@given(garbage=st.binary(min_size=1, max_size=512))
def test_raw_protocol_garbage_is_contained(target, admin, garbage):
    answer = asyncio.run(_raw_garbage(target, admin, garbage))
    # Whatever the server said to that socket, the service goes on for everybody else.
    ok, code = asyncio.run(_ws_round(admin, []))
    assert ok, f"after raw bytes {garbage[:40]!r} (server said {answer[:40]!r}) a fresh socket failed: {code}"
