"""examples/django_shop as its README runs it: `manage.py migrate`, `manage.py jobrunner
start`, and a view that saves an order and enqueues its confirmation in one transaction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable

from tests.helpers import ROOT

SHOP = ROOT / "examples" / "django_shop"

# Place an order through the view, then poll the confirmation view to a deadline.
CLIENT_SCRIPT = """
import json, time
from django.test import Client
http = Client()
placed = http.post("/orders/", {"item": "book", "email": "ada@example.com"})
assert placed.status_code == 201, placed.content
order = placed.json()["order"]
deadline = time.monotonic() + 30
while True:
    status = http.get(f"/orders/{order}/confirmation").json()
    if status["status"] in ("SUCCESSFUL", "FAILED") or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(json.dumps(status))
"""


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SHOP / "manage.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_django_shop_example(make_database: Callable[[str], Awaitable[str]]) -> None:
    suffix = os.environ.get("JOBRUNNER_TEST_DB", "main")
    url = await make_database(f"jobrunner_test_{suffix}_django_shop")
    env = {**os.environ, "DATABASE_URL": url, "JOBRUNNER_LOG_FORMAT": "json"}
    for name in ("DJANGO_SETTINGS_MODULE", "JOBRUNNER_CONFIG", "JOBRUNNER_DATABASE_URL"):
        env.pop(name, None)
    migrated = _manage(env, "migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    with tempfile.TemporaryFile() as log:
        daemon = subprocess.Popen(
            [sys.executable, str(SHOP / "manage.py"), "jobrunner", "start"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            placed = _manage(env, "shell", "-c", CLIENT_SCRIPT)
        finally:
            daemon.terminate()
            code = daemon.wait(30)
            log.seek(0)
            output = log.read().decode()
    assert placed.returncode == 0, placed.stderr + output
    assert code == 0, output
    status = json.loads(placed.stdout.strip().splitlines()[-1])
    assert status["status"] == "SUCCESSFUL", output
    assert status["attempts"] == 1 and status["errors"] == []
    assert status["return_value"] == "confirmation sent to ada@example.com"
    # The daemon refuses a crontab entry whose worker it cannot resolve: it ran, so the
    # periodic Django task of jobrunner.toml resolved.
    assert "orders.tasks.daily_report" in (SHOP / "jobrunner.toml").read_text()
