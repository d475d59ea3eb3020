"""The soak campaign against the test stack: `make test` runs a short one (the Plan's
defaults: a few minutes, every fault once) so the campaign cannot rot; `make soak` runs the long
one and publishes it in docs/reliability.md."""

from __future__ import annotations

import asyncio
import os

from stackctl.settings import BUILD_DIR
from tests.conftest import shown
from tests.soak import campaign, report, verdicts
from tests.soak.campaign import FAULT_GRACE_SECONDS, Plan
from tests.soak.report import REPO

# Where the report goes: build/soak unless SOAK_REPORT_DIR (relative to the repository) says
# otherwise (make soak: docs).
REPORT_DIR = REPO / os.environ["SOAK_REPORT_DIR"] if os.environ.get("SOAK_REPORT_DIR") else BUILD_DIR / "soak"
# A run this long must judge growth (a shorter one has too little steady load after its faults).
MUST_JUDGE_GROWTH_MINUTES = 30


def judge(record: campaign.Record) -> list[verdicts.Verdict]:
    final, plan = record.final, record.plan
    return [
        verdicts.load_ran(plan.clients, record.clients_opened, record.connections,
                          sum(1 for a in record.adds if a.outcome == "ok"), record.deliveries),
        verdicts.faults_recovered(record.faults, len(plan.fault_schedule())),
        verdicts.nothing_lost(record.adds, record.deletes, final["events"], final["dams"]),
        verdicts.every_client_holds_every_dam(final["clients"], final["events"], final["final_seq"],
                                              final["settle_seconds"]),
        verdicts.no_server_errors(record.server_errors, record.failures,
                                  verdicts.fault_windows(record.faults, FAULT_GRACE_SECONDS)),
        verdicts.group_bounded(record.samples, record.faults, record.workers),
        *verdicts.growth(record.samples, max((f["end"] for f in record.faults), default=0) + FAULT_GRACE_SECONDS,
                         plan.minutes >= MUST_JUDGE_GROWTH_MINUTES),
    ]


def test_soak_loses_nothing_and_leaks_nothing(request, stack, admin_credentials, asgi_processes):
    plan = Plan.from_env()
    with shown(request):
        record = asyncio.run(campaign.run(stack, admin_credentials, asgi_processes, plan))
        results = judge(record)
        doc = report.write(record, results, REPORT_DIR)
        print("\n".join(["", *(v.line() for v in results), f"report: {doc}"]), flush=True)
    failed = [v.line() for v in results if not v.ok]
    assert not failed, "the soak campaign failed:\n" + "\n".join(failed) + f"\n(report: {doc})"
