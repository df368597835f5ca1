"""The passkey page end to end: Chromium + virtual authenticator + gateway + services.

The journey walks every flow the page offers, in the order a user meets
them; the other tests are the failures only a browser produces (the user
cancels, the authenticator cannot verify the user).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, Cluster, PasskeyPage, new_email

pytestmark = pytest.mark.browser


def test_page_is_served_with_a_strict_csp(cluster: Cluster) -> None:
    r = httpx.get(f"{cluster.base_url}/", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    # No inline script or style that the CSP would have to allow.
    assert "<script>" not in r.text
    assert "style=" not in r.text
    assert "<style" not in r.text
    assert "nosniff" in r.headers["x-content-type-options"]
    for asset in ("/static/app.js", "/static/app.css"):
        a = httpx.get(f"{cluster.base_url}{asset}", timeout=10)
        assert a.status_code == 200
        # Scripts and styles load only with their real MIME type.
        assert "nosniff" in a.headers["x-content-type-options"]
    assert httpx.get(f"{cluster.base_url}/static/../main.py", timeout=10).status_code == 404
    assert httpx.get(f"{cluster.base_url}/static/index.html", timeout=10).status_code == 404


def test_a_guessable_password_shows_the_reason_beside_the_field(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()
    ui.submit_registration(email, "P@ssword1234")  # leet-speak of "password" + digits
    field = ui.page.locator("#reg-password")
    note = ui.page.locator("#reg-password-error")
    # The API's per-field reason, under the field, not just "does not meet the policy".
    expect(note).to_have_text(re.compile(r"^Password is too easy to guess\. \S"))
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", re.compile(r"\breg-password-error\b"))
    expect(field).to_be_focused()
    ui.expect_error("too easy to guess")
    assert "P@ssword1234" not in ui.page.locator("main").inner_text()

    # A better password: the note goes and the account is made.
    ui.register(email)
    expect(note).to_have_count(0)
    expect(field).not_to_have_attribute("aria-invalid", "true")


def test_the_whole_passkey_journey(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()

    # 1. Register, then log in with the password: one factor.
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    assert ui.amr() == "pwd"

    # 2. Enrol a passkey: MFA is on, recovery codes are shown once.
    ui.add_passkey("Laptop")
    ui.expect_status('Passkey "Laptop" added')
    assert ui.passkeys() == ["Laptop"]
    first_codes = ui.codes()
    assert len(first_codes) == 10
    assert len(ui.authn.credentials()) == 1
    assert ui.authn.credentials()[0]["isResidentCredential"] is True

    # 3. New codes need a recent second factor; the page steps up with the
    #    passkey, then retries and shows the new set.
    ui.page.get_by_role("button", name="Generate new recovery codes").click()
    expect(ui.page.locator("#step-up")).to_be_visible()
    ui.page.get_by_role("button", name="Confirm with my passkey").click()
    ui.expect_status("New recovery codes generated")
    codes = ui.codes()
    assert len(codes) == 10
    assert not set(codes) & set(first_codes)
    assert ui.amr() == "hwk, user"
    ui.logout()

    # 4. Password + passkey.
    ui.password_login(email)
    ui.expect_status("Confirm with your passkey or a recovery code")
    assert not ui.signed_in()
    ui.page.get_by_role("button", name="Use my passkey").click()
    ui.expect_status("Logged in with your password and passkey")
    assert ui.amr() == "pwd, hwk"
    ui.logout()

    # 5. Passkey alone, no email typed at all.
    ui.page.get_by_role("button", name="Log in with a passkey").click()
    ui.expect_status("Logged in with your passkey")
    assert ui.amr() == "hwk, user"
    assert ui.page.locator("#user-id").inner_text()
    ui.logout()

    # 6. Password + recovery code (the device is "lost"); an old code fails.
    ui.password_login(email)
    ui.expect_status("Confirm with your passkey")
    ui.page.locator("#recovery-code").fill(first_codes[0])
    ui.page.get_by_role("button", name="Use recovery code").click()
    ui.expect_error("could not be verified")
    ui.password_login(email)
    ui.expect_status("Confirm with your passkey")
    ui.page.locator("#recovery-code").fill(codes[0].lower())
    ui.page.get_by_role("button", name="Use recovery code").click()
    ui.expect_status("Logged in with a recovery code")
    assert ui.amr() == "pwd, otp"

    # 7. List and remove: the last passkey needs an explicit confirmation.
    assert ui.passkeys() == ["Laptop"]
    ui.page.get_by_role("button", name="Remove Laptop").click()
    expect(ui.page.locator("#confirm-last")).to_be_visible()
    ui.page.get_by_role("button", name="Keep it").click()
    assert ui.passkeys() == ["Laptop"]
    ui.page.get_by_role("button", name="Remove Laptop").click()
    ui.page.get_by_role("button", name="Remove my last passkey").click()
    ui.expect_status("Two-step login is off")
    assert ui.passkeys() == []
    expect(ui.page.locator("#passkey-empty")).to_be_visible()
    ui.logout()

    # 8. Back to a password-only account: no second step any more.
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    assert ui.amr() == "pwd"


def _cancel_pending_ceremony(ui: PasskeyPage) -> None:
    """The user walks away from the authenticator, then presses Cancel."""
    cancel = ui.page.get_by_role("button", name="Cancel passkey request")
    expect(cancel).to_be_visible()
    cancel.click()
    ui.expect_error("cancelled")
    expect(cancel).to_be_hidden()


def test_user_cancelling_changes_nothing(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    # From here on the authenticator waits for a touch that never comes.
    ui.authn.swap(automaticPresenceSimulation=False)

    # Cancel at enrolment: nothing is stored.
    ui.add_passkey("Cancelled")
    _cancel_pending_ceremony(ui)
    assert ui.passkeys() == []
    ui.authn.swap()
    ui.add_passkey("Phone")
    ui.expect_status('Passkey "Phone" added')
    ui.logout()

    # Cancel at the second step: no tokens, but the mfa_token was never sent,
    # so the user can simply try again.
    ui.authn.swap(automaticPresenceSimulation=False)
    ui.password_login(email)
    ui.expect_status("Confirm with your passkey")
    ui.page.get_by_role("button", name="Use my passkey").click()
    _cancel_pending_ceremony(ui)
    assert not ui.signed_in()
    ui.authn.swap()
    ui.page.get_by_role("button", name="Use my passkey").click()
    ui.expect_status("Logged in with your password and passkey")
    ui.logout()

    # Cancel at passwordless login.
    ui.authn.swap(automaticPresenceSimulation=False)
    ui.page.get_by_role("button", name="Log in with a passkey").click()
    _cancel_pending_ceremony(ui)
    assert not ui.signed_in()


_DOWNGRADED_MFA = """
async ([email, password]) => {
  // A client that asks the authenticator for less than the server requires.
  const post = (path, body) => fetch(path, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const login = await (await post("/login", {email, password})).json();
  const options = {...login.webauthn, userVerification: "discouraged"};
  const cred = await navigator.credentials.get(
    {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  const flags = new Uint8Array(cred.response.authenticatorData)[32];
  const res = await post("/login/mfa", {mfa_token: login.mfa_token, credential: cred.toJSON()});
  return {flags, status: res.status, body: await res.json()};
}
"""


def test_authenticator_without_user_verification_is_refused(ui: PasskeyPage) -> None:
    email = new_email()
    ui.open()

    # Enrolment on an authenticator that fails user verification.
    ui.authn.swap(isUserVerified=False)
    ui.register(email)
    ui.password_login(email)
    ui.expect_status("Logged in with your password")
    ui.add_passkey("No UV")
    ui.expect_error("cancelled or timed out")
    assert ui.passkeys() == []

    # Enrol properly, then lose user verification: the page's logins fail.
    ui.authn.swap()
    ui.add_passkey("Laptop")
    ui.expect_status('Passkey "Laptop" added')
    ui.logout()
    ui.authn.swap(hasUserVerification=False, isUserVerified=False)
    ui.page.get_by_role("button", name="Log in with a passkey").click()
    ui.expect_error("cancelled or timed out")
    ui.password_login(email)
    ui.expect_status("Confirm with your passkey")
    ui.page.get_by_role("button", name="Use my passkey").click()
    ui.expect_error("cancelled or timed out")
    assert not ui.signed_in()

    # And the server refuses a real assertion without the UV flag even when a
    # client downgrades the request (the browser then allows it).
    result: dict[str, Any] = ui.page.evaluate(_DOWNGRADED_MFA, [email, PASSWORD])
    assert result["flags"] & 0x04 == 0, "the authenticator must not have set UV"
    assert result["status"] == 401
    assert result["body"]["type"] == "urn:idp:problem:webauthn-failed"
