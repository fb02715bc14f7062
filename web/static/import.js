// The CSV import page: send the file with a progress bar, then follow the
// background import until its report is ready.  No user-facing text lives
// here: the page hands it over, translated, in data attributes.
"use strict";
(function () {
  const { byId, fill, csrf, lang } = window.PB;
  const number = (value) => new Intl.NumberFormat(lang).format(value);

  function showError(message) {
    const alert = byId("import-upload-error");
    alert.textContent = message;
    alert.hidden = false;
  }

  // Sending the file.  The CSRF token goes in a header so that the server
  // streams the body to disk instead of reading the whole form first.
  function sendWithProgress(form) {
    const bar = byId("upload-bar");
    const status = byId("upload-status");
    const button = form.querySelector("button[type=submit]");
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-CSRF-Token", csrf);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.floor((event.loaded * 100) / event.total);
      bar.value = percent;
      status.textContent = fill(form.dataset.uploading, { percent });
    });
    const failed = (message) => {
      button.disabled = false;
      bar.hidden = true;
      status.hidden = true;
      showError(message || form.dataset.uploadFailed);
    };
    request.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (e) { body = null; }
      if (request.status === 202 && body && body.page) {
        window.location.assign(body.page);
      } else {
        failed(body && body.error && body.error.message);
      }
    });
    request.addEventListener("error", () => failed());
    button.disabled = true;
    bar.hidden = false;
    status.hidden = false;
    byId("import-upload-error").hidden = true;
    request.send(new FormData(form));
  }

  // Following an import: the bar and the row count, until the report.
  function follow(section) {
    const bar = byId("import-bar");
    const rows = byId("import-rows");
    const show = (job) => {
      bar.value = job.percent;
      bar.textContent = job.percent + "%";
      rows.textContent = job.rows_estimate
        ? fill(section.dataset.rows, { done: number(job.rows_done), total: number(job.rows_estimate) })
        : fill(section.dataset.rowsUnknown, { done: number(job.rows_done) });
    };
    const poll = async () => {
      try {
        const job = await window.PB.api("GET", section.dataset.progressUrl);
        if (job.finished) {
          window.location.reload();
          return;
        }
        show(job);
      } catch (e) {
        // A blip (a restart, the network): keep asking.
      }
      setTimeout(poll, 1000);
    };
    setTimeout(poll, 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = byId("import-form");
    if (form && window.XMLHttpRequest && window.FormData) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        sendWithProgress(form);
      });
    }
    const section = byId("import-job");
    if (section && section.dataset.state === "running") follow(section);
  });
})();
