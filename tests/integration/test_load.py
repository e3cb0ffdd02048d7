"""Deploys and rollbacks under load, from real pgbench clients: eight
predict (then insert into an attached table) while a ninth session deploys
and rolls back every second, and deploys a third model in transactions it
rolls back. No client fails, and every answer and every stored prediction
comes from a committed model. `make bench` runs the same for 60 s
(bench/churn.py)."""

import sys

import pytest

from conftest import PGBIN, ROOT, dsn

sys.path.insert(0, str(ROOT / "bench"))
import churn  # noqa: E402


@pytest.mark.parametrize("mode", ["predict", "insert"])
def test_deploys_under_load_fail_no_client_and_serve_only_committed_models(database, mode):
    figures = churn.run(dsn(database), PGBIN, ROOT / "target" / "churn", 10, mode)
    print({k: v for k, v in figures.items() if k != "output"})
    assert not figures["aborted"], figures["output"]
    assert figures["failed"] == 0 and figures["quiet_failed"] == 0, figures["output"]
    assert figures["deploys"] >= 4 and figures["rollbacks"] >= 4 and figures["rolled_back"] >= 8, figures
    assert figures["tps"] > 0
    if mode == "insert":
        assert figures["wrong_rows"] == 0, figures["rows_by_model"]
        # Both committed models served rows while the deploys went on.
        assert len(figures["rows_by_model"]) == 2, figures["rows_by_model"]
