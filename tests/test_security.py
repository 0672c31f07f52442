"""Safe defaults: Host allow-list, Origin checks, CORS only for ComfyUI, token beyond loopback."""

from __future__ import annotations

import pytest

from hikaze_manager import create_app

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


@pytest.mark.parametrize("host", ["localhost", "localhost:8189", "127.0.0.1:8189", "[::1]:8189",
                                  "LOCALHOST:1"])
def test_loopback_hosts_are_accepted(client, host):
    assert client.get("/api/tags", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8189", "127.0.0.1.evil.example",
                                  "192.168.1.5:8189", "localhost.evil.example"])
def test_rebinding_host_is_rejected(client, host):
    response = client.get("/api/tags", headers={"Host": host})
    assert response.status_code == 400
    assert response.get_json() == {"error": "Host not allowed"}


def test_host_verdicts_hold_on_repeat_and_past_the_remembered_ones(client):
    """Verdicts are remembered per Host value; a flood of new names changes none of them."""
    for i in range(100):
        assert client.get("/api/tags", headers={"Host": f"evil{i}.example"}).status_code == 400
    for _ in range(2):
        assert client.get("/api/tags", headers={"Host": "evil99.example"}).status_code == 400
        assert client.get("/api/tags", headers={"Host": "localhost:8189"}).status_code == 200


def test_configured_host_names_are_accepted(app_config):
    app_config["ALLOWED_HOSTS"] = ["studio.lan"]
    client = create_app(app_config).test_client()
    assert client.get("/api/tags", headers={"Host": "studio.lan:8189"}).status_code == 200


def test_no_cors_wildcard_and_no_cors_for_foreign_origins(client):
    response = client.get("/api/tags", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:8188",
                                    "http://localhost:9999"])
def test_state_changing_request_from_a_foreign_origin_is_403(client, db_conn, origin):
    response = client.post("/api/tags_add", json={"newtags": ["x"]},
                           headers={"Origin": origin, "Host": "localhost:8189"})
    assert response.status_code == 403
    assert "error" in response.get_json()
    assert db_conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 0


def test_same_origin_and_originless_requests_pass(client):
    same = client.post("/api/tags_add", json={"newtags": ["a"]},
                       headers={"Origin": "http://localhost:8189", "Host": "localhost:8189"})
    assert same.status_code == 200
    assert client.post("/api/tags_add", json={"newtags": ["b"]}).status_code == 200


