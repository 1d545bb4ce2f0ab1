//! Workspaces, members, invitations and daemon tokens.

mod common;

use agenthub::domain::{MemberId, Role, WorkspaceId};
use agenthub::store::seed::{self, TokenKind};
use agenthub::store::{invitations, workspaces};
use common::faults::{self, Fault};
use common::{parse_id, spawn_app, TestApp, TestUser};
use serde_json::{json, Value};

async fn member_id(app: &TestApp, ws: &str, token: &str, user: &TestUser) -> String {
    let r = app
        .get(&format!("/api/workspaces/{ws}/members"), token)
        .await;
    assert_eq!(r.status, 200);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user.id.as_str())
        .map(|m| m["id"].as_str().unwrap().to_string())
        .expect("member listed")
}

async fn set_role(app: &TestApp, ws: &str, token: &str, member: &str, role: &str) -> common::Reply {
    app.request(
        "PATCH",
        &format!("/api/workspaces/{ws}/members/{member}"),
        Some(token),
        Some(&json!({ "role": role }).to_string()),
    )
    .await
}

#[actix_web::test]
async fn create_list_and_get_workspaces() {
    let app = spawn_app().await;
    let (alice, first) = app.init_user("alice@example.com");
    let r = app
        .post(
            "/api/workspaces",
            &alice.token,
            json!({"name": "  Research Lab  "}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["name"], "Research Lab");
    assert_eq!(r.body["slug"], "research-lab");
    let id = r.body["id"].as_str().unwrap().to_string();

    let list = app.get("/api/workspaces", &alice.token).await;
    let ids: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first.as_str(), id.as_str()]);

    let r = app
        .get(&format!("/api/workspaces/{id}"), &alice.token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], id.as_str());
    // the creator owns it
    let members = app
        .get(&format!("/api/workspaces/{id}/members"), &alice.token)
        .await;
    assert_eq!(members.body[0]["role"], "owner");
}

