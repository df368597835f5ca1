"""The page asks for the password before the first passkey after an old login.

This module's cluster treats every login as old (`ENROL_REAUTH_MAX_AGE_SECONDS`
0), as a session kept alive by refresh tokens for hours would be: the page
must then ask for the password before enrolling the first passkey, and
refuse a wrong one. Right after a login (the default window), the journey in
test_passkey_page.py enrols without asking.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, PasskeyPage, new_email

pytestmark = pytest.mark.browser

CLUSTER_ENV = {"ENROL_REAUTH_MAX_AGE_SECONDS": "0"}


def test_first_passkey_after_an_old_login_asks_for_the_password(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")

    panel = ui.page.locator("#reauth")
    field = ui.page.locator("#reauth-password")
    ui.add_passkey("Laptop")
    ui.expect_status("Confirm your password to add your first passkey")
    expect(panel).to_be_visible()
    expect(field).to_be_focused()
    assert ui.passkeys() == []
    assert ui.authn.credentials() == []  # no ceremony ran

    # A wrong password: refused, nothing enrolled, asked again.
    field.fill("Wrong-password-1234")
    ui.page.get_by_role("button", name="Confirm password").click()
    ui.expect_error("The password is not right")
    expect(panel).to_be_visible()
    expect(field).to_have_value("")
    assert ui.passkeys() == []

    # The right one: the ceremony runs, MFA is on, the codes are shown.
    field.fill(PASSWORD)
    ui.page.get_by_role("button", name="Confirm password").click()
    ui.expect_status('Passkey "Laptop" added')
    expect(panel).to_be_hidden()
    assert ui.passkeys() == ["Laptop"]
    assert len(ui.codes()) == 10
    assert len(ui.authn.credentials()) == 1


def test_cancelling_the_password_prompt_changes_nothing(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    ui.add_passkey("Phone")
    expect(ui.page.locator("#reauth")).to_be_visible()
    ui.page.locator("#reauth").get_by_role("button", name="Cancel").click()
    ui.expect_status("Cancelled")
    expect(ui.page.locator("#reauth")).to_be_hidden()
    assert ui.passkeys() == []
    assert ui.authn.credentials() == []
