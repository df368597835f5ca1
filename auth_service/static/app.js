// The account page: registration, password (+ passkey or TOTP) login,
// passwordless login, password change and reset, email verification and
// change, passkey and authenticator-app (TOTP) management and recovery codes,
// the profile, the data export and account deletion.
// No framework, no build step.
//
// Tokens live in this closure only (never localStorage): an XSS that the CSP
// did not stop could still read storage, and a reload simply logs out.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { access: null, refresh: null, userId: null, mfaToken: null, mfaOptions: null };
  let pendingRetry = null; // the action to repeat after a step-up or a confirmation

  // --- base64url (WebAuthn L3 §5.10: binary members travel as base64url) ---

  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromB64url(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  // --- options JSON -> WebAuthn dictionaries (L3 §5.1.9, parse*FromJSON) ---

  const withIds = (list) => (list || []).map((d) => ({ ...d, id: fromB64url(d.id) }));

  function creationOptions(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromB64url(json.challenge),
      user: { ...json.user, id: fromB64url(json.user.id) },
      excludeCredentials: withIds(json.excludeCredentials),
    };
  }

  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return { ...json, challenge: fromB64url(json.challenge), allowCredentials: withIds(json.allowCredentials) };
  }

  // --- PublicKeyCredential -> JSON (L3 §5.1.8, toJSON) ---

  function credentialJSON(cred) {
    if (typeof cred.toJSON === "function") return cred.toJSON();
    const r = cred.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(),
      response,
    };
  }

  // --- messages ---

  function say(text) { $("error").textContent = ""; $("status").textContent = text; }
  function fail(text) { $("status").textContent = ""; $("error").textContent = text; }

  function describeWebAuthnError(err) {
    if (err && err.name === "AbortError") return "The passkey request was cancelled.";
    // Browsers collapse cancel, timeout and "no matching passkey" into
    // NotAllowedError on purpose (L3 §14.5.2, privacy of credential ids).
    if (err && err.name === "NotAllowedError") return "The passkey request was cancelled or timed out.";
    if (err && err.name === "InvalidStateError") return "This authenticator already holds a passkey for your account.";
    if (err && err.name === "NotSupportedError") return "This browser or authenticator cannot create this kind of passkey.";
    if (err && err.name === "SecurityError") return "Passkeys are not allowed on this address.";
    return "The passkey request failed.";
  }

  function problemText(res) {
    const body = res.body || {};
    // RFC 9457 problems of this API carry per-field reasons in `errors`:
    // the summary alone ("does not meet the policy") does not say what to fix.
    const reasons = (body.errors || []).map((e) => `${e.field}: ${e.message}`);
    const text = [body.detail, ...reasons].filter(Boolean).join(" ");
    return text || `Request failed (${res.status}).`;
  }

  // Show each field's reason under that field (and tie it to the input for
  // screen readers); clear them before the next try.
  function clearFieldErrors(form) {
    for (const el of form.querySelectorAll(".field-error")) el.remove();
    for (const input of form.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.endsWith("-error"));
      if (ids.length) input.setAttribute("aria-describedby", ids.join(" ")); else input.removeAttribute("aria-describedby");
    }
  }

  function showFieldErrors(form, res) {
    clearFieldErrors(form);
    let first = null;
    for (const error of (res.body && res.body.errors) || []) {
      const input = form.elements.namedItem(error.field);
      if (!(input instanceof HTMLInputElement)) continue;
      const id = `${input.id}-error`;
      let note = document.getElementById(id);
      if (!note) {
        note = document.createElement("p");
        note.id = id;
        note.className = "field-error";
        input.after(note);
        const described = input.getAttribute("aria-describedby");
        input.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
      }
      note.textContent = note.textContent ? `${note.textContent} ${error.message}` : error.message;
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
    if (first) first.focus();
  }

  // --- HTTP ---

  async function call(method, path, body, { auth = false, retried = false } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && state.access) headers.Authorization = `Bearer ${state.access}`;
    const resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    const text = await resp.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch { parsed = null; }
    const res = { status: resp.status, body: parsed };
    // An expired access token: rotate the refresh token once and retry. Not
    // for a wrong password (invalid-credentials): the token was fine, and a
    // retry would count the same wrong guess twice.
    if (auth && resp.status === 401 && !retried && state.refresh && !isProblem(res, "invalid-credentials")) {
      const r = await call("POST", "/token/refresh", { refresh_token: state.refresh });
      if (r.status === 200) {
        state.access = r.body.access_token;
        state.refresh = r.body.refresh_token;
        return call(method, path, body, { auth, retried: true });
      }
    }
    return res;
  }

  const isProblem = (res, slug) => Boolean(res.body && res.body.type === `urn:idp:problem:${slug}`);

  // --- views ---

  function claimsOf(token) {
    try { return JSON.parse(new TextDecoder().decode(fromB64url(token.split(".")[1]))); } catch { return {}; }
  }

  function show(view) {
    $("signed-out").hidden = view !== "signed-out";
    $("signed-in").hidden = view !== "signed-in";
  }

  async function signedIn(tokens, message) {
    if (authorizeRequest) { await continueToApplication(tokens); return; }
    state.access = tokens.access_token;
    state.refresh = tokens.refresh_token;
    state.userId = tokens.user_id;
    state.mfaToken = null;
    state.mfaOptions = null;
    $("mfa").hidden = true;
    $("login-form").reset();
    $("recovery-form").reset();
    $("totp-form").reset();
    const claims = claimsOf(state.access);
    $("user-id").textContent = tokens.user_id;
    $("user-amr").textContent = (claims.amr || []).join(", ");
    show("signed-in");
    $("account-heading").focus();
    await loadProfile();
    await loadPasskeys();
    await loadTotp();
    say(message);
  }

  function signedOut(message) {
    Object.assign(state, { access: null, refresh: null, userId: null, mfaToken: null, mfaOptions: null });
    $("codes-panel").hidden = true;
    $("codes-list").replaceChildren();
    $("step-up").hidden = true;
    closeReauth();
    $("confirm-last").hidden = true;
    closeTotpEnrolment();
    $("mfa").hidden = true;
    $("profile-form").reset();
    $("delete-form").reset();
    show("signed-out");
    $("login-heading").focus();
    say(message);
  }

  function showCodes(codes) {
    const items = codes.map((c) => {
      const li = document.createElement("li");
      li.textContent = c;
      return li;
    });
    $("codes-list").replaceChildren(...items);
    $("codes-panel").hidden = false;
  }

  // The profile (user service, through the gateway): the email and whether
  // it is verified (the resend button only while it is not), and the
  // editable fields of the profile form.
  async function loadProfile() {
    const res = await call("GET", "/users/me", undefined, { auth: true });
    if (res.status !== 200) {
      // The profile lives in the user service: on the auth service's own
      // port (no gateway) there is none to show, which is no error of the login.
      $("user-email").textContent = "unavailable here";
      $("user-verified").textContent = "unavailable here";
      $("resend-verification").hidden = true;
      return;
    }
    $("user-email").textContent = res.body.email;
    $("user-verified").textContent = res.body.email_verified ? "yes" : "not yet: open the link we mailed you";
    $("resend-verification").hidden = Boolean(res.body.email_verified);
    $("profile-name").value = res.body.name;
    $("profile-email").value = res.body.email;
    $("profile-dob").value = res.body.date_of_birth;
    $("profile-job").value = res.body.job_title;
  }

  function when(iso) { return iso ? new Date(iso).toLocaleString() : "never"; }

  async function loadPasskeys() {
    const res = await call("GET", "/webauthn/credentials", undefined, { auth: true });
    if (res.status !== 200) { fail(problemText(res)); return; }
    const items = res.body.map((p) => {
      const li = document.createElement("li");
      const name = document.createElement("strong");
      name.textContent = p.label;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `Added ${when(p.created_at)} · last used ${when(p.last_used_at)}`
        + (p.backed_up ? " · synced" : "");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary";
      remove.textContent = `Remove ${p.label}`;
      remove.addEventListener("click", () => removePasskey(p.id, p.label, false));
      li.append(name, meta, remove);
      return li;
    });
    $("passkey-list").replaceChildren(...items);
    $("passkey-empty").hidden = items.length > 0;
  }

  // --- profile (the user service's), data export, deletion (the auth service's) ---

  async function saveProfile(event) {
    event.preventDefault();
    const form = event.target;
    const body = {
      name: $("profile-name").value,
      date_of_birth: $("profile-dob").value,
      job_title: $("profile-job").value,
    };
    say("Saving your profile…");
    const res = await call("PATCH", "/users/me", body, { auth: true });
    if (res.status !== 200) { fail(problemText(res)); showFieldErrors(form, res); return; }
    clearFieldErrors(form);
    $("profile-name").value = res.body.name;
    $("profile-dob").value = res.body.date_of_birth;
    $("profile-job").value = res.body.job_title;
    say("Profile saved.");
  }

  async function exportData() {
    say("Gathering your data…");
    const res = await call("GET", "/users/me/export", undefined, { auth: true });
    if (res.status !== 200) { fail(problemText(res)); return; }
    // Built in the page from what the API answered: the file never exists
    // on a server, and the token never appears in a URL.
    const blob = new Blob([JSON.stringify(res.body, null, 2)], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = "account-export.json";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 0);
    say("Your data was downloaded as account-export.json.");
  }

  async function deleteAccount(event) {
    event.preventDefault();
    const password = $("delete-password").value;
    say("Deleting your account…");
    const res = await call("DELETE", "/users/me", { password }, { auth: true });
    $("delete-password").value = "";
    if (res.status !== 204) {
      fail(problemText(res));
      $("delete-password").focus();
      return;
    }
    // Every session is revoked already; there is nothing to log out of.
    signedOut("Your account was deleted.");
  }

  // --- ceremonies ---

  async function register(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = Object.fromEntries(form.entries());
    say("Creating your account…");
    const res = await call("POST", "/users", body);
    if (res.status !== 201) { fail(problemText(res)); showFieldErrors(event.target, res); return; }
    clearFieldErrors(event.target);
    event.target.reset();
    $("login-email").value = body.email;
    $("login-password").focus();
    say("Account created. Log in with your new password.");
  }

  async function login(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    say("Checking your password…");
    const res = await call("POST", "/login", { email: form.get("email"), password: form.get("password") });
    if (res.status !== 200) { fail(problemText(res)); return; }
    if (res.body.mfa_required) {
      state.mfaToken = res.body.mfa_token;
      state.mfaOptions = res.body.webauthn;
      // Offer the second factors this account has ("webauthn", "totp").
      const methods = res.body.methods || ["webauthn"];
      $("mfa-passkey").hidden = !methods.includes("webauthn");
      $("totp-form").hidden = !methods.includes("totp");
      $("mfa").hidden = false;
      $("mfa-heading").focus();
      if (methods.includes("totp")) $("totp-code").focus();
      say(methods.includes("totp")
        ? "Password accepted. Enter the code from your authenticator app, or use a recovery code."
        : "Password accepted. Confirm with your passkey or a recovery code.");
      return;
    }
    await signedIn(res.body, "Logged in with your password.");
  }

  // One ceremony at a time; the page's Cancel button aborts it (L3 §5.6,
  // AbortSignal), as the browser's own dialog would.
  let ceremony = null;

  async function runCeremony(kind, publicKey) {
    if (ceremony) ceremony.abort();
    const mine = new AbortController();
    ceremony = mine;
    $("cancel-ceremony").hidden = false;
    try {
      const options = { publicKey, signal: mine.signal };
      const cred = kind === "create"
        ? await navigator.credentials.create(options)
        : await navigator.credentials.get(options);
      return credentialJSON(cred);
    } finally {
      if (ceremony === mine) {
        ceremony = null;
        $("cancel-ceremony").hidden = true;
      }
    }
  }

  function cancelCeremony() {
    if (ceremony) ceremony.abort();
  }

  function getAssertion(optionsJSON) {
    return runCeremony("get", requestOptions(optionsJSON));
  }

  async function mfaPasskey() {
    if (!state.mfaToken) { fail("Log in with your password first."); return; }
    say("Waiting for your passkey…");
    let credential;
    try {
      credential = await getAssertion(state.mfaOptions);
    } catch (err) {
      // Nothing was sent: the mfa_token is still good, the user may retry.
      fail(describeWebAuthnError(err));
      return;
    }
    const res = await call("POST", "/login/mfa", { mfa_token: state.mfaToken, credential });
    await finishMfa(res, "Logged in with your password and passkey.");
  }

  async function mfaRecovery(event) {
    event.preventDefault();
    if (!state.mfaToken) { fail("Log in with your password first."); return; }
    const code = new FormData(event.target).get("recovery_code");
    const res = await call("POST", "/login/mfa", { mfa_token: state.mfaToken, recovery_code: code });
    await finishMfa(res, "Logged in with a recovery code. That code is now used up.");
  }

  async function mfaTotp(event) {
    event.preventDefault();
    if (!state.mfaToken) { fail("Log in with your password first."); return; }
    const code = new FormData(event.target).get("totp");
    const res = await call("POST", "/login/mfa", { mfa_token: state.mfaToken, totp: code });
    await finishMfa(res, "Logged in with your password and authenticator app.");
  }

  async function finishMfa(res, message) {
    if (res.status === 200) { await signedIn(res.body, message); return; }
    // The mfa_token is single-use: any failed attempt means starting over.
    state.mfaToken = null;
    $("mfa").hidden = true;
    $("login-password").value = "";
    $("login-password").focus();
    fail(`${problemText(res)} Please log in again.`);
  }

  async function passkeyLogin() {
    say("Waiting for your passkey…");
    const opts = await call("POST", "/webauthn/login/options", {});
    if (opts.status !== 200) { fail(problemText(opts)); return null; }
    let credential;
    try {
      credential = await getAssertion(opts.body);
    } catch (err) {
      fail(describeWebAuthnError(err));
      return null;
    }
    const res = await call("POST", "/webauthn/login/verify", { credential });
    if (res.status !== 200) { fail(problemText(res)); return null; }
    return res.body;
  }

  async function passwordless() {
    const tokens = await passkeyLogin();
    if (tokens) await signedIn(tokens, "Logged in with your passkey.");
  }

  // --- passwords: change (signed in), forgot and reset (signed out) ---

  async function changePassword(event) {
    event.preventDefault();
    const form = event.target;
    const body = Object.fromEntries(new FormData(form).entries());
    say("Changing your password…");
    const res = await call("POST", "/password/change", body, { auth: true });
    if (res.status !== 204) {
      fail(problemText(res));
      showFieldErrors(form, res);
      if (res.status === 401) $("change-current").focus();
      return;
    }
    clearFieldErrors(form);
    form.reset();
    say("Password changed. Your other sessions are signed out.");
  }

  async function forgotPassword(event) {
    event.preventDefault();
    const email = new FormData(event.target).get("email");
    const res = await call("POST", "/password/forgot", { email });
    if (res.status !== 202) { fail(problemText(res)); return; }
    event.target.reset();
    say(res.body.detail);
  }

  // The token from the mailed link (`/?reset_token=...`): kept in this
  // closure only, and taken out of the address bar and history at once, so
  // it is not bookmarked, synced or shown to someone looking at the screen.
  let resetToken = null;

  function takeResetToken() {
    const params = new URLSearchParams(window.location.search);
    const token = params.get("reset_token");
    if (!token) return;
    params.delete("reset_token");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? `?${rest}` : "") + window.location.hash);
    resetToken = token;
    $("reset").hidden = false;
    $("reset-password").focus();
    say("Choose a new password for your account.");
  }

  async function resetPassword(event) {
    event.preventDefault();
    const form = event.target;
    if (!resetToken) { fail("Open the link from the mail again."); return; }
    const newPassword = new FormData(form).get("new_password");
    const res = await call("POST", "/password/reset", { token: resetToken, new_password: newPassword });
    if (res.status === 422) { fail(problemText(res)); showFieldErrors(form, res); return; }
    resetToken = null;
    form.reset();
    $("reset").hidden = true;
    if (res.status !== 204) {
      fail(problemText(res));
      $("forgot-email").focus();
      return;
    }
    clearFieldErrors(form);
    $("login-email").focus();
    say("Password changed. Log in with your new password.");
  }

  // --- email: verify from the mailed link (signed out), resend and change (signed in) ---

  // The token from the mailed link (`/?verify_token=...`), handled as the
  // reset token is: out of the address bar at once. It is spent only when
  // the user presses the button, not on load: a mail scanner that opens
  // links (and runs their script) must not confirm an address or move an
  // account on its own.
  let verifyToken = null;

  function takeVerifyToken() {
    const params = new URLSearchParams(window.location.search);
    const token = params.get("verify_token");
    if (!token) return;
    params.delete("verify_token");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? `?${rest}` : "") + window.location.hash);
    verifyToken = token;
    $("verify").hidden = false;
    $("verify-confirm").focus();
    say("Confirm your email address.");
  }

  async function confirmEmail() {
    if (!verifyToken) { fail("Open the link from the mail again."); return; }
    const res = await call("POST", "/email/verify", { token: verifyToken });
    verifyToken = null;
    $("verify").hidden = true;
    if (res.status !== 204) { fail(problemText(res)); return; }
    $("login-email").focus();
    say("Email address confirmed. Log in with it.");
  }

  async function resendVerification() {
    const res = await call("POST", "/email/verify/resend", undefined, { auth: true });
    if (res.status !== 202) { fail(problemText(res)); return; }
    say(res.body.detail);
  }

  async function changeEmail(event) {
    event.preventDefault();
    const form = event.target;
    const body = Object.fromEntries(new FormData(form).entries());
    const res = await call("POST", "/email/change", body, { auth: true });
    if (res.status !== 202) {
      fail(problemText(res));
      showFieldErrors(form, res);
      if (res.status === 401) $("change-email-password").focus();
      return;
    }
    clearFieldErrors(form);
    form.reset();
    say(res.body.detail);
  }

  async function addPasskey(event) {
    event.preventDefault();
    await enrolPasskey(event.target, new FormData(event.target).get("label") || undefined);
  }

  // `password`: only when the server asked for it (the first passkey after a
  // login that is not recent); it goes to the options request and nowhere else.
  async function enrolPasskey(form, label, password) {
    const opts = await call("POST", "/webauthn/register/options", password ? { password } : {}, { auth: true });
    if (needsStepUp(opts, () => enrolPasskey(form, label))) return;
    if (needsPassword(opts, (again) => enrolPasskey(form, label, again))) return;
    if (opts.status !== 200) { closeReauth(); fail(problemText(opts)); return; }
    closeReauth();
    say("Follow your browser's prompt to create the passkey…");
    let credential;
    try {
      credential = await runCeremony("create", creationOptions(opts.body));
    } catch (err) {
      fail(describeWebAuthnError(err));
      return;
    }
    const res = await call("POST", "/webauthn/register/verify", { credential, label }, { auth: true });
    if (res.status !== 201) { fail(problemText(res)); return; }
    form.reset();
    await loadPasskeys();
    if (res.body.recovery_codes) showCodes(res.body.recovery_codes);
    say(`Passkey "${res.body.credential.label}" added.`
      + (res.body.recovery_codes ? " Two-step login is on; save your recovery codes." : ""));
  }

  async function removePasskey(id, label, confirmLast) {
    const query = confirmLast ? "?confirm_last=true" : "";
    const res = await call("DELETE", `/webauthn/credentials/${encodeURIComponent(id)}${query}`, undefined, { auth: true });
    if (needsStepUp(res, () => removePasskey(id, label, confirmLast))) return;
    if (res.status === 409 && isProblem(res, "last-passkey")) {
      pendingRetry = () => removePasskey(id, label, true);
      $("confirm-last").hidden = false;
      $("confirm-last-yes").focus();
      say("Confirm removing your last passkey.");
      return;
    }
    if (res.status !== 204) { fail(problemText(res)); return; }
    $("confirm-last").hidden = true;
    await loadPasskeys();
    if (confirmLast) { $("codes-panel").hidden = true; $("codes-list").replaceChildren(); }
    say(`Passkey "${label}" removed.` + (confirmLast ? " Two-step login is off." : ""));
  }

  async function newCodes() {
    const res = await call("POST", "/webauthn/recovery-codes", {}, { auth: true });
    if (needsStepUp(res, newCodes)) return;
    if (res.status !== 201) { fail(problemText(res)); return; }
    showCodes(res.body.recovery_codes);
    say("New recovery codes generated; the old ones no longer work.");
  }

  // --- the authenticator app (TOTP, RFC 6238) ---

  async function loadTotp() {
    const res = await call("GET", "/totp", undefined, { auth: true });
    if (res.status !== 200) { fail(problemText(res)); return; }
    const on = res.body.enabled;
    $("totp-state").textContent = on
      ? "On: logging in asks for a code from your authenticator app."
      : "A code from an app (TOTP) as your second factor.";
    $("totp-start").hidden = on;
    $("totp-remove").hidden = !on;
  }

  function closeTotpEnrolment() {
    $("totp-enrol").hidden = true;
    $("totp-secret").textContent = "";
    $("totp-qr").removeAttribute("src");
    $("totp-confirm-form").reset();
  }

  // `password`: only when the server asked for it (the first second factor
  // after a login that is not recent), as for the first passkey.
  async function startTotp(password) {
    const res = await call("POST", "/totp/enrol", password ? { password } : {}, { auth: true });
    if (needsStepUp(res, () => startTotp())) return;
    if (needsPassword(res, (again) => startTotp(again), "second factor")) return;
    closeReauth();
    if (res.status !== 200) { fail(problemText(res)); return; }
    // A data: URI of an SVG the server made: an <img> never runs script.
    $("totp-qr").src = res.body.qr_svg;
    $("totp-secret").textContent = res.body.secret;
    $("totp-enrol").hidden = false;
    $("totp-start").hidden = true;
    $("totp-confirm-code").focus();
    say("Scan the QR code or type the key into your authenticator app, then enter its code.");
  }

  async function confirmTotp(event) {
    event.preventDefault();
    const code = $("totp-confirm-code").value;
    const res = await call("POST", "/totp/confirm", { code }, { auth: true });
    if (res.status !== 201) { fail(problemText(res)); $("totp-confirm-code").select(); return; }
    closeTotpEnrolment();
    await loadTotp();
    if (res.body.recovery_codes) showCodes(res.body.recovery_codes);
    say("Authenticator app added."
      + (res.body.recovery_codes ? " Two-step login is on; save your recovery codes." : ""));
  }

  async function removeTotp() {
    const res = await call("DELETE", "/totp", undefined, { auth: true });
    if (needsStepUp(res, removeTotp)) return;
    if (res.status !== 204) { fail(problemText(res)); return; }
    await loadTotp();
    say("Authenticator app removed.");
  }

  // --- step-up: a recent second factor for sensitive actions (RFC 9470 idea) ---

  function needsStepUp(res, retry) {
    if (res.status !== 403 || !isProblem(res, "step-up-required")) return false;
    pendingRetry = retry;
    $("step-up").hidden = false;
    $("step-up-go").focus();
    say("Confirm it is you with a passkey to continue.");
    return true;
  }

  // --- the first passkey after a login that is not recent: the password again ---

  let pendingReauth = null; // (password) => the enrolment to repeat with it

  function needsPassword(res, retry, what = "passkey") {
    const asked = res.status === 403 && isProblem(res, "reauthentication-required");
    const wrong = res.status === 403 && isProblem(res, "reauthentication-failed");
    if (!asked && !wrong) return false;
    pendingReauth = retry;
    $("reauth").hidden = false;
    $("reauth-password").value = "";
    $("reauth-password").focus();
    if (wrong) fail(`${problemText(res)} Try again.`);
    else say(`Confirm your password to add your first ${what}.`);
    return true;
  }

  async function reauth(event) {
    event.preventDefault();
    const password = $("reauth-password").value;
    $("reauth-password").value = "";
    const retry = pendingReauth;
    pendingReauth = null;
    if (retry) await retry(password);
  }

  function closeReauth() {
    pendingReauth = null;
    $("reauth").hidden = true;
    $("reauth-password").value = "";
  }

  async function stepUp() {
    const tokens = await passkeyLogin();
    if (!tokens) return;
    if (tokens.user_id !== state.userId) {
      await endSession(tokens.access_token);
      fail("That passkey belongs to another account.");
      return;
    }
    // The fresh session replaces the old one, which is ended everywhere.
    await endSession(state.access);
    state.access = tokens.access_token;
    state.refresh = tokens.refresh_token;
    $("user-amr").textContent = (claimsOf(state.access).amr || []).join(", ");
    $("step-up").hidden = true;
    const retry = pendingRetry;
    pendingRetry = null;
    if (retry) await retry();
  }

  async function endSession(accessToken) {
    await fetch("/logout", {
      method: "POST", headers: { Authorization: `Bearer ${accessToken}` }, credentials: "omit", cache: "no-store",
    });
  }

  async function logout() {
    await call("POST", "/logout", undefined, { auth: true });
    signedOut("Logged out.");
  }

  // --- signing in to another application ---
  // GET /authorize sends the browser here with `?authorize=<id>`. The login
  // below is the usual one (password, passkey, second factor); once it
  // succeeds, the page hands the application its code instead of showing
  // the account, and ends its own session: the application gets its own.

  let authorizeRequest = null;

  async function takeAuthorizeRequest() {
    const params = new URLSearchParams(window.location.search);
    const id = params.get("authorize");
    if (!id) return;
    params.delete("authorize");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? `?${rest}` : "") + window.location.hash);
    const res = await call("GET", `/authorize/requests/${encodeURIComponent(id)}`);
    if (res.status !== 200) { fail("This sign-in request has expired. Start again from the application."); return; }
    authorizeRequest = id;
    $("authorize-client").textContent = res.body.client_name;
    $("authorize-scope").textContent = res.body.scope;
    $("authorize-panel").hidden = false;
    $("authorize-heading").focus();
  }

  function oauthErrorText(res) {
    return (res.body && res.body.error_description) || problemText(res);
  }

  async function continueToApplication(tokens) {
    const id = authorizeRequest;
    authorizeRequest = null;
    state.access = tokens.access_token;
    state.refresh = tokens.refresh_token;
    say("Signed in. Returning to the application…");
    const res = await call("POST", "/authorize/continue", { request_id: id }, { auth: true });
    await endSession(state.access);
    Object.assign(state, { access: null, refresh: null, userId: null, mfaToken: null, mfaOptions: null });
    $("mfa").hidden = true;
    $("authorize-panel").hidden = true;
    if (res.status !== 200) { fail(oauthErrorText(res)); return; }
    window.location.assign(res.body.redirect_to);
  }

  async function declineApplication() {
    const id = authorizeRequest;
    authorizeRequest = null;
    $("authorize-panel").hidden = true;
    if (!id) return;
    const res = await call("POST", "/authorize/deny", { request_id: id });
    if (res.status !== 200) { fail(oauthErrorText(res)); return; }
    window.location.assign(res.body.redirect_to);
  }

  // --- wiring ---

  function guard(fn) {
    return async (...args) => {
      try { await fn(...args); } catch (err) { fail("Something went wrong; please try again."); console.error(err); }
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!window.PublicKeyCredential) {
      fail("This browser does not support passkeys; password login still works.");
    }
    $("cancel-ceremony").addEventListener("click", cancelCeremony);
    $("register-form").addEventListener("submit", guard(register));
    $("login-form").addEventListener("submit", guard(login));
    $("forgot-form").addEventListener("submit", guard(forgotPassword));
    $("reset-form").addEventListener("submit", guard(resetPassword));
    $("change-password-form").addEventListener("submit", guard(changePassword));
    $("profile-form").addEventListener("submit", guard(saveProfile));
    $("export").addEventListener("click", guard(exportData));
    $("delete-form").addEventListener("submit", guard(deleteAccount));
    $("verify-confirm").addEventListener("click", guard(confirmEmail));
    $("resend-verification").addEventListener("click", guard(resendVerification));
    $("change-email-form").addEventListener("submit", guard(changeEmail));
    $("passkey-login").addEventListener("click", guard(passwordless));
    $("mfa-passkey").addEventListener("click", guard(mfaPasskey));
    $("recovery-form").addEventListener("submit", guard(mfaRecovery));
    $("totp-form").addEventListener("submit", guard(mfaTotp));
    $("totp-start").addEventListener("click", guard(() => startTotp()));
    $("totp-confirm-form").addEventListener("submit", guard(confirmTotp));
    $("totp-remove").addEventListener("click", guard(removeTotp));
    $("mfa-cancel").addEventListener("click", () => signedOut("Start again when you are ready."));
    $("add-passkey-form").addEventListener("submit", guard(addPasskey));
    $("new-codes").addEventListener("click", guard(newCodes));
    $("logout").addEventListener("click", guard(logout));
    $("step-up-go").addEventListener("click", guard(stepUp));
    $("reauth").addEventListener("submit", guard(reauth));
    $("reauth-cancel").addEventListener("click", () => { closeReauth(); say("Cancelled."); });
    $("step-up-cancel").addEventListener("click", () => { pendingRetry = null; $("step-up").hidden = true; say("Cancelled."); });
    $("confirm-last-yes").addEventListener("click", guard(async () => {
      const retry = pendingRetry;
      pendingRetry = null;
      if (retry) await retry();
    }));
    $("confirm-last-no").addEventListener("click", () => { pendingRetry = null; $("confirm-last").hidden = true; say("Kept your passkey."); });
    takeResetToken();
    takeVerifyToken();
    $("authorize-cancel").addEventListener("click", guard(declineApplication));
    guard(takeAuthorizeRequest)();
  });
})();