#[actix_web::test]
async fn workspace_name_is_required_and_slug_unique() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let r = app
        .post("/api/workspaces", &alice.token, json!({"name": "   "}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "name is required");
    let r = app
        .post(
            "/api/workspaces",
            &alice.token,
            json!({"name": "A", "slug": "Bad Slug"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .post(
            "/api/workspaces",
            &alice.token,
            json!({"name": "A", "slug": "ops"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app
        .post(
            "/api/workspaces",
            &alice.token,
            json!({"name": "B", "slug": "ops"}),
        )
        .await;
    assert_eq!(r.status, 409);
    // a derived slug steps aside instead
    let r = app
        .post("/api/workspaces", &alice.token, json!({"name": "Ops"}))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["slug"], "ops-2");
    assert_eq!(app.count("SELECT count(*) FROM workspace"), 3);
}

#[actix_web::test]
async fn non_member_gets_404_for_a_workspace() {
    let app = spawn_app().await;
    let (_alice, ws) = app.init_user("alice@example.com");
    let (mallory, _) = app.init_user("mallory@example.com");
    for path in [
        format!("/api/workspaces/{ws}"),
        format!("/api/workspaces/{ws}/members"),
    ] {
        let r = app.get(&path, &mallory.token).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error(), "workspace not found");
    }
    // an id that exists nowhere answers the same
    let r = app
        .get(
            "/api/workspaces/6f1e7c1a-0000-4000-8000-000000000000",
            &mallory.token,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "workspace not found");
    let r = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &mallory.token,
            json!({"daemon_id": "x"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(app.count("SELECT count(*) FROM daemon_token"), 0);
}

#[actix_web::test]
async fn malformed_workspace_id_is_400_not_another_workspace() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    for bad in [
        ws.replace('-', ""),
        format!("{{{ws}}}"),
        format!("{ws}x"),
        "%20".to_string(),
    ] {
        let r = app
            .get(&format!("/api/workspaces/{bad}"), &alice.token)
            .await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.error().starts_with("invalid id in path"), "{}", r.error());
    }
}

async fn invite(app: &TestApp, ws: &str, token: &str, body: Value) -> common::Reply {
    app.post(&format!("/api/workspaces/{ws}/members"), token, body)
        .await
}

/// Invites `email` as a plain member and returns the invitation id.
async fn invitation(app: &TestApp, ws: &str, token: &str, email: &str) -> String {
    let r = invite(app, ws, token, json!({ "email": email })).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

async fn answer(app: &TestApp, id: &str, token: &str, verb: &str) -> common::Reply {
    app.post(&format!("/api/invitations/{id}/{verb}"), token, json!({}))
        .await
}

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// Neither the workspace's managers nor the invitee see an open invitation.
async fn assert_nothing_pending(app: &TestApp, ws: &str, manager: &TestUser, invitee: &TestUser) {
    let mine = app.get("/api/invitations", &invitee.token).await;
    assert_eq!((mine.status, mine.body), (200, json!([])));
    let pending = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &manager.token)
        .await;
    assert_eq!((pending.status, pending.body), (200, json!([])));
}

#[actix_web::test]
async fn invited_user_accepts_and_joins_with_the_invited_role() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", None);

    let r = invite(
        &app,
        &ws,
        &alice.token,
        json!({"email": " Bob@Example.com ", "role": "admin"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["workspace_id"], ws.as_str());
    assert_eq!(r.body["email"], "Bob@Example.com");
    assert_eq!(r.body["role"], "admin");
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["invited_by"], alice.id.as_str());
    let created = chrono::DateTime::parse_from_rfc3339(r.body["created_at"].as_str().unwrap());
    let expires = chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap());
    let lifetime = (expires.unwrap() - created.unwrap()).num_seconds();
    assert!(
        (14 * 86400 - 2..=14 * 86400).contains(&lifetime),
        "{lifetime}"
    );
    // inviting is not joining
    let r = app.get(&format!("/api/workspaces/{ws}"), &bob.token).await;
    assert_eq!(r.status, 404);

    let mine = app.get("/api/invitations", &bob.token).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    assert_eq!(mine.body[0]["id"], id.as_str());
    assert_eq!(mine.body[0]["workspace_name"], "Team");
    let pending = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &alice.token)
        .await;
    assert_eq!(pending.status, 200);
    assert_eq!(pending.body[0]["id"], id.as_str());

    let r = answer(&app, &id, &bob.token, "accept").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["user_id"], bob.id.as_str());
    assert_eq!(r.body["workspace_id"], ws.as_str());
    assert_eq!(r.body["role"], "admin");
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &bob.token)
            .await
            .status,
        200
    );
    let member = member_id(&app, &ws, &bob.token, &bob).await;
    assert_eq!(r.body["id"], member.as_str());
    // answered: gone from both lists, and it cannot be used twice
    assert_nothing_pending(&app, &ws, &alice, &bob).await;
    let r = answer(&app, &id, &bob.token, "accept").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "invitation has already been accepted");
    assert_eq!(
        app.count("SELECT count(*) FROM invitation WHERE status = 'accepted'"),
        1
    );
}

#[actix_web::test]
async fn inviting_an_unknown_email_answers_the_same() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    app.add_user("bob@example.com", None);
    let known = invite(&app, &ws, &alice.token, json!({"email": "bob@example.com"})).await;
    let unknown = invite(
        &app,
        &ws,
        &alice.token,
        json!({"email": "nobody@example.com"}),
    )
    .await;
    assert_eq!((known.status, unknown.status), (201, 201));
    assert_eq!(keys(&known.body), keys(&unknown.body));
    assert_eq!(unknown.body["status"], "pending");
    assert_eq!(unknown.body["role"], "member");

    // whoever signs up with that address later finds it waiting
    let nobody = app.add_user("NOBODY@example.com", None);
    let mine = app.get("/api/invitations", &nobody.token).await;
    assert_eq!(mine.body[0]["id"], unknown.body["id"]);
    let id = unknown.body["id"].as_str().unwrap();
    assert_eq!(answer(&app, id, &nobody.token, "accept").await.status, 200);
}

