//! Environment members and API-key identities against the fake Rancher server: what
//! rancher-auth relies on to turn a Rancher key into a Kubernetes user.

use std::time::Duration;

use rancher_client::{
    Credentials, Error, ListParams, ProjectMember,
    resource::{RANCHER_ID, role},
    testing::{FakeProject, FakeRancher, FakeUser, GROUP_ID_TYPE},
};

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn a_user_key_resolves_to_its_identities_and_roles() {
    init();
    let fake = FakeRancher::builder()
        .settle_delay(Duration::from_millis(5))
        .user(
            FakeUser::new("alice")
                .key("ALICEKEY", "alice-secret")
                .role(role::OWNER),
        )
        .user(FakeUser::new("bob").group("devs"))
        .start()
        .await
        .unwrap();
    let client = fake.client();
    let env = client.project_id().unwrap().to_owned();

    // Alice's own key names her.
    let alice = client
        .identities_of(&Credentials::new("ALICEKEY", "alice-secret"))
        .await
        .unwrap();
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].login, "alice");
    assert!(alice[0].user);
    assert_eq!(alice[0].external_id_type, RANCHER_ID);
    assert_eq!(Some(&alice[0].external_id), fake.user_id("alice").as_ref());
    assert_eq!(
        fake.requests().last().unwrap().path,
        "/v2-beta/identities",
        "at the API root, whatever project CATTLE_URL names"
    );

    // Bob's key: him and his group.
    let bob = client
        .identities_of(&FakeUser::new("bob").credentials())
        .await
        .unwrap();
    let logins: Vec<_> = bob.iter().map(|i| (i.login.as_str(), i.user)).collect();
    assert_eq!(logins, [("bob", true), ("devs", false)]);
    assert_eq!(bob[1].principal_id(), "ldap_group:devs");

    // A wrong key: unauthorized, asked once.
    let before = fake.requests().len();
    let err = client
        .identities_of(&Credentials::new("ALICEKEY", "wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert_eq!(fake.requests().len(), before + 1);

    // Members of the served environment, with roles; bob joins through his group.
    fake.add_member(&env, GROUP_ID_TYPE, "devs", role::READONLY)
        .unwrap();
    let members = client.members_of(&env).await.unwrap();
    let roles: Vec<_> = members.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, [role::OWNER, role::READONLY]);
    assert!(members[0].is(&alice[0]));
    assert!(members[1].is(&bob[1]));

    // Removing alice takes effect at once for a fresh list.
    assert_eq!(fake.remove_user_from(&env, "alice"), 1);
    let members = client.members_of(&env).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(fake.members(&env).len(), 1);
}

#[tokio::test]
async fn members_are_validated_and_setmembers_replaces_them() {
    init();
    let fake = FakeRancher::builder()
        .settle_delay(Duration::from_millis(5))
        .project(FakeProject::new("prod"))
        .start()
        .await
        .unwrap();
    let client = fake.client();
    let prod = fake.project_id_by_name("prod").unwrap();
    let api = client.project_members();

    let mut member = ProjectMember {
        project_id: prod.clone(),
        external_id: "1a9".into(),
        external_id_type: RANCHER_ID.into(),
        role: "superuser".into(),
        ..Default::default()
    };
    let err = api.create(&member).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err:?}");
    assert!(err.to_string().contains("role"), "{err}");
    member.role = role::MEMBER.into();
    member.project_id = "1a999".into();
    assert_eq!(api.create(&member).await.unwrap_err().status(), Some(422));
    member.project_id = prod.clone();
    let created = api.create(&member).await.unwrap();
    assert_eq!(created.role, role::MEMBER);
    assert_eq!(client.members_of(&prod).await.unwrap().len(), 1);

    // setmembers replaces the whole list.
    let member = |id: &str, id_type: &str, role: &str| ProjectMember {
        external_id: id.into(),
        external_id_type: id_type.into(),
        role: role.into(),
        ..Default::default()
    };
    client
        .set_members(
            &prod,
            &[
                member("1a10", RANCHER_ID, role::OWNER),
                member("ops", GROUP_ID_TYPE, role::RESTRICTED),
            ],
        )
        .await
        .unwrap();
    let members = client.members_of(&prod).await.unwrap();
    let ids: Vec<_> = members.iter().map(|m| m.external_id.as_str()).collect();
    assert_eq!(ids, ["1a10", "ops"]);
    let bad = client
        .set_members(&prod, &[member("x", RANCHER_ID, "boss")])
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(422), "{bad:?}");
    assert_eq!(
        client.members_of(&prod).await.unwrap().len(),
        2,
        "unchanged"
    );

    // Other collections are not open to a user's key.
    fake.add_user(FakeUser::new("carol")).unwrap();
    let carol = rancher_client::Client::new(
        rancher_client::Config::new(fake.url())
            .unwrap()
            .credentials(FakeUser::new("carol").credentials()),
    )
    .unwrap();
    let err = carol.stacks().list(&ListParams::new()).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    // ... and members only of environments carol is in (none).
    assert!(carol.members_of(&prod).await.unwrap().is_empty());
}
