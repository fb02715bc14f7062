// The power session screen: start a session, follow its state live, pause,
// resume, ask for a last call, leave.  Each contact dialed for the session
// is shown with their record's header and Call tab, loaded from the contact
// page and run by call.js (progress, timer, hang up, then the outcome form),
// so the page never navigates away: a browser phone's line lives in it.
//
// The session's state comes from GET /api/power, fetched again whenever the
// live stream says the session or one of its calls changed.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const PB = window.PB;
  const app = PB.byId("power-app");
  const sessionBox = PB.byId("power-session");
  if (!app || !sessionBox) return;
  const S = readJson("power-strings");
  const G = PB.strings;
  const campaignId = Number(app.dataset.campaign);
  const browserPhone = app.dataset.browserPhone === "true";
  const selfPath = "/campaigns/" + campaignId + "/power";

  const startBox = PB.byId("power-start");
  const startForm = PB.byId("power-start-form");
  const startButton = PB.byId("power-start-button");
  const startError = PB.byId("power-error");
  const statusBox = PB.byId("power-status");
  const heading = PB.byId("power-state-heading");
  const stateLabel = PB.byId("power-state");
  const stateTimer = PB.byId("power-state-timer");
  const callsMade = PB.byId("power-calls");
  const waited = PB.byId("power-waited");
  const note = PB.byId("power-note");
  const pausedNotice = PB.byId("power-paused");
  const lastNotice = PB.byId("power-last-notice");
  const previousLine = PB.byId("power-previous");
  const announcer = PB.byId("power-announce");
  const pauseButton = PB.byId("power-pause");
  const resumeButton = PB.byId("power-resume");
  const lastButton = PB.byId("power-last-call");
  const leaveButton = PB.byId("power-leave");
  const pauseForm = PB.byId("power-pause-form");
  const pauseError = PB.byId("power-pause-error");
  const actionError = PB.byId("power-action-error");
  const contactBox = PB.byId("power-contact");
  const contactError = PB.byId("power-contact-error");
  const brief = PB.byId("power-brief");
  const lastLabel = lastButton.textContent;

  let session = (readJson("power-initial") || {}).session || null;
  // The server's clock minus ours (from the live stream's snapshot): the
  // timers count from the server's times.
  let skew = 0;
  let shownState = session ? session.state : null;
  // The contact panel on screen: which call, and call.js's handle on it.
  let mounted = null;
  let mountSeq = 0;
  // The latest state of the session's calls, from the live stream: what
  // became of a call the session has already moved past.
  const calls = new Map();
  let refreshing = null;
  let again = false;

  function readJson(id) {
    const node = PB.byId(id);
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }

  function live(value) { return !!value && value.state !== "ended"; }

  function since(iso) {
    return iso ? (Date.now() + skew - new Date(iso).getTime()) / 1000 : 0;
  }

  // -- showing the session -----------------------------------------------------------
  function render(next, { quiet } = {}) {
    if (next && next.campaign_id !== campaignId) {
      // Another campaign's session: that page is the one to follow it.
      if (live(next)) { location.reload(); return; }
      next = null;
    }
    const previousState = shownState;
    session = next;
    shownState = next ? next.state : null;
    if (!live(next)) {
      showEnded(next, previousState, quiet);
      return;
    }
    startBox.hidden = true;
    sessionBox.hidden = false;
    statusBox.dataset.state = next.state;
    stateLabel.textContent = next.state_label;
    callsMade.textContent = String(next.calls);
    const leaving = !!next.end_reason;
    note.hidden = true;
    if (leaving) {
      note.textContent = S.ending;
      note.hidden = false;
    } else if (next.state === "connecting") {
      note.textContent = S.connecting_hint;
      note.hidden = false;
    } else if (next.state === "waiting" && (next.waiting_label || next.waiting_note)) {
      note.replaceChildren(document.createTextNode(S.nobody_now + " "));
      const detail = document.createElement("span");
      detail.className = "muted";
      detail.textContent = "(" + (next.waiting_label || next.waiting_note) + ")";
      note.appendChild(detail);
      note.hidden = false;
    }
    pausedNotice.hidden = !next.paused;
    if (next.paused) {
      pausedNotice.textContent = next.pause_reason
        ? PB.fill(S.paused_because, { reason: next.pause_reason })
        : S.paused;
    }
    lastNotice.hidden = !next.last_call || leaving;
    pauseButton.hidden = next.paused;
    resumeButton.hidden = !next.paused;
    if (next.paused) hidePauseForm(false);
    lastButton.disabled = next.last_call || leaving;
    lastButton.textContent = next.last_call ? S.last_call_asked : lastLabel;
    lastButton.setAttribute("aria-pressed", next.last_call ? "true" : "false");
    pauseButton.disabled = leaving;
    resumeButton.disabled = leaving;
    leaveButton.disabled = leaving;
    showContact(next.call);
    // The next contact rings while this call's outcome is being recorded.
    const following = PB.byId("power-next");
    following.hidden = !next.next_call;
    if (next.next_call) {
      following.textContent = PB.fill(S.next_call, {
        name: next.next_call.contact_name || "", state: next.next_call.state_label,
      });
    }
    tick();
    if (!quiet && previousState !== next.state) announce(next);
  }

  function showEnded(ended, previousState, quiet) {
    unmount();
    sessionBox.hidden = true;
    hidePauseForm(false);
    startBox.hidden = false;
    startButton.disabled = false;
    if (!ended) return;
    PB.byId("power-start-title").textContent = S.session_ended;
    const reason = PB.byId("power-ended");
    reason.textContent = ended.end_reason_label || "";
    reason.hidden = !ended.end_reason_label;
    const count = PB.byId("power-ended-calls");
    count.textContent = PB.fill(S.calls_made_n, { num: ended.calls });
    count.hidden = false;
    startButton.textContent = S.start_again;
    // The phone hung up on a conversation: its outcome is still owed.
    const owed = PB.byId("power-owed");
    owed.hidden = !ended.call;
    if (ended.call) PB.byId("power-owed-link").href = ended.call.url;
    if (!quiet && previousState && previousState !== "ended") {
      announcer.textContent = PB.fill(S.announce_ended, { reason: ended.end_reason_label || "" });
      startButton.focus();
    }
  }

  function announce(value) {
    const name = (value.call && value.call.contact_name) || "";
    const text = {
      dialing: name && PB.fill(S.announce_dialing, { name }),
      talking: name && PB.fill(S.announce_talking, { name }),
      wrap_up: name && PB.fill(S.announce_wrap_up, { name }),
    }[value.state];
    announcer.textContent = text || value.state_label;
  }

  // The state's own timer, and the time spent waiting in all (which grows
  // only while waiting for a contact).
  function tick() {
    if (!live(session)) return;
    stateTimer.textContent = PB.clock(since(session.since));
    const extra = session.state === "waiting" ? since(session.since) : 0;
    waited.textContent = PB.clock((session.waited_seconds || 0) + extra);
    const clock = contactBox.querySelector("#contact-clock");
    if (clock && clock.dataset.zone) {
      try { clock.textContent = PB.formatTime(new Date().toISOString(), clock.dataset.zone); } catch (e) { /* unknown zone */ }
    }
  }
  setInterval(tick, 500);

  // -- the contact being called --------------------------------------------------------
  function showContact(call) {
    if (call && (!mounted || mounted.callId !== call.call_id)) {
      mount(call);
    } else if (!call && mounted) {
      unmount();
    }
  }

  async function mount(call) {
    unmount();
    const seq = ++mountSeq;
    mounted = { callId: call.call_id, name: call.contact_name || "", handle: null };
    contactError.hidden = true;
    try {
      const response = await fetch(call.url, {
        credentials: "same-origin", headers: { "Accept": "text/html" },
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      if (seq !== mountSeq) return;
      const head = page.querySelector(".contact-head");
      const tab = page.getElementById("tab-call");
      if (!head || !tab) throw new Error("no call panel");
      prepare(head, tab);
      contactBox.replaceChildren(document.adoptNode(head), document.adoptNode(tab));
      contactBox.hidden = false;
      // The contact's Call tab carries the brief already.
      if (brief) brief.hidden = true;
      if (window.PBSurveySkips) window.PBSurveySkips(contactBox);
      mounted.handle = window.PBCall.mount({
        callId: call.call_id,
        onlyOwed: true,
        onDone: outcomeDone,
      });
      tick();
    } catch (error) {
      if (seq !== mountSeq) return;
      const link = PB.byId("power-contact-link");
      link.href = call.url;
      contactError.hidden = false;
    }
  }

  // The contact page's pieces, made fit for a session: the session dials,
  // so nothing here starts a call; the contact's name is under the page's title.
  function prepare(head, tab) {
    tab.querySelectorAll(
      "#call-button, #call-form .field, #no-caller-id, #power-only, #pending-banner, #pending-skip-form, script"
    ).forEach((node) => node.remove());
    tab.removeAttribute("role");
    tab.removeAttribute("data-panel");
    tab.hidden = false;
    const record = tab.querySelector("#record-outcome");
    if (record) record.hidden = true;
    const next = tab.querySelector("#next-contact");
    if (next) next.hidden = true;
    const callApp = tab.querySelector("#call-app");
    if (callApp) callApp.dataset.next = selfPath;
    const title = head.querySelector("h1");
    if (title) {
      const name = document.createElement("h2");
      name.id = title.id;
      name.textContent = title.textContent;
      title.replaceWith(name);
    }
  }

  function unmount() {
    mountSeq++;
    if (!mounted) return;
    if (mounted.handle) mounted.handle.dispose();
    const last = calls.get(mounted.callId);
    const result = last && last.outcome ? (G.call_outcomes || {})[last.outcome] || "" : "";
    if (mounted.name) {
      previousLine.textContent = result
        ? PB.fill(S.previous, { name: mounted.name, result })
        : PB.fill(S.previous_plain, { name: mounted.name });
      previousLine.hidden = false;
    }
    mounted = null;
    if (brief) brief.hidden = false;
    contactBox.replaceChildren();
    contactBox.hidden = true;
    contactError.hidden = true;
  }

  function outcomeDone() {
    announcer.textContent = S.saved_waiting;
    heading.focus();
    refresh();
  }

  // -- keeping up ----------------------------------------------------------------------
  async function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = (async () => {
      try {
        const data = await PB.api("GET", "/api/power");
        render(data.session);
      } catch (e) { /* the stream or the next poll will tell */ }
    })();
    try { await refreshing; } finally { refreshing = null; }
    if (again) { again = false; refresh(); }
  }

  function listen() {
    const events = new EventSource("/api/live/events");
    events.addEventListener("snapshot", (event) => {
      try {
        const data = JSON.parse(event.data);
        if (data.now) skew = new Date(data.now).getTime() - Date.now();
        for (const item of data.items || []) remember(item);
      } catch (e) { /* keep the last clock */ }
      refresh();
    });
    events.addEventListener("change", (event) => {
      const item = JSON.parse(event.data);
      remember(item);
      // A volunteer's stream carries only their own session and calls.
      if (item.kind === "session") refresh();
      else if (item.kind === "call" && session && item.payload.power_session_id === session.session_id) {
        if (item.payload.state === "ended") refresh();
      }
    });
  }

  function remember(item) {
    if (item.kind === "call" && item.payload && item.payload.power_session_id) {
      calls.set(item.key, item.payload);
    }
  }

  // -- the volunteer's controls --------------------------------------------------------
  async function act(action, body, focusAfter) {
    actionError.hidden = true;
    try {
      const data = await PB.api("POST", "/api/power/" + action, body);
      render(data.session);
      if (focusAfter && !focusAfter.hidden && !focusAfter.disabled) focusAfter.focus();
      return true;
    } catch (error) {
      actionError.textContent = error.status ? error.message : G.offline_kept || G.error;
      actionError.hidden = false;
      if (error.code === "no_power_session") refresh();
      return false;
    }
  }

  function hidePauseForm(focus) {
    if (pauseForm.hidden) return;
    pauseForm.hidden = true;
    pauseButton.setAttribute("aria-expanded", "false");
    if (focus && !pauseButton.hidden) pauseButton.focus();
  }

  pauseButton.addEventListener("click", () => {
    if (!pauseForm.hidden) { hidePauseForm(true); return; }
    pauseForm.hidden = false;
    pauseError.textContent = "";
    pauseButton.setAttribute("aria-expanded", "true");
    const checked = pauseForm.querySelector("input[type=radio]:checked");
    if (checked) checked.focus();
  });
  PB.byId("power-pause-cancel").addEventListener("click", () => hidePauseForm(true));
  pauseForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); hidePauseForm(true); }
  });
  pauseForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = pauseForm.querySelector('[name="pause_reason"]:checked');
    const words = PB.byId("power-pause-note").value.trim();
    pauseError.textContent = "";
    if (chosen && chosen.value === "other" && !words) {
      pauseError.textContent = S.reason_needed;
      PB.byId("power-pause-note").focus();
      return;
    }
    // Stored as the volunteer wrote it: whoever reads it (an organizer,
    // the audit log) reads words, not a code.
    const label = chosen ? chosen.dataset.label : "";
    const reason = words ? (label ? PB.fill(S.reason_with_words, { reason: label, words }) : words) : label;
    const confirm = PB.byId("power-pause-confirm");
    confirm.disabled = true;
    const done = await act("pause", { reason }, resumeButton);
    confirm.disabled = false;
    if (done) {
      hidePauseForm(false);
      PB.byId("power-pause-note").value = "";
    }
  });
  resumeButton.addEventListener("click", () => act("resume", undefined, pauseButton));
  lastButton.addEventListener("click", () => act("last-call", undefined, leaveButton));
  leaveButton.addEventListener("click", () => {
    const onCall = session && (session.state === "dialing" || session.state === "talking");
    if (onCall && !window.confirm(S.confirm_leave_call)) return;
    act("leave");
  });

  // -- starting --------------------------------------------------------------------------
  startForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (startButton.disabled) return;
    startError.hidden = true;
    startButton.disabled = true;
    const label = startButton.textContent;
    startButton.textContent = S.starting;
    try {
      if (!(await phoneCanRing())) throw new Error(S.phone_not_ready);
      const data = await PB.api("POST", "/api/power", { campaign_id: campaignId });
      PB.byId("power-previous").hidden = true;
      render(data.session);
      heading.focus();
    } catch (error) {
      if (window.PBPhone) window.PBPhone.forgetCall();
      startError.textContent = error.message;
      const url = error.body && error.body.error && error.body.error.url;
      if (error.code === "outcome_pending" && url) {
        // The outcome owed, one click away: it is recorded before a session starts.
        const link = document.createElement("a");
        link.href = url;
        link.textContent = " " + S.record_it;
        startError.appendChild(link);
      }
      startError.hidden = false;
      startButton.disabled = false;
      startButton.textContent = label;
    }
  });

  // A browser phone must be connected, and told the session's call is coming
  // so it answers it; a desk phone or an own number needs nothing.
  async function phoneCanRing() {
    const phone = window.PBPhone;
    if (!phone) return !browserPhone;
    if (phone.busy()) return false;
    if (!(await phone.whenReady(8000))) return false;
    phone.expectCall();
    return true;
  }

  render(session, { quiet: true });
  listen();
  refresh();
  // Should the stream stay silent (a proxy that buffers it), the page still moves on.
  setInterval(() => { if (live(session)) refresh(); }, 10000);
});