#[actix_web::test]
async fn only_the_invited_user_can_answer_an_invitation() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    app.add_user("bob@example.com", None);
    let carol = app.add_user("carol@example.com", None);
    let id = invitation(&app, &ws, &alice.token, "bob@example.com").await;

    let before = app.dump();
    for who in [&carol.token, &alice.token] {
        for verb in ["accept", "decline"] {
            let r = answer(&app, &id, who, verb).await;
            assert_eq!(r.status, 404, "{verb}: {:?}", r.body);
            assert_eq!(r.error(), "invitation not found");
        }
    }
    let r = answer(
        &app,
        "6f1e7c1a-0000-4000-8000-000000000000",
        &carol.token,
        "accept",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "invitation not found");
    assert_eq!(
        app.get("/api/invitations", &carol.token).await.body,
        json!([])
    );
    // carol cannot list or revoke it either: she is not in the workspace
    let r = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &carol.token)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "workspace not found");
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/invitations/{id}"),
            &carol.token,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(before, app.dump());
}

#[actix_web::test]
async fn members_cannot_invite_and_admins_cannot_invite_owners() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let admin = app.add_user("admin@example.com", Some((&ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let (mallory, _) = app.init_user("mallory@example.com");

    let r = invite(&app, &ws, &bob.token, json!({"email": "carol@example.com"})).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.error(),
        "only workspace owners and admins can manage members"
    );
    let r = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &bob.token)
        .await;
    assert_eq!(r.status, 403);
    let r = invite(
        &app,
        &ws,
        &admin.token,
        json!({"email": "carol@example.com", "role": "owner"}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error(), "only an owner can invite an owner");
    let r = invite(
        &app,
        &ws,
        &mallory.token,
        json!({"email": "carol@example.com"}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "workspace not found");
    for (body, message) in [
        (json!({}), "email is required"),
        (json!({"email": "carol"}), "invalid email address \"carol\""),
        (
            json!({"email": "carol@example.com", "role": "boss"}),
            "invalid role \"boss\": must be owner, admin or member",
        ),
    ] {
        let r = invite(&app, &ws, &alice.token, body).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error(), message);
    }
    assert_eq!(app.count("SELECT count(*) FROM invitation"), 0);

    // an owner may invite an owner; an admin may then neither change nor
    // revoke that invitation
    let r = invite(
        &app,
        &ws,
        &alice.token,
        json!({"email": "carol@example.com", "role": "owner"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_str().unwrap();
    let r = invite(
        &app,
        &ws,
        &admin.token,
        json!({"email": "carol@example.com"}),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/invitations/{id}"),
            &admin.token,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.count("SELECT count(*) FROM invitation WHERE role = 'owner' AND status = 'pending'"),
        1
    );
}

#[actix_web::test]
async fn inviting_again_renews_the_pending_invitation() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let first = invitation(&app, &ws, &alice.token, "carol@example.com").await;
    let r = invite(
        &app,
        &ws,
        &alice.token,
        json!({"email": "CAROL@example.com", "role": "admin"}),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["id"], first.as_str());
    assert_eq!(r.body["role"], "admin");
    assert_eq!(app.count("SELECT count(*) FROM invitation"), 1);

    // members are listed to members anyway, so saying so reveals nothing
    for email in ["bob@example.com", "Alice@example.com"] {
        let r = invite(&app, &ws, &alice.token, json!({ "email": email })).await;
        assert_eq!(r.status, 409, "{email}");
        assert_eq!(r.error(), "user is already a member of this workspace");
    }
}

#[actix_web::test]
async fn declined_and_revoked_invitations_cannot_be_accepted() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", None);
    let carol = app.add_user("carol@example.com", None);

    let id = invitation(&app, &ws, &alice.token, "bob@example.com").await;
    let r = answer(&app, &id, &bob.token, "decline").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "declined");
    let r = answer(&app, &id, &bob.token, "accept").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "invitation has been declined");

    let id = invitation(&app, &ws, &alice.token, "carol@example.com").await;
    let path = format!("/api/workspaces/{ws}/invitations/{id}");
    let r = app.delete(&path, &alice.token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
    assert_eq!(
        app.get("/api/invitations", &carol.token).await.body,
        json!([])
    );
    let r = answer(&app, &id, &carol.token, "accept").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "invitation has been revoked");
    assert_eq!(app.delete(&path, &alice.token).await.status, 409);
    // an invitation is revoked only through its own workspace
    let (_, other) = app.init_user("dave@example.com");
    let r = app
        .delete(
            &format!("/api/workspaces/{other}/invitations/{id}"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 404);

    assert_eq!(app.count("SELECT count(*) FROM member"), 2);
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &bob.token)
            .await
            .status,
        404
    );
    // a fresh invitation after a refusal is a new one
    let again = invitation(&app, &ws, &alice.token, "bob@example.com").await;
    assert_ne!(again, id);
    assert_eq!(answer(&app, &again, &bob.token, "accept").await.status, 200);
}

