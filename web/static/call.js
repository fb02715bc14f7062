// The call screen: start a call, follow its state live, hang up, then the
// outcome flow.  Everything typed is kept in localStorage under the
// submission id (made here, so a retry after a failure is the same
// submission and is stored once).
//
// The power session screen (power.js) mounts the same panel for each
// contact dialed for it: window.PBCall.mount({callId, onlyOwed}) follows that
// call, and dispose() stops following it before the next one replaces it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  bindPendingSkip(window.PB, window.PB.strings);
  mountCall({});
});
window.PBCall = { mount: mountCall };

function mountCall(options) {
  const PB = window.PB;
  const S = PB.strings;
  const app = PB.byId("call-app");
  if (!app) return null;
  const form = PB.byId("outcome-form");
  const comments = PB.byId("comments");
  const callForm = PB.byId("call-form");
  const callButton = PB.byId("call-button");
  const hangupButton = PB.byId("hangup-button");
  const statusBox = PB.byId("call-status");
  const stateLabel = PB.byId("call-state");
  const timer = PB.byId("call-timer");
  const endedReason = PB.byId("call-ended-reason");
  const callError = PB.byId("call-error");
  const formError = PB.byId("form-error");
  const nextButton = PB.byId("step-next");
  const backButton = PB.byId("step-back");
  const saveButton = PB.byId("step-save");
  const donePanel = PB.byId("done-panel");
  const recordButton = PB.byId("record-outcome");
  const skipButton = PB.byId("skip-outcome");
  const skipForm = PB.byId("skip-form");
  const skipError = PB.byId("skip-error");
  // Refused by the page itself (do not call, no caller ID, an outcome owed).
  const callRefusedByPage = callButton ? callButton.disabled : true;
  const pendingCall = app.dataset.pendingCall || "";
  const pendingElsewhere = app.dataset.pendingElsewhere === "true";
  const autoAbsent = (app.dataset.autoAbsent || "").split(" ").filter(Boolean);
  const contactId = Number(app.dataset.contact);
  const campaignId = app.dataset.campaign ? Number(app.dataset.campaign) : null;
  const pointerKey = "pb:current:" + contactId;

  let callId = null;
  let call = null;
  let submissionId = null;
  let step = "outcome";
  let ticking = null;
  let events = null;
  // Where the outcome is recorded once the call ends, when not on this page.
  let resumeAt = null;
  let saving = false;

  // No new call, and no outcome without a call, while a call is live, while
  // an outcome form is open, or while another contact's outcome is owed: the
  // server refuses them too (outcome_pending).
  function updateControls() {
    const live = !!call && call.state !== "ended";
    const formOpen = !form.hidden || !skipForm.hidden;
    if (callButton) callButton.disabled = callRefusedByPage || live || formOpen || pendingElsewhere;
    recordButton.disabled = live || formOpen || pendingElsewhere;
    // Skipping is for an answered call's outcome only: the others have their
    // automatic "absent" already.
    skipButton.hidden = !(call && call.state === "ended" && isAnswered(call));
  }

  // An ended call whose outcome is owed: the contact answered and talk
  // ended, normally or by someone hanging up.  The server's rule,
  // dialer.domain.vocabulary.outcome_owed / CONVERSATION_ENDS: keep them alike.
  const CONVERSATION_ENDS = ["completed", "hung_up_by_operator", "hung_up_by_volunteer"];
  function isAnswered(payload) {
    return !!payload.contact_answered_at && CONVERSATION_ENDS.includes(payload.outcome);
  }

  // -- drafts ---------------------------------------------------------------
  function draftKey() { return "pb:draft:" + submissionId; }

  function ensureSubmission() {
    if (!submissionId) submissionId = PB.randomId();
    return submissionId;
  }

  function serialize() {
    const values = {};
    for (const element of form.elements) {
      if (!element.name || element.type === "button" || element.type === "submit") continue;
      if ((element.type === "radio" || element.type === "checkbox")) {
        if (!element.checked) continue;
        (values[element.name] = values[element.name] || []).push(element.value);
      } else {
        values[element.name] = [element.value];
      }
    }
    return values;
  }

  function restore(values) {
    for (const element of form.elements) {
      if (!element.name || !(element.name in values)) continue;
      const saved = values[element.name];
      if (element.type === "radio" || element.type === "checkbox") {
        element.checked = saved.includes(element.value);
      } else {
        element.value = saved[0];
      }
    }
  }

  function saveDraft() {
    ensureSubmission();
    try {
      localStorage.setItem(draftKey(), JSON.stringify({
        values: serialize(), step, callId, wizard: !form.hidden, savedAt: new Date().toISOString(),
      }));
      localStorage.setItem(pointerKey, JSON.stringify({ submissionId, callId }));
    } catch (e) { /* storage full or disabled: the form still works */ }
  }

  function clearDraft() {
    try {
      localStorage.removeItem(draftKey());
      localStorage.removeItem(pointerKey);
    } catch (e) { /* nothing to clear */ }
  }

  function loadDraft() {
    try {
      const pointer = JSON.parse(localStorage.getItem(pointerKey) || "null");
      if (!pointer || !pointer.submissionId) return null;
      const draft = JSON.parse(localStorage.getItem("pb:draft:" + pointer.submissionId) || "null");
      if (!draft) return null;
      submissionId = pointer.submissionId;
      return draft;
    } catch (e) { return null; }
  }

  // -- the call ---------------------------------------------------------------
  const STEP_OF_STATE = {
    requested: "volunteer", ringing_volunteer: "volunteer", volunteer_answered: "contact",
    ringing_contact: "contact", talking: "talking", ended: "ended",
  };
  const ORDER = ["volunteer", "contact", "talking", "ended"];

  function showCall(payload) {
    call = payload;
    statusBox.hidden = false;
    stateLabel.textContent = S.states[payload.state] || payload.state;
    statusBox.dataset.state = payload.state;
    const current = ORDER.indexOf(STEP_OF_STATE[payload.state]);
    const results = stepResults(payload, current);
    statusBox.querySelectorAll("[data-step]").forEach((item) => {
      const result = results[item.dataset.step];
      item.dataset.result = result;
      item.classList.toggle("done", result === "done");
      item.classList.toggle("current", result === "current");
      item.classList.toggle("failed", result === "failed");
      item.classList.toggle("not-reached", result === "not_reached");
      if (result === "current") item.setAttribute("aria-current", "step"); else item.removeAttribute("aria-current");
      let note = item.querySelector(".step-note");
      const text = result === "failed" ? S.step_failed : result === "not_reached" ? S.step_not_reached : "";
      if (text && !note) {
        note = document.createElement("span");
        note.className = "step-note visually-hidden";
        item.appendChild(note);
      }
      if (note) note.textContent = text ? " (" + text + ")" : "";
    });
    const live = payload.state !== "ended";
    hangupButton.hidden = !live;
    if (callButton) callButton.hidden = live;
    clearInterval(ticking);
    ticking = null;
    if (payload.state === "talking" && payload.contact_answered_at) {
      const started = new Date(payload.contact_answered_at).getTime();
      const tick = () => { timer.textContent = PB.clock((Date.now() - started) / 1000); };
      tick();
      ticking = setInterval(tick, 500);
    } else if (!live && payload.contact_answered_at && payload.ended_at) {
      timer.textContent = PB.clock((new Date(payload.ended_at) - new Date(payload.contact_answered_at)) / 1000);
    } else {
      timer.textContent = "";
    }
    if (!live && resumeAt) {
      saveDraft();
      location.replace(resumeAt);
      return;
    }
    if (!live) {
      const reason = S.call_outcomes[payload.outcome] || payload.outcome || "";
      endedReason.textContent = PB.fill(S.ended_because, { reason });
      if (events) { events.close(); events = null; }
      preselectAutomatic(payload);
      // A power session goes on by itself after a call that owes nothing.
      if (!options.onlyOwed || isAnswered(payload)) openWizard();
    } else {
      endedReason.textContent = "";
    }
    updateControls();
  }

  // What became of each step.  A live call's steps before the current one are
  // done; an ended call's are judged by its times: a busy, congested or
  // unreachable contact's ringing failed and the talk never happened.
  function stepResults(payload, current) {
    const results = {};
    if (payload.state !== "ended") {
      ORDER.forEach((name, index) => {
        results[name] = index < current ? "done" : index === current ? "current" : "";
      });
      return results;
    }
    const volunteerOk = !!payload.volunteer_answered_at || !!payload.contact_answered_at;
    const contactOk = !!payload.contact_answered_at || payload.outcome === "completed";
    results.volunteer = volunteerOk ? "done" : "failed";
    results.contact = contactOk ? "done" : volunteerOk ? "failed" : "not_reached";
    results.talking = contactOk ? "done" : "not_reached";
    results.ended = "current";
    return results;
  }

  function preselectAutomatic(payload) {
    if (!autoAbsent.includes(payload.outcome) || value("outcome")) return;
    const absent = form.querySelector('[name="outcome"][value="absent"]');
    if (absent) {
      absent.checked = true;
      saveDraft();
    }
  }

  function listen() {
    if (events) return;
    events = new EventSource("/api/live/events");
    events.addEventListener("snapshot", (event) => {
      const data = JSON.parse(event.data);
      const item = data.items.find((entry) => entry.kind === "call" && entry.key === callId);
      if (item) showCall(item.payload);
      else refresh();  // ended while we were away: the API has the last state
    });
    events.addEventListener("change", (event) => {
      const item = JSON.parse(event.data);
      if (item.kind === "call" && item.key === callId) showCall(item.payload);
    });
  }

  async function refresh() {
    if (!callId) return;
    try { showCall(await PB.api("GET", "/api/calls/" + encodeURIComponent(callId))); } catch (e) { /* the stream will tell */ }
  }

  function follow(id) {
    callId = id;
    ensureSubmission();
    saveDraft();
    listen();
    refresh();
  }

  if (callForm) {
    callForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!callButton || callButton.disabled) return;
      callError.hidden = true;
      callButton.disabled = true;
      stateLabel.textContent = S.calling;
      statusBox.hidden = false;
      const body = { contact_id: contactId };
      const phone = PB.byId("phone-select");
      const callerId = PB.byId("caller-id");
      if (phone && phone.value) body.phone_id = Number(phone.value);
      if (callerId && callerId.value) body.caller_id = callerId.value;
      if (campaignId) body.campaign_id = campaignId;
      if (!(await phoneCanRing())) {
        statusBox.hidden = true;
        updateControls();
        return;
      }
      try {
        const created = await PB.api("POST", "/api/calls", body);
        if (!campaignId && created.campaign_id && window.PBPhone) {
          // The browser phone lives in this page: leaving it would drop the
          // call.  The campaign's page opens once the call has ended.
          resumeAt = resumeUrl(created);
        } else if (!campaignId && created.campaign_id) {
          // Made under the contact's campaign: that campaign's page carries
          // its survey.  The draft and ?call= resume the call there.
          callId = created.call_id;
          saveDraft();
          location.replace(resumeUrl(created));
          return;
        }
        form.hidden = true;
        skipForm.hidden = true;
        donePanel.hidden = true;
        follow(created.call_id);
        showCall(created);
      } catch (error) {
        if (window.PBPhone) window.PBPhone.forgetCall();
        statusBox.hidden = true;
        showCallError(error);
        updateControls();
      }
    });
  }

  // A browser phone (phone.js) must be connected, and told the call is
  // coming so it answers it; a desk phone needs nothing.
  async function phoneCanRing() {
    const phone = window.PBPhone;
    if (!phone) return true;
    const S2 = S.phone || {};
    if (phone.busy()) { showCallError(new Error(S2.busy)); return false; }
    if (!(await phone.whenReady(8000))) { showCallError(new Error(S2.not_ready)); return false; }
    phone.expectCall();
    return true;
  }

  function resumeUrl(created) {
    const params = new URLSearchParams(location.search);
    params.set("call", created.call_id);
    params.set("campaign", created.campaign_id);
    return location.pathname + "?" + params.toString();
  }

  // Calls started from the contacts list with a browser phone (dial.js)
  // are placed here, where the phone stays up for the whole call.
  function dialOnArrival() {
    let wanted = null;
    try { wanted = JSON.parse(sessionStorage.getItem("pb:dial") || "null"); } catch (e) { wanted = null; }
    sessionStorage.removeItem("pb:dial");
    if (!wanted || wanted.contact !== contactId || Date.now() - wanted.at > 30000 || !callForm || callId) return;
    const phone = PB.byId("phone-select");
    if (phone && wanted.phone) phone.value = String(wanted.phone);
    callForm.requestSubmit();
  }

  function showCallError(error) {
    callError.textContent = error.message;
    const url = error.body && error.body.error && error.body.error.url;
    if (error.code === "outcome_pending" && url) {
      // The contact whose outcome is owed, one click away.
      const link = document.createElement("a");
      link.href = url;
      link.textContent = " →";
      link.id = "pending-link";
      callError.appendChild(link);
    }
    callError.hidden = false;
  }

  hangupButton.addEventListener("click", async () => {
    if (!callId) return;
    hangupButton.disabled = true;
    stateLabel.textContent = S.hanging_up;
    try {
      await PB.api("POST", "/api/calls/" + encodeURIComponent(callId) + "/hangup");
    } catch (error) {
      callError.textContent = error.message;
      callError.hidden = false;
    } finally {
      hangupButton.disabled = false;
    }
  });

  // -- notes --------------------------------------------------------------------
  PB.byId("save-note").addEventListener("click", async () => {
    const text = comments.value.trim();
    const status = PB.byId("note-status");
    if (!text) { comments.focus(); return; }
    try {
      await PB.api("POST", "/api/contacts/" + contactId + "/notes", { body: text, call_id: callId });
      status.textContent = S.note_saved;
    } catch (error) {
      status.textContent = error.message;
    }
  });

  recordButton.addEventListener("click", () => {
    if (recordButton.disabled) return;
    ensureSubmission();
    openWizard();
  });
  comments.addEventListener("input", saveDraft);

  // -- the outcome flow -------------------------------------------------------------
  const value = (name) => {
    const checked = form.querySelector('[name="' + name + '"]:checked');
    return checked ? checked.value : "";
  };

  function steps() {
    const list = ["outcome"];
    if (value("outcome") === "answered") {
      list.push("consent");
      if (value("consent") === "true" && form.querySelector('[data-step="survey"]')) list.push("survey");
    }
    list.push("details", "wrapup");
    return list;
  }

  function showStep(name, focus) {
    const list = steps();
    if (!list.includes(name)) name = list[0];
    step = name;
    form.querySelectorAll("fieldset[data-step]").forEach((fieldset) => {
      fieldset.hidden = fieldset.dataset.step !== name;
    });
    const last = list.indexOf(name) === list.length - 1;
    backButton.hidden = list.indexOf(name) === 0;
    nextButton.hidden = last;
    saveButton.hidden = !last;
    if (focus !== false) {
      const current = form.querySelector('fieldset[data-step="' + name + '"]');
      const target = current.querySelector("input:checked, input, select, textarea");
      if (target) target.focus();
    }
    saveDraft();
  }

  function openWizard() {
    if (!form.hidden || !donePanel.hidden || !skipForm.hidden) return;
    form.hidden = false;
    showStep(step, true);
    updateControls();
  }

  function clearErrors() {
    formError.hidden = true;
    form.querySelectorAll("[data-error-for]").forEach((node) => { node.textContent = ""; });
  }

  function showErrors(fields, message) {
    clearErrors();
    let firstStep = null;
    for (const [path, text] of Object.entries(fields)) {
      const slot = form.querySelector('[data-error-for="' + path + '"]');
      if (slot) {
        slot.textContent = text;
        const fieldset = slot.closest("fieldset[data-step]");
        if (!firstStep && fieldset) firstStep = fieldset.dataset.step;
      }
    }
    formError.textContent = message || S.fix_fields;
    formError.hidden = false;
    if (firstStep) showStep(firstStep, true);
  }

  function validateStep(name) {
    const fields = {};
    if (name === "outcome" && !value("outcome")) fields.outcome = S.required;
    if (name === "consent" && !value("consent")) fields.consent = S.required;
    if (name === "survey") {
      form.querySelectorAll(".question[data-required]:not([hidden])").forEach((question) => {
        const key = "survey." + question.dataset.question;
        const inputs = question.querySelectorAll("[name]");
        const answered = Array.from(inputs).some((input) =>
          (input.type === "radio" || input.type === "checkbox") ? input.checked : input.value.trim() !== "");
        if (!answered) fields[key] = S.required;
      });
    }
    if (name === "wrapup") {
      if (value("outcome") === "call_back_later" && !form.elements.callback_at.value) fields.callback_at = S.required;
      if (form.elements.task_assignee.value && !form.elements.task_description.value.trim()) fields["task.description"] = S.required;
    }
    if (Object.keys(fields).length) { showErrors(fields); return false; }
    clearErrors();
    return true;
  }

  function surveyAnswers() {
    const answers = {};
    form.querySelectorAll(".question").forEach((question) => {
      const id = question.dataset.question;
      const type = question.dataset.type;
      const name = "survey." + id;
      if (type === "multiple_choice") {
        const chosen = Array.from(question.querySelectorAll('[name="' + name + '"]:checked'), (n) => n.value);
        if (chosen.length) answers[id] = chosen;
      } else if (type === "single_choice") {
        if (value(name)) answers[id] = value(name);
      } else if (type === "yes_no") {
        if (value(name)) answers[id] = value(name) === "true";
      } else if (type === "scale") {
        if (value(name)) answers[id] = parseInt(value(name), 10);
      } else if (type === "number") {
        const raw = question.querySelector('[name="' + name + '"]').value;
        if (raw !== "") answers[id] = Number(raw);
      } else {
        const raw = question.querySelector('[name="' + name + '"]').value.trim();
        if (raw) answers[id] = raw;
      }
    });
    return answers;
  }

  function payload() {
    const outcome = value("outcome");
    const body = {
      submission_id: ensureSubmission(),
      call_id: callId,
      contact_id: contactId,
      campaign_id: campaignId,
      outcome,
      comments: comments.value,
    };
    if (outcome === "answered" && value("consent")) body.consent = value("consent") === "true";
    if (body.consent === true) body.survey_answers = surveyAnswers();
    const email = form.elements.email.value.trim();
    if (email) body.email = email;
    if (form.elements.language.value) body.language = form.elements.language.value;
    const number = form.elements.new_number.value.trim();
    if (number) body.new_numbers = [{ number, type: form.elements.new_number_type.value }];
    if (form.elements.do_not_call.checked) body.do_not_call = true;
    if (value("mobilized")) body.mobilized = value("mobilized") === "true";
    if (value("support_score")) body.support_score = parseInt(value("support_score"), 10);
    if (form.elements.callback_at.value) body.callback_at = new Date(form.elements.callback_at.value).toISOString();
    if (form.elements.task_assignee.value) {
      body.task = {
        assignee_id: Number(form.elements.task_assignee.value),
        description: form.elements.task_description.value.trim(),
        due_on: form.elements.task_due.value || null,
      };
    }
    return body;
  }

  async function save(attempt) {
    if (saving && !attempt) return;
    saving = true;
    saveButton.disabled = true;
    saveButton.textContent = S.saving;
    saveDraft();
    try {
      await PB.api("POST", "/api/outcomes", payload());
      clearDraft();
      if (location.search.includes("call=")) {
        const params = new URLSearchParams(location.search);
        params.delete("call");
        history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
      }
      finish(false);
    } catch (error) {
      if (error.status === 422) {
        showErrors(error.fields, error.message);
      } else if ((error.status === 503 || error.code === "retry") && (attempt || 0) < 5) {
        formError.textContent = S.retrying;
        formError.hidden = false;
        setTimeout(() => save((attempt || 0) + 1), 1000 * Math.pow(2, attempt || 0));
        return;
      } else if (error.status) {
        formError.textContent = error.message;
        formError.hidden = false;
      } else {
        formError.textContent = S.offline_kept;
        formError.hidden = false;
      }
    }
    saving = false;
    saveButton.disabled = false;
    saveButton.textContent = saveButton.dataset.label;
  }
  saveButton.dataset.label = saveButton.textContent;

  // The outcome is saved or skipped: the way on, and the other tabs brought up to date.
  function finish(skipped) {
    form.hidden = true;
    skipForm.hidden = true;
    PB.byId("done-saved").hidden = skipped;
    PB.byId("done-skipped").hidden = !skipped;
    donePanel.hidden = false;
    const next = PB.byId("next-contact");
    next.href = app.dataset.next;
    next.focus();
    updateControls();
    if (options.onDone) options.onDone({ callId, skipped });
    else refreshTabs();
  }

  // Details and History as the server now has them.  Their sections are
  // replaced whole, whatever they hold; scripts that bind to them hear
  // "pb:tabs-refreshed".
  async function refreshTabs() {
    try {
      const params = new URLSearchParams(location.search);
      params.delete("call");
      const response = await fetch(location.pathname + (params.toString() ? "?" + params : ""), {
        credentials: "same-origin", headers: { "Accept": "text/html" },
      });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const id of ["tab-details", "tab-history"]) {
        const fresh = page.getElementById(id);
        const shown = PB.byId(id);
        if (fresh && shown) shown.innerHTML = fresh.innerHTML;
      }
      document.dispatchEvent(new CustomEvent("pb:tabs-refreshed"));
    } catch (e) { /* the next visit shows them */ }
  }

  // -- skipping an answered call's outcome, with a reason ------------------------------
  skipButton.addEventListener("click", () => {
    form.hidden = true;
    skipForm.hidden = false;
    skipError.hidden = true;
    const first = skipForm.querySelector("input[type=radio]");
    if (first) first.focus();
    updateControls();
  });
  PB.byId("skip-cancel").addEventListener("click", () => {
    skipForm.hidden = true;
    form.hidden = false;
    showStep(step, true);
    updateControls();
  });
  skipForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    skipForm.querySelectorAll("[data-error-for]").forEach((node) => { node.textContent = ""; });
    skipError.hidden = true;
    const checked = skipForm.querySelector('[name="skip_reason"]:checked');
    const body = { reason: checked ? checked.value : "", note: PB.byId("skip-note").value };
    const confirm = PB.byId("skip-confirm");
    confirm.disabled = true;
    try {
      await PB.api("POST", "/api/calls/" + encodeURIComponent(callId) + "/skip-outcome", body);
      clearDraft();
      finish(true);
    } catch (error) {
      for (const [name, text] of Object.entries(error.fields || {})) {
        const slot = skipForm.querySelector('[data-error-for="' + name + '"]');
        if (slot) slot.textContent = text;
      }
      skipError.textContent = error.status ? error.message : S.offline_kept;
      skipError.hidden = false;
    } finally {
      confirm.disabled = false;
    }
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const list = steps();
    if (!validateStep(step)) return;
    const index = list.indexOf(step);
    if (index === list.length - 1) save();
    else showStep(list[index + 1]);
  });
  saveButton.addEventListener("click", () => { if (validateStep(step)) save(); });
  backButton.addEventListener("click", () => {
    const list = steps();
    showStep(list[Math.max(0, list.indexOf(step) - 1)]);
  });
  form.addEventListener("input", saveDraft);
  form.addEventListener("change", saveDraft);

  // Digits pick a choice on the first questions and move on.
  form.addEventListener("keydown", (event) => {
    if (!/^[1-9]$/.test(event.key) || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.matches("textarea, input[type=text], input[type=email], input[type=tel], input[type=number], input[type=date], input[type=datetime-local], select")) return;
    if (step !== "outcome" && step !== "consent") return;
    const radios = form.querySelectorAll('fieldset[data-step="' + step + '"] input[type=radio]');
    const chosen = radios[Number(event.key) - 1];
    if (!chosen) return;
    event.preventDefault();
    chosen.checked = true;
    chosen.dispatchEvent(new Event("change", { bubbles: true }));
    form.requestSubmit();
  });

  // -- start-up: resume a call or a half-filled outcome after a reload --------
  let draft = loadDraft();
  const params = new URLSearchParams(location.search);
  const expected = options.callId || pendingCall;
  if (expected && draft && draft.callId && draft.callId !== expected) {
    // Kept from another call: the outcome owed is this one's.
    draft = null;
    submissionId = null;
  }
  const resumeCall = options.callId || app.dataset.liveCall || pendingCall || params.get("call") || (draft && draft.callId);
  if (draft) {
    restore(draft.values);
    if (draft.step) step = draft.step;
    if (draft.wizard) {
      const notice = PB.byId("restored");
      notice.textContent = S.restored;
      notice.hidden = false;
      form.hidden = false;
      showStep(step, false);
    }
  }
  updateControls();
  if (resumeCall) follow(resumeCall);
  else dialOnArrival();
  return {
    dispose() {
      if (events) { events.close(); events = null; }
      clearInterval(ticking);
      ticking = null;
    },
  };
}

