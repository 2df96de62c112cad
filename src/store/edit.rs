//! Changes as data: every change the API and the CLI can make to a site is an [`Edit`],
//! and [`apply`] is the one pure function that makes it, from a site's spec to the next.
//!
//! Nothing here reads a file, takes a lock or knows about HTTP: the writer checks and
//! compiles what `apply` returns, and can apply the same edit again to a newer version of
//! the site (a fleet node that lost an etcd race does). An edit is refused with an
//! [`EditError`], whose wording says what is wrong in the site's own terms; which status
//! it becomes, and which command or request would fix it, is the caller's business.

use crate::api_types::{Refusal, StickinessPatch, TaskPatch};
use crate::site::spec::{GroupSpec, Lined, SecondarySpec, SiteSpec, Stickiness, TaskSpec};
use crate::site::{self, spec_task_id};
use hickory_proto::rr::Name;

/// One change to one site.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Adds a task; its id is the spec's, or else derived from the hostname and made
    /// unique in the site.
    CreateTask {
        spec: TaskSpec,
    },
    /// Creates the task `id` or replaces its fields (the id stays). With `create_only`
    /// an existing task is left alone: the same task again is no change (a retry), a
    /// different one is refused.
    PutTask {
        id: String,
        spec: TaskSpec,
        create_only: bool,
    },
    /// Changes some fields of the task `id`, the others as they are.
    UpdateTask {
        id: String,
        patch: TaskPatch,
    },
    EnableTask {
        id: String,
    },
    DisableTask {
        id: String,
    },
    /// Removes a task; only a disabled one.
    DeleteTask {
        id: String,
    },
    /// Creates or replaces an origin group.
    PutGroup {
        name: String,
        /// Boxed: a group spec is several times the size of every other edit.
        spec: Box<GroupSpec>,
    },
    /// Removes an origin group no task uses.
    DeleteGroup {
        name: String,
    },
    /// Replaces the servers allowed to transfer the zone.
    SetSecondaries {
        secondaries: Vec<String>,
    },
}

/// What an edit is about: what its reply shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Task {
        id: String,
        created: bool,
    },
    Group(String),
    Secondaries,
    /// The item is gone: nothing to show.
    Removed,
}

/// The outcome of [`apply`].
#[derive(Debug)]
pub struct Edited {
    /// The site after the edit; `None` when it already was as asked (nothing to check,
    /// write or publish).
    pub spec: Option<SiteSpec>,
    pub subject: Subject,
    /// The field path of the item the edit sent (`tasks[3].`), so that problems found
    /// when the result is checked name fields relative to what was sent.
    pub focus: String,
}

/// Why an edit cannot be made to the site as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    #[error("there is no task {id:?}")]
    NoTask { id: String },
    #[error("there is no origin group {name:?}")]
    NoGroup { name: String },
    #[error("a task with id {id} already exists")]
    TaskExists { id: String },
    #[error("a different task with id {id} already exists")]
    DifferentTaskExists { id: String },
    #[error("task {id} is enabled: only a disabled task can be deleted")]
    TaskEnabled { id: String },
    #[error("origin group {name} is used by task {}", users.join(", task "))]
    GroupInUse { name: String, users: Vec<String> },
    #[error("the body's id {body:?} differs from the path's {path:?}; ids cannot be changed")]
    IdChanged { path: String, body: String },
}

impl EditError {
    /// The kind of refusal, for a client to say what would fix it.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::NoTask { .. } => Refusal::NoTask,
            Self::NoGroup { .. } => Refusal::NoGroup,
            Self::TaskExists { .. } => Refusal::TaskExists,
            Self::DifferentTaskExists { .. } => Refusal::DifferentTaskExists,
            Self::TaskEnabled { .. } => Refusal::TaskEnabled,
            Self::GroupInUse { .. } => Refusal::GroupInUse,
            Self::IdChanged { .. } => Refusal::IdChanged,
        }
    }
}

impl Edit {
    /// The task or group the edit names, for messages and logs.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::CreateTask { .. } | Self::SetSecondaries { .. } => None,
            Self::PutTask { id, .. }
            | Self::UpdateTask { id, .. }
            | Self::EnableTask { id }
            | Self::DisableTask { id }
            | Self::DeleteTask { id } => Some(id),
            Self::PutGroup { name, .. } | Self::DeleteGroup { name } => Some(name),
        }
    }
}

