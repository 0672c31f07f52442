"""The panel saves with If-Match: a model changed by someone else is not overwritten, the user is
told so and offered a reload (real headless Chromium against a real server)."""

from __future__ import annotations

from panel_support import (  # noqa: F401
    browser, open_panel, page, page_errors, panel, parent_site, png_bytes)


def test_a_save_after_someone_else_saved_is_refused_and_offers_a_reload(panel, page, page_errors):
    _, sha = panel.write_model("checkpoints", "alpha.safetensors")
    panel.promote_all()
    panel.set_model(sha, name="Alpha")
    sent = []
    page.on("request", lambda r: sent.append(r.headers.get("if-match"))
            if r.method == "PATCH" else None)
    open_panel(page, panel)
    page.click("#items [data-name='Alpha']")
    page.wait_for_selector("#d-name")

    panel.set_model(sha, name="Renamed elsewhere", meta_json={"description": "theirs"})
    page.fill("#d-description", "mine")
    page.click("#d-save")
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert "someone else changed this model" in page.inner_text("dialog.confirm-dialog")
    assert "someone else changed this model" in page.inner_text("#d-status")
    assert sent and sent[0] and sent[0].startswith('"')  # the ETag of the GET went back
    stored = panel.model(sha)
    assert stored["name"] == "Renamed elsewhere" and stored["meta_json"]["description"] == "theirs"

    assert len(page_errors) == 1 and "412" in page_errors[0], page_errors  # Chromium logs it
    page_errors.clear()

    page.click("dialog.confirm-dialog button:text('Reload the model')")
    page.wait_for_selector("#d-status:text('Reloaded from the library.')")
    assert page.input_value("#d-name") == "Renamed elsewhere"
    assert page.input_value("#d-description") == "theirs"

    # with the fresh ETag, the next save goes through
    page.fill("#d-description", "mine after all")
    page.click("#d-save")
    page.wait_for_selector("#d-status:text('Saved.')")
    assert panel.model(sha)["meta_json"]["description"] == "mine after all"
    assert len(sent) == 2 and sent[1] != sent[0]


def _open_alpha(panel, page):
    _, sha = panel.write_model("checkpoints", "alpha.safetensors")
    panel.promote_all()
    panel.set_model(sha, name="Alpha")
    open_panel(page, panel)
    page.click("#items [data-name='Alpha']")
    page.wait_for_selector("#d-name")
    return sha


def test_a_save_after_uploading_and_deleting_a_picture_here_goes_through(
        panel, page, page_errors, tmp_path):
    sha = _open_alpha(panel, page)
    picture = tmp_path / "pic.png"
    picture.write_bytes(png_bytes())
    sent = []
    page.on("request", lambda r: sent.append(r.headers.get("if-match"))
            if r.method == "PATCH" else None)
    held = []
    page.route("**/api/images/upload", lambda route: held.append(route))
    page.set_input_files("#gallery-file", str(picture))
    # saved while the upload is in flight: the save waits for it and the re-read after it
    page.fill("#d-description", "mine")
    page.click("#d-save")
    while not held:
        page.wait_for_timeout(20)
    page.wait_for_timeout(200)
    assert sent == [] and page.inner_text("#d-status") == "Saving…"
    held.pop().continue_()
    page.wait_for_selector("#d-status:text('Saved.')")
    stored = panel.model(sha)
    assert stored["meta_json"]["description"] == "mine" and stored["meta_json"]["images_count"] == 1
    page.wait_for_selector(".gallery-counter:text('1 / 1')")

    page.click("#gallery-delete")
    page.click("dialog.confirm-dialog [data-action='confirm']")
    page.wait_for_selector(".gallery-frame .placeholder")
    page.fill("#d-description", "mine again")
    page.click("#d-save")
    page.wait_for_selector("#d-status:text('Saved.')")
    stored = panel.model(sha)
    assert stored["meta_json"]["description"] == "mine again"
    assert stored["meta_json"]["images_count"] == 0
    assert len(sent) == 2 and all(sent)
    assert not page.query_selector("dialog.confirm-dialog[open]")
    assert page_errors == []


def test_an_upload_here_does_not_hide_that_someone_else_changed_a_field(
        panel, page, page_errors, tmp_path):
    sha = _open_alpha(panel, page)
    picture = tmp_path / "pic.png"
    picture.write_bytes(png_bytes())
    panel.set_model(sha, name="Renamed elsewhere")
    page.set_input_files("#gallery-file", str(picture))
    page.wait_for_selector(".gallery-counter:text('1 / 1')")
    page.fill("#d-description", "mine")
    page.click("#d-save")
    page.wait_for_selector("dialog.confirm-dialog[open]")
    assert "someone else changed this model" in page.inner_text("#d-status")
    stored = panel.model(sha)
    assert stored["name"] == "Renamed elsewhere" and stored["meta_json"]["description"] == ""
    assert len(page_errors) == 1 and "412" in page_errors[0], page_errors
    page_errors.clear()