/// Moves an invitation's creation and expiry `days` into the past.
fn age_invitation(app: &TestApp, id: &str, days: i64) {
    let id = parse_id(id);
    let back = move |t| t - chrono::Duration::days(days);
    app.arrange(move |conn| {
        let sent = invitations::get(conn, id)?.expect("invitation");
        seed::backdate_invitation(conn, id, back(sent.created_at), back(sent.expires_at))
    });
}

#[actix_web::test]
async fn an_expired_invitation_cannot_be_accepted_until_renewed() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", None);
    let id = invitation(&app, &ws, &alice.token, "bob@example.com").await;
    age_invitation(&app, &id, 15);

    assert_nothing_pending(&app, &ws, &alice, &bob).await;
    let r = answer(&app, &id, &bob.token, "accept").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "invitation has expired");
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &bob.token)
            .await
            .status,
        404
    );

    // inviting again brings the same invitation back to life
    let again = invitation(&app, &ws, &alice.token, "bob@example.com").await;
    assert_eq!(again, id);
    assert_eq!(answer(&app, &id, &bob.token, "accept").await.status, 200);
}

#[actix_web::test]
async fn a_workspace_has_at_most_100_pending_invitations() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(invitation(&app, &ws, &alice.token, &format!("p{i}@example.com")).await);
    }
    let r = invite(
        &app,
        &ws,
        &alice.token,
        json!({"email": "p100@example.com"}),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.error(),
        "a workspace can have at most 100 pending invitations"
    );
    // renewing one does not add one
    let r = invite(&app, &ws, &alice.token, json!({"email": "p7@example.com"})).await;
    assert_eq!(r.status, 201);
    // expired ones no longer count
    age_invitation(&app, &ids[0], 15);
    let r = invite(
        &app,
        &ws,
        &alice.token,
        json!({"email": "p100@example.com"}),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(app.count("SELECT count(*) FROM invitation"), 101);
}

#[actix_web::test]
async fn admin_cannot_touch_owners_or_grant_ownership() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let admin = app.add_user("admin@example.com", Some((&ws, Role::Admin)));
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let alice_m = member_id(&app, &ws, &alice.token, &alice).await;
    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;

    assert_eq!(
        set_role(&app, &ws, &admin.token, &bob_m, "owner")
            .await
            .status,
        403
    );
    assert_eq!(
        set_role(&app, &ws, &admin.token, &alice_m, "member")
            .await
            .status,
        403
    );
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/members/{alice_m}"),
            &admin.token,
        )
        .await;
    assert_eq!(r.status, 403);
    // but an admin manages plain members
    let r = set_role(&app, &ws, &admin.token, &bob_m, "admin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["role"], "admin");
}

