// Feature-phone simulator: drives POST /ussd exactly like the Africa's Talking gateway.
// One dial = one sessionId; `text` = every input of the dial so far joined by "*".
(function () {
  "use strict";
  var root = document.getElementById("sim");
  var USSD_URL = root.dataset.ussdUrl;
  var EVENTS_URL = root.dataset.eventsUrl;
  var SERVICE_CODE = root.dataset.serviceCode;
  var NETWORK_CODE = "99999"; // the gateway's sandbox network

  var el = function (id) { return document.getElementById(id); };
  var phoneInput = el("phone"), screen = el("screen"), entry = el("entry");
  var statusEl = el("status"), chars = el("chars");

  // The dial in progress, or null.
  var dial = null;
  var busy = false;

  function newSessionId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return "ATUid_" + Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function form(fields) {
    var body = new URLSearchParams();
    Object.keys(fields).forEach(function (k) { body.append(k, fields[k]); });
    return body;
  }

  function setStatus(text) { statusEl.textContent = text; }

  // `full` is the whole answer, prefix included: what the 160-character limit counts.
  function show(text, full) {
    screen.textContent = text;
    chars.textContent = String(full === undefined ? 0 : full.length);
  }

  function hopFields() {
    return {
      sessionId: dial.sessionId,
      serviceCode: SERVICE_CODE,
      phoneNumber: dial.phone,
      networkCode: NETWORK_CODE,
      text: dial.inputs.join("*")
    };
  }

  function endFields(status, error) {
    var now = new Date();
    return {
      date: now.toISOString().slice(0, 19).replace("T", " "),
      sessionId: dial.sessionId,
      serviceCode: SERVICE_CODE,
      networkCode: NETWORK_CODE,
      phoneNumber: dial.phone,
      status: status,
      cost: "0.0",
      durationInMillis: String(now.getTime() - dial.started),
      hopsCount: String(dial.hops),
      input: dial.inputs.join("*"),
      lastAppResponse: dial.lastResponse,
      errorMessage: error || ""
    };
  }

  function finish(status, error) {
    if (!dial) { return; }
    var fields = endFields(status, error);
    dial = null;
    setStatus(status === "Success" ? "ended" : status.toLowerCase());
    fetch(EVENTS_URL, { method: "POST", body: form(fields) }).catch(function () {});
    refreshInbox();
  }

  function hop() {
    busy = true;
    setStatus("waiting…");
    return fetch(USSD_URL, { method: "POST", body: form(hopFields()) })
      .then(function (resp) {
        var type = resp.headers.get("Content-Type") || "";
        return resp.text().then(function (body) {
          if (resp.status !== 200 || type.indexOf("text/plain") !== 0) {
            throw new Error("HTTP " + resp.status + " " + type);
          }
          return body;
        });
      })
      .then(function (body) {
        dial.hops += 1;
        dial.lastResponse = body;
        if (body.indexOf("CON ") === 0) {
          show(body.slice(4), body);
          setStatus("in call");
          screen.dataset.kind = "CON";
          entry.focus();
        } else if (body.indexOf("END ") === 0) {
          show(body.slice(4), body);
          screen.dataset.kind = "END";
          finish("Success");
        } else {
          throw new Error("answer is not CON/END");
        }
      })
      .catch(function (err) {
        show("Connection problem or invalid MMI code.\n(" + err.message + ")");
        screen.dataset.kind = "ERROR";
        finish("Failed", err.message);
      })
      .then(function () { busy = false; refreshInbox(); });
  }

  function call() {
    if (busy) { return; }
    if (dial) { return send(); }
    var phone = phoneInput.value.trim();
    if (!phone) { show("Enter a phone number first."); return; }
    dial = { sessionId: newSessionId(), phone: phone, inputs: [], hops: 0,
             started: Date.now(), lastResponse: "" };
    entry.value = "";
    show("Dialling " + SERVICE_CODE + " …");
    hop();
  }

  function send() {
    if (busy) { return; }
    if (!dial) { return call(); }
    dial.inputs.push(entry.value);
    entry.value = "";
    hop();
  }

  function end() {
    if (dial) {
      show("Call ended.");
      screen.dataset.kind = "HANGUP";
      finish("Incomplete");
    }
    entry.value = "";
  }

  function refreshInbox() {
    var phone = phoneInput.value.trim();
    el("inbox-phone").textContent = phone ? "for " + phone : "";
    if (!phone) { return; }
    fetch("/simulator/inbox?phone=" + encodeURIComponent(phone))
      .then(function (resp) { return resp.json(); })
      .then(function (data) {
        var list = el("inbox");
        list.textContent = "";
        (data.messages || []).forEach(function (m) {
          var li = document.createElement("li");
          li.className = "sms";
          li.dataset.id = String(m.id);
          var when = document.createElement("span");
          when.className = "when";
          when.textContent = m.at + " · " +
            (m.source === "gateway" ? "received by the SMS gateway: " : "queued: ") + m.status;
          var body = document.createElement("span");
          body.className = "body";
          body.textContent = m.body;
          li.appendChild(when);
          li.appendChild(body);
          list.appendChild(li);
        });
        el("inbox-empty").hidden = (data.messages || []).length > 0;
        if (data.error) {
          el("inbox-empty").hidden = false;
          el("inbox-empty").textContent = "Not a Kenyan mobile number.";
        } else {
          el("inbox-empty").textContent = "No messages yet.";
        }
        el("inbox-note").textContent = data.gateway_error || "";
      })
      .catch(function () {});
  }

  Array.prototype.forEach.call(document.querySelectorAll(".key"), function (btn) {
    btn.addEventListener("click", function () { entry.value += btn.dataset.key; });
  });
  el("call").addEventListener("click", call);
  el("send").addEventListener("click", send);
  el("end").addEventListener("click", end);
  el("del").addEventListener("click", function () { entry.value = entry.value.slice(0, -1); });
  entry.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { ev.preventDefault(); send(); }
  });
  phoneInput.addEventListener("change", function () { end(); refreshInbox(); });
  window.addEventListener("pagehide", function () {
    if (dial && navigator.sendBeacon) {
      navigator.sendBeacon(EVENTS_URL, form(endFields("Incomplete")));
    }
  });
  refreshInbox();
  window.setInterval(refreshInbox, 5000);
})();
