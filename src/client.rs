//! `lbdns task ...` and `lbdns group ...`: a thin client of the management API that
//! prints tables for people and, with `--json`, the API's JSON for scripts.

use std::fmt::Write as _;

use serde_json::{Value, json};
use ureq::Agent;

/// How to reach the API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: Agent,
}

/// A failed call: the API's message, or why the API could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Self { base, token, agent }
    }

    /// Calls `method path` with an optional JSON body; returns the JSON reply (or Null).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {}", t.trim()));
        let unreachable = |e: ureq::Error| self.unreachable(&e);
        macro_rules! with_auth {
            ($request:expr) => {{
                let request = $request;
                match &auth {
                    Some(auth) => request.header("Authorization", auth),
                    None => request,
                }
            }};
        }
        let response = match (method, body) {
            ("GET", _) => with_auth!(self.agent.get(&url)).call(),
            ("DELETE", _) => with_auth!(self.agent.delete(&url)).call(),
            ("POST", Some(body)) => with_auth!(self.agent.post(&url)).send_json(body),
            ("POST", None) => with_auth!(self.agent.post(&url)).send_empty(),
            ("PUT", Some(body)) => with_auth!(self.agent.put(&url)).send_json(body),
            _ => return Err(ClientError(format!("unsupported call {method} {path}"))),
        };
        let mut response = response.map_err(unreachable)?;
        let status = response.status();
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let hint = match (status.as_u16(), &self.token) {
            (401, None) => "\nthe server needs a token: pass --api-token or set LBDNS_API_TOKEN",
            (401, Some(_)) => {
                "\nthe server refused this token: check --api-token or LBDNS_API_TOKEN against the server's"
            }
            _ => "",
        };
        Err(ClientError(format!(
            "{message} (HTTP {}, {code}){hint}",
            status.as_u16()
        )))
    }

    /// Why the API could not be reached; for a refused connection, what to check.
    fn unreachable(&self, error: &ureq::Error) -> ClientError {
        let reason = match error {
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused"
            }
            ureq::Error::ConnectionFailed => "connection failed",
            _ => {
                return ClientError(format!(
                    "cannot reach the lbdns API at {}: {error}",
                    self.base
                ));
            }
        };
        ClientError(format!(
            "cannot reach the lbdns API at {}: {reason}; is `lbdns serve` running? (--api or LBDNS_API to point elsewhere)",
            self.base
        ))
    }

    /// The site to act on: the one given, else the only one served.
    pub fn site(&self, site: Option<String>) -> Result<String, ClientError> {
        if let Some(site) = site {
            return Ok(site);
        }
        let sites = self.call("GET", "/v1/sites", None)?;
        let names: Vec<&str> = sites["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str())
            .collect();
        match names.as_slice() {
            [only] => Ok((*only).to_owned()),
            _ => Err(ClientError(format!(
                "this server has several sites ({}); pass --site",
                names.join(", ")
            ))),
        }
    }
}

/// A task body from command-line fields.
pub fn task_body(
    id: Option<String>,
    hostname: &str,
    group: &str,
    ttl: Option<u32>,
    answers: Option<u32>,
    disabled: bool,
) -> Value {
    let mut body = json!({"hostname": hostname, "origin_group": group, "enabled": !disabled});
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    if let Some(answers) = answers {
        body["answers"] = json!(answers);
    }
    body
}

/// A group body from `ADDRESS[=WEIGHT]` arguments.
pub fn group_body(policy: &str, origins: &[String]) -> Result<Value, ClientError> {
    let origins: Result<Vec<Value>, ClientError> = origins
        .iter()
        .map(|o| match o.rsplit_once('=') {
            Some((address, weight)) => weight
                .parse::<u32>()
                .map(|w| json!({"address": address, "weight": w}))
                .map_err(|_| ClientError(format!("{o}: the weight after '=' must be a number"))),
            None => Ok(json!({"address": o})),
        })
        .collect();
    Ok(json!({"policy": policy, "origins": origins?}))
}

/// Tasks as a table.
pub fn task_table(tasks: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                text(&t["id"]),
                text(&t["hostname"]),
                text(&t["origin_group"]),
                text(&t["ttl"]),
                text(&t["answers"]),
                text(&t["enabled"]),
                text(&t["status"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "HOSTNAME", "GROUP", "TTL", "ANSWERS", "ENABLED", "STATUS",
        ],
        &rows,
    )
}

/// Origin groups as a table, with the reasons a group is not usable for DNS-only.
pub fn group_table(groups: &[Value]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let origins: Vec<String> = g["origins"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| format!("{}={}", text(&o["address"]), text(&o["weight"])))
                .collect();
            let usable = if g["dns_only"]["usable"].as_bool() == Some(true) {
                "yes".to_owned()
            } else {
                let reasons: Vec<String> = g["dns_only"]["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                format!("no: {}", reasons.join("; "))
            };
            let used: Vec<String> = g["used_by"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![
                text(&g["name"]),
                text(&g["policy"]),
                origins.join(" "),
                usable,
                used.join(","),
            ]
        })
        .collect();
    table(&["NAME", "POLICY", "ORIGINS", "DNS-ONLY", "USED BY"], &rows)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        let tasks = vec![
            json!({"id": "www", "hostname": "www.example.com", "origin_group": "web", "ttl": 30, "answers": 1, "enabled": true, "status": "effective"}),
        ];
        let out = task_table(&tasks);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("HOSTNAME"), lines[1].find("www.example.com"));
        assert!(lines[1].ends_with("effective"));
    }

    #[test]
    fn group_bodies() {
        let body = group_body("weight", &["192.0.2.1=3".into(), "192.0.2.2".into()]).unwrap();
        assert_eq!(body["origins"][0]["weight"], 3);
        assert!(body["origins"][1].get("weight").is_none());
        assert!(group_body("weight", &["192.0.2.1=x".into()]).is_err());
    }
}
