// Skip logic on the call screen: a question's data-skip rules
// ([{"when": answer, "to": question id or null for the end}]) hide the
// questions an answer jumps over, the way the server reads them
// (SurveyDefinition.skipped).  A hidden question is not asked: its answer is
// cleared (the server refuses answers to skipped questions) and call.js
// does not require it (it checks .question[data-required]:not([hidden])).
//
// window.PBSurveySkips(root) binds them in a call panel added later (the
// power session screen loads one per contact).
"use strict";
document.addEventListener("DOMContentLoaded", () => bindSurveySkips(document));
window.PBSurveySkips = bindSurveySkips;

function bindSurveySkips(root) {
  const fieldset = root.querySelector('fieldset[data-step="survey"]');
  if (!fieldset) return;
  const questions = Array.from(fieldset.querySelectorAll(".question[data-question]"));
  if (!questions.some((question) => question.dataset.skip)) return;
  const form = fieldset.closest("form") || fieldset;

  function rules(question) {
    try { return JSON.parse(question.dataset.skip || "[]"); } catch (e) { return []; }
  }

  function answer(question) {
    const checked = question.querySelector('input[type=radio]:checked');
    if (!checked) return null;
    if (question.dataset.type === "yes_no") return checked.value === "true" ? "yes" : "no";
    return question.dataset.type === "single_choice" ? checked.value : null;
  }

  function clear(question) {
    question.querySelectorAll("input, textarea").forEach((input) => {
      if (input.type === "radio" || input.type === "checkbox") input.checked = false;
      else input.value = "";
    });
    const error = question.querySelector("[data-error-for]");
    if (error) error.textContent = "";
  }

  function apply() {
    const position = new Map(questions.map((question, index) => [question.dataset.question, index]));
    let index = 0;
    const skipped = new Set();
    while (index < questions.length) {
      const question = questions[index];
      const given = answer(question);
      const rule = given === null ? null : rules(question).find((candidate) => candidate.when === given);
      let following = index + 1;
      if (rule) {
        following = rule.to === null || rule.to === undefined ? questions.length : (position.get(rule.to) ?? index + 1);
        for (let n = index + 1; n < following; n++) skipped.add(questions[n]);
      }
      index = Math.max(following, index + 1);
    }
    questions.forEach((question) => {
      const hide = skipped.has(question);
      if (hide && !question.hidden) clear(question);
      question.hidden = hide;
    });
  }

  form.addEventListener("change", apply);
  form.addEventListener("input", apply);
  // Before call.js checks the step: answers restored from a draft fire no events.
  form.addEventListener("submit", apply, true);
  form.addEventListener("click", apply, true);
  apply();
}
