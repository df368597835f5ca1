"""Record real WebAuthn responses from Chromium's virtual authenticator.

    uv run python tests/vectors/record_webauthn_chromium.py

Writes tests/vectors/webauthn_chromium.json: one registration and one
discoverable-credential assertion made by Chromium (CTAP2 internal
authenticator, UV) on origin http://localhost:8000 for RP ID `localhost`,
with fixed challenges, serialised by the browser's own `toJSON()`. The
verifier tests replay them: the shapes are what a real browser sends, not
what our software authenticator thinks a browser sends.
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import sync_playwright

ORIGIN = "http://localhost:8000"
OUT = Path(__file__).with_name("webauthn_chromium.json")
REG_CHALLENGE = "cmVnaXN0cmF0aW9uLWNoYWxsZW5nZS0wMDAwMDAwMDE"
AUTH_CHALLENGE = "YXV0aGVudGljYXRpb24tY2hhbGxlbmdlLTAwMDAwMDE"
USER_HANDLE = "ABEiM0RVZneImaq7zN3u_w"  # 16 bytes, a UUID's worth

_SCRIPT = """
async ([reg, auth, user]) => {
  const created = await navigator.credentials.create({publicKey:
    PublicKeyCredential.parseCreationOptionsFromJSON({
      rp: {id: "localhost", name: "Identity Platform"},
      user: {id: user, name: "vector@example.com", displayName: "vector@example.com"},
      challenge: reg,
      pubKeyCredParams: [{type: "public-key", alg: -7}, {type: "public-key", alg: -257}],
      authenticatorSelection: {residentKey: "required", userVerification: "required"},
      attestation: "none", timeout: 300000})});
  const asserted = await navigator.credentials.get({publicKey:
    PublicKeyCredential.parseRequestOptionsFromJSON({
      challenge: auth, rpId: "localhost", allowCredentials: [],
      userVerification: "required", timeout: 300000})});
  return {registration: created.toJSON(), authentication: asserted.toJSON()};
}
"""


def main() -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context()
        page = context.new_page()
        page.route(
            f"{ORIGIN}/", lambda r: r.fulfill(body="<!doctype html>", content_type="text/html")
        )
        page.goto(f"{ORIGIN}/")
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable", {"enableUI": False})
        cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                }
            },
        )
        result = page.evaluate(_SCRIPT, [REG_CHALLENGE, AUTH_CHALLENGE, USER_HANDLE])
        browser.close()
    vector = {
        "source": f"Chromium virtual authenticator (ctap2, internal, UV) via {Path(__file__).name}",
        "origin": ORIGIN,
        "rp_id": "localhost",
        "user_handle": USER_HANDLE,
        "registration_challenge": REG_CHALLENGE,
        "authentication_challenge": AUTH_CHALLENGE,
        **result,
    }
    OUT.write_text(json.dumps(vector, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