#[actix_web::test]
async fn last_owner_cannot_be_demoted_or_removed() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let alice_m = member_id(&app, &ws, &alice.token, &alice).await;

    let r = set_role(&app, &ws, &alice.token, &alice_m, "admin").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "cannot demote the last owner of a workspace");
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/members/{alice_m}"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "cannot remove the last owner of a workspace");
    assert_eq!(
        app.count("SELECT count(*) FROM member WHERE role = 'owner'"),
        1
    );

    // with a second owner, the first may step down
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;
    assert_eq!(
        set_role(&app, &ws, &alice.token, &bob_m, "owner")
            .await
            .status,
        200
    );
    let r = set_role(&app, &ws, &alice.token, &alice_m, "member").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["role"], "member");
}

#[actix_web::test]
async fn member_can_leave_and_removal_stops_their_daemons() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let minted = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &bob.token,
            json!({"daemon_id": "bobs-laptop"}),
        )
        .await;
    assert_eq!(minted.status, 201);
    // an online runtime of bob's, registered by his daemon
    let daemon = minted.body["token"].as_str().unwrap();
    app.runtime(daemon, &ws, "bobs-laptop", "claude").await;
    assert_eq!(
        app.count("SELECT count(*) FROM agent_runtime WHERE status = 'online'"),
        1
    );

    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/members/{bob_m}"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
    assert_eq!(
        app.count("SELECT count(*) FROM agent_runtime WHERE status = 'online'"),
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM daemon_token WHERE revoked_at IS NULL"),
        0
    );
    assert_eq!(
        app.get(&format!("/api/workspaces/{ws}"), &bob.token)
            .await
            .status,
        404
    );

    // anyone may leave on their own
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    let carol_m = member_id(&app, &ws, &carol.token, &carol).await;
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/members/{carol_m}"),
            &carol.token,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn daemon_token_is_shown_once_in_the_documented_format() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let r = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &alice.token,
            json!({"daemon_id": "  mbp  "}),
        )
        .await;
    assert_eq!(r.status, 201);
    let token = r.body["token"].as_str().unwrap();
    assert!(token.starts_with("mdt_") && token.len() == 44, "{token}");
    assert!(token[4..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(r.body["daemon_id"], "mbp");
    let expires: &str = r.body["expires_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).is_ok(),
        "{expires}"
    );

    let r = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &alice.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "daemon_id is required");
    assert_eq!(app.count("SELECT count(*) FROM daemon_token"), 1);
}

#[actix_web::test]
async fn bad_json_is_400_and_changes_nothing() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    for body in ["{", "[]", "{\"name\": 5}", "not json"] {
        let r = app
            .request("POST", "/api/workspaces", Some(&alice.token), Some(body))
            .await;
        assert_eq!(r.status, 400, "{body}");
        assert!(
            r.error().starts_with("invalid request body"),
            "{}",
            r.error()
        );
    }
    let huge = json!({"name": "x".repeat(2 * 1024 * 1024)}).to_string();
    let r = app
        .request("POST", "/api/workspaces", Some(&alice.token), Some(&huge))
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(app.count("SELECT count(*) FROM workspace"), 1);
}

#[actix_web::test]
async fn database_failure_is_a_generic_500() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    faults::fault(&app, Fault::MissingTable("workspace"));
    let r = app.get("/api/workspaces", &alice.token).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, json!({"error": "internal server error"}));
    let text: Value = r.body;
    assert!(!text.to_string().contains("workspace_gone"));
}

#[actix_web::test]
async fn unknown_route_and_method_answer_json() {
    let app = spawn_app().await;
    let r = app.request("GET", "/api/nope", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "not found");
    let (alice, _) = app.init_user("alice@example.com");
    let r = app
        .request("PUT", "/api/tokens", Some(&alice.token), None)
        .await;
    assert!(r.status == 404 || r.status == 405, "{}", r.status);
    assert!(!r.error().is_empty());
}