/// Makes `edit` to `site`. Pure: the same site and edit give the same outcome.
pub fn apply(site: &SiteSpec, edit: &Edit) -> Result<Edited, EditError> {
    let changed = |spec: SiteSpec, subject: Subject, focus: String| Edited {
        spec: Some(spec),
        subject,
        focus,
    };
    let unchanged = |subject: Subject| Edited {
        spec: None,
        subject,
        focus: String::new(),
    };
    match edit {
        Edit::CreateTask { spec } => {
            let id = match &spec.id {
                Some(id) if find_task(site, id).is_some() => {
                    return Err(EditError::TaskExists {
                        id: id.value.clone(),
                    });
                }
                Some(id) => id.value.clone(),
                None => fresh_id(site, &spec.hostname),
            };
            let (next, focus) = push_task(site, spec, &id);
            Ok(changed(next, Subject::Task { id, created: true }, focus))
        }
        Edit::PutTask {
            id,
            spec,
            create_only,
        } => {
            if let Some(body) = spec.id.as_ref().filter(|body| body.as_str() != id) {
                return Err(EditError::IdChanged {
                    path: id.clone(),
                    body: body.value.clone(),
                });
            }
            // The id becomes explicit, so a new hostname cannot change a derived one.
            let spec = with_id(spec, id);
            let subject = |created| Subject::Task {
                id: id.clone(),
                created,
            };
            match find_task(site, id) {
                Some(index) if *create_only => match site.tasks[index].value == spec {
                    true => Ok(unchanged(subject(false))),
                    false => Err(EditError::DifferentTaskExists { id: id.clone() }),
                },
                Some(index) => {
                    let mut next = site.clone();
                    next.tasks[index] = Lined::new(spec);
                    Ok(changed(next, subject(false), format!("tasks[{index}].")))
                }
                None => {
                    let (next, focus) = push_task(site, &spec, id);
                    Ok(changed(next, subject(true), focus))
                }
            }
        }
        Edit::UpdateTask { id, patch } => {
            let index = find_task(site, id).ok_or_else(|| no_task(id))?;
            let subject = Subject::Task {
                id: id.clone(),
                created: false,
            };
            let old = &site.tasks[index].value;
            // The id is written down, so a new hostname cannot change a derived one.
            let mut task = with_id(old, id);
            let set = |field: &mut Lined<_>, value: &Option<_>| {
                if let Some(value) = value {
                    *field = Lined::new(Clone::clone(value));
                }
            };
            set(&mut task.hostname, &patch.hostname);
            set(&mut task.origin_group, &patch.origin_group);
            if let Some(ttl) = patch.ttl {
                task.ttl = Lined::new(ttl);
            }
            if let Some(answers) = patch.answers {
                task.answers = Lined::new(answers);
            }
            if let Some(enabled) = patch.enabled {
                task.enabled = Lined::new(enabled);
            }
            if let Some(stickiness) = patch.stickiness {
                task.stickiness = match stickiness {
                    StickinessPatch::ClientSubnet => Some(Lined::new(Stickiness::ClientSubnet)),
                    StickinessPatch::None => None,
                };
            }
            if task == with_id(old, id) {
                return Ok(unchanged(subject));
            }
            let mut next = site.clone();
            next.tasks[index] = Lined::new(task);
            Ok(changed(next, subject, format!("tasks[{index}].")))
        }
        Edit::EnableTask { id } | Edit::DisableTask { id } => {
            let enabled = matches!(edit, Edit::EnableTask { .. });
            let index = find_task(site, id).ok_or_else(|| no_task(id))?;
            let subject = Subject::Task {
                id: id.clone(),
                created: false,
            };
            if *site.tasks[index].enabled == enabled {
                return Ok(unchanged(subject));
            }
            let mut next = site.clone();
            next.tasks[index].value.enabled = Lined::new(enabled);
            Ok(changed(next, subject, String::new()))
        }
        Edit::DeleteTask { id } => {
            let index = find_task(site, id).ok_or_else(|| no_task(id))?;
            if *site.tasks[index].enabled {
                return Err(EditError::TaskEnabled { id: id.clone() });
            }
            let mut next = site.clone();
            next.tasks.remove(index);
            Ok(changed(next, Subject::Removed, String::new()))
        }
        Edit::PutGroup { name, spec } => {
            let mut next = site.clone();
            next.origin_groups
                .insert(name.clone(), Lined::new(GroupSpec::clone(spec)));
            let focus = format!("origin_groups.{name}.");
            Ok(changed(next, Subject::Group(name.clone()), focus))
        }
        Edit::DeleteGroup { name } => {
            if !site.origin_groups.contains_key(name) {
                return Err(EditError::NoGroup { name: name.clone() });
            }
            let users: Vec<String> = site
                .tasks
                .iter()
                .filter(|t| t.origin_group.as_str() == name)
                .map(|t| spec_task_id(&t.value).into_owned())
                .collect();
            if !users.is_empty() {
                return Err(EditError::GroupInUse {
                    name: name.clone(),
                    users,
                });
            }
            let mut next = site.clone();
            next.origin_groups.shift_remove(name);
            Ok(changed(next, Subject::Removed, String::new()))
        }
        Edit::SetSecondaries { secondaries } => {
            // An address listed before with a TSIG key keeps its key (SPEC §13): the API
            // and the CLI set addresses only.
            let keyed = |address: &str| {
                site.secondaries.iter().find_map(|s| match &s.value {
                    SecondarySpec::Keyed { address: a, tsig } if a == address => Some(tsig.clone()),
                    _ => None,
                })
            };
            let mut next = site.clone();
            next.secondaries = secondaries
                .iter()
                .map(|address| {
                    Lined::new(match keyed(address) {
                        Some(tsig) => SecondarySpec::Keyed {
                            address: address.clone(),
                            tsig,
                        },
                        None => SecondarySpec::Address(address.clone()),
                    })
                })
                .collect();
            Ok(changed(next, Subject::Secondaries, String::new()))
        }
    }
}

