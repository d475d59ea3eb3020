"""Which archives the backup writer's retention (KEEP_DAILY, KEEP_WEEKLY) keeps, and its refusal
of a bad value: pure logic of images/backup/stack_backup.py, on files named as it names them."""

import datetime

import pytest

from stackctl.backup import archive_format as backup

PROJECT = "dam-inventory"


def made(tmp_path, *stamps):
    for stamp in stamps:
        (tmp_path / f"{PROJECT}-{stamp}.tar").write_bytes(b"archive")


def left(tmp_path):
    return sorted(p.name.removeprefix(PROJECT + "-").removesuffix(".tar") for p in tmp_path.iterdir()
                  if p.name.startswith(PROJECT + "-"))


def test_newest_of_each_of_the_last_days_and_weeks_is_kept(tmp_path):
    # two a day for ten days: Sun 2026-11-22 .. Tue 2026-12-01
    day0 = datetime.datetime(2026, 11, 22)
    stamps = [(day0 + datetime.timedelta(days=d, hours=h)).strftime(backup.STAMP_FORMAT)
              for d in range(10) for h in (1, 13)]
    made(tmp_path, *stamps, "20261201T000000Z-extra")  # a name that is not one of ours
    (tmp_path / "other-stack-20261101T010000Z.tar").write_bytes(b"another stack's")

    removed = backup.prune(tmp_path, PROJECT, keep_daily=3, keep_weekly=2)
    # daily: the 13:00 archive of Dec 1, Nov 30 and Nov 29; weekly: ISO week 49 (Dec 1) and 48
    # (its newest: Sun Nov 29), already kept
    assert left(tmp_path) == ["20261129T130000Z", "20261130T130000Z", "20261201T000000Z-extra", "20261201T130000Z"]
    assert len(removed) == len(stamps) - 3
    assert (tmp_path / "other-stack-20261101T010000Z.tar").exists()


def test_weeks_reach_further_back_than_days(tmp_path):
    made(tmp_path, "20261201T010000Z", "20261124T010000Z", "20261117T010000Z", "20261110T010000Z")
    backup.prune(tmp_path, PROJECT, keep_daily=1, keep_weekly=3)
    assert left(tmp_path) == ["20261117T010000Z", "20261124T010000Z", "20261201T010000Z"]


def test_nothing_is_pruned_without_a_retention(tmp_path):
    made(tmp_path, "20261201T010000Z", "20261101T010000Z")
    assert backup.prune(tmp_path, PROJECT, 0, 0) == []
    assert left(tmp_path) == ["20261101T010000Z", "20261201T010000Z"]


@pytest.mark.parametrize("value", ["-1", "seven", "7.5"])
def test_a_bad_retention_value_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("KEEP_WEEKLY", value)
    with pytest.raises(backup.BackupError, match="KEEP_WEEKLY"):
        backup.count("KEEP_WEEKLY", 4)
