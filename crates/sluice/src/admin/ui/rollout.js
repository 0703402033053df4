// The rollout page (#/rollouts/NAME): phase and weight, the operator's
// actions, the step timeline, per-version charts from the sampled series,
// each analysis run's checks, and the event history.
"use strict";

(function () {
  const S = window.Sluice;
  const { h, $ } = S;
  const FINAL = ["Succeeded", "RolledBack", "Failed"];
  const KEEP_SAMPLES = 360;
  const buffer = { service: null, samples: [] };

  function stepLabel(step) {
    if ("weight" in step) return `Weight ${S.pct(step.weight)}`;
    if ("pause" in step) return step.pause ? `Pause ${step.pause}` : "Pause until resumed";
    if ("approve" in step) {
      const a = step.approve || {};
      return a.deadline ? `Approval (within ${a.deadline}, then ${a.on_deadline})` : "Approval";
    }
    if ("cohort" in step) {
      const c = step.cohort;
      if (c.all) return "Cohort: every tenant";
      const parts = [];
      if (c.tenants && c.tenants.length) parts.push(c.tenants.join(", "));
      if (c.percent) parts.push(`${S.pct(c.percent)} of tenants`);
      return `Cohort: ${parts.join(" + ") || "none"}`;
    }
    if ("replace" in step) return `Replace: ${step.replace.new} new, ${step.replace.old} old`;
    return Object.keys(step)[0] || "step";
  }

  function timeline(status) {
    if (!status.plan || !status.plan.length) return h("p", { class: "empty", text: "No rollout has run for this service." });
    const final = FINAL.includes(status.phase);
    return h("ol", { class: "timeline", "aria-label": "Steps of the plan" },
      status.plan.map((step, i) => {
        let cls = "", state = "";
        if (i < status.step) { cls = "done"; state = "done"; }
        else if (i === status.step && !final) { cls = "current"; state = status.phase === "Paused" ? "waiting" : "now"; }
        else if (i === status.step && status.phase === "Succeeded") { cls = "done"; state = "promoted here"; }
        else if (i === status.step) { cls = "stopped"; state = `${status.phase} here`; }
        else if (final) { state = "skipped"; }
        return h("li", { class: cls, "aria-current": cls === "current" ? "step" : null },
          stepLabel(step), state ? h("span", { class: "state", text: `(${state})` }) : null);
      }));
  }

  function stepText(status) {
    if (!status.steps_total) return "—";
    if (status.step >= status.steps_total) return `all ${status.steps_total} done`;
    return `${status.step + 1} of ${status.steps_total}`;
  }

  function summary(status) {
    const item = (term, ...value) => h("div", {}, h("dt", { text: term }), h("dd", {}, ...value));
    return h("dl", { class: "summary" },
      item("Canary weight", S.weightBar(status.weight, `Canary weight of ${status.service}`)),
      item("Step", stepText(status)),
      item("Failed analysis runs", `${status.failed_runs} (rollback at ${status.threshold})`),
      item("Started", S.when(status.started_at)),
      item("Stable", h("span", { class: "mono", text: (status.stable || []).join(", ") || "—" })),
      item("Canary", h("span", { class: "mono", text: (status.canary || []).join(", ") || "—" })));
  }

  function actions(status, revisions) {
    const service = status.service;
    const phase = status.phase;
    const live = phase !== "Idle" && !FINAL.includes(phase);
    const allowed = S.canAct();
    const path = (action) => `/api/v1/rollouts/${encodeURIComponent(service)}/${action}`;
    const button = (action, label, applies, extra) => h("button", Object.assign({
      type: "button", "data-action": action, "data-key": `action-${action}`,
      disabled: !allowed || !applies, text: label,
    }, extra));
    const previous = revisions.length >= 2 ? revisions[revisions.length - 2] : null;
    return h("div", { class: "actions", role: "group", "aria-label": "Rollout actions" },
      button("promote", "Promote", live, { class: "primary",
        onclick: () => S.act(`Promote ${service}`, "POST", path("promote")) }),
      button("pause", "Pause", phase === "Progressing",
        { onclick: () => S.act(`Pause ${service}`, "POST", path("pause")) }),
      button("resume", "Resume", phase === "Paused" || phase === "WaitingPromotion",
        { onclick: () => S.act(`Resume ${service}`, "POST", path("resume")) }),
      button("abort", "Abort…", live, { class: "danger", onclick: async () => {
        const sure = await S.confirmAction(`Abort the rollout of ${service}?`,
          `All traffic goes back to stable (${(status.stable || []).join(", ")}) at once; the canary keeps running but gets no traffic.`,
          "Abort rollout");
        if (sure) S.act(`Abort ${service}`, "POST", path("abort"));
      } }),
      button("undo", "Undo…", Boolean(previous) && !live, { class: "danger", onclick: async () => {
        const sure = await S.confirmAction(`Undo the last change of ${service}?`,
          `All traffic moves at once to revision ${previous.number} (${previous.endpoints.join(", ")}), served since ${S.when(previous.at)}: ${previous.cause}.`,
          `Go back to revision ${previous.number}`);
        if (sure) S.act(`Undo ${service}`, "POST", path("undo"), { to_revision: previous.number });
      } }),
      h("span", { class: "note", text: allowed
        ? (live ? "Abort and undo ask for confirmation." : "No rollout in progress.")
        : "Read-only: sign in with the admin token to act." }));
  }

  function charts(service, samples) {
    if (service.startsWith("flag:")) return h("p", { class: "empty", text: "A flag release plan sends no traffic through the proxy: no charts." });
    const line = (name, color, dash, pick) => ({ name, color, dash, points: samples.map((s) => [s.at, pick(s)]) });
    const latency = (version) => SluiceChart.lineChart({
      title: `Latency, ${version} (ms)`, unit: "ms", range: "zero",
      series: [
        line("p50", "#15803d", null, (s) => s[version].p50_ms),
        line("p95", "#a16207", "6 3", (s) => s[version].p95_ms),
        line("p99", "#b91c1c", "2 3", (s) => s[version].p99_ms),
      ],
    });
    return [
      SluiceChart.lineChart({ title: "Canary weight", unit: "%", range: "zero",
        series: [line("canary weight", "#c2410c", null, (s) => s.weight)] }),
      SluiceChart.lineChart({ title: "Success rate", unit: "%", range: "percent",
        series: [line("stable", "#1d4ed8", null, (s) => s.stable.success_rate),
          line("canary", "#c2410c", "6 3", (s) => s.canary.success_rate)] }),
      latency("canary"),
      latency("stable"),
    ];
  }

  function checkValue(value, unit) {
    if (value === null || value === undefined) return "—";
    return unit === "percent" ? S.pct(value) : `${Number(value.toFixed(2))} ${unit}`;
  }

  function runs(decisions) {
    const withAnalysis = decisions.filter((d) => d.analysis).reverse();
    if (!withAnalysis.length) return h("p", { class: "empty", text: "No analysis run yet." });
    return withAnalysis.map((d, i) => {
      const run = d.analysis;
      return h("details", { class: "run", "data-key": `run-${d.rollout_id}-${d.seq}`, open: i === 0 },
        h("summary", {}, `${S.when(d.at)} · `, S.verdictBadge(run.verdict),
          ` · canary ${run.canary_requests} req, stable ${run.stable_requests} req · ${d.kind.replace("_", " ")}`),
        h("p", { text: run.reason }),
        S.table(["Check", "Verdict", "Canary", "Stable", "Bound", "Why"],
          run.checks.map((c) => h("tr", {},
            h("th", { scope: "row", text: c.name }),
            h("td", {}, S.verdictBadge(c.verdict)),
            h("td", { class: "num", text: checkValue(c.value, c.unit) }),
            h("td", { class: "num", text: checkValue(c.stable_value, c.unit) }),
            h("td", { text: c.bound_expr || checkValue(c.bound, c.unit) }),
            h("td", { text: c.reason }))),
          "This run had no checks."));
    });
  }

  function events(decisions) {
    return S.table(["Time", "Decision", "Phase", "Weight", "Reason"],
      decisions.slice().reverse().map((d) => h("tr", {},
        h("td", { text: S.when(d.at) }),
        h("td", { text: d.kind.replace("_", " ") }),
        h("td", { text: d.from === d.to ? d.to : `${d.from} → ${d.to}` }),
        h("td", { class: "num", text: S.pct(d.weight) }),
        h("td", { text: d.reason }))),
      "No decisions recorded yet.");
  }

  S.app.pages.rollout = {
    mount(main, route) {
      if (buffer.service !== route.service) {
        buffer.service = route.service;
        buffer.samples = [];
      }
      main.append(
        h("p", {}, h("a", { href: "#/services", text: "← All services" })),
        h("h1", {}, "Rollout of ", h("span", { class: "mono", text: route.service })),
        h("div", { id: "r-head" }),
        h("div", { id: "r-actions" }),
        h("h2", { text: "Steps" }), h("div", { id: "r-steps" }),
        h("h2", { text: "Traffic by version" }),
        h("p", { class: "muted", text: "One point per sampling period of the proxy's counters (a few seconds); the last 12 minutes." }),
        h("div", { id: "r-charts", class: "charts" }),
        h("h2", { text: "Analysis runs" }), h("div", { id: "r-runs" }),
        h("h2", { text: "Event history (newest first)" }), h("div", { id: "r-events" }));
    },
    async update(route) {
      const base = `/api/v1/rollouts/${encodeURIComponent(route.service)}`;
      const since = buffer.samples.length ? buffer.samples[buffer.samples.length - 1].at : 0;
      const [status, revisions, series] = await Promise.all([
        S.api("GET", base), S.api("GET", `${base}/revisions`), S.api("GET", `${base}/series?since=${since}`)]);
      if (buffer.service !== route.service) return;
      buffer.samples = buffer.samples.concat(series.samples).slice(-KEEP_SAMPLES);
      S.notePhase(status.service, status.phase);
      const head = { phase: status.phase, weight: status.weight, step: status.step, id: status.rollout_id,
        failed: status.failed_runs, stable: status.stable, canary: status.canary, started: status.started_at };
      S.patch($("r-head"), JSON.stringify(head), () => [
        h("p", { class: "phase" }, "Phase ", S.phaseBadge(status.phase),
          status.rollout_id ? h("span", { class: "muted", text: ` rollout #${status.rollout_id}` }) : null),
        summary(status)]);
      S.patch($("r-actions"), JSON.stringify([status.phase, S.canAct(), revisions.length]),
        () => actions(status, revisions));
      S.patch($("r-steps"), JSON.stringify([status.plan, status.step, status.phase]), () => timeline(status));
      const last = buffer.samples[buffer.samples.length - 1];
      S.patch($("r-charts"), `${buffer.samples.length}:${last ? last.at : 0}`, () => charts(status.service, buffer.samples));
      const decisions = status.decisions || [];
      const newest = decisions.length ? decisions[decisions.length - 1].seq : -1;
      S.patch($("r-runs"), `${status.rollout_id}:${newest}`, () => runs(decisions));
      S.patch($("r-events"), `${status.rollout_id}:${newest}`, () => events(decisions));
    },
  };
})();
