"""Pure input checks (no Django, no database): form fields, GeoJSON points, hydrograph CSVs.

Every check returns values plus a dict of per-field messages, so a controller can show all the
problems of a submission at once and never lets a malformed value reach the database.
"""

import csv
import datetime as dt
import io
import json
import math

OWNERS = ("Reclamation", "Army Corp", "Other")
MAX_TEXT = 200  # length of the name/river columns
DATE_FORMATS = (
    "%Y-%m-%d",  # <input type="date"> and scripts
    "%B %d, %Y",  # the upstream DatePicker format ("January 5, 2020"), kept for old scripts
    "%b %d, %Y",
    "%m/%d/%Y",
)
MAX_CSV_BYTES = 1024 * 1024  # one MiB: a year of hourly flows is ~150 kB
MAX_CSV_ROWS = 20000


class ValidationError(Exception):
    """A refusal with a message meant for the user."""


def _text(data, key, label, errors):
    value = (data.get(key) or "").strip()
    if not value:
        errors[key] = f"{label} is required."
    elif len(value) > MAX_TEXT:
        errors[key] = f"{label} must be at most {MAX_TEXT} characters."
    elif any(ord(c) < 32 for c in value):
        errors[key] = f"{label} must not contain control characters."
    return value


def parse_date(raw, today):
    raw = (raw or "").strip()
    if not raw:
        raise ValidationError("Date Built is required.")
    for fmt in DATE_FORMATS:
        try:
            value = dt.datetime.strptime(raw, fmt).date()
            break
        except ValueError:
            continue
    else:
        raise ValidationError("Date Built must be a real date (YYYY-MM-DD).")
    if value > today:
        raise ValidationError("Date Built must not be in the future.")
    if value.year < 1000:
        raise ValidationError("Date Built must be after the year 1000.")
    return value


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError("Location coordinates must be numbers.")
    if not math.isfinite(value):
        raise ValidationError("Location coordinates must be finite numbers.")
    return float(value)


def _check_lon_lat(lon, lat):
    if not -180.0 <= lon <= 180.0:
        raise ValidationError("Longitude must be between -180 and 180.")
    if not -90.0 <= lat <= 90.0:
        raise ValidationError("Latitude must be between -90 and 90.")
    return lon, lat


def _single_point(obj):
    """Accepts a Point, a Feature, a FeatureCollection or a GeometryCollection holding one point
    (the Tethys map gizmo posts a GeometryCollection)."""
    if not isinstance(obj, dict):
        raise ValidationError("Location must be a GeoJSON object.")
    kind = obj.get("type")
    if kind == "Point":
        coords = obj.get("coordinates")
        if not isinstance(coords, list) or len(coords) not in (2, 3):
            raise ValidationError("Location must be a point with [longitude, latitude].")
        return _check_lon_lat(_number(coords[0]), _number(coords[1]))
    if kind == "Feature":
        return _single_point(obj.get("geometry"))
    members_key = {"FeatureCollection": "features", "GeometryCollection": "geometries"}.get(kind)
    if members_key is None:
        raise ValidationError("Location must be a single point.")
    members = obj.get(members_key)
    if not isinstance(members, list) or len(members) != 1:
        raise ValidationError("Location must be exactly one point (draw one point on the map).")
    return _single_point(members[0])


def parse_point(geometry, longitude=None, latitude=None):
    """Returns (lon, lat) from GeoJSON, or from plain longitude/latitude fields (used when the
    map cannot load, e.g. offline) when no geometry was drawn."""
    geometry = (geometry or "").strip()
    if geometry:
        if len(geometry) > 100_000:
            raise ValidationError("Location is too large to be a single point.")
        try:
            obj = json.loads(geometry)
        except (ValueError, RecursionError):
            raise ValidationError("Location must be valid GeoJSON.") from None
        return _single_point(obj)
    longitude = (longitude or "").strip()
    latitude = (latitude or "").strip()
    if not longitude and not latitude:
        raise ValidationError("Location is required.")
    try:
        lon, lat = float(longitude), float(latitude)
    except ValueError:
        raise ValidationError("Longitude and latitude must both be numbers.") from None
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValidationError("Longitude and latitude must be finite numbers.")
    return _check_lon_lat(lon, lat)


