"""Pages and JSON endpoints. Every refusal is a clear per-field message with a 4xx status; the
database is only touched once the whole input has been validated."""

import contextlib
import functools
import logging
import threading
import time

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker
from tethys_sdk.permissions import has_permission
from tethys_sdk.routing import controller

from . import model, validation
from .app import App
from .consumers import CLOSE_UNAUTHENTICATED, NOTIFICATIONS_URL

log = logging.getLogger(__name__)

PG_INT_MAX = 2**31 - 1
DB_UNAVAILABLE = "The dam database is not available right now; nothing was changed. Try again later."

_engines = {}
_engines_lock = threading.Lock()


class StoreUnavailable(Exception):
    pass


# The store's URL takes five queries to build (4 ms) and changes only when an admin links the
# setting to another service, so each process re-reads it at most every STORE_URL_TTL_SECONDS.
STORE_URL_TTL_SECONDS = 60.0
_store_url = {}  # "value", "read_at"
_store_url_lock = threading.Lock()


def _primary_db_url():
    now = time.monotonic()
    with _store_url_lock:
        if _store_url and now - _store_url["read_at"] < STORE_URL_TTL_SECONDS:
            return _store_url["value"]
    url = App.get_persistent_store_database("primary_db", as_url=True)  # outside the lock
    with _store_url_lock:
        _store_url.update(value=url, read_at=now)
    return url


def forget_store_url():
    """Drops the cached store URL (tests, and whoever just relinked the store)."""
    with _store_url_lock:
        _store_url.clear()


def _sessionmaker():
    """One engine (and connection pool) per store URL for the process: Tethys' own accessor
    builds a new engine, i.e. a new pool, on every call."""
    url = _primary_db_url()
    if url is None:  # setting not linked: Tethys logs it and returns None
        raise StoreUnavailable("persistent store primary_db is not linked")
    key = str(url)
    with _engines_lock:
        if key not in _engines:
            engine = create_engine(url, pool_pre_ping=True)
            _engines[key] = sessionmaker(bind=engine)
        return _engines[key]


@contextlib.contextmanager
def store_session():
    session = _sessionmaker()()
    try:
        yield session
    finally:
        session.close()


def _custom_setting(name):
    """The app's custom setting NAME, read afresh, so an admin's change applies at once. One
    query on Tethys' own CustomSetting model (its value parsing included): App.get_custom_setting
    goes through a manager that joins every kind of setting, 12 ms of an add's ~25 ms."""
    from tethys_apps.models import CustomSetting

    setting = CustomSetting.objects.filter(tethys_app__package=App.package, name=name).first()
    return setting.get_value() if setting is not None else None


def _max_dams():
    value = _custom_setting("max_dams")
    return value if isinstance(value, int) and value >= 0 else None


def _dam_id(raw):
    try:
        dam_id = int(raw)
    except (TypeError, ValueError):
        raise Http404("No such dam.") from None
    if not 0 < dam_id <= PG_INT_MAX:
        raise Http404("No such dam.")
    return dam_id


def _get_dam(session, dam_id):
    dam = model.get_dam(session, dam_id)
    if dam is None:
        raise Http404("No such dam.")
    return dam


def _can_delete(request, dam):
    return bool(dam.created_by and dam.created_by == request.user.username) or has_permission(
        request, "delete_dams"
    )


BASE_MAP_FILES = {"countries": "dam-inventory-basemap/countries.geojson",
                  "lakes": "dam-inventory-basemap/lakes.geojson"}


def _base_map():
    """The map's base layers (static files, in the image) and its tiles, from the app's
    base_map setting; a value that is not valid (an admin's typo) falls back to offline."""
    setting = _custom_setting("base_map")
    try:
        tiles = validation.base_map_tiles(setting or validation.BASE_MAP_OFFLINE)
    except ValueError as e:
        log.warning("base_map setting ignored, offline base map used: %s", e)
        tiles = ""
    return {**BASE_MAP_FILES, "tiles": tiles}


def _unavailable(request, template="unavailable.html"):
    return App.render(request, template, {"message": DB_UNAVAILABLE}, status=503)


def _client_context(request, session):
    """What the JS client reads from data- attributes: nothing about URLs is hard-coded in it."""
    # The mark first: a change committed while the dams are being read is then after it, so the
    # client's first catch-up applies it (again, harmlessly) instead of skipping it.
    last_seq = model.last_event_seq(session)
    dams = model.list_dams(session)
    return {
        "dams": dams,
        "ws_path": App.reverse("home") + NOTIFICATIONS_URL + "/ws/",
        "events_url": App.reverse("dam_events"),
        "last_seq": last_seq,
        "since_url": App.reverse("dams_since"),
        "dam_json_url": App.reverse("dam_json", kwargs={"dam_id": 0}),
        "hydrograph_url": App.reverse("hydrograph", kwargs={"dam_id": 0}),
        "close_unauthenticated": CLOSE_UNAUTHENTICATED,
        "can_add_dams": has_permission(request, "add_dams"),
        "base_map": _base_map(),
    }


