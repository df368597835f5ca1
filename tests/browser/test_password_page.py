"""Password change and reset on the page, in Chromium, against `make run`'s cluster.

The reset mail is read from the cluster's development mail sink (one .eml per
message under <data dir>/mail/), and its link is opened as a person would.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Cluster, PasskeyPage, new_email
from tests.support.mail import RESET_SUBJECT, wait_for_link

pytestmark = pytest.mark.browser

NEW = "velvet-orbit-plum-harbour-42"


def test_change_password_then_log_in_with_the_new_one(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")

    page = ui.page
    page.locator("#change-current").fill("Wrong-password-1234")
    page.locator("#change-new").fill(NEW)
    page.get_by_role("button", name="Change password").click()
    ui.expect_error("The current password is not correct")
    expect(page.locator("#change-current")).to_be_focused()

    page.locator("#change-current").fill(PASSWORD)
    page.locator("#change-new").fill("password123456")  # long enough, but common
    page.get_by_role("button", name="Change password").click()
    ui.expect_error("does not meet the policy")
    expect(page.locator("#change-new-error")).to_contain_text("too common")

    page.locator("#change-current").fill(PASSWORD)
    page.locator("#change-new").fill(NEW)
    page.get_by_role("button", name="Change password").click()
    ui.expect_status("Password changed")
    expect(page.locator("#change-new")).to_have_value("")
    assert ui.signed_in()  # this session stays

    ui.logout()
    ui.password_login(email, PASSWORD)
    ui.expect_error("Invalid email or password")
    ui.password_login(email, NEW)
    ui.expect_status("Logged in with your password")


def test_reset_from_the_mailed_link(ui: PasskeyPage, cluster: Cluster) -> None:
    assert cluster.data_dir is not None
    email = new_email()
    ui.open()
    ui.register(email)

    page = ui.page
    page.locator("#forgot-email").fill(email)
    page.get_by_role("button", name="Mail me a reset link").click()
    ui.expect_status("If an account uses this email")
    link = wait_for_link(cluster.data_dir / "mail", email, RESET_SUBJECT)[0]
    assert link.startswith(f"{cluster.base_url}/?reset_token=")
    token = link.split("reset_token=", 1)[1]

    page.goto(link)
    expect(page.locator("#reset-heading")).to_be_visible()
    expect(page.locator("#reset-password")).to_be_focused()
    # The token left the address bar (and the history entry) at once.
    assert "reset_token" not in page.url
    assert page.evaluate("window.location.search") == ""

    page.locator("#reset-password").fill("password123456")
    page.get_by_role("button", name="Set new password").click()
    ui.expect_error("does not meet the policy")
    page.locator("#reset-password").fill(NEW)
    page.get_by_role("button", name="Set new password").click()
    ui.expect_status("Password changed. Log in with your new password")
    expect(page.locator("#reset")).to_be_hidden()

    ui.password_login(email, NEW)
    ui.expect_status("Logged in with your password")
    ui.logout()

    # The link worked once.
    page.goto(link)
    page.locator("#reset-password").fill("another-fine-passphrase-7")
    page.get_by_role("button", name="Set new password").click()
    ui.expect_error("The reset link is not valid")

    # The sink printed one line for the mail; no log line holds the token.
    output = "".join(cluster.output)
    assert f"mail to {email}: Reset your password" in output
    assert token not in output


def test_forgot_for_an_unknown_email_says_the_same(ui: PasskeyPage) -> None:
    ui.open()
    ui.page.locator("#forgot-email").fill(new_email())
    ui.page.get_by_role("button", name="Mail me a reset link").click()
    ui.expect_status("If an account uses this email")
