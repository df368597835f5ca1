"""The page's email steps in Chromium: the verification link from the sink,
resend, and an email change finished from the link mailed to the new address."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Cluster, PasskeyPage, new_email
from tests.support.mail import (
    CHANGE_SUBJECT,
    CHANGED_SUBJECT,
    VERIFY_SUBJECT,
    messages_to,
    wait_for_link,
)

pytestmark = pytest.mark.browser


def _confirm_from(ui: PasskeyPage, link: str) -> None:
    page = ui.page
    page.goto(link)
    expect(page.locator("#verify-heading")).to_be_visible()
    expect(page.locator("#verify-confirm")).to_be_focused()
    # The token left the address bar (and the history entry) at once.
    assert "verify_token" not in page.url
    assert page.evaluate("window.location.search") == ""
    page.get_by_role("button", name="Confirm my email address").click()
    ui.expect_status("Email address confirmed")
    expect(page.locator("#verify")).to_be_hidden()


def test_register_open_the_mailed_link_and_see_the_profile_verified(
    ui: PasskeyPage, cluster: Cluster
) -> None:
    assert cluster.data_dir is not None
    mail = cluster.data_dir / "mail"
    email = new_email()
    page = ui.page
    ui.open()
    ui.register(email)
    first = wait_for_link(mail, email, VERIFY_SUBJECT)[0]
    assert first.startswith(f"{cluster.base_url}/?verify_token=")

    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    expect(page.locator("#user-email")).to_have_text(email)
    expect(page.locator("#user-verified")).to_contain_text("not yet")
    # A new link; the first one stops working.
    page.get_by_role("button", name="Mail me a new verification link").click()
    ui.expect_status("A new verification link has been sent")
    link = wait_for_link(mail, email, VERIFY_SUBJECT, count=2)[0]
    assert link != first
    ui.logout()

    page.goto(first)
    page.get_by_role("button", name="Confirm my email address").click()
    ui.expect_error("The verification link is not valid")

    _confirm_from(ui, link)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    expect(page.locator("#user-verified")).to_have_text("yes")
    expect(page.locator("#resend-verification")).to_be_hidden()
    ui.logout()

    # The link worked once.
    page.goto(link)
    page.get_by_role("button", name="Confirm my email address").click()
    ui.expect_error("The verification link is not valid")


def test_change_the_email_address_from_the_page(ui: PasskeyPage, cluster: Cluster) -> None:
    assert cluster.data_dir is not None
    mail = cluster.data_dir / "mail"
    email, new = new_email(), new_email()
    page = ui.page
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")

    page.locator("#change-email-new").fill(new)
    page.locator("#change-email-password").fill("Wrong-password-1234")
    page.get_by_role("button", name="Change email address").click()
    ui.expect_error("The password is not correct")
    expect(page.locator("#change-email-password")).to_be_focused()

    page.locator("#change-email-new").fill(new)
    page.locator("#change-email-password").fill(PASSWORD)
    page.get_by_role("button", name="Change email address").click()
    ui.expect_status("A link has been sent to the new address")
    expect(page.locator("#user-email")).to_have_text(email)  # nothing moved yet
    link = wait_for_link(mail, new, CHANGE_SUBJECT)[0]
    ui.logout()

    _confirm_from(ui, link)
    ui.password_login(email)
    ui.expect_error("Invalid email or password")
    ui.password_login(new)
    ui.expect_status("Logged in with your password")
    expect(page.locator("#user-email")).to_have_text(new)
    expect(page.locator("#user-verified")).to_have_text("yes")
    deadline = time.monotonic() + 15
    while not messages_to(mail, email, CHANGED_SUBJECT):
        assert time.monotonic() < deadline, "no notice to the old address"
        time.sleep(0.1)