#[actix_web::test]
async fn an_invitation_lapses_when_its_sender_can_no_longer_grant_the_role() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Admin)));
    let erin = app.add_user("erin@example.com", Some((&ws, Role::Owner)));
    let carol = app.add_user("carol@example.com", None);
    let dave = app.add_user("dave@example.com", None);
    let from_bob = invitation(&app, &ws, &bob.token, "carol@example.com").await;
    let r = invite(
        &app,
        &ws,
        &erin.token,
        json!({"email": "dave@example.com", "role": "owner"}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let from_erin = r.body["id"].as_str().unwrap().to_string();
    // the admin becomes a member, the owner an admin
    for (user, role) in [(&bob, "member"), (&erin, "admin")] {
        let m = member_id(&app, &ws, &alice.token, user).await;
        assert_eq!(
            set_role(&app, &ws, &alice.token, &m, role).await.status,
            200
        );
    }

    let before = app.dump();
    for (id, invitee) in [(&from_bob, &carol), (&from_erin, &dave)] {
        let r = answer(&app, id, &invitee.token, "accept").await;
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(
            r.error(),
            "invitation is no longer valid: whoever sent it can no longer grant this role"
        );
        let r = app
            .get(&format!("/api/workspaces/{ws}"), &invitee.token)
            .await;
        assert_eq!(r.status, 404);
    }
    assert_eq!(before, app.dump(), "a refused acceptance changed nothing");

    // sent again by someone who may, it can be accepted
    assert_eq!(
        invitation(&app, &ws, &alice.token, "carol@example.com").await,
        from_bob
    );
    let r = answer(&app, &from_bob, &carol.token, "accept").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["role"], "member");
}

#[actix_web::test]
async fn removing_a_member_revokes_the_invitations_they_sent() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Admin)));
    let carol = app.add_user("carol@example.com", None);
    let id = invitation(&app, &ws, &bob.token, "carol@example.com").await;
    let alices = invitation(&app, &ws, &alice.token, "dave@example.com").await;

    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/members/{bob_m}"),
            &alice.token,
        )
        .await;
    assert_eq!(r.status, 200);
    let mine = app.get("/api/invitations", &carol.token).await;
    assert_eq!((mine.status, mine.body), (200, json!([])));
    let r = answer(&app, &id, &carol.token, "accept").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "invitation has been revoked");
    // the invitations others sent stay
    let pending = app
        .get(&format!("/api/workspaces/{ws}/invitations"), &alice.token)
        .await;
    assert_eq!(pending.status, 200);
    let ids: Vec<&str> = pending
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alices.as_str()]);
}

/// Sets a member's role, or removes them (`None`), through the store.
fn change_member(
    ws: &str,
    member: &str,
    role: Option<Role>,
) -> impl FnOnce(&agenthub::store::Conn<'_>) -> agenthub::store::Result<()> + Send + 'static {
    let (ws, member): (WorkspaceId, MemberId) = (ws.parse().unwrap(), member.parse().unwrap());
    move |tx| match role {
        Some(role) => workspaces::set_role(tx, member, role),
        None => {
            let row = workspaces::get_member(tx, ws, member)?.expect("a member");
            workspaces::remove_member(tx, &row)
        }
    }
}

#[actix_web::test]
async fn a_daemon_token_is_not_minted_for_a_member_removed_meanwhile() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    // bob's token has been used: his request needs no bookkeeping write
    assert_eq!(app.get("/api/me", &bob.token).await.status, 200);
    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;

    let writer = app
        .while_a_write_commits(change_member(&ws, &bob_m, None))
        .await;
    let r = app
        .post(
            &format!("/api/workspaces/{ws}/daemon-tokens"),
            &bob.token,
            json!({"daemon_id": "bobs-laptop"}),
        )
        .await;
    writer.join().unwrap();
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.error(), "workspace not found");
    assert_eq!(app.count("SELECT count(*) FROM daemon_token"), 0);
}

