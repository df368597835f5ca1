"""An authenticator app (TOTP) on the page, in Chromium, against `make run`'s cluster.

The test plays the app: it reads the key the page shows and computes the
codes with pyotp, as an authenticator app that scanned the QR code would.
"""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PasskeyPage, new_email

pytestmark = pytest.mark.browser


def test_enrol_totp_log_in_with_a_code_then_remove_it(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")

    page = ui.page
    page.get_by_role("button", name="Set up an authenticator app").click()
    ui.expect_status("Scan the QR code")
    qr = page.get_by_role("img", name="QR code of your authenticator app's key")
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    # The image really rendered: the page's CSP lets the data: SVG in.
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    app = pyotp.TOTP(page.locator("#totp-secret").inner_text())

    page.locator("#totp-confirm-code").fill(f"{(int(app.now()) + 1) % 1_000_000:06d}")
    page.get_by_role("button", name="Turn on").click()
    ui.expect_error("could not be verified")
    page.locator("#totp-confirm-code").fill(app.now())
    page.get_by_role("button", name="Turn on").click()
    ui.expect_status("Authenticator app added. Two-step login is on")
    assert len(ui.codes()) == 10
    expect(page.locator("#totp-enrol")).to_be_hidden()
    expect(page.get_by_role("button", name="Remove the authenticator app")).to_be_visible()

    ui.logout()
    ui.password_login(email)
    ui.expect_status("Enter the code from your authenticator app")
    expect(page.locator("#mfa-passkey")).to_be_hidden()
    expect(page.locator("#totp-code")).to_be_focused()
    # The confirming code is spent: the next step's code (one step of drift
    # is accepted) logs in.
    page.locator("#totp-code").fill(app.at(time.time() + 30))
    page.get_by_role("button", name="Use code").click()
    ui.expect_status("Logged in with your password and authenticator app")
    assert ui.amr() == "pwd, otp"

    # A login with the code seconds ago is a recent second factor: no step-up.
    page.get_by_role("button", name="Remove the authenticator app").click()
    ui.expect_status("Authenticator app removed")
    expect(page.get_by_role("button", name="Set up an authenticator app")).to_be_visible()
    ui.logout()
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
