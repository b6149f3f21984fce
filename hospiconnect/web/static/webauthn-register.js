/*
 * Registration of a security key on « Mes moyens d'identification » (/mes-moyens/cle).
 *
 * 1. POST {options URL} → {challengeId, publicKey} (JSON form of PublicKeyCredentialCreationOptions);
 * 2. navigator.credentials.create() with the options parsed by PublicKeyCredential.parseCreationOptionsFromJSON;
 * 3. POST {register URL} ← {challengeId, label, credential: credential.toJSON()}.
 *
 * Loaded as a file (the CSP allows no inline script). The CSRF token travels in the X-CSRFToken header.
 * Browsers without the WebAuthn Level 3 JSON helpers get the same conversion done here.
 */
(function () {
  "use strict";

  var form = document.getElementById("mie-key-form");
  if (!form) {
    return;
  }
  var labelInput = document.getElementById("f-label");
  var labelField = document.getElementById("f-label-field");
  var labelError = document.getElementById("f-label-error");
  var statusBox = document.getElementById("mie-key-status");
  var errorBox = document.getElementById("mie-key-error");
  var submit = document.getElementById("mie-key-submit");

  var MESSAGES = {
    unsupported: "Ce navigateur ne permet pas d'utiliser une clé de sécurité. Utilisez un navigateur récent " +
      "(Edge, Firefox, Chrome ou Safari à jour).",
    waiting: "Suivez les indications de votre navigateur : branchez ou approchez votre clé, puis " +
      "déverrouillez-la (code PIN ou empreinte).",
    saving: "Enregistrement de la clé…",
    NotAllowedError: "L'enregistrement n'a pas abouti : il a été annulé, le délai est dépassé, ou la clé n'a " +
      "pas pu vérifier que c'est bien vous (code PIN ou empreinte). Recommencez.",
    InvalidStateError: "Cette clé est déjà enregistrée sur votre compte.",
    NotSupportedError: "Cette clé ne convient pas : elle doit pouvoir vérifier votre identité par un code PIN " +
      "ou une empreinte.",
    SecurityError: "Le navigateur a refusé l'opération : l'adresse de cette page ne correspond pas au site " +
      "HospiConnect attendu.",
    AbortError: "L'enregistrement a été interrompu. Recommencez.",
    network: "Le serveur n'a pas pu être joint. Vérifiez votre connexion et recommencez.",
    generic: "L'enregistrement de la clé a échoué. Recommencez ; si le problème persiste, contactez le " +
      "support informatique.",
    emptyLabel: "Donnez un nom à cette clé."
  };

  // --- base64url helpers for browsers without parseCreationOptionsFromJSON / toJSON ------------------------
  function fromB64url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function parseCreationOptions(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    var options = Object.assign({}, json);
    options.challenge = fromB64url(json.challenge);
    options.user = Object.assign({}, json.user, {id: fromB64url(json.user.id)});
    options.excludeCredentials = (json.excludeCredentials || []).map(function (item) {
      return Object.assign({}, item, {id: fromB64url(item.id)});
    });
    return options;
  }

  function credentialToJSON(credential) {
    if (typeof credential.toJSON === "function") {
      return credential.toJSON();
    }
    var response = credential.response;
    return {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: {
        clientDataJSON: toB64url(response.clientDataJSON),
        attestationObject: toB64url(response.attestationObject),
        transports: typeof response.getTransports === "function" ? response.getTransports() : []
      }
    };
  }

  // --- page state ---------------------------------------------------------------------------------------
  function setStatus(text) {
    statusBox.textContent = text || "";
  }

  function showError(text) {
    setStatus("");
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function showLabelError(text) {
    setStatus("");
    labelError.textContent = text;
    labelError.hidden = false;
    labelField.classList.add("field-invalid");
    labelInput.setAttribute("aria-invalid", "true");
    labelInput.setAttribute("aria-describedby", "f-label-hint f-label-error");
    labelInput.focus();
  }

  function clearErrors() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    labelError.hidden = true;
    labelError.textContent = "";
    labelField.classList.remove("field-invalid");
    labelInput.removeAttribute("aria-invalid");
    labelInput.setAttribute("aria-describedby", "f-label-hint");
  }

  function postJSON(url, payload) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": form.dataset.csrf
      },
      body: JSON.stringify(payload)
    }).then(function (response) {
      return response.json().then(
        function (body) { return {ok: response.ok, body: body || {}}; },
        function () { return {ok: false, body: {}}; }
      );
    }, function () {
      return {ok: false, body: {message: MESSAGES.network}};
    });
  }

  function refuse(result) {
    if (result.body.field === "label") {
      showLabelError(result.body.message || MESSAGES.emptyLabel);
    } else {
      showError(result.body.message || MESSAGES.generic);
    }
  }

  async function register(label) {
    var begin = await postJSON(form.dataset.optionsUrl, {});
    if (!begin.ok) {
      refuse(begin);
      return;
    }
    setStatus(MESSAGES.waiting);
    var credential;
    try {
      credential = await navigator.credentials.create({publicKey: parseCreationOptions(begin.body.publicKey)});
    } catch (err) {
      showError(MESSAGES[err && err.name] || MESSAGES.generic);
      return;
    }
    if (!credential) {
      showError(MESSAGES.generic);
      return;
    }
    setStatus(MESSAGES.saving);
    var done = await postJSON(form.dataset.registerUrl, {
      challengeId: begin.body.challengeId,
      label: label,
      credential: credentialToJSON(credential)
    });
    if (!done.ok) {
      refuse(done);
      return;
    }
    window.location.assign(done.body.redirect);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    if (!window.PublicKeyCredential || !navigator.credentials || !window.fetch) {
      showError(MESSAGES.unsupported);
      return;
    }
    var label = labelInput.value.trim();
    if (!label) {
      showLabelError(MESSAGES.emptyLabel);
      return;
    }
    submit.disabled = true;
    register(label).catch(function () {
      showError(MESSAGES.generic);
    }).finally(function () {
      submit.disabled = false;
    });
  });
}());