#[actix_web::test]
async fn an_admin_demoted_meanwhile_cannot_change_a_role() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Admin)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    assert_eq!(app.get("/api/me", &bob.token).await.status, 200);
    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;
    let carol_m = member_id(&app, &ws, &alice.token, &carol).await;

    let demote = change_member(&ws, &bob_m, Some(Role::Member));
    let writer = app.while_a_write_commits(demote).await;
    let r = set_role(&app, &ws, &bob.token, &carol_m, "admin").await;
    writer.join().unwrap();
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "only workspace owners and admins can manage members"
    );
    let members = app
        .get(&format!("/api/workspaces/{ws}/members"), &alice.token)
        .await;
    let carols = members
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == carol_m.as_str());
    assert_eq!(carols.unwrap()["role"], "member");
}

#[actix_web::test]
async fn an_admin_demoted_meanwhile_cannot_remove_a_member() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Admin)));
    let carol = app.add_user("carol@example.com", Some((&ws, Role::Member)));
    assert_eq!(app.get("/api/me", &bob.token).await.status, 200);
    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;
    let carol_m = member_id(&app, &ws, &alice.token, &carol).await;

    let demote = change_member(&ws, &bob_m, Some(Role::Member));
    let writer = app.while_a_write_commits(demote).await;
    let r = app
        .delete(
            &format!("/api/workspaces/{ws}/members/{carol_m}"),
            &bob.token,
        )
        .await;
    writer.join().unwrap();
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "only workspace owners and admins can manage members"
    );
    let r = app
        .get(&format!("/api/workspaces/{ws}"), &carol.token)
        .await;
    assert_eq!(r.status, 200, "carol is still a member");
}

#[actix_web::test]
async fn a_daemon_token_cannot_pose_as_another_members_machine() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let rt = app.runtime(&alice.token, &ws, "alice-mbp", "claude").await;
    let mint = |token: &str, daemon_id: &str| {
        let path = format!("/api/workspaces/{ws}/daemon-tokens");
        let (app, token, body) = (&app, token.to_string(), json!({ "daemon_id": daemon_id }));
        async move { app.post(&path, &token, body).await }
    };

    let before = app.dump();
    let r = mint(&bob.token, " alice-mbp ").await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "daemon_id \"alice-mbp\" is registered to another member"
    );
    assert_eq!(before, app.dump(), "no token was stored");
    // bob's own machine, and alice's machine for alice, are fine
    assert_eq!(mint(&bob.token, "bob-mbp").await.status, 201);
    assert_eq!(mint(&alice.token, "alice-mbp").await.status, 201);
    // once alice's runtime is gone, the daemon_id is free again
    let r = app
        .delete(&format!("/api/runtimes/{rt}"), &alice.token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(mint(&bob.token, "alice-mbp").await.status, 201);
}

#[actix_web::test]
async fn a_member_holds_at_most_100_live_daemon_tokens_per_workspace() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Member)));
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(
            app.daemon_token(&bob.token, &ws, &format!("host-{i}"))
                .await,
        );
    }
    let mint = |token: &str, ws: &str| {
        let path = format!("/api/workspaces/{ws}/daemon-tokens");
        let (app, token) = (&app, token.to_string());
        async move {
            app.post(&path, &token, json!({"daemon_id": "host-100"}))
                .await
        }
    };
    let before = app.dump();
    let r = mint(&bob.token, &ws).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "you already have 100 active daemon tokens in this workspace"
    );
    assert_eq!(before, app.dump(), "no token was stored");
    // the bound is per member and workspace
    assert_eq!(mint(&alice.token, &ws).await.status, 201);
    let other = app
        .post("/api/workspaces", &bob.token, json!({"name": "Bob's"}))
        .await;
    assert_eq!(other.status, 201);
    let other = other.body["id"].as_str().unwrap();
    assert_eq!(mint(&bob.token, other).await.status, 201);
    // an expired token makes room
    app.expire_token(TokenKind::Daemon, &tokens[0]);
    assert_eq!(mint(&bob.token, &ws).await.status, 201);
    assert_eq!(mint(&bob.token, &ws).await.status, 409);
}

