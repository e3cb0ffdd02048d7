"""The decision tree is as accurate as scikit-learn's at equal depth: both
learn from the same noisy rows (15 % of labels flipped) and are scored on
fresh rows. linfa-trees, used before 0.2.0, summed f32 weights and fell
behind at this size (0.818 against 0.840 on 1M rows at depth 12)."""

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from conftest import connect

ROWS = 200_000
FRESH_ROWS = 100_000


def make(conn, table, rows, seed):
    conn.execute("SELECT setseed(%s)", [seed])
    conn.execute(f"""
        CREATE TABLE {table} AS
        SELECT random() AS a, random() AS b, random() AS c, random() AS d, random() AS e
          FROM generate_series(1, {rows})""")
    conn.execute(f"ALTER TABLE {table} ADD COLUMN label int")
    conn.execute(f"UPDATE {table} SET label = (CASE WHEN a + b * c > 0.9 THEN 1 ELSE 0 END) # (random() < 0.15)::int")


@pytest.mark.parametrize("depth,criterion", [(12, "gini"), (8, "entropy")])
def test_held_out_accuracy_matches_scikit_learn(database, depth, criterion):
    with connect(database, autocommit=True) as conn:
        make(conn, "learn", ROWS, 0.11)
        make(conn, "fresh", FRESH_ROWS, 0.77)
        # A 1 % test split: both learners see (nearly) the same rows.
        conn.execute(f"""SELECT * FROM ambient.train('vs', relation => 'learn', target => 'label', test_size => 0.01,
                         hyperparams => '{{"max_depth": {depth}, "criterion": "{criterion}"}}', algorithm => 'decision_tree')""")
        ours = float(conn.execute(
            "SELECT avg((ambient.predict('vs', ARRAY[a, b, c, d, e])::int = label)::int) FROM fresh").fetchone()[0])
        learn = np.array(conn.execute("SELECT a, b, c, d, e, label FROM learn").fetchall())
        fresh = np.array(conn.execute("SELECT a, b, c, d, e, label FROM fresh").fetchall())
    sklearn = DecisionTreeClassifier(max_depth=depth, criterion=criterion, random_state=0)
    sklearn.fit(learn[:, :5], learn[:, 5])
    theirs = float((sklearn.predict(fresh[:, :5]) == fresh[:, 5]).mean())
    assert ours >= theirs - 0.01, f"ours {ours:.4f}, scikit-learn {theirs:.4f}"
    # Both are far above the majority class: the comparison means something.
    assert ours > 0.8
