"""Model selection through a real client: a NOTICE per trial (quiet under
ambient.progress), and cancel reaching every training thread, in a forest's
trees and in a search's folds, within about a second, leaving nothing."""

import os
import time

import psycopg
import pytest

from conftest import connect
from test_safety import noisy_table, train_in_background, wait_until_training


def test_each_trial_reports_a_notice_unless_progress_is_off(database):
    with connect(database, autocommit=True) as conn:
        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        conn.execute("SELECT * FROM ambient.train('n', relation => 'iris', target => 'species', algorithm => 'auto')")
        trials = [n for n in notices if n.startswith("trial ")]
        tried = conn.execute("SELECT count(*) FROM ambient.trials WHERE project = 'n'").fetchone()[0]
        assert tried >= 6
        assert [t.split(":")[0] for t in trials] == [f"trial {i}/{tried}" for i in range(1, tried + 1)], notices
        assert all(" over 5 folds (" in t for t in trials), trials
        notices.clear()
        conn.execute("SET ambient.progress = off")
        conn.execute("SELECT * FROM ambient.train('n', relation => 'iris', algorithm => 'auto', deploy => 'never')")
        assert not [n for n in notices if n.startswith("trial ")], notices


def test_auto_screens_by_successive_halving_and_keeps_every_trial(database):
    """50,000 training rows: auto's six candidates are cross-validated on
    10,000 of them, the best two on 30,000, and the winner fitted on all;
    every trial is a row with its subsample's size, and a NOTICE says what
    was screened."""
    with connect(database, autocommit=True) as conn:
        noisy_table(conn, 62_500)
        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        conn.execute("SET ambient.progress = off")
        conn.execute("SELECT * FROM ambient.train('halving', relation => 'noisy', target => 'label', "
                     "algorithm => 'auto')")
        model = conn.execute("SELECT model_id, train_rows FROM ambient.models WHERE project = 'halving'").fetchone()
        trials = conn.execute("SELECT algorithm, sample_rows, status, chosen FROM ambient.trials "
                              "WHERE project = 'halving' ORDER BY trial").fetchall()
        assert [t[1] for t in trials] == [10_000] * 6 + [30_000] * 2, trials
        assert all(t[2] == "done" for t in trials), trials
        chosen = [t for t in trials if t[3]]
        assert len(chosen) == 1 and chosen[0][1] == 30_000, trials
        assert chosen[0][0] in {t[0] for t in trials[6:]}
        # The last rung's algorithms are the first rung's best two.
        first = conn.execute("SELECT algorithm FROM ambient.trials WHERE project = 'halving' AND sample_rows = 10000 "
                             "ORDER BY mean_score DESC, trial LIMIT 2").fetchall()
        assert sorted(a for (a,) in first) == sorted(t[0] for t in trials[6:])
        assert 45_000 < model[1] < 55_000, model
        assert any(n.startswith("successive halving screened the candidates on subsamples (6 on 10000 rows, "
                                "2 on 30000 rows)") for n in notices), notices
        # The leaderboard ranks the last rung first.
        board = conn.execute("SELECT rank, algorithm, chosen FROM ambient.leaderboard('halving')").fetchall()
        assert board[0][2] and board[0][0] == 1, board


@pytest.mark.parametrize("what", ["forest", "search"])
def test_cancel_stops_every_training_thread_within_a_second(database, what):
    sql = {
        # 100 unbounded trees on two threads.
        "forest": "SET ambient.max_training_memory = '8GB';"
                  " SELECT * FROM ambient.train('slow', relation => 'noisy', target => 'label', algorithm => 'random_forest')",
        # Five folds of forests on successive halving's 10,000 rows, two
        # folds fitted at once.
        "search": "SELECT * FROM ambient.train('slow', relation => 'noisy', target => 'label', algorithm => 'random_forest',"
                  " search => 'grid', search_params => '{\"n_estimators\": [400, 500]}')",
    }[what]
    with connect(database, autocommit=True) as admin:
        noisy_table(admin, 300_000)
        pid, thread, outcome = train_in_background(database, sql)
        wait_until_training(admin, pid, 0.5)
        # Cancel while the training threads run, not while rows are read.
        deadline = time.monotonic() + 60
        while len(os.listdir(f"/proc/{pid}/task")) < 2:
            assert time.monotonic() < deadline, "the training threads never started"
            time.sleep(0.01)
        time.sleep(0.3)
        signalled = time.monotonic()
        assert admin.execute("SELECT pg_cancel_backend(%s)", [pid]).fetchone()[0]
        thread.join(timeout=60)
        assert "finished" not in outcome, "training ended before it was canceled; use more rows"
        stopped_after = outcome["failed"] - signalled
        assert stopped_after < 1.0, f"{what} stopped {stopped_after:.2f} s after the cancel"
        assert outcome["error"].sqlstate == "57014"
        assert admin.execute("SELECT 1").fetchone()[0] == 1
        assert admin.execute("SELECT count(*) FROM ambient.projects WHERE name = 'slow'").fetchone()[0] == 0