def test_comfyui_origin_gets_cors_and_may_write(app_config):
    app_config["ALLOWED_ORIGINS"] = ["http://127.0.0.1:8188"]
    client = create_app(app_config).test_client()
    headers = {"Origin": "http://127.0.0.1:8188", "Host": "127.0.0.1:8189"}
    preflight = client.options("/api/tags_add", headers={
        **headers, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8188"
    response = client.post("/api/tags_add", json={"newtags": ["a"]}, headers=headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8188"
    assert "Origin" in response.headers["Vary"]


def test_panel_page_may_only_be_framed_by_itself_and_comfyui(app_config):
    app_config["ALLOWED_ORIGINS"] = ["http://127.0.0.1:8188"]
    client = create_app(app_config).test_client()
    with client.get("/") as response:
        assert response.status_code == 200
        policy = response.headers["Content-Security-Policy"]
        assert policy.endswith("; frame-ancestors 'self' http://127.0.0.1:8188")
        assert "default-src 'self'" in policy and "object-src 'none'" in policy


def test_ipv6_loopback_comfyui_page_may_frame_the_panel(app_config):
    """Chromium drops IPv6 literals in frame-ancestors: such an origin is never listed; the page
    framing us, when it is that allowed origin, gets its scheme and port with any host."""
    app_config["ALLOWED_ORIGINS"] = ["http://127.0.0.1:8188", "http://[::1]:8188"]
    client = create_app(app_config).test_client()

    def ancestors(**headers):
        with client.get("/?mode=select", headers=headers) as response:
            assert "Referer" in response.headers["Vary"]
            return response.headers["Content-Security-Policy"].split("frame-ancestors ")[1]

    strict = "'self' http://127.0.0.1:8188"
    assert ancestors() == strict
    assert ancestors(Referer="http://[::1]:8188/") == strict + " http://*:8188"
    assert ancestors(Referer="http://[::1]:9999/") == strict  # not an allowed origin
    assert ancestors(Referer="http://evil.example:8188/") == strict
    assert ancestors(Referer="http://127.0.0.1:8188/") == strict
    with client.get("/api/panel/config", headers={"Referer": "http://[::1]:8188/"}) as response:
        assert "Content-Security-Policy" not in response.headers  # HTML only
    # The ComfyUI-side script frames only selection mode: the full panel (deletes, edits) never
    # gets the any-host source, whatever the Referer says.
    with client.get("/", headers={"Referer": "http://[::1]:8188/"}) as response:
        assert response.headers["Content-Security-Policy"].endswith("frame-ancestors " + strict)


@pytest.mark.parametrize("value", ["http://[::1", "http://[::1]:99999/", "http://[::1]:x/",
                                   "http://[zz]:8188/", "\udcff://[::1]:8188"])
def test_malformed_referer_or_origin_is_refused_not_a_500(app_config, value):
    """urlsplit raises on an unclosed IPv6 bracket: a hostile header must not crash a request."""
    app_config["ALLOWED_ORIGINS"] = ["http://[::1]:8188"]
    app_config["TESTING"] = False  # a crash would be a 500, as in production
    client = create_app(app_config).test_client()
    with client.get("/?mode=select", headers={"Referer": value}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Security-Policy"].endswith("frame-ancestors 'self'")
    response = client.post("/api/tags_add", json={"newtags": ["a"]}, headers={"Origin": value})
    assert response.status_code == 403, response.get_data(as_text=True)
    assert "error" in response.get_json()


def test_panel_config_tells_the_panel_its_parent_origins(app_config):
    app_config["ALLOWED_ORIGINS"] = ["http://127.0.0.1:8188/", "HTTP://LOCALHOST:8188"]
    body = create_app(app_config).test_client().get("/api/panel/config").get_json()
    assert body["allowed_origins"] == ["http://127.0.0.1:8188", "http://localhost:8188"]
    assert body["read_only_reason"] is None


def test_token_required_from_other_machines_only(app_config):
    app_config["AUTH_TOKEN"] = "s3cret"
    app_config["ALLOWED_HOSTS"] = ["studio.lan"]
    client = create_app(app_config).test_client()
    remote = {"REMOTE_ADDR": "192.168.1.20"}
    headers = {"Host": "studio.lan"}
    assert client.get("/api/tags", headers=headers, environ_base=remote).status_code == 401
    assert client.get("/api/tags", headers={**headers, "X-Hikaze-Token": "wrong"},
                      environ_base=remote).status_code == 401
    assert client.get("/api/tags", headers={**headers, "X-Hikaze-Token": "s3cret"},
                      environ_base=remote).status_code == 200
    assert client.get("/api/tags").status_code == 200  # loopback client


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_state_changing_get_from_another_site_without_origin_is_403(client, site):
    """An <img src="http://127.0.0.1:8189/api/scan"> on another page must not start a scan."""
    response = client.get("/api/scan?async=1", headers={"Sec-Fetch-Site": site,
                                                        "Sec-Fetch-Dest": "image"})
    assert response.status_code == 403
    assert client.get("/api/jobs").get_json() == {"jobs": []}


def test_plain_gets_from_other_sites_still_read(client):
    response = client.get("/api/tags", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200


def test_a_second_job_of_the_same_kind_is_409_while_the_first_runs(app, client):
    import threading

    from hikaze_manager.state import get_state

    release = threading.Event()
    jobs = get_state(app).jobs
    first = jobs.submit("scan", lambda job: (release.wait(10), (200, {}))[1])
    try:
        response = client.post("/api/scan", json={"async": True})
        assert response.status_code == 409
        assert response.get_json()["details"] == {"job_id": first.id}
    finally:
        release.set()
        jobs.wait(first.id, timeout=10)
    assert first.state == "succeeded"
