// The browser phone: a WebRTC SIP phone (JsSIP, vendor/) registered with
// Asterisk while its volunteer has a page of the app open.  The dialer calls
// it like a desk phone; it answers by itself when this browser asked for the
// call (the volunteer clicked Call), and rings otherwise.
//
// window.PBPhone lets the calling scripts ask whether it can take a call
// (ready()) and tell it one is coming (expectCall()).
"use strict";
(function () {
  const box = document.getElementById("browser-phone");
  if (!box || !window.PB) return;
  const S = PB.strings.phone || {};
  const $ = (id) => document.getElementById(id);
  const stateText = $("phone-state");
  const audio = $("phone-audio");
  const muteButton = $("phone-mute");
  const micSelect = $("phone-mic");
  const level = $("phone-level");
  // A call this browser asked for in the last EXPECT_MS is answered at once.
  // In localStorage: the Call button may sit in another tab than the phone.
  const EXPECTED_KEY = "pb:phone-expected";
  const EXPECT_MS = 90000;
  const MIC_KEY = "pb:phone-mic";

  let account = null;
  let ua = null;
  let stream = null;
  let session = null;
  let muted = false;
  let testing = false;
  let meterContext = null;

  function setState(name, text) {
    box.dataset.state = name;
    stateText.textContent = text;
  }
  function show(id, visible) { $(id).hidden = !visible; }

  function idleState() {
    if (ua && ua.isRegistered()) setState("ready", S.ready);
    else if (ua) setState("reconnecting", S.reconnecting);
  }

  async function load() {
    if (!window.JsSIP || !window.RTCPeerConnection || !navigator.mediaDevices) {
      setState("unsupported", S.unsupported);
      return;
    }
    try {
      account = await PB.api("GET", "/api/phone");
    } catch (error) {
      setState("unavailable", error.message);
      return;
    }
    if (account.kind !== "browser") { box.hidden = true; return; }
    // Explain before the browser asks: a prompt out of nowhere gets "Block".
    let permission = "prompt";
    try {
      permission = (await navigator.permissions.query({ name: "microphone" })).state;
    } catch (e) { /* Firefox before 131 cannot tell: explain first */ }
    if (permission === "granted") start();
    else if (permission === "denied") denied();
    else { setState("intro", S.intro); show("phone-intro", true); }
  }

  function denied() {
    setState("denied", S.denied);
    show("phone-intro", false);
    show("phone-controls", false);
    show("phone-denied", true);
  }

  function openMicrophone(deviceId) {
    return navigator.mediaDevices.getUserMedia({
      audio: deviceId ? { deviceId: { exact: deviceId } } : true,
      video: false,
    });
  }

  async function start() {
    show("phone-intro", false);
    show("phone-denied", false);
    setState("starting", S.starting);
    try {
      stream = await openMicrophone(localStorage.getItem(MIC_KEY) || "");
    } catch (error) {
      if (error.name === "NotAllowedError" || error.name === "SecurityError") { denied(); return; }
      // The remembered headset is gone: any microphone will do.
      localStorage.removeItem(MIC_KEY);
      try { stream = await openMicrophone(""); } catch (again) {
        if (again.name === "NotAllowedError") denied(); else setState("no-microphone", S.no_microphone);
        return;
      }
    }
    show("phone-controls", true);
    meter();
    listMicrophones();
    register();
  }

  // One phone per volunteer: the registration (max_contacts 1) belongs to
  // the newest tab, which tells the others to stop theirs rather than let
  // them take it back at each refresh.  A tab on a call keeps going.
  const tabs = "BroadcastChannel" in window ? new BroadcastChannel("pb-phone") : null;
  if (tabs) {
    tabs.onmessage = (event) => {
      if (event.data !== "taken" || !ua || session) return;
      ua.stop();
      ua = null;
      setState("elsewhere", S.elsewhere);
      show("phone-controls", false);
      show("phone-here", true);
    };
  }

  function register() {
    if (tabs) tabs.postMessage("taken");
    show("phone-here", false);
    show("phone-controls", true);
    setState("connecting", S.registering);
    ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(account.websocket)],
      uri: account.uri,
      authorization_user: account.username,
      password: account.password,
      display_name: account.display_name,
      register: true,
      // Short: a closed tab stops ringing soon (the PBX also qualifies it).
      register_expires: 120,
      session_timers: false,
      user_agent: "phone-bank",
      // After a lost connection: retry from 2 s, backing off to 30 s.
      connection_recovery_min_interval: 2,
      connection_recovery_max_interval: 30,
    });
    // A phone stopped for another tab still reports its unregistering: ignored.
    const mine = ua;
    const on = (name, handler) => mine.on(name, (event) => { if (ua === mine) handler(event); });
    on("registered", () => { if (!session) setState("ready", S.ready); wakeWaiters(); });
    on("unregistered", () => { if (!session) setState("reconnecting", S.reconnecting); });
    on("disconnected", () => setState("reconnecting", S.reconnecting));
    on("registrationFailed", (event) => {
      // A lost connection re-registers by itself on reconnecting.
      if (event.cause === JsSIP.C.causes.CONNECTION_ERROR) setState("reconnecting", S.reconnecting);
      else setState("failed", PB.fill(S.failed, { cause: event.cause }));
    });
    on("newRTCSession", (event) => arrived(event));
    ua.start();
  }

  function arrived(event) {
    const call = event.session;
    if (event.originator === "local") { follow(call); return; }
    if (session) { call.terminate({ status_code: 486 }); return; }
    follow(call);
    const expected = Number(localStorage.getItem(EXPECTED_KEY) || 0);
    if (Date.now() - expected < EXPECT_MS) answer();
    else { setState("ringing", S.ringing); show("phone-answer", true); }
  }

  function answer() {
    if (!session || session.isEstablished()) return;
    localStorage.removeItem(EXPECTED_KEY);
    show("phone-answer", false);
    session.answer({ mediaStream: stream, pcConfig: { iceServers: account.ice_servers } });
  }

  function follow(call) {
    session = call;
    show("phone-hangup", true);
    const attach = (connection) => {
      connection.addEventListener("track", (event) => { audio.srcObject = event.streams[0]; });
    };
    if (call.connection) attach(call.connection);
    else call.on("peerconnection", (event) => attach(event.peerconnection));
    // JsSIP sends its SDP once ICE gathering completes, which an unreachable
    // STUN or TURN server can stretch for many seconds: 1.5 s after the
    // first candidate is enough to find the paths there are.
    let iceCap = null;
    call.on("icecandidate", (event) => {
      if (iceCap === null) iceCap = setTimeout(event.ready, 1500);
    });
    call.on("confirmed", () => {
      if (call === session) setState(testing ? "testing" : "talking", testing ? S.testing : S.talking);
    });
    const ended = () => {
      if (call !== session) return;
      session = null;
      testing = false;
      audio.srcObject = null;
      show("phone-hangup", false);
      show("phone-answer", false);
      idleState();
      wakeWaiters();
    };
    call.on("ended", ended);
    call.on("failed", ended);
  }

  function hangUp() {
    if (session && !session.isEnded()) session.terminate();
  }

  function testCall() {
    if (!ua || !ua.isRegistered() || session) return;
    testing = true;
    setState("testing", S.testing);
    ua.call("sip:" + account.echo_test + "@" + account.uri.split("@")[1], {
      mediaStream: stream,
      pcConfig: { iceServers: account.ice_servers },
    });
  }

  function setMuted(value) {
    muted = value;
    if (stream) stream.getAudioTracks().forEach((track) => { track.enabled = !muted; });
    muteButton.setAttribute("aria-pressed", muted ? "true" : "false");
    muteButton.textContent = muted ? S.unmute : S.mute;
    box.classList.toggle("muted", muted);
    $("phone-muted").hidden = !muted;
  }

  async function listMicrophones() {
    let devices = [];
    try { devices = await navigator.mediaDevices.enumerateDevices(); } catch (e) { return; }
    const current = stream && stream.getAudioTracks()[0] && stream.getAudioTracks()[0].getSettings().deviceId;
    micSelect.replaceChildren();
    devices.filter((device) => device.kind === "audioinput").forEach((device, index) => {
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || "Microphone " + (index + 1);
      option.selected = device.deviceId === current;
      micSelect.appendChild(option);
    });
  }

  async function chooseMicrophone() {
    let chosen;
    try { chosen = await openMicrophone(micSelect.value); } catch (e) { listMicrophones(); return; }
    localStorage.setItem(MIC_KEY, micSelect.value);
    const track = chosen.getAudioTracks()[0];
    // Mid-call too: the call's sender switches track without renegotiating.
    if (session && session.connection) {
      session.connection.getSenders()
        .filter((sender) => sender.track && sender.track.kind === "audio")
        .forEach((sender) => sender.replaceTrack(track));
    }
    if (stream) stream.getTracks().forEach((old) => old.stop());
    stream = chosen;
    setMuted(muted);
    meter();
  }

  function meter() {
    // The input level, so a volunteer sees their headset works before a call.
    try {
      if (meterContext) meterContext.close();
      meterContext = new AudioContext();
      const analyser = meterContext.createAnalyser();
      analyser.fftSize = 512;
      meterContext.createMediaStreamSource(stream).connect(analyser);
      const samples = new Float32Array(analyser.fftSize);
      const context = meterContext;
      // Started without a click (permission already granted), it waits for
      // one: browsers start audio only after the person does something.
      if (context.state === "suspended") {
        document.addEventListener("click", () => context.resume(), { once: true });
      }
      const tick = () => {
        if (context !== meterContext) return;
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const sample of samples) sum += sample * sample;
        level.value = muted ? 0 : Math.min(1, Math.sqrt(sum / samples.length) * 4);
        setTimeout(tick, 100);
      };
      tick();
    } catch (e) { level.hidden = true; }
  }

  const readyWaiters = [];
  function wakeWaiters() {
    if (!ua || !ua.isRegistered() || session) return;
    readyWaiters.splice(0).forEach((wake) => wake(true));
  }

  window.PBPhone = {
    ready: () => Boolean(ua && ua.isRegistered() && !session),
    // Resolves true once it can take a call, false after ``ms``.
    whenReady(ms) {
      if (this.ready()) return Promise.resolve(true);
      return new Promise((resolve) => {
        readyWaiters.push(resolve);
        setTimeout(() => resolve(false), ms);
      });
    },
    busy: () => Boolean(session),
    expectCall: () => localStorage.setItem(EXPECTED_KEY, String(Date.now())),
    // The call was refused: nothing is coming, so nothing may be answered.
    forgetCall: () => localStorage.removeItem(EXPECTED_KEY),
    // For the tests and the support page: the RTP packets of the call, both ways.
    async rtpStats() {
      if (!session || !session.connection) return null;
      const found = { sent: 0, received: 0 };
      (await session.connection.getStats()).forEach((report) => {
        if (report.type === "outbound-rtp" && report.kind === "audio") found.sent += report.packetsSent;
        if (report.type === "inbound-rtp" && report.kind === "audio") found.received += report.packetsReceived;
      });
      return found;
    },
  };

  $("phone-start").addEventListener("click", start);
  $("phone-here").addEventListener("click", register);
  $("phone-retry").addEventListener("click", start);
  $("phone-answer").addEventListener("click", answer);
  $("phone-hangup").addEventListener("click", hangUp);
  $("phone-test").addEventListener("click", testCall);
  muteButton.addEventListener("click", () => setMuted(!muted));
  micSelect.addEventListener("change", chooseMicrophone);
  window.addEventListener("beforeunload", (event) => {
    if (session) { event.preventDefault(); event.returnValue = S.leave_warning; }
  });
  // Unregister on leaving, so the PBX does not ring a closed page; a page
  // the browser brings back from its cache (Back) registers again.
  window.addEventListener("pagehide", () => { if (ua) ua.stop(); ua = null; });
  window.addEventListener("pageshow", (event) => { if (event.persisted && stream) register(); });
  document.addEventListener("DOMContentLoaded", load);
})();
