//! A login racing an admin change. The admin's change is saved and then applied to the
//! user's live sessions; a login that read the directory before the save and creates its
//! session after that rewrite would otherwise keep what the admin just took away (a
//! group, or the whole account) until the session expires. The race is made certain
//! here: the admin's change lands at the last moment before the login's session is
//! stored.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::json;
use ssogate::audit::AuditEntry;
use ssogate::clock::Millis;
use ssogate::state::{Session, Sessions, StateError, StateResult};
use ssogate::store::{Membership, Source, Store, UserStatus};

use crate::login::setup_adjusted;

/// An admin change to land just before the next session is stored.
enum Change {
    /// The user is disabled (and their live sessions ended, as the admin API does).
    Disable(String),
    /// The user leaves a group (and their live sessions are given their new groups).
    Leave { user: String, group: String },
    /// The connection is turned off (and its live sessions ended).
    TurnOff(String),
}

/// The gateway's sessions, with the next `create` preceded by an admin's change.
struct Racing {
    inner: Arc<dyn Sessions>,
    store: Arc<dyn Store>,
    next: Arc<Mutex<Option<Change>>>,
}

impl std::fmt::Debug for Racing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Racing")
    }
}

impl Racing {
    async fn land(&self, change: Change) -> StateResult<()> {
        let failed = |e: ssogate::store::StoreError| StateError(e.to_string());
        let audit = |action: &str, target: &str| AuditEntry::new(0, "admin", action, target, json!({}));
        match change {
            Change::Disable(user) => {
                let mut u = self.store.user_get(&user).await.map_err(failed)?.unwrap();
                u.status = UserStatus::Disabled;
                self.store.user_update(&u, &audit("user.disable", &user)).await.map_err(failed)?;
                self.inner.remove_user(&user).await?;
            }
            Change::Leave { user, group } => {
                let m = Membership { group_id: group.clone(), user_id: user.clone(), source: Source::Manual, created_at: 0 };
                self.store.memberships_apply(&[], &[m], &[audit("membership.remove", &group)]).await.map_err(failed)?;
                // What the admin API writes into live sessions: the groups left.
                let mut names = vec!["Users".to_string()];
                let groups = self.store.group_list().await.map_err(failed)?;
                for m in self.store.memberships_of_user(&user).await.map_err(failed)? {
                    names.extend(groups.iter().find(|g| g.id == m.group_id).map(|g| g.name.clone()));
                }
                names.sort();
                self.inner.set_groups(&BTreeMap::from([(user, names)])).await?;
            }
            Change::TurnOff(conn) => {
                let mut c = self.store.connection_get(&conn).await.map_err(failed)?.unwrap();
                let version = c.version;
                c.active = false;
                c.version += 1;
                self.store.connection_update(&c, version, &audit("connection.deactivate", &conn)).await.map_err(failed)?;
                self.inner.remove_connection(&conn).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sessions for Racing {
    async fn create(&self, s: &Session) -> StateResult<()> {
        let change = self.next.lock().unwrap().take();
        if let Some(change) = change {
            self.land(change).await?;
        }
        self.inner.create(s).await
    }
    async fn touch(&self, id: &str, now: Millis) -> StateResult<Option<Arc<Session>>> {
        self.inner.touch(id, now).await
    }
    async fn remove(&self, id: &str) -> StateResult<Option<Session>> {
        self.inner.remove(id).await
    }
    async fn remove_user(&self, user_id: &str) -> StateResult<usize> {
        self.inner.remove_user(user_id).await
    }
    async fn set_groups(&self, groups: &BTreeMap<String, Vec<String>>) -> StateResult<usize> {
        self.inner.set_groups(groups).await
    }
    async fn remove_connection(&self, connection_id: &str) -> StateResult<usize> {
        self.inner.remove_connection(connection_id).await
    }
    async fn list_user(&self, user_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        self.inner.list_user(user_id, now).await
    }
    async fn list_connection(&self, connection_id: &str, now: Millis) -> StateResult<Vec<(String, Session)>> {
        self.inner.list_connection(connection_id, now).await
    }
    async fn remove_sid(&self, user_id: &str, sid: &str) -> StateResult<bool> {
        self.inner.remove_sid(user_id, sid).await
    }
}

#[tokio::test]
async fn a_login_racing_an_admin_change_keeps_nothing_the_admin_took_away() {
    let next = Arc::new(Mutex::new(None));
    let armed = next.clone();
    let s = setup_adjusted(json!({}), json!({}), move |app| {
        app.sessions = Arc::new(Racing { inner: app.sessions.clone(), store: app.store.clone(), next: armed });
    })
    .await;
    // Alice signs in once (created), then is put in Ops by hand.
    let (_, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uid = s.users().await[0]["id"].as_str().unwrap().to_string();
    let (_, ops) = s.gw.admin(Method::POST, "/groups", Some(json!({"name": "Ops"}))).await;
    let ops = ops["id"].as_str().unwrap().to_string();
    let (st, _) = s.gw.admin(Method::PUT, &format!("/groups/{ops}/members/{uid}"), None).await;
    assert!(st.is_success());

    // She signs in again while an admin takes her out of Ops.
    *next.lock().unwrap() = Some(Change::Leave { user: uid.clone(), group: ops.clone() });
    let (browser, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(next.lock().unwrap().is_none(), "the change landed during the login");
    let r = browser.http.get(format!("{}/auth?allowed_groups=Ops", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "the new session does not carry the group the admin removed");
    let r = browser.http.get(format!("{}/auth", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-auth-request-groups"], "Users");

    // She signs in again while an admin turns the connection off: no session survives.
    *next.lock().unwrap() = Some(Change::TurnOff(s.conn.clone()));
    let (browser, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the login is refused: {body}");
    assert!(body.contains("turned off"), "{body}");
    let r = browser.http.get(format!("{}/auth", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no session was left under a connection turned off");
    let (st, _) = s.gw.admin(Method::POST, &format!("/connections/{}/activate", s.conn), None).await;
    assert!(st.is_success(), "{st}");

    // She signs in again while an admin disables her: no session survives.
    *next.lock().unwrap() = Some(Change::Disable(uid.clone()));
    let (browser, status, _, body) = s.login("alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the login is refused: {body}");
    assert!(body.contains("disabled"), "{body}");
    let r = browser.http.get(format!("{}/auth", s.gw.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no session was left for a disabled user");
    let (_, sessions) = s.gw.admin(Method::GET, &format!("/users/{uid}/sessions"), None).await;
    assert_eq!(sessions.as_array().map(Vec::len), Some(0), "{sessions}");
}
