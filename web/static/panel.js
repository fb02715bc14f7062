// The live panel: every live call, every power session and every volunteer's
// status, from the Server-Sent Events stream (a snapshot first, then changes).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const PB = window.PB;
  const S = PB.strings;
  const callsBody = PB.byId("calls");
  const volunteersBody = PB.byId("volunteers");
  const status = PB.byId("live-status");
  const count = PB.byId("call-count");
  const rowTemplate = PB.byId("call-row");
  const confirmDialog = PB.byId("hangup-confirm");
  const sessionsBody = PB.byId("sessions");
  const sessionCount = PB.byId("session-count");
  const sessionStrings = JSON.parse(PB.byId("session-strings").textContent || "{}");
  // Caller IDs formatted by the server (display_number), keyed by "+digits".
  const callerIds = JSON.parse(PB.byId("caller-ids").textContent || "{}");
  const SUPERVISABLE = new Set(["volunteer_answered", "ringing_contact", "talking"]);
  const calls = new Map();
  const statuses = new Map();
  const sessions = new Map(); // power sessions, by volunteer id
  let roster = [];
  let offset = 0; // server clock minus ours, in ms

  const now = () => Date.now() + offset;

  function setStatus(text, ok) {
    status.textContent = text;
    status.classList.toggle("ok", !!ok);
    status.classList.toggle("warn", !ok);
  }

  function apply(item) {
    if (item.kind === "call") {
      if (item.present) calls.set(item.key, item.payload); else calls.delete(item.key);
    } else if (item.kind === "volunteer") {
      statuses.set(String(item.payload.volunteer_id), item.payload);
    } else if (item.kind === "session") {
      // An ended session goes, as an ended call does.
      if (item.present) sessions.set(item.key, item.payload); else sessions.delete(item.key);
    }
  }

  function callerIdText(number) {
    if (!number) return "—";
    const key = (number.trim().startsWith("+") ? "+" : "") + number.replace(/\D/g, "");
    return callerIds[key] || number;
  }

  function durationOf(call) {
    const since = call.state === "talking" && call.contact_answered_at ? call.contact_answered_at : call.requested_at;
    return since ? PB.clock((now() - new Date(since).getTime()) / 1000) : "";
  }

  function renderCalls() {
    const ids = new Set(calls.keys());
    callsBody.querySelectorAll("tr[data-call]").forEach((row) => { if (!ids.has(row.dataset.call)) row.remove(); });
    const empty = callsBody.querySelector("tr.empty");
    if (empty) empty.hidden = calls.size > 0;
    count.textContent = String(calls.size);
    for (const [id, call] of calls) {
      let row = callsBody.querySelector('tr[data-call="' + CSS.escape(id) + '"]');
      if (!row) {
        row = rowTemplate.content.firstElementChild.cloneNode(true);
        row.dataset.call = id;
        row.querySelector("[data-hangup]").addEventListener("click", () => confirmHangUp(id, row));
        row.querySelectorAll("[data-supervise]").forEach((button) => {
          button.addEventListener("click", () => supervise(id, button));
        });
        callsBody.appendChild(row);
      }
      const set = (field, text) => { row.querySelector('[data-f="' + field + '"]').textContent = text; };
      set("volunteer", call.volunteer_name || "#" + call.volunteer_id);
      set("contact", call.contact_name || "#" + call.contact_id);
      set("campaign", call.campaign_title || "—");
      set("state", S.states[call.state] || call.state);
      set("duration", durationOf(call));
      set("caller", callerIdText(call.caller_id));
      row.dataset.state = call.state;
      // ChanSpy needs the volunteer's answered leg: before that there is
      // nothing to hear but ringing, and the server would refuse.
      const joinable = SUPERVISABLE.has(call.state);
      row.querySelectorAll("[data-supervise]").forEach((button) => {
        if (!button.dataset.busy) button.disabled = !joinable;
      });
    }
  }

  const secondsSince = (iso) => (iso ? Math.max(0, (now() - new Date(iso).getTime()) / 1000) : 0);

  // The stored wait covers the waits the session has left; the one going on
  // is counted here, so the figure ticks while the volunteer waits.
  function waitedOf(session) {
    const going = session.state === "waiting" ? secondsSince(session.since) : 0;
    return PB.clock((session.waited_seconds || 0) + going);
  }

  function sessionStateText(session) {
    if (session.state === "paused" && session.pause_reason) {
      return PB.fill(sessionStrings.paused_because, { reason: session.pause_reason });
    }
    return (sessionStrings.states || {})[session.state] || session.state;
  }

  // In the organizer's language from the session's codes; the English note
  // for a reason this page does not know.
  function waitingText(session) {
    const template = (sessionStrings.waiting || {})[session.waiting_reason];
    if (!template) return session.waiting_note || "";
    if (!session.waiting_until) return template.plain;
    return PB.fill(template.at, { when: PB.formatTime(session.waiting_until) });
  }

  function renderSessions() {
    sessionsBody.querySelectorAll("tr[data-session]").forEach((row) => {
      if (!sessions.has(row.dataset.session)) row.remove();
    });
    const empty = sessionsBody.querySelector("tr.empty");
    if (empty) empty.hidden = sessions.size > 0;
    sessionCount.textContent = String(sessions.size);
    for (const [key, session] of sessions) {
      let row = sessionsBody.querySelector('tr[data-session="' + CSS.escape(key) + '"]');
      if (!row) {
        row = document.createElement("tr");
        row.dataset.session = key;
        for (const field of ["volunteer", "campaign", "state", "for", "waited", "calls"]) {
          const cell = document.createElement("td");
          cell.dataset.f = field;
          if (field === "for" || field === "waited") cell.className = "timer";
          if (field === "calls") cell.className = "num";
          row.appendChild(cell);
        }
        sessionsBody.appendChild(row);
      }
      const set = (field, text) => { row.querySelector('[data-f="' + field + '"]').textContent = text; };
      set("volunteer", session.volunteer_name || "#" + session.volunteer_id);
      set("campaign", session.campaign_title || "—");
      set("state", sessionStateText(session));
      // Why nobody is being dialed (no contact callable right now), on hover.
      row.querySelector('[data-f="state"]').title = session.state === "waiting" ? waitingText(session) : "";
      set("for", PB.clock(secondsSince(session.since)));
      set("waited", waitedOf(session));
      set("calls", String(session.calls));
      row.dataset.state = session.state;
    }
  }

  function tickSessions() {
    for (const row of sessionsBody.querySelectorAll("tr[data-session]")) {
      const session = sessions.get(row.dataset.session);
      if (!session) continue;
      row.querySelector('[data-f="for"]').textContent = PB.clock(secondsSince(session.since));
      row.querySelector('[data-f="waited"]').textContent = waitedOf(session);
    }
  }

  function renderVolunteers() {
    volunteersBody.textContent = "";
    for (const person of roster) {
      const live = statuses.get(String(person.volunteer_id));
      let key = live ? live.status : "idle";
      if (!live && !person.online) key = "offline";
      const row = document.createElement("tr");
      row.dataset.volunteer = person.volunteer_id;
      row.dataset.status = key;
      for (const text of [person.volunteer_name, person.extension || "—", S.volunteer_status[key] || key,
        live && live.since ? PB.formatTime(live.since) : "—"]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      volunteersBody.appendChild(row);
    }
  }

  // Hanging up cuts off a volunteer mid-sentence: ask first, naming who.
  function confirmHangUp(id, row) {
    const call = calls.get(id);
    if (!call) return;
    confirmDialog.querySelector("[data-hangup-volunteer]").textContent =
      call.volunteer_name || "#" + call.volunteer_id;
    confirmDialog.querySelector("[data-hangup-contact]").textContent =
      call.contact_name || "#" + call.contact_id;
    confirmDialog.returnValue = "";
    confirmDialog.onclose = () => {
      confirmDialog.onclose = null;
      if (confirmDialog.returnValue === "hangup" && calls.has(id)) hangUp(id, row);
    };
    confirmDialog.showModal();
  }

  async function hangUp(id, row) {
    const button = row.querySelector("[data-hangup]");
    button.disabled = true;
    button.textContent = S.hanging_up;
    try {
      await PB.api("POST", "/api/calls/" + encodeURIComponent(id) + "/hangup");
    } catch (error) {
      setStatus(error.message, false);
      button.disabled = false;
      button.textContent = S.hang_up;
    }
  }

  // The organizer's own phone is rung into the call; the channel it spies
  // on is the server's to know, only the mode is sent.
  async function supervise(id, button) {
    button.dataset.busy = "1";
    button.disabled = true;
    try {
      await PB.api("POST", "/api/calls/" + encodeURIComponent(id) + "/supervise",
        { mode: button.dataset.supervise });
      setStatus(S.supervise_ringing[button.dataset.supervise], true);
    } catch (error) {
      setStatus(error.message, false);
    } finally {
      delete button.dataset.busy;
      const call = calls.get(id);
      button.disabled = !call || !SUPERVISABLE.has(call.state);
    }
  }

  function connect() {
    const events = new EventSource("/api/live/events");
    events.addEventListener("open", () => setStatus(S.connected, true));
    events.addEventListener("error", () => setStatus(S.connection_lost, false));
    events.addEventListener("snapshot", (event) => {
      const data = JSON.parse(event.data);
      offset = new Date(data.now).getTime() - Date.now();
      calls.clear();
      statuses.clear();
      sessions.clear();
      data.items.forEach(apply);
      if (data.roster) roster = data.roster;
      renderCalls();
      renderSessions();
      renderVolunteers();
      setStatus(S.connected, true);
    });
    events.addEventListener("change", (event) => {
      const item = JSON.parse(event.data);
      apply(item);
      if (item.kind === "call") renderCalls();
      else if (item.kind === "session") renderSessions();
      else renderVolunteers();
    });
  }

  connect();
  setInterval(() => {
    for (const row of callsBody.querySelectorAll("tr[data-call]")) {
      const call = calls.get(row.dataset.call);
      if (call) row.querySelector('[data-f="duration"]').textContent = durationOf(call);
    }
    tickSessions();
  }, 1000);
});
