"""Predict keeps answering, from committed models only, while another session
deploys and rolls back in a loop."""

import threading
import time

from conftest import connect, train_tree_and_stump

SWITCHES = 30
READERS = 3


def predictions(conn):
    row = conn.execute(
        "SELECT array_agg(ambient.predict_label('iris', i.*) ORDER BY id) FROM iris i").fetchone()
    return tuple(row[0])


def test_predict_while_deploying_and_rolling_back(database):
    stump = train_tree_and_stump(database)
    with connect(database, autocommit=True) as setup:
        full_answers = predictions(setup)
        setup.execute("SELECT ambient.deploy('iris', %s)", [stump])
        stump_answers = predictions(setup)
        setup.execute("SELECT ambient.rollback('iris')")
    assert full_answers != stump_answers

    stop = threading.Event()
    seen = {"full": 0, "stump": 0}
    errors = []
    lock = threading.Lock()

    def reader():
        try:
            with connect(database, autocommit=True) as conn:
                while not stop.is_set():
                    answers = predictions(conn)
                    with lock:
                        if answers == full_answers:
                            seen["full"] += 1
                        elif answers == stump_answers:
                            seen["stump"] += 1
                        else:
                            errors.append("a statement mixed models or used an uncommitted one")
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            errors.append(repr(error))

    def wait_until_seen(kind, count):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if seen[kind] >= count or errors:
                    return
            time.sleep(0.005)
        errors.append(f"readers never saw the {kind} model")

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for t in threads:
        t.start()
    try:
        with connect(database) as deployer:
            for _ in range(SWITCHES):
                with lock:
                    target = seen["stump"] + 1
                deployer.execute("SELECT ambient.deploy('iris', %s, reason => 'flip')", [stump])
                # A deploy that is rolled back must never be seen.
                deployer.execute("SELECT ambient.rollback('iris')")
                deployer.rollback()
                deployer.execute("SELECT ambient.deploy('iris', %s, reason => 'flip')", [stump])
                deployer.commit()
                wait_until_seen("stump", target)
                with lock:
                    target = seen["full"] + 1
                deployer.execute("SELECT ambient.rollback('iris', reason => 'flop')")
                deployer.commit()
                wait_until_seen("full", target)
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert errors == []
    assert seen["full"] >= SWITCHES and seen["stump"] >= SWITCHES
    with connect(database) as conn:
        flips = conn.execute(
            "SELECT count(*) FROM ambient.deployments WHERE project = 'iris' AND reason IN ('flip', 'flop')"
        ).fetchone()[0]
    assert flips == 2 * SWITCHES
