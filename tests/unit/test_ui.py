"""The web page without a browser: sign-in, the session cookie, CSRF, what each key
may see and do, headers, and user text rendered as text. (tests/integration/
test_browser.py drives the same page in Chromium.)"""
from __future__ import annotations

import re

import pytest

from app import create_app
from app.auth import ROLES
from tests.conftest import hello_task, make_keys

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def ui_keys():
    return make_keys(alice=(["someone"], ROLES), reader=(["someone"], ["read"]),
                     bob=(["other"], ["submit", "read", "cancel"]))


@pytest.fixture
def ui_app(store, fake_slurm, ui_keys):
    return create_app({"SLURM_PROXY_RATE_LIMIT": ""}, store=store, slurm=fake_slurm,
                      keys=ui_keys[0], environ={})


def csrf(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def signed_in(app, plaintext):
    browser = app.test_client()
    token = csrf(browser.get("/ui/login"))
    resp = browser.post("/ui/login", data={"csrf_token": token, "api_key": plaintext,
                                           "next": "/ui/"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/ui/"
    return browser


def submit_form(browser, **changes):
    token = csrf(browser.get("/ui/submit"))
    data = {"csrf_token": token, "name": "generic", "username": "someone",
            "cwd": "/home/someone", "cmd": "echo", "params": "hello\nworld",
            "partition": "hpcz-test", "time": "5", "mem": "100", "job_name": "ui-test",
            "output_dir": "/home/someone/ui/out", "error_dir": "/home/someone/ui/err", **changes}
    return browser.post("/ui/submit", data=data)


def test_sign_in_sets_a_strict_httponly_session_and_never_the_key(ui_app, ui_keys):
    anonymous = ui_app.test_client()
    first = anonymous.get("/ui/")
    assert first.status_code == 302 and first.headers["Location"].startswith("/ui/login")
    page = anonymous.get("/ui/login")
    assert page.status_code == 200 and 'type="password"' in page.get_data(as_text=True)
    bad = anonymous.post("/ui/login", data={"csrf_token": csrf(page), "api_key": "sp_nope"})
    assert bad.status_code == 401 and "Invalid or revoked API key" in bad.get_data(as_text=True)
    token = csrf(anonymous.get("/ui/login"))
    resp = anonymous.post("/ui/login", data={"csrf_token": token, "api_key": ui_keys[1]["alice"],
                                             "next": "https://evil.example/"})
    assert resp.headers["Location"] == "/ui/"                    # no open redirect
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert ui_keys[1]["alice"].split("_", 2)[2] not in cookie    # the secret (may hold "_")
    assert anonymous.get("/ui/").status_code == 200
    # Signing out ends it; a revoked key ends every session made with it.
    signed = signed_in(ui_app, ui_keys[1]["alice"])
    out = signed.post("/ui/logout", data={"csrf_token": csrf(signed.get("/ui/"))})
    assert out.status_code == 302 and signed.get("/ui/").status_code == 302
    assert anonymous.get("/ui/").status_code == 200
    ui_keys[0].revoke(next(k["id"] for k in ui_keys[0].list() if k["name"] == "alice"))
    assert anonymous.get("/ui/").status_code == 302


def test_every_form_needs_the_sessions_token_and_this_origin(ui_app, ui_keys):
    alice = signed_in(ui_app, ui_keys[1]["alice"])
    submitted = submit_form(alice)
    assert submitted.status_code == 302
    uuid = submitted.headers["Location"].rsplit("/", 1)[1]
    no_token = alice.post(f"/ui/tasks/{uuid}/cancel")
    assert no_token.status_code == 403 and "Refused" in no_token.get_data(as_text=True)
    token = csrf(alice.get("/ui/"))
    wrong = alice.post(f"/ui/tasks/{uuid}/cancel", data={"csrf_token": "x" * 43})
    assert wrong.status_code == 403
    cross = alice.post(f"/ui/tasks/{uuid}/cancel", data={"csrf_token": token},
                       headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    other_port = alice.post(f"/ui/tasks/{uuid}/cancel", data={"csrf_token": token},
                            headers={"Origin": "http://localhost:1"})
    assert other_port.status_code == 403
    ok = alice.post(f"/ui/tasks/{uuid}/cancel", data={"csrf_token": token},
                    headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 302
    assert "CANCELLED" in alice.get(f"/ui/tasks/{uuid}/record.json").get_data(as_text=True)


def test_a_person_may_do_exactly_what_their_key_allows(ui_app, ui_keys, fake_slurm):
    alice = signed_in(ui_app, ui_keys[1]["alice"])
    uuid = submit_form(alice).headers["Location"].rsplit("/", 1)[1]
    reader = signed_in(ui_app, ui_keys[1]["reader"])
    assert reader.get(f"/ui/tasks/{uuid}").status_code == 200
    page = reader.get(f"/ui/tasks/{uuid}").get_data(as_text=True)
    assert "Cancel job" not in page and "Submit again" not in page
    assert reader.get("/ui/submit").status_code == 403
    token = csrf(reader.get("/ui/"))
    assert reader.post(f"/ui/tasks/{uuid}/cancel", data={"csrf_token": token}).status_code == 403
    assert fake_slurm.cancelled == []
    bob = signed_in(ui_app, ui_keys[1]["bob"])
    assert uuid not in bob.get("/ui/").get_data(as_text=True)
    assert bob.get(f"/ui/tasks/{uuid}").status_code == 403
    assert bob.get(f"/ui/tasks/{uuid}/record.json").status_code == 403
    assert bob.get(f"/ui/tasks/{uuid}/events").status_code == 403
    assert bob.get(f"/ui/tasks/{uuid}/output.json").get_json()["code"] == "forbidden"
    token = csrf(bob.get("/ui/"))
    assert bob.post(f"/ui/tasks/{uuid}/cancel", data={"csrf_token": token}).status_code == 403
    assert bob.post(f"/ui/tasks/{uuid}/resubmit", data={"csrf_token": token}).status_code == 403
    denied = submit_form(bob)                                   # bob may not act for someone
    assert denied.status_code == 403 and "may not act for user &#39;someone&#39;" in denied.get_data(as_text=True)


def test_submit_form_names_bad_fields_and_resubmit_changes_memory(ui_app, ui_keys, store, fake_slurm):
    alice = signed_in(ui_app, ui_keys[1]["alice"])
    bad = submit_form(alice, mem="lots", cwd="relative")
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "task.slurm.mem" in text and "task.cwd" in text
    uuid = submit_form(alice).headers["Location"].rsplit("/", 1)[1]
    token = csrf(alice.get(f"/ui/tasks/{uuid}"))
    again = alice.post(f"/ui/tasks/{uuid}/resubmit", data={
        "csrf_token": token, "cmd": "echo", "params": "again", "mem": "2000", "time": "0:10:00"})
    assert again.status_code == 302
    new = store.get(again.headers["Location"].rsplit("/", 1)[1])
    assert new["task"]["slurm"]["mem"] == 2000 and new["task"]["params"] == ["again"]
    assert new["resubmitted_from"] == uuid
    hello = submit_form(alice, name="echo_hello_world", cmd="", params="")
    assert hello.status_code == 302


def test_user_text_is_rendered_as_text_with_a_strict_csp(ui_app, ui_keys, store):
    alice = signed_in(ui_app, ui_keys[1]["alice"])
    uuid = submit_form(alice, job_name=XSS, params=XSS).headers["Location"].rsplit("/", 1)[1]
    page = alice.get(f"/ui/tasks/{uuid}")
    html = page.get_data(as_text=True)
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert not re.search(r"<script>[^<]", html) and " on" + "error=" not in html.replace("&lt;img src=x onerror=", "")
    listing = alice.get("/ui/").get_data(as_text=True)
    assert XSS not in listing


def test_trusted_proxy_header_only_from_configured_addresses(store, fake_slurm, ui_keys):
    from app.errors import ConfigError

    with pytest.raises(ConfigError, match="SLURM_PROXY_UI_TRUSTED_PROXIES"):
        create_app({"SLURM_PROXY_UI_USER_HEADER": "X-Remote-User"}, store=store,
                   slurm=fake_slurm, keys=ui_keys[0], environ={})
    app = create_app({"SLURM_PROXY_UI_USER_HEADER": "X-Remote-User",
                      "SLURM_PROXY_UI_TRUSTED_PROXIES": "10.0.0.5/32",
                      "SLURM_PROXY_UI_PROXY_ROLES": "read"},
                     store=store, slurm=fake_slurm, keys=ui_keys[0], environ={})
    client = app.test_client()
    from_proxy = {"REMOTE_ADDR": "10.0.0.5"}
    page = client.get("/ui/", headers={"X-Remote-User": "someone"}, environ_base=from_proxy)
    assert page.status_code == 200 and "someone (single sign-on)" in page.get_data(as_text=True)
    assert client.get("/ui/submit", headers={"X-Remote-User": "someone"},
                      environ_base=from_proxy).status_code == 403        # roles: read only
    elsewhere = client.get("/ui/", headers={"X-Remote-User": "someone"},
                           environ_base={"REMOTE_ADDR": "10.0.0.6"})
    assert elsewhere.status_code == 302                                   # not believed
    assert client.get("/monitor", headers={"X-Remote-User": "someone"},
                      environ_base=from_proxy).status_code == 401         # never for the API


def test_docs_open_after_signing_in_and_ui_needs_no_cdn(ui_app, ui_keys):
    assert ui_app.test_client().get("/docs").status_code == 401
    alice = signed_in(ui_app, ui_keys[1]["alice"])
    docs = alice.get("/docs")
    assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]
    assert alice.get("/openapi.json").status_code == 200
    page = alice.get("/ui/").get_data(as_text=True)
    sources = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="([^"]+)"', page)
    assert len(sources) == 2 and all(s.startswith("/ui/static/") for s in sources)
    for source in sources:
        if source.startswith("/ui/static/"):
            assert alice.get(source).status_code == 200
    assert "<script>" not in page                          # no inline script


def test_a_session_signed_with_another_secret_is_not_believed(store, fake_slurm, ui_keys):
    """The cookie signer is built once per secret: a new secret (a restart without
    SLURM_PROXY_SECRET_KEY, or a rotated one) ends the sessions signed with the old."""
    app = create_app({"SLURM_PROXY_SECRET_KEY": "first-secret-first-secret-first-secret"},
                     store=store, slurm=fake_slurm, keys=ui_keys[0], environ={})
    alice = signed_in(app, ui_keys[1]["alice"])
    assert alice.get("/ui/").status_code == 200
    assert alice.get("/ui/").status_code == 200                  # the cached signer
    app.secret_key = "second-secret-second-secret-second-secret"
    assert alice.get("/ui/").status_code == 302
    app.config["SECRET_KEY_FALLBACKS"] = ["first-secret-first-secret-first-secret"]
    assert alice.get("/ui/").status_code == 200                  # the old one still signs in