// The outcome owed on another contact's call, skipped with a reason from the
// banner (_pending_skip.html): on another contact's page, on the campaign
// page Next shows instead of a contact out of view, or on that contact's
// page once the volunteer may no longer open it.  Then on to data-next, or
// this page again, now without an outcome owed.
function bindPendingSkip(PB, S) {
  const skip = PB.byId("pending-skip-form");
  if (!skip) return;
  const error = PB.byId("pending-skip-error");
  const confirm = PB.byId("pending-skip-confirm");
  const moveOn = () => location.replace(skip.dataset.next || location.href);
  skip.addEventListener("submit", async (event) => {
    event.preventDefault();
    skip.querySelectorAll("[data-error-for]").forEach((node) => { node.textContent = ""; });
    error.hidden = true;
    const checked = skip.querySelector('[name="skip_reason"]:checked');
    const body = { reason: checked ? checked.value : "", note: PB.byId("pending-skip-note").value };
    confirm.disabled = true;
    try {
      await PB.api("POST", "/api/calls/" + encodeURIComponent(skip.dataset.call) + "/skip-outcome", body);
      moveOn();
    } catch (failure) {
      // Recorded in another tab meanwhile: nothing is owed any more.
      if (failure.code === "outcome_recorded") { moveOn(); return; }
      for (const [name, text] of Object.entries(failure.fields || {})) {
        const slot = skip.querySelector('[data-error-for="' + name + '"]');
        if (slot) slot.textContent = text;
      }
      error.textContent = failure.status ? failure.message : S.offline_kept;
      error.hidden = false;
      confirm.disabled = false;
    }
  });
}
