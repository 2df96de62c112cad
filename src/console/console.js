// lbdns console (SPEC §15): a page over the public API and nothing else. Every value from
// the API reaches the page through textContent, never as HTML; the CSP allows only this
// file as script. The token, when the server wants one, is kept in sessionStorage: this
// tab only, gone when it closes.
"use strict";

const TOKEN_KEY = "lbdns-token";
const DELETE_REASON = "Delete is offered for ineffective tasks only: disable a task first.";
const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const toast = document.getElementById("toast");
let poll = null;

// ----------- DOM helpers -----------------------------------------------------------

/** el("tag.class", {attr: value, onclick: fn}, child, "text", ...) */
function el(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag);
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function say(message) {
  toast.textContent = message;
  setTimeout(() => { if (toast.textContent === message) toast.textContent = ""; }, 4000);
}

function badge(kind, text) {
  return el("span.badge." + kind, {}, text || kind[0].toUpperCase() + kind.slice(1));
}

function table(headers, rows) {
  return el("div.scroll", {}, el("table", {},
    el("thead", {}, el("tr", {}, headers.map(([h, cls]) => el("th" + (cls ? "." + cls : ""), {scope: "col"}, h)))),
    el("tbody", {}, rows)));
}

// ----------- The API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = {"Accept": "application/json"};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    askToken(token ? "That token was refused." : null);
    throw new ApiError(401, "unauthorized", "this server needs its API token");
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const message = error.message || text || response.statusText;
    throw new ApiError(response.status, error.code || "error", error.hint ? `${message}; ${error.hint}` : message);
  }
  return data;
}

const site = (name) => "/v1/sites/" + encodeURIComponent(name);

function askToken(problem) {
  stopPolling();
  crumbs.replaceChildren();
  const input = el("input", {type: "password", id: "token", autocomplete: "off", required: true});
  const form = el("form.card", {onsubmit: (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    route();
  }},
    el("h1", {}, "This server needs its API token"),
    problem && el("p.error", {role: "alert"}, problem),
    el("p.hint", {}, "The token of lbdns serve --api-token. It is kept for this tab only."),
    el("label", {for: "token"}, "API token"), input,
    el("p", {}, el("button.primary", {type: "submit"}, "Use this token")));
  show(form);
  input.focus();
}

function failure(error) {
  if (error.status === 401) return; // the token form is showing
  show(el("section.card", {}, el("h1", {}, "Something went wrong"),
    el("p.error", {role: "alert"}, error.message),
    el("p", {}, el("a", {href: "#/"}, "Back to the sites"))));
}

// ----------- Pages -----------------------------------------------------------------

async function sitesPage() {
  crumbs.replaceChildren(el("span", {}, "Sites"));
  const {sites} = await api("GET", "/v1/sites");
  show(el("h1", {}, "Sites"), el("section.card", {},
    sites.length === 0 ? el("p", {}, "No site is served: add zones/<origin>.zone to the served directory.") :
    table([["Site"], ["Origin groups"], ["Tasks"]], sites.map((s) => el("tr", {},
      el("td", {}, el("a", {href: "#/site/" + encodeURIComponent(s.name)}, s.name)),
      el("td", {}, s.origin_groups), el("td", {}, s.tasks))))));
}

function stopPolling() {
  if (poll) { clearTimeout(poll); poll = null; }
}

async function sitePage(name) {
  crumbs.replaceChildren(el("a", {href: "#/"}, "Sites"), el("span", {}, "›"), el("span", {}, name));
  const [{tasks}, {origin_groups: groups}] = await Promise.all([
    api("GET", site(name) + "/tasks"), api("GET", site(name) + "/origin-groups")]);
  const focused = document.activeElement && document.activeElement.id;
  show(el("h1", {}, name),
    tasksSection(name, tasks),
    groupsSection(groups),
    answerSection(name, tasks));
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  // A task on its way to effective is watched until it gets there.
  stopPolling();
  if (tasks.some((t) => t.status === "deploying")) {
    poll = setTimeout(() => { if (location.hash === "#/site/" + encodeURIComponent(name)) route(); }, 1000);
  }
}

