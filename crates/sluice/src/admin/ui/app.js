// The sluice dashboard: hash routes (#/services, #/rollouts/NAME, #/breakers,
// #/flags) over the admin JSON API, refreshed by polling (and the flags'
// event stream). Actions send the admin token kept in sessionStorage; a
// server with a token shows a read-only view without it. The rollout page
// lives in rollout.js, the charts in chart.js.
"use strict";

(function () {
  const POLL_MS = 1500;
  const TOKEN_KEY = "sluice-admin-token";
  const app = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    session: null,
    route: null,
    pages: {},
    phases: {},
    generation: 0,
    timer: null,
  };

  // === DOM helpers ===

  // h("tag", {class, text, onclick, disabled, "aria-x": …}, ...children)
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") el.textContent = String(value);
      else if (key === "class") el.className = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (value === true) el.setAttribute(key, "");
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  const $ = (id) => document.getElementById(id);

  // Replaces a section's content when its data changed, keeping keyboard
  // focus and opened <details> (matched by data-key), and leaving a section
  // alone while one of its inputs is being typed in.
  function patch(container, key, build) {
    if (!container || container.dataset.version === key) return;
    const active = document.activeElement;
    if (active && container.contains(active) && active.tagName === "INPUT") return;
    const focusKey = active && container.contains(active) ? active.dataset.key : null;
    const open = new Set([...container.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
    const closed = new Set([...container.querySelectorAll("details:not([open])[data-key]")].map((d) => d.dataset.key));
    container.replaceChildren(...[].concat(build()).filter(Boolean));
    container.dataset.version = key;
    for (const d of container.querySelectorAll("details[data-key]")) {
      if (open.has(d.dataset.key)) d.open = true;
      if (closed.has(d.dataset.key)) d.open = false;
    }
    if (focusKey) {
      const again = container.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
  }

  // === formatting ===

  const pct = (v) => (v === null || v === undefined ? "—" : `${Number(v.toFixed(2))}%`);
  function when(ms) {
    if (!ms) return "—";
    const d = new Date(ms);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function phaseClass(phase) {
    if (phase === "Succeeded") return "ok";
    if (["RolledBack", "Failed", "RollingBack"].includes(phase)) return "bad";
    if (["Paused", "WaitingPromotion"].includes(phase)) return "wait";
    if (phase === "Idle") return "idle";
    return "run";
  }
  const badge = (text, cls) => h("span", { class: `badge ${cls}`, text });
  const phaseBadge = (phase) => badge(phase, phaseClass(phase));
  function weightBar(weight, label) {
    const fill = h("span");
    fill.style.width = `${Math.max(0, Math.min(100, weight))}%`;
    return h("div", { class: "weight" },
      h("div", { class: "bar", role: "progressbar", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": weight, "aria-valuetext": pct(weight) }, fill),
      h("output", { text: pct(weight) }));
  }
  function table(headers, rows, empty) {
    if (!rows.length) return h("p", { class: "empty", text: empty });
    return h("table", {},
      h("thead", {}, h("tr", {}, headers.map((th) => (typeof th === "string" ? h("th", { scope: "col", text: th }) : th)))),
      h("tbody", {}, rows));
  }

  // === API, session, errors ===

  async function api(method, path, body) {
    const headers = { accept: "application/json" };
    if (app.token) headers.authorization = `Bearer ${app.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path, {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    if (!response.ok) {
      const error = new Error(json && json.detail ? json.detail : `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return json;
  }

  // A viewer token signs in but stays read-only (the session says what the role may do).
  const canAct = () => Boolean(app.session && app.session.authorized && app.session.can_act !== false);

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }
  function clearError() { $("error").hidden = true; }
  function announce(message) {
    const live = $("live");
    live.textContent = "";
    setTimeout(() => { live.textContent = message; }, 50);
  }

  // Runs an action; its outcome is always shown (never a silent failure).
  async function act(label, method, path, body) {
    try {
      await api(method, path, body);
      clearError();
      announce(`${label}: done`);
      await refresh();
      return true;
    } catch (error) {
      if (error.status === 401) {
        showError(`${label} was refused: this action needs the admin token. Sign in with it above. (${error.message})`);
      } else if (error.status === 403) {
        showError(`${label} was refused: ${error.message}`);
      } else {
        showError(`${label} failed: ${error.message}`);
      }
      return false;
    }
  }

  // A modal question before an action that moves traffic at once.
  function confirmAction(title, text, okLabel) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = okLabel;
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-ok").removeEventListener("click", ok);
        $("confirm-cancel").removeEventListener("click", cancel);
        dialog.removeEventListener("close", cancel);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const ok = () => done(true);
      const cancel = () => done(false);
      $("confirm-ok").addEventListener("click", ok);
      $("confirm-cancel").addEventListener("click", cancel);
      dialog.addEventListener("close", cancel);
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function refreshSession() {
    try {
      app.session = await api("GET", "/api/v1/session");
    } catch (error) {
      app.session = null;
    }
    renderMode();
  }

  function renderMode() {
    const mode = $("mode");
    const session = app.session;
    const signedIn = Boolean(session && session.token_required && session.authorized);
    $("signin").hidden = signedIn || (session && !session.token_required);
    $("signedin").hidden = !signedIn;
    if (!session) {
      mode.className = "banner readonly";
      mode.textContent = "Cannot reach the sluice admin API; retrying.";
    } else if (!session.token_required) {
      mode.className = "banner open";
      mode.textContent = "This sluice has no admin token: anyone who can open this page can act. Set SLUICE_ADMIN_TOKEN to require one.";
    } else if (session.authorized && session.can_act === false) {
      mode.className = "banner readonly";
      mode.textContent = `Signed in as ${session.name} (role ${session.role}): read-only; actions need the operator role.`;
    } else if (session.authorized) {
      mode.className = "banner signed";
      mode.textContent = session.name
        ? `Signed in as ${session.name} (role ${session.role}): actions are enabled.`
        : "Signed in: actions are enabled.";
    } else {
      mode.className = "banner readonly";
      mode.textContent = "Read-only view: sign in with the admin token to promote, pause, resume, abort, undo or change flags.";
    }
    document.body.dataset.mode = !session ? "offline" : canAct() ? "actions" : "read-only";
  }

  async function signIn(event) {
    event.preventDefault();
    const given = $("token").value.trim();
    if (!given) return;
    const previous = app.token;
    app.token = given;
    await refreshSession();
    if (app.session && app.session.authorized) {
      sessionStorage.setItem(TOKEN_KEY, given);
      $("token").value = "";
      clearError();
      announce("Signed in: actions are enabled.");
    } else {
      app.token = previous;
      $("token").value = "";
      await refreshSession();
      showError("The server refused this token: the view stays read-only.");
    }
    forceRender();
  }

  function signOut() {
    app.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    refreshSession().then(forceRender);
    announce("Signed out: read-only view.");
  }

  // Announces a rollout's phase change once it is seen.
  function notePhase(service, phase) {
    const before = app.phases[service];
    app.phases[service] = phase;
    if (before && before !== phase) announce(`${service}: ${before} → ${phase}`);
  }

  // === routing and polling ===

  function parseRoute() {
    const hash = location.hash;
    if (!hash.startsWith("#/")) return null;
    const [page, ...rest] = hash.slice(2).split("/");
    if (page === "rollouts" && rest.length) return { page: "rollout", service: decodeURIComponent(rest.join("/")) };
    if (app.pages[page]) return { page };
    return { page: "services" };
  }

  function onRoute(moveFocus) {
    const route = parseRoute() || app.route || { page: "services" };
    app.route = route;
    const section = route.page === "rollout" ? "services" : route.page;
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.section === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const titles = { services: "Services", breakers: "Circuit breakers", flags: "Feature flags" };
    document.title = `${route.page === "rollout" ? `Rollout of ${route.service}` : titles[route.page]} · sluice`;
    const main = $("main");
    main.replaceChildren();
    app.pages[route.page].mount(main, route);
    if (moveFocus) {
      const heading = main.querySelector("h1");
      if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
    }
    refresh();
  }

  function forceRender() {
    for (const el of document.querySelectorAll("[data-version]")) delete el.dataset.version;
    refresh();
  }

  // One poll of the current page; the next is scheduled after it ends.
  async function refresh() {
    const generation = ++app.generation;
    clearTimeout(app.timer);
    const route = app.route;
    let outcome;
    try {
      await app.pages[route.page].update(route);
      outcome = `Updated ${new Date().toLocaleTimeString()}.`;
    } catch (error) {
      outcome = `Could not update (${error.message}); retrying.`;
    }
    // A newer refresh (a route change, an action) owns the page now.
    if (generation !== app.generation) return;
    $("updated").textContent = outcome;
    // A hidden tab polls slowly; showing it again refreshes at once.
    app.timer = setTimeout(refresh, document.hidden ? 10 * POLL_MS : POLL_MS);
  }

  // === pages: services, breakers, flags ===

  app.pages.services = {
    mount(main) {
      main.append(h("h1", { text: "Services" }), h("div", { id: "services" }));
    },
    async update() {
      const list = await api("GET", "/api/v1/rollouts");
      for (const s of list) notePhase(s.service, s.phase);
      patch($("services"), JSON.stringify(list), () => table(
        ["Service", "Phase", "Canary weight", "Step", "Last analysis", "Updated"],
        list.map((s) => h("tr", {},
          h("th", { scope: "row" }, h("a", { href: `#/rollouts/${encodeURIComponent(s.service)}`, text: s.service })),
          h("td", {}, phaseBadge(s.phase)),
          h("td", {}, weightBar(s.weight, `Canary weight of ${s.service}`)),
          h("td", { text: s.steps_total ? `${Math.min(s.step + 1, s.steps_total)} of ${s.steps_total}` : "—" }),
          h("td", {}, s.last_analysis ? verdictBadge(s.last_analysis.verdict) : h("span", { class: "muted", text: "none yet" })),
          h("td", { text: when(s.updated_at) }))),
        "No services are configured."));
    },
  };

  function verdictBadge(verdict) {
    const cls = { pass: "ok", fail: "bad", inconclusive: "wait" }[verdict] || "idle";
    return badge(verdict, cls);
  }

  app.pages.breakers = {
    mount(main) {
      main.append(h("h1", { text: "Circuit breakers" }), h("div", { id: "breakers" }),
        h("h2", { text: "Recent transitions" }), h("div", { id: "transitions" }));
    },
    async update() {
      const [all, transitions] = await Promise.all([
        api("GET", "/api/v1/breakers"), api("GET", "/api/v1/breakers/transitions?limit=50")]);
      const stateClass = { closed: "ok", open: "bad", forced_open: "bad", half_open: "wait", disabled: "idle" };
      const words = (state) => state.replace("_", " ");
      patch($("breakers"), JSON.stringify(all), () => [
        h("p", {}, all.enabled ? "Breakers are enabled." : "Breakers are switched off globally (SLUICE_BREAKERS_ENABLED or the API).",
          all.disabled_partitions.length ? ` Switched off for: ${all.disabled_partitions.join(", ")}.` : ""),
        table(
          ["Breaker", "State", "Mode", h("th", { class: "num", scope: "col", text: "Failure rate" }),
            h("th", { class: "num", scope: "col", text: "Slow calls" }), h("th", { class: "num", scope: "col", text: "Calls in window" }),
            h("th", { class: "num", scope: "col", text: "Failures in a row" }), "Trial calls in", h("th", { class: "num", scope: "col", text: "Fallbacks" })],
          all.breakers.map((b) => h("tr", {},
            h("th", { scope: "row", class: "mono", text: b.id }),
            h("td", {}, badge(words(b.state), stateClass[b.state] || "idle"), b.disabled ? " (off)" : ""),
            h("td", { text: b.mode }),
            h("td", { class: "num", text: pct(b.failure_rate) }),
            h("td", { class: "num", text: pct(b.slow_call_rate) }),
            h("td", { class: "num", text: b.window_calls }),
            h("td", { class: "num", text: b.consecutive_failures }),
            h("td", { text: b.retry_after_ms ? `${(b.retry_after_ms / 1000).toFixed(1)} s` : "—" }),
            h("td", { class: "num", text: b.fallbacks }))),
          "No circuit breakers: no service has a breaker policy.")]);
      patch($("transitions"), JSON.stringify(transitions), () => table(
        ["Time", "Breaker", "Change", "Reason"],
        transitions.slice().reverse().map((t) => h("tr", {},
          h("td", { text: when(t.at) }),
          h("td", { class: "mono", text: t.breaker }),
          h("td", { text: `${words(t.from)} → ${words(t.to)}${t.shadow ? " (shadow: nothing rejected)" : ""}` }),
          h("td", { text: t.reason }))),
        "No transitions yet."));
    },
  };

  app.pages.flags = {
    events: null,
    mount(main) {
      main.append(h("h1", { text: "Feature flags" }), h("div", { id: "flags" }));
      // Changes arrive at once over Server-Sent Events; polling covers the rest.
      if (window.EventSource && !this.events) {
        this.events = new EventSource("/api/v1/flags/events");
        this.events.addEventListener("flag-change", () => { if (app.route.page === "flags") refresh(); });
      }
    },
    async update() {
      const flags = await api("GET", "/api/v1/flags");
      const actions = canAct();
      patch($("flags"), JSON.stringify([flags, actions]), () => [
        actions ? null : h("p", { class: "muted", text: "Read-only: sign in with the admin token to kill, revive or move a flag's percentage." }),
        table(["Flag", "State", "Variants (default first)", "Percentage", "Targeting", "Source", "Actions"],
          flags.map((f) => flagRow(f, actions)), "No feature flags are defined.")]);
    },
  };

  function flagRow(flag, actions) {
    const state = flag.killed ? badge("killed", "bad") : flag.state === "ENABLED" ? badge("enabled", "ok") : badge(flag.state.toLowerCase(), "idle");
    const variants = flag.variants.slice().sort((a, b) => (a === flag.default_variant ? -1 : b === flag.default_variant ? 1 : 0));
    const toggle = flag.killed
      ? h("button", { type: "button", "data-action": "revive", "data-key": `revive-${flag.key}`, disabled: !actions, "aria-label": `Revive flag ${flag.key}`, text: "Revive",
        onclick: () => act(`Revive ${flag.key}`, "POST", `/api/v1/flags/${encodeURIComponent(flag.key)}/revive`) })
      : h("button", { type: "button", class: "danger", "data-action": "kill", "data-key": `kill-${flag.key}`, disabled: !actions, "aria-label": `Kill flag ${flag.key} (serve its default everywhere)`, text: "Kill",
        onclick: () => act(`Kill ${flag.key}`, "POST", `/api/v1/flags/${encodeURIComponent(flag.key)}/kill`) });
    let percentage = h("span", { class: "muted", text: "—" });
    if (flag.percentage !== null && flag.percentage !== undefined) {
      const id = `pct-${flag.key}`;
      const input = h("input", { id, type: "number", min: 0, max: 100, step: "0.01", value: flag.percentage, disabled: !actions, "data-key": id });
      percentage = h("form", { class: "pct-form", onsubmit: (event) => {
        event.preventDefault();
        const value = Number(input.value);
        if (!(value >= 0 && value <= 100)) { showError("A percentage is a number from 0 to 100."); return; }
        act(`Set ${flag.key} to ${value}%`, "POST", `/api/v1/flags/${encodeURIComponent(flag.key)}/percentage`, { percentage: value });
      } },
      h("label", { for: id, class: "sr-only", text: `Percentage of ${flag.key}` }), input,
      h("button", { type: "submit", "data-action": "percentage", "data-key": `set-${flag.key}`, disabled: !actions, text: "Set" }));
    }
    return h("tr", {},
      h("th", { scope: "row", class: "mono", text: flag.key }),
      h("td", {}, state),
      h("td", {}, variants.map((v, i) => [i ? ", " : "", v === flag.default_variant ? h("strong", { text: v }) : v])),
      h("td", {}, percentage),
      h("td", { text: flag.targeting ? "rules" : "—" }),
      h("td", { class: "muted", text: flag.source || "—" }),
      h("td", {}, toggle));
  }

  // Shared with rollout.js.
  window.Sluice = { app, h, $, patch, pct, when, badge, phaseBadge, verdictBadge, weightBar, table, api, act, canAct, confirmAction, notePhase, showError };

  document.addEventListener("DOMContentLoaded", async () => {
    $("signin").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("error-close").addEventListener("click", clearError);
    $("skip").addEventListener("click", (event) => { event.preventDefault(); $("main").focus(); });
    window.addEventListener("hashchange", () => { if (parseRoute()) onRoute(true); });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    await refreshSession();
    if (!parseRoute()) history.replaceState(null, "", "#/services");
    onRoute(false);
  });
})();