@controller
def home(request):
    """Map and list of all dams; live updates from the notifications socket."""
    try:
        with store_session() as session:
            context = _client_context(request, session)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("home: store unavailable")
        return _unavailable(request)
    return App.render(request, "home.html", context)


@controller(url="dams")
def list_dams(request):
    try:
        with store_session() as session:
            context = _client_context(request, session)
            with_hydrograph = {
                dam_id
                for (dam_id,) in session.query(model.Hydrograph.dam_id).all()
            }
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("list_dams: store unavailable")
        return _unavailable(request)
    context["rows"] = [
        {"dam": d, "has_hydrograph": d.id in with_hydrograph, "can_delete": _can_delete(request, d)}
        for d in context["dams"]
    ]
    return App.render(request, "list_dams.html", context)


def _add_form_context(values=None, errors=None, form_error=""):
    values = values or {}
    return {
        "values": values,
        "errors": errors or {},
        "form_error": form_error,
        "owners": validation.OWNERS,
        "today": model.today().isoformat(),
        "base_map": _base_map(),
    }


def requires_permission(perm):
    """403 for a logged-in user without `perm`. Tethys' own permissions_required either
    redirects (which looks like success to a script) or, with raise_exception and DEBUG off,
    answers 404; upstream's misspelt keyword skipped the check altogether."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if not has_permission(request, perm):
                raise PermissionDenied(f"You need the {perm} permission for this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


@controller(url="dams/add")
@requires_permission("add_dams")
def add_dam(request):
    if request.method != "POST":
        return App.render(request, "add_dam.html", _add_form_context({"owner": "Reclamation"}))

    # What the user typed, echoed back into the form (keys usable in templates).
    raw = {
        k.replace("-", "_"): request.POST.get(k, "")
        for k in ("name", "owner", "river", "date-built", "longitude", "latitude")
    }
    values, errors = validation.validate_dam_form(request.POST, model.today())
    if errors:
        messages.error(request, "Please fix errors.")
        return App.render(request, "add_dam.html", _add_form_context(raw, errors), status=400)

    try:
        max_dams = _max_dams()
        with store_session() as session:
            payload = model.add_dam(
                session, created_by=request.user.username, max_dams=max_dams, **values
            )
    except model.InventoryFull:
        message = f'Unable to add dam "{values["name"]}", because the inventory is full (at most {max_dams} dams).'
        messages.warning(request, message)
        return App.render(request, "add_dam.html", _add_form_context(raw, form_error=message), status=409)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("add_dam: store unavailable")
        return App.render(
            request, "add_dam.html", _add_form_context(raw, form_error=DB_UNAVAILABLE), status=503
        )
    messages.success(request, f'Dam "{payload["name"]}" was added.')
    return App.redirect(App.reverse("home"))


@controller(url="hydrographs/assign")
@requires_permission("add_dams")
def assign_hydrograph(request):
    try:
        with store_session() as session:
            dams = model.list_dams(session)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("assign_hydrograph: store unavailable")
        return _unavailable(request)
    context = {"dams": dams, "errors": {}, "selected": None, "max_bytes": validation.MAX_CSV_BYTES}
    if request.method != "POST":
        return App.render(request, "assign_hydrograph.html", context)

    errors = context["errors"]
    raw_id = request.POST.get("dam-select", "").strip()
    dam_id = None
    if not raw_id:
        errors["dam-select"] = "Dam is required."
    else:
        try:
            dam_id = _dam_id(raw_id)
        except Http404:
            dam_id = None
        if dam_id is None or dam_id not in {d.id for d in dams}:
            errors["dam-select"] = "Choose a dam from the list."
            dam_id = None
    context["selected"] = dam_id

    upload = request.FILES.get("hydrograph-file")
    points = None
    if upload is None:
        errors["hydrograph-file"] = "A CSV file (time,flow) is required."
    else:
        try:
            if upload.size > validation.MAX_CSV_BYTES:
                validation.parse_hydrograph_csv(b"", size=upload.size)  # raises "too large"
            points = validation.parse_hydrograph_csv(upload.read(validation.MAX_CSV_BYTES + 1))
        except validation.ValidationError as e:
            errors["hydrograph-file"] = str(e)

    if errors:
        messages.error(request, "Please fix errors.")
        return App.render(request, "assign_hydrograph.html", context, status=400)
    try:
        with store_session() as session:
            model.replace_hydrograph(session, dam_id, points)
    except LookupError:
        errors["dam-select"] = "That dam no longer exists."
        return App.render(request, "assign_hydrograph.html", context, status=400)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("assign_hydrograph: store unavailable")
        context["form_error"] = DB_UNAVAILABLE
        return App.render(request, "assign_hydrograph.html", context, status=503)
    messages.success(request, f"Hydrograph assigned ({len(points)} points).")
    return App.redirect(App.reverse("list_dams"))


def _svg_polyline(points, width=600, height=300, pad=40):
    if not points:
        return None
    t0, t1 = points[0][0], points[-1][0]
    fmax = max(f for _, f in points) or 1.0
    span = (t1 - t0) or 1.0
    coords = " ".join(
        f"{pad + (t - t0) / span * (width - 2 * pad):.1f},{height - pad - f / fmax * (height - 2 * pad):.1f}"
        for t, f in points
    )
    return {"points": coords, "width": width, "height": height, "pad": pad,
            "t0": t0, "t1": t1, "fmax": fmax}


@controller(url="dams/{dam_id}/hydrograph", regex=r"[0-9]+")
def hydrograph(request, dam_id):
    dam_id = _dam_id(dam_id)
    try:
        with store_session() as session:
            dam = _get_dam(session, dam_id)
            points = model.hydrograph_points(session, dam_id)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("hydrograph: store unavailable")
        return _unavailable(request)
    return App.render(
        request, "hydrograph.html", {"dam": dam, "points": points, "plot": _svg_polyline(points)}
    )


@controller(url="dams/{dam_id}/json", regex=r"[0-9]+", login_required=False)
def dam_json(request, dam_id):
    """One dam and its hydrograph, for the home page's detail panel."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Log in to see dams."}, status=401)
    try:
        dam_id = _dam_id(dam_id)
        with store_session() as session:
            dam = _get_dam(session, dam_id)
            points = model.hydrograph_points(session, dam_id)
            return JsonResponse({
                "dam": model.dam_payload(dam),
                "hydrograph": [[t, f] for t, f in points],
                "hydrograph_url": App.reverse("hydrograph", kwargs={"dam_id": dam_id}),
                "delete_url": App.reverse("delete_dam", kwargs={"dam_id": dam_id}) if _can_delete(request, dam) else None,
            })
    except Http404:
        return JsonResponse({"error": "No such dam."}, status=404)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("dam_json: store unavailable")
        return JsonResponse({"error": DB_UNAVAILABLE}, status=503)