#[actix_web::test]
async fn an_admin_demoted_meanwhile_cannot_create_an_agent() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", Some((&ws, Role::Admin)));
    assert_eq!(app.get("/api/me", &bob.token).await.status, 200);
    let runtime = app.runtime(&alice.token, &ws, "mbp", "claude").await;
    // alice lets the workspace's managers bind agents to her machine
    app.share_runtime(&alice.token, &runtime).await;
    let bob_m = member_id(&app, &ws, &alice.token, &bob).await;

    let demote = change_member(&ws, &bob_m, Some(Role::Member));
    let writer = app.while_a_write_commits(demote).await;
    let r = app.create_agent(&bob.token, &ws, &runtime, json!({})).await;
    writer.join().unwrap();
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(
        r.error(),
        "only the runtime's owner or a workspace owner or admin can bind agents to it"
    );
    assert_eq!(app.count("SELECT count(*) FROM agent"), 0);
}

/// Sends `n` copies of one request at once; their replies.
async fn at_once<F, Fut>(n: usize, send: F) -> Vec<common::Reply>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = common::Reply>,
{
    futures_util::future::join_all((0..n).map(|_| send())).await
}

#[actix_web::test]
async fn concurrent_creations_with_one_slug_make_one_workspace() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let body = json!({"name": "Lab", "slug": "lab"});
    let replies = at_once(12, || {
        app.post("/api/workspaces", &alice.token, body.clone())
    })
    .await;
    let created: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "{replies:?}");
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(r.error(), r#"slug "lab" is already taken"#);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM workspace WHERE name = 'Lab'"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM member m JOIN workspace w ON w.id = m.workspace_id WHERE w.slug = 'lab'"),
        1
    );
}

#[actix_web::test]
async fn concurrent_creations_with_one_name_get_distinct_slugs() {
    let app = spawn_app().await;
    let (alice, _) = app.init_user("alice@example.com");
    let body = json!({"name": "Lab"});
    let replies = at_once(12, || {
        app.post("/api/workspaces", &alice.token, body.clone())
    })
    .await;
    let mut slugs: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["slug"].as_str().unwrap().to_string()
        })
        .collect();
    slugs.sort();
    let mut expected: Vec<String> = std::iter::once("lab".to_string())
        .chain((2..=12).map(|n| format!("lab-{n}")))
        .collect();
    expected.sort();
    assert_eq!(slugs, expected);
}

#[actix_web::test]
async fn concurrent_invitations_of_one_address_leave_one_pending() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let body = json!({"email": "bob@example.com", "role": "admin"});
    let replies = at_once(12, || invite(&app, &ws, &alice.token, body.clone())).await;
    let ids: std::collections::HashSet<&str> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one invitation, renewed: {ids:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM invitation WHERE status = 'pending'"),
        1
    );
}

#[actix_web::test]
async fn concurrent_accepts_of_one_invitation_make_one_member() {
    let app = spawn_app().await;
    let (alice, ws) = app.init_user("alice@example.com");
    let bob = app.add_user("bob@example.com", None);
    let id = invitation(&app, &ws, &alice.token, "bob@example.com").await;
    let replies = at_once(12, || answer(&app, &id, &bob.token, "accept")).await;
    let joined: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(joined.len(), 1, "{replies:?}");
    assert_eq!(joined[0].body["user_id"], bob.id.as_str());
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert_eq!(r.error(), "invitation has already been accepted");
    }
    let members = app.count(&format!(
        "SELECT count(*) FROM member WHERE workspace_id = '{ws}' AND user_id = '{}'",
        bob.id
    ));
    assert_eq!(members, 1);
}
