// The call screen: start a call, follow its state live, hang up, then the
// outcome flow.  Everything typed is kept in localStorage under the
// submission id (made here, so a retry after a failure is the same
// submission and is stored once).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const PB = window.PB;
  const S = PB.strings;
  const app = PB.byId("call-app");
  if (!app) return;
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
  const contactId = Number(app.dataset.contact);
  const campaignId = app.dataset.campaign ? Number(app.dataset.campaign) : null;
  const pointerKey = "pb:current:" + contactId;

  let callId = null;
  let call = null;
  let submissionId = null;
  let step = "outcome";
  let ticking = null;
  let events = null;
  let saving = false;

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
    statusBox.querySelectorAll("[data-step]").forEach((item) => {
      const index = ORDER.indexOf(item.dataset.step);
      item.classList.toggle("done", index < current);
      item.classList.toggle("current", index === current);
      if (index === current) item.setAttribute("aria-current", "step"); else item.removeAttribute("aria-current");
    });
    const live = payload.state !== "ended";
    hangupButton.hidden = !live;
    callButton.hidden = live;
    if (callButton) callButton.disabled = live;
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
    if (!live) {
      const reason = S.call_outcomes[payload.outcome] || payload.outcome || "";
      endedReason.textContent = PB.fill(S.ended_because, { reason });
      if (events) { events.close(); events = null; }
      openWizard();
    } else {
      endedReason.textContent = "";
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
      try {
        const created = await PB.api("POST", "/api/calls", body);
        if (!campaignId && created.campaign_id) {
          // Made under the contact's campaign: that campaign's page carries
          // its survey.  The draft and ?call= resume the call there.
          callId = created.call_id;
          saveDraft();
          const params = new URLSearchParams(location.search);
          params.set("call", created.call_id);
          params.set("campaign", created.campaign_id);
          location.replace(location.pathname + "?" + params.toString());
          return;
        }
        form.hidden = true;
        donePanel.hidden = true;
        follow(created.call_id);
        showCall(created);
      } catch (error) {
        callButton.disabled = false;
        statusBox.hidden = true;
        callError.textContent = error.message;
        callError.hidden = false;
      }
    });
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

  PB.byId("record-outcome").addEventListener("click", () => { ensureSubmission(); openWizard(); });
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
    if (!form.hidden || !donePanel.hidden) return;
    form.hidden = false;
    showStep(step, true);
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
      form.querySelectorAll(".question[data-required]").forEach((question) => {
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
      form.hidden = true;
      donePanel.hidden = false;
      const next = PB.byId("next-contact");
      next.href = app.dataset.next;
      next.focus();
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
  const draft = loadDraft();
  const params = new URLSearchParams(location.search);
  const resumeCall = params.get("call") || app.dataset.liveCall || (draft && draft.callId);
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
  if (resumeCall) follow(resumeCall);
});
