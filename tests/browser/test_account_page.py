"""Profile edit, data export and account deletion on the page, in Chromium,
against `make run`'s cluster (nginx gateway: PATCH /users/me goes to the user
service, DELETE /users/me and the export to the auth service)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, PasskeyPage, new_email

pytestmark = pytest.mark.browser


def test_edit_profile_download_data_and_delete_the_account(ui: PasskeyPage, tmp_path: Path) -> None:
    email = new_email()
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    page = ui.page

    # The profile is filled in from the user service.
    expect(page.locator("#profile-name")).to_have_value("Jane Doe")
    expect(page.locator("#profile-email")).to_have_value(email)
    expect(page.locator("#profile-dob")).to_have_value("1980-04-14")

    # A refused value: the field says why, nothing is saved.
    page.locator("#profile-dob").fill("2999-01-01")
    page.get_by_role("button", name="Save profile").click()
    ui.expect_error("date_of_birth")
    expect(page.locator("#profile-dob-error")).to_contain_text("future")

    page.locator("#profile-name").fill("Jane Q. Doe")
    page.locator("#profile-dob").fill("1981-05-15")
    page.locator("#profile-job").fill("Architect")
    page.get_by_role("button", name="Save profile").click()
    ui.expect_status("Profile saved")
    expect(page.locator("#profile-dob-error")).to_have_count(0)

    # What was saved is what a fresh load shows.
    ui.logout()
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    expect(page.locator("#profile-name")).to_have_value("Jane Q. Doe")
    expect(page.locator("#profile-dob")).to_have_value("1981-05-15")
    expect(page.locator("#profile-job")).to_have_value("Architect")

    # The export downloads as a file holding the profile and the sessions.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download my data").click()
    ui.expect_status("Your data was downloaded")
    assert download.value.suggested_filename == "account-export.json"
    target = tmp_path / "export.json"
    download.value.save_as(target)
    data = json.loads(target.read_text())
    assert data["identity"]["email"] == email
    assert data["profile"]["name"] == "Jane Q. Doe"
    assert data["profile"]["job_title"] == "Architect"
    assert any(s["current"] for s in data["sessions"])

    # Deletion needs the password.
    page.locator("#delete-password").fill("Wrong-password-1234")
    page.get_by_role("button", name="Delete my account").click()
    ui.expect_error("The password is not correct")
    expect(page.locator("#delete-password")).to_be_focused()
    assert ui.signed_in()

    page.locator("#delete-password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    ui.expect_status("Your account was deleted")
    assert not ui.signed_in()

    # The account is gone: its password no longer logs in.
    ui.password_login(email)
    ui.expect_error("Invalid email or password")