@controller(url="dams/{dam_id}/delete", regex=r"[0-9]+")
def delete_dam(request, dam_id):
    dam_id = _dam_id(dam_id)
    try:
        with store_session() as session:
            dam = _get_dam(session, dam_id)
            if not _can_delete(request, dam):
                raise PermissionDenied("Only the dam's creator or an admin can delete it.")
            if request.method != "POST":
                return App.render(request, "delete_dam.html", {"dam": dam})
            name = dam.name
            model.delete_dam(session, dam)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("delete_dam: store unavailable")
        return _unavailable(request)
    messages.success(request, f'Dam "{name}" was deleted.')
    return App.redirect(App.reverse("home"))


def _non_negative(request, key, errors):
    raw = request.GET.get(key, "0").strip() or "0"
    try:
        value = int(raw)
        if not 0 <= value <= PG_INT_MAX:
            raise ValueError
        return value
    except ValueError:
        errors[key] = f"{key} must be an integer between 0 and {PG_INT_MAX}."
        return 0


# At most this many events per answer: a client far behind asks again from the last one.
EVENTS_PAGE = 500


@controller(url="dams/events", login_required=False)
def dam_events(request):
    """The outbox after `after` (a seq), in order: what a client that saw a gap, reconnected
    or got a sync message ahead of it must apply. JSON 401 for anonymous callers."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Log in to see dams."}, status=401)
    errors = {}
    after = _non_negative(request, "after", errors)
    if errors:
        return JsonResponse({"errors": errors}, status=400)
    try:
        with store_session() as session:
            found = model.events_after(session, after, EVENTS_PAGE)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("dam_events: store unavailable")
        return JsonResponse({"error": DB_UNAVAILABLE}, status=503)
    return JsonResponse({
        "events": found,
        "last_seq": found[-1]["seq"] if found else after,
        "more": len(found) == EVENTS_PAGE,
    })


@controller(url="dams/since", login_required=False)
def dams_since(request):
    """Catch-up for a reconnecting client: the dams with id > `since` and the deletions with
    seq > `deleted_since`. JSON 401 (not a login redirect) for anonymous callers."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Log in to see dams."}, status=401)
    errors = {}
    since = _non_negative(request, "since", errors)
    deleted_since = _non_negative(request, "deleted_since", errors)
    if errors:
        return JsonResponse({"errors": errors}, status=400)
    try:
        with store_session() as session:
            dams = model.list_dams(session, since=since)
            deletions = model.deletions_since(session, deleted_since)
    except (StoreUnavailable, SQLAlchemyError):
        log.exception("dams_since: store unavailable")
        return JsonResponse({"error": DB_UNAVAILABLE}, status=503)
    # The marks come from the rows returned, never from a separate query that could see a
    # later commit and let the client skip past a row it was not sent.
    return JsonResponse({
        "dams": [model.dam_payload(d) for d in dams],
        "deleted": [{"id": d.dam_id, "seq": d.seq} for d in deletions],
        "last_id": max([since] + [d.id for d in dams]),
        "last_deletion": max([deleted_since] + [d.seq for d in deletions]),
    })
