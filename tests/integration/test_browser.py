"""The web page in a real browser: Debian's Chromium driven by Playwright (DESIGN.md §9),
against the real service (gunicorn with its gevent worker, embedded store, poller
thread) and the real cluster. Screenshots go to tests/screenshots/ (not committed;
docs/ui.png in the README is one of them)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.integration.conftest import KEY_FILE, PARTITION, SLURM_BASE_URL, TEST_USER
from tests.integration.peers import free_port, healthy
from tests.integration.test_notify_e2e import until

pytestmark = pytest.mark.slurm
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "tests" / "screenshots"
XSS = "<img src=x onerror=alert(1)>"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]


def make_key(env, name, users, roles):
    return subprocess.run([sys.executable, "-m", "app.keys", "create", "--name", name,
                           "--users", users, "--roles", roles, "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = {**os.environ, "SLURM_BASE_URL": SLURM_BASE_URL, "SLURM_JWT_HS256_KEY_FILE": KEY_FILE,
           "SLURM_PROXY_PORT": str(port), "SLURM_PROXY_HOST": "127.0.0.1", "MONGODB_URI": "",
           "SLURM_PROXY_API_KEYS_FILE": str(tmp / "keys.json"), "SLURM_POLL_INTERVAL": "1",
           "SLURM_PROXY_OUTPUT_PREFIXES": "/home/{username}", "SLURM_PROXY_SECRET_KEY": ""}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    keys = {"someone": make_key(env, "someone", TEST_USER, "submit,read,cancel"),
            "bob": make_key(env, "bob", "bob", "submit,read,cancel")}
    log = open(tmp / "service.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py",
                             "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    until(lambda: healthy(url), timeout=30)
    yield {"url": url, "keys": keys}
    proc.terminate()
    proc.wait(40)
    log.close()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip("no Debian chromium (apt-get install chromium; scripts/setup.sh --dev does)")
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=30_000)

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, service):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def sign_in(page, service, who="someone"):
    page.goto(service["url"] + "/ui/")
    assert "/ui/login" in page.url
    page.get_by_label("API key").fill(service["keys"][who])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(service["url"] + "/ui/")


def submit_generic(page, service, workdir, *, cmd, params, mem="100", job_name="browser-test"):
    page.goto(service["url"] + "/ui/submit")
    page.get_by_label("Task type").select_option("generic")
    page.get_by_label("Working directory").fill(workdir)
    page.get_by_label("Command", exact=True).fill(cmd)
    page.get_by_label("Parameters (one per line)").fill("\n".join(params))
    page.get_by_label("Partition").fill(PARTITION)
    page.get_by_label("Time limit (minutes, or H:MM:SS)").fill("5")
    page.get_by_label("Memory (MB per node)").fill(mem)
    page.get_by_label("Job name").fill(job_name)
    page.get_by_label("Output directory").fill(f"{workdir}/out")
    page.get_by_label("Error directory").fill(f"{workdir}/err")
    page.get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_url("**/ui/tasks/*")
    return page.url.rsplit("/", 1)[1]


def wait_for_state(page, state, timeout=60_000):
    # Locator assertions, not wait_for_function: the page's CSP forbids eval.
    expect(page.locator("#state")).to_have_text(state, timeout=timeout)


def test_sign_in_submit_and_watch_it_finish_without_a_reload(page, service, workdir):
    sign_in(page, service)
    uuid = submit_generic(page, service, workdir, cmd="echo",
                          params=["-e", '"hello, world! (sent job $SLURM_JOB_ID to $SLURM_JOB_USER)"'])
    page.evaluate("window.notReloaded = true")
    wait_for_state(page, "COMPLETED")
    expect(page.locator("#output")).to_contain_text("hello, world!")
    assert page.evaluate("window.notReloaded") is True                    # no reload happened
    output = page.locator("#output").text_content()
    assert f"to {TEST_USER})" in output
    assert page.locator("#exit-code").text_content() == "0"
    expect(page.locator("#history tbody tr").last).to_contain_text("COMPLETED")
    page.screenshot(path=str(SHOTS / "task-completed.png"), full_page=True)
    # My tasks shows it; a state change there also arrives without a reload.
    page.goto(service["url"] + "/ui/")
    row = page.locator(f'tr[data-uuid="{uuid}"]')
    assert row.locator(".badge").text_content() == "COMPLETED"
    page.evaluate("window.notReloaded = true")
    second = requests.post(service["url"] + "/submit", headers=_auth(service), json={"task": _task(
        workdir, cmd="sleep", params=["1"])}).json()["uuid"]
    expect(page.locator(f'tr[data-uuid="{second}"] .badge')).to_have_text("COMPLETED", timeout=60_000)
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(SHOTS / "my-tasks.png"), full_page=True)
    page.goto(service["url"] + "/ui/cluster")
    assert PARTITION in page.locator("#partitions").text_content()
    assert page.dialogs == []


def _auth(service, who="someone"):
    return {"Authorization": f"Bearer {service['keys'][who]}"}


def _task(workdir, **changes):
    import uuid as uuid_module

    return {"uuid": str(uuid_module.uuid4()), "name": "generic", "username": TEST_USER,
            "cwd": workdir, "slurm": {"partition": PARTITION, "time": 5, "mem": 100},
            "dirs": {"output": f"{workdir}/out", "error": f"{workdir}/err"}, **changes}


def test_cancel_a_sleeping_job_and_resubmit_a_failed_one_with_more_memory(page, service, workdir):
    sign_in(page, service)
    submit_generic(page, service, workdir, cmd="sleep", params=["300"])
    wait_for_state(page, "RUNNING")
    page.get_by_role("button", name="Cancel job").click()
    wait_for_state(page, "CANCELLED")
    expect(page.locator("#cancel-form")).to_have_count(0)
    # A job that needs 200 MB fails with 100; run again with more memory.
    failed = submit_generic(page, service, workdir, cmd="test",
                            params=["$SLURM_MEM_PER_NODE", "-ge", "200"], mem="100")
    wait_for_state(page, "FAILED")
    page.get_by_label("Memory (MB per node)").fill("200")
    page.get_by_role("button", name="Submit again").click()
    page.wait_for_url(lambda url: "/ui/tasks/" in url and failed not in url)
    wait_for_state(page, "COMPLETED")
    assert failed in page.locator("#h-record ~ p, section p").all_text_contents().__str__()
    page.screenshot(path=str(SHOTS / "resubmitted.png"), full_page=True)


def test_a_user_sees_nothing_of_another_users_tasks(page, service, workdir):
    mine = requests.post(service["url"] + "/submit", headers=_auth(service),
                         json={"task": _task(workdir, cmd="true")}).json()["uuid"]
    sign_in(page, service, who="bob")
    assert mine not in page.content()
    assert page.locator("#task-table tbody tr.empty").count() == 1
    resp = page.goto(service["url"] + f"/ui/tasks/{mine}")
    refusal = page.locator("main").text_content()
    assert resp.status == 403 and "may not act for this task" in refusal
    assert "'someone'" not in refusal          # the owner is named to admin keys only
    assert "browser-test" not in page.content() and "/home/someone" not in page.content()
    assert page.request.get(service["url"] + f"/ui/tasks/{mine}/output.json").json()["code"] == "forbidden"
    page.screenshot(path=str(SHOTS / "other-user.png"))


def test_script_in_job_name_and_output_is_shown_as_text(page, service, workdir):
    sign_in(page, service)
    submit_generic(page, service, workdir, cmd="echo", params=[f"'{XSS}'"], job_name=XSS)
    wait_for_state(page, "COMPLETED")
    expect(page.locator("#output")).to_contain_text(XSS)
    expect(page.locator("#job-name")).to_have_text(XSS)                   # job_name, as text
    assert XSS in page.locator("pre.record").text_content()
    assert page.evaluate("document.querySelectorAll('main img').length") == 0
    page.screenshot(path=str(SHOTS / "xss-as-text.png"), full_page=True)
    page.goto(service["url"] + "/ui/")
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.dialogs == []                                              # alert() never ran


def test_a_cross_site_form_post_is_refused(page, service, workdir, httpserver):
    task = _task(workdir, cmd="sleep", params=["300"])
    uuid = requests.post(service["url"] + "/submit", headers=_auth(service),
                         json={"task": task}).json()["uuid"]
    sign_in(page, service)
    attack = (f'<!doctype html><form id="f" method="post" action="{service["url"]}/ui/tasks/{uuid}/cancel">'
              f'<input name="csrf_token" value="guess"></form>'
              f'<script>document.getElementById("f").submit()</script>')
    httpserver.expect_request("/attack").respond_with_data(attack, content_type="text/html")
    # From another site (localhost): SameSite=Strict keeps the session cookie at home.
    page.goto(httpserver.url_for("/attack").replace("127.0.0.1", "localhost"))
    page.wait_for_url(f"{service['url']}/ui/tasks/{uuid}/cancel")
    assert "Not signed in" in page.content()
    # From the same site but another origin (127.0.0.1, another port), the cookie goes
    # along; the missing CSRF token and the foreign Origin refuse it.
    page.goto(httpserver.url_for("/attack").replace("localhost", "127.0.0.1"))
    page.wait_for_url(f"{service['url']}/ui/tasks/{uuid}/cancel")
    assert "Request refused" in page.content()
    page.screenshot(path=str(SHOTS / "cross-site-refused.png"))
    record = requests.get(service["url"] + f"/monitor/task_uuid/{uuid}", headers=_auth(service)).json()
    assert record["monitor"]["slurm_job_state"] in ("PENDING", "RUNNING")
    assert "cancel_requested_at" not in record["monitor"]
    requests.delete(service["url"] + f"/monitor/task_uuid/{uuid}", headers=_auth(service))


def test_docs_render_every_operation_and_try_it_out_works(page, service):
    spec = requests.get(service["url"] + "/openapi.json", headers=_auth(service)).json()
    assert spec["openapi"].startswith("3.1")
    operations = sum(1 for path in spec["paths"].values() for method in path
                     if method in ("get", "post", "put", "delete", "patch"))
    sign_in(page, service)
    page.goto(service["url"] + "/docs")
    page.wait_for_selector(".opblock")
    assert "Unable to render" not in page.content()
    expect(page.locator(".opblock")).to_have_count(operations)
    page.screenshot(path=str(SHOTS / "docs.png"))
    page.get_by_role("button", name="Authorize").first.click()
    page.locator("#auth-bearer-value").fill(service["keys"]["someone"])
    page.locator(".modal-ux button.authorize").click()
    page.locator(".modal-ux button.btn-done").click()
    block = page.locator(".opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/cluster"]'))
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    block.get_by_role("button", name="Execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text("200")
    assert PARTITION in block.locator(".live-responses-table").text_content()
    block.locator(".live-responses-table").screenshot(path=str(SHOTS / "docs-try-it-out.png"))
