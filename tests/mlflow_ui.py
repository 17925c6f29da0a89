"""The MLflow browser check: `mlflow ui` on loopback over a store, the experiment loaded in headless Chromium
(Debian's `chromium`, driven by Playwright), its runs grouped by the `step` tag as a researcher would click it, and
a screenshot. tests/test_mlflow.py runs it on a small study; `python -m tests.mlflow_ui STORE EXPERIMENT PNG` on any
store (docs/mlflow_screenshot.sh: docs/mlflow_study_grouped.png)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def mlflow_ui(store: str, timeout_s: float = 120):
    """`mlflow ui` serving the store on a free loopback port: yields its URL; stopped (its process group) after."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host",
                               "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + timeout_s
        while True:
            assert server.poll() is None, "mlflow ui exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, f"mlflow ui did not listen on {port} in {timeout_s} s"
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def grouped_by_step(url: str, experiment_id: str, screenshot: Path, groups: list[str], timeout_s: float = 90) -> str:
    """Open the experiment's runs, Group by -> the `step` tag, wait until every one of `groups` (e.g. "t1") shows as
    a group row, save the screenshot; -> the table's text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(f"{url}/#/experiments/{experiment_id}/runs", wait_until="load")
            page.get_by_role("button", name="Group by").click()
            page.get_by_role("menuitemcheckbox", name="step", exact=True).click()
            page.keyboard.press("Escape")
            for group in groups:
                page.get_by_text(f"Group: {group}", exact=True).first.wait_for()
            page.get_by_role("button", name="Columns").click()
            search = page.get_by_placeholder("Search columns")
            for column in ("test_acc", "status"):  # a metric, a tag: the columns that tell jobs apart
                search.fill(column)
                page.get_by_text(column, exact=True).first.click()
            page.keyboard.press("Escape")
            assistant = page.locator('button[aria-label="Close"]')  # MLflow 3's assistant panel: room for the runs
            if assistant.count():
                assistant.first.click()
            time.sleep(1)  # the table settles after the panel closes
            page.screenshot(path=str(screenshot))
            return page.inner_text("body")
        finally:
            browser.close()


def main(store: str, experiment: str, screenshot: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    found = client.get_experiment_by_name(experiment)
    steps = sorted({run.data.tags["step"] for run in client.search_runs([found.experiment_id])
                    if "step" in run.data.tags})
    with mlflow_ui(store) as url:
        grouped_by_step(url, found.experiment_id, Path(screenshot), steps)
    print(f"{screenshot}: {experiment} grouped by step ({', '.join(steps)})")


if __name__ == "__main__":
    main(*sys.argv[1:4])
