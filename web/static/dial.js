// Contacts list: click a number, confirm (cancel / this time only / don't ask
// again this session), then start the call and open the call screen.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const PB = window.PB;
  const dialog = PB.byId("dial-confirm");
  const settingsNode = PB.byId("dial-settings");
  let confirm = true;
  try { confirm = JSON.parse(settingsNode.textContent).confirm; } catch (e) { confirm = true; }
  let pending = null;

  async function dial(link) {
    const body = { contact_id: Number(link.dataset.contact), phone_id: Number(link.dataset.phone) };
    if (link.dataset.campaign) body.campaign_id = Number(link.dataset.campaign);
    if (window.PBPhone) {
      // The browser phone lives in the page: the call is placed on the
      // contact's page, which stays open for the whole call (call.js).
      sessionStorage.setItem("pb:dial", JSON.stringify({ contact: body.contact_id, phone: body.phone_id, at: Date.now() }));
      const params = new URLSearchParams();
      if (body.campaign_id) params.set("campaign", body.campaign_id);
      location.href = "/contacts/" + link.dataset.contact + (params.toString() ? "?" + params : "");
      return;
    }
    link.setAttribute("aria-busy", "true");
    try {
      const call = await PB.api("POST", "/api/calls", body);
      const params = new URLSearchParams({ call: call.call_id });
      // The API names the campaign the call was made under, asked for or not.
      if (call.campaign_id) params.set("campaign", call.campaign_id);
      location.href = "/contacts/" + link.dataset.contact + "?" + params.toString();
    } catch (error) {
      link.removeAttribute("aria-busy");
      const pending = error.code === "outcome_pending" && error.body && error.body.error.url;
      showError(link, error.message, pending || "");
    }
  }

  function showError(link, message, pendingUrl) {
    let box = link.closest("li").querySelector(".alert");
    if (!box) {
      box = document.createElement("p");
      box.className = "alert";
      box.setAttribute("role", "alert");
      link.closest("li").appendChild(box);
    }
    box.textContent = message;
    if (pendingUrl) {
      // An answered call's outcome is owed: its contact, one click away.
      const back = document.createElement("a");
      back.href = pendingUrl;
      back.className = "pending-link";
      back.textContent = " →";
      box.appendChild(back);
    }
  }

  document.querySelectorAll("a.dial").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      if (!confirm) { dial(link); return; }
      pending = link;
      dialog.querySelector("[data-dial-name]").textContent = link.dataset.name || "";
      dialog.querySelector("[data-dial-number]").textContent = link.dataset.number || "";
      dialog.showModal();
    });
  });

  dialog.addEventListener("close", async () => {
    const link = pending;
    pending = null;
    if (!link) return;
    if (dialog.returnValue === "always") {
      confirm = false;
      try { await PB.api("POST", "/api/preferences", { confirm_before_dial: false }); } catch (e) { /* asked again next page */ }
      dial(link);
    } else if (dialog.returnValue === "once") {
      dial(link);
    } else {
      link.focus();
    }
  });
});
