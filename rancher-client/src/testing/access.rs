//! User accounts with their own API keys, the identities Rancher reports for a key, and the
//! members of environments with their roles.
//!
//! - `GET /v2-beta/identities` (also `/v2-beta/identity`) answers for the key that asks: a
//!   user's key gets the user's `rancher_id` identity and one `ldap_group` identity per
//!   group; the fake's own (environment) key gets the `admin` account's identity.
//! - `projectmembers` at the API root, filtered by `projectId`; the fake's key may create and
//!   remove them, a user's key may read the members of the environments it belongs to.
//! - `POST /v2-beta/projects/<id>?action=setmembers` with `{"members": [{externalId,
//!   externalIdType, role}]}` replaces an environment's members, as Rancher's does.
//!
//! Any other request with a user's key gets 401, like a key Rancher does not know.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde_json::{Value, json};

use super::http::{Shared, error_response, lock};
use super::store::{Kind, Outcome, Store, invalid, not_found};
use crate::{
    Credentials, ProjectMember,
    error::{ErrorBody, code},
    resource::{RANCHER_ID, action, role, state},
};

/// The account id of the fake's own key.
pub const ADMIN_ACCOUNT_ID: &str = "1a1";
/// The `externalIdType` of the groups of [`FakeUser`]s.
pub const GROUP_ID_TYPE: &str = "ldap_group";

/// A user account with an API key, for [`FakeRancherBuilder::user`](super::FakeRancherBuilder::user)
/// and [`FakeRancher::add_user`](super::FakeRancher::add_user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeUser {
    /// The login name.
    pub login: String,
    /// The API key's access key.
    pub access_key: String,
    /// The API key's secret key.
    pub secret_key: String,
    /// Groups the user is in (reported as `ldap_group` identities).
    pub groups: Vec<String>,
    /// A role in the served environment, if the user is a member of it.
    pub role: Option<String>,
}

impl FakeUser {
    /// A user with a key derived from the login (`<LOGIN>-AK` / `<login>-secret`).
    pub fn new(login: impl Into<String>) -> Self {
        let login = login.into();
        Self {
            access_key: format!("{}-AK", login.to_uppercase()),
            secret_key: format!("{login}-secret"),
            login,
            groups: Vec::new(),
            role: None,
        }
    }

    /// Sets the API key.
    pub fn key(mut self, access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.access_key = access_key.into();
        self.secret_key = secret_key.into();
        self
    }

    /// Adds a group.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.groups.push(name.into());
        self
    }

    /// Makes the user a member of the served environment with `role`.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The user's API key.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(self.access_key.clone(), self.secret_key.clone())
    }
}

/// A stored account.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub(crate) id: String,
    pub(crate) user: FakeUser,
}

impl Account {
    fn identities(&self) -> Vec<Value> {
        let mut out = vec![identity(RANCHER_ID, &self.id, &self.user.login, true)];
        out.extend(
            self.user
                .groups
                .iter()
                .map(|g| identity(GROUP_ID_TYPE, g, g, false)),
        );
        out
    }

    /// Whether `member` (a record body) is this account or one of its groups.
    fn is(&self, member: &serde_json::Map<String, Value>) -> bool {
        let field = |f: &str| member.get(f).and_then(Value::as_str).unwrap_or_default();
        match field("externalIdType") {
            RANCHER_ID => field("externalId") == self.id,
            GROUP_ID_TYPE => self.user.groups.iter().any(|g| g == field("externalId")),
            _ => false,
        }
    }
}

fn identity(id_type: &str, id: &str, login: &str, user: bool) -> Value {
    json!({
        "id": format!("{id_type}:{id}"),
        "type": "identity",
        "baseType": "identity",
        "externalId": id,
        "externalIdType": id_type,
        "login": login,
        "name": login,
        "user": user,
        "all": null,
        "links": {},
        "actions": {},
    })
}

/// Who a request's basic authentication names.
enum Caller {
    Admin,
    User(Account),
    Nobody,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, pass) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((user, pass))
}

fn caller(shared: &Shared, headers: &HeaderMap) -> Caller {
    let Some((access, secret)) = basic_credentials(headers) else {
        return if shared.credentials.is_none() {
            Caller::Admin
        } else {
            Caller::Nobody
        };
    };
    match &shared.credentials {
        None => return Caller::Admin,
        Some(c) if c.access_key == access && c.secret_key.expose() == secret => {
            return Caller::Admin;
        }
        Some(_) => {}
    }
    lock(&shared.accounts)
        .iter()
        .find(|a| a.user.access_key == access && a.user.secret_key == secret)
        .map_or(Caller::Nobody, |a| Caller::User(a.clone()))
}