def validate_dam_form(data, today):
    """data: a mapping like request.POST. Returns (values, errors); errors is keyed by the form
    field name (name, owner, river, date-built, geometry)."""
    errors = {}
    values = {
        "name": _text(data, "name", "Name", errors),
        "river": _text(data, "river", "River", errors),
    }
    owner = (data.get("owner") or "").strip()
    if not owner:
        errors["owner"] = "Owner is required."
    elif owner not in OWNERS:
        errors["owner"] = "Owner must be one of: " + ", ".join(OWNERS) + "."
    values["owner"] = owner
    try:
        values["date_built"] = parse_date(data.get("date-built"), today)
    except ValidationError as e:
        errors["date-built"] = str(e)
    try:
        values["lon"], values["lat"] = parse_point(
            data.get("geometry"), data.get("longitude"), data.get("latitude")
        )
    except ValidationError as e:
        errors["geometry"] = str(e)
    return values, errors


def parse_hydrograph_csv(raw, size=None):
    """raw: bytes of an uploaded `time,flow` CSV. Returns a list of (time, flow) floats sorted by
    time, or raises ValidationError. A first row that is not numeric is taken as a header."""
    if size is None:
        size = len(raw)
    if size > MAX_CSV_BYTES:
        raise ValidationError(
            f"The file is too large ({size} bytes); the limit is {MAX_CSV_BYTES} bytes."
        )
    if not raw or not raw.strip():
        raise ValidationError("The file is empty.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("The file must be a UTF-8 text CSV file.") from None
    if "\x00" in text:
        raise ValidationError("The file must be a text CSV file, not binary data.")
    points = []
    seen_times = set()
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise ValidationError(f"The file is not valid CSV ({e}).") from None
    for line_no, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if len(cells) < 2:
            raise ValidationError(f"Line {line_no}: expected two columns, time and flow.")
        try:
            time, flow = float(cells[0]), float(cells[1])
        except ValueError:
            if not points and line_no == 1:
                continue  # header row such as "time,flow"
            raise ValidationError(
                f"Line {line_no}: time and flow must be numbers (got {cells[0][:20]!r}, {cells[1][:20]!r})."
            ) from None
        if not (math.isfinite(time) and math.isfinite(flow)):
            raise ValidationError(f"Line {line_no}: time and flow must be finite numbers.")
        if time < 0 or flow < 0:
            raise ValidationError(f"Line {line_no}: time and flow must not be negative.")
        if time in seen_times:
            raise ValidationError(f"Line {line_no}: time {cells[0]} appears twice.")
        seen_times.add(time)
        points.append((time, flow))
        if len(points) > MAX_CSV_ROWS:
            raise ValidationError(f"The file has more than {MAX_CSV_ROWS} rows.")
    if not points:
        raise ValidationError("The file has no numeric rows (expected lines of time,flow).")
    points.sort()
    return points


# The map's base_map setting: offline (the stack's own base layers), OpenStreetMap's tiles, or
# an XYZ template. The browser fetches tiles itself, so only http(s) URLs are accepted.
BASE_MAP_OFFLINE = "offline"
BASE_MAP_OSM = "osm"
TILE_PLACEHOLDERS = ("{z}", "{x}", "{y}")


def base_map_tiles(setting):
    """The tiles the map draws over its offline base: "" (none), "osm", or the URL template.
    ValueError names what is wrong."""
    value = (setting or "").strip()
    if value in (BASE_MAP_OFFLINE, BASE_MAP_OSM):
        return "" if value == BASE_MAP_OFFLINE else value
    if not value.startswith(("https://", "http://")) or any(c.isspace() or c in "\"'<>" for c in value):
        raise ValueError(f"base_map must be {BASE_MAP_OFFLINE}, {BASE_MAP_OSM} or an http(s) tile URL, got {value!r}")
    missing = [p for p in TILE_PLACEHOLDERS if p not in value]
    if missing:
        raise ValueError(f"the tile URL {value!r} lacks {', '.join(missing)}")
    return value