/// Index in `site` of the task `id`.
pub fn find_task(site: &SiteSpec, id: &str) -> Option<usize> {
    site.tasks.iter().position(|t| spec_task_id(&t.value) == id)
}

fn no_task(id: &str) -> EditError {
    EditError::NoTask { id: id.to_owned() }
}

fn with_id(spec: &TaskSpec, id: &str) -> TaskSpec {
    TaskSpec {
        id: Some(Lined::new(id.to_owned())),
        ..spec.clone()
    }
}

/// `site` with the task appended under `id`, and the task's field path.
fn push_task(site: &SiteSpec, spec: &TaskSpec, id: &str) -> (SiteSpec, String) {
    let mut next = site.clone();
    let focus = format!("tasks[{}].", next.tasks.len());
    next.tasks.push(Lined::new(with_id(spec, id)));
    (next, focus)
}

/// An id for a new task: the hostname's, made unique.
fn fresh_id(site: &SiteSpec, hostname: &str) -> String {
    let base = Name::from_ascii(hostname.trim())
        .map(|n| site::default_task_id(&n.to_lowercase()))
        .unwrap_or_default();
    let base = match base.is_empty() {
        true => "task".to_owned(),
        false => base,
    };
    let mut id = base.clone();
    let mut n = 2;
    while find_task(site, &id).is_some() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(yaml: &str) -> SiteSpec {
        site::parse(yaml).unwrap()
    }

    const SITE: &str = "\
origin_groups:
  web:
    origins: [{address: 192.0.2.10}]
  spare:
    origins: [{address: 192.0.2.20}]
tasks:
  - hostname: www.example.com
    origin_group: web
  - id: off
    hostname: off.example.com
    origin_group: web
    enabled: false
";

    fn task(hostname: &str, group: &str) -> TaskSpec {
        serde_json::from_value(serde_json::json!({"hostname": hostname, "origin_group": group}))
            .unwrap()
    }

    fn ids(spec: &SiteSpec) -> Vec<String> {
        spec.tasks
            .iter()
            .map(|t| spec_task_id(&t.value).into_owned())
            .collect()
    }

    fn changed(edited: Edited) -> SiteSpec {
        edited.spec.expect("the edit changes the site")
    }

    #[test]
    fn create_task_derives_a_unique_id_from_the_hostname() {
        let before = site(SITE);
        let edit = Edit::CreateTask {
            spec: task("www.example.com", "spare"),
        };
        let edited = apply(&before, &edit).unwrap();
        let expected = Subject::Task {
            id: "www.example.com-2".into(),
            created: true,
        };
        assert_eq!(
            (&edited.subject, edited.focus.as_str()),
            (&expected, "tasks[2].")
        );
        let after = changed(edited);
        assert_eq!(ids(&after), ["www.example.com", "off", "www.example.com-2"]);
        // The id is written down: a later hostname change keeps it.
        assert_eq!(
            after.tasks[2].id.as_deref().map(String::as_str),
            Some("www.example.com-2")
        );
        // Pure: the site given is untouched.
        assert_eq!(before, site(SITE));
    }

    #[test]
    fn create_task_with_a_taken_id_is_refused() {
        let mut spec = task("new.example.com", "web");
        spec.id = Some(Lined::new("off".into()));
        let error = apply(&site(SITE), &Edit::CreateTask { spec }).unwrap_err();
        assert_eq!(error, EditError::TaskExists { id: "off".into() });
        assert_eq!(error.to_string(), "a task with id off already exists");
    }

    #[test]
    fn put_task_replaces_or_creates() {
        let edit = |id: &str| Edit::PutTask {
            id: id.into(),
            spec: task("new.example.com", "spare"),
            create_only: false,
        };
        let edited = apply(&site(SITE), &edit("off")).unwrap();
        assert_eq!(edited.focus, "tasks[1].");
        let after = changed(edited);
        assert_eq!(ids(&after), ["www.example.com", "off"]);
        assert_eq!(after.tasks[1].origin_group.as_str(), "spare");
        assert!(
            *after.tasks[1].enabled,
            "a PUT sends every field: enabled by default"
        );

        let edited = apply(&site(SITE), &edit("new")).unwrap();
        let expected = Subject::Task {
            id: "new".into(),
            created: true,
        };
        assert_eq!(edited.subject, expected);
        assert_eq!(ids(&changed(edited)), ["www.example.com", "off", "new"]);
    }

    #[test]
    fn put_task_create_only_is_a_retry_or_a_conflict() {
        let before = site(SITE);
        let same = before.tasks[1].value.clone();
        let retry = Edit::PutTask {
            id: "off".into(),
            spec: TaskSpec { id: None, ..same },
            create_only: true,
        };
        let edited = apply(&before, &retry).unwrap();
        assert!(edited.spec.is_none(), "the same task again changes nothing");

        let other = Edit::PutTask {
            id: "off".into(),
            spec: task("other.example.com", "web"),
            create_only: true,
        };
        let error = apply(&before, &other).unwrap_err();
        assert_eq!(error, EditError::DifferentTaskExists { id: "off".into() });
    }

    #[test]
    fn put_task_cannot_change_an_id() {
        let mut spec = task("www.example.com", "web");
        spec.id = Some(Lined::new("renamed".into()));
        let edit = Edit::PutTask {
            id: "www.example.com".into(),
            spec,
            create_only: false,
        };
        let error = apply(&site(SITE), &edit).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"the body's id "renamed" differs from the path's "www.example.com"; ids cannot be changed"#
        );
    }

    #[test]
    fn update_task_changes_only_the_fields_given() {
        let before = site(SITE);
        let patch = TaskPatch {
            ttl: Some(30),
            origin_group: Some("spare".into()),
            ..TaskPatch::default()
        };
        let edit = Edit::UpdateTask {
            id: "www.example.com".into(),
            patch,
        };
        let edited = apply(&before, &edit).unwrap();
        assert_eq!(edited.focus, "tasks[0].");
        let after = changed(edited);
        let (old, new) = (&before.tasks[0].value, &after.tasks[0].value);
        assert_eq!((*new.ttl, new.origin_group.as_str()), (30, "spare"));
        assert_eq!(
            (&new.hostname, &new.answers, &new.enabled),
            (&old.hostname, &old.answers, &old.enabled)
        );
        assert_eq!(after.tasks[1], before.tasks[1]);

        // A new hostname keeps the id the task had (derived from the old one).
        let rename = Edit::UpdateTask {
            id: "www.example.com".into(),
            patch: TaskPatch {
                hostname: Some("web.example.com".into()),
                ..TaskPatch::default()
            },
        };
        assert_eq!(
            ids(&changed(apply(&before, &rename).unwrap())),
            ["www.example.com", "off"]
        );

        let same = Edit::UpdateTask {
            id: "off".into(),
            patch: TaskPatch {
                enabled: Some(false),
                ..TaskPatch::default()
            },
        };
        assert!(apply(&before, &same).unwrap().spec.is_none(), "already so");
        let missing = Edit::UpdateTask {
            id: "nope".into(),
            patch: TaskPatch::default(),
        };
        assert_eq!(
            apply(&before, &missing).unwrap_err(),
            EditError::NoTask { id: "nope".into() }
        );
    }

    #[test]
    fn enable_and_disable_change_only_what_differs() {
        let before = site(SITE);
        let on = apply(&before, &Edit::EnableTask { id: "off".into() }).unwrap();
        assert!(*changed(on).tasks[1].enabled);
        let again = apply(&before, &Edit::DisableTask { id: "off".into() }).unwrap();
        assert!(again.spec.is_none(), "already disabled");
        let error = apply(&before, &Edit::DisableTask { id: "nope".into() }).unwrap_err();
        assert_eq!(error.to_string(), r#"there is no task "nope""#);
    }

    #[test]
    fn only_a_disabled_task_is_deleted() {
        let before = site(SITE);
        let after = changed(apply(&before, &Edit::DeleteTask { id: "off".into() }).unwrap());
        assert_eq!(ids(&after), ["www.example.com"]);
        let enabled = Edit::DeleteTask {
            id: "www.example.com".into(),
        };
        assert_eq!(
            apply(&before, &enabled).unwrap_err(),
            EditError::TaskEnabled {
                id: "www.example.com".into()
            }
        );
        let missing = Edit::DeleteTask { id: "gone".into() };
        assert_eq!(
            apply(&before, &missing).unwrap_err(),
            EditError::NoTask { id: "gone".into() }
        );
    }

    #[test]
    fn groups_are_put_and_deleted_only_when_unused() {
        let before = site(SITE);
        let spec: GroupSpec =
            serde_json::from_str(r#"{"origins": [{"address": "192.0.2.30"}]}"#).unwrap();
        let put = Edit::PutGroup {
            name: "new".into(),
            spec: Box::new(spec.clone()),
        };
        let edited = apply(&before, &put).unwrap();
        assert_eq!(edited.focus, "origin_groups.new.");
        let after = changed(edited);
        assert_eq!(
            after.origin_groups.keys().collect::<Vec<_>>(),
            ["web", "spare", "new"]
        );
        assert_eq!(after.origin_groups["new"].value, spec);

        let after = changed(
            apply(
                &before,
                &Edit::DeleteGroup {
                    name: "spare".into(),
                },
            )
            .unwrap(),
        );
        assert_eq!(after.origin_groups.keys().collect::<Vec<_>>(), ["web"]);

        let error = apply(&before, &Edit::DeleteGroup { name: "web".into() }).unwrap_err();
        assert_eq!(
            error.to_string(),
            "origin group web is used by task www.example.com, task off"
        );
        let error = apply(
            &before,
            &Edit::DeleteGroup {
                name: "none".into(),
            },
        )
        .unwrap_err();
        assert_eq!(
            error,
            EditError::NoGroup {
                name: "none".into()
            }
        );
    }

    #[test]
    fn secondaries_are_replaced() {
        let edit = Edit::SetSecondaries {
            secondaries: vec!["192.0.2.53".into(), "2001:db8::/64".into()],
        };
        let after = changed(apply(&site(SITE), &edit).unwrap());
        let listed: Vec<&str> = after
            .secondaries
            .iter()
            .map(|s| s.value.address())
            .collect();
        assert_eq!(listed, ["192.0.2.53", "2001:db8::/64"]);
    }

    #[test]
    fn no_error_names_a_url_or_a_command() {
        let errors = [
            EditError::NoTask { id: "a".into() },
            EditError::NoGroup { name: "a".into() },
            EditError::TaskExists { id: "a".into() },
            EditError::DifferentTaskExists { id: "a".into() },
            EditError::TaskEnabled { id: "a".into() },
            EditError::GroupInUse {
                name: "a".into(),
                users: vec!["b".into()],
            },
            EditError::IdChanged {
                path: "a".into(),
                body: "b".into(),
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains("/v1/") && !text.contains("lbdns "), "{text}");
        }
    }
}