/// Whether a user's key may make this request (the fake's own key is checked elsewhere):
/// reading identities and environment members.
pub(crate) fn user_allowed(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> bool {
    let readable = method == Method::GET
        && matches!(
            path.trim_end_matches('/'),
            "/v2-beta/identities" | "/v2-beta/identity" | "/v2-beta/projectmembers"
        );
    readable && matches!(caller(shared, headers), Caller::User(_))
}

fn collection(data: Vec<Value>, resource_type: &str) -> Value {
    json!({
        "type": "collection",
        "resourceType": resource_type,
        "links": {},
        "createTypes": {},
        "actions": {},
        "data": data,
        "sortLinks": {},
        "pagination": {"first": null, "previous": null, "next": null, "limit": 1000, "total": null, "partial": false},
        "sort": null,
        "filters": {},
        "createDefaults": {},
    })
}

pub(crate) async fn identities(
    State(shared): State<std::sync::Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let data = match caller(&shared, &headers) {
        Caller::Admin => vec![identity(RANCHER_ID, ADMIN_ACCOUNT_ID, "admin", true)],
        Caller::User(account) => account.identities(),
        Caller::Nobody => {
            return error_response(ErrorBody::new(401, code::UNAUTHORIZED, "Unauthorized"));
        }
    };
    Json(collection(data, "identity")).into_response()
}

pub(crate) async fn list_members(
    State(shared): State<std::sync::Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let who = caller(&shared, &headers);
    let store = shared.store();
    let url = store.collection_url(Kind::ProjectMember);
    let mut page = match store.list(Kind::ProjectMember, &query, None, &url) {
        Ok(page) => page,
        Err(e) => return error_response(e),
    };
    if let Caller::User(account) = who {
        // Only the members of environments the user belongs to.
        let mine: Vec<String> = store
            .records(Kind::ProjectMember)
            .filter(|r| !r.is_removed() && account.is(&r.body))
            .filter_map(|r| r.str_field("projectId").map(str::to_owned))
            .collect();
        if let Some(data) = page.get_mut("data").and_then(Value::as_array_mut) {
            data.retain(|m| {
                m["projectId"]
                    .as_str()
                    .is_some_and(|p| mine.iter().any(|x| x == p))
            });
        }
    }
    Json(page).into_response()
}

pub(crate) async fn create_member(
    State(shared): State<std::sync::Arc<Shared>>,
    body: Bytes,
) -> Response {
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error_response(ErrorBody::new(
                422,
                "InvalidBodyContent",
                format!("the body is not JSON: {e}"),
            ));
        }
    };
    match shared.store().create(Kind::ProjectMember, input) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => error_response(e),
    }
}

pub(crate) async fn get_member(
    State(shared): State<std::sync::Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    match shared.store().get(Kind::ProjectMember, &id) {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(e),
    }
}

pub(crate) async fn delete_member(
    State(shared): State<std::sync::Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    match shared
        .store()
        .action(Kind::ProjectMember, &id, action::REMOVE, json!({}))
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(e),
    }
}

/// Checks a projectMember about to be stored.
pub(crate) fn validate_member(store: &Store, value: &Value) -> Outcome<()> {
    let member: ProjectMember = serde_json::from_value(value.clone()).map_err(|e| {
        ErrorBody::new(
            422,
            code::INVALID_FORMAT,
            format!("invalid projectMember: {e}"),
        )
    })?;
    for (field, v) in [
        ("projectId", &member.project_id),
        ("externalId", &member.external_id),
        ("externalIdType", &member.external_id_type),
        ("role", &member.role),
    ] {
        if v.is_empty() {
            return Err(invalid(
                code::MISSING_REQUIRED,
                field,
                format!("{field} is required"),
            ));
        }
    }
    if !role::ALL.contains(&member.role.as_str()) {
        return Err(invalid(
            code::INVALID_OPTION,
            "role",
            format!(
                "role {:?} is not one of {}",
                member.role,
                role::ALL.join(", ")
            ),
        ));
    }
    if store
        .record(Kind::Project, &member.project_id)
        .is_none_or(|r| r.is_removed())
    {
        return Err(invalid(
            code::INVALID_REFERENCE,
            "projectId",
            format!("project {} does not exist", member.project_id),
        ));
    }
    Ok(())
}

/// The `setmembers` action: replaces the members of `project_id`.
pub(crate) fn set_members(store: &mut Store, project_id: &str, input: &Value) -> Outcome {
    if store
        .record(Kind::Project, project_id)
        .is_none_or(|r| r.is_removed())
    {
        return Err(not_found(format!("project {project_id}")));
    }
    let members = input
        .get("members")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(code::MISSING_REQUIRED, "members", "members is required"))?;
    let mut wanted = Vec::new();
    for m in members {
        let mut body = m.as_object().cloned().unwrap_or_default();
        body.insert("projectId".into(), json!(project_id));
        validate_member(store, &Value::Object(body.clone()))?;
        wanted.push(body);
    }
    remove_members(store, project_id, |_| true);
    for body in &wanted {
        store.seed(
            Kind::ProjectMember,
            Value::Object(body.clone()),
            state::ACTIVE,
        )?;
    }
    Ok(json!({"type": "setProjectMembersInput", "members": wanted}))
}

/// Removes (settled) the live members of `project_id` for which `pick` holds.
pub(crate) fn remove_members(
    store: &mut Store,
    project_id: &str,
    pick: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> usize {
    let ids: Vec<String> = store
        .records(Kind::ProjectMember)
        .filter(|r| !r.is_removed() && r.str_field("projectId") == Some(project_id))
        .filter(|r| pick(&r.body))
        .map(|r| r.id().to_owned())
        .collect();
    for id in &ids {
        let _ = store.action(Kind::ProjectMember, id, action::REMOVE, json!({}));
    }
    store.settle_now();
    ids.len()
}

/// Stores an account for `user`, and its membership of the served environment if it has a
/// role. Returns the account id.
pub(crate) fn add_account(shared: &Shared, user: FakeUser) -> Outcome<String> {
    let mut store = shared.store();
    let id = store.next_id(Kind::Project);
    if let Some(role) = &user.role {
        let project = shared.project_id.clone();
        store.seed(
            Kind::ProjectMember,
            json!({"projectId": project, "externalId": id, "externalIdType": RANCHER_ID,
                   "role": role, "name": user.login}),
            state::ACTIVE,
        )?;
    }
    lock(&shared.accounts).push(Account {
        id: id.clone(),
        user,
    });
    Ok(id)
}
