// Shared helpers for every page: no user-facing text lives here; it comes
// translated from the page (#strings).
"use strict";
(function () {
  const byId = (id) => document.getElementById(id);
  const readJson = (id, fallback) => {
    const node = byId(id);
    if (!node) return fallback;
    try { return JSON.parse(node.textContent); } catch (e) { return fallback; }
  };
  const strings = readJson("strings", {});
  const csrf = readJson("csrf", "");
  const lang = document.documentElement.lang || "en";

  // The viewer's time zone, so the server formats times for them.
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) {
      const secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = "pb_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax" + secure;
    }
  } catch (e) { /* keep the deployment default */ }

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || strings.error || "error");
      this.status = status;
      this.code = error.code || "http_" + status;
      this.fields = error.fields || {};
      this.body = body;
    }
  }

  async function api(method, url, body) {
    const options = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function randomId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function formatTime(iso, zone) {
    if (!iso) return "";
    const options = { hour: "numeric", minute: "2-digit" };
    if (zone) options.timeZone = zone;
    return new Intl.DateTimeFormat(lang, options).format(new Date(iso));
  }

  function clock(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    return Math.floor(whole / 60) + ":" + String(whole % 60).padStart(2, "0");
  }

  function fill(template, values) {
    return String(template).replace(/%\((\w+)\)s/g, (m, key) => (key in values ? values[key] : m));
  }

  window.PB = { strings, csrf, lang, api, ApiError, randomId, formatTime, clock, fill, byId };

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".js-hide").forEach((node) => { node.hidden = true; });
    document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
      select.addEventListener("change", () => select.form.submit());
    });
    // Tabs: switch without a reload; the links still work without scripts.
    document.querySelectorAll("[role=tablist]").forEach((list) => {
      const tabs = Array.from(list.querySelectorAll("[data-tab]"));
      const show = (name, focus) => {
        tabs.forEach((tab) => {
          const active = tab.dataset.tab === name;
          tab.setAttribute("aria-selected", active ? "true" : "false");
          const panel = document.querySelector('[data-panel="' + tab.dataset.tab + '"]');
          if (panel) panel.hidden = !active;
          if (active && focus) tab.focus();
        });
      };
      tabs.forEach((tab, index) => {
        tab.addEventListener("click", (event) => { event.preventDefault(); show(tab.dataset.tab); });
        tab.addEventListener("keydown", (event) => {
          if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
          const next = tabs[(index + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
          show(next.dataset.tab, true);
        });
      });
    });
    // The contact's local time keeps ticking.
    const contactClock = byId("contact-clock");
    if (contactClock && contactClock.dataset.zone) {
      const tick = () => {
        try { contactClock.textContent = formatTime(new Date().toISOString(), contactClock.dataset.zone); } catch (e) { /* unknown zone */ }
      };
      tick();
      setInterval(tick, 30000);
    }
  });
})();