function tasksSection(name, tasks) {
  const act = async (what, task) => {
    try {
      if (what === "delete") {
        if (!confirm("Delete task " + task.id + " (" + task.hostname + ")?")) return;
        await api("DELETE", site(name) + "/tasks/" + encodeURIComponent(task.id));
        say("Deleted " + task.hostname);
      } else {
        await api("POST", site(name) + "/tasks/" + encodeURIComponent(task.id) + "/" + what);
        say((what === "enable" ? "Enabled " : "Disabled ") + task.hostname);
      }
      route();
    } catch (error) { say(error.message); }
  };
  const rows = tasks.map((t) => {
    const deletable = t.status === "ineffective";
    return el("tr", {"data-task": t.id},
      el("td", {}, t.hostname),
      el("td", {}, t.origin_group),
      el("td", {}, t.ttl),
      el("td", {}, badge(t.status)),
      el("td", {}, el("div.actions", {},
        el("a.button", {href: "#/site/" + encodeURIComponent(name) + "/task/" + encodeURIComponent(t.id)}, "Edit"),
        t.enabled ? el("button", {type: "button", "data-action": "disable", onclick: () => act("disable", t)}, "Disable")
                  : el("button", {type: "button", "data-action": "enable", onclick: () => act("enable", t)}, "Enable"),
        el("button.danger", {type: "button", "data-action": "delete", disabled: !deletable,
          title: deletable ? null : DELETE_REASON, "aria-describedby": deletable ? null : "delete-reason",
          onclick: () => act("delete", t)}, "Delete"))));
  });
  return el("section.card", {"aria-labelledby": "tasks-title"},
    el("div.actions", {},
      el("h2", {id: "tasks-title"}, "Load-balancing tasks"),
      el("a.button.primary", {href: "#/site/" + encodeURIComponent(name) + "/new", id: "create-task"},
        "Create load balancing task")),
    tasks.length === 0 ? el("p", {}, "No task yet.") :
    table([["Hostname"], ["Origin group"], ["TTL"], ["Status"], ["Actions"]], rows),
    tasks.some((t) => t.status !== "ineffective") ? el("p.hint", {id: "delete-reason"}, DELETE_REASON) : null);
}

function regionKeys(origin) {
  const keys = [];
  if (origin.countries && origin.countries.length) keys.push("countries " + origin.countries.join(", "));
  if (origin.continents && origin.continents.length) keys.push("continents " + origin.continents.join(", "));
  if (origin.subnets && origin.subnets.length) keys.push("subnets " + origin.subnets.join(", "));
  return keys.join("; ") || "—";
}

function groupsSection(groups) {
  return el("section", {"aria-labelledby": "groups-title"},
    el("h2", {id: "groups-title"}, "Origin groups"),
    el("div.grid", {}, groups.map((g) => el("section.card", {"data-group": g.name},
      el("h2", {}, g.name, " ", g.dns_only.usable ? null : badge("unusable", "Not usable for DNS-only")),
      el("p.muted", {}, "Policy: " + g.policy +
        (g.health_check ? " · checked by " + g.health_check.type + " on port " + g.health_check.port : " · not health-checked") +
        (g.used_by.length ? " · used by " + g.used_by.join(", ") : "")),
      g.dns_only.usable ? null : el("ul.reasons", {}, g.dns_only.reasons.map((r) => el("li", {}, r))),
      table([["Origin"], ["Weight"], ["Region", "hide-narrow"], ["Health"]], g.origins.map((o) => el("tr", {},
        el("td", {}, o.address),
        el("td", {}, o.weight === undefined ? 1 : o.weight),
        el("td.hide-narrow", {}, regionKeys(o)),
        el("td", {}, o.health ? [badge(o.health.state), " ",
          el("span.muted", {}, "since " + o.health.since),
          o.health.last_error ? el("div.hint", {}, o.health.last_error) : null] : el("span.muted", {}, "—")))))))));
}

function answerSection(name, tasks) {
  const hostnames = tasks.map((t) => t.hostname);
  const out = el("div", {id: "answer-result", "aria-live": "polite"});
  const host = el("input", {type: "text", id: "ask-hostname", list: "ask-hostnames", required: true,
    value: hostnames[0] || name});
  const type = el("select", {id: "ask-type"}, el("option", {}, "A"), el("option", {}, "AAAA"));
  const client = el("input", {type: "text", id: "ask-client", placeholder: "192.0.2.1 or 203.0.113.0/24"});
  const times = el("input", {type: "number", id: "ask-times", min: 1, max: 1000, value: 100});
  const form = el("form", {onsubmit: async (event) => {
    event.preventDefault();
    const query = new URLSearchParams({hostname: host.value, type: type.value, times: times.value});
    if (client.value.trim()) query.set("client", client.value.trim());
    try {
      const answer = await api("GET", site(name) + "/answer?" + query);
      out.replaceChildren(
        el("p", {}, "Response ", el("strong", {}, answer.rcode),
          answer.ecs_scope === undefined ? "" : " · ECS scope /" + answer.ecs_scope +
            " (every client in that prefix gets the same answer)"),
        answer.answers.length === 0 ? el("p.muted", {}, "No records in the answer.") :
        table([["Answer"], ["Times"], ["Share"]], answer.answers.map((a) => el("tr", {},
          el("td", {}, a.records.length ? a.records.map((r) => el("div", {}, r)) : el("span.muted", {}, "(empty)")),
          el("td", {}, a.count),
          el("td", {}, (100 * a.count / answer.times).toFixed(1) + " %")))));
    } catch (error) { out.replaceChildren(el("p.error", {role: "alert"}, error.message)); }
  }},
    el("datalist", {id: "ask-hostnames"}, hostnames.map((h) => el("option", {value: h}))),
    el("label", {for: "ask-hostname"}, "Hostname"), host,
    el("label", {for: "ask-type"}, "Type"), type,
    el("label", {for: "ask-client"}, "Client address or subnet (as ECS)"), client,
    el("p.hint", {}, "Empty: a client on 127.0.0.1."),
    el("label", {for: "ask-times"}, "Ask this many times"), times,
    el("p", {}, el("button.primary", {type: "submit", id: "ask"}, "Ask")));
  return el("section.card", {"aria-labelledby": "answer-title"},
    el("h2", {id: "answer-title"}, "Which answer does a client get?"),
    el("p.hint", {}, "Asked of the running server exactly as a DNS query is; weighted answers spread over the times asked."),
    form, out);
}

