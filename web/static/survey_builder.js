// The survey builder on the campaign editor: questions, kinds of answer,
// choices, required, help and skip rules, kept in one state object and
// serialized into the hidden "survey" field as the JSON the server validates.
// Without scripts the JSON textarea is the field itself.  Every string comes
// translated from the page (#strings, or the templates below the builder).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const PB = window.PB;
  const S = (PB.strings && PB.strings.survey_builder) || {};
  const root = PB.byId("survey-builder");
  if (!root) return;
  const app = PB.byId("sb-app");
  const list = PB.byId("sb-questions");
  const empty = PB.byId("sb-empty");
  const languageSelect = PB.byId("sb-language");
  const textarea = PB.byId("survey");
  const hidden = PB.byId("sb-data");
  const jsonBox = PB.byId("sb-json-box");
  const jsonStatus = PB.byId("sb-json-status");
  const announcer = PB.byId("sb-announce");
  const questionsError = PB.byId("sb-questions-error");
  const languageError = PB.byId("sb-language-error");
  const form = root.closest("form");
  const templates = {
    question: PB.byId("sb-question-template"),
    choice: PB.byId("sb-choice-template"),
    rule: PB.byId("sb-rule-template"),
  };
  const CHOICE_TYPES = ["single_choice", "multiple_choice"];
  const SKIP_TYPES = ["single_choice", "yes_no"];
  const END = null;  // a rule's target when it skips to the end of the survey

  let counter = 0;
  const newKey = () => "k" + (++counter);
  let state = { language: "", questions: [] };
  let broken = false;      // the JSON could not be shown: it is submitted as typed
  let lastExport = "";     // what the textarea held after our last sync

  // -- the model ------------------------------------------------------------------
  function slug(text, fallback) {
    const base = String(text || "").normalize("NFD").replace(/[\u0300-\u036f]/g, "")
      .toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 40);
    const start = /^[a-z]/.test(base) ? base : (fallback + (base ? "_" + base : "")).slice(0, 40);
    return start.replace(/_+$/, "") || fallback;
  }

  function uniqueId(question) {
    const base = slug(question.label, "q");
    let candidate = base;
    let n = 2;
    while (state.questions.some((other) => other !== question && other.id === candidate)) {
      candidate = base + "_" + n++;
    }
    return candidate;
  }

  function uniqueValue(question, choice) {
    const base = slug(choice.label, "c");
    let candidate = base;
    let n = 2;
    while (question.choices.some((other) => other !== choice && other.value === candidate)) {
      candidate = base + "_" + n++;
    }
    return candidate;
  }

  function text(value) { return value === undefined || value === null ? "" : String(value); }

  function loadQuestion(raw) {
    const item = raw && typeof raw === "object" ? raw : {};
    const question = {
      key: newKey(), id: text(item.id), idAuto: !item.id, label: text(item.label),
      type: text(item.type) || "single_choice", required: item.required === true, help: text(item.help),
      min: text(item.min), max: text(item.max), choices: [], skip: [], errors: {},
    };
    (Array.isArray(item.choices) ? item.choices : []).forEach((c) => {
      const choice = c && typeof c === "object" ? c : {};
      question.choices.push({ key: newKey(), label: text(choice.label), value: text(choice.value), valueAuto: !choice.value, errors: {} });
    });
    question.rawSkip = Array.isArray(item.skip) ? item.skip : [];
    return question;
  }

  function loadSurvey(data) {
    if (!data || typeof data !== "object" || Array.isArray(data) || (data.questions !== undefined && !Array.isArray(data.questions))) {
      throw new Error(S.json_not_survey);
    }
    const questions = (data.questions || []).map(loadQuestion);
    const byId = new Map(questions.map((q) => [q.id, q.key]));
    questions.forEach((question) => {
      question.skip = question.rawSkip.map((r) => {
        const rule = r && typeof r === "object" ? r : {};
        const target = rule.to === null || rule.to === undefined ? END : text(rule.to);
        return {
          key: newKey(), when: text(rule.when),
          to: target === END ? END : (byId.get(target) || ""),
          missing: target !== END && !byId.has(target) ? target : "",
          errors: {},
        };
      });
      delete question.rawSkip;
    });
    return { language: text(data.language), questions };
  }

  function number(raw) {
    if (String(raw).trim() === "") return null;
    const value = Number(raw);
    return Number.isFinite(value) ? value : raw;
  }

  function serialize() {
    const out = { language: state.language || null, questions: [] };
    state.questions.forEach((q) => {
      const item = { id: q.id, label: q.label, type: q.type, required: q.required };
      if (q.help.trim()) item.help = q.help;
      if (CHOICE_TYPES.includes(q.type)) item.choices = q.choices.map((c) => ({ value: c.value, label: c.label }));
      if (q.type === "scale") { item.min = number(q.min); item.max = number(q.max); }
      if (SKIP_TYPES.includes(q.type) && q.skip.length) {
        item.skip = q.skip.map((rule) => {
          if (rule.to === END) return { when: rule.when, to: null };
          const target = state.questions.find((other) => other.key === rule.to);
          return { when: rule.when, to: target ? target.id : rule.missing };
        });
      }
      out.questions.push(item);
    });
    return out;
  }

  function sync() {
    if (broken) return;
    const json = JSON.stringify(serialize(), null, 2);
    hidden.value = json;
    textarea.value = json;
    lastExport = json;
  }

  // -- server errors: each one travels with its question, choice or rule ----------
  function placeErrors(errors) {
    const general = [];
    for (const [path, message] of Object.entries(errors || {})) {
      if (!path.startsWith("survey.")) continue;
      const parts = path.slice(7).split(".");
      if (parts[0] === "language") { languageError.textContent = message; continue; }
      if (parts[0] !== "questions") { general.push(message); continue; }
      const question = state.questions[Number(parts[1])];
      if (parts.length === 1 || !question) { general.push(message); continue; }
      const field = parts[2] || "";
      if ((field === "choices" || field === "skip") && parts.length >= 5) {
        const item = (field === "choices" ? question.choices : question.skip)[Number(parts[3])];
        if (item) { item.errors[parts[4]] = message; continue; }
      }
      const known = ["", "label", "type", "id", "help", "min", "max", "choices", "skip"];
      if (known.includes(field) && parts.length <= 3) question.errors[field] = message;
      else if (field === "choices" || field === "skip") question.errors[field] = message;
      else question.errors[""] = parts.slice(2).join(".") + ": " + message;
    }
    questionsError.textContent = general.join(" ");
  }

  // -- rendering ------------------------------------------------------------------
  function wire(node, prefix, errors) {
    node.querySelectorAll("[data-field]").forEach((input) => {
      const field = input.dataset.field;
      input.id = prefix + "-" + field;
      const label = node.querySelector('[data-for="' + field + '"]');
      if (label) label.htmlFor = input.id;
      const slot = node.querySelector('[data-error="' + field + '"]');
      if (slot) {
        slot.id = input.id + "-error";
        slot.textContent = errors[field] || "";
        input.setAttribute("aria-describedby", slot.id);
        if (errors[field]) input.setAttribute("aria-invalid", "true");
      }
    });
    node.querySelectorAll("[data-error]").forEach((slot) => {
      if (!slot.id) slot.textContent = errors[slot.dataset.error] || "";
    });
  }

  function questionTitle(question) {
    const index = state.questions.indexOf(question);
    return PB.fill(S.question_n_label, { n: index + 1, label: question.label.trim().slice(0, 60) || S.untitled });
  }

  function fillWhen(select, question, rule) {
    select.textContent = "";
    const options = [["", S.choose]];
    if (question.type === "yes_no") options.push(["yes", S.yes], ["no", S.no]);
    else question.choices.forEach((c) => options.push([c.value, c.label || c.value || S.untitled]));
    if (rule.when && !options.some(([value]) => value === rule.when)) options.push([rule.when, rule.when]);
    options.forEach(([value, label]) => select.append(new Option(label, value, false, value === rule.when)));
  }

  function fillTarget(select, question, rule) {
    select.textContent = "";
    const index = state.questions.indexOf(question);
    select.append(new Option(S.choose, "", false, rule.to === "" && !rule.missing));
    state.questions.forEach((other, position) => {
      if (position > index) select.append(new Option(questionTitle(other), other.key, false, rule.to === other.key));
      else if (other.key === rule.to) {
        // Pointing back (after a move): shown so the organizer sees it and chooses again.
        select.append(new Option(PB.fill(S.not_after, { question: questionTitle(other) }), other.key, false, true));
      }
    });
    if (rule.missing) select.append(new Option(rule.missing, "missing", false, true));
    select.append(new Option(S.end, "end", false, rule.to === END));
  }

  function refreshSelects() {
    list.querySelectorAll(".sb-rule").forEach((row) => {
      const question = findQuestion(row.closest(".sb-question").dataset.key);
      const rule = question.skip.find((r) => r.key === row.dataset.key);
      fillWhen(row.querySelector('[data-field="when"]'), question, rule);
      fillTarget(row.querySelector('[data-field="to"]'), question, rule);
    });
  }

  function renderQuestion(question, index) {
    const node = templates.question.content.firstElementChild.cloneNode(true);
    node.dataset.key = question.key;
    wire(node, "sb-" + question.key, question.errors);
    const n = index + 1;
    node.querySelector(".sb-number").textContent = PB.fill(S.question_n, { n });
    node.querySelector('[data-field="label"]').value = question.label;
    node.querySelector('[data-field="type"]').value = question.type;
    node.querySelector('[data-field="id"]').value = question.id;
    node.querySelector('[data-field="required"]').checked = question.required;
    node.querySelector('[data-field="help"]').value = question.help;
    node.querySelector('[data-field="min"]').value = question.min;
    node.querySelector('[data-field="max"]').value = question.max;
    node.querySelector(".sb-scale").hidden = question.type !== "scale";
    node.querySelector(".sb-choices").hidden = !CHOICE_TYPES.includes(question.type);
    const skips = node.querySelector(".sb-skips");
    skips.hidden = !SKIP_TYPES.includes(question.type);
    const tools = {
      up: [S.move_up, index === 0], down: [S.move_down, index === state.questions.length - 1], remove: [S.remove, false],
    };
    for (const [action, [label, inert]] of Object.entries(tools)) {
      const button = node.querySelector('.sb-tools [data-action="' + action + '"]');
      button.setAttribute("aria-label", PB.fill(label, { n }));
      if (inert) button.setAttribute("aria-disabled", "true");
    }
    const choices = node.querySelector(".sb-choice-list");
    question.choices.forEach((choice, position) => {
      const row = templates.choice.content.firstElementChild.cloneNode(true);
      row.dataset.key = choice.key;
      wire(row, "sb-" + choice.key, choice.errors);
      row.querySelector('[data-field="label"]').value = choice.label;
      row.querySelector('[data-field="value"]').value = choice.value;
      const names = { "choice-up": S.choice_up, "choice-down": S.choice_down, "remove-choice": S.remove_choice };
      for (const [action, label] of Object.entries(names)) {
        row.querySelector('[data-action="' + action + '"]').setAttribute("aria-label", PB.fill(label, { n: position + 1 }));
      }
      choices.append(row);
    });
    const rules = node.querySelector(".sb-rule-list");
    question.skip.forEach((rule, position) => {
      const row = templates.rule.content.firstElementChild.cloneNode(true);
      row.dataset.key = rule.key;
      wire(row, "sb-" + rule.key, rule.errors);
      row.querySelector('[data-action="remove-rule"]').setAttribute("aria-label", PB.fill(S.remove_rule, { n: position + 1 }));
      rules.append(row);
    });
    return node;
  }

  function render(focus) {
    list.textContent = "";
    state.questions.forEach((question, index) => list.append(renderQuestion(question, index)));
    empty.hidden = state.questions.length > 0;
    languageSelect.value = state.language;
    refreshSelects();
    if (focus) {
      const target = document.getElementById("sb-" + focus.key + "-" + focus.field) ||
        list.querySelector('[data-key="' + focus.key + '"] ' + (focus.selector || "[data-field]"));
      if (target) target.focus();
    }
    sync();
  }

  function findQuestion(key) { return state.questions.find((q) => q.key === key); }

  function announce(message) {
    announcer.textContent = "";
    setTimeout(() => { announcer.textContent = message; }, 50);
  }

  function clearError(owner, field, input) {
    if (!owner.errors[field]) return;
    delete owner.errors[field];
    const slot = document.getElementById(input.id + "-error");
    if (slot) slot.textContent = "";
    input.removeAttribute("aria-invalid");
  }

  // -- editing ------------------------------------------------------------------------
  function onEdit(event) {
    const input = event.target.closest("[data-field]");
    if (!input) return;
    const questionNode = input.closest(".sb-question");
    const question = findQuestion(questionNode.dataset.key);
    const choiceNode = input.closest(".sb-choice");
    const ruleNode = input.closest(".sb-rule");
    const field = input.dataset.field;
    if (choiceNode) {
      const choice = question.choices.find((c) => c.key === choiceNode.dataset.key);
      clearError(choice, field, input);
      const before = choice.value;
      if (field === "label") {
        choice.label = input.value;
        if (choice.valueAuto) {
          choice.value = uniqueValue(question, choice);
          choiceNode.querySelector('[data-field="value"]').value = choice.value;
        }
      } else {
        choice.value = input.value;
        choice.valueAuto = false;
      }
      // A rule follows its answer when the answer's saved value changes.
      question.skip.forEach((rule) => { if (rule.when === before) rule.when = choice.value; });
      refreshSelects();
    } else if (ruleNode) {
      const rule = question.skip.find((r) => r.key === ruleNode.dataset.key);
      clearError(rule, field, input);
      if (field === "when") rule.when = input.value;
      else if (input.value === "end") { rule.to = END; rule.missing = ""; }
      else if (input.value !== "missing") { rule.to = input.value; rule.missing = ""; }
    } else {
      clearError(question, field, input);
      if (field === "type") {
        question.type = input.value;
        if (CHOICE_TYPES.includes(question.type) && question.choices.length === 0) {
          addChoice(question); addChoice(question);
        }
        render({ key: question.key, field: "type" });
        return;
      }
      if (field === "required") question.required = input.checked;
      else if (field === "id") { question.id = input.value.trim(); question.idAuto = false; }
      else question[field] = input.value;
      if (field === "label") {
        if (question.idAuto) {
          question.id = uniqueId(question);
          questionNode.querySelector('[data-field="id"]').value = question.id;
        }
        refreshSelects();
      }
    }
    sync();
  }
  // Selects and checkboxes report through "change" (they fire "input" too).
  list.addEventListener("input", (event) => { if (!event.target.matches("select, input[type=checkbox]")) onEdit(event); });
  list.addEventListener("change", (event) => { if (event.target.matches("select, input[type=checkbox]")) onEdit(event); });
  languageSelect.addEventListener("change", () => {
    state.language = languageSelect.value;
    languageError.textContent = "";
    sync();
  });

  function addChoice(question) {
    const choice = { key: newKey(), label: "", value: "", valueAuto: true, errors: {} };
    question.choices.push(choice);
    return choice;
  }

  function move(items, item, delta) {
    const from = items.indexOf(item);
    const to = from + delta;
    if (to < 0 || to >= items.length) return false;
    items.splice(from, 1);
    items.splice(to, 0, item);
    return true;
  }

  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const question = findQuestion(button.closest(".sb-question").dataset.key);
    const action = button.dataset.action;
    const index = state.questions.indexOf(question);
    if (action === "up" || action === "down") {
      if (move(state.questions, question, action === "up" ? -1 : 1)) {
        render({ key: question.key, selector: '.sb-tools [data-action="' + action + '"]' });
        announce(PB.fill(S.moved, { n: state.questions.indexOf(question) + 1 }));
      }
    } else if (action === "remove") {
      state.questions.splice(index, 1);
      // Rules that pointed at it would point nowhere: they go with it.
      state.questions.forEach((q) => { q.skip = q.skip.filter((rule) => rule.to !== question.key); });
      const next = state.questions[Math.min(index, state.questions.length - 1)];
      render(next ? { key: next.key, selector: '.sb-tools [data-action="remove"]' } : null);
      if (!next) PB.byId("sb-add-question").focus();
      announce(S.removed);
    } else if (action === "add-choice") {
      const choice = addChoice(question);
      render({ key: choice.key, field: "label" });
    } else {
      const row = button.closest(".sb-choice, .sb-rule");
      if (action === "add-rule") {
        const rule = { key: newKey(), when: "", to: "", missing: "", errors: {} };
        question.skip.push(rule);
        render({ key: rule.key, field: "when" });
      } else if (action === "remove-rule") {
        question.skip = question.skip.filter((rule) => rule.key !== row.dataset.key);
        render({ key: question.key, selector: '[data-action="add-rule"]' });
      } else if (action === "remove-choice") {
        const gone = question.choices.find((c) => c.key === row.dataset.key);
        question.choices = question.choices.filter((c) => c !== gone);
        question.skip = question.skip.filter((rule) => rule.when !== gone.value);
        render({ key: question.key, selector: '[data-action="add-choice"]' });
      } else if (action === "choice-up" || action === "choice-down") {
        const choice = question.choices.find((c) => c.key === row.dataset.key);
        if (move(question.choices, choice, action === "choice-up" ? -1 : 1)) {
          render({ key: choice.key, selector: '[data-action="' + action + '"]' });
        }
      }
    }
  });

  PB.byId("sb-add-question").addEventListener("click", () => {
    const question = loadQuestion({ type: "single_choice" });
    question.idAuto = true;
    state.questions.push(question);
    question.id = uniqueId(question);
    addChoice(question); addChoice(question);
    render({ key: question.key, field: "label" });
    announce(PB.fill(S.added, { n: state.questions.length }));
  });

  // -- JSON import and export ----------------------------------------------------
  function importText(raw) {
    let data;
    try {
      data = raw.trim() ? JSON.parse(raw) : { questions: [] };
    } catch (error) {
      throw new Error(PB.fill(S.json_invalid, { reason: error.message }));
    }
    state = loadSurvey(data);
  }

  PB.byId("sb-import").addEventListener("click", () => {
    try {
      importText(textarea.value);
    } catch (error) {
      jsonStatus.textContent = error.message;
      jsonStatus.className = "field-error";
      return;
    }
    broken = false;
    app.hidden = false;
    questionsError.textContent = "";
    render(null);
    jsonStatus.className = "ok";
    jsonStatus.textContent = S.imported;
  });

  PB.byId("sb-download").addEventListener("click", () => {
    sync();
    const blob = new Blob([textarea.value + "\n"], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "survey.json";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });

  form.addEventListener("submit", () => {
    // The JSON edited but not loaded: what was typed last is what is saved.
    if (textarea.value !== lastExport) {
      try { importText(textarea.value); broken = false; sync(); } catch (error) { broken = true; }
    }
    if (broken) hidden.value = textarea.value;
  });

  // -- start-up: the builder takes over the field ------------------------------
  textarea.removeAttribute("name");
  hidden.name = "survey";
  hidden.disabled = false;
  PB.byId("sb-json-tools").hidden = false;
  app.hidden = false;
  let errors = {};
  try { errors = JSON.parse(PB.byId("sb-errors").textContent) || {}; } catch (e) { errors = {}; }
  try {
    importText(textarea.value);
  } catch (error) {
    broken = true;
    hidden.value = textarea.value;
    lastExport = textarea.value;
    app.hidden = true;
    jsonBox.open = true;
    jsonStatus.className = "field-error";
    jsonStatus.textContent = S.broken + " " + error.message;
    return;
  }
  if (!state.questions.length && !state.language) state.language = PB.lang === "fr" ? "fr" : "en";
  placeErrors(errors);
  render(null);
  const firstInvalid = list.querySelector("[aria-invalid=true]");
  if (firstInvalid) firstInvalid.scrollIntoView({ block: "center" });
});
