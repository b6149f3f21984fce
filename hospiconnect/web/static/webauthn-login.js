/*
 * Security key sign-in on the login pages (/connexion/<id>).
 *
 * Each element [data-webauthn-login] holds a button and its data: the mode ("passwordless" or
 * "second_factor"), the two JSON endpoints, the CSRF token (sent in the X-CSRFToken header) and the
 * French messages (rendered with the page, so translated with it). The server keeps the ceremony state;
 * this script only carries the options to the browser's WebAuthn API and the answer back.
 * No inline script anywhere: the pages' Content-Security-Policy allows scripts from 'self' only.
 */
(function () {
  "use strict";

  function available() {
    return Boolean(window.isSecureContext && window.PublicKeyCredential && navigator.credentials &&
                   typeof navigator.credentials.get === "function");
  }

  // base64url <-> ArrayBuffer, for browsers without parseRequestOptionsFromJSON / toJSON.
  function fromBase64url(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    var options = Object.assign({}, json, { challenge: fromBase64url(json.challenge) });
    if (json.allowCredentials) {
      options.allowCredentials = json.allowCredentials.map(function (item) {
        return Object.assign({}, item, { id: fromBase64url(item.id) });
      });
    }
    return options;
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") {
      return credential.toJSON();
    }
    var response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        authenticatorData: toBase64url(response.authenticatorData),
        signature: toBase64url(response.signature),
        userHandle: response.userHandle ? toBase64url(response.userHandle) : null
      }
    };
  }

  function postJSON(box, url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRFToken": box.dataset.csrfToken },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.message || box.dataset.msgFailed);
          error.fromServer = true;
          throw error;
        }
        return data;
      });
    });
  }

  function setup(box) {
    var ui = box.querySelector("[data-webauthn-ui]");
    var button = box.querySelector("button");
    var progress = box.querySelector("[data-webauthn-progress]");
    var problem = box.querySelector("[data-webauthn-error]");
    if (!ui || !button) { return; }
    if (!available()) {
      box.querySelector("[data-webauthn-unavailable]").hidden = false;
      return;
    }
    ui.hidden = false;

    function say(progressText, errorText) {
      progress.textContent = progressText || "";
      problem.textContent = errorText || "";
    }

    button.addEventListener("click", function () {
      button.disabled = true;
      say(box.dataset.msgProgress, "");
      postJSON(box, box.dataset.optionsUrl, { mode: box.dataset.mode })
        .then(function (data) {
          return navigator.credentials.get({ publicKey: requestOptions(data.publicKey) });
        })
        .then(function (credential) {
          if (!credential) { throw new DOMException("", "NotAllowedError"); }
          return postJSON(box, box.dataset.completeUrl, credentialJSON(credential));
        })
        .then(function (data) {
          // Same origin only: the server answers a path of its own.
          if (typeof data.location === "string" && data.location.charAt(0) === "/" &&
              data.location.charAt(1) !== "/") {
            window.location.assign(data.location);
          } else {
            throw new Error(box.dataset.msgFailed);
          }
        })
        .catch(function (error) {
          var message = box.dataset.msgFailed;
          if (error && error.fromServer) {
            message = error.message;
          } else if (error && (error.name === "NotAllowedError" || error.name === "AbortError")) {
            message = box.dataset.msgCancelled;
          } else if (error instanceof TypeError) {
            message = box.dataset.msgNetwork;
          }
          say("", message);
          button.disabled = false;
          button.focus();
        });
    });
  }

  document.querySelectorAll("[data-webauthn-login]").forEach(setup);
})();
