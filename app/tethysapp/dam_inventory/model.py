"""The persistent store `primary_db` (PostGIS): tables, the initializer, and the data functions.

Every function that writes takes a session and commits exactly once, so an add or an assign is
one transaction. An add or a delete also writes its event to the outbox (`dam_events`) in that
transaction: the event's sequence number orders every change, live messages carry it, and a
client that sees a gap asks for what it missed (`events_after`). The live message itself is
queued on the session and only sent after the commit (see events.py).
"""

import datetime as dt
import json

from geoalchemy2 import Geometry
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Session, declarative_base, relationship

from . import events

Base = declarative_base()
SRID = 4326
# Key of the transaction-level advisory lock that serialises adds and deletes (arbitrary
# constant, unique to this app). Two concurrent adds cannot both pass the max_dams check, and
# ids / deletion seqs become visible in increasing order, which the catch-up relies on
# ("everything after N" never skips a row that commits late).
ADD_LOCK_KEY = 734_211_001


class Dam(Base):
    __tablename__ = "dams"

    id = Column(Integer, primary_key=True)
    name = Column(String(200), nullable=False)
    owner = Column(String(50), nullable=False)
    river = Column(String(200), nullable=False)
    date_built = Column(Date, nullable=False)
    # A typed PostGIS column (geometry(Point,4326)) registered in geometry_columns, so
    # GeoServer and GIS tools read it directly.
    geom = Column(Geometry("POINT", srid=SRID, spatial_index=True), nullable=False)
    created_by = Column(String(150), nullable=True)
    created_at = Column(DateTime(timezone=True), server_default=func.now(), nullable=False)

    hydrograph = relationship(
        "Hydrograph", back_populates="dam", uselist=False, cascade="all, delete-orphan"
    )


class Hydrograph(Base):
    __tablename__ = "hydrographs"
    __table_args__ = (UniqueConstraint("dam_id"),)

    id = Column(Integer, primary_key=True)
    dam_id = Column(ForeignKey("dams.id", ondelete="CASCADE"), nullable=False)

    dam = relationship("Dam", back_populates="hydrograph")
    points = relationship(
        "HydrographPoint",
        back_populates="hydrograph",
        cascade="all, delete-orphan",
        order_by="HydrographPoint.time",
    )


class HydrographPoint(Base):
    __tablename__ = "hydrograph_points"

    id = Column(Integer, primary_key=True)
    hydrograph_id = Column(ForeignKey("hydrographs.id", ondelete="CASCADE"), nullable=False, index=True)
    time = Column(Float, nullable=False)  # hours
    flow = Column(Float, nullable=False)  # cfs

    hydrograph = relationship("Hydrograph", back_populates="points")


class DamDeletion(Base):
    """One row per deleted dam, so a reconnecting client can learn what it missed."""

    __tablename__ = "dam_deletions"

    seq = Column(Integer, primary_key=True)
    dam_id = Column(Integer, nullable=False)
    deleted_at = Column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class DamEvent(Base):
    """The outbox: one row per add or delete, written in the transaction of the change and
    under ADD_LOCK_KEY, so sequence numbers become visible in increasing order with no hole
    that fills in later. `message` is the live message's JSON, without its seq."""

    __tablename__ = "dam_events"

    seq = Column(Integer, primary_key=True)
    kind = Column(String(20), nullable=False)
    dam_id = Column(Integer, nullable=False)
    message = Column(Text, nullable=False)
    created_at = Column(DateTime(timezone=True), server_default=func.now(), nullable=False)

    def as_message(self):
        return {**json.loads(self.message), "seq": self.seq}


def init_primary_db(engine, first_time):
    """Tethys persistent store initializer. Idempotent: CREATE ... IF NOT EXISTS only, no sample
    data, so `tethys syncstores` can run at every container start."""
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    Base.metadata.create_all(engine, checkfirst=True)
    _record_dams_from_before_the_outbox(engine)


def _record_dams_from_before_the_outbox(engine):
    """A store made before the outbox existed has dams and no events: each gets its add event
    (in id order), so a client catching up from 0 gets every dam. Once only: with any event
    present, nothing is done."""
    with Session(engine) as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADD_LOCK_KEY})
        if session.query(DamEvent.seq).first() is not None:
            session.rollback()
            return
        for dam in list_dams(session):
            _record(session, events.dam_added(dam_payload(dam)), dam.id)
        session.commit()


