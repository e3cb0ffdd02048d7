"""ambient.report in a real browser: Debian's chromium, driven by playwright
(pointed at /usr/bin/chromium; no browser is downloaded). The pages are the
demo's, written by scripts/report.py as `make report` writes them."""

import datetime
import os
import pathlib
import re
import sys

import psycopg
import pytest
from PIL import Image

from conftest import ROOT, connect, fresh_database, run_example

sys.path.insert(0, str(ROOT / "scripts"))
from report import write_pages  # noqa: E402

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

CHROMIUM = "/usr/bin/chromium"
# As the machine's notes say: without the background-networking flags
# chromium reaches out at start, which this closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENS = ROOT / "target" / "report" / "screens"
SECTIONS = ["summary", "versions", "timeline", "live-accuracy", "drift", "quality",
            "explanations", "model-choice"]
HOSTILE = "<script>alert(1)</script>"
# Their predictions do not split into contributions (ml/explain.rs).
NOT_ADDITIVE = {"gaussian_nb", "adaboost", "knn", "svm"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's projects (examples/demo.sql, ambient.sql and features.sql:
    iris, a regression, loans with its policy, monitoring, drift, alerts and
    approvals, churn on feature sets), a project whose class label and name
    carry a script, and every page written to a folder."""
    database = fresh_database("it_report_demo")
    run_example("demo.sql", database)
    run_example("ambient.sql", database)
    run_example("features.sql", database)
    with connect(database, autocommit=True) as conn:
        conn.execute(f"""CREATE TABLE hostile AS
            SELECT g AS x, CASE WHEN g % 2 = 0 THEN '{HOSTILE}' ELSE 'plain & "quoted"' END AS label
              FROM generate_series(1, 120) g""")
        conn.execute("SELECT * FROM ambient.train(%s, relation => 'hostile', target => 'label', "
                     "algorithm => 'decision_tree')", ("evil" + HOSTILE,))
    folder = tmp_path_factory.mktemp("report")
    pages = write_pages(database, folder)
    return database, folder, pages


@pytest.fixture(scope="module")
def browser():
    assert pathlib.Path(CHROMIUM).exists(), "scripts/setup.sh installs Debian's chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def page_of(pages, name):
    return next(p for p in pages if p.name == name)


class Visit:
    """A page opened at a width, with everything it asked for or said."""

    def __init__(self, browser, path, width):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.requests, self.console, self.dialogs, self.errors = [], [], [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def close(self):
        self.context.close()


def check_charts(page):
    """Every SVG draws something beyond its background, and no text in a
    chart leaves its box; returns how many charts there are."""
    report = page.evaluate("""() => [...document.querySelectorAll('svg')].map(svg => {
        const box = svg.viewBox.baseVal;
        const marks = [...svg.querySelectorAll('rect, polyline, circle, path, line')].filter(e => {
            const b = e.getBBox();
            const background = e.tagName === 'rect' && b.width >= box.width - 1 && b.height >= box.height - 1;
            return !background && (b.width > 0 || b.height > 0);
        }).length;
        // As drawn (rotated axis titles included), against the chart's box.
        const frame = svg.getBoundingClientRect();
        const outside = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()).filter(t => {
            const b = t.getBoundingClientRect();
            return b.left < frame.left - 1 || b.top < frame.top - 1
                || b.right > frame.right + 1 || b.bottom > frame.bottom + 1;
        }).map(t => t.textContent.trim());
        return {title: svg.querySelector('title')?.textContent ?? '', marks, outside};
    })""")
    for chart in report:
        assert chart["title"], "every chart has a <title>"
        assert chart["marks"] > 0, f"chart {chart['title']!r} draws nothing"
        assert not chart["outside"], f"chart {chart['title']!r}: text outside its box: {chart['outside']}"
    return len(report)


def check_screenshot(visit, name, width):
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}-{width}.png"
    visit.page.screenshot(path=str(path), full_page=True)
    image = Image.open(path).convert("RGB")
    assert image.width == width
    # Not blank: many colours, and a good share of the page is not the background.
    small = image.resize((image.width // 4, image.height // 4))
    colours = small.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, f"{path.name} looks blank"
    background = max(colours)[0]
    assert background / (small.width * small.height) < 0.9, f"{path.name} is mostly one colour"
    return path


def test_the_project_page_shows_every_section_and_draws_in_a_real_browser(demo, browser):
    database, folder, pages = demo
    loans = page_of(pages, "loans.html")
    with connect(database) as conn:
        live_algorithm = conn.execute("SELECT algorithm FROM ambient.models "
                                      "WHERE project = 'loans' AND live").fetchone()[0]
    for width in (1280, 390):
        visit = Visit(browser, loans, width)
        try:
            page = visit.page
            for section in SECTIONS:
                box = page.locator(f"section#{section}").bounding_box()
                assert box and box["height"] > 0, f"section {section} is missing at {width} px"
                # The sections fit the width: nothing spills sideways.
                assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (section, width, box)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            # The loans demo leaves an approval decided, a rollback, alerts and drift.
            text = page.inner_text("body")
            for shown in ("Live model", "rollback", "Confusion matrix", "Calibration",
                          "Permutation importance", "One typical row, explained", "Live distribution"):
                assert shown in text, f"{shown!r} is not on the page"
            # A waterfall exactly when the live model's predictions split into contributions.
            waterfalls = page.locator("section#explanations svg title", has_text="waterfall").count()
            assert waterfalls == (0 if live_algorithm in NOT_ADDITIVE else 1), live_algorithm
            charts = check_charts(page)
            assert charts >= 12, f"only {charts} charts"
            # Each chart's numbers are on the page as a table too.
            assert page.locator("figure details table").count() == page.locator("figure svg").count()
            assert visit.requests == [loans.as_uri()], f"the page asked for {visit.requests}"
            assert not [m for m in visit.console if m[0] == "error"], visit.console
            assert not visit.errors and not visit.dialogs
            shot = check_screenshot(visit, "project", width)
            if width == 1280 and os.environ.get("AMBIENT_DOCS_UPDATE"):
                # README's picture: the top of the page, as a reader first sees it.
                page.set_viewport_size({"width": 1280, "height": 1500})
                page.screenshot(path=str(ROOT / "docs" / "report.png"))
            assert shot.exists()
        finally:
            visit.close()


def test_the_overview_links_every_readable_project_and_draws(demo, browser):
    database, folder, pages = demo
    index = page_of(pages, "index.html")
    assert pages[0] == index
    for width in (1280, 390):
        visit = Visit(browser, index, width)
        try:
            page = visit.page
            links = page.eval_on_selector_all("section#projects a", "as => as.map(a => a.getAttribute('href'))")
            assert sorted(links) == sorted(p.name for p in pages[1:])
            assert all((folder / link).exists() for link in links)
            with connect(database) as conn:
                version = conn.execute("SELECT live_version FROM ambient.overview "
                                       "WHERE project = 'loans'").fetchone()[0]
            row = page.locator("section#projects tbody tr", has_text="loans").inner_text()
            assert re.search(rf"\bv{version}\b", row), row
            assert "drifted" in row or "stable" in row, row
            check_charts(page)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            assert visit.requests == [index.as_uri()], visit.requests
            assert not [m for m in visit.console if m[0] == "error"] and not visit.errors
            check_screenshot(visit, "overview", width)
            # A link opens the project's page.
            page.click("section#projects a[href='loans.html']")
            page.wait_for_load_state("load")
            assert page.locator("section#versions").count() == 1
        finally:
            visit.close()


def test_a_script_in_a_label_or_a_name_is_shown_as_text_and_never_runs(demo, browser):
    database, folder, pages = demo
    hostile = next(p for p in pages if p.name.startswith("evilscript"))
    html = hostile.read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    visit = Visit(browser, hostile, 1280)
    try:
        page = visit.page
        assert page.evaluate("document.querySelectorAll('script').length") == 0
        assert not visit.dialogs and not visit.errors
        assert page.title() == "pg_ambient report: evil" + HOSTILE
        # The label is text in the confusion matrix's table, and on its
        # chart's axes (cut to 12 characters there).
        assert HOSTILE in page.locator("section#quality").text_content()
        assert page.locator("section#quality svg text", has_text=HOSTILE[:11] + "…").count() >= 2
        check_charts(page)
    finally:
        visit.close()


def test_a_role_without_read_gets_42501_and_sees_only_what_it_may_read(demo):
    database, _, _ = demo
    with connect(database, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS report_stranger")
        conn.execute("DROP ROLE IF EXISTS report_user")
        conn.execute("DROP ROLE IF EXISTS report_reader")
        conn.execute("CREATE ROLE report_stranger; CREATE ROLE report_user; CREATE ROLE report_reader")
        conn.execute("SELECT ambient.grant('loans', 'report_user', 'predict')")
        conn.execute("SELECT ambient.grant('iris', 'report_reader', 'read')")
        for role in ("report_stranger", "report_user", "report_reader"):
            conn.execute(f"SET ROLE {role}")
            for project in ("loans", "no_such_project"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                    conn.execute("SELECT ambient.report(%s)", (project,))
                assert refused.value.sqlstate == "42501"
                assert "permission denied for project" in str(refused.value)
            if role == "report_reader":
                page = conn.execute("SELECT ambient.report('iris')").fetchone()[0]
                assert "<section id=\"versions\"" in page
            # Every page at once: the overview and the readable projects' only.
            paths = [r[0] for r in conn.execute("SELECT path FROM ambient.report_pages()")]
            assert paths == (["index.html", "iris.html"] if role == "report_reader" else ["index.html"])
            # The overview lists only what the role may read.
            overview = conn.execute("SELECT ambient.report()").fetchone()[0]
            listed = re.findall(r'<a href="[^"]+">([^<]+)</a>', overview)
            assert listed == (["iris"] if role == "report_reader" else [])
            data = conn.execute("SELECT ambient.report_data('loans')").fetchone()[0]
            assert data is None
            conn.execute("RESET ROLE")


def test_the_report_data_matches_the_catalog(demo):
    database, _, _ = demo
    with connect(database, autocommit=True) as conn:
        data = conn.execute("SELECT ambient.report_data('loans', '1 year')").fetchone()[0]
        models = conn.execute("SELECT count(*) FROM ambient.models WHERE project = 'loans'").fetchone()[0]
        assert len(data["versions"]) == models
        live = conn.execute("SELECT live_model_id FROM ambient.overview WHERE project = 'loans'").fetchone()[0]
        assert data["live"]["model_id"] == live
        counts = data["live"]["diagnostics"]["confusion"]["counts"]
        test_rows = conn.execute("SELECT test_rows FROM ambient.models WHERE model_id = %s", (live,)).fetchone()[0]
        assert sum(map(sum, counts)) == test_rows
        drift_runs = conn.execute("SELECT count(DISTINCT run_id) FROM ambient.drift_runs WHERE project = 'loans'").fetchone()[0]
        assert len({p["at"] for p in data["drift"]}) == drift_runs
        for column in data["latest_drift"]:
            if column["distribution"]:
                shares = [b["recent"] for b in column["distribution"]]
                assert abs(sum(shares) - 1) < 1e-9, column["feature"]


def test_an_additive_model_explains_its_typical_row_as_a_waterfall(demo, browser):
    database, folder, pages = demo
    with connect(database) as conn:
        algorithm = conn.execute("SELECT algorithm FROM ambient.models WHERE project = 'iris' AND live").fetchone()[0]
    assert algorithm not in NOT_ADDITIVE
    visit = Visit(browser, page_of(pages, "iris.html"), 1280)
    try:
        section = visit.page.locator("section#explanations")
        assert section.locator("svg title", has_text="waterfall").count() == 1
        # Its table: the bias, a row per input (iris has four), the prediction.
        rows = section.locator("table", has_text="(bias)").locator("tbody tr").all_text_contents()
        assert rows[0].startswith("(bias)") and rows[-1].startswith("= ") and len(rows) == 1 + 4 + 1
        check_charts(visit.page)
    finally:
        visit.close()


def test_a_project_on_feature_sets_shows_their_freshness(demo, browser):
    database, folder, pages = demo
    visit = Visit(browser, page_of(pages, "churn.html"), 1280)
    try:
        rows = visit.page.locator("section#feature-sets tbody tr")
        with connect(database) as conn:
            sets = conn.execute("SELECT feature_sets FROM ambient.models WHERE project = 'churn' AND live").fetchone()[0]
        assert sets and rows.count() == len(sets)
        for name in sets:
            assert name in visit.page.locator("section#feature-sets").inner_text()
        check_charts(visit.page)
    finally:
        visit.close()


def test_the_overview_shows_each_projects_next_scheduled_run():
    """pg_cron runs jobs of its own database (postgres) only."""
    with connect("postgres", autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_ambient")

        def clean():
            if conn.execute("SELECT 1 FROM ambient.overview WHERE project = 'report_cron'").fetchone():
                if conn.execute("SELECT job_id FROM ambient.project_policies WHERE project = 'report_cron'").fetchone()[0]:
                    conn.execute("SELECT ambient.unschedule('report_cron')")
                conn.execute("SELECT ambient.drop_project('report_cron', force => true)")
            conn.execute("DROP TABLE IF EXISTS report_cron_rows")

        clean()
        try:
            conn.execute("CREATE TABLE report_cron_rows AS SELECT g::float8 AS x, g % 2 = 0 AS even "
                         "FROM generate_series(1, 60) g")
            conn.execute("SELECT * FROM ambient.train('report_cron', relation => 'report_cron_rows', "
                         "target => 'even', algorithm => 'decision_tree')")
            conn.execute("SELECT ambient.set_policy('report_cron', '{\"action\": \"alert\"}')")
            conn.execute("SELECT ambient.schedule('report_cron', '0 3 * * *')")
            overview, now = conn.execute("SELECT ambient.report(), now() AT TIME ZONE 'UTC'").fetchone()
            day = now.date() if now.hour < 3 else now.date() + datetime.timedelta(days=1)
            row = re.search(r'<a href="report_cron.html">.*?</tr>', overview, re.S).group(0)
            assert f"{day:%Y-%m-%d} 03:00 UTC" in row and "0 3 * * *" in row, row
            page = conn.execute("SELECT ambient.report('report_cron')").fetchone()[0]
            assert f"next at {day:%Y-%m-%d} 03:00 UTC" in page
        finally:
            clean()