async function taskPage(name, id) {
  const editing = id !== null;
  crumbs.replaceChildren(el("a", {href: "#/"}, "Sites"), el("span", {}, "›"),
    el("a", {href: "#/site/" + encodeURIComponent(name)}, name), el("span", {}, "›"),
    el("span", {}, editing ? "Edit task" : "New task"));
  const [{origin_groups: groups}, task] = await Promise.all([
    api("GET", site(name) + "/origin-groups"),
    editing ? api("GET", site(name) + "/tasks/" + encodeURIComponent(id)) : Promise.resolve(null)]);
  const hostname = el("input", {type: "text", id: "hostname", required: true, autocomplete: "off",
    value: task ? task.hostname : "", placeholder: "www." + name});
  const ttl = el("input", {type: "number", id: "ttl", min: 1, max: 86400, required: true, value: task ? task.ttl : 60});
  const mode = el("select", {id: "mode"},
    el("option", {value: "dns_only"}, "DNS only"),
    el("option", {value: "proxy", disabled: true}, "Proxy (needs an edge proxy lbdns does not run)"),
    el("option", {value: "secure_proxy", disabled: true}, "Secure proxy (needs an edge proxy lbdns does not run)"));
  const problem = el("p.error", {role: "alert", id: "form-error"});
  const choices = groups.map((g) => {
    const radio = el("input", {type: "radio", name: "group", value: g.name, id: "group-" + g.name,
      disabled: !g.dns_only.usable, checked: task ? task.origin_group === g.name : false,
      "aria-describedby": g.dns_only.usable ? null : "why-" + g.name});
    return el("div", {},
      el("label.choice" + (g.dns_only.usable ? "" : ".disabled"), {for: "group-" + g.name}, radio,
        el("span", {}, g.name, el("span.muted", {}, " · " + g.policy + ", " + g.origins.length +
          (g.origins.length === 1 ? " origin" : " origins")))),
      g.dns_only.usable ? null :
        el("ul.reasons", {id: "why-" + g.name}, g.dns_only.reasons.map((r) => el("li", {}, r))));
  });
  const form = el("form.card", {onsubmit: async (event) => {
    event.preventDefault();
    problem.textContent = "";
    const chosen = form.querySelector("input[name=group]:checked");
    if (!chosen) { problem.textContent = "Choose an origin group."; return; }
    const body = {hostname: hostname.value.trim(), mode: mode.value, origin_group: chosen.value,
      ttl: Number(ttl.value)};
    try {
      if (editing) {
        body.answers = task.answers;
        body.enabled = task.enabled;
        await api("PUT", site(name) + "/tasks/" + encodeURIComponent(id), body);
        say("Saved " + body.hostname);
      } else {
        await api("POST", site(name) + "/tasks", body);
        say("Created " + body.hostname);
      }
      location.hash = "#/site/" + encodeURIComponent(name);
    } catch (error) { if (error.status !== 401) { problem.textContent = error.message; } }
  }},
    el("h1", {}, editing ? "Edit task " + id : "Create load balancing task"),
    el("label", {for: "hostname"}, "Hostname"), hostname,
    el("p.hint", {}, "Inside " + name + "; the apex and *.wildcards are allowed."),
    el("label", {for: "mode"}, "Mode"), mode,
    el("fieldset", {}, el("legend", {}, "Origin group"), choices),
    el("label", {for: "ttl"}, "TTL (seconds)"), ttl,
    problem,
    el("div.actions", {},
      el("button.primary", {type: "submit", id: "save"}, editing ? "Save" : "Create"),
      el("a.button", {href: "#/site/" + encodeURIComponent(name)}, "Cancel")));
  show(form);
  hostname.focus();
}

// ----------- Routing ---------------------------------------------------------------

async function route() {
  stopPolling();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "site" && parts[1]) {
      if (parts[2] === "new") await taskPage(parts[1], null);
      else if (parts[2] === "task" && parts[3]) await taskPage(parts[1], parts[3]);
      else await sitePage(parts[1]);
    } else {
      await sitesPage();
    }
  } catch (error) { failure(error); }
}

window.addEventListener("hashchange", () => { route(); main.focus(); });
route();