class InventoryFull(Exception):
    pass


def dam_payload(dam, lon=None, lat=None):
    if lon is None or lat is None:
        lon, lat = dam.lon, dam.lat
    return {
        "id": dam.id,
        "name": dam.name,
        "owner": dam.owner,
        "river": dam.river,
        "date_built": dam.date_built.isoformat(),
        "lon": lon,
        "lat": lat,
    }


def _with_lonlat(session, query):
    rows = query.add_columns(func.ST_X(Dam.geom), func.ST_Y(Dam.geom)).all()
    dams = []
    for dam, lon, lat in rows:
        dam.lon, dam.lat = lon, lat  # plain attributes, not columns: read from the geometry
        dams.append(dam)
    return dams


def list_dams(session, since=0):
    return _with_lonlat(session, session.query(Dam).filter(Dam.id > since).order_by(Dam.id))


def get_dam(session, dam_id):
    found = _with_lonlat(session, session.query(Dam).filter(Dam.id == dam_id))
    return found[0] if found else None


def count_dams(session):
    return session.query(func.count(Dam.id)).scalar()


def add_dam(session, *, name, owner, river, date_built, lon, lat, created_by=None, max_dams=None):
    """Adds a dam and queues its notification; one transaction. Raises InventoryFull."""
    try:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADD_LOCK_KEY})
        if max_dams is not None and count_dams(session) >= max_dams:
            raise InventoryFull(name)
        dam = Dam(
            name=name,
            owner=owner,
            river=river,
            date_built=date_built,
            geom=func.ST_SetSRID(func.ST_MakePoint(lon, lat), SRID),
            created_by=created_by,
        )
        session.add(dam)
        session.flush()
        dam.lon, dam.lat = lon, lat
        payload = dam_payload(dam, lon, lat)
        events.queue(session, _record(session, events.dam_added(payload), dam.id))
        session.commit()
        return payload
    except BaseException:
        session.rollback()
        raise


def delete_dam(session, dam):
    """Deletes a dam (its hydrograph goes with it), records the deletion and queues the
    notification; one transaction. Returns the deletion sequence number."""
    try:
        dam_id, name = dam.id, dam.name
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADD_LOCK_KEY})
        session.delete(dam)
        deletion = DamDeletion(dam_id=dam_id)
        session.add(deletion)
        session.flush()
        events.queue(session, _record(session, events.dam_deleted(dam_id, name, deletion.seq), dam_id))
        session.commit()
        return deletion.seq
    except BaseException:
        session.rollback()
        raise


def _record(session, message, dam_id):
    """Writes MESSAGE to the outbox (the caller holds ADD_LOCK_KEY); returns it with its seq."""
    event = DamEvent(kind=message["event"], dam_id=dam_id, message=json.dumps(message))
    session.add(event)
    session.flush()
    return event.as_message()


def events_after(session, seq, limit):
    """The live messages of the events after SEQ, in order, at most LIMIT."""
    rows = session.query(DamEvent).filter(DamEvent.seq > seq).order_by(DamEvent.seq).limit(limit).all()
    return [row.as_message() for row in rows]


def last_event_seq(session):
    return session.query(func.coalesce(func.max(DamEvent.seq), 0)).scalar()


def deletions_since(session, seq):
    return session.query(DamDeletion).filter(DamDeletion.seq > seq).order_by(DamDeletion.seq).all()


def replace_hydrograph(session, dam_id, points):
    """Replaces the dam's hydrograph by `points` [(time, flow)]; one transaction, so a failure
    leaves the previous hydrograph untouched."""
    try:
        dam = session.query(Dam).filter(Dam.id == dam_id).with_for_update().one_or_none()
        if dam is None:
            raise LookupError(dam_id)
        if dam.hydrograph is not None:
            session.delete(dam.hydrograph)
            session.flush()
        hydrograph = Hydrograph(dam_id=dam.id)
        hydrograph.points = [HydrographPoint(time=t, flow=f) for t, f in points]
        session.add(hydrograph)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def hydrograph_points(session, dam_id):
    rows = (
        session.query(HydrographPoint.time, HydrographPoint.flow)
        .join(Hydrograph)
        .filter(Hydrograph.dam_id == dam_id)
        .order_by(HydrographPoint.time)
        .all()
    )
    return [(t, f) for t, f in rows]


def today():
    return dt.date.today()
